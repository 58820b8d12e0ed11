#!/usr/bin/env bash
# The test suite, with all set-up done first (scripts/bootstrap.sh). Extra arguments go to pytest.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/bootstrap.sh"
cd "$ROOT"
exec "${DDNN_VENV:-$ROOT/.venv}/bin/python" -m pytest -q "$@"
