"""BatchNorm statistics per depth: recalibration on training data, extraction and application.

Sub-nets share weights but not activation statistics. After training, each depth's BN running
statistics are re-estimated on training images (as Once-for-All and US-Nets do) and stored in the
checkpoint; evaluation and export load the depth's own statistics before running it.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from ..spec import DepthConfig
from .base import DepthNet

BNStats = dict[str, torch.Tensor]
_BN_BUFFERS = ("running_mean", "running_var", "num_batches_tracked")


def bn_state_names(model: DepthNet, depth: DepthConfig) -> list[str]:
    """Keys of the BN running statistics the sub-net ``depth`` uses."""
    return [k for k in model.active_state_names(depth) if k.rsplit(".", 1)[-1] in _BN_BUFFERS]


def bn_stats_of(model: DepthNet, depth: DepthConfig) -> BNStats:
    """A copy of the BN running statistics that the sub-net ``depth`` uses."""
    state = model.state_dict()
    return {k: state[k].detach().clone() for k in bn_state_names(model, depth)}


def apply_bn_stats(model: DepthNet, stats: BNStats) -> None:
    """Load a depth's BN statistics into the model (other buffers and all weights unchanged)."""
    state = model.state_dict()
    unknown = [k for k in stats if k not in state]
    if unknown:
        raise KeyError(f"BN statistics for unknown buffers: {unknown[:3]}")
    with torch.no_grad():
        for key, value in stats.items():
            state[key].copy_(value)


@torch.no_grad()
def recalibrate_bn(model: DepthNet, depth: DepthConfig, batches: Iterable[torch.Tensor],
                   device: torch.device | str = "cpu") -> BNStats:
    """Re-estimate the BN statistics of ``depth`` as exact averages over ``batches``.

    Running statistics are reset and accumulated with ``momentum=None`` (a cumulative mean),
    so the result does not depend on the order of the batches. Returns the new statistics.
    """
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [(m.momentum, m.training) for m in bns]
    was_training = model.training
    model.eval()
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
        m.train()
    try:
        seen = 0
        for images in batches:
            model(images.to(device), depth)
            seen += 1
        if seen == 0:
            raise ValueError("BN recalibration needs at least one batch")
    finally:
        for m, (momentum, training) in zip(bns, saved):
            m.momentum = momentum
            m.train(training)
        model.train(was_training)
    return bn_stats_of(model, depth)
