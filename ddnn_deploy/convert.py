"""``convert``: wrap a plain torchvision/timm state_dict (or a random init) into a DDNN checkpoint."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .errors import CheckpointError, UsageError, optional_import
from .spec import ArchSpec, DepthsLike, arch_spec, parse_depths

if TYPE_CHECKING:
    from .checkpoint import Checkpoint


def convert_weights(
    *,
    arch: str,
    out: str | os.PathLike[str],
    weights: str | os.PathLike[str] | None = None,
    depths: DepthsLike = None,
    num_classes: int | None = None,
    in_channels: int | None = None,
    input_size: int | None = None,
    width: int | None = None,
    seed: int = 0,
    force: bool = False,
) -> Checkpoint:
    """A DDNN checkpoint from ``weights`` (torchvision/timm names) or from a seeded random init.

    ``depths`` (``"38,44,50"``, a depth or a list of depths; ``None``: the architecture's table) is the
    checkpoint's depth table. ``num_classes`` and ``in_channels`` default to what the weights hold, then
    to the architecture's spec, as do ``input_size`` and ``width``. The sub-nets share the full-net's BN
    statistics until they are recalibrated (``train`` does this). An existing ``out`` is replaced only with
    ``force``.
    """
    for name, value in (("out", out), ("weights", weights)):
        if not isinstance(value, (str, os.PathLike)) and not (name == "weights" and value is None):
            raise UsageError(f"{name} must be a file path, not {type(value).__name__} {value!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32:
        raise UsageError(f"seed must be an integer in 0..2**32-1, not {type(seed).__name__} {seed!r}")
    if os.path.isdir(out):
        raise UsageError(f"--out {out} is a directory; give a file name such as {os.path.join(out, 'model.pt')}")
    if os.path.exists(out) and not force:
        raise UsageError(f"--out {out} already exists; pass --force to replace it, or choose another --out")
    spec = arch_spec(arch)
    depth_list = parse_depths(spec, depths)
    torch = optional_import("torch", "convert (building the model)")
    from .checkpoint import Checkpoint, load_state_dict_file, save_checkpoint
    from .models import build_model

    state = load_state_dict_file(weights) if weights is not None else None
    if state is not None:
        broken = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
        if broken:
            raise CheckpointError(
                f"{weights}: {broken[0]} holds NaN or infinite values ({len(broken)} tensor(s) do); "
                "these weights cannot make a working network"
            )
    if state is not None:
        num_classes, in_channels = _shape_from_weights(state, num_classes, in_channels, where=str(weights))
    model_kwargs = spec.model_kwargs(
        num_classes=num_classes, in_channels=in_channels, input_size=input_size, width=width
    )
    torch.manual_seed(seed)
    try:
        model = build_model(spec.name, **model_kwargs)
    except (RuntimeError, MemoryError) as exc:  # e.g. a head of 10**9 classes read from the weights
        raise CheckpointError(f"cannot build {spec.name} with {model_kwargs}: {str(exc).strip()[:160]}") from None
    if state is not None:
        _load_weights(model, state, f"{weights} does not match {spec.name}")
    channels, size = model_kwargs["in_channels"], model_kwargs["input_size"]
    ckpt = Checkpoint(
        arch=spec.name,
        model=model_kwargs,
        depths=depth_list,
        state_dict={k: v.detach().clone() for k, v in model.state_dict().items()},
        preprocess=_default_preprocess(spec, channels),
        input_shape=[channels, size, size],
        dataset=None,
        class_names=[str(i) for i in range(model_kwargs["num_classes"])],
        training={"source": str(weights) if weights is not None else f"random init (seed {seed})"},
    )
    save_checkpoint(ckpt, out)
    return ckpt


def _shape_from_weights(
    state: Mapping[str, Any], num_classes: int | None, in_channels: int | None, *, where: str = "the weights"
) -> tuple[int | None, int | None]:
    """(classes, input channels) read from the last linear layer and the stem, unless given."""
    heads = [k for k in state if k == "fc.weight" or (k.startswith("classifier") and k.endswith("weight"))]
    heads = [k for k in heads if state[k].dim() == 2]  # a classifier's BatchNorm weight is no linear layer
    if num_classes is None and heads:
        num_classes = int(state[heads[-1]].shape[0])  # the last linear layer's outputs
    stem = state.get("conv1.weight")
    if in_channels is None and stem is not None:
        if stem.dim() != 4:
            raise CheckpointError(
                f"{where}: conv1.weight has shape {list(stem.shape)}, not a convolution's [out, in, kH, kW]; "
                "check --arch"
            )
        in_channels = int(stem.shape[1])
    return num_classes, in_channels


def _load_weights(model: Any, state: Mapping[str, Any], mismatch: str) -> None:
    """Load ``state`` into ``model``; any missing, unexpected or mis-shaped key is a CheckpointError."""
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:
        detail = next(
            (line.strip() for line in str(exc).splitlines() if "size mismatch" in line),
            str(exc).strip().splitlines()[0],
        )
        raise CheckpointError(f"{mismatch}: {detail[:200]}; check --num-classes, --in-channels and --width") from None
    missing = [k for k in result.missing_keys if not k.endswith("num_batches_tracked")]
    if missing or result.unexpected_keys:
        raise CheckpointError(
            f"{mismatch}: {len(missing)} missing keys (e.g. {missing[:2]}), "
            f"{len(result.unexpected_keys)} unexpected (e.g. {result.unexpected_keys[:2]}); "
            "check --arch, --num-classes and --width"
        )


def _default_preprocess(spec: ArchSpec, channels: int) -> dict[str, Any]:
    """The spec's preprocessing; for another channel count, Fashion-MNIST's (the one grayscale dataset)."""
    if channels == spec.default_input[0]:
        return spec.preprocess.to_dict()
    from .data import PREPROCESS

    return PREPROCESS["fashion-mnist"].to_dict()
