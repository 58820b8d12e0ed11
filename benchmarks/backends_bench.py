"""Back-ends and precisions on x86 (issue 14): onnxruntime FP32 / INT8 (U8S8) against OpenVINO FP32 / BF16 / INT8
at batch 1, every depth, timed interleaved in one process; accuracy per back-end and precision (demo, 10,000
test images); and our harness against OpenVINO's own ``benchmark_app`` on the same graph and settings.

    python benchmarks/backends_bench.py demo
    python benchmarks/backends_bench.py resnet50 26,38,50      # depths to export (default: all)

Only ratios measured in one run are compared. BF16 rows need a CPU with native BF16 (AVX512-BF16 or AMX);
elsewhere they are left out and the JSON says so.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import save_result  # benchmarks/ is on sys.path when a script here runs

ROOT = Path(__file__).resolve().parents[1]


def _paths(folder: Path, manifest: dict, depth: int, threads: int, native_bf16: bool) -> dict:
    """name -> (zero-argument callable, runner or session kept alive) for every back-end/precision of a depth."""
    from export_bench import session

    from ddnn_deploy.runners.openvino_runner import OvRunner

    fp32 = next(
        a for a in manifest["artifacts"] if a["kind"] == "depth" and a["depth"] == depth and a["precision"] == "fp32"
    )
    int8 = next(
        (
            a
            for a in manifest["artifacts"]
            if a["depth"] == depth and a["precision"] == "int8" and a.get("target") == "cpu"
        ),
        None,
    )
    shape = [1, *manifest["input"]["shape"][1:]]
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    feed = {"input": x}
    paths = {}
    for name, artifact in (("onnxruntime fp32", fp32), ("onnxruntime int8", int8)):
        if artifact is not None:
            sess = session(folder / artifact["path"], threads)  # no spinning: paths alternate in one process
            paths[name] = (lambda s=sess: s.run(None, feed), sess)
    cache = Path(tempfile.mkdtemp(prefix="ddnn-ov-cache-"))
    for precision, artifact in (("fp32", fp32), ("bf16", fp32), ("int8", int8)):
        if artifact is None or (precision == "bf16" and not native_bf16):
            continue
        runner = OvRunner(folder / artifact["path"], precision=precision, threads=threads, engine_cache=cache)
        runner.activate()
        paths[f"openvino {precision}"] = (runner.timed(feed), runner)
    return paths


def interleaved(paths: dict, *, rounds: int, per_round: int) -> dict:
    for run, _ in paths.values():
        for _ in range(per_round):
            run()
    times = {name: [] for name in paths}
    names = list(paths)
    for r in range(rounds):
        for name in names if r % 2 == 0 else reversed(names):
            run = paths[name][0]
            for _ in range(per_round):
                t = time.perf_counter()
                run()
                times[name].append(time.perf_counter() - t)
    return {name: float(np.median(t)) * 1e3 for name, t in times.items()}


def benchmark_app(graph: Path, shape: list[int], threads: int, seconds: int = 10) -> dict | None:
    """OpenVINO's benchmark_app on the graph with OUR settings spelled out (its defaults on BF16/AMX CPUs are BF16
    and u8 input, which is not what an fp32 row measures)."""
    exe = shutil.which("benchmark_app") or str(Path(sys.executable).with_name("benchmark_app"))
    if not Path(exe).exists():
        return None
    cmd = [
        exe,
        "-m",
        str(graph),
        "-d",
        "CPU",
        "-hint",
        "none",  # benchmark_app takes -nthreads only without a hint; one stream, one request = the latency hint
        "-nstreams",
        "1",
        "-nireq",
        "1",
        "-nthreads",
        str(threads),
        "-infer_precision",
        "f32",
        "-ip",
        "f32",
        "-shape",
        f"input[{','.join(map(str, shape))}]",
        "-api",
        "sync",
        "-t",
        str(seconds),
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 120)
    return {"command": " ".join(["benchmark_app", *cmd[1:]]), **parse_benchmark_app(out.stdout + out.stderr)}


def parse_benchmark_app(text: str) -> dict:
    """benchmark_app's median latency in ms (it prints ms, or us for short ones)."""
    median = re.search(r"Median:\s+([0-9.]+) (ms|us)", text)
    if median is None:
        return {"median_ms": None, "error": text[-1000:]}
    value = float(median.group(1))
    return {"median_ms": value / 1000 if median.group(2) == "us" else value, "error": None}


def harness_median(graph: Path, shape: list[int], threads: int, seconds: float = 10.0) -> float:
    """Our bench harness (the runner's timed call through measure()) on the same graph, same settings."""
    from ddnn_deploy.formats.profiles import TimingSettings
    from ddnn_deploy.measure.timing import measure
    from ddnn_deploy.runners.openvino_runner import OvRunner

    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    with OvRunner(graph, precision="fp32", threads=threads, engine_cache=tempfile.mkdtemp()) as runner:
        stats, _ = measure(
            runner.timed({"input": x}), TimingSettings(warmup_iters=20, min_iters=50, min_seconds=seconds)
        )
    return stats["p50"]


def accuracy(folder: Path, manifest: dict, threads: int, native_bf16: bool) -> list[dict]:
    from ddnn_deploy.data import Preprocess, load_eval_data
    from ddnn_deploy.runners.accuracy import runner_accuracy
    from ddnn_deploy.runners.factory import graph_runner

    data = load_eval_data("fashion-mnist", input_shape=tuple(manifest["input"]["shape"][1:]))
    data.preprocess = Preprocess.from_dict(manifest["preprocess"])
    rows = []
    for a in manifest["artifacts"]:
        if a["kind"] != "depth" or a.get("target") == "tensorrt":
            continue
        combos = [("onnxruntime", a["precision"]), ("openvino", a["precision"])]
        if a["precision"] == "fp32" and native_bf16:
            combos.append(("openvino", "bf16"))
        for backend, precision in combos:
            runner = graph_runner(
                backend, folder / a["path"], precision=precision, threads=threads, engine_cache=tempfile.mkdtemp()
            )
            with runner:
                top1 = runner_accuracy(runner, data, batch=256)["top1"]
            rows.append({"depth": a["depth"], "backend": backend, "precision": precision, "top1": top1})
    return rows


def harness_agreement(graph: Path, shape: list[int], threads: int, rounds: int = 3, seconds: int = 5) -> dict:
    """benchmark_app and our harness alternated ``rounds`` times on one graph (drift hits both); the ratio of
    the medians of the per-round figures."""
    app, ours, command = [], [], None
    for _ in range(rounds):
        result = benchmark_app(graph, shape, threads, seconds)
        if not result or result["median_ms"] is None:
            return {"benchmark_app": result, "ratio": None}
        app.append(result["median_ms"])
        command = result["command"]
        ours.append(harness_median(graph, shape, threads, seconds))
    return {
        "ours_p50_ms": ours,
        "benchmark_app_median_ms": app,
        "benchmark_app_command": command,
        "ratio": float(np.median(ours) / np.median(app)),
    }


def harness_only(graph: str) -> None:
    """``backends_bench.py harness GRAPH.onnx``: only the agreement with benchmark_app, at batch 1 and every core."""
    import onnx

    from ddnn_deploy.measure.environment import capture

    path = Path(graph)
    dims = onnx.load(str(path), load_external_data=False).graph.input[0].type.tensor_type.shape.dim
    shape = [1, *(d.dim_value for d in dims[1:])]
    threads = os.cpu_count() or 1
    agreement = {"graph": path.name, "shape": shape, **harness_agreement(path, shape, threads)}
    print("harness vs benchmark_app:", agreement)
    save_result(f"backends-harness-{path.stem}", {"threads": threads, "environment": capture("openvino", threads),
                                                  "harness_vs_benchmark_app": agreement})  # fmt: skip


def main(name: str, depths: str | None = None) -> None:
    import openvino as ov

    from ddnn_deploy import export
    from ddnn_deploy.convert import convert_weights
    from ddnn_deploy.formats.manifest import read_manifest
    from ddnn_deploy.measure.environment import capture
    from ddnn_deploy.quantize import calibrate
    from ddnn_deploy.runners.openvino_runner import has_native_bf16

    work = Path(tempfile.mkdtemp(prefix=f"ddnn-backends-{name}-"))
    threads = os.cpu_count() or 1
    native_bf16 = has_native_bf16(ov.Core())
    try:
        if name == "demo":
            ckpt, dataset, samples = ROOT / "models" / "fmnist-resnet20-ddnn.pt", None, 512
        else:
            ckpt, dataset, samples = work / f"{name}.pt", "random", 32
            convert_weights(arch=name, out=ckpt)
        export(ckpt, work / "a", depths=depths, simplify=True, log=print)
        calibrate(work / "a", dataset=dataset, samples=samples, eval_samples=None, log=print, max_drop=100.0)
        manifest = read_manifest(work / "a").to_json_dict()
        rows = []
        for depth in sorted({a["depth"] for a in manifest["artifacts"] if a["kind"] == "depth"}):
            paths = _paths(work / "a", manifest, depth, threads, native_bf16)
            per_round = 100 if name == "demo" else 5
            medians = interleaved(paths, rounds=10, per_round=per_round)
            base = medians["onnxruntime fp32"]
            rows.append(
                {"depth": depth, "median_ms": medians, "speedup_vs_ort_fp32": {k: base / v for k, v in medians.items()}}
            )
            print(depth, {k: f"{v:.3f} ms ({base / v:.2f}x)" for k, v in medians.items()})
            for _, keep in paths.values():
                if hasattr(keep, "deactivate"):
                    keep.deactivate()
        full = max(r["depth"] for r in rows)
        graph = (
            work
            / "a"
            / next(
                a["path"]
                for a in manifest["artifacts"]
                if a["kind"] == "depth" and a["depth"] == full and a["precision"] == "fp32"
            )
        )
        shape = [1, *manifest["input"]["shape"][1:]]
        agreement = {"depth": full, **harness_agreement(graph, shape, threads)}
        print("harness vs benchmark_app:", agreement)
        result = {
            "model": name,
            "threads": threads,
            "batch": 1,
            "native_bf16": native_bf16,
            "environment": capture("openvino", threads),
            "latency": rows,
            "harness_vs_benchmark_app": agreement,
            "accuracy": accuracy(work / "a", manifest, threads, native_bf16) if name == "demo" else None,
        }
        save_result(f"backends-{name}", result)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    if sys.argv[1] == "harness":
        harness_only(sys.argv[2])
    else:
        main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else None)
