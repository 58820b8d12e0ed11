"""``info``: parameters and MACs of every depth of an architecture or a checkpoint."""

from __future__ import annotations

from typing import Any

from .errors import UsageError
from .spec import arch_spec, parse_depths

DEFAULT_INPUT = {"resnet": (3, 224), "vgg": (3, 224), "cifar_resnet": (3, 32)}


def describe(*, arch: str | None = None, ckpt: str | None = None, depths: str | None = None,
             num_classes: int | None = None, in_channels: int | None = None,
             input_size: int | None = None, width: int | None = None) -> dict[str, Any]:
    """``{"arch", "input_shape", "depths": [{"depth", "blocks", "params", "macs"}, ...]}``."""
    from .models import build_model, count_macs

    if (arch is None) == (ckpt is None):
        raise UsageError("give exactly one of --arch NAME or --ckpt FILE")
    table = None
    if ckpt is not None:
        from .checkpoint import load_checkpoint

        checkpoint = load_checkpoint(ckpt)
        model = checkpoint.build()
        spec, table = checkpoint.spec, checkpoint.table()
        shape = tuple(checkpoint.input_shape) or (model.conv1.in_channels, model.input_size, model.input_size)
        extra: dict[str, Any] = {"checkpoint": str(ckpt), "dataset": checkpoint.dataset,
                                 "metrics": checkpoint.metrics}
    else:
        spec = arch_spec(arch)  # type: ignore[arg-type]
        channels, size = DEFAULT_INPUT[spec.family]
        channels = in_channels or channels
        size = input_size or size
        model = build_model(spec.name, num_classes=num_classes or (1000 if spec.family != "cifar_resnet" else 10),
                            in_channels=channels, input_size=size, width=width)
        shape, extra = (channels, size, size), {}
    rows = []
    for config in parse_depths(spec, depths, table):
        row: dict[str, Any] = {"depth": spec.depth_of(config), "blocks": list(config.blocks),
                               "params": model.count_params(config), "macs": count_macs(model, config, shape)}
        metrics = extra.get("metrics", {}).get(str(config))
        if metrics:
            row["top1"] = metrics.get("top1")
            row["top1_split"] = metrics.get("split", "test")  # "held-out" for a --holdout (tuning) run
        rows.append(row)
    result = {"arch": spec.name, "input_shape": list(shape), "depths": rows}
    result.update({k: v for k, v in extra.items() if k != "metrics"})
    return result
