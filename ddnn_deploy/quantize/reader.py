"""Calibration feeds: onnxruntime's ``CalibrationDataReader`` contract (``get_next() -> dict | None``)
over images from ``ddnn_deploy.data``, with the manifest's preprocessing. No torch.

Sources (``--dataset``): a dataset name (its *training* split: calibration never sees test images),
a ``.npz`` sample (``images`` uint8 NCHW, optional ``labels``; read with ``allow_pickle=False``), a
folder of images (class sub-folders or flat), or ``random`` (latency studies only).
"""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import numpy as np

from ..data import DATASETS, FeedReader, ImageDataset, load_dataset, load_image_folder  # noqa: F401
from ..errors import DataError
from ..resources import DEFAULT_CALIBRATION_SAMPLES as DEFAULT_SAMPLES  # a lazy {dataset: .npz} mapping


def _npz_problem(path: Path) -> str | None:
    """Why ``path`` is no .npz sample with an ``images`` array numpy can read in full, or None; only the
    archive's directory and the array's header are read, so a header claiming terabytes allocates nothing."""
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        if "images.npy" not in names:
            shown = ", ".join(n[:-4] if n.endswith(".npy") else n for n in names[:5]) or "nothing"
            return f"it has no 'images' array (it holds: {shown})"
        info = archive.getinfo("images.npy")
        with archive.open(info) as member:
            version = np.lib.format.read_magic(member)
            if version not in ((1, 0), (2, 0)):
                return f"'images' is a .npy of format version {version}, not 1.0 or 2.0"
            read_header = (
                np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            )
            shape, _, dtype = read_header(member)
            header = member.tell()
    if dtype.hasobject:
        return "'images' holds Python objects (pickled data), not pixels"
    count = 1
    for d in shape:
        count *= d
    if info.file_size != header + count * dtype.itemsize:
        return f"'images' is truncated or corrupt: its header says {dtype} {tuple(shape)}"
    return None


def load_npz_sample(path: Path) -> np.ndarray:
    """The ``images`` array of a ``.npz`` calibration sample: uint8 (N, C, H, W), read without pickle."""
    fix = "give a .npz with a uint8 'images' array shaped (N, C, H, W), e.g. np.savez(path, images=x)"
    try:
        problem = _npz_problem(path) if zipfile.is_zipfile(path) else "not a .npz file (not a zip archive)"
        if problem is None:
            with np.load(path, allow_pickle=False) as data:
                images = data["images"]
    except Exception as exc:  # noqa: BLE001 - a damaged archive: bad CRC, bad deflate data, a bad .npy header
        reason = str(exc).strip().splitlines()[0][:120] if str(exc).strip() else type(exc).__name__
        problem = f"not a readable .npz file ({reason})"
    if problem is not None:
        raise DataError(f"{path} is not a calibration sample: {problem}; {fix}")
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 4:
        found = f"{images.dtype} {images.shape}" if isinstance(images, np.ndarray) else type(images).__name__
        raise DataError(f"{path}: 'images' must be uint8 with shape (N, C, H, W), not {found}")
    return images


def calibration_images(
    source: str | None, *, input_shape: tuple[int, int, int], samples: int, manifest_dataset: str | None, seed: int = 0
) -> tuple[np.ndarray | None, str]:
    """uint8 NCHW images (or None for ``random``) and a description of where they came from."""
    if source is None:
        default = DEFAULT_SAMPLES.get(manifest_dataset or "")
        if default is None or not default.exists():
            raise DataError(
                "no calibration data: pass --dataset NAME, a folder of images, a .npz sample, or "
                "'random' (latency studies only)"
            )
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
            raise DataError(
                f"calibration data {source!r} is neither a dataset name ({', '.join(DATASETS)}), "
                "a .npz sample, a folder of images, nor 'random'"
            )
        description = str(path)
    if len(images) == 0:
        raise DataError(f"calibration data {source} holds no images")
    if tuple(images.shape[1:]) != tuple(input_shape):
        raise DataError(
            f"calibration images are {list(images.shape[1:])} (C, H, W) but the model wants "
            f"{list(input_shape)}; give images of the model's channels and size"
        )
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
