"""torch runner: the reference, straight from the checkpoint (the model at the depth, with its own BN statistics),
on the CPU or a CUDA GPU. On CUDA, FP32 rows run FP32 (TF32 off: PyTorch lets cuDNN use TF32 for convolutions
by default) and FP16 rows run the model in half precision."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import MissingDependencyError, UsageError, optional_import
from .base import Runner

PRECISIONS = ("fp32", "fp16")


def check_torch_device(device: str) -> None:
    """One line instead of a failed row per depth when the device is not there."""
    torch = optional_import("torch", "the torch runner")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise MissingDependencyError(
            f"torch {torch.__version__} sees no CUDA GPU: run this profile on a machine with one, with a CUDA build "
            "of torch (pip install torch --index-url https://download.pytorch.org/whl/cu126)"
        )


class TorchRunner(Runner):
    name = "torch"

    def __init__(
        self, ckpt: str | Path, depth: int, *, threads: int | None = None, device: str = "cpu", precision: str = "fp32"
    ) -> None:
        super().__init__()
        if precision not in PRECISIONS:
            raise UsageError(f"the torch runner measures {' or '.join(PRECISIONS)}, not {precision}")
        if precision == "fp16" and not device.startswith("cuda"):
            raise UsageError("the torch runner measures fp16 on CUDA only; use fp32 on the CPU")
        self.ckpt, self.depth, self.threads, self.device, self.precision = Path(ckpt), depth, threads, device, precision

    def _activate(self) -> None:
        torch = optional_import("torch", "the torch runner")
        from ..checkpoint import load_checkpoint

        check_torch_device(self.device)
        if self.threads:
            torch.set_num_threads(self.threads)
        if self.device.startswith("cuda"):
            torch.backends.cuda.matmul.allow_tf32 = False
            torch.backends.cudnn.allow_tf32 = self.precision != "fp32"
            torch.backends.cudnn.benchmark = True  # as TensorRT does: pick the fastest kernels per shape
        self.dtype = torch.float16 if self.precision == "fp16" else torch.float32
        # build(depth) checks the depth against the checkpoint's table and makes it the default depth
        self.model = load_checkpoint(self.ckpt).build(self.depth).to(self.device, self.dtype).eval()
        self.torch = torch

    def _infer(self, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        with self.torch.inference_mode():
            x = self.torch.from_numpy(np.ascontiguousarray(feed["input"])).to(self.device, self.dtype)
            return [self.model(x).float().cpu().numpy()]

    def timed(self, feed: dict[str, np.ndarray]) -> Callable[[], object]:
        """On CUDA: page-locked input, copy + forward + copy back per call, and the forward pass alone timed with
        CUDA events into ``compute_ms``. On the CPU: ``infer``."""
        if not self.device.startswith("cuda"):
            return super().timed(feed)
        torch = self.torch
        self.check_depth(feed)
        host = torch.from_numpy(np.ascontiguousarray(feed["input"])).to(self.dtype).pin_memory()
        out = torch.empty((host.shape[0], *self._output_shape(host)), dtype=torch.float32).pin_memory()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        self.compute_ms = []

        def run() -> object:
            with torch.inference_mode():
                x = host.to(self.device, non_blocking=True)
                start.record()
                y = self.model(x)
                end.record()
                out.copy_(y, non_blocking=True)
                torch.cuda.current_stream().synchronize()  # the copy back, queued after ``end``, is done
            self.compute_ms.append(start.elapsed_time(end))
            return out

        return run

    def _output_shape(self, host: Any) -> tuple[int, ...]:
        with self.torch.inference_mode():
            return tuple(self.model(host[:1].to(self.device)).shape[1:])

    def info(self) -> dict[str, Any]:
        torch = optional_import("torch", "the torch runner")
        info = {"backend": self.name, "torch": str(torch.__version__), "device": self.device}
        if self.device.startswith("cuda") and torch.cuda.is_available():
            info.update(
                gpu=torch.cuda.get_device_name(),
                precision=self.precision,
                tf32=self.precision != "fp32",
                timing="end to end: page-locked H2D + forward + D2H; gpu compute: CUDA events around the forward",
                gpu_memory_mb=torch.cuda.max_memory_allocated() / 2**20,
            )
        return info
