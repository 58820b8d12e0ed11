"""DepthBatchNorm2d: a BatchNorm2d that normalises with the running depth's own statistics.

Sub-nets that share weights do not share activation statistics. ``DepthNet.forward`` (in eval mode)
publishes the statistics of the depth it runs in a context variable for the duration of the call;
every ``DepthBatchNorm2d`` that is itself in eval mode and finds its own entry there normalises with
those instead of its registered buffers. Nothing on the module is mutated, so one model may run
different depths from several threads at once, and the registered buffers (the state_dict) stay the
shared statistics. Training mode (batch statistics) never looks at the context variable.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar

import torch
import torch.nn.functional as F
from torch import nn

# BN module -> (running_mean, running_var) that replaces its buffers during one DepthNet forward
BNOverrides = Mapping[nn.Module, "tuple[torch.Tensor, torch.Tensor]"]
_OVERRIDES: ContextVar[BNOverrides | None] = ContextVar("ddnn_depth_bn_overrides", default=None)


@contextmanager
def bn_overrides(overrides: BNOverrides | None) -> Iterator[None]:
    """Make ``overrides`` the statistics that eval-mode ``DepthBatchNorm2d`` modules use inside the block."""
    token = _OVERRIDES.set(overrides)
    try:
        yield
    finally:
        _OVERRIDES.reset(token)


class DepthBatchNorm2d(nn.BatchNorm2d):
    """``nn.BatchNorm2d`` (same parameters, buffers and state_dict keys) that, in eval mode, uses the
    statistics ``DepthNet.forward`` published for the depth being run, when there are any."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            overrides = _OVERRIDES.get()
            stats = overrides.get(self) if overrides is not None else None
            if stats is not None:
                mean, var = stats
                return F.batch_norm(x, mean, var, self.weight, self.bias, False, 0.0, self.eps)
        return super().forward(x)
