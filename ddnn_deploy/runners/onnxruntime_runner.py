"""onnxruntime runner: CPU execution provider with explicit threads; CUDA / TensorRT EPs when present.

On the GPU providers the precision measured sets the provider options (TensorRT's FP16 / INT8 modes, TF32 off for
FP32 rows), TensorRT's engines are cached under the artifacts, and ``compute_timer`` times inference on inputs
already on the GPU (I/O binding), beside the end-to-end latency with host copies.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ArtifactsError, MissingDependencyError, UsageError, optional_import
from .base import Runner

PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider", "tensorrt": "TensorrtExecutionProvider"}


def _first_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())  # onnxruntime's messages span lines
    return text[:300] + ("..." if len(text) > 300 else "")


def import_onnxruntime():
    return optional_import("onnxruntime")


def provider_list(provider: str, precision: str = "fp32", cache_dir: str | Path | None = None) -> list[Any]:
    """onnxruntime's ``providers=`` for a measurement: the wanted provider with its options first, then the ones
    behind it (TensorRT falls back to CUDA per node it cannot take, then the CPU)."""
    if provider == "cpu":
        return ["CPUExecutionProvider"]
    # FP32 rows run FP32: the CUDA provider otherwise lets cuDNN / cuBLAS use TF32 on Ampere and later
    cuda = ("CUDAExecutionProvider", {"device_id": 0, "use_tf32": 0 if precision == "fp32" else 1})
    if provider == "cuda":
        return [cuda, "CPUExecutionProvider"]
    options: dict[str, Any] = {
        "device_id": 0,
        "trt_fp16_enable": precision == "fp16",
        "trt_int8_enable": precision == "int8",  # with a QDQ graph: scales come from the graph
    }
    if cache_dir is not None:
        cache = str(Path(cache_dir))
        options.update(
            trt_engine_cache_enable=True,
            trt_engine_cache_path=cache,
            trt_timing_cache_enable=True,
            trt_timing_cache_path=cache,
        )
    return [("TensorrtExecutionProvider", options), cuda, "CPUExecutionProvider"]


class OrtRunner(Runner):
    name = "onnxruntime"

    def __init__(
        self,
        path: str | Path,
        *,
        provider: str = "cpu",
        threads: int | None = None,
        graph_optimization: str = "all",
        precision: str = "fp32",
        engine_cache: str | Path | None = None,
    ) -> None:
        super().__init__()
        self.path = Path(path)
        self.provider = provider
        self.threads = threads
        self.graph_optimization = graph_optimization
        self.precision = precision
        # TensorRT provider: its engines live in <engine_cache>/ort-tensorrt (default: engines/ beside the graph)
        self.engine_cache = Path(engine_cache) if engine_cache else self.path.parent / "engines"
        self.session: Any = None
        self._cache: Path | None = None

    def _activate(self) -> None:
        ort = import_onnxruntime()
        wanted = PROVIDERS.get(self.provider)
        if wanted is None:
            raise UsageError(f"unknown onnxruntime provider {self.provider!r}; choose one of {', '.join(PROVIDERS)}")
        available = ort.get_available_providers()
        if wanted not in available:
            raise MissingDependencyError(
                f"this onnxruntime has no {wanted} (it has {', '.join(available)}); "
                "install onnxruntime-gpu with CUDA/TensorRT libraries for GPU providers"
            )
        options = ort.SessionOptions()
        if self.threads:
            options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = {
            "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
            "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "none": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        }[self.graph_optimization]
        cache = None
        if self.provider == "tensorrt":
            from .cache_ledger import check_cache

            cache = self.engine_cache / "ort-tensorrt"
            check_cache(cache)  # refuse engine files this tool did not write before onnxruntime loads them
        providers = provider_list(self.provider, self.precision, cache)
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=providers)
        except Exception as exc:  # noqa: BLE001 - onnxruntime's errors share no public base class
            raise ArtifactsError(
                f"onnxruntime cannot load {self.path.name}: {_first_line(exc)}; re-export the folder"
            ) from None
        active = self.session.get_providers()
        if wanted not in active:  # onnxruntime falls back to the CPU with only a log line: refuse that here
            raise MissingDependencyError(
                f"onnxruntime could not start {wanted} for {self.path.name} (it runs {', '.join(active)}): check the "
                "CUDA / cuDNN / TensorRT libraries that onnxruntime-gpu needs"
            )
        self.output_names = [o.name for o in self.session.get_outputs()]
        self._cache = cache
        if cache is not None and cache.is_dir():  # engines built while creating the session (static shapes): known
            from .cache_ledger import record_cache  # now, as OpenVINO's blobs are, for the next runner of the folder

            record_cache(cache)

    def _deactivate(self) -> None:
        self.session = None
        if self._cache is not None and self._cache.is_dir():
            from .cache_ledger import record_cache

            record_cache(self._cache)  # the engines onnxruntime built in this run are now known ones

    def compute_timer(self, feed: dict[str, np.ndarray]) -> Callable[[], object] | None:
        """GPU providers: inputs copied to the GPU once and outputs left there (I/O binding), so the timed call is
        the provider's inference and its synchronisation, without host copies. None on the CPU provider."""
        if self.provider == "cpu":
            return None
        return self.bound_call(feed, device="cuda")

    def bound_call(self, feed: dict[str, np.ndarray], device: str) -> Callable[[], object]:
        """One inference with its inputs bound once on ``device`` ('cuda' or 'cpu') and its outputs left there."""
        ort = import_onnxruntime()
        binding = self.session.io_binding()
        values = {
            name: ort.OrtValue.ortvalue_from_numpy(np.asarray(v, order="C"), device, 0) for name, v in feed.items()
        }
        for name, value in values.items():
            binding.bind_ortvalue_input(name, value)
        for name in self.output_names:
            binding.bind_output(name, device, 0)
        session = self.session

        def run() -> object:
            session.run_with_iobinding(binding)
            return binding

        return run

    def _infer(self, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        try:
            return self.session.run(self.output_names, feed)
        except Exception as exc:  # noqa: BLE001 - onnxruntime's errors share no public base class
            raise ArtifactsError(f"onnxruntime failed running {self.path.name}: {_first_line(exc)}") from None

    def info(self) -> dict[str, Any]:
        ort = import_onnxruntime()
        return {
            "backend": self.name,
            "onnxruntime": ort.__version__,
            # the provider that actually runs the graph (the wanted one: _activate refuses a silent fallback)
            "provider": self.session.get_providers()[0] if self.session is not None else PROVIDERS.get(self.provider),
            "threads": self.threads,
            **({"precision": self.precision} if self.provider != "cpu" else {}),
            **(
                {"timing": "end to end: host inputs and outputs; gpu compute: I/O binding, inputs on the GPU"}
                if self.provider != "cpu"
                else {}
            ),
        }
