"""``convert``: wrap a plain torchvision/timm state_dict (or a random init) into a DDNN checkpoint."""

from __future__ import annotations

from pathlib import Path

import torch

from .checkpoint import Checkpoint, load_state_dict_file, save_checkpoint
from .data import PREPROCESS
from .describe import DEFAULT_INPUT
from .errors import CheckpointError
from .spec import arch_spec, parse_depths

IMAGENET_MEAN_STD = PREPROCESS["imagefolder"]


def convert_weights(*, arch: str, out: str | Path, weights: str | Path | None = None, depths: str | None = None,
                    num_classes: int | None = None, in_channels: int | None = None,
                    input_size: int | None = None, width: int | None = None, seed: int = 0) -> Checkpoint:
    """A DDNN checkpoint from ``weights`` (torchvision/timm names) or from a seeded random init.

    The sub-nets share the full-net's BN statistics until they are recalibrated (``train`` does this).
    """
    from .models import build_model

    spec = arch_spec(arch)
    depth_list = parse_depths(spec, depths)
    state = load_state_dict_file(weights) if weights else None
    default_channels, default_size = DEFAULT_INPUT[spec.family]
    if state is not None:
        heads = [k for k in state if k == "fc.weight" or (k.startswith("classifier") and k.endswith("weight"))]
        if num_classes is None and heads:
            num_classes = int(state[heads[-1]].shape[0])  # the last linear layer's outputs
        stem = state.get("conv1.weight")
        if in_channels is None and stem is not None:
            in_channels = int(stem.shape[1])
    model_kwargs = {"num_classes": num_classes or (10 if spec.family == "cifar_resnet" else 1000),
                    "in_channels": in_channels or default_channels, "input_size": input_size or default_size,
                    "width": width}
    torch.manual_seed(seed)
    model = build_model(arch, **model_kwargs)
    if state is not None:
        try:
            result = model.load_state_dict(state, strict=False)
        except RuntimeError as exc:
            detail = next((line.strip() for line in str(exc).splitlines() if "size mismatch" in line),
                          str(exc).strip().splitlines()[0])
            raise CheckpointError(f"{weights} does not match {arch}: {detail[:200]}; check --num-classes, "
                                  "--in-channels and --width") from None
        missing = [k for k in result.missing_keys if not k.endswith("num_batches_tracked")]
        if missing or result.unexpected_keys:
            raise CheckpointError(
                f"{weights} does not match {arch}: {len(missing)} missing keys (e.g. {missing[:2]}), "
                f"{len(result.unexpected_keys)} unexpected (e.g. {result.unexpected_keys[:2]}); "
                "check --arch, --num-classes and --width")
    c, size = model_kwargs["in_channels"], model_kwargs["input_size"]
    preprocess = IMAGENET_MEAN_STD if c == 3 else PREPROCESS["fashion-mnist"]
    ckpt = Checkpoint(
        arch=arch, model=model_kwargs, depths=depth_list,
        state_dict={k: v.detach().clone() for k, v in model.state_dict().items()},
        preprocess=preprocess.to_dict(), input_shape=[c, size, size], dataset=None,
        class_names=[str(i) for i in range(model_kwargs["num_classes"])],
        training={"source": str(weights) if weights else f"random init (seed {seed})"})
    save_checkpoint(ckpt, out)
    return ckpt
