#!/usr/bin/env bash
# The main job on the built-in demo: the Fashion-MNIST DDNN checkpoint committed under models/.
# Sets everything up first (scripts/bootstrap.sh), then runs `ddnn-deploy demo` (the same command
# works from an installed wheel, which carries the checkpoint): describe and evaluate every depth,
# export every depth (+ the selector graph) to verified ONNX, calibrate INT8 per depth, bench them on
# this CPU with Fashion-MNIST accuracy (results.json, .csv, .png), and pick the depth that fits a
# sample latency budget. Extra arguments go to `ddnn-deploy demo` (e.g. --limit 500 for a quick run).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/bootstrap.sh"
export PATH="${DDNN_VENV:-$ROOT/.venv}/bin:$PATH"
cd "$ROOT"
exec ddnn-deploy demo --out artifacts/demo --budget-ms "${DDNN_DEMO_BUDGET_MS:-0.4}" "$@"
