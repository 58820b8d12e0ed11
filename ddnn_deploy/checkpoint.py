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
import math
import pickle
import pickletools
import re
import warnings
import zipfile
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
        try:  # shapes first, on the meta device: a width of 10**6 is refused here, never allocated
            with torch.device("meta"):
                expected = build_model(self.arch, **self.model).state_dict()
        except (TypeError, ValueError, RuntimeError) as exc:
            raise CheckpointError(
                f"cannot build {self.arch} from model settings {self.model}: {_reason(exc)}"
            ) from None
        misfit = state_dict_misfit(expected, self.state_dict)
        if misfit:
            raise CheckpointError(f"checkpoint weights do not fit {self.arch}: {misfit}")
        model = build_model(self.arch, **self.model)
        try:
            model.load_state_dict(self.state_dict)
        except (RuntimeError, TypeError, ValueError) as exc:
            raise CheckpointError(f"checkpoint weights do not fit {self.arch}: {_reason(exc, last=True)}") from None
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
    try:
        with atomic_path(path) as tmp, open(tmp, "wb") as f:  # a Python file: a full disk is an OSError
            torch.save(payload, f)
    except (OSError, RuntimeError) as exc:  # torch re-raises a failed write as a RuntimeError in its __exit__
        cause = exc
        while cause is not None and not isinstance(cause, OSError):
            cause = cause.__context__
        if cause is None:
            raise
        raise CheckpointError(
            f"cannot write {path}: {cause.strerror or cause}; nothing was replaced (free some space, or choose "
            "another --out)"
        ) from None
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


def _reason(exc: BaseException, *, last: bool = False) -> str:
    """An exception's message as a short reason: its first (or last) non-empty line, at most 200 characters."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return (lines[-1] if last else lines[0])[:200] if lines else type(exc).__name__


class _Discard:
    def write(self, text: str) -> int:
        return len(text)


_SCAN_LIMIT = 256 << 20  # bytes of pickle read to tell a pickle from garbage


def _pickle_stream(path: Path) -> bytes | None:
    """The pickle torch.load would read first: ``data.pkl`` of a zip checkpoint, else the file's start."""
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                names = [n for n in archive.namelist() if n == "data.pkl" or n.endswith("/data.pkl")]
                if not names:
                    return None
                with archive.open(names[0]) as member:
                    return member.read(_SCAN_LIMIT)
        with open(path, "rb") as f:
            return f.read(_SCAN_LIMIT)
    except Exception:  # noqa: BLE001 - a damaged zip (bad CRC, bad deflate data, ...) holds no pickle
        return None


_MEMO_PUTS = ("PUT", "BINPUT", "LONG_BINPUT", "MEMOIZE")
_MEMO_GETS = ("GET", "BINGET", "LONG_BINGET")


def _pickle_globals(stream: bytes) -> list[str] | None:
    """The globals (``module.name``) a pickle would import, or None when ``stream`` is no well-formed pickle.

    Parsing only (``pickletools``, which never imports nor calls anything); STACK_GLOBAL's names are followed
    through the memo, other values are not tracked."""
    try:
        pickletools.dis(stream, out=_Discard())  # checks opcodes, arguments, stack and memo: garbage fails
        names: list[str] = []
        pushed: list[Any] = []  # the strings pushed, None for any other value
        memo: dict[Any, Any] = {}
        for op, arg, _ in pickletools.genops(stream):
            if op.name in ("GLOBAL", "INST"):
                names.append(str(arg).replace(" ", "."))
                pushed.append(None)
            elif op.name == "STACK_GLOBAL":
                module, name = pushed[-2:] if len(pushed) >= 2 else (None, None)
                names.append(f"{module}.{name}" if isinstance(module, str) and isinstance(name, str) else "?")
                pushed.append(None)
            elif op.name in _MEMO_PUTS:
                memo[len(memo) if op.name == "MEMOIZE" else arg] = pushed[-1] if pushed else None
            elif op.name in _MEMO_GETS:
                pushed.append(memo.get(arg))
            elif op.stack_after:
                pushed.append(arg if isinstance(arg, str) else None)
        return names
    except Exception:  # noqa: BLE001 - anything pickletools cannot parse is not a pickle
        return None


_SAFE_GLOBAL = re.compile(r"^(torch(\..+)?|collections\.OrderedDict|_codecs\.encode)$")
_TORCH_BOILERPLATE = ("Weights only load failed", "Please file an issue", "Check the documentation", "In PyTorch 2.6")


def _refusal(exc: BaseException, names: list[str]) -> tuple[str, str]:
    """(why ``weights_only`` loading refused a real pickle, what to do), in a few words each."""
    fix = "re-save it as a plain state_dict or a ddnn-deploy checkpoint"
    unsafe = [n for n in names if not _SAFE_GLOBAL.match(n)]
    if unsafe:
        return f"it would import {', '.join(sorted(set(unsafe))[:3])}", fix
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    useful = [line for line in lines if not line.startswith(_TORCH_BOILERPLATE)]
    reason = (useful or lines or [type(exc).__name__])[0][:200]
    operand = re.fullmatch(r"Unsupported operand (\d+)", reason)
    op = None
    if operand and int(operand.group(1)) < 256:
        code = chr(int(operand.group(1)))
        op = next((o for o in pickletools.opcodes if o.code == code), None)
    if op is not None:
        reason = f"pickle protocol {op.proto} opcode {op.name}, which torch.load(weights_only=True) does not read"
        fix = "re-save it with torch.save and its default pickle protocol (2)"
    return reason, fix


def _safe_torch_load(path: Path, what: str = "checkpoint") -> Any:
    """``torch.load(weights_only=True)``; every failure one CheckpointError that says which of three it is:
    not a torch file at all, a pickle that would need unsafe unpickling, or a damaged torch file."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch warns about pickle protocols; the error below says it all
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure to parse means a damaged, foreign or unsafe file
        failure = exc
    stream = _pickle_stream(path)
    names = _pickle_globals(stream) if stream is not None else None
    if names is None:
        kind = (
            "a zip archive without a readable data.pkl"
            if zipfile.is_zipfile(path)
            else "neither a zip archive nor a pickle"
        )
        raise CheckpointError(
            f"{path} is not a {what}: {kind} (truncated or corrupt, or another format); "
            "give a file written by torch.save or ddnn-deploy"
        ) from None
    if isinstance(failure, pickle.UnpicklingError):
        reason, fix = _refusal(failure, names)
        raise CheckpointError(
            f"{path} needs unsafe unpickling and was refused, not executed ({reason}); {fix}"
        ) from None
    raise CheckpointError(f"{path} is not a readable torch file (truncated or corrupt?): {_reason(failure)}") from None


def _tensor_problem(value: Any) -> str | None:
    """Why ``value`` is not a plain weight tensor, or None. An expanded view (stride 0) is refused: a few
    bytes of file would otherwise claim gigabytes of weights."""
    if not isinstance(value, torch.Tensor):
        return f"is a {type(value).__name__}, not a tensor"
    if value.layout != torch.strided or value.device.type != "cpu" or value.is_quantized:
        return f"is a {value.layout} {value.device.type} tensor, not a dense CPU tensor"
    stored = value.untyped_storage().nbytes()
    if value.numel() * value.element_size() > stored:
        return f"of shape {list(value.shape)} is backed by only {stored} bytes (an expanded view)"
    return None


def _check_tensors(path: Path, where: str, tensors: Any) -> dict[str, torch.Tensor]:
    if not isinstance(tensors, dict):
        raise CheckpointError(f"{path}: {where} must be a dict of tensors, not {type(tensors).__name__}")
    for key, value in tensors.items():
        if not isinstance(key, str):
            raise CheckpointError(f"{path}: {where} holds a key that is not a name: {_short(key)}")
        problem = _tensor_problem(value)
        if problem:
            raise CheckpointError(f"{path}: {where}[{_short(key)}] {problem}")
    return tensors


def state_dict_misfit(expected: dict[str, Any], found: dict[str, Any]) -> str | None:
    """Why the weights ``found`` do not fit a model whose state_dict is ``expected`` (names and shapes), or None."""
    missing = [k for k in expected if k not in found]
    unexpected = [k for k in found if k not in expected]
    if missing or unexpected:
        return (
            f"{len(missing)} missing keys (e.g. {missing[:2]}), {len(unexpected)} unexpected (e.g. "
            f"{[_short(k) for k in unexpected[:2]]})"
        )
    for key, tensor in expected.items():
        shape = getattr(found[key], "shape", None)
        if shape is None or tuple(shape) != tuple(tensor.shape):
            got = list(shape) if shape is not None else type(found[key]).__name__
            return f"{key} has shape {got}, the model wants {list(tensor.shape)}"
    return None


def _short(value: Any, limit: int = 60) -> str:
    """``repr(value)`` on one line of at most ``limit`` characters (a tensor's repr has several)."""
    if isinstance(value, torch.Tensor):
        return f"a {value.dtype} tensor of shape {list(value.shape)}"
    text = repr(value) if not isinstance(value, int) or abs(value) < 10**100 else "<a huge integer>"
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _get(raw: dict[str, Any], key: str, default: Any) -> Any:
    """``raw[key]``, or ``default`` when it is absent or None (never ``or``: a tensor has no truth value)."""
    value = raw.get(key)
    return default if value is None else value


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


_MODEL_KEYS = ("num_classes", "in_channels", "input_size", "width")
_FIX = "the file is damaged or was not written by ddnn-deploy"


def _bad(path: Path, field: str, problem: str) -> CheckpointError:
    return CheckpointError(f"{path}: {field} {problem}; {_FIX}")


def _structure(raw: dict[str, Any], path: Path) -> tuple[str, dict, list[DepthConfig]]:
    """(architecture, model arguments, depth table), each checked."""
    arch = raw.get("arch")
    if not isinstance(arch, str):
        raise _bad(path, "arch", f"must be an architecture name, not {_short(arch)}")
    try:
        spec = arch_spec(arch)
    except UsageError as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    model = raw.get("model")
    if not isinstance(model, dict) or not all(isinstance(k, str) and k in _MODEL_KEYS for k in model):
        raise _bad(path, "model", f"must be a dict of {', '.join(_MODEL_KEYS)}")
    try:
        spec.model_kwargs(**model)
    except UsageError as exc:
        raise _bad(path, "model", f"is wrong: {exc}") from None
    entries = raw.get("depths")
    if not isinstance(entries, (list, tuple)) or not entries:
        raise _bad(path, "depths", "must be a non-empty list of {'depth': N, 'blocks': [...]} entries")
    depths = []
    for index, entry in enumerate(entries):
        blocks = entry.get("blocks") if isinstance(entry, dict) else None
        if not isinstance(blocks, (list, tuple)) or not blocks or not all(_is_count(b) for b in blocks):
            raise _bad(path, f"depths[{index}].blocks", "must be a list of positive integers (blocks per stage)")
        config = DepthConfig(tuple(blocks))
        if not config.fits(spec.full):
            raise CheckpointError(f"{path}: depth {config} does not fit {spec.name}")
        depths.append(config)
    return arch, model, depths


def _preprocess(raw: dict[str, Any], path: Path) -> dict[str, Any]:
    preprocess = _get(raw, "preprocess", {})
    if not isinstance(preprocess, dict):
        raise _bad(path, "preprocess", "must be a dict of scale, mean, std and layout")
    if "scale" in preprocess and not _is_number(preprocess["scale"]):
        raise _bad(path, "preprocess.scale", "must be a finite number")
    for key in ("mean", "std"):
        values = preprocess.get(key, [1.0])
        if not isinstance(values, (list, tuple)) or not values or not all(_is_number(v) for v in values):
            raise _bad(path, f"preprocess.{key}", "must be a non-empty list of finite numbers (one per channel)")
    if "std" in preprocess and any(v <= 0 for v in preprocess["std"]):
        raise _bad(path, "preprocess.std", "must hold positive numbers")
    if not isinstance(preprocess.get("layout", ""), str):
        raise _bad(path, "preprocess.layout", "must be a string such as 'NCHW'")
    return preprocess


def _described(raw: dict[str, Any], path: Path) -> dict[str, Any]:
    """The descriptive fields: input shape, dataset, class names, metrics, training record, tool version."""
    input_shape = _get(raw, "input_shape", [])
    if not isinstance(input_shape, (list, tuple)) or (
        input_shape and (len(input_shape) != 3 or not all(_is_count(d) for d in input_shape))
    ):
        raise _bad(path, "input_shape", "must be [C, H, W] (three positive integers)")
    dataset = raw.get("dataset")
    if dataset is not None and not isinstance(dataset, str):
        raise _bad(path, "dataset", "must be a dataset name or null")
    class_names = _get(raw, "class_names", [])
    if not isinstance(class_names, (list, tuple)) or not all(isinstance(c, str) for c in class_names):
        raise _bad(path, "class_names", "must be a list of strings")
    metrics = _get(raw, "metrics", {})
    if not isinstance(metrics, dict) or not all(isinstance(v, dict) for v in metrics.values()):
        raise _bad(path, "metrics", "must be a dict of depth -> {top1, top5, ...}")
    training = _get(raw, "training", {})
    if not isinstance(training, dict):
        raise _bad(path, "training", "must be a dict")
    tool_version = raw.get("tool_version", "?")
    if not isinstance(tool_version, str):
        raise _bad(path, "tool_version", "must be a string")
    return {
        "input_shape": list(input_shape),
        "dataset": dataset,
        "class_names": list(class_names),
        "metrics": metrics,
        "training": training,
        "tool_version": tool_version,
    }


def _fields(raw: dict[str, Any], path: Path) -> Checkpoint:
    """A Checkpoint from the loaded dict, every field checked: a bad one is ONE CheckpointError naming it."""
    arch, model, depths = _structure(raw, path)
    state_dict = _check_tensors(path, "state_dict", raw.get("state_dict"))
    bn_stats = _get(raw, "bn_stats", {})
    if not isinstance(bn_stats, dict) or not all(isinstance(k, (str, int)) for k in bn_stats):
        raise _bad(path, "bn_stats", "must be a dict of depth -> {buffer name: tensor}")
    for key, stats in bn_stats.items():
        _check_tensors(path, f"bn_stats[{_short(key)}]", stats)
    return Checkpoint(
        arch=arch,
        model=dict(model),
        depths=depths,
        state_dict=state_dict,
        bn_stats=bn_stats,
        preprocess=_preprocess(raw, path),
        **_described(raw, path),
    )


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Load and validate a ddnn-deploy checkpoint with ``torch.load(weights_only=True)`` only."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    raw = _safe_torch_load(path)
    if not isinstance(raw, dict) or not (isinstance(raw.get("format"), str) and raw["format"] == FORMAT):
        hint = (
            (
                "it looks like a plain state_dict: wrap it with `ddnn-deploy convert --arch NAME "
                "--weights FILE --out OUT.pt`"
            )
            if isinstance(raw, dict) and raw and all(isinstance(v, torch.Tensor) for v in raw.values())
            else "it has no 'format' key"
        )
        raise CheckpointError(f"{path} is not a ddnn-deploy checkpoint ({hint})")
    if type(raw.get("version")) is not int or raw["version"] != VERSION:
        raise CheckpointError(
            f"{path} has checkpoint version {_short(raw.get('version'))}; this tool reads "
            f"version {VERSION}: upgrade ddnn-deploy"
        )
    return _fields(raw, path)


def load_state_dict_file(path: str | Path) -> dict[str, torch.Tensor]:
    """A plain torchvision/timm state_dict (or a dict holding one under 'state_dict'/'model'), safely."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"weights file {path} does not exist")
    if path.suffix == ".safetensors":
        safetensors = optional_import("safetensors.torch", "reading .safetensors weights")
        try:
            raw: Any = safetensors.load_file(str(path))
        except Exception as exc:  # noqa: BLE001 - SafetensorError, a bad header, a truncated file
            raise CheckpointError(f"{path} is not a readable .safetensors file: {_reason(exc)}") from None
    else:
        raw = _safe_torch_load(path, "weights file")
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(raw, dict) and isinstance(raw.get(key), dict):
            raw = raw[key]
    if not isinstance(raw, dict) or not raw or not all(isinstance(v, torch.Tensor) for v in raw.values()):
        raise CheckpointError(f"{path} does not hold a state_dict (a mapping of names to tensors)")
    _check_tensors(path, "the state_dict", raw)
    return {(k[len("module.") :] if k.startswith("module.") else k): v for k, v in raw.items()}
