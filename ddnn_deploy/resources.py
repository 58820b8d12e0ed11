"""Files that ship with ddnn-deploy: the demo checkpoint and the default INT8 calibration samples.

In the repository they live in ``models/`` and ``calibration/`` (their one committed copy). A wheel
carries them as package data under ``ddnn_deploy/_bundled_models/`` and
``ddnn_deploy/_bundled_calibration/`` (``[tool.setuptools.package-dir]`` in pyproject.toml maps those
two package names onto the repository folders at build time). The functions below look in the
installed package first (``importlib.resources``) and fall back to the repository folders, which is
where a source checkout or an editable install (``pip install -e .``) finds them.

No torch, no work at import time: paths are resolved when a function is called.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path

DEMO_CHECKPOINT = "fmnist-resnet20-ddnn.pt"
CALIBRATION_SAMPLES = {"fashion-mnist": "fashion-mnist-512.npz"}

# (folder inside the installed package, folder in the repository)
_MODELS = ("_bundled_models", "models")
_CALIBRATION = ("_bundled_calibration", "calibration")


def _repository_root() -> Path:
    return Path(__file__).resolve().parents[1]


def _find(where: tuple[str, str], name: str) -> Path | None:
    packaged, repo_folder = where
    # A wheel installs package data as plain files beside the code (no zip import is supported), so a path
    # relative to this module finds it; importlib.resources.files would need Python 3.9.
    candidate = Path(__file__).resolve().parent / packaged / name
    if candidate.is_file():
        return candidate
    in_repo = _repository_root() / repo_folder / name
    return in_repo if in_repo.is_file() else None


def demo_checkpoint() -> Path:
    """The built-in demo checkpoint (Fashion-MNIST ResNet-8/14/20 DDNN, 1.2 MB).

    Raises ``CheckpointError`` (exit code 3) when neither the installed package nor the repository holds it.
    """
    path = _find(_MODELS, DEMO_CHECKPOINT)
    if path is None:
        from .errors import CheckpointError

        raise CheckpointError(
            f"the demo checkpoint {DEMO_CHECKPOINT} is missing from this installation "
            f"(looked in ddnn_deploy/{_MODELS[0]}/ and {_repository_root() / _MODELS[1]})"
        )
    return path


def calibration_sample(dataset: str) -> Path | None:
    """The default calibration sample (.npz) for ``dataset``, or None when none ships for it."""
    name = CALIBRATION_SAMPLES.get(dataset)
    return None if name is None else _find(_CALIBRATION, name)


class DefaultCalibrationSamples(Mapping):  # not Mapping[str, Path]: unsubscriptable at run time on Python 3.8
    """``{dataset: sample path}`` resolved lazily on each lookup; datasets whose sample is missing are absent."""

    def __getitem__(self, dataset: str) -> Path:
        path = calibration_sample(dataset)
        if path is None:
            raise KeyError(dataset)
        return path

    def __iter__(self) -> Iterator[str]:
        return (name for name in CALIBRATION_SAMPLES if calibration_sample(name) is not None)

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def __repr__(self) -> str:
        return f"DefaultCalibrationSamples({dict(self)!r})"


# What ``calibrate`` uses when no --dataset is given (``ddnn_deploy.quantize.reader.DEFAULT_SAMPLES``).
DEFAULT_CALIBRATION_SAMPLES = DefaultCalibrationSamples()


__all__ = [
    "CALIBRATION_SAMPLES",
    "DEFAULT_CALIBRATION_SAMPLES",
    "DEMO_CHECKPOINT",
    "DefaultCalibrationSamples",
    "calibration_sample",
    "demo_checkpoint",
]
