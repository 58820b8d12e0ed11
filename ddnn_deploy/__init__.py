"""ddnn-deploy: train, export, calibrate, bench and pick depths of depth-level dynamic networks.

``import ddnn_deploy`` imports neither torch nor onnxruntime; the pipeline is reachable from here
lazily (each name imports its module on first use)::

    import ddnn_deploy as dd
    ckpt = dd.load_checkpoint(dd.demo_checkpoint())          # torch: the shared-weight checkpoint
    manifest = dd.export(ckpt, "artifacts/", depths=[8, 20])  # verified per-depth ONNX graphs
    dd.calibrate("artifacts/", dd.QuantConfig(method="percentile"))
    results = dd.bench("artifacts/", device="x86-cpu", dataset="fashion-mnist")
    print(dd.pick_depth(results, budget_ms=0.4))

The torch half (``train``, ``export``, ``load_checkpoint``, ``evaluate_checkpoint``, ``describe``,
``convert_weights``) raises ``MissingDependencyError`` (with the install command) on first use when
torch is absent; the runtime half (``calibrate``, ``bench``, ``pick_depth``, the file readers) never
imports torch.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

from .errors import (  # noqa: E402
    CheckpointError,
    DataError,
    DDNNError,
    MissingDependencyError,
    UsageError,
    optional_import,
)
from .spec import ARCHITECTURES, DepthConfig, arch_spec, parse_depths  # noqa: E402

# public name -> (module, attribute, the optional package it needs)
_LAZY: dict[str, tuple[str, str, str | None]] = {
    "train": ("ddnn_deploy.distill.trainer", "train", "torch"),
    "TrainConfig": ("ddnn_deploy.distill.config", "TrainConfig", None),
    "load_checkpoint": ("ddnn_deploy.checkpoint", "load_checkpoint", "torch"),
    "Checkpoint": ("ddnn_deploy.checkpoint", "Checkpoint", "torch"),
    "evaluate_checkpoint": ("ddnn_deploy.evaluation", "evaluate_checkpoint", "torch"),
    "describe": ("ddnn_deploy.describe", "describe", "torch"),
    "convert_weights": ("ddnn_deploy.convert", "convert_weights", "torch"),
    "export": ("ddnn_deploy.onnx_export.api", "export", "torch"),
    "calibrate": ("ddnn_deploy.quantize.calibrate", "calibrate", None),
    "QuantConfig": ("ddnn_deploy.quantize.config", "QuantConfig", None),
    "bench": ("ddnn_deploy.measure.sweep", "bench", None),
    "plan_jobs": ("ddnn_deploy.measure.plan", "plan_jobs", None),
    "DeviceProfile": ("ddnn_deploy.formats.profiles", "DeviceProfile", None),
    "TimingSettings": ("ddnn_deploy.formats.profiles", "TimingSettings", None),
    "get_profile": ("ddnn_deploy.formats.profiles", "get_profile", None),
    "pick_depth": ("ddnn_deploy.pick", "pick_depth", None),
    "Pick": ("ddnn_deploy.pick", "Pick", None),
    "Manifest": ("ddnn_deploy.formats.manifest", "Manifest", None),
    "read_manifest": ("ddnn_deploy.formats.manifest", "read_manifest", None),
    "BenchResults": ("ddnn_deploy.formats.results", "BenchResults", None),
    "read_results": ("ddnn_deploy.formats.results", "read_results", None),
    "demo_checkpoint": ("ddnn_deploy.resources", "demo_checkpoint", None),
}

__all__ = [
    "ARCHITECTURES",
    "CheckpointError",
    "DDNNError",
    "DataError",
    "DepthConfig",
    "MissingDependencyError",
    "UsageError",
    "__version__",
    "arch_spec",
    "optional_import",
    "parse_depths",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'ddnn_deploy' has no attribute {name!r}")
    module, attribute, needs = _LAZY[name]
    if needs is not None:
        optional_import(needs, f"ddnn_deploy.{name}")
    value = getattr(importlib.import_module(module), attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
