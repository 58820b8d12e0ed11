"""``info``: parameters and MACs of every depth of an architecture or a checkpoint."""

from __future__ import annotations

import os
from typing import Any

from .errors import UsageError, optional_import
from .spec import ArchSpec, DepthConfig, DepthsLike, arch_spec, parse_depths


def describe(
    *,
    arch: str | None = None,
    ckpt: str | os.PathLike[str] | None = None,
    depths: DepthsLike = None,
    num_classes: int | None = None,
    in_channels: int | None = None,
    input_size: int | None = None,
    width: int | None = None,
) -> dict[str, Any]:
    """``{"arch", "input_shape", "depths": [{"depth", "blocks", "params", "macs"}, ...]}``.

    ``depths``: ``None`` (every depth), ``"38,44,50"``, a depth, or a list of depths. ``num_classes``,
    ``in_channels``, ``input_size`` and ``width`` default to the architecture's spec (``--arch`` only).
    """
    if (arch is None) == (ckpt is None):
        raise UsageError("give exactly one of --arch NAME or --ckpt FILE")
    if ckpt is not None and not isinstance(ckpt, (str, os.PathLike)):
        raise UsageError(f"ckpt must be a file path, not {type(ckpt).__name__} {ckpt!r}")
    overrides = {"num_classes": num_classes, "in_channels": in_channels, "input_size": input_size, "width": width}
    if ckpt is not None and any(v is not None for v in overrides.values()):
        given = ", ".join(k for k, v in overrides.items() if v is not None)
        raise UsageError(f"{given}: only with --arch (a checkpoint carries its own model settings)")
    optional_import("torch", "counting parameters and MACs")
    if ckpt is not None:
        return _describe_checkpoint(ckpt, depths)
    spec = arch_spec(arch)  # type: ignore[arg-type]
    kwargs = spec.model_kwargs(**overrides)
    from .models import build_model

    model = build_model(spec.name, **kwargs)
    shape = (kwargs["in_channels"], kwargs["input_size"], kwargs["input_size"])
    rows = [_depth_row(spec, model, config, shape) for config in parse_depths(spec, depths)]
    return {"arch": spec.name, "input_shape": list(shape), "depths": rows}


def _describe_checkpoint(ckpt: str | os.PathLike[str], depths: DepthsLike) -> dict[str, Any]:
    """``describe`` for a checkpoint: its own depth table, input shape and stored top-1 per depth."""
    from .checkpoint import load_checkpoint

    checkpoint = load_checkpoint(ckpt)
    model = checkpoint.build()
    spec = checkpoint.spec
    shape = tuple(checkpoint.input_shape) or (model.conv1.in_channels, model.input_size, model.input_size)
    rows = []
    for config in parse_depths(spec, depths, checkpoint.table()):
        row = _depth_row(spec, model, config, shape)
        metrics = checkpoint.metrics.get(str(config))
        if metrics:
            row["top1"] = metrics.get("top1")
            row["top1_split"] = metrics.get("split", "test")  # "held-out" for a --holdout (tuning) run
        rows.append(row)
    return {
        "arch": spec.name,
        "input_shape": list(shape),
        "depths": rows,
        "checkpoint": str(ckpt),
        "dataset": checkpoint.dataset,
    }


def _depth_row(spec: ArchSpec, model: Any, config: DepthConfig, shape: tuple[int, ...]) -> dict[str, Any]:
    from .models import count_macs

    return {
        "depth": spec.depth_of(config),
        "blocks": list(config.blocks),
        "params": model.count_params(config),
        "macs": count_macs(model, config, shape),
    }
