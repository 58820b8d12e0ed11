"""One (depth, precision) measurement in its own process: ``python -m ddnn_deploy.measure.worker JOB RESULT``.

A crash here (a sticky CUDA error, a segfault in a back-end) kills only this process; the sweep
records a failed row and goes on. Latency, throughput at each batch size, accuracy through the same
runner, and peak memory are written as JSON to RESULT.
"""

from __future__ import annotations

import json
import resource
import sys
import traceback
from pathlib import Path
from typing import Any

import numpy as np

from ..runners.accuracy import runner_accuracy
from ..runners.base import PrecisionUnsupported
from ..runners.factory import graph_runner
from .energy import EnergyReading
from .plan import Job
from .timing import latency_stats, measure


def _status_mb(field: str) -> float:
    """A memory field of /proc/self/status (VmRSS, VmHWM) in MB; ru_maxrss where /proc is missing."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _rss_mb() -> float:
    return _status_mb("VmRSS")


def make_runner(job: Job):
    if job.backend == "torch":
        from ..runners.torch_runner import TorchRunner

        device = "cuda" if job.provider == "cuda" else "cpu"
        return TorchRunner(job.checkpoint, job.depth, threads=job.threads, device=device, precision=job.precision)
    return graph_runner(
        job.backend,
        job.file,
        precision=job.precision,
        provider=job.provider,
        threads=job.threads,
        onnx_sha256=job.sha256,
        max_batch=max(job.batch_sizes),
        batch_sizes=job.batch_sizes,
        hint=job.hint,
        selector_depths=job.selector_depths,
        graph_precision=job.graph_precision,
        engine_cache=job.engine_cache,
    )


def accuracy(runner: Any, job: Job) -> dict[str, Any] | None:
    if job.dataset is None:
        return None
    from ..data import Preprocess, load_eval_data

    data = load_eval_data(
        job.dataset.name,
        data_dir=job.dataset.data_dir,
        input_shape=tuple(job.input_shape),
        class_names=job.class_names,
        limit=job.dataset.limit,
    )
    data.preprocess = Preprocess.from_dict(job.preprocess)
    return runner_accuracy(
        runner, data, batch=job.accuracy_batch, static_batch=job.static_batch, extra_feed=job.feed_extra() or None
    )


def _peak_rss_mb() -> float:
    """This process's resident high-water mark (VmHWM). Not ru_maxrss: Linux carries that across
    fork + exec, so a worker started by a big parent (torch, a loaded model) would report the parent's."""
    return _status_mb("VmHWM")


def _time_batch(runner: Any, job: Job, batch: int, rng: np.random.Generator) -> dict[str, Any]:
    if job.static_batch and batch != job.static_batch:
        return {
            "batch": batch,
            "status": "skipped",
            "error": f"graph has static batch {job.static_batch}",
            "latency_ms": None,
            "throughput": None,
        }
    feed = {job.input_name: rng.standard_normal((batch, *job.input_shape)).astype(np.float32), **job.feed_extra()}
    energy = EnergyReading(job.backend, job.provider)  # RAPL / NVML / tegrastats, read around the timed loop
    stats, samples = measure(runner.timed(feed), job.timing, on_start=energy.start, on_stop=energy.stop)
    row = {
        "batch": batch,
        "status": "ok",
        "error": None,
        "latency_ms": stats,
        "throughput": batch / (stats["mean"] / 1e3),
        "samples_ms": samples,
        "energy": energy.result(len(samples), batch),
    }
    compute = gpu_compute(runner, feed, job, len(samples))
    if compute is not None:
        row["gpu_compute_ms"] = compute
    return row


def gpu_compute(runner: Any, feed: dict[str, Any], job: Job, timed_calls: int) -> dict[str, float] | None:
    """The GPU's own time per call, beside the end-to-end latency (as trtexec reports both): CUDA events recorded
    during the timed calls (TensorRT, torch), or a second timed pass on device-resident inputs (onnxruntime's
    I/O binding); None on the CPU."""
    if runner.compute_ms:
        return latency_stats(runner.compute_ms[-timed_calls:])  # the timed calls, not the warm-up
    timer = runner.compute_timer(feed)
    if timer is None:
        return None
    stats, _ = measure(timer, job.timing)
    return stats


def run_job(job: Job) -> list[dict[str, Any]]:
    baseline = _rss_mb()
    runner = make_runner(job)
    rng = np.random.default_rng(0)
    with runner:
        rows = [_time_batch(runner, job, batch, rng) for batch in job.batch_sizes]
        peak = _peak_rss_mb()  # before any dataset is loaded: the process running the model
        info = runner.info()  # after inference, so GPU memory includes the buffers and workspace
        acc, accuracy_error = _accuracy_or_error(runner, job)
    memory = {
        "peak_rss_mb": peak,
        "baseline_rss_mb": baseline,
        "runner_mb": max(0.0, peak - baseline),
        "peak_rss_with_eval_data_mb": _peak_rss_mb(),
        **({"gpu_mb": info["gpu_memory_mb"]} if "gpu_memory_mb" in info else {}),
    }
    for row in rows:
        row.update({"accuracy": acc, "memory_mb": memory, "runner": info})
        if accuracy_error is not None:
            row["accuracy_error"] = accuracy_error
    return rows


def _accuracy_or_error(runner: Any, job: Job) -> tuple[dict[str, Any] | None, str | None]:
    """Accuracy, or why it failed: a failed accuracy pass must never erase the latency rows already measured."""
    try:
        return accuracy(runner, job), None
    except Exception as exc:  # noqa: BLE001 - recorded beside the latency, which stays valid
        return None, f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ''}"


def error_rows(batch_sizes: list[int], message: str, **extra: Any) -> list[dict[str, Any]]:
    """One failed row per batch size (the sweep records them and goes on)."""
    return [
        {
            "batch": b,
            "status": "error",
            "error": message[:500],
            "latency_ms": None,
            "throughput": None,
            "accuracy": None,
            "memory_mb": None,
            **extra,
        }
        for b in batch_sizes
    ]


def main(job_path: str, result_path: str) -> int:
    job = Job.model_validate_json(Path(job_path).read_text())
    try:
        rows = run_job(job)
        code = 0
    except PrecisionUnsupported as exc:  # e.g. OpenVINO's bf16 on a CPU without BF16: skipped, with the reason
        rows = [{**row, "status": "skipped"} for row in error_rows(job.batch_sizes, str(exc))]
        code = 0
    except BaseException as exc:  # noqa: BLE001 - report every failure as a failed row
        message = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
        rows = error_rows(job.batch_sizes, message, traceback=traceback.format_exc()[-2000:])
        code = 1
    Path(result_path).write_text(json.dumps(rows))
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
