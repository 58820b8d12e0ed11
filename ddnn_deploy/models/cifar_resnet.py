"""CIFAR ResNets (6n+2: 20/32/44/56/110) as depth-level dynamic networks.

He et al.'s CIFAR design: a 3x3 stem, three stages of 16/32/64 channels (scaled by ``width``),
n basic blocks each, and the parameter-free "option A" shortcut (subsample + zero channel
padding), which is what the published MAC counts (ResNet-56: 125.5 M) assume.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..spec import arch_spec
from .base import DepthNet
from .batchnorm import DepthBatchNorm2d


class PadShortcut(nn.Module):
    """Option-A shortcut: take every other pixel and zero-pad the new channels."""

    def __init__(self, extra_channels: int):
        super().__init__()
        self.extra_channels = extra_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        half = self.extra_channels // 2
        return F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, half, self.extra_channels - half))


class CifarBasicBlock(nn.Module):
    def __init__(self, inplanes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = DepthBatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = DepthBatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or inplanes != planes:
            self.shortcut = PadShortcut(planes - inplanes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class CifarResNet(DepthNet):
    stage_names = ("layer1", "layer2", "layer3")

    def __init__(
        self, arch: str, *, num_classes: int = 10, in_channels: int = 3, input_size: int = 32, width: int | None = None
    ):
        super().__init__()
        self.spec = arch_spec(arch)
        self.input_size = input_size
        base = width or 16
        self.conv1 = nn.Conv2d(in_channels, base, 3, stride=1, padding=1, bias=False)
        self.bn1 = DepthBatchNorm2d(base)
        self.relu = nn.ReLU(inplace=True)
        inplanes = base
        for index, (name, blocks) in enumerate(zip(self.stage_names, self.spec.full.blocks)):
            planes = base * 2**index
            stride = 1 if index == 0 else 2
            layers = [CifarBasicBlock(inplanes, planes, stride)]
            layers += [CifarBasicBlock(planes, planes) for _ in range(blocks - 1)]
            setattr(self, name, nn.Sequential(*layers))
            inplanes = planes
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(inplanes, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.bn1(self.conv1(x)))

    def head(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.avgpool(x), 1))
