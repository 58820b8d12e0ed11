"""VGG-11/13/16/19 with BatchNorm as depth-level dynamic networks.

Stages are split at the pooling layers; stage ``i`` runs its first ``blocks[i]`` 3x3
conv-BN-ReLU layers, then pools. The first conv of a stage changes the channel count, so
dropping later convs keeps shapes valid and VGG-11/13/16 are sub-nets of VGG-19.
Inputs of 64 px and more get torchvision's 4096-wide classifier; smaller ones (CIFAR,
Fashion-MNIST) the usual single linear layer after global pooling.
"""

from __future__ import annotations

import torch
from torch import nn

from ..spec import arch_spec
from .base import DepthNet
from .batchnorm import DepthBatchNorm2d

_CHANNELS = (64, 128, 256, 512, 512)


class ConvBNReLU(nn.Sequential):
    def __init__(self, in_channels: int, out_channels: int):
        super().__init__(
            nn.Conv2d(in_channels, out_channels, 3, padding=1), DepthBatchNorm2d(out_channels), nn.ReLU(inplace=True)
        )


class VGG(DepthNet):
    stage_names = ("stage1", "stage2", "stage3", "stage4", "stage5")

    def __init__(
        self,
        arch: str,
        *,
        num_classes: int = 1000,
        in_channels: int = 3,
        input_size: int = 224,
        width: int | None = None,
    ):
        super().__init__()
        self.spec = arch_spec(arch)
        self.input_size = input_size
        scale = (width or 64) / 64
        channels = [max(1, int(c * scale)) for c in _CHANNELS]
        inplanes = in_channels
        for name, blocks, planes in zip(self.stage_names, self.spec.full.blocks, channels):
            layers = [ConvBNReLU(inplanes, planes)] + [ConvBNReLU(planes, planes) for _ in range(blocks - 1)]
            setattr(self, name, nn.Sequential(*layers))
            inplanes = planes
        # ceil_mode keeps 28 px inputs alive through five poolings (28-14-7-4-2-1).
        self.pool = nn.MaxPool2d(2, 2, ceil_mode=True)
        if input_size >= 64:
            self.avgpool: nn.Module = nn.AdaptiveAvgPool2d((7, 7))
            self.classifier: nn.Module = nn.Sequential(
                nn.Linear(inplanes * 49, 4096),
                nn.ReLU(True),
                nn.Dropout(),
                nn.Linear(4096, 4096),
                nn.ReLU(True),
                nn.Dropout(),
                nn.Linear(4096, num_classes),
            )
        else:
            self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
            self.classifier = nn.Linear(inplanes, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)

    def stage_tail(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(x)

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def head(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(x), 1))
