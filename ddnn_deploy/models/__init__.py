"""Depth-level dynamic networks (torch): ResNet, CIFAR ResNet, VGG; BN per depth; complexity."""

from .base import DepthNet, SharedBNWarning
from .batchnorm import DepthBatchNorm2d
from .bn import bn_stats_of, recalibrate_bn
from .complexity import count_macs
from .registry import build_model

__all__ = [
    "DepthBatchNorm2d",
    "DepthNet",
    "SharedBNWarning",
    "bn_stats_of",
    "build_model",
    "count_macs",
    "recalibrate_bn",
]
