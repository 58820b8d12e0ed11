"""Whatever a user hands ``predict`` -> uint8-range pixels in the model's NCHW shape, converted the way the
bench's image-folder path converts (``data.resize_center_crop`` + ``data.to_channels``).

Accepted: image file paths, PIL images, encoded PNG/JPEG bytes, and arrays in the dataset's pixel units
(0-255) shaped ``[H, W]``, ``[C, H, W]``, ``[H, W, C]`` (C = 1 or 3) or ``[N, C, H, W]``. Decoding is bounded:
an image of more than ``MAX_PIXELS`` pixels (a decompression bomb) is refused, never expanded.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..data.datasets import MAX_PIXELS, decode_image_file, resize_center_crop, to_channels
from ..errors import DataError, UsageError, optional_import

__all__ = ["MAX_PIXELS", "decode_image", "from_array", "to_pixels"]


def _image_module() -> Any:
    return optional_import("PIL.Image", "reading images")


def decode_image(data: bytes | str | os.PathLike, shape: Sequence[int], *, name: str = "image") -> np.ndarray:
    """One encoded image (bytes or a file path) as uint8 CHW of the model's ``shape`` (C, H, W).

    Decoding is ``data.decode_image_file``'s: bounded (``MAX_PIXELS``) and every failure one DataError."""
    channels, size, _ = _shape(shape)
    source = io.BytesIO(data) if isinstance(data, (bytes, bytearray)) else Path(data)
    return to_channels(decode_image_file(source, size, name=name)[None], channels)[0]


def _shape(shape: Sequence[int]) -> tuple[int, int, int]:
    """(C, H, W) of the model's input as integers."""
    try:
        channels, height, width = (int(v) for v in shape)
    except (TypeError, ValueError):
        raise UsageError(f"the model's input shape must be (C, H, W), not {shape!r}") from None
    return channels, height, width


def _from_pil(img: Any, shape: Sequence[int], name: str = "the image") -> np.ndarray:
    channels, size, _ = _shape(shape)
    try:
        return to_channels(resize_center_crop(img, size, name=name)[None], channels)[0]
    except DataError:
        raise
    except Exception as exc:  # noqa: BLE001 - a PIL image in a mode that cannot become RGB, a lazy image whose
        # data turns out truncated, ...
        reason = str(exc).strip().splitlines()[0][:120] if str(exc).strip() else type(exc).__name__
        raise DataError(f"{name}: not a usable image ({reason})") from None


def from_array(array: np.ndarray, shape: Sequence[int], name: str) -> np.ndarray:
    """An array in pixel units -> float32 NCHW of ``shape``; other sizes go through PIL like a file would."""
    channels, height, width = _shape(shape)
    if (
        array.dtype == object
        or array.dtype.kind in "cmM"  # complex, timedelta, datetime
        or not (np.issubdtype(array.dtype, np.number) or array.dtype == bool)
    ):
        raise DataError(f"{name}: an array of {array.dtype} is not pixels; give uint8 or float values in 0-255")
    if array.ndim == 2:
        array = array[None, None]
    elif array.ndim == 3:
        if array.shape[0] not in (1, 3) and array.shape[-1] in (1, 3):
            array = array.transpose(2, 0, 1)  # HWC -> CHW
        array = array[None]
    if array.ndim != 4 or array.shape[1] not in (1, 3) or 0 in array.shape:
        raise DataError(
            f"{name}: array of shape {list(array.shape)} is not [H,W], [C,H,W], [H,W,C] or [N,C,H,W] "
            "with 1 or 3 channels"
        )
    if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
        raise DataError(f"{name}: the array holds NaN or infinite values")
    if np.issubdtype(array.dtype, np.integer) and (array.min() < 0 or array.max() > 255):
        raise DataError(
            f"{name}: integer pixels must lie in 0-255, not {array.min()}..{array.max()}; give pixels in the "
            "dataset's units (uint8 images)"
        )
    with np.errstate(over="ignore"):
        array = array.astype(np.float32)
    if not np.isfinite(array).all():
        raise DataError(f"{name}: the array holds values beyond float32's range; give pixels in 0-255")
    if array.shape[2:] == (height, width):
        if array.shape[1] == 3 and channels == 1:
            array = array.mean(axis=1, keepdims=True)
        elif array.shape[1] == 1 and channels == 3:
            array = np.repeat(array, 3, axis=1)
        return array
    image = _image_module()
    resized = []
    for one in np.clip(np.round(array), 0, 255).astype(np.uint8):
        mode = "L" if one.shape[0] == 1 else "RGB"
        pil = image.fromarray(one[0] if mode == "L" else one.transpose(1, 2, 0), mode=mode)
        resized.append(_from_pil(pil, shape, name))
    return np.stack(resized).astype(np.float32)


def to_pixels(inputs: Any, shape: Sequence[int]) -> tuple[np.ndarray, list[str | None]]:
    """(float32 NCHW pixels in 0-255 units, one name per image: the path, or None) for any accepted input."""
    if isinstance(inputs, np.ndarray):
        pixels = from_array(inputs, shape, "array")
        return pixels, [None] * len(pixels)
    items = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
    if not items:
        raise UsageError("predict needs at least one input")
    arrays, names = [], []
    for index, item in enumerate(items):
        if isinstance(item, (str, os.PathLike)):
            if os.path.exists(item) and not os.path.isfile(item):  # a FIFO or a device would block or never end
                raise DataError(f"{item} is not a regular file")
            arrays.append(decode_image(item, shape, name=str(item))[None].astype(np.float32))
            names.append(str(item))
        elif isinstance(item, (bytes, bytearray)):
            arrays.append(decode_image(bytes(item), shape, name=f"inputs[{index}]")[None].astype(np.float32))
            names.append(None)
        elif isinstance(item, np.ndarray):
            batch = from_array(item, shape, f"inputs[{index}]")
            arrays.append(batch)
            names.extend([None] * len(batch))
        elif hasattr(item, "convert") and hasattr(item, "size"):  # a PIL image
            arrays.append(_from_pil(item, shape, f"inputs[{index}]")[None].astype(np.float32))
            names.append(None)
        else:
            raise UsageError(
                f"inputs[{index}] is a {type(item).__name__}; give image paths, PIL images, encoded "
                "image bytes or pixel arrays"
            )
    return np.concatenate(arrays), names
