"""Shared fixtures: tiny models and data so the suite stays fast on a 2-core CPU."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

ROOT = Path(__file__).resolve().parents[1]
FASHION_MNIST = Path(os.environ.get("DDNN_FASHION_MNIST", "/usr/share/datasets/fashion-mnist"))


@pytest.fixture(autouse=True)
def _threads():
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
    from ddnn_deploy.distill.trainer import TrainConfig, train

    out = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    train(
        TrainConfig(
            arch="cifar_resnet20",
            depths="8,14",
            width=8,
            epochs=1,
            batch_size=64,
            train_limit=512,
            test_limit=256,
            recal_samples=256,
            out=str(out),
            progress=False,
        ),
        log=lambda m: None,
    )
    return out


@pytest.fixture(scope="session")
def tiny_artifacts(tiny_ckpt, tmp_path_factory) -> Path:
    """tiny_ckpt exported: every depth + the selector, not simplified. Shared: copy it before changing it."""
    from ddnn_deploy import export

    out = tmp_path_factory.mktemp("export") / "artifacts"
    export(tiny_ckpt, out, selector=True, simplify=False)
    return out
