"""Streaming image folders for training at ImageNet scale: a file list in memory, images decoded on demand.

``FolderFiles`` holds the paths (one fixed-width byte array: no Python object per file) and the
labels; nothing else grows with the dataset. It offers what the trainer asks of an in-memory
``ImageDataset`` (``input_shape``, ``classes``, ``preprocess``, ``subset``, ``split``, ``take``, ``batches``) and a
training ``loader``: ``DataLoader`` workers, pinned memory on CUDA, persistent workers, and a
``DistributedSampler`` (each rank reads its shard only; ``set_epoch`` every epoch).

Augmentation is the standard ImageNet recipe, written here on Pillow rather than taken from torchvision:
torchvision must match the installed torch build exactly and has no wheels for the torch builds NVIDIA ships for
Jetson, while Pillow is already the project's image reader. ``random_resized_crop`` follows torchvision's
documented algorithm (scale (0.08, 1), aspect ratio (3/4, 4/3) sampled log-uniformly, ten tries, then a centre
crop of the clamped ratio), then a horizontal flip with p = 0.5; evaluation resizes the shorter side to
``size * 256 / 224`` and takes the centre crop. Each training sample's randomness comes from
``(seed, epoch, index)``, so an epoch's batches are the same whatever the number of workers, and a resumed run
sees what an uninterrupted one would.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

from ..data.datasets import PREPROCESS, Samples, decode_image_file, list_image_folder
from ..data.preprocess import Preprocess

SCALE = (0.08, 1.0)
RATIO = (3 / 4, 4 / 3)


def random_resized_crop(img: Any, size: int, rng: np.random.Generator, *, flip: bool = True) -> np.ndarray:
    """A PIL image -> uint8 CHW ``size`` x ``size``: a random area and aspect ratio, resized (bilinear), maybe
    mirrored."""
    from PIL import Image

    img = img.convert("RGB")
    width, height = img.size
    area = width * height
    box = None
    for _ in range(10):
        target = area * rng.uniform(*SCALE)
        ratio = math.exp(rng.uniform(math.log(RATIO[0]), math.log(RATIO[1])))
        w, h = round(math.sqrt(target * ratio)), round(math.sqrt(target / ratio))
        if 0 < w <= width and 0 < h <= height:
            top, left = int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1))
            box = (left, top, left + w, top + h)
            break
    if box is None:  # the centre crop of the image's aspect ratio clamped to RATIO
        ratio = width / height
        if ratio < RATIO[0]:
            w, h = width, round(width / RATIO[0])
        elif ratio > RATIO[1]:
            w, h = round(height * RATIO[1]), height
        else:
            w, h = width, height
        left, top = (width - w) // 2, (height - h) // 2
        box = (left, top, left + w, top + h)
    out = img.resize((size, size), Image.Resampling.BILINEAR, box=box)
    if flip and rng.random() < 0.5:
        out = out.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return np.asarray(out).transpose(2, 0, 1).copy()


class FolderFiles(Samples):
    """An image folder as a file list: ``root`` / ``paths`` (relative, fixed-width bytes) / ``labels``; ``subset``
    and ``split`` as ``ImageDataset``'s (``Samples``)."""

    def __init__(
        self, root: Path, paths: np.ndarray, labels: np.ndarray, classes: tuple[str, ...], size: int = 224,
        workers: int | None = None,
    ) -> None:  # fmt: skip
        self.root, self.paths, self.labels, self.classes, self.size = Path(root), paths, labels, classes, size
        self.workers = workers  # loader processes for batches() and loader() (None: default_workers())
        self.preprocess: Preprocess = PREPROCESS["imagefolder"]
        self.name = "imagefolder"

    @classmethod
    def open(cls, folder: str | Path, size: int = 224, workers: int | None = None) -> FolderFiles:
        folder = Path(folder)
        classes, files = list_image_folder(folder)
        paths = np.array([str(p.relative_to(folder)).encode() for p, _ in files])
        return cls(folder, paths, np.array([i for _, i in files], dtype=np.int64), classes, size, workers)

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (3, self.size, self.size)

    def path(self, index: int) -> Path:
        return self.root / self.paths[index].decode()

    def take(self, index: Any) -> FolderFiles:
        index = np.asarray(index, dtype=np.int64)
        return FolderFiles(self.root, self.paths[index], self.labels[index], self.classes, self.size, self.workers)

    def decode(self, index: int, rng: np.random.Generator | None = None) -> np.ndarray:
        """One image: the training augmentation with ``rng``, else the evaluation resize and centre crop."""
        transform = None if rng is None else (lambda img: random_resized_crop(img, self.size, rng))
        return decode_image_file(self.path(index), self.size, name=str(self.path(index)), transform=transform)

    def batches(self, batch_size: int, *, workers: int | None = None) -> Iterator[tuple[torch.Tensor, np.ndarray]]:
        """In-order (float32 input, labels) batches, decoded by ``workers`` processes (evaluation, BN)."""
        workers = self.workers if workers is None else workers
        workers = default_workers() if workers is None else workers
        loader = torch.utils.data.DataLoader(
            _EvalView(self), batch_size=batch_size, num_workers=workers, multiprocessing_context=_context(workers)
        )
        for images, labels in loader:
            yield torch.from_numpy(self.preprocess.apply(images.numpy())), labels.numpy()

    def loader(
        self, batch_size: int, *, seed: int, rank: int = 0, world: int = 1, workers: int | None = None,
        pin_memory: bool = False,
    ) -> Any:  # fmt: skip
        """The training ``DataLoader``: this rank's shard of a per-epoch shuffle, augmented in the workers; call
        ``set_epoch(epoch)`` on its ``sampler`` before each epoch."""
        workers = self.workers if workers is None else workers
        workers = default_workers(world) if workers is None else workers
        shard = torch.utils.data.DistributedSampler(
            range(len(self)), num_replicas=world, rank=rank, shuffle=True, seed=seed, drop_last=True
        )
        return torch.utils.data.DataLoader(
            _TrainView(self, seed), batch_size=batch_size, sampler=_EpochSampler(shard), num_workers=workers,
            pin_memory=pin_memory, persistent_workers=workers > 0, drop_last=True,
            multiprocessing_context=_context(workers),
        )  # fmt: skip


def _context(workers: int) -> Any:
    """Workers start from a fork server, not a fork of this process: by the time a loader starts, this process
    runs other libraries' thread pools (OpenMP, onnxruntime, OpenVINO's TBB), and forking a threaded process can
    crash it (it did, in the test suite). The file list travels to each worker once (persistent workers)."""
    if workers == 0:
        return None
    import multiprocessing

    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")


def default_workers(world: int = 1) -> int:
    """Loader processes per rank: the cores this process may use, shared by the ranks of this node, one left for
    the training process itself; at most 8."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    local = int(os.environ.get("LOCAL_WORLD_SIZE", world))
    return max(1, min(8, cores // max(1, local) - 1))


class _EpochSampler(torch.utils.data.Sampler):
    """A DistributedSampler whose items carry the epoch, so persistent workers augment with the right seed."""

    def __init__(self, shard: torch.utils.data.DistributedSampler) -> None:
        self.shard = shard

    def set_epoch(self, epoch: int) -> None:
        self.shard.set_epoch(epoch)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch = self.shard.epoch
        return ((epoch, index) for index in self.shard)

    def __len__(self) -> int:
        return len(self.shard)


class _TrainView(torch.utils.data.Dataset):
    def __init__(self, files: FolderFiles, seed: int) -> None:
        self.files, self.seed = files, seed

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, item: tuple[int, int]) -> tuple[torch.Tensor, int]:
        epoch, index = item
        rng = np.random.default_rng([self.seed, epoch, index])
        return torch.from_numpy(self.files.decode(index, rng)), int(self.files.labels[index])


class _EvalView(torch.utils.data.Dataset):
    def __init__(self, files: FolderFiles) -> None:
        self.files = files

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        pixels = np.array(self.files.decode(index))  # a writable copy: Pillow's pixels are read-only
        return torch.from_numpy(pixels), int(self.files.labels[index])
