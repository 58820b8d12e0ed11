"""The shared-weight checkpoint: schema, atomic save and safe load.

A checkpoint is a plain dict that ``torch.load(weights_only=True)`` can read - tensors, numbers,
strings, lists and dicts only. Loading never falls back to full unpickling: a file that needs it
is refused. Schema (``format`` = ``ddnn-deploy.checkpoint``, ``version`` = 1)::

    arch            architecture name, e.g. "cifar_resnet20"
    model           build_model keyword arguments: num_classes, in_channels, input_size, width
    depths          [{"depth": 14, "blocks": [2, 2, 2]}, ...]  the checkpoint's depth table
    state_dict      shared weights (torchvision names for ImageNet ResNets)
    bn_stats        {"2-2-2": {buffer name: tensor}}  per-depth BN running statistics (may be empty)
    preprocess      {"scale", "mean", "std", "layout"}; input is (pixels * scale - mean) / std
    input_shape     [C, H, W]
    dataset         dataset name or null
    class_names     list of class names
    metrics         {"2-2-2": {"top1": .., "top5": .., "top1_shared_bn": ..}}
    training        settings and history of the run that produced it (or {} for converted files)
    tool_version    ddnn-deploy version that wrote it
"""

from __future__ import annotations

import hashlib
import io
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from . import __version__
from .atomic import atomic_path
from .errors import CheckpointError, UsageError, optional_import
from .spec import ArchSpec, DepthConfig, DepthLike, arch_spec, resolve_depth

if TYPE_CHECKING:
    from .models import DepthNet

FORMAT = "ddnn-deploy.checkpoint"
VERSION = 1


@dataclass
class Checkpoint:
    """A checkpoint in memory (the fields of the schema above); ``build()`` gives its torch model."""

    arch: str
    model: dict[str, Any]
    depths: list[DepthConfig]
    state_dict: dict[str, torch.Tensor]
    bn_stats: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)
    preprocess: dict[str, Any] = field(default_factory=dict)
    input_shape: list[int] = field(default_factory=list)
    dataset: str | None = None
    class_names: list[str] = field(default_factory=list)
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    tool_version: str = __version__

    @property
    def spec(self) -> ArchSpec:
        return arch_spec(self.arch)

    def table(self) -> dict[int, DepthConfig]:
        """This checkpoint's depth table: depth number -> config."""
        return {self.spec.depth_of(c): c for c in self.depths}

    def build(self, depth: DepthLike | None = None) -> DepthNet:
        """The torch model (eval mode) with the shared weights and every stored depth's BN statistics.

        ``model(x, depth)`` then runs any depth of the table with its own statistics. ``depth`` (a number,
        ``"3-4-4-3"`` or a DepthConfig of this checkpoint's table) becomes the model's default depth:
        ``model(x)`` runs it. A depth the table lacks is a UsageError that lists the valid ones.
        """
        from .models import build_model

        default = None if depth is None else resolve_depth(self.spec, depth, self.table())
        model = build_model(self.arch, **self.model)
        try:
            model.load_state_dict(self.state_dict)
        except RuntimeError as exc:
            first = str(exc).strip().splitlines()[0]
            raise CheckpointError(f"checkpoint weights do not fit {self.arch}: {first}") from None
        try:
            model.set_depth_bn_stats(self.bn_stats)
        except UsageError as exc:
            raise CheckpointError(f"checkpoint BN statistics do not fit {self.arch}: {exc}") from None
        model.default_depth = default
        return model.eval()

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": VERSION,
            "arch": self.arch,
            "model": dict(self.model),
            "depths": [{"depth": self.spec.depth_of(c), "blocks": list(c.blocks)} for c in self.depths],
            "state_dict": self.state_dict,
            "bn_stats": self.bn_stats,
            "preprocess": self.preprocess,
            "input_shape": list(self.input_shape),
            "dataset": self.dataset,
            "class_names": list(self.class_names),
            "metrics": self.metrics,
            "training": self.training,
            "tool_version": self.tool_version,
        }


_PLAIN = (str, int, float, bool, type(None), torch.Tensor)


def _check_plain(value: Any, where: str = "checkpoint") -> None:
    """Refuse to write anything that ``torch.load(weights_only=True)`` could not read back."""
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, (str, int)):
                raise TypeError(f"{where}: key {k!r} is a {type(k).__name__}, not str/int")
            _check_plain(v, f"{where}.{k}")
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _check_plain(v, f"{where}[{i}]")
    elif type(value) not in _PLAIN and not isinstance(value, torch.Tensor):
        raise TypeError(f"{where} is a {type(value).__name__}; checkpoints hold only plain types and tensors")


def save_checkpoint(ckpt: Checkpoint, path: str | Path) -> Path:
    """Write atomically: a crash mid-write leaves any previous file at ``path`` intact."""
    path = Path(path)
    payload = ckpt.to_dict()
    _check_plain(payload)
    if path.is_dir():
        raise CheckpointError(f"{path} is a directory; give a file name such as {path / 'model.pt'}")
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path


def content_sha256(ckpt: Checkpoint) -> str:
    """sha256 of the checkpoint's serialized content (``torch.save`` of ``to_dict()`` into memory).

    It identifies a checkpoint that has no file (the same content gives the same digest); it is not
    the sha256 of a file ``save_checkpoint`` writes, whose bytes also carry the file's name.
    """
    payload = ckpt.to_dict()
    _check_plain(payload)
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    return hashlib.sha256(buffer.getvalue()).hexdigest()


def _safe_torch_load(path: Path) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        reason = str(exc).strip().splitlines()[0][:160]
        raise CheckpointError(
            f"{path} needs unsafe unpickling and was refused, not executed ({reason}); "
            "re-save it as a plain state_dict or a ddnn-deploy checkpoint"
        ) from None
    except Exception as exc:  # noqa: BLE001 - any failure to parse means a damaged or foreign file
        reason = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path} is not a readable torch file (truncated or corrupt?): {reason}") from None


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Load and validate a ddnn-deploy checkpoint with ``torch.load(weights_only=True)`` only."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    raw = _safe_torch_load(path)
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        hint = (
            (
                "it looks like a plain state_dict: wrap it with `ddnn-deploy convert --arch NAME "
                "--weights FILE --out OUT.pt`"
            )
            if isinstance(raw, dict) and raw and all(isinstance(v, torch.Tensor) for v in raw.values())
            else "it has no 'format' key"
        )
        raise CheckpointError(f"{path} is not a ddnn-deploy checkpoint ({hint})")
    if raw.get("version") != VERSION:
        raise CheckpointError(
            f"{path} has checkpoint version {raw.get('version')!r}; this tool reads "
            f"version {VERSION}: upgrade ddnn-deploy"
        )
    try:
        spec = arch_spec(raw["arch"])
        depths = [DepthConfig(tuple(d["blocks"])) for d in raw["depths"]]
        for config in depths:
            if not config.fits(spec.full):
                raise CheckpointError(f"{path}: depth {config} does not fit {spec.name}")
        return Checkpoint(
            arch=raw["arch"],
            model=dict(raw["model"]),
            depths=depths,
            state_dict=raw["state_dict"],
            bn_stats=raw.get("bn_stats") or {},
            preprocess=raw.get("preprocess") or {},
            input_shape=list(raw.get("input_shape") or []),
            dataset=raw.get("dataset"),
            class_names=list(raw.get("class_names") or []),
            metrics=raw.get("metrics") or {},
            training=raw.get("training") or {},
            tool_version=raw.get("tool_version", "?"),
        )
    except (KeyError, TypeError) as exc:
        raise CheckpointError(f"{path} is missing checkpoint field {exc}; the file is damaged") from None


def load_state_dict_file(path: str | Path) -> dict[str, torch.Tensor]:
    """A plain torchvision/timm state_dict (or a dict holding one under 'state_dict'/'model'), safely."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"weights file {path} does not exist")
    if path.suffix == ".safetensors":
        return optional_import("safetensors.torch", "reading .safetensors weights").load_file(str(path))
    raw = _safe_torch_load(path)
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(raw, dict) and isinstance(raw.get(key), dict):
            raw = raw[key]
    if not isinstance(raw, dict) or not all(isinstance(v, torch.Tensor) for v in raw.values()):
        raise CheckpointError(f"{path} does not hold a state_dict (a mapping of names to tensors)")
    return {k.removeprefix("module."): v for k, v in raw.items()}
