"""Device profiles: back-end, precision, threads, batch sizes and timing settings for a target.

Built-in: ``x86-cpu`` (onnxruntime CPU, all cores), ``cuda`` (onnxruntime CUDA EP) and ``jetson``
(TensorRT FP16). Users add or override profiles in a TOML file::

    [profiles.orin-nx]
    extends = "jetson"          # optional: start from another profile
    batch_sizes = [1, 4]
    min_seconds = 5.0
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from ..errors import UsageError
from .timing import TimingSettings

BACKENDS = ("onnxruntime", "tensorrt", "torch")


@dataclass(frozen=True)
class DeviceProfile:
    name: str
    backend: str = "onnxruntime"
    provider: str = "cpu"  # onnxruntime execution provider: cpu, cuda, tensorrt
    precisions: tuple[str, ...] = ("fp32",)
    threads: int | None = None  # None = every core
    batch_sizes: tuple[int, ...] = (1,)
    warmup_iters: int = 10
    warmup_seconds: float = 0.5
    min_iters: int = 50
    min_seconds: float = 1.0
    accuracy_batch: int = 256
    max_cv: float = 0.10  # warn when std/mean of the latency exceeds this
    description: str = ""

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise UsageError(f"profile {self.name}: unknown backend {self.backend!r}; choose one of {BACKENDS}")
        if not self.batch_sizes or any(int(b) < 1 for b in self.batch_sizes):
            raise UsageError(f"profile {self.name}: batch_sizes must be positive integers")
        if self.min_iters < 1 or self.min_seconds < 0:
            raise UsageError(f"profile {self.name}: min_iters must be >= 1 and min_seconds >= 0")

    @property
    def timing(self) -> TimingSettings:
        return TimingSettings(self.warmup_iters, self.warmup_seconds, self.min_iters, self.min_seconds)

    def resolved_threads(self) -> int:
        return self.threads or os.cpu_count() or 1

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["threads"] = self.resolved_threads() if self.backend != "tensorrt" else None
        return d


BUILTIN_PROFILES: dict[str, DeviceProfile] = {
    p.name: p for p in (
        DeviceProfile("x86-cpu", "onnxruntime", "cpu", ("fp32",), None, (1, 8),
                      description="onnxruntime CPU execution provider, every core"),
        DeviceProfile("cuda", "onnxruntime", "cuda", ("fp32",), None, (1, 8), warmup_iters=50,
                      description="onnxruntime CUDA execution provider (needs onnxruntime-gpu)"),
        DeviceProfile("jetson", "tensorrt", "cpu", ("fp16",), None, (1,), warmup_iters=50, min_iters=200,
                      min_seconds=3.0, description="TensorRT FP16 engines built on the device"),
    )
}

_FIELDS = {f.name for f in fields(DeviceProfile)}


def _load_toml(path: Path) -> dict[str, Any]:
    try:
        import tomllib
    except ImportError:  # Python < 3.11
        try:
            import tomli as tomllib  # type: ignore[no-redef]
        except ImportError:
            raise UsageError("reading profiles needs Python 3.11+ or: pip install tomli") from None
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except OSError as exc:
        raise UsageError(f"cannot read profiles file {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"profiles file {path} is not valid TOML: {exc}") from None


def load_profiles(path: str | Path | None = None) -> dict[str, DeviceProfile]:
    """Built-in profiles, overridden and extended by ``[profiles.NAME]`` tables of a TOML file."""
    profiles = dict(BUILTIN_PROFILES)
    if path is None:
        return profiles
    data = _load_toml(Path(path))
    tables = data.get("profiles")
    if not isinstance(tables, dict) or not tables:
        raise UsageError(f"profiles file {path} has no [profiles.NAME] tables")
    for name, table in tables.items():
        if not isinstance(table, dict):
            raise UsageError(f"profiles file {path}: profiles.{name} must be a table")
        table = dict(table)
        base_name = table.pop("extends", name if name in profiles else None)
        unknown = sorted(set(table) - _FIELDS)
        if unknown:
            raise UsageError(f"profiles file {path}: profiles.{name} has unknown keys {unknown}; "
                             f"known: {', '.join(sorted(_FIELDS - {'name'}))}")
        for key in ("precisions", "batch_sizes"):
            if key in table:
                if not isinstance(table[key], list):
                    raise UsageError(f"profiles file {path}: profiles.{name}.{key} must be a list")
                table[key] = tuple(table[key])
        if base_name is not None:
            if base_name not in profiles:
                raise UsageError(f"profiles file {path}: profiles.{name} extends unknown profile {base_name!r}")
            profiles[name] = replace(profiles[base_name], name=name, **table)
        else:
            try:
                profiles[name] = DeviceProfile(name=name, **table)
            except TypeError as exc:
                raise UsageError(f"profiles file {path}: profiles.{name}: {exc}") from None
    return profiles


def get_profile(name: str, path: str | Path | None = None) -> DeviceProfile:
    profiles = load_profiles(path)
    if name not in profiles:
        raise UsageError(f"unknown device profile {name!r}; known profiles: {', '.join(sorted(profiles))}")
    return profiles[name]
