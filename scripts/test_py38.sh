#!/usr/bin/env bash
# The runtime half on Python 3.8 (JetPack 5's TensorRT 8.5 bindings exist for 3.8 only): a venv from pyenv's
# Python 3.8 with the project's runtime and serve extras and NO torch, then the runtime tests against the tiny
# artifacts that the main venv makes (tests/tiny.py). Run by scripts/test.sh after the main suite.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
say() { echo "[py38] $*" >&2; }
PYENV_ROOT="${PYENV_ROOT:-$HOME/.pyenv}"
PY38="${DDNN_PY38:-$(ls -d "$PYENV_ROOT"/versions/3.8.*/bin/python 2>/dev/null | sort -V | tail -n 1)}"
if [ -z "$PY38" ] || [ ! -x "$PY38" ]; then
    say "no Python 3.8 found (pyenv install 3.8.18, or set DDNN_PY38=/path/to/python3.8)"
    exit 1
fi
VENV="${DDNN_VENV38:-$ROOT/.venv38}"
MAIN="${DDNN_VENV:-$ROOT/.venv}/bin/python"
LOG="$(mktemp -t ddnn-py38.XXXXXX.log)"
if [ ! -x "$VENV/bin/python" ]; then
    say "creating $VENV with $("$PY38" --version 2>&1)"
    "$PY38" -m venv "$VENV"
fi
STAMP="$VENV/.ddnn-deploy-installed"
WANT="$(sha256sum "$ROOT/pyproject.toml" | cut -d' ' -f1)"
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$WANT" ]; then
    say "installing ddnn-deploy[runtime,serve] (no torch) for Python 3.8"
    if ! "$VENV/bin/python" -m pip install --disable-pip-version-check -e "$ROOT[runtime,serve]" pytest hypothesis \
            >"$LOG" 2>&1; then
        grep -v "is ignored: it is neither a file nor a directory" "$LOG" | tail -n 30 >&2
        say "pip install failed (full log: $LOG)"
        exit 1
    fi
    echo "$WANT" > "$STAMP"
fi
if "$VENV/bin/python" -c "import torch" >/dev/null 2>&1; then
    say "torch is importable in $VENV: this job must run without it"
    exit 1
fi
WORK="$(mktemp -d -t ddnn-py38-artifacts.XXXXXX)"
trap 'rm -rf "$WORK" "$LOG"' EXIT
say "making the tiny artifacts with the main venv"
"$MAIN" "$ROOT/tests/tiny.py" "$WORK" >/dev/null
cd "$ROOT"
DDNN_TEST_ARTIFACTS="$WORK/artifacts" "$VENV/bin/python" -m pytest -q -p no:cacheprovider \
    tests/test_formats.py tests/test_pick.py tests/test_controller.py tests/test_runtime.py tests/test_bench.py \
    tests/test_quantize.py tests/test_data.py tests/test_tensorrt.py tests/test_environment.py \
    tests/test_external_data.py tests/test_fuzz_readers.py tests/test_tegrastats.py tests/test_bindings_contract.py \
    tests/test_gpu_paths.py tests/test_remote.py tests/test_energy.py tests/test_compare.py tests/test_bare_onnx.py tests/test_fleet.py "$@"
