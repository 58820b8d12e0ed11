"""One place that turns a back-end name and a graph file into a Runner (bench workers and the runtime)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

GRAPH_BACKENDS = ("onnxruntime", "openvino", "tensorrt")


def graph_runner(
    backend: str,
    file: str | Path,
    *,
    precision: str,
    provider: str = "cpu",
    threads: int | None = None,
    onnx_sha256: str | None = None,
    max_batch: int = 1,
    graph_precision: str = "fp32",
    engine_cache: str | Path | None = None,
    batch_sizes: Sequence[int] | None = None,
    hint: str = "latency",
    selector_depths: Sequence[int] | None = None,
) -> Any:
    """A runner for an exported ONNX graph on ``backend`` (onnxruntime, openvino or tensorrt); nothing loads until
    ``activate``. ``precision`` is what is measured; ``graph_precision`` what the file holds (TensorRT builds FP16
    engines from an FP32 graph with its builder flag, OpenVINO BF16 from it with its precision hint).
    ``selector_depths``: the depths of a selector graph, checked before every call on every back-end."""
    if backend == "onnxruntime":
        from .onnxruntime_runner import OrtRunner

        runner: Any = OrtRunner(
            file, provider=provider, threads=threads, precision=precision, engine_cache=engine_cache
        )
    elif backend == "openvino":
        from .openvino_runner import OvRunner

        runner = OvRunner(file, precision=precision, threads=threads, hint=hint, engine_cache=engine_cache)
    elif backend == "tensorrt":
        from .tensorrt_runner import TrtRunner

        runner = TrtRunner(
            file,
            precision=precision,
            cache_dir=engine_cache,
            onnx_sha256=onnx_sha256,
            max_batch=max_batch,
            batch_sizes=batch_sizes,
            graph_precision=graph_precision,
        )
    else:
        raise ValueError(f"no graph runner for back-end {backend!r}; choose one of {', '.join(GRAPH_BACKENDS)}")
    runner.selector_depths = sorted(selector_depths) if selector_depths is not None else None
    return runner
