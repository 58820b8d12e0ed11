"""The tiny model every test shares: a one-epoch EKD checkpoint on 512 Fashion-MNIST images (cifar_resnet20,
width 8, depths 8 and 14), and its export (every depth + the selector, not simplified).

Used by conftest.py, and run as ``python tests/tiny.py OUT`` to make the artifacts for the Python 3.8 runtime
job (``scripts/test_py38.sh``), which has no torch to make them itself.
"""

from __future__ import annotations

import sys
from pathlib import Path


def make_checkpoint(out: Path) -> Path:
    from ddnn_deploy.distill.trainer import TrainConfig, train

    config = TrainConfig(
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
    )
    train(config, log=lambda m: None)
    return out


def make_artifacts(ckpt: Path, out: Path) -> Path:
    from ddnn_deploy import export

    export(ckpt, out, selector=True, simplify=False, progress=False)
    return out


if __name__ == "__main__":
    target = Path(sys.argv[1])
    target.mkdir(parents=True, exist_ok=True)
    make_artifacts(make_checkpoint(target / "tiny.pt"), target / "artifacts")
    print(target / "artifacts")
