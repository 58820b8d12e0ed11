"""A standalone torch module for ONE depth: only its blocks, its own BN statistics, BN folded.

This is what gets exported: the per-depth ONNX graph holds only the weights its depth uses, so a
shallower depth is a smaller file. ``fold="none"`` keeps BN as an explicit per-channel affine
(``x * scale + shift``) after each unbiased convolution instead: the selector graph stores the raw
convolution weights once and lets onnxruntime fold each depth's affine at session start.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from ..models import DepthNet
from ..spec import DepthConfig


class ChannelAffine(nn.Module):
    """Inference-time BatchNorm as ``x * scale + shift`` (not a BatchNormalization node)."""

    def __init__(self, bn: nn.BatchNorm2d):
        super().__init__()
        scale = bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps)
        self.register_buffer("scale", scale.reshape(1, -1, 1, 1).clone())
        self.register_buffer("shift", (bn.bias.detach() - bn.running_mean * scale).reshape(1, -1, 1, 1).clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale + self.shift


def _conv_bn_pairs(module: nn.Module) -> list[tuple[nn.Module, str, str]]:
    """(parent, conv attribute, bn attribute) for every Conv2d directly followed by its BatchNorm2d."""
    pairs = []
    for parent in module.modules():
        children = dict(parent.named_children())
        names = list(children)
        for a, b in zip(names, names[1:]):
            if isinstance(children[a], nn.Conv2d) and isinstance(children[b], nn.BatchNorm2d):
                pairs.append((parent, a, b))
        for name, child in children.items():  # torchvision naming: conv1/bn1, conv2/bn2, ...
            if isinstance(child, nn.Conv2d) and name.startswith("conv"):
                bn_name = "bn" + name[4:]
                if isinstance(children.get(bn_name), nn.BatchNorm2d) and (parent, name, bn_name) not in pairs:
                    pairs.append((parent, name, bn_name))
    return pairs


class SubNet(nn.Module):
    """``forward(x) = model(x, depth)`` with only the depth's modules, in eval mode."""

    def __init__(self, model: DepthNet, depth: DepthConfig):
        super().__init__()
        self.net = model
        self.depth = depth

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x, self.depth)


def extract_subnet(model: DepthNet, depth: DepthConfig, *, fold: str = "conv") -> SubNet:
    """A deep copy of ``model`` cut down to ``depth``, with the depth's own BN statistics folded.

    The statistics are the ones ``model`` holds for ``depth`` (``DepthNet.set_depth_bn_stats``; the
    shared ones, with a warning, when it has none), so the result computes what ``model(x, depth)``
    computes in eval mode. ``fold="conv"`` folds BN into the preceding convolution; ``fold="none"``
    turns it into a ChannelAffine so the convolution weights stay exactly the checkpoint's.
    """
    if fold not in ("conv", "none"):
        raise ValueError(f"fold must be 'conv' or 'none', not {fold!r}")
    net = copy.deepcopy(model).eval()
    stats = model.depth_bn_stats(depth, warn=True)
    net.set_depth_bn_stats({})
    if stats:
        net.load_state_dict(stats, strict=False)  # the depth's statistics become the buffers that get folded
    for index, stage in enumerate(net.stages()):
        setattr(net, net.stage_names[index], nn.Sequential(*list(stage)[: depth.active(index)]))
    for parent, conv_name, bn_name in _conv_bn_pairs(net):
        conv, bn = getattr(parent, conv_name), getattr(parent, bn_name)
        if fold == "conv":
            setattr(parent, conv_name, fuse_conv_bn_eval(conv, bn))
            setattr(parent, bn_name, nn.Identity())
        else:
            setattr(parent, bn_name, ChannelAffine(bn))
    for p in net.parameters():
        p.requires_grad_(False)
    return SubNet(net, depth).eval()
