"""One Runner per back-end (onnxruntime, TensorRT, torch); each imports its library lazily."""

from .base import Runner
from .onnxruntime_runner import OrtRunner

__all__ = ["OrtRunner", "Runner"]
