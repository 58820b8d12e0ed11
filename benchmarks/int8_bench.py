"""INT8 benchmark (issue 5): FP32 vs INT8 top-1 per depth of the demo model on the full Fashion-MNIST
test set, and INT8 vs FP32 latency of ResNet-50 (random init) at batch 1 on onnxruntime CPU.

    python benchmarks/int8_bench.py demo
    python benchmarks/int8_bench.py resnet50 26,38,50     # depths to export (default: all)

Latency pairs run interleaved in one process (same threads); only their ratio is compared. The INT8
floor comes from FACTS.md: about 4x the FP32 peak (VNNI), i.e. ~1,076 GOPS per core.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import save_result  # benchmarks/ is on sys.path when a script here runs

ROOT = Path(__file__).resolve().parents[1]
PEAK_FP32_GFLOPS_PER_CORE = 269.0


def main(name: str, depths: str | None = None) -> None:
    from export_bench import paired_latency, session

    from ddnn_deploy import export
    from ddnn_deploy.convert import convert_weights
    from ddnn_deploy.quantize import calibrate

    work = Path(tempfile.mkdtemp(prefix=f"ddnn-int8-{name}-"))
    threads = os.cpu_count() or 1
    try:
        if name == "demo":
            ckpt, dataset, eval_samples = ROOT / "models" / "fmnist-resnet20-ddnn.pt", None, 10000
        else:
            ckpt, dataset, eval_samples = work / f"{name}.pt", "random", None
            convert_weights(arch=name, out=ckpt)
        export(ckpt, work / "a", depths=depths, simplify=True, log=print)
        t0 = time.time()
        manifest = calibrate(
            work / "a",
            dataset=dataset,
            samples=512 if dataset is None else 32,
            eval_samples=eval_samples,
            log=print,
            max_drop=100.0,
        ).to_json_dict()
        calibrate_seconds = time.time() - t0
        fp32 = {a["depth"]: a for a in manifest["artifacts"] if a["kind"] == "depth" and a["precision"] == "fp32"}
        int8 = {a["depth"]: a for a in manifest["artifacts"] if a["precision"] == "int8"}
        rows = []
        for depth in sorted(int8):
            shape = [1, *manifest["input"]["shape"][1:]]
            x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
            per_round = max(3, min(100, int(2e9 / fp32[depth]["macs"] / 20)))
            timing = paired_latency(
                session(work / "a" / int8[depth]["path"], threads),
                {"input": x},
                session(work / "a" / fp32[depth]["path"], threads),
                {"input": x},
                rounds=10,
                per_round=per_round,
                warmup=per_round,
            )
            macs = fp32[depth]["macs"]
            row = {
                "depth": depth,
                "macs": macs,
                "int8_ms": timing["a_ms"],
                "fp32_ms": timing["b_ms"],
                "speedup": timing["b_ms"] / timing["a_ms"],
                "int8_gops": 2 * macs / (timing["a_ms"] / 1e3) / 1e9,
                "fp32_gflops": 2 * macs / (timing["b_ms"] / 1e3) / 1e9,
                "accuracy": int8[depth].get("accuracy"),
            }
            rows.append(row)
            acc = row["accuracy"]
            print(
                f"depth {depth}: FP32 {row['fp32_ms']:.3f} ms, INT8 {row['int8_ms']:.3f} ms "
                f"(x{row['speedup']:.2f}); "
                + (
                    f"top-1 FP32 {acc['fp32_top1']:.2f} INT8 {acc['int8_top1']:.2f} (drop {acc['drop']:+.2f})"
                    if acc
                    else "no accuracy"
                )
            )
        import onnxruntime

        result = {
            "benchmark": "int8",
            "name": name,
            "threads": threads,
            "batch": 1,
            "onnxruntime": onnxruntime.__version__,
            "calibrate_seconds": round(calibrate_seconds, 1),
            "peak_fp32_gflops": PEAK_FP32_GFLOPS_PER_CORE * threads,
            "int8_floor_gops": 4 * PEAK_FP32_GFLOPS_PER_CORE * threads,
            "rows": rows,
            "date": time.strftime("%Y-%m-%d"),
        }
        save_result(f"int8-{name}", result)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "demo", sys.argv[2] if len(sys.argv) > 2 else None)
