"""BN recalibration per depth: re-estimate a depth's BN running statistics on training data.

Sub-nets share weights but not activation statistics. After training, each depth's statistics are
re-estimated on training images (as Once-for-All and US-Nets do), stored in the checkpoint, and
handed to the model with ``DepthNet.set_depth_bn_stats``: evaluation, export and the torch runner
all go through that one table.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from ..spec import DepthConfig
from .base import BN_BUFFERS, BNStats, DepthNet


def bn_state_names(model: DepthNet, depth: DepthConfig) -> list[str]:
    """Keys of the BN running statistics the sub-net ``depth`` uses."""
    return [k for k in model.active_state_names(depth) if k.rsplit(".", 1)[-1] in BN_BUFFERS]


def bn_stats_of(model: DepthNet, depth: DepthConfig) -> BNStats:
    """A copy of the shared BN running statistics (the registered buffers) that the sub-net ``depth`` uses."""
    state = model.state_dict()
    return {k: state[k].detach().clone() for k in bn_state_names(model, depth)}


@torch.no_grad()
def recalibrate_bn(
    model: DepthNet, depth: DepthConfig, batches: Iterable[torch.Tensor], device: torch.device | str = "cpu"
) -> BNStats:
    """Re-estimate the BN statistics of ``depth`` as exact averages over ``batches`` and return them.

    Running statistics are reset and accumulated with ``momentum=None`` (a cumulative mean), so the
    result does not depend on the order of the batches. The model runs with its shared BN layers
    (``shared_bn=True``: the per-depth table is bypassed), and its buffers, momentum and modes are
    restored afterwards: the model is left exactly as it was.
    """
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [(m.momentum, m.training, {k: getattr(m, k).clone() for k in BN_BUFFERS}) for m in bns]
    was_training = model.training
    model.eval()
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
        m.train()
    try:
        seen = 0
        for images in batches:
            model(images.to(device), depth, shared_bn=True)
            seen += 1
        if seen == 0:
            raise ValueError("BN recalibration needs at least one batch")
        return bn_stats_of(model, depth)
    finally:
        for m, (momentum, training, buffers) in zip(bns, saved):
            m.momentum = momentum
            m.train(training)
            for key, value in buffers.items():
                getattr(m, key).copy_(value)
        model.train(was_training)
