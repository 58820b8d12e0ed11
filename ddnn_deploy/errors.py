"""One exception hierarchy for ddnn-deploy, its exit codes, and the one helper for optional imports.

Every error a user can fix is a ``DDNNError`` subclass; the CLI prints it as one line (``error: ...``)
and exits with the class's ``exit_code``. The codes are declared here and nowhere else:

====  ==========================================================================
 1    any other ddnn-deploy error
 2    bad arguments (``UsageError``)
 3    a checkpoint, export folder (manifest) or results file that cannot be used
 4    a dataset that is missing or malformed (``DataError``)
 5    a missing optional dependency (``MissingDependencyError``)
 6    an exported graph that does not match PyTorch (``ParityError``)
 7    no depth fits the latency budget (``NothingFitsError``)
 8    INT8 loses more accuracy than allowed (``AccuracyDropError``)
 9    every measurement of a bench failed (``MeasurementError``; the results file is still written)
10    some measurements of a bench failed (``PartialMeasurementError``; the results file is still written)
11    another ddnn-deploy run is writing the same folder or file (``BusyError``)
12    a remote device cannot be reached, refuses us, or lacks ddnn-deploy (``RemoteError``)
130   interrupted (Ctrl-C or SIGTERM)
====  ==========================================================================
"""

from __future__ import annotations

import importlib
from types import ModuleType

EXIT_INTERRUPTED = 130


class DDNNError(Exception):
    """Base class: a problem the user can fix, reported as one line without a traceback."""

    exit_code = 1


class UsageError(DDNNError):
    """Bad arguments: unknown architecture, depth that does not fit, malformed list, wrong type."""

    exit_code = 2


class CheckpointError(DDNNError):
    """A checkpoint that is missing, truncated, of another format, or unsafe to load."""

    exit_code = 3


class FileFormatError(DDNNError):
    """One of the tool's own files (manifest.json, results.json, a profiles TOML) is malformed."""

    exit_code = 3


class ArtifactsError(FileFormatError):
    """An export folder whose manifest or files cannot be used (tampered, missing, foreign)."""


class ResultsError(FileFormatError):
    """A bench results file that cannot be used."""


class ProfileError(UsageError):
    """A device profile (built-in name or TOML table) that is unknown or malformed."""


class EngineMismatchError(FileFormatError):
    """A cached TensorRT engine that was not built here, for this TensorRT, GPU, precision and ONNX."""


class DataError(DDNNError):
    """A dataset folder that is missing or holds the wrong files."""

    exit_code = 4


class MissingDependencyError(DDNNError):
    """An optional back-end is not installed; the message carries the install command."""

    exit_code = 5


class ParityError(DDNNError):
    """The exported graph's outputs differ from PyTorch's by more than the tolerance."""

    exit_code = 6


class NothingFitsError(DDNNError):
    """No measured depth fits the budget (or the accuracy floor)."""

    exit_code = 7


class AccuracyDropError(DDNNError):
    """INT8 lost more top-1 than ``max_drop`` for some depth."""

    exit_code = 8


class MeasurementError(DDNNError):
    """Every row of a bench failed: the results (with each row's error) are written, but nothing was measured."""

    exit_code = 9


class TrainingError(DDNNError):
    """Training cannot go on (the loss became NaN or inf); the last good checkpoint is kept."""

    exit_code = 1


class PartialMeasurementError(MeasurementError):
    """Some rows of a bench failed: the results (the good rows and each failed row's error) are written."""

    exit_code = 10


class BusyError(DDNNError):
    """Another run holds the lock of the folder or file this run would write."""

    exit_code = 11


class RemoteError(DDNNError):
    """A remote device (``bench --host``, ``fleet``) cannot be reached, its host key is unknown or changed, it
    refuses the key, or it lacks (this version of) ddnn-deploy."""

    exit_code = 12


# module -> (what it is for, the command that installs it)
INSTALL_HINTS: dict[str, tuple[str, str]] = {
    "torch": ("training, export and the torch model", "pip install torch==2.13.0 (the CPU wheel; see README)"),
    "onnx": ("reading and writing ONNX graphs", "pip install 'ddnn-deploy[runtime]'"),
    "onnxruntime": ("running ONNX graphs", "pip install onnxruntime (or onnxruntime-gpu for CUDA / TensorRT)"),
    "onnxsim": ("simplifying exported graphs", "pip install onnxsim (or export with --no-simplify)"),
    "onnxscript": ("the dynamo exporter", "pip install onnxscript"),
    "tensorrt": (
        "TensorRT engines",
        "pip install 'ddnn-deploy[trt]' for CUDA 13 drivers (>= 580), 'ddnn-deploy[trt-cu12]' for CUDA 12 "
        "drivers; on JetPack TensorRT is the system package python3-libnvinfer: create the venv with "
        "--system-site-packages",
    ),
    "cuda": (
        "CUDA device buffers",
        "pip install 'cuda-python<13' (CUDA 12 drivers, JetPack 6) or cuda-python (CUDA 13)",
    ),
    "pycuda": ("CUDA device buffers", "pip install pycuda"),
    "openvino": ("the OpenVINO back-end", "pip install openvino"),
    "PIL": ("reading image files", "pip install pillow"),
    "matplotlib": ("plots", "pip install matplotlib"),
    "safetensors": ("reading .safetensors weights", "pip install safetensors"),
    "tomli": ("reading TOML on Python < 3.11", "pip install tomli"),
    "fastapi": ("the server", "pip install 'ddnn-deploy[serve]'"),
    "uvicorn": ("the server", "pip install 'ddnn-deploy[serve]'"),
    "prometheus_client": ("the server's metrics", "pip install 'ddnn-deploy[serve]'"),
}


def optional_import(module: str, purpose: str | None = None) -> ModuleType:
    """Import an optional dependency, or raise ``MissingDependencyError`` naming its install command.

    ``module`` may be a dotted name (``"onnxruntime.quantization"``); the hint is looked up by its
    top-level package. Every optional import in ddnn-deploy goes through here.
    """
    top = module.split(".", 1)[0]
    what, hint = INSTALL_HINTS.get(top, (module, f"pip install {top}"))
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        missing = getattr(exc, "name", None) in (None, top, module)
        detail = "is not installed" if missing else f"is installed but cannot be imported ({exc})"
        raise MissingDependencyError(f"{top} {detail}; {purpose or what} needs it; install it with: {hint}") from None
