"""ImageNet ResNet-18/34/50/101 as depth-level dynamic networks, with torchvision's module names.

A torchvision or timm ResNet state_dict loads unchanged (``conv1, bn1, layer1..layer4, fc``,
``downsample``). The stride of a bottleneck sits on its 3x3 convolution (ResNet v1.5, as torchvision).
"""

from __future__ import annotations

import torch
from torch import nn

from ..spec import arch_spec
from .base import DepthNet
from .batchnorm import DepthBatchNorm2d


def conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


def conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = DepthBatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = DepthBatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = conv1x1(inplanes, planes)
        self.bn1 = DepthBatchNorm2d(planes)
        # The stride for downsampling sits on the 3x3 convolution (torchvision's ResNet v1.5).
        self.conv2 = conv3x3(planes, planes, stride)
        self.bn2 = DepthBatchNorm2d(planes)
        self.conv3 = conv1x1(planes, planes * self.expansion)
        self.bn3 = DepthBatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


def make_stage(
    block: type[BasicBlock] | type[Bottleneck], inplanes: int, planes: int, blocks: int, stride: int
) -> nn.Sequential:
    """Build one stage; only its first block changes resolution or channels."""
    downsample = None
    if stride != 1 or inplanes != planes * block.expansion:
        downsample = nn.Sequential(
            conv1x1(inplanes, planes * block.expansion, stride), DepthBatchNorm2d(planes * block.expansion)
        )
    layers = [block(inplanes, planes, stride, downsample)]
    layers += [block(planes * block.expansion, planes) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)


_BLOCKS = {"resnet18": BasicBlock, "resnet34": BasicBlock, "resnet50": Bottleneck, "resnet101": Bottleneck}


class ResNet(DepthNet):
    stage_names = ("layer1", "layer2", "layer3", "layer4")

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
        block = _BLOCKS[arch]
        base = width or 64
        self.conv1 = nn.Conv2d(in_channels, base, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = DepthBatchNorm2d(base)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        inplanes = base
        for index, (name, blocks) in enumerate(zip(self.stage_names, self.spec.full.blocks)):
            planes = base * 2**index
            setattr(self, name, make_stage(block, inplanes, planes, blocks, 1 if index == 0 else 2))
            inplanes = planes * block.expansion
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(inplanes, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        return self.maxpool(self.relu(self.bn1(self.conv1(x))))

    def head(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.avgpool(x), 1))
