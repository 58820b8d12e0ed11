"""Accuracy of every depth of a torch DepthNet on a numpy dataset (top-1/top-5, each depth's own BN)."""

from __future__ import annotations

import os

import numpy as np
import torch

from .checkpoint import Checkpoint, load_checkpoint
from .data import ImageDataset
from .errors import UsageError
from .models import DepthNet
from .spec import DepthConfig, DepthsLike


def topk_correct(logits: torch.Tensor, labels: torch.Tensor, k: int) -> int:
    k = min(k, logits.shape[1])
    top = logits.topk(k, dim=1).indices
    return int((top == labels[:, None]).any(dim=1).sum())


@torch.no_grad()
def correct_counts(
    model: DepthNet,
    dataset: ImageDataset,
    depths: list[DepthConfig],
    *,
    shared_bn: bool = False,
    batch_size: int = 500,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Per depth (rows, in ``depths`` order): top-1 correct, top-5 correct, images seen, as float64 on the CPU.
    Counts add up: the shards of a distributed evaluation are summed (``all_reduce``) before ``as_percentages``."""
    was_training = model.training
    model.eval()
    counts = torch.zeros(len(depths), 3, dtype=torch.float64)
    try:
        for row, config in enumerate(depths):
            for inputs, labels in dataset.batches(batch_size):
                inputs = torch.as_tensor(inputs)
                logits = model(inputs.to(device), config, shared_bn=shared_bn).float().cpu()
                target = torch.as_tensor(np.asarray(labels))
                counts[row] += torch.tensor(
                    [topk_correct(logits, target, 1), topk_correct(logits, target, 5), len(target)], dtype=torch.float64
                )
    finally:
        model.train(was_training)
    return counts


def as_percentages(counts: torch.Tensor, depths: list[DepthConfig]) -> dict[str, dict[str, float]]:
    """``correct_counts`` (summed over shards) as ``evaluate``'s ``{"2-2-2": {"top1", "top5", "n"}}``."""
    results = {}
    for config, (top1, top5, seen) in zip(depths, counts.tolist()):
        share = 100.0 / max(seen, 1)
        results[str(config)] = {"top1": top1 * share, "top5": top5 * share, "n": int(seen)}
    return results


def evaluate(
    model: DepthNet,
    dataset: ImageDataset,
    depths: list[DepthConfig],
    *,
    shared_bn: bool = False,
    batch_size: int = 500,
    device: torch.device | str = "cpu",
) -> dict[str, dict[str, float]]:
    """``{"2-2-2": {"top1": %, "top5": %, "n": count}}`` in eval mode.

    Each depth runs with the BN statistics the model holds for it (``DepthNet.set_depth_bn_stats``;
    a depth without them uses the shared ones, with a warning); ``shared_bn=True`` runs every depth
    with the shared statistics.
    """
    counts = correct_counts(model, dataset, depths, shared_bn=shared_bn, batch_size=batch_size, device=device)
    return as_percentages(counts, depths)


def evaluate_checkpoint(
    ckpt: Checkpoint | str | os.PathLike,
    *,
    dataset: str | None = None,
    data_dir: str | None = None,
    depths: DepthsLike = None,
    limit: int | None = None,
    batch_size: int = 500,
    device: str = "cpu",
) -> dict:
    """``{"checkpoint", "dataset", "depths": [{"depth", "blocks", "top1", "top5", "n", "bn_stats"}]}`` on the
    test split, each depth with its own BN statistics (``bn_stats`` says whether the checkpoint had them).

    ``ckpt`` is a checkpoint file or a ``Checkpoint`` object (then ``"checkpoint"`` is ``None``); ``depths`` as
    ``parse_depths`` takes them (``None``: every depth of the checkpoint).
    """
    from .data import load_dataset
    from .models.device import torch_device
    from .spec import parse_depths

    _check_arguments(ckpt, limit, batch_size)
    device = torch_device(device)
    checkpoint = ckpt if isinstance(ckpt, Checkpoint) else load_checkpoint(ckpt)
    name = dataset or checkpoint.dataset
    if name is None:
        raise UsageError(f"{ckpt} names no dataset; pass --dataset")
    sized = {"size": int(checkpoint.input_shape[1])} if name == "imagefolder" else {}  # the model's crop
    test_set = load_dataset(name, "test", data_dir, **sized).subset(limit, seed=2)
    if tuple(test_set.input_shape) != tuple(checkpoint.input_shape):
        raise UsageError(
            f"{name} images are {list(test_set.input_shape)} but {ckpt} expects "
            f"{checkpoint.input_shape}; pick the dataset the checkpoint was trained on"
        )
    configs = parse_depths(checkpoint.spec, depths, checkpoint.table())
    model = checkpoint.build().to(device)
    scores = evaluate(model, test_set, configs, batch_size=batch_size, device=device)
    rows = [
        {
            "depth": checkpoint.spec.depth_of(c),
            "blocks": list(c.blocks),
            "top1": scores[str(c)]["top1"],
            "top5": scores[str(c)]["top5"],
            "n": scores[str(c)]["n"],
            "bn_stats": str(c) in checkpoint.bn_stats,
        }
        for c in configs
    ]
    return {"checkpoint": None if isinstance(ckpt, Checkpoint) else str(ckpt), "dataset": name, "depths": rows}


def _check_arguments(ckpt: object, limit: object, batch_size: object) -> None:
    if not isinstance(ckpt, (Checkpoint, str, os.PathLike)):
        raise UsageError(f"ckpt must be a Checkpoint or a path, not {type(ckpt).__name__}")
    for name, value, optional in (("limit", limit, True), ("batch_size", batch_size, False)):
        if (value is None and optional) or (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
            continue
        raise UsageError(f"{name} must be a positive integer{' or None' if optional else ''}, not {value!r}")
