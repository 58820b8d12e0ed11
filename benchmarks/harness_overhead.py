"""The bench harness's own overhead: its p50 against a minimal timing loop on the same session.

    python benchmarks/harness_overhead.py --onnx artifacts/demo/cifar_resnet20-d20.onnx

Both loops drive ONE onnxruntime session (same threads); they alternate in rounds so drift hits
both. Goal: harness p50 within 3 % of the minimal loop. Results: benchmarks/results/harness-overhead.json.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
from _common import save_result  # benchmarks/ is on sys.path when a script here runs

from ddnn_deploy.measure.timing import TimingSettings, measure
from ddnn_deploy.runners import OrtRunner

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--onnx", required=True)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--iters", type=int, default=200)
    args = parser.parse_args()
    runner = OrtRunner(args.onnx, threads=args.threads).activate()
    shape = [d if isinstance(d, int) else 1 for d in runner.session.get_inputs()[0].shape]
    feed = {"input": np.random.default_rng(0).standard_normal(shape).astype(np.float32)}
    session = runner.session
    for _ in range(args.iters):
        session.run(None, feed)
    harness, minimal = [], []
    settings = TimingSettings(warmup_iters=5, warmup_seconds=0.0, min_iters=args.iters, min_seconds=0.0)
    for _ in range(args.rounds):
        stats, _ = measure(lambda: runner.infer(feed), settings)
        harness.append(stats["p50"])
        samples = []
        for _ in range(args.iters):
            t0 = time.perf_counter()
            session.run(None, feed)
            samples.append((time.perf_counter() - t0) * 1e3)
        minimal.append(float(np.percentile(samples, 50)))
    h, m = float(np.median(harness)), float(np.median(minimal))
    result = {
        "benchmark": "harness-overhead",
        "onnx": Path(args.onnx).name,
        "threads": args.threads,
        "rounds": args.rounds,
        "iters_per_round": args.iters,
        "harness_p50_ms": h,
        "minimal_p50_ms": m,
        "ratio": h / m,
        "goal": "<= 1.03",
        "date": time.strftime("%Y-%m-%d"),
    }
    print(json.dumps(result, indent=2))
    save_result("harness-overhead", result)


if __name__ == "__main__":
    main()
