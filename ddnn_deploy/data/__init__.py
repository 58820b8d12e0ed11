"""Data without torch: decoding datasets, preprocessing, and the one feed every ONNX back-end reads.

- ``datasets``: Fashion-MNIST IDX, CIFAR binary and image folders as uint8 NCHW numpy arrays.
- ``preprocess``: ``Preprocess`` (uint8 pixels -> the model's float input) and each dataset's default.
- ``feed``: ``FeedReader``, THE feed for INT8 calibration, accuracy and benchmarking.
"""

from __future__ import annotations

from .datasets import (
    CIFAR10_CLASSES,
    DATASETS,
    FASHION_MNIST_CLASSES,
    FASHION_MNIST_DIR,
    IMAGE_SUFFIXES,
    ImageDataset,
    eval_data_present,
    load_cifar_binary,
    load_dataset,
    load_eval_data,
    load_fashion_mnist,
    load_image_folder,
    read_idx,
)
from .feed import FeedReader
from .preprocess import PREPROCESS, Preprocess

__all__ = [
    "CIFAR10_CLASSES",
    "DATASETS",
    "FASHION_MNIST_CLASSES",
    "FASHION_MNIST_DIR",
    "IMAGE_SUFFIXES",
    "PREPROCESS",
    "FeedReader",
    "ImageDataset",
    "Preprocess",
    "eval_data_present",
    "load_cifar_binary",
    "load_dataset",
    "load_eval_data",
    "load_fashion_mnist",
    "load_image_folder",
    "read_idx",
]
