"""Accuracy of every depth of a torch DepthNet on a numpy dataset (top-1/top-5, per-depth BN)."""

from __future__ import annotations

from typing import Mapping

import numpy as np
import torch

from .data import ImageDataset
from .models import DepthNet, apply_bn_stats
from .spec import DepthConfig


def topk_correct(logits: torch.Tensor, labels: torch.Tensor, k: int) -> int:
    k = min(k, logits.shape[1])
    top = logits.topk(k, dim=1).indices
    return int((top == labels[:, None]).any(dim=1).sum())


@torch.no_grad()
def evaluate(model: DepthNet, dataset: ImageDataset, depths: list[DepthConfig], *,
             bn_stats: Mapping[str, Mapping[str, torch.Tensor]] | None = None, batch_size: int = 500,
             device: torch.device | str = "cpu") -> dict[str, dict[str, float]]:
    """``{"2-2-2": {"top1": %, "top5": %, "n": count}}``; a depth's own BN stats are used when given."""
    was_training = model.training
    model.eval()
    results: dict[str, dict[str, float]] = {}
    try:
        for config in depths:
            if bn_stats and str(config) in bn_stats:
                apply_bn_stats(model, bn_stats[str(config)])
            top1 = top5 = seen = 0
            for inputs, labels in dataset.batches(batch_size):
                logits = model(torch.from_numpy(inputs).to(device), config).float().cpu()
                target = torch.from_numpy(np.asarray(labels))
                top1 += topk_correct(logits, target, 1)
                top5 += topk_correct(logits, target, 5)
                seen += len(labels)
            results[str(config)] = {"top1": 100.0 * top1 / max(seen, 1), "top5": 100.0 * top5 / max(seen, 1),
                                    "n": seen}
    finally:
        model.train(was_training)
    return results
