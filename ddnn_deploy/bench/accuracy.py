"""Top-1 / top-5 of any Runner over an ImageDataset: one feed loop shared by bench and calibrate."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..data import ImageDataset


def runner_accuracy(runner: Any, dataset: ImageDataset, *, batch: int = 256, static_batch: int | None = None,
                    extra_feed: dict[str, np.ndarray] | None = None) -> dict[str, Any]:
    """``{"top1": %, "top5": %, "n": count}``; the last chunk is zero-padded for static-batch graphs."""
    batch = static_batch or batch
    top1 = top5 = seen = 0
    for x, y in dataset.batches(batch):
        n = len(y)
        if static_batch and n < static_batch:
            x = np.concatenate([x, np.zeros((static_batch - n, *x.shape[1:]), dtype=x.dtype)])
        logits = runner.infer({"input": x, **(extra_feed or {})})[0][:n]
        order = np.argsort(-logits, axis=1, kind="stable")
        top1 += int((order[:, 0] == y).sum())
        top5 += int((order[:, :5] == y[:, None]).any(axis=1).sum())
        seen += n
    return {"top1": 100.0 * top1 / max(seen, 1), "top5": 100.0 * top5 / max(seen, 1), "n": seen}
