"""The export folder's ``manifest.json`` (format ``ddnn-deploy.export``, version 1): schema, reader, writer.

One entry per file in ``artifacts``: a per-depth graph (``kind: depth``, FP32, FP16 or INT8) or the
selector graph (``kind: selector``, lists in ``depth`` and ``blocks``, an external-data file in
``data``). The reader refuses a manifest whose fields are malformed, whose paths leave the folder
(also through symlinks) or whose files no longer match their sha256.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, Iterator, List, Literal, Optional, Union

from pydantic import Field, PrivateAttr, model_validator

from ..atomic import sha256_file, write_text_atomic
from ..errors import ArtifactsError, UsageError
from ._schema import NonNegativeInt, PositiveInt, RelativePath, Schema, Sha256, read_json_file, reason_of, validate

FORMAT = "ddnn-deploy.export"
VERSION = 1
PRECISIONS = ("fp32", "fp16", "int8")


class FileRecord(Schema):
    path: RelativePath
    sha256: Sha256
    bytes: NonNegativeInt


class CheckpointRef(Schema):
    path: Optional[str] = None
    sha256: Sha256


class TensorInfo(Schema):
    name: str
    dtype: str
    layout: Optional[str] = None
    shape: List[Union[PositiveInt, str, None]]


class PreprocessInfo(Schema):
    """The model's input is ``(pixels * scale - mean) / std`` per channel."""

    scale: float
    mean: List[float]
    std: List[float]
    layout: str = "NCHW"

    @model_validator(mode="after")
    def _channels(self) -> PreprocessInfo:
        if not self.mean or len(self.mean) != len(self.std):
            raise ValueError("mean and std must be non-empty lists of the same length (one value per channel)")
        if any(s <= 0 for s in self.std):
            raise ValueError("std values must be positive")
        return self


class Artifact(Schema):
    """One exported file. ``depth``/``blocks`` are lists for the selector graph."""

    depth: Union[int, List[int]]
    blocks: Union[List[PositiveInt], List[List[PositiveInt]]]
    kind: Literal["depth", "selector"]
    precision: Literal["fp32", "fp16", "int8"]
    path: RelativePath
    sha256: Sha256
    bytes: NonNegativeInt
    params: Optional[NonNegativeInt] = None
    macs: Union[NonNegativeInt, Dict[str, NonNegativeInt], None] = None
    opset: Optional[int] = None
    exporter: Optional[str] = None
    simplified: Optional[bool] = None
    simplify_note: Optional[str] = None
    batch: Optional[PositiveInt] = None
    parity: Optional[Dict[str, Any]] = None
    data: Optional[FileRecord] = None  # the selector's external weights
    weights: Optional[Dict[str, NonNegativeInt]] = None
    source: Optional[RelativePath] = Field(default=None, alias="from")  # the graph an FP16/INT8 file came from
    target: Optional[Literal["cpu", "tensorrt"]] = None  # INT8 only
    method: Optional[str] = None
    per_channel: Optional[bool] = None
    calibration: Optional[Dict[str, Any]] = None
    accuracy: Optional[Dict[str, Any]] = None

    @model_validator(mode="after")
    def _shape_of_kind(self) -> Artifact:
        if self.kind == "depth":
            if not isinstance(self.depth, int) or not all(isinstance(b, int) for b in self.blocks):
                raise ValueError("a per-depth artifact has one depth number and one list of blocks")
        elif (
            not isinstance(self.depth, list)
            or len(self.depth) != len(self.blocks)
            or not all(isinstance(b, list) for b in self.blocks)
        ):
            raise ValueError("the selector artifact lists its depths and one blocks list per depth")
        if self.precision == "int8" and self.target is None:
            raise ValueError("an INT8 artifact names its target (cpu or tensorrt)")
        return self

    @property
    def depths(self) -> List[int]:
        """The depth numbers this file runs (one, or the selector's list)."""
        return list(self.depth) if isinstance(self.depth, list) else [self.depth]

    def blocks_of(self, depth: int) -> List[int]:
        if isinstance(self.depth, list):
            return list(self.blocks[self.depth.index(depth)])  # type: ignore[arg-type]
        return list(self.blocks)  # type: ignore[arg-type]

    def files(self) -> List[FileRecord]:
        """Every file this entry covers, with its expected sha256 (graph, plus external data)."""
        own = FileRecord(path=self.path, sha256=self.sha256, bytes=self.bytes)
        return [own] + ([self.data] if self.data is not None else [])


class Manifest(Schema):
    format: Literal["ddnn-deploy.export"] = FORMAT
    version: Literal[1] = VERSION
    tool_version: Optional[str] = None
    created: Optional[str] = None
    checkpoint: CheckpointRef
    arch: str
    dataset: Optional[str] = None
    input: TensorInfo
    output: TensorInfo
    preprocess: PreprocessInfo
    class_names: List[str] = Field(default_factory=list)
    export_seconds: Optional[float] = None
    artifacts: List[Artifact]
    _root: Optional[Path] = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _input_shape(self) -> Manifest:
        if len(self.input.shape) != 4 or not all(isinstance(d, int) for d in self.input.shape[1:]):
            raise ValueError("input.shape must be [batch, C, H, W] with integer C, H and W")
        return self

    @property
    def root(self) -> Path:
        if self._root is None:
            raise UsageError("this manifest was not read from a folder; use read_manifest(folder)")
        return self._root

    @property
    def input_shape(self) -> tuple:
        """(C, H, W) of one input image."""
        return tuple(int(d) for d in self.input.shape[1:])  # type: ignore[arg-type]

    @property
    def static_batch(self) -> Optional[int]:
        """The batch size every graph was exported with, or None for a dynamic batch axis."""
        first = self.input.shape[0]
        return first if isinstance(first, int) else None

    def file(self, artifact: Artifact) -> Path:
        """The absolute path of an artifact's graph (checked to lie inside the folder)."""
        return inside(self.root, artifact.path)

    def select(self, *, kind: Optional[str] = None, precision: Optional[str] = None) -> Iterator[Artifact]:
        return (
            a
            for a in self.artifacts
            if (kind is None or a.kind == kind) and (precision is None or a.precision == precision)
        )

    def depth_numbers(self, precision: Optional[str] = None) -> List[int]:
        return sorted({a.depth for a in self.select(kind="depth", precision=precision)})  # type: ignore[type-var]


def inside(root: Path, relative: str) -> Path:
    """``root / relative`` resolved, refusing anything (symlinks included) that leaves ``root``."""
    try:
        path = (root / relative).resolve()
        outside = root.resolve() not in path.parents
    except (OSError, ValueError, RuntimeError) as exc:  # a name too long, a NUL, a symlink loop
        reason = getattr(exc, "strerror", None) or reason_of(exc)
        where = root / "manifest.json"
        raise ArtifactsError(f"{where}: path {relative!r} cannot be used ({reason}); re-export") from None
    if outside:
        raise ArtifactsError(f"{root / 'manifest.json'}: path {relative!r} points outside {root}; refusing")
    return path


def _fix(root: Path) -> str:
    return f"re-export with `ddnn-deploy export --out {root} --force`"


def parse_manifest(data: Any, *, where: str = "manifest.json", fix: str = "re-export") -> Manifest:
    """Validate an already-parsed manifest (no file checks)."""
    return validate(Manifest, data, where=where, error=ArtifactsError, fix=fix)


def read_manifest(folder: Union[str, Path], *, verify: bool = True) -> Manifest:
    """The folder's manifest, validated; every listed file must exist inside the folder and (with
    ``verify``) still match its sha256."""
    root = Path(folder)
    if not root.is_dir():
        raise UsageError(f"artifacts directory {root} does not exist; create it with `ddnn-deploy export`")
    path = root / "manifest.json"
    if not path.is_file():
        raise ArtifactsError(f"{root} has no manifest.json; create it with `ddnn-deploy export --out {root}`")
    data = read_json_file(
        path, fmt=FORMAT, version=VERSION, what="ddnn-deploy export manifest", fix=_fix(root), error=ArtifactsError
    )
    manifest = parse_manifest(data, where=str(path), fix=_fix(root))
    manifest._root = root
    classes = manifest.output.shape[-1] if manifest.output.shape else None
    if manifest.class_names and isinstance(classes, int) and len(manifest.class_names) != classes:
        raise ArtifactsError(
            f"{path}: class_names lists {len(manifest.class_names)} names for {classes} outputs; {_fix(root)}"
        )
    for index, artifact in enumerate(manifest.artifacts):
        for record in artifact.files():
            file = inside(root, record.path)
            try:
                exists = file.is_file()
                matches = exists and (not verify or sha256_file(file) == record.sha256)
            except OSError as exc:  # unreadable (permissions), or a name the file system refuses
                raise ArtifactsError(
                    f"{path}: artifacts[{index}]: cannot read {record.path} ({exc.strerror or type(exc).__name__})"
                ) from None
            if not exists:
                raise ArtifactsError(f"{path}: artifacts[{index}]: {record.path} is listed but missing; re-export")
            if not matches:
                raise ArtifactsError(
                    f"{path}: artifacts[{index}]: {record.path} no longer matches the sha256 "
                    "recorded for it: the file was changed after export; refusing to use it "
                    "(re-export)"
                )
        if verify:  # the graph is this entry's (its metadata) and reads exactly the listed external data
            from .external_data import check_graph

            data = artifact.data.path if artifact.data is not None else None
            expect = {
                "ddnn.kind": artifact.kind,
                "ddnn.depth": artifact.depth,
                "ddnn.checkpoint_sha256": manifest.checkpoint.sha256,
            }
            check_graph(root, artifact.path, data, f"{path}: artifacts[{index}]", expect)
    return manifest


def write_manifest(folder: Union[str, Path], manifest: Union[Manifest, Dict[str, Any]]) -> Path:
    """Validate and write ``folder/manifest.json`` atomically (temporary name, then rename)."""
    if not isinstance(manifest, Manifest):
        manifest = parse_manifest(manifest, where="the manifest being written", fix="this is a bug in ddnn-deploy")
    path = Path(folder) / "manifest.json"
    write_text_atomic(path, json.dumps(manifest.to_json_dict(), indent=2) + "\n")
    return path
