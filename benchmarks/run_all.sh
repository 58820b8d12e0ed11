#!/usr/bin/env bash
# Regenerate every recorded result under benchmarks/results/ (about 25 minutes on 2 cores).
# Run on an otherwise idle machine: the latency figures are only comparable within one run.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY="${PYTHON:-python}"
DEMO=models/fmnist-resnet20-ddnn.pt
"$PY" benchmarks/export_bench.py --ckpt "$DEMO" --name demo
"$PY" benchmarks/export_bench.py --arch resnet50 --name resnet50
"$PY" benchmarks/bench_models.py demo
"$PY" benchmarks/bench_models.py resnet50
TMP="$(mktemp -d)"
ddnn-deploy export --ckpt "$DEMO" --out "$TMP/demo" --depths 20 --no-simplify >/dev/null 2>&1
"$PY" benchmarks/harness_overhead.py --onnx "$TMP/demo/cifar_resnet20-d20.onnx"
rm -rf "$TMP"
"$PY" benchmarks/int8_bench.py demo
"$PY" benchmarks/int8_bench.py resnet50 26,38,50
