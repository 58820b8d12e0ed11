"""Top-1 / top-5 of any Runner over an ImageDataset, through the shared ``data.FeedReader``."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..data import FeedReader, ImageDataset


def runner_accuracy(
    runner: Any,
    dataset: ImageDataset,
    *,
    batch: int = 256,
    static_batch: int | None = None,
    extra_feed: dict[str, np.ndarray] | None = None,
) -> dict[str, Any]:
    """``{"top1": %, "top5": %, "n": count}``; the last chunk is zero-padded for static-batch graphs."""
    feed = FeedReader(
        dataset.images,
        dataset.preprocess,
        labels=dataset.labels,
        input_shape=dataset.input_shape,
        batch=batch,
        static_batch=static_batch,
        pad_last=True,
    )
    top1 = top5 = seen = 0
    for inputs, labels, n in feed.labeled():
        logits = runner.infer({**inputs, **(extra_feed or {})})[0][:n]
        order = np.argsort(-logits, axis=1, kind="stable")
        top1 += int((order[:, 0] == labels).sum())
        top5 += int((order[:, :5] == labels[:, None]).any(axis=1).sum())
        seen += n
    return {"top1": 100.0 * top1 / max(seen, 1), "top5": 100.0 * top5 / max(seen, 1), "n": seen}
