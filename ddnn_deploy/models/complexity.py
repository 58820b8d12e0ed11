"""Parameters and MACs per depth. MACs come from torch's own FLOP counter (conv/matmul FLOPs / 2)."""

from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode

from ..spec import DepthConfig
from .base import DepthNet


@torch.no_grad()
def count_macs(model: DepthNet, depth: DepthConfig, input_shape: tuple[int, int, int]) -> int:
    """Multiply-accumulates of one image through the sub-net ``depth`` (convolutions and linears)."""
    was_training = model.training
    model.eval()
    try:
        x = torch.zeros((1, *input_shape), device=next(model.parameters()).device)  # where the model is
        with FlopCounterMode(display=False) as counter:
            model(x, depth)
        return int(counter.get_total_flops()) // 2
    finally:
        model.train(was_training)
