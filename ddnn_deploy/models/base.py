"""DepthNet: the shared base of every depth-level dynamic network.

A DepthNet is a stem, a list of stages (each an ``nn.Sequential`` of blocks) and a head.
``forward(x, depth)`` runs stage ``i``'s first ``depth.blocks[i]`` blocks (the slicing rule
of ``spec.DepthConfig.active``); there is no hidden "active sub-net" state.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..spec import ArchSpec, DepthConfig, resolve_depth


class DepthNet(nn.Module):
    """Base class. Subclasses set ``spec``, ``stage_names`` and implement ``stem``/``head``."""

    spec: ArchSpec
    stage_names: Sequence[str]

    def stages(self) -> list[nn.Sequential]:
        return [getattr(self, name) for name in self.stage_names]

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def head(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def stage_tail(self, x: torch.Tensor) -> torch.Tensor:
        """What runs after a stage's active blocks (VGG pools here); identity by default."""
        return x

    def resolve(self, depth: DepthConfig | int | str | None) -> DepthConfig:
        """``None`` means the full-net; numbers and ``"3-4-4-3"`` strings go through the table."""
        if depth is None:
            return self.spec.full
        if isinstance(depth, DepthConfig) and depth.fits(self.spec.full):
            return depth
        return resolve_depth(self.spec, depth)

    def forward(self, x: torch.Tensor, depth: DepthConfig | int | str | None = None, *,
                return_features: bool = False):
        """Logits of the sub-net ``depth``; with ``return_features`` also each stage's output."""
        config = self.resolve(depth)
        x = self.stem(x)
        features: list[torch.Tensor] = []
        for index, stage in enumerate(self.stages()):
            for block in stage[: config.active(index)]:
                x = block(x)
            x = self.stage_tail(x)
            features.append(x)
        logits = self.head(x)
        return (logits, features) if return_features else logits

    def active_modules(self, depth: DepthConfig | int | str | None) -> list[nn.Module]:
        """Every module the sub-net ``depth`` uses: stem, the active blocks, head."""
        config = self.resolve(depth)
        used: list[nn.Module] = [m for name, m in self.named_children() if name not in self.stage_names]
        for index, stage in enumerate(self.stages()):
            used.extend(stage[: config.active(index)])
        return used

    def active_state_names(self, depth: DepthConfig | int | str | None) -> list[str]:
        """state_dict keys (parameters and buffers) that the sub-net ``depth`` uses."""
        config = self.resolve(depth)
        names = []
        for key in self.state_dict():
            parts = key.split(".")
            if parts[0] in self.stage_names:
                stage = list(self.stage_names).index(parts[0])
                if int(parts[1]) >= config.active(stage):
                    continue
            names.append(key)
        return names

    def count_params(self, depth: DepthConfig | int | str | None = None) -> int:
        """Parameters the sub-net ``depth`` uses (shared weights counted once)."""
        return sum(p.numel() for m in self.active_modules(depth) for p in m.parameters())
