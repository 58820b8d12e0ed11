"""The training task: one module that runs every depth on a batch and returns named loss parts.

Wrapping all forwards in ONE ``forward`` call keeps DistributedDataParallel happy (one forward,
one backward per step) and keeps the loss a pure function of the nets' outputs.
"""

from __future__ import annotations

import torch
from torch import nn

from ..models import DepthNet
from ..spec import DepthConfig
from .losses import distill_loss


class DistillTask(nn.Module):
    """Runs the full-net and the sub-nets (deepest first) and computes the mode's loss."""

    def __init__(
        self,
        model: DepthNet,
        depths: list[DepthConfig],
        *,
        mode: str,
        kl_weight: float,
        at_weight: float,
        temperature: float,
        attention_power: int = 1,
        stage_combine: str = "sum",
        ipkd_hard_labels: bool = False,
    ):
        super().__init__()
        self.model = model
        # Deepest first: logits[0] is the teacher (the full-net), ipkd-ta's assistants follow in order.
        self.depths = sorted(depths, key=lambda c: (-model.spec.depth_of(c), c.blocks))
        self.mode, self.kl_weight, self.at_weight, self.temperature = mode, kl_weight, at_weight, temperature
        self.options = {"attention_power": attention_power, "stage_combine": stage_combine,
                        "ipkd_hard_labels": ipkd_hard_labels}  # fmt: skip

    def forward(self, images: torch.Tensor, target: torch.Tensor):
        want_features = self.mode == "ekd"
        outputs = self.model.forward_many(images, self.depths, return_features=want_features)  # shared prefix once
        logits = [o[0] for o in outputs] if want_features else outputs
        features = [o[1] for o in outputs] if want_features else None
        parts = distill_loss(
            self.mode,
            logits,
            features,
            target,
            kl_weight=self.kl_weight,
            at_weight=self.at_weight,
            temperature=self.temperature,
            **self.options,
        )
        return parts, logits
