#!/usr/bin/env bash
# The main job on the built-in demo: the Fashion-MNIST DDNN checkpoint committed under models/.
# Sets everything up first (scripts/bootstrap.sh), then: describe and evaluate every depth, export
# every depth (+ the selector graph) to verified ONNX, calibrate INT8 per depth, bench them on this CPU with Fashion-MNIST
# accuracy (results.json, .csv, .png), and pick the depth that fits a sample latency budget.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/bootstrap.sh"
export PATH="${DDNN_VENV:-$ROOT/.venv}/bin:$PATH"
cd "$ROOT"
CKPT=models/fmnist-resnet20-ddnn.pt
OUT=artifacts/demo
BUDGET_MS="${DDNN_DEMO_BUDGET_MS:-0.4}"
run() { echo; echo "\$ $*"; "$@"; }
run ddnn-deploy info --ckpt "$CKPT"
run ddnn-deploy eval --ckpt "$CKPT"
run ddnn-deploy export --ckpt "$CKPT" --out "$OUT" --selector --force
run ddnn-deploy calibrate --artifacts "$OUT"
run ddnn-deploy bench --artifacts "$OUT" --device x86-cpu --precision fp32,int8 --dataset fashion-mnist \
    --results "$OUT/results.json"
run ddnn-deploy pick --results "$OUT/results.json" --budget-ms "$BUDGET_MS" --stat p90
echo
echo "results: $OUT/results.json, $OUT/results.csv, plot: $OUT/results.png"
