#!/usr/bin/env bash
# Exercise every GPU path of ddnn-deploy on a machine with an NVIDIA GPU (or a Jetson) and write a report.
#
#   bash benchmarks/gpu_check.sh [OUT_DIR]          # default: gpu-report/
#
# Each step runs on its own (at most DDNN_STEP_TIMEOUT seconds, default 300); a failing step is recorded
# (with its log) and the next one runs. Steps: the device (nvidia-smi / Jetson state), the GPU-marked tests
# (cuda-python page-locked buffers and CUDA events, the torch runner on CUDA), export of the demo model (FP32 +
# FP16 graphs) and TensorRT-target INT8 calibration, the CPU reference, bench on the PyTorch reference on CUDA
# (torch-cuda), on onnxruntime's CUDA and TensorRT providers, on TensorRT itself at FP32 / FP16 / INT8 with
# accuracy, accuracy compared per depth, trtexec beside our latency when trtexec is on PATH, torch CUDA
# training with AMP, DDP with NCCL on one GPU, and ResNet-50's five depths on torch-cuda.
# Nothing here runs on machines without a GPU: the project's CI machines have none.
# DDNN_DATA_DIR: the Fashion-MNIST folder (default /usr/share/datasets/fashion-mnist).
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="$(realpath -m "${1:-gpu-report}")"
PY="${DDNN_PYTHON:-python3}"
CKPT="$ROOT/models/fmnist-resnet20-ddnn.pt"
LIMIT="${DDNN_GPU_CHECK_LIMIT:-2000}"
DATA="${DDNN_DATA_DIR:-/usr/share/datasets/fashion-mnist}"
STEP_TIMEOUT="${DDNN_STEP_TIMEOUT:-300}"
mkdir -p "$OUT/logs"
REPORT="$OUT/REPORT.md"
{
    echo "# ddnn-deploy GPU check"
    echo
    echo "$(date -u +%Y-%m-%dT%H:%M:%SZ), $(uname -srm), ddnn-deploy $("$PY" -c 'import ddnn_deploy; print(ddnn_deploy.__version__)' 2>&1)"
    echo
    echo "| step | status | seconds | log |"
    echo "|---|---|---|---|"
} > "$REPORT"

step() {  # step NAME COMMAND...: run, time, record the status and keep the log
    local name="$1"; shift
    local log="$OUT/logs/$name.log" start end status
    start=$(date +%s)
    echo "== $name: $*" | tee "$log"
    if timeout "$STEP_TIMEOUT" "$@" >>"$log" 2>&1; then status="ok"; else status="FAILED (exit $?)"; fi
    end=$(date +%s)
    echo "| $name | $status | $((end - start)) | logs/$name.log |" >> "$REPORT"
    echo "   -> $status"
}

cat > "$OUT/profiles.toml" <<'EOF'
[profiles.trt-all]
extends = "jetson"
precisions = ["fp32", "fp16", "int8"]
batch_sizes = [1, 8]

[profiles.ort-trt]
extends = "cuda"
provider = "tensorrt"

[profiles.torch-cuda-short]
extends = "torch-cuda"
warmup_iters = 20
min_seconds = 0.5
EOF

step device sh -c "nvidia-smi || true; cat /etc/nv_tegra_release 2>/dev/null || true; nvpmodel -q 2>/dev/null || true; \
    sudo -n jetson_clocks --show 2>/dev/null || echo 'jetson_clocks: not available without root'"
step gpu-tests "$PY" -m pytest -q -p no:cacheprovider -m gpu "$ROOT/tests/test_gpu_paths.py" \
    "$ROOT/tests/test_model_bn.py" "$ROOT/tests/test_tensorrt.py" -rs
step cuda-copies "$PY" "$ROOT/benchmarks/cuda_copies.py" --json "$OUT/cuda-copies.json"
step export "$PY" -m ddnn_deploy export --ckpt "$CKPT" --out "$OUT/artifacts" --selector --fp16 --force --no-progress
step calibrate-tensorrt "$PY" -m ddnn_deploy calibrate --artifacts "$OUT/artifacts" --target tensorrt --no-progress
step bench-cpu "$PY" -m ddnn_deploy bench --artifacts "$OUT/artifacts" --device x86-cpu --dataset fashion-mnist \
    --limit "$LIMIT" --data "$DATA" --results "$OUT/cpu.json" --no-progress
step bench-torch-cuda "$PY" -m ddnn_deploy bench --artifacts "$OUT/artifacts" --device torch-cuda --ckpt "$CKPT" \
    --dataset fashion-mnist --limit "$LIMIT" --data "$DATA" --results "$OUT/torch-cuda.json" --no-progress
step bench-ort-cuda "$PY" -m ddnn_deploy bench --artifacts "$OUT/artifacts" --device cuda --dataset fashion-mnist \
    --limit "$LIMIT" --data "$DATA" --results "$OUT/ort-cuda.json" --no-progress
step bench-ort-tensorrt "$PY" -m ddnn_deploy bench --artifacts "$OUT/artifacts" --device ort-trt \
    --profiles "$OUT/profiles.toml" --dataset fashion-mnist --limit "$LIMIT" --data "$DATA" --results "$OUT/ort-trt.json" --no-progress
step bench-tensorrt "$PY" -m ddnn_deploy bench --artifacts "$OUT/artifacts" --device trt-all \
    --profiles "$OUT/profiles.toml" --dataset fashion-mnist --limit "$LIMIT" --data "$DATA" --results "$OUT/trt.json" --no-progress
step bench-tensorrt-selector "$PY" -m ddnn_deploy bench --artifacts "$OUT/artifacts" --device jetson --selector \
    --depths 8 --results "$OUT/trt-selector.json" --no-progress
step accuracy-vs-cpu "$PY" - "$OUT" <<'EOF'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
cpu = {r["depth"]: r["accuracy"]["top1"] for r in json.loads((out / "cpu.json").read_text())["rows"]
       if r["status"] == "ok" and r.get("accuracy") and r["batch"] == 1}
worst, compared = 0.0, 0
for name in ("torch-cuda.json", "ort-cuda.json", "ort-trt.json", "trt.json"):
    path = out / name
    if not path.exists():
        print(f"{name}: missing"); continue
    for r in json.loads(path.read_text())["rows"]:
        if r["status"] != "ok" or not r.get("accuracy") or r["batch"] != 1:
            print(f"{name} depth {r['depth']} {r['precision']}: {r['status']} {r.get('error') or r.get('accuracy_error')}")
            continue
        delta = r["accuracy"]["top1"] - cpu[r["depth"]]
        limit = 1.0 if r["precision"] == "int8" else 0.3
        worst, compared = max(worst, abs(delta) - limit), compared + 1
        print(f"{name} depth {r['depth']} {r['precision']}: top-1 {r['accuracy']['top1']:.2f} vs CPU "
              f"{cpu[r['depth']]:.2f} ({delta:+.2f}) p50 {r['latency_ms']['p50']:.3f} ms")
sys.exit(1 if worst > 0 or compared == 0 else 0)  # nothing compared is a failure, not a pass
EOF
if command -v trtexec >/dev/null 2>&1; then
    step trtexec trtexec --onnx="$OUT/artifacts/cifar_resnet20-d20.onnx" --fp16 --shapes=input:1x1x28x28 \
        --warmUp=500 --iterations=2000
else
    echo "| trtexec | not on PATH (skipped) | - | - |" >> "$REPORT"
fi
step torch-cuda-amp "$PY" -m ddnn_deploy train --arch cifar_resnet20 --width 8 --depths 8,20 --epochs 1 \
    --train-limit 4096 --test-limit 1000 --recal-samples 1000 --device cuda --data "$DATA" \
    --out "$OUT/cuda-amp.pt" --no-progress
step ddp-nccl "$PY" -m torch.distributed.run --nproc_per_node 1 -m ddnn_deploy train --arch cifar_resnet20 \
    --width 8 --depths 8,20 --epochs 1 --train-limit 4096 --test-limit 1000 --recal-samples 1000 --device cuda \
    --data "$DATA" --out "$OUT/ddp.pt" --no-progress
# ResNet-50's sub-nets on the GPU: random weights (latency does not depend on them), every depth, batch 1 and 32
step resnet50-torch-cuda sh -c "'$PY' -m ddnn_deploy convert --arch resnet50 --out '$OUT/r50.pt' && \
    '$PY' -m ddnn_deploy export --ckpt '$OUT/r50.pt' --out '$OUT/r50' --no-simplify --no-progress && \
    '$PY' -m ddnn_deploy bench --artifacts '$OUT/r50' --device torch-cuda-short --profiles '$OUT/profiles.toml' \
    --ckpt '$OUT/r50.pt' --results '$OUT/r50-torch-cuda.json' --no-progress"
{
    echo
    echo "Results: cpu.json, torch-cuda.json, ort-cuda.json, ort-trt.json, trt.json, r50-torch-cuda.json (+ .csv/.png);"
    echo "accuracy comparison in"
    echo "logs/accuracy-vs-cpu.log (FP32/FP16 within 0.3 points of the CPU, INT8 within 1.0)."
} >> "$REPORT"
echo "report: $REPORT"
