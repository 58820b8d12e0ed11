"""onnxruntime runner: CPU execution provider with explicit threads; CUDA / TensorRT EPs when present."""

from __future__ import annotations

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


class OrtRunner(Runner):
    name = "onnxruntime"

    def __init__(
        self, path: str | Path, *, provider: str = "cpu", threads: int | None = None, graph_optimization: str = "all"
    ) -> None:
        super().__init__()
        self.path = Path(path)
        self.provider = provider
        self.threads = threads
        self.graph_optimization = graph_optimization
        self.session: Any = None

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
        providers = [wanted] if wanted == "CPUExecutionProvider" else [wanted, "CPUExecutionProvider"]
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

    def _deactivate(self) -> None:
        self.session = None

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
        }
