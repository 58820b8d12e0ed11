"""``bench``: measure every exported depth on a device profile, one child process per (depth, precision)."""

from __future__ import annotations

import datetime as _dt
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from .. import __version__
from ..errors import MissingDependencyError, UsageError
from .artifacts import load_manifest
from .environment import capture, warnings_for
from .profiles import DeviceProfile, get_profile
from .results import FORMAT, VERSION, save_results

_BACKEND_PACKAGES = {
    "onnxruntime": ("onnxruntime", "pip install onnxruntime (CPU) or onnxruntime-gpu"),
    "tensorrt": ("tensorrt", "pip install 'ddnn-deploy[trt]' (on JetPack: the system python3-libnvinfer; "
                             "create the venv with --system-site-packages)"),
    "torch": ("torch", "pip install torch==2.13.0"),
}


def check_backend(profile: DeviceProfile) -> None:
    """Stop early, in one line, when the profile's back-end is not installed."""
    import importlib.util

    module, hint = _BACKEND_PACKAGES[profile.backend]
    if importlib.util.find_spec(module) is None:
        raise MissingDependencyError(f"device profile '{profile.name}' needs {module}, which is not installed: {hint}")
    if profile.backend == "tensorrt" and not any(importlib.util.find_spec(m) for m in ("cuda", "pycuda")):
        raise MissingDependencyError(f"device profile '{profile.name}' needs cuda-python or pycuda for device "
                                     "buffers: pip install cuda-python")


def _run_worker(job: dict[str, Any], timeout: float) -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory(prefix="ddnn-bench-") as tmp:
        job_path, result_path = Path(tmp) / "job.json", Path(tmp) / "result.json"
        job_path.write_text(json.dumps(job))
        env = {**os.environ}
        if job.get("threads"):
            env["OMP_NUM_THREADS"] = str(job["threads"])
        try:
            proc = subprocess.run([sys.executable, "-m", "ddnn_deploy.bench.worker", str(job_path),
                                   str(result_path)], capture_output=True, text=True, timeout=timeout, env=env)
            error = None if result_path.exists() else (
                f"worker died (exit {proc.returncode}): " + (proc.stderr.strip().splitlines() or ["no message"])[-1])
        except subprocess.TimeoutExpired:
            error = f"worker timed out after {timeout:.0f} s"
        if error is None:
            return json.loads(result_path.read_text())
    return [{"batch": b, "status": "error", "error": error[:500], "latency_ms": None, "throughput": None,
             "accuracy": None, "memory_mb": None} for b in job["batch_sizes"]]


def bench(artifacts: str | Path, *, device: str = "x86-cpu", profiles_file: str | Path | None = None,
          dataset: str | None = None, data_dir: str | None = None, limit: int | None = None,
          depths: list[int] | None = None, include_selector: bool = False, checkpoint: str | None = None,
          results_path: str | Path | None = None, engine_cache: str | Path | None = None,
          job_timeout: float = 1800.0, progress: bool = True, precisions: list[str] | None = None,
          log: Callable[[str], None] = lambda m: None) -> dict[str, Any]:
    """Measure every per-depth artifact (and the selector, if asked) on ``device``; write the results."""
    profile = get_profile(device, profiles_file)
    if precisions:
        unknown = sorted(set(precisions) - {"fp32", "fp16", "int8"})
        if unknown:
            raise UsageError(f"unknown precision {unknown}; choose from fp32, fp16, int8")
        profile = replace(profile, precisions=tuple(precisions))
    check_backend(profile)
    manifest = load_manifest(artifacts)
    if dataset == "none":
        dataset = None
    if dataset is not None:  # check it here, once, rather than failing in every worker
        from ..data import load_eval_data

        load_eval_data(dataset, data_dir=data_dir, input_shape=tuple(manifest["input"]["shape"][1:]),
                       class_names=manifest.get("class_names"), limit=1)
    env = capture(profile.backend, profile.resolved_threads() if profile.backend != "tensorrt" else None)
    for note in warnings_for(env):
        log(f"warning: {note}")
    wanted_kinds = ("depth", "selector") if include_selector else ("depth",)
    chosen = [a for a in manifest["artifacts"] if a["kind"] in wanted_kinds]
    if depths:
        known = sorted({a["depth"] for a in manifest["artifacts"] if a["kind"] == "depth"})
        missing = sorted(set(depths) - set(known))
        if missing:
            raise UsageError(f"the artifacts hold no depth {missing}; exported depths: {known}")
        chosen = [a for a in chosen if a["kind"] == "selector" or a["depth"] in depths]
    jobs = []
    for artifact in chosen:
        for precision in profile.precisions:
            if profile.backend != "tensorrt" and artifact["precision"] != precision:
                continue
            if profile.backend == "tensorrt" and precision == "int8" and (
                    artifact["precision"] != "int8" or artifact.get("target") != "tensorrt"):
                continue
            if profile.backend != "tensorrt" and precision == "int8" and artifact.get("target") == "tensorrt" and \
                    any(a.get("target") == "cpu" and a["depth"] == artifact["depth"] for a in chosen):
                continue  # on onnxruntime CPU prefer the CPU-target INT8 graph when both exist
            if profile.backend == "tensorrt" and precision != "int8":
                # FP16 engines: the FP16 graph where export made one (TensorRT 11 takes precision from the
                # graph), else the FP32 graph with TensorRT's FP16 builder flag (TensorRT 8.5-10)
                has_fp16 = any(a["precision"] == "fp16" and a["depth"] == artifact["depth"] for a in chosen)
                wanted = "fp16" if precision == "fp16" and has_fp16 else "fp32"
                if artifact["precision"] != wanted:
                    continue
            sel_depths = artifact["depth"] if artifact["kind"] == "selector" else [artifact["depth"]]
            for depth in sel_depths:
                jobs.append({"file": artifact["file"], "sha256": artifact["sha256"], "depth": depth,
                             "blocks": artifact["blocks"] if artifact["kind"] == "depth" else
                             artifact["blocks"][artifact["depth"].index(depth)],
                             "kind": artifact["kind"], "selector": artifact["kind"] == "selector",
                             "backend": profile.backend, "provider": profile.provider,
                             "threads": profile.resolved_threads() if profile.backend != "tensorrt" else None,
                             "precision": precision, "graph_precision": artifact["precision"],
                             "batch_sizes": list(profile.batch_sizes),
                             "static_batch": artifact.get("batch"), "timing": profile.timing.__dict__,
                             "input_shape": manifest["input"]["shape"][1:], "preprocess": manifest["preprocess"],
                             "accuracy_batch": profile.accuracy_batch, "checkpoint": checkpoint,
                             "class_names": manifest.get("class_names"),
                             "engine_cache": str(engine_cache) if engine_cache else None,
                             "dataset": {"name": dataset, "data_dir": data_dir, "limit": limit} if dataset else None})
    if not jobs:
        raise UsageError(f"no artifact matches profile '{profile.name}' (precisions {list(profile.precisions)}); "
                         "export or calibrate first")
    rows: list[dict[str, Any]] = []
    iterator: Any = jobs
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(jobs, desc=f"bench on {profile.name}", unit="depth", leave=False)
    for job in iterator:
        if hasattr(iterator, "set_postfix_str"):
            iterator.set_postfix_str(f"depth {job['depth']} {job['precision']}")
        for row in _run_worker(job, job_timeout):
            row = {"depth": job["depth"], "blocks": job["blocks"], "kind": job["kind"], "precision": job["precision"],
                   "backend": profile.backend, **row}
            lat = row.get("latency_ms")
            if lat and lat.get("cv", 0) > profile.max_cv:
                row["warning"] = f"latency spread is wide (cv {lat['cv']:.2f} > {profile.max_cv}); numbers are noisy"
                log(f"warning: depth {job['depth']} batch {row['batch']}: {row['warning']}")
            if row["status"] == "error":
                log(f"depth {job['depth']} {job['precision']} batch {row['batch']} failed: {row['error']}")
            rows.append(row)
    results = {
        "format": FORMAT, "version": VERSION, "tool_version": __version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "arch": manifest.get("arch"), "device": {"profile": profile.to_dict(), "environment": env},
        "settings": {"timing": profile.timing.__dict__, "batch_sizes": list(profile.batch_sizes),
                     "dataset": dataset, "limit": limit, "threads": env["threads"]},
        "artifacts": {"path": str(Path(artifacts)), "checkpoint_sha256": manifest["checkpoint"]["sha256"]},
        "rows": rows,
    }
    if results_path is not None:
        save_results(results, results_path)
    return results
