"""The selector graph's overhead on each back-end (issue 14): at every depth, the one selector graph (its ``depth``
input set) against that depth's own graph, on onnxruntime and on OpenVINO, FP32, batch 1, timed interleaved in
one process.

    python benchmarks/selector_backends.py demo
    python benchmarks/selector_backends.py resnet50 26,38,50
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
from _common import save_result  # benchmarks/ is on sys.path when a script here runs

ROOT = Path(__file__).resolve().parents[1]


def main(name: str, depths: str | None = None) -> None:
    from backends_bench import interleaved
    from export_bench import session

    from ddnn_deploy import export
    from ddnn_deploy.convert import convert_weights
    from ddnn_deploy.measure.environment import capture
    from ddnn_deploy.runners.openvino_runner import OvRunner

    work = Path(tempfile.mkdtemp(prefix=f"ddnn-selector-{name}-"))
    threads = os.cpu_count() or 1
    try:
        if name == "demo":
            ckpt = ROOT / "models" / "fmnist-resnet20-ddnn.pt"
        else:
            ckpt = work / f"{name}.pt"
            convert_weights(arch=name, out=ckpt)
        manifest = export(ckpt, work / "a", depths=depths, simplify=True, selector=True, log=print).to_json_dict()
        selector = next(a for a in manifest["artifacts"] if a["kind"] == "selector")
        x = np.random.default_rng(0).standard_normal([1, *manifest["input"]["shape"][1:]]).astype(np.float32)
        cache = tempfile.mkdtemp()
        rows = []
        for depth in selector["depth"]:
            own = next(a for a in manifest["artifacts"] if a["kind"] == "depth" and a["depth"] == depth)
            feed = {"input": x}
            with_depth = {"input": x, "depth": np.asarray(depth, dtype=np.int64)}
            ort_own, ort_sel = (
                session(work / "a" / own["path"], threads),
                session(work / "a" / selector["path"], threads),
            )
            ov_own = OvRunner(work / "a" / own["path"], threads=threads, engine_cache=cache).activate()
            ov_sel = OvRunner(work / "a" / selector["path"], threads=threads, engine_cache=cache).activate()
            paths = {
                "onnxruntime depth graph": (lambda s=ort_own, f=feed: s.run(None, f), ort_own),
                "onnxruntime selector": (lambda s=ort_sel, f=with_depth: s.run(None, f), ort_sel),
                "openvino depth graph": (ov_own.timed(feed), ov_own),
                "openvino selector": (ov_sel.timed(with_depth), ov_sel),
            }
            medians = interleaved(paths, rounds=10, per_round=100 if name == "demo" else 5)
            ratio = {
                "onnxruntime": medians["onnxruntime selector"] / medians["onnxruntime depth graph"],
                "openvino": medians["openvino selector"] / medians["openvino depth graph"],
            }
            rows.append({"depth": depth, "median_ms": medians, "selector_over_depth_graph": ratio})
            print(depth, {k: f"{v:.3f} ms" for k, v in medians.items()}, {k: f"{v:.3f}x" for k, v in ratio.items()})
            ov_own.deactivate()
            ov_sel.deactivate()
        environment = capture("openvino", threads)
        result = {"model": name, "threads": threads, "batch": 1, "environment": environment, "rows": rows}
        save_result(f"selector-backends-{name}", result)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else None)
