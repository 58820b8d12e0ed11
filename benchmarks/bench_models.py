"""Latency and accuracy of every depth on x86-cpu, batch 1 and 8, with the plot (issue 4's measurement).

    python benchmarks/bench_models.py demo        # the demo checkpoint, with Fashion-MNIST accuracy
    python benchmarks/bench_models.py resnet50    # ResNet-50, random init via `convert`, latency only

Copies results.json / .csv / .png to benchmarks/results/bench-NAME.* and, for ResNet-50, adds the
compute efficiency at batch 1: achieved GFLOP/s (2 x MACs / p50) against this CPU's FP32 peak
(FACTS.md: about 269 GFLOP/s per core at 4.2 GHz, 64 FLOP/cycle).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

from _common import save_result  # benchmarks/ is on sys.path when a script here runs

ROOT = Path(__file__).resolve().parents[1]
PEAK_GFLOPS_PER_CORE = 269.0  # FACTS.md: Zen 5 at 4.0-4.26 GHz, 64 FLOP/cycle/core


def sgemm_gflops(threads: int, n: int = 2048) -> float:
    """This host's achievable FP32 rate: the best of 10 large sgemms (torch / MKL) on ``threads`` threads.
    Hosts differ (cpufreq is not exposed here), so efficiency is also reported against this."""
    import time

    import torch

    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(3):
        a @ b
    best = float("inf")
    for _ in range(10):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e9


def annotate(results: dict, threads: int) -> None:
    """Achieved GFLOP/s per row, against FACTS.md's peak and against this host's measured sgemm rate."""
    measured = sgemm_gflops(threads)
    results["peak_fp32_gflops_assumed"] = PEAK_GFLOPS_PER_CORE * threads
    results["sgemm_fp32_gflops_measured"] = measured
    for row in results["rows"]:
        if row["status"] == "ok" and row.get("macs"):
            gflops = 2 * row["macs"] * row["batch"] / (row["latency_ms"]["p50"] / 1e3) / 1e9
            row["achieved_gflops"] = gflops
            row["fraction_of_fp32_peak"] = gflops / (PEAK_GFLOPS_PER_CORE * threads)
            row["fraction_of_measured_sgemm"] = gflops / measured


def main(name: str) -> None:
    from ddnn_deploy import export
    from ddnn_deploy.convert import convert_weights
    from ddnn_deploy.formats.results import parse_results
    from ddnn_deploy.measure.plot import plot_results
    from ddnn_deploy.measure.sweep import bench

    work = Path(tempfile.mkdtemp(prefix=f"ddnn-bench-{name}-"))
    try:
        if name == "demo":
            ckpt, dataset = ROOT / "models" / "fmnist-resnet20-ddnn.pt", "fashion-mnist"
        else:
            ckpt, dataset = work / f"{name}.pt", None
            convert_weights(arch=name, out=ckpt)
        manifest = export(ckpt, work / "artifacts", simplify=True, log=print).to_json_dict()
        results = bench(
            work / "artifacts",
            device="x86-cpu",
            dataset=dataset,
            results_path=work / "results.json",
            progress=False,
            log=print,
        ).to_json_dict()
        cores = os.cpu_count() or 1
        macs = {a["depth"]: a["macs"] for a in manifest["artifacts"]}
        for row in results["rows"]:
            row["macs"] = macs[row["depth"]]
        annotate(results, cores)
        out = save_result(f"bench-{name}", results, indent=1)
        shutil.copy(work / "results.csv", out.with_suffix(".csv"))
        plot_results(parse_results(results), out.with_suffix(".png"))
        for row in results["rows"]:
            lat, acc = row.get("latency_ms") or {}, row.get("accuracy") or {}
            print(
                f"depth {row['depth']} batch {row['batch']}: p50 {lat.get('p50', float('nan')):.3f} ms, "
                f"p90 {lat.get('p90', float('nan')):.3f} ms, top-1 {acc.get('top1')}, "
                f"{row.get('achieved_gflops', 0):.0f} GFLOP/s ({100 * row.get('fraction_of_fp32_peak', 0):.0f}% "
                f"of FACTS.md's peak, {100 * row.get('fraction_of_measured_sgemm', 0):.0f}% of this host's sgemm)"
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[2] == "--annotate":  # re-derive efficiency for recorded results
        path = ROOT / "benchmarks" / "results" / f"bench-{sys.argv[1]}.json"
        data = json.loads(path.read_text())
        if sys.argv[1] != "demo":
            from ddnn_deploy.describe import describe

            table = {r["depth"]: r["macs"] for r in describe(arch=data["arch"])["depths"]}
        else:
            from ddnn_deploy.describe import describe

            table = {
                r["depth"]: r["macs"] for r in describe(ckpt=str(ROOT / "models" / "fmnist-resnet20-ddnn.pt"))["depths"]
            }
        for row in data["rows"]:
            row["macs"] = table[row["depth"]]
        annotate(data, data["device"]["environment"]["threads"])
        path.write_text(json.dumps(data, indent=1) + "\n")
        print(f"sgemm {data['sgemm_fp32_gflops_measured']:.0f} GFLOP/s; rewrote {path}")
    else:
        main(sys.argv[1] if len(sys.argv) > 1 else "demo")
