"""Shared fixtures: tiny models and data so the suite stays fast on a 2-core CPU."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import tiny  # tests/ is on sys.path (rootdir conftest)

try:
    import torch
except ImportError:  # the Python 3.8 runtime job: the runtime half's tests run, the torch ones skip
    torch = None

ROOT = Path(__file__).resolve().parents[1]
FASHION_MNIST = Path(os.environ.get("DDNN_FASHION_MNIST", "/usr/share/datasets/fashion-mnist"))


@pytest.fixture(autouse=True)
def _threads():
    if torch is not None:
        torch.set_num_threads(int(os.environ.get("DDNN_TEST_THREADS", "2")))
    yield


@pytest.fixture(scope="session")
def fashion_mnist_dir() -> Path:
    if (
        not (FASHION_MNIST / "t10k-labels-idx1-ubyte.gz").exists()
        and not (FASHION_MNIST / "t10k-labels-idx1-ubyte").exists()
    ):
        pytest.skip("Fashion-MNIST is not installed (apt-get install -y dataset-fashion-mnist)")
    return FASHION_MNIST


@pytest.fixture(scope="session")
def tiny_ckpt(tmp_path_factory, fashion_mnist_dir) -> Path:
    """A one-epoch EKD checkpoint on 512 Fashion-MNIST images (cifar_resnet20, depths 8 and 14)."""
    if torch is None:
        pytest.skip("needs torch (the Python 3.8 runtime job has none)")
    return tiny.make_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pt")


@pytest.fixture(scope="session")
def tiny_artifacts(tmp_path_factory, fashion_mnist_dir, request) -> Path:
    """tiny_ckpt exported: every depth + the selector, not simplified. Shared: copy it before changing it.
    Without torch (the Python 3.8 runtime job) they come ready-made from ``DDNN_TEST_ARTIFACTS``."""
    ready = os.environ.get("DDNN_TEST_ARTIFACTS")
    if ready:
        return Path(ready)
    ckpt = request.getfixturevalue("tiny_ckpt")
    return tiny.make_artifacts(ckpt, tmp_path_factory.mktemp("export") / "artifacts")


def _has_gpu() -> bool:
    if torch is not None:
        return bool(torch.cuda.is_available())
    import shutil

    return shutil.which("nvidia-smi") is not None


def pytest_collection_modifyitems(config, items):
    """``gpu`` tests need a CUDA GPU, ``tensorrt`` tests TensorRT: skipped with the reason where absent."""
    import importlib.util

    no_gpu = pytest.mark.skip(reason="needs a CUDA GPU (none here)")
    no_trt = pytest.mark.skip(reason="needs TensorRT (not installed here)")
    for item in items:
        if "gpu" in item.keywords and not _has_gpu():
            item.add_marker(no_gpu)
        if "tensorrt" in item.keywords and importlib.util.find_spec("tensorrt") is None:
            item.add_marker(no_trt)
