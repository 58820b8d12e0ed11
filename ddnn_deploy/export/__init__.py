"""Export: per-depth ONNX graphs, the selector graph, onnxsim in a child process, parity, manifest."""

from .api import export

__all__ = ["export"]
