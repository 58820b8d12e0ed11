#!/usr/bin/env bash
# The test suite, with all set-up done first (scripts/bootstrap.sh). Extra arguments go to pytest (and skip the
# Python 3.8 runtime job, which a plain run adds).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/bootstrap.sh"
cd "$ROOT"
"${DDNN_VENV:-$ROOT/.venv}/bin/python" -m pytest -q "$@"
# The whole run (no arguments) also proves the runtime half on Python 3.8 (scripts/test_py38.sh).
if [ "$#" -eq 0 ] && [ -z "${DDNN_SKIP_PY38:-}" ]; then
    bash "$ROOT/scripts/test_py38.sh"
fi
