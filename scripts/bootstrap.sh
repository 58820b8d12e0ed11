#!/usr/bin/env bash
# Set up everything ddnn-deploy needs on a fresh Debian machine, idempotently:
#   1. a virtual environment in .venv (Debian's Python refuses system-wide pip installs);
#   2. torch's CPU wheel FIRST (a bare `torch` requirement would pull a multi-GB CUDA build);
#   3. the project itself with its export/openvino/plot/serve/dev extras;
#   4. the Debian package dataset-fashion-mnist when its files are absent;
#   5. openssh-server and openssh-client (a real sshd for the remote-bench tests) when absent.
# Re-running is cheap: steps whose result is already there are skipped.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${DDNN_VENV:-$ROOT/.venv}"
TORCH_SPEC="${DDNN_TORCH_SPEC:-torch==2.13.0}"
FMNIST_DIR="${DDNN_FASHION_MNIST:-/usr/share/datasets/fashion-mnist}"

say() { echo "[bootstrap] $*" >&2; }
LOG="$(mktemp -t ddnn-bootstrap.XXXXXX.log)"
pip_install() {  # quiet on success; the full pip log on failure
    if ! "$PY" -m pip install --disable-pip-version-check "$@" >"$LOG" 2>&1; then
        grep -v "is ignored: it is neither a file nor a directory" "$LOG" | tail -n 40 >&2
        say "pip install $* failed (full log: $LOG)"
        exit 1
    fi
}

if [ ! -x "$VENV/bin/python" ]; then
    say "creating virtual environment $VENV"
    python3 -m venv "$VENV"
fi
PY="$VENV/bin/python"

if ! "$PY" -c "import torch" >/dev/null 2>&1; then
    say "installing $TORCH_SPEC (CPU wheel) before anything that depends on torch"
    pip_install "$TORCH_SPEC"
fi

STAMP="$VENV/.ddnn-deploy-installed"
WANT="$(sha256sum "$ROOT/pyproject.toml" | cut -d' ' -f1)"
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$WANT" ]; then
    say "installing ddnn-deploy (editable) with extras export, openvino, plot, serve, dev"
    pip_install -e "$ROOT[export,openvino,plot,serve,dev]"
    echo "$WANT" > "$STAMP"
fi

if [ ! -e "$FMNIST_DIR/t10k-images-idx3-ubyte.gz" ] && [ ! -e "$FMNIST_DIR/t10k-images-idx3-ubyte" ]; then
    say "installing the Debian package dataset-fashion-mnist"
    SUDO=""
    if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi
    $SUDO apt-get update -qq
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null
fi
if [ ! -x /usr/sbin/sshd ] || ! command -v ssh >/dev/null 2>&1; then
    # the remote-bench tests (tests/test_remote.py) start a real sshd on a loopback port
    say "installing the Debian packages openssh-server and openssh-client"
    SUDO=""
    if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi
    $SUDO apt-get update -qq
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssh-server openssh-client >/dev/null
fi
rm -f "$LOG"
say "ready: $VENV"
