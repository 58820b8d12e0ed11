"""Calibration feeds: onnxruntime's ``CalibrationDataReader`` contract (``get_next() -> dict | None``)
over images from ``ddnn_deploy.data``, with the manifest's preprocessing. No torch.

Sources (``--dataset``): a dataset name (its *training* split: calibration never sees test images),
a ``.npz`` sample (``images`` uint8 NCHW, optional ``labels``; read with ``allow_pickle=False``), a
folder of images (class sub-folders or flat), or ``random`` (latency studies only).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from ..data import DATASETS, ImageDataset, Preprocess, load_dataset, load_image_folder
from ..errors import DataError

DEFAULT_SAMPLES = {"fashion-mnist": Path(__file__).resolve().parents[2] / "calibration" / "fashion-mnist-512.npz"}


def load_npz_sample(path: Path) -> np.ndarray:
    try:
        with np.load(path, allow_pickle=False) as data:
            images = data["images"]
    except (OSError, ValueError, KeyError) as exc:
        raise DataError(f"{path} is not a calibration sample (.npz with an 'images' array): {exc}") from None
    if images.dtype != np.uint8 or images.ndim != 4:
        raise DataError(f"{path}: 'images' must be uint8 with shape (N, C, H, W), not {images.dtype} {images.shape}")
    return images


def calibration_images(source: str | None, *, input_shape: tuple[int, int, int], samples: int, manifest_dataset:
                       str | None, seed: int = 0) -> tuple[np.ndarray | None, str]:
    """uint8 NCHW images (or None for ``random``) and a description of where they came from."""
    if source is None:
        default = DEFAULT_SAMPLES.get(manifest_dataset or "")
        if default is None or not default.exists():
            raise DataError("no calibration data: pass --dataset NAME, a folder of images, a .npz sample, or "
                            "'random' (latency studies only)")
        source = str(default)
    if source == "random":
        return None, "random"
    if source in DATASETS and source != "imagefolder":
        images = load_dataset(source, "train").subset(samples, seed=seed).images
        description = f"{source} (train split)"
    else:
        path = Path(source)
        if path.suffix == ".npz" and path.is_file():
            images = load_npz_sample(path)
        elif path.is_dir():
            images = _folder_images(path, input_shape)
        else:
            raise DataError(f"calibration data {source!r} is neither a dataset name ({', '.join(DATASETS)}), "
                            "a .npz sample, a folder of images, nor 'random'")
        description = str(path)
    if len(images) == 0:
        raise DataError(f"calibration data {source} holds no images")
    if tuple(images.shape[1:]) != tuple(input_shape):
        raise DataError(f"calibration images are {list(images.shape[1:])} (C, H, W) but the model wants "
                        f"{list(input_shape)}; give images of the model's channels and size")
    if len(images) > samples:
        images = images[np.sort(np.random.default_rng(seed).permutation(len(images))[:samples])]
    return images, description


def _folder_images(path: Path, input_shape: tuple[int, int, int]) -> np.ndarray:
    has_classes = any(p.is_dir() for p in path.iterdir())
    data = load_image_folder(path, size=input_shape[1]) if has_classes else _flat(path, input_shape[1])
    images = data.images
    if input_shape[0] == 1 and images.shape[1] == 3:  # grayscale models: luminance
        images = np.round(images.astype(np.float32).mean(axis=1, keepdims=True)).astype(np.uint8)
    return images


def _flat(path: Path, size: int) -> ImageDataset:
    """A flat folder of images, read as one class through a temporary symlink."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        link = Path(tmp) / "all"
        link.symlink_to(path.resolve(), target_is_directory=True)
        return load_image_folder(tmp, size=size)


def data_hash(images: np.ndarray | None, seed: int, samples: int, input_shape: tuple[int, ...]) -> str:
    digest = hashlib.sha256()
    if images is None:
        digest.update(f"random:{seed}:{samples}:{input_shape}".encode())
    else:
        digest.update(np.ascontiguousarray(images).tobytes())
    return digest.hexdigest()


class FeedReader:
    """``get_next() -> {"input": float32 batch} | None``: the calibration feed for one session."""

    def __init__(self, images: np.ndarray | None, preprocess: Preprocess, *, input_shape: tuple[int, int, int],
                 batch: int = 32, samples: int = 512, static_batch: int | None = None, seed: int = 0):
        self.images, self.preprocess, self.input_shape = images, preprocess, input_shape
        self.batch = static_batch or batch
        self.samples = len(images) if images is not None else samples
        self.static_batch, self.seed = static_batch, seed
        self.rewind()

    def rewind(self) -> None:
        self._iter = self._batches()

    def _batches(self) -> Iterator[dict[str, np.ndarray]]:
        rng = np.random.default_rng(self.seed)
        for start in range(0, self.samples, self.batch):
            stop = min(start + self.batch, self.samples)
            if self.static_batch and stop - start < self.static_batch:
                break
            if self.images is None:
                x = rng.standard_normal((stop - start, *self.input_shape)).astype(np.float32)
            else:
                x = self.preprocess.apply(self.images[start:stop])
            yield {"input": x}

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._iter, None)

    def __iter__(self):
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        item = self.get_next()
        if item is None:
            raise StopIteration
        return item
