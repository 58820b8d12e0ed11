"""Decoding datasets into uint8 numpy arrays: Fashion-MNIST IDX, CIFAR binary, image folders.

CIFAR-10/100 are read in the *binary* format only (never the pickled Python format: unpickling
data is unsafe). No download code and no torch: the runtime half (calibration, bench) reads data
here too. Images are uint8 NCHW; their ``Preprocess`` turns them into the model's float input.
"""

from __future__ import annotations

import gzip
import os
import struct
import warnings
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError, optional_import
from .preprocess import PREPROCESS, Preprocess

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
DATASETS = ("fashion-mnist", "cifar10", "cifar100", "imagefolder")
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".webp"})
MAX_PIXELS = 40_000_000  # 40 MP: larger images are refused before they are decoded (decompression bombs)
_CHUNK = 1 << 24


class Samples:
    """Random subsets and held-out splits of anything with ``len()`` and ``take(index)``: the in-memory
    ``ImageDataset`` and the streamed ``distill.stream.FolderFiles`` draw them the same way."""

    def __len__(self) -> int:
        raise NotImplementedError

    def take(self, index: Sequence[int] | np.ndarray) -> Any:
        raise NotImplementedError

    def subset(self, count: int | None, seed: int = 0) -> Any:
        """A class-balanced-in-expectation random subset of ``count`` samples (all when None)."""
        if count is None or count >= len(self):
            return self
        return self.take(np.sort(np.random.default_rng(seed).permutation(len(self))[:count]))

    def split(self, count: int, seed: int = 0) -> tuple[Any, Any]:
        """(the rest, ``count`` held-out samples): a fixed random split, the same for every ``seed`` user."""
        if not 0 < count < len(self):
            raise DataError(f"cannot hold out {count} of {len(self)} samples; choose 0 < N < {len(self)}")
        order = np.random.default_rng(seed).permutation(len(self))
        return self.take(np.sort(order[count:])), self.take(np.sort(order[:count]))


@dataclass
class ImageDataset(Samples):
    """uint8 images (N, C, H, W) with int64 labels, class names and the dataset's preprocessing."""

    images: np.ndarray
    labels: np.ndarray
    classes: tuple[str, ...]
    preprocess: Preprocess
    name: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.images.shape[1:])  # type: ignore[return-value]

    def take(self, index: Sequence[int] | np.ndarray) -> ImageDataset:
        """The samples at ``index``, in that order (a subset, a rank's shard)."""
        index = np.asarray(index, dtype=np.int64)
        return ImageDataset(self.images[index], self.labels[index], self.classes, self.preprocess, self.name)

    def batches(self, batch_size: int, *, limit: int | None = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """In-order (float32 input, labels) batches for the PyTorch side; ONNX back-ends read a ``FeedReader``."""
        total = len(self) if limit is None else min(limit, len(self))
        for start in range(0, total, batch_size):
            stop = min(start + batch_size, total)
            yield self.preprocess.apply(self.images[start:stop]), self.labels[start:stop]


def _check_split(split: str) -> None:
    if split not in ("train", "test"):
        raise DataError(f"unknown split {split!r}; use 'train' or 'test'")


def _describe_shape(shape: tuple[int, ...]) -> str:
    return str(shape) if len(shape) <= 6 else f"{len(shape)} dimensions"


def _read_idx_payload(path: Path) -> tuple[tuple[int, ...], bytes]:
    """(shape, data) of an IDX file, reading no more than the header declares (a gzip bomb stays on disk)."""
    with gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb") as f:
        head = f.read(4)
        if len(head) < 4 or head[0] != 0 or head[1] != 0 or head[2] != 0x08:
            raise DataError(f"{path} is not an unsigned-byte IDX file (bad magic number)")
        ndim = head[3]
        if ndim == 0:
            raise DataError(f"{path} is an IDX file of 0 dimensions; expected images or labels")
        dims = f.read(4 * ndim)
        if len(dims) < 4 * ndim:
            raise DataError(f"{path} is truncated: its header ends inside the list of {ndim} dimensions")
        shape = struct.unpack(f">{ndim}I", dims)
        expected = 1
        for d in shape:
            expected *= d
        found = path.stat().st_size - 4 - 4 * ndim if path.suffix != ".gz" else expected
        if found != expected:  # a plain file's size is known: nothing is read when it cannot be right
            raise DataError(
                f"{path} is truncated or corrupt: header says {_describe_shape(shape)}, found {found} bytes of data"
            )
        chunks, remaining = [], expected
        while remaining > 0:
            chunk = f.read(min(remaining, _CHUNK))
            if not chunk:
                break
            chunks.append(chunk)
            remaining -= len(chunk)
        if remaining > 0 or f.read(1):
            found = "fewer" if remaining > 0 else "more"
            raise DataError(
                f"{path} is truncated or corrupt: header says {_describe_shape(shape)}, found {found} bytes of data"
            )
    return shape, b"".join(chunks)


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (optionally gzipped) as used by MNIST and Fashion-MNIST."""
    path = Path(path)
    try:
        shape, raw = _read_idx_payload(path)
    except (OSError, EOFError, zlib.error) as exc:  # not gzip, a broken deflate stream, unreadable
        text = str(exc).strip()
        reason = getattr(exc, "strerror", None) or (text.splitlines()[0][:160] if text else type(exc).__name__)
        raise DataError(f"cannot read IDX file {path}: {reason}") from None
    try:
        return np.frombuffer(raw, dtype=np.uint8).reshape(shape)
    except ValueError:  # (0, 2**32 - 1, 2**32 - 1): no bytes, but numpy refuses the shape
        raise DataError(f"{path} is corrupt: its header's shape {_describe_shape(shape)} is no array shape") from None


def _find_idx(folder: Path, stem: str) -> Path:
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        if candidate.exists():
            return candidate
    raise DataError(
        f"{folder} has no {stem}[.gz]; expected the four Fashion-MNIST IDX files "
        "(install them with: apt-get install -y dataset-fashion-mnist, or pass --data DIR)"
    )


def fashion_mnist_folder(folder: str | Path | None = None) -> Path:
    """``folder``, else ``$DDNN_FASHION_MNIST``, else the Debian package's folder."""
    return Path(folder or os.environ.get("DDNN_FASHION_MNIST", FASHION_MNIST_DIR))


def load_fashion_mnist(folder: str | Path | None = None, split: str = "train") -> ImageDataset:
    """Fashion-MNIST from its IDX files; ``split`` is ``train`` (60k) or ``test`` (10k)."""
    folder = fashion_mnist_folder(folder)
    if not folder.is_dir():
        raise DataError(
            f"Fashion-MNIST folder {folder} does not exist; install it with: "
            "apt-get install -y dataset-fashion-mnist, or pass --data DIR"
        )
    _check_split(split)
    prefix = {"train": "train", "test": "t10k"}[split]
    images = read_idx(_find_idx(folder, f"{prefix}-images-idx3-ubyte"))
    labels = read_idx(_find_idx(folder, f"{prefix}-labels-idx1-ubyte"))
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise DataError(f"{folder}: images {images.shape} and labels {labels.shape} do not match")
    _check_labels(labels, len(FASHION_MNIST_CLASSES), folder)
    return ImageDataset(
        images[:, None, :, :].copy(),
        labels.astype(np.int64),
        FASHION_MNIST_CLASSES,
        PREPROCESS["fashion-mnist"],
        "fashion-mnist",
    )


def _cifar_files(folder: Path, split: str) -> tuple[list[Path], int, str]:
    """(files, label bytes per record, "cifar10" | "cifar100") found in ``folder``."""
    c10 = sorted(folder.glob("data_batch_*.bin")) if split == "train" else [folder / "test_batch.bin"]
    c100 = folder / ("train.bin" if split == "train" else "test.bin")
    if split == "train" and c10 and len(c10) != 5:
        raise DataError(f"{folder} holds {len(c10)} of the 5 CIFAR-10 training batches (data_batch_1..5.bin)")
    if c10 and all(p.exists() for p in c10):
        return c10, 1, "cifar10"
    if c100.exists():
        return [c100], 2, "cifar100"
    raise DataError(
        f"{folder} holds no CIFAR binary files (data_batch_1.bin ... or train.bin); "
        "the pickled 'python version' is refused on purpose: use the binary version"
    )


def _check_labels(labels: np.ndarray, classes: int, where: Path) -> None:
    if len(labels) and int(labels.max()) >= classes:
        raise DataError(
            f"{where}: label {int(labels.max())} is out of range for {classes} classes; the files are corrupt"
        )


def _cifar_records(files: Sequence[Path], record: int) -> np.ndarray:
    chunks = []
    for path in files:
        try:
            raw = np.fromfile(path, dtype=np.uint8)
        except OSError as exc:
            raise DataError(f"cannot read {path}: {exc.strerror or type(exc).__name__}") from None
        if raw.size == 0 or raw.size % record:
            raise DataError(f"{path} is truncated: {raw.size} bytes is not a multiple of {record}")
        chunks.append(raw.reshape(-1, record))
    return np.concatenate(chunks)


def _cifar100_classes(folder: Path, coarse: bool) -> tuple[str, ...]:
    names_file = folder / ("coarse_label_names.txt" if coarse else "fine_label_names.txt")
    count = 20 if coarse else 100
    if names_file.exists():
        try:
            names = tuple(line.strip() for line in names_file.read_text(encoding="utf-8").splitlines() if line.strip())
        except (OSError, UnicodeDecodeError) as exc:
            raise DataError(f"cannot read {names_file} as UTF-8 text: {exc}") from None
        if len(names) != count:
            raise DataError(f"{names_file} names {len(names)} classes, not {count}; fix or remove it")
        return names
    return tuple(str(i) for i in range(count))


def load_cifar_binary(
    folder: str | Path, split: str = "train", *, coarse: bool = False, expect: str | None = None
) -> ImageDataset:
    """CIFAR-10 (``data_batch_*.bin``/``test_batch.bin``) or CIFAR-100 (``train.bin``/``test.bin``)."""
    _check_split(split)
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"CIFAR folder {folder} does not exist; pass --data DIR with the binary-version files")
    files, label_bytes, name = _cifar_files(folder, split)
    if expect is not None and name != expect:
        raise DataError(f"{folder} holds {name}, not {expect}; pass --dataset {name} or the right folder")
    data = _cifar_records(files, label_bytes + 3 * 32 * 32)
    label_column = 0 if (label_bytes == 1 or coarse) else 1
    labels = data[:, label_column].astype(np.int64)
    images = data[:, label_bytes:].reshape(-1, 3, 32, 32).copy()
    classes = CIFAR10_CLASSES if name == "cifar10" else _cifar100_classes(folder, coarse)
    _check_labels(labels, len(classes), folder)
    return ImageDataset(images, labels, classes, PREPROCESS[name], name)


def resize_center_crop(img: Any, size: int, resize: int | None = None, *, name: str = "the image") -> np.ndarray:
    """A PIL image as the model sees it: RGB, shorter side resized to ``resize`` (default ``size * 256 / 224``),
    centre ``size`` x ``size`` crop, uint8 CHW. An image already ``size`` x ``size`` is only converted.

    A very elongated image (a 1,000,000 x 1 strip) is resampled from the part the crop keeps (PIL's ``box``),
    so memory stays bounded; the result equals resize-then-crop up to rounding."""
    w, h = img.size
    if w < 1 or h < 1:
        raise DataError(f"{name}: the image is {w} x {h} pixels; there is nothing to resize")
    if w * h > MAX_PIXELS:
        raise DataError(f"{name}: the image has more than {MAX_PIXELS} pixels; refusing to decode it")
    img = img.convert("RGB")
    if img.size != (size, size):
        resize = resize or int(round(size * 256 / 224))
        scale = resize / min(w, h)
        bilinear = optional_import("PIL.Image").Resampling.BILINEAR
        new_w, new_h = max(size, round(w * scale)), max(size, round(h * scale))
        left, top = (new_w - size) // 2, (new_h - size) // 2
        if new_w * new_h <= MAX_PIXELS:
            img = img.resize((new_w, new_h), bilinear).crop((left, top, left + size, top + size))
        else:
            sx, sy = w / new_w, h / new_h
            box = (left * sx, top * sy, (left + size) * sx, (top + size) * sy)
            img = img.resize((size, size), bilinear, box=box)
    return np.asarray(img).transpose(2, 0, 1)


def decode_image_file(
    source: Any,
    size: int,
    resize: int | None = None,
    *,
    name: str,
    transform: Callable[[Any], np.ndarray] | None = None,
) -> np.ndarray:
    """One encoded image (a path or a binary file object) as ``resize_center_crop`` gives it (or ``transform``, a
    PIL image -> uint8 CHW, e.g. a training augmentation); the size is read from the header and checked against
    ``MAX_PIXELS`` before anything is decoded. Any failure is one DataError naming ``name``."""
    image = optional_import("PIL.Image", "reading images")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow's notes on damaged metadata ("Corrupt EXIF data") are no error
            warnings.simplefilter("error", image.DecompressionBombWarning)
            with image.open(source) as img:  # reads the header only: the size is known before decoding
                if img.width * img.height > MAX_PIXELS:
                    raise DataError(f"{name}: the image has more than {MAX_PIXELS} pixels; refusing to decode it")
                img.load()
                return resize_center_crop(img, size, resize, name=name) if transform is None else transform(img)
    except DataError:
        raise
    except FileNotFoundError:
        raise DataError(f"{name}: no such file") from None
    except IsADirectoryError:
        raise DataError(f"{name}: is a directory, not an image file") from None
    except (image.DecompressionBombError, image.DecompressionBombWarning):
        raise DataError(f"{name}: the image has more than {MAX_PIXELS} pixels; refusing to decode it") from None
    except image.UnidentifiedImageError:
        raise DataError(f"{name}: not an image in a format Pillow reads (PNG, JPEG, ...)") from None
    except Exception as exc:  # noqa: BLE001 - truncated or corrupt data makes Pillow raise OSError, ValueError,
        # SyntaxError, EOFError, struct.error, zlib.error, MemoryError ...: each means "this file is damaged"
        reason = str(exc).strip().splitlines()[0][:120] if str(exc).strip() else type(exc).__name__
        raise DataError(f"{name}: not a readable image ({reason})") from None


def to_channels(images: np.ndarray, channels: int) -> np.ndarray:
    """uint8 NCHW RGB images with ``channels`` channels: luminance (the channel mean) for 1, as is for 3."""
    if channels == 1 and images.shape[1] == 3:
        return np.round(images.astype(np.float32).mean(axis=1, keepdims=True)).astype(np.uint8)
    return images


def load_image_folder(
    folder: str | Path, *, size: int = 224, resize: int | None = None, limit: int | None = None
) -> ImageDataset:
    """Images in the ImageNet layout (one sub-folder per class), resized and centre-cropped.

    Decodes eagerly into memory, so it suits calibration and accuracy subsets; use ``limit``.
    """
    optional_import("PIL.Image", "reading image folders")
    classes, files = list_image_folder(folder)
    if limit is not None and limit < len(files):
        keep = np.sort(np.random.default_rng(0).permutation(len(files))[:limit])
        files = [files[i] for i in keep]
    resize = resize or int(round(size * 256 / 224))
    images = np.empty((len(files), 3, size, size), dtype=np.uint8)
    for n, (path, _) in enumerate(files):
        images[n] = decode_image_file(path, size, resize, name=str(path))
    labels = np.array([i for _, i in files], dtype=np.int64)
    return ImageDataset(images, labels, classes, PREPROCESS["imagefolder"], "imagefolder")


def list_image_folder(folder: str | Path) -> tuple[tuple[str, ...], list[tuple[Path, int]]]:
    """(class names, [(image path, class index)]) of an ImageNet-layout folder, sorted; nothing decoded."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"image folder {folder} does not exist")
    try:
        classes = tuple(sorted(d.name for d in folder.iterdir() if d.is_dir()))
        files = [
            (p, i)
            for i, c in enumerate(classes)
            for p in sorted((folder / c).iterdir())
            if p.suffix.lower() in IMAGE_SUFFIXES
        ]
    except OSError as exc:
        raise DataError(f"cannot list {exc.filename or folder}: {exc.strerror or type(exc).__name__}") from None
    if not classes:
        raise DataError(f"{folder} has no class sub-folders (expected ROOT/CLASS/IMAGE.jpg)")
    if not files:
        raise DataError(f"{folder} has class folders but no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return classes, files


def load_dataset(name: str, split: str = "train", data_dir: str | Path | None = None, **kwargs: Any) -> ImageDataset:
    """Load a dataset by name (see ``DATASETS``); ``data_dir`` overrides the default folder.

    ``kwargs`` go to ``load_image_folder`` (``size``, ``resize``, ``limit``) for ``imagefolder``.
    """
    data = _load_named(name, split, data_dir, **kwargs)
    if len(data) == 0:
        raise DataError(f"the {split} split of {name}{f' in {data_dir}' if data_dir else ''} holds no images")
    return data


def _load_named(name: str, split: str, data_dir: str | Path | None, **kwargs: Any) -> ImageDataset:
    if name == "fashion-mnist":
        return load_fashion_mnist(data_dir, split)
    if name in ("cifar10", "cifar100"):
        if data_dir is None:
            raise DataError(f"{name} needs --data DIR (the binary-version files; nothing is downloaded)")
        return load_cifar_binary(data_dir, split, expect=name)
    if name == "imagefolder":
        if data_dir is None:
            raise DataError("imagefolder needs --data DIR (ROOT/train/CLASS/*.jpg, ROOT/val/CLASS/*.jpg)")
        root = Path(data_dir)
        sub = root / ("train" if split == "train" else "val")
        return load_image_folder(sub if sub.is_dir() else root, **kwargs)
    raise DataError(f"unknown dataset {name!r}; choose one of: {', '.join(DATASETS)}")


def _eval_folder(
    source: str, data_dir: str | None, input_shape: Sequence[int] | None, class_names: Sequence[str] | None
) -> ImageDataset:
    """A class-per-folder test set, resized to the model's input, labels mapped onto ``class_names``."""
    folder = Path(data_dir) if source == "imagefolder" and data_dir else Path(source)
    if source == "imagefolder" and (folder / "val").is_dir():
        folder = folder / "val"
    data = load_image_folder(folder, size=int(input_shape[1]) if input_shape else 224)
    if input_shape:
        data.images = to_channels(data.images, int(input_shape[0]))
    if class_names and set(data.classes) <= set(class_names):
        remap = np.array([list(class_names).index(c) for c in data.classes])
        data.labels = remap[data.labels]
        data.classes = tuple(class_names)
    return data


def eval_data_present(name: str | None, data_dir: str | None = None) -> bool:
    """Whether ``name``'s test split can be read here without asking the user for anything: Fashion-MNIST in
    ``data_dir`` or its default folder, and the datasets that need ``--data`` only when ``data_dir`` is given.
    Reading (and every error about the files themselves) is left to ``load_eval_data``."""
    if name == "fashion-mnist":
        folder = fashion_mnist_folder(data_dir)
        return any((folder / f"t10k-labels-idx1-ubyte{gz}").exists() for gz in ("", ".gz"))
    if name in DATASETS:
        return data_dir is not None and Path(data_dir).exists()
    return False


def load_eval_data(
    source: str,
    *,
    data_dir: str | None = None,
    input_shape: Sequence[int] | None = None,
    class_names: Sequence[str] | None = None,
    limit: int | None = None,
) -> ImageDataset:
    """Held-out data for accuracy: a dataset name (its test split) or a folder with one sub-folder per
    class (resized to the model's input; labels follow ``class_names`` when the folder names match)."""
    if source in DATASETS and source != "imagefolder":
        data = load_dataset(source, "test", data_dir)
    elif source == "imagefolder" or Path(source).is_dir():
        data = _eval_folder(source, data_dir, input_shape, class_names)
    else:
        raise DataError(
            f"unknown dataset {source!r}: give one of {', '.join(DATASETS)}, a folder of images "
            "with one sub-folder per class, or none"
        )
    if input_shape and tuple(data.input_shape) != tuple(input_shape):
        raise DataError(
            f"{source} images are {list(data.input_shape)} (C, H, W) but the model wants {list(input_shape)}"
        )
    return data.subset(limit, seed=2)
