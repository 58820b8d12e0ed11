"""build_model(arch, ...): the one place that maps architecture names to torch modules."""

from __future__ import annotations

from ..spec import arch_spec
from .base import DepthNet
from .cifar_resnet import CifarResNet
from .resnet import ResNet
from .vgg import VGG

_FAMILIES = {"resnet": ResNet, "cifar_resnet": CifarResNet, "vgg": VGG}


def build_model(
    arch: str, *, num_classes: int = 1000, in_channels: int = 3, input_size: int = 224, width: int | None = None
) -> DepthNet:
    """A randomly initialised depth-level dynamic network of architecture ``arch``."""
    spec = arch_spec(arch)
    return _FAMILIES[spec.family](
        arch, num_classes=num_classes, in_channels=in_channels, input_size=input_size, width=width
    )
