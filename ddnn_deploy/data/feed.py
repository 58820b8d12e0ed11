"""FeedReader: THE one feed of model inputs for calibration, accuracy and benchmarking.

Its ``get_next() -> dict | None`` is onnxruntime's whole ``CalibrationDataReader`` contract, so the
same object feeds ``quantize_static``, the accuracy loop and the bench loop. numpy only.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Dict

import numpy as np

from .preprocess import Preprocess

Feed = Dict[str, np.ndarray]  # noqa: UP006 - evaluated at import; Python 3.8 has no dict[...]


class FeedReader:
    """THE feed iterator shared by calibration, accuracy and benchmarking.

    ``get_next() -> {"input": float32 batch} | None`` is onnxruntime's ``CalibrationDataReader``
    contract; ``labeled()`` yields ``(feed, labels, n)`` for accuracy, zero-padding the last chunk of
    a static-batch graph (``n`` real samples). ``images=None`` feeds Gaussian noise (latency studies).
    """

    def __init__(
        self,
        images: np.ndarray | None,
        preprocess: Preprocess,
        *,
        input_shape: tuple[int, int, int],
        batch: int = 32,
        samples: int = 512,
        static_batch: int | None = None,
        seed: int = 0,
        labels: np.ndarray | None = None,
        pad_last: bool = False,
    ) -> None:
        self.images, self.labels, self.preprocess, self.input_shape = images, labels, preprocess, input_shape
        self.batch = static_batch or batch
        self.samples = len(images) if images is not None else samples
        self.static_batch, self.seed, self.pad_last = static_batch, seed, pad_last
        self.rewind()

    def rewind(self) -> None:
        """Start again from the first batch (the noise is re-seeded, so it repeats too)."""
        self._iter = (feed for feed, _, _ in self._chunks())

    def _chunks(self) -> Iterator[tuple[Feed, np.ndarray | None, int]]:
        rng = np.random.default_rng(self.seed)
        for start in range(0, self.samples, self.batch):
            stop = min(start + self.batch, self.samples)
            n = stop - start
            if self.images is None:
                x = rng.standard_normal((n, *self.input_shape)).astype(np.float32)
            else:
                x = self.preprocess.apply(self.images[start:stop])
            if self.static_batch and n < self.static_batch:
                if not self.pad_last:
                    break  # calibration: never a short batch for a static graph
                x = np.concatenate([x, np.zeros((self.static_batch - n, *x.shape[1:]), dtype=x.dtype)])
            labels = None if self.labels is None else self.labels[start:stop]
            yield {"input": x}, labels, n

    def labeled(self) -> Iterator[tuple[Feed, np.ndarray | None, int]]:
        """``(feed, labels, n)`` per batch, from the start; ``n`` counts the real (unpadded) samples."""
        return self._chunks()

    def get_next(self) -> Feed | None:
        return next(self._iter, None)

    def __iter__(self) -> FeedReader:
        return self

    def __next__(self) -> Feed:
        item = self.get_next()
        if item is None:
            raise StopIteration
        return item
