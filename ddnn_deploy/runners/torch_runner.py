"""torch runner: the reference, straight from the checkpoint (the model at the depth, with its own BN statistics)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..errors import optional_import
from .base import Runner


class TorchRunner(Runner):
    name = "torch"

    def __init__(self, ckpt: str | Path, depth: int, *, threads: int | None = None, device: str = "cpu") -> None:
        super().__init__()
        self.ckpt, self.depth, self.threads, self.device = Path(ckpt), depth, threads, device

    def _activate(self) -> None:
        torch = optional_import("torch", "the torch runner")
        from ..checkpoint import load_checkpoint

        if self.threads:
            torch.set_num_threads(self.threads)
        # build(depth) checks the depth against the checkpoint's table and makes it the default depth
        self.model = load_checkpoint(self.ckpt).build(self.depth).to(self.device)
        self.torch = torch

    def _infer(self, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        with self.torch.no_grad():
            x = self.torch.from_numpy(feed["input"]).to(self.device)
            return [self.model(x).cpu().numpy()]

    def info(self) -> dict[str, Any]:
        torch = optional_import("torch", "the torch runner")
        return {"backend": self.name, "torch": str(torch.__version__), "device": self.device}
