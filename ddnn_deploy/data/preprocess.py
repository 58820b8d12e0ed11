"""Preprocess: how uint8 images become the model's float input, and each dataset's default."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..spec import CIFAR10_NORMALIZATION, IMAGENET_NORMALIZATION, Normalization


@dataclass(frozen=True)
class Preprocess:
    """The model's input is ``(pixels * scale - mean) / std`` per channel, in ``layout``."""

    scale: float
    mean: tuple[float, ...]
    std: tuple[float, ...]
    layout: str = "NCHW"

    def apply(self, images: np.ndarray) -> np.ndarray:
        """uint8 NCHW images -> float32 model input."""
        mean = np.asarray(self.mean, dtype=np.float32).reshape(1, -1, 1, 1)
        std = np.asarray(self.std, dtype=np.float32).reshape(1, -1, 1, 1)
        return ((images.astype(np.float32) * np.float32(self.scale) - mean) / std).astype(np.float32)

    def to_dict(self) -> dict[str, Any]:
        """The ``preprocess`` entry of a checkpoint, a manifest or an ONNX graph's metadata."""
        return {"scale": self.scale, "mean": list(self.mean), "std": list(self.std), "layout": self.layout}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Preprocess:
        """The inverse of ``to_dict`` (the file's owner validates the entry before this)."""
        return cls(float(d["scale"]), tuple(d["mean"]), tuple(d["std"]), d.get("layout", "NCHW"))

    @classmethod
    def from_normalization(cls, norm: Normalization) -> Preprocess:
        """An architecture's default (``spec.ArchSpec.preprocess``) as a Preprocess."""
        return cls(norm.scale, tuple(norm.mean), tuple(norm.std), norm.layout)


# Each dataset's default; the ImageNet and CIFAR-10 statistics are the architecture registry's constants.
PREPROCESS: dict[str, Preprocess] = {
    "fashion-mnist": Preprocess(1 / 255, (0.2860,), (0.3530,)),
    "cifar10": Preprocess.from_normalization(CIFAR10_NORMALIZATION),
    "cifar100": Preprocess(1 / 255, (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    "imagefolder": Preprocess.from_normalization(IMAGENET_NORMALIZATION),
}
