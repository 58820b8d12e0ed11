"""OpenVINO runner: the per-depth ONNX graph read directly (``Core().read_model``) and compiled for the CPU.

Precisions: ``fp32`` (``INFERENCE_PRECISION_HINT`` f32, so an fp32 row is FP32 even where OpenVINO would pick
BF16 by default), ``bf16`` (the FP32 graph with the BF16 hint; only where the CPU has native BF16, otherwise the
row is skipped with the reason) and ``int8`` (the project's QDQ graphs; the layers left in float run in f32).
The timed call shares its input and output memory with OpenVINO (no copies). Compiled models are cached in
``<engine cache>/openvino`` with a ledger, like onnxruntime's TensorRT engines: a cache file ddnn-deploy did not
write is refused before OpenVINO could load it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ArtifactsError, UsageError, optional_import
from .base import PrecisionUnsupported, Runner

PRECISIONS = ("fp32", "bf16", "int8")
HINTS = ("latency", "throughput")


def import_openvino():
    return optional_import("openvino")


def has_native_bf16(core: Any, device: str = "CPU") -> bool:
    """OpenVINO reports BF16 among the CPU's optimisation capabilities where it has native BF16 (AVX512-BF16 or
    AMX); elsewhere a BF16 hint would be emulated or ignored, and the row would not be what it says."""
    try:
        return "BF16" in core.get_property(device, "OPTIMIZATION_CAPABILITIES")
    except Exception:  # noqa: BLE001 - a device that cannot say has no BF16 we can vouch for
        return False


def compile_config(precision: str, hint: str, threads: int | None, cache_dir: str | Path | None) -> dict[str, Any]:
    """The properties the model is compiled with."""
    if precision not in PRECISIONS:
        raise UsageError(f"OpenVINO measures {', '.join(PRECISIONS)}, not {precision}")
    if hint not in HINTS:
        raise UsageError(f"performance hint must be one of {', '.join(HINTS)}, not {hint!r}")
    config: dict[str, Any] = {
        "INFERENCE_PRECISION_HINT": "bf16" if precision == "bf16" else "f32",
        "PERFORMANCE_HINT": hint.upper(),
    }
    if threads:
        config["INFERENCE_NUM_THREADS"] = int(threads)
    if cache_dir is not None:
        config["CACHE_DIR"] = str(cache_dir)
    return config


class OvRunner(Runner):
    name = "openvino"

    def __init__(
        self,
        path: str | Path,
        *,
        precision: str = "fp32",
        threads: int | None = None,
        hint: str = "latency",
        engine_cache: str | Path | None = None,
        device: str = "CPU",
    ) -> None:
        super().__init__()
        compile_config(precision, hint, threads, None)  # bad settings fail here, not at activate
        self.path, self.precision, self.threads, self.hint, self.device = Path(path), precision, threads, hint, device
        self.cache = (Path(engine_cache) if engine_cache else self.path.parent / "engines") / "openvino"

    def _activate(self) -> None:
        ov = self._ov = import_openvino()
        from .cache_ledger import check_cache

        core = ov.Core()
        if self.precision == "bf16" and not has_native_bf16(core, self.device):
            raise PrecisionUnsupported(
                f"this {self.device} has no native BF16 (no AVX512-BF16 or AMX): bf16 rows need such a CPU"
            )
        check_cache(self.cache)
        self._core, self._static = core, {}
        self.compiled = self._compile(None)
        self.request = self.compiled.create_infer_request()
        self.outputs = list(self.compiled.outputs)
        self.version = ov.__version__ if hasattr(ov, "__version__") else ov.get_version()
        self.executed = str(self.compiled.get_property("INFERENCE_PRECISION_HINT"))

    def _compile(self, shapes: dict[str, tuple[int, ...]] | None) -> Any:
        """The graph compiled as exported (dynamic batch), or with ``shapes`` fixed, as ``benchmark_app -shape``
        does: OpenVINO's CPU plug-in runs a static shape faster (the demo's depth 20: 0.466 against 0.521 ms)."""
        from .cache_ledger import record_cache

        try:
            model = self._core.read_model(str(self.path))
            if shapes:
                model.reshape(shapes)
            config = compile_config(self.precision, self.hint, self.threads, self.cache)
            compiled = self._core.compile_model(model, self.device, config)
        except RuntimeError as exc:
            first = " ".join(str(exc).split())[:300]
            raise ArtifactsError(f"OpenVINO cannot load {self.path.name}: {first}; re-export the folder") from None
        record_cache(self.cache)  # OpenVINO wrote its blob while compiling: known from now on (other runners of
        # this folder in this process, e.g. the runtime's per-depth ones, check the folder after this one)
        return compiled

    def _deactivate(self) -> None:
        from .cache_ledger import record_cache

        self.request = self.compiled = self._shared = self._static = self._core = None
        if self.cache.is_dir():
            record_cache(self.cache)  # the blobs OpenVINO wrote in this run are now known ones

    def _bind(self, feed: dict[str, np.ndarray], request: Any = None) -> None:
        """Give the request its inputs as tensors over C-contiguous arrays (no copy; the caller keeps them alive).
        A 0-d input (the selector's depth) gets a tensor of its own, filled with its value."""
        ov = self._ov
        for name, array in feed.items():
            if array.ndim == 0:
                tensor = ov.Tensor(ov.Type(array.dtype), ov.Shape([]))
                tensor.data[...] = array
            else:
                tensor = ov.Tensor(array, shared_memory=True)
            (request or self.request).set_tensor(name, tensor)

    def _infer(self, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        arrays = {name: np.asarray(value, order="C") for name, value in feed.items()}
        self._bind(arrays)
        self._shared = arrays
        self.request.infer()
        # copies: the request reuses its output tensors on the next call
        return [np.array(self.request.get_output_tensor(i).data, copy=True) for i in range(len(self.outputs))]

    def timed(self, feed: dict[str, np.ndarray]) -> Callable[[], object]:
        """As ``benchmark_app`` runs: the graph compiled for this feed's shapes (once per shape), inputs and
        outputs shared with OpenVINO (no copies in or out)."""
        self.check_depth(feed)
        arrays = {name: np.asarray(value, order="C") for name, value in feed.items()}
        shapes = {name: tuple(a.shape) for name, a in arrays.items() if a.ndim}  # not the selector's 0-d depth
        key = tuple(sorted(shapes.items()))
        request = self._static[key][0] if key in self._static else self._compile(shapes).create_infer_request()
        self._bind(arrays, request)
        # this request's input tensors point into these arrays: they live as long as its binding does
        self._static[key] = (request, arrays)
        return request.infer

    def info(self) -> dict[str, Any]:
        return {
            "backend": self.name,
            "openvino": getattr(self, "version", None),
            "device": self.device,
            "precision": self.precision,
            "inference_precision": getattr(self, "executed", None),
            "hint": self.hint,
            "threads": self.threads,
        }
