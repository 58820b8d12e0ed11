"""Resident memory of a loaded ``DepthRuntime``: one session per depth against the one selector graph (issue 11).

    python benchmarks/runtime_memory.py demo
    python benchmarks/runtime_memory.py resnet50        # random-init ResNet-50, depths 26,38,50

Each mode loads in a fresh process (so nothing is shared) and reports VmRSS after warm-up (one inference
per depth), with the process's baseline before loading subtracted. Writes results/runtime_memory-MODEL.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import ROOT, save_result  # benchmarks/ is on sys.path when a script here runs

CHILD = """
import json, sys
def rss():
    for line in open('/proc/self/status'):
        if line.startswith('VmRSS:'):
            return int(line.split()[1]) / 1024
import numpy, onnxruntime
from ddnn_deploy.runtime import DepthRuntime
base = rss()
runtime = DepthRuntime.from_artifacts(sys.argv[1], use_selector=sys.argv[2] == '1')
print(json.dumps({"baseline_mb": base, "loaded_mb": rss(), "runtime_mb": rss() - base, "depths": runtime.depths}))
"""


def measure(artifacts: Path, selector: bool) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(artifacts), "1" if selector else "0"],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", choices=["demo", "resnet50"])
    args = parser.parse_args()
    from ddnn_deploy.measure.environment import capture

    with tempfile.TemporaryDirectory(prefix="ddnn-mem-") as tmp:
        work = Path(tmp)
        if args.model == "demo":
            ckpt, depths = ROOT / "models" / "fmnist-resnet20-ddnn.pt", "8,14,20"
        else:
            ckpt, depths = work / "r50.pt", "26,38,50"
            subprocess.run(
                [sys.executable, "-m", "ddnn_deploy", "convert", "--arch", "resnet50", "--out", str(ckpt)], check=True
            )
        subprocess.run(
            [
                sys.executable,
                "-m",
                "ddnn_deploy",
                "export",
                "--ckpt",
                str(ckpt),
                "--out",
                str(work / "a"),
                "--depths",
                depths,
                "--selector",
                "--no-progress",
            ],
            check=True,
        )
        sizes = {p.name: p.stat().st_size / 1e6 for p in (work / "a").iterdir() if p.suffix in (".onnx", ".data")}
        result = {"per_depth": measure(work / "a", False), "selector": measure(work / "a", True)}
    save_result(
        f"runtime_memory-{args.model}",
        {
            "benchmark": "runtime_memory",
            "model": args.model,
            "files_mb": sizes,
            **result,
            "environment": capture("onnxruntime", os.cpu_count()),
        },
    )
    for mode in ("per_depth", "selector"):
        print(f"{mode:10s} runtime {result[mode]['runtime_mb']:.1f} MB (RSS {result[mode]['loaded_mb']:.1f} MB)")


if __name__ == "__main__":
    main()
