"""Device profiles: back-end, precision, threads, batch sizes and timing settings for a target.

Built in: ``x86-cpu`` (onnxruntime CPU, all cores), ``cuda`` (onnxruntime CUDA EP), ``jetson``
(TensorRT FP16) and ``torch-cuda`` (the checkpoint in PyTorch on a CUDA GPU). In Python a profile is a
``DeviceProfile`` object (``get_profile("x86-cpu")`` or ``DeviceProfile(name=..., ...)``,
``profile.model_copy(update={...})``); on the command line users add or override profiles in a TOML file::

    [profiles.orin-nx]
    extends = "jetson"          # optional: start from another profile
    batch_sizes = [1, 4]
    min_seconds = 5.0
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Dict, Optional, Tuple, Union

from pydantic import ConfigDict, model_validator

from ..errors import ProfileError, UsageError, optional_import
from ._schema import PositiveInt, Schema, field_path, reason_of, validate

BACKENDS = ("onnxruntime", "openvino", "tensorrt", "torch")
PROVIDERS = ("cpu", "cuda", "tensorrt")
PRECISIONS = ("fp32", "fp16", "bf16", "int8")
HINTS = ("latency", "throughput")  # OpenVINO's PERFORMANCE_HINT
# What each back-end measures; a profile's other precisions are not planned on it
BACKEND_PRECISIONS = {
    "onnxruntime": ("fp32", "fp16", "int8"),
    "openvino": ("fp32", "bf16", "int8"),
    "tensorrt": ("fp32", "fp16", "int8"),
    "torch": ("fp32", "fp16"),
}
MAX_ITERS = 100_000  # TimingSettings.max_iters: a measurement never runs more iterations
MAX_SECONDS = 3600.0
MAX_THREADS = 4096


class TimingSettings(Schema):
    """Warm up by count AND by time, then measure at least ``min_iters`` AND at least ``min_seconds``."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    warmup_iters: int = 10
    warmup_seconds: float = 0.5
    min_iters: PositiveInt = 50
    min_seconds: float = 1.0
    max_iters: PositiveInt = MAX_ITERS

    @model_validator(mode="after")
    def _ranges(self) -> TimingSettings:
        if self.warmup_iters < 0 or self.warmup_seconds < 0 or self.min_seconds < 0:
            raise ValueError("warm-up counts and times must be >= 0")
        if self.max_iters < self.min_iters:
            raise ValueError("max_iters must be >= min_iters")
        return self


class DeviceProfile(Schema):
    """Where and how ``bench`` measures: one back-end, its precisions, threads, batch sizes, timing."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    name: str
    backend: str = "onnxruntime"
    provider: str = "cpu"  # onnxruntime execution provider: cpu, cuda, tensorrt
    precisions: Tuple[str, ...] = ("fp32",)
    threads: Optional[PositiveInt] = None  # None = every core
    batch_sizes: Tuple[PositiveInt, ...] = (1,)
    warmup_iters: int = 10
    warmup_seconds: float = 0.5
    min_iters: PositiveInt = 50
    min_seconds: float = 1.0
    accuracy_batch: PositiveInt = 256
    max_cv: float = 0.10  # warn when std/mean of the latency exceeds this
    hint: str = "latency"  # OpenVINO's performance hint: latency or throughput
    # back-ends measured too where they are installed (x86-cpu: OpenVINO beside onnxruntime)
    optional_backends: Tuple[str, ...] = ()
    description: str = ""

    @model_validator(mode="after")
    def _choices(self) -> DeviceProfile:
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, not {self.backend!r}")
        if self.provider not in PROVIDERS:
            raise ValueError(f"provider must be one of {', '.join(PROVIDERS)}, not {self.provider!r}")
        if self.hint not in HINTS:
            raise ValueError(f"hint must be one of {', '.join(HINTS)}, not {self.hint!r}")
        unknown_backends = [b for b in self.optional_backends if b not in BACKENDS or b == self.backend]
        if unknown_backends:
            raise ValueError(f"optional_backends must list other back-ends of {', '.join(BACKENDS)}")
        unknown = [p for p in self.precisions if p not in PRECISIONS]
        if not self.precisions or unknown:
            raise ValueError(f"precisions must be a non-empty list of {', '.join(PRECISIONS)}")
        if not self.batch_sizes:
            raise ValueError("batch_sizes must list at least one batch size")
        if self.warmup_iters < 0 or self.warmup_seconds < 0 or self.min_seconds < 0 or self.max_cv < 0:
            raise ValueError("warm-up settings, min_seconds and max_cv must be >= 0")
        if self.min_iters > MAX_ITERS or self.warmup_iters > MAX_ITERS:
            raise ValueError(f"min_iters and warmup_iters must be <= {MAX_ITERS} (the most one measurement runs)")
        if self.min_seconds > MAX_SECONDS or self.warmup_seconds > MAX_SECONDS:
            raise ValueError(f"min_seconds and warmup_seconds must be <= {MAX_SECONDS} (one hour per measurement)")
        if self.threads is not None and self.threads > MAX_THREADS:
            raise ValueError(f"threads must be <= {MAX_THREADS}")
        return self

    @property
    def timing(self) -> TimingSettings:
        return TimingSettings(
            warmup_iters=self.warmup_iters,
            warmup_seconds=self.warmup_seconds,
            min_iters=self.min_iters,
            min_seconds=self.min_seconds,
            max_iters=max(MAX_ITERS, self.min_iters),  # with_timing may have set more than a TOML file may
        )

    def with_timing(self, timing: TimingSettings) -> DeviceProfile:
        """This profile with other timing settings (no TOML file needed)."""
        return self.model_copy(
            update={k: getattr(timing, k) for k in ("warmup_iters", "warmup_seconds", "min_iters", "min_seconds")}
        )

    def backends(self, installed: Optional[Tuple[str, ...]] = None) -> Tuple[str, ...]:
        """The back-end, then each optional one that is installed (``installed``: the installed ones, else found)."""
        import importlib.util

        def present(name: str) -> bool:
            return name in installed if installed is not None else importlib.util.find_spec(name) is not None

        return (self.backend, *(b for b in self.optional_backends if present(b)))

    def resolved_threads(self) -> Optional[int]:
        """CPU threads the back-end gets (every core by default); None for TensorRT (GPU)."""
        if self.backend == "tensorrt":
            return None
        return self.threads or os.cpu_count() or 1

    def to_dict(self) -> Dict[str, Any]:
        data = self.model_dump(mode="json")
        data["threads"] = self.resolved_threads()
        return data


BUILTIN_PROFILES: Dict[str, DeviceProfile] = {
    p.name: p
    for p in (
        DeviceProfile(
            name="x86-cpu",
            batch_sizes=(1, 8),
            precisions=("fp32", "bf16", "int8"),
            optional_backends=("openvino",),
            description="onnxruntime's CPU execution provider, and OpenVINO where installed; every core",
        ),
        DeviceProfile(
            name="x86-openvino",
            backend="openvino",
            batch_sizes=(1, 8),
            precisions=("fp32", "bf16", "int8"),
            description="OpenVINO on the CPU (bf16 where the CPU has native BF16), every core",
        ),
        DeviceProfile(
            name="cuda",
            provider="cuda",
            batch_sizes=(1, 8),
            warmup_iters=50,
            description="onnxruntime CUDA execution provider (needs onnxruntime-gpu)",
        ),
        DeviceProfile(
            name="jetson",
            backend="tensorrt",
            precisions=("fp16",),
            warmup_iters=50,
            min_iters=200,
            min_seconds=3.0,
            description="TensorRT FP16 engines built on the device",
        ),
        DeviceProfile(
            name="torch-cuda",
            backend="torch",
            provider="cuda",
            precisions=("fp32", "fp16"),
            batch_sizes=(1, 32),
            warmup_iters=50,
            description="the PyTorch reference from --ckpt on a CUDA GPU (FP32 without TF32, and FP16)",
        ),
    )
}


def _load_toml(path: Path) -> Dict[str, Any]:
    try:
        import tomllib  # Python 3.11+
    except ImportError:
        tomllib = optional_import("tomli", "reading profiles on Python < 3.11")  # type: ignore[assignment]
    if path.exists() and not path.is_file():
        raise ProfileError(f"profiles file {path} is not a regular file")
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except OSError as exc:
        raise ProfileError(f"cannot read profiles file {path}: {exc.strerror or exc}") from None
    except (ValueError, RecursionError) as exc:  # TOMLDecodeError, not UTF-8, a 5000-digit number, a=[[[[...
        raise ProfileError(f"{path}: is not valid TOML ({reason_of(exc)})") from None


def _profile_from_table(path: Path, name: str, table: Any, profiles: Dict[str, DeviceProfile]) -> DeviceProfile:
    where = f"{path}: {field_path(('profiles', name))}"
    if not isinstance(table, dict):
        raise ProfileError(f"{where}: must be a table ([profiles.{name}])")
    table = dict(table)
    base_name = table.pop("extends", name if name in profiles else None)
    if base_name is not None:
        if not isinstance(base_name, str) or base_name not in profiles:
            raise ProfileError(f"{where}.extends: unknown profile {base_name!r}; known: {', '.join(sorted(profiles))}")
        table = {**profiles[base_name].model_dump(mode="json"), **table}
    table["name"] = name
    try:
        json.dumps(table)
    except (TypeError, ValueError):
        raise ProfileError(f"{where}: holds a value that is not a number, string, boolean or list") from None
    return validate(DeviceProfile, table, where=where, error=ProfileError)


def load_profiles(path: Union[str, Path, None] = None) -> Dict[str, DeviceProfile]:
    """Built-in profiles, overridden and extended by the ``[profiles.NAME]`` tables of a TOML file."""
    profiles = dict(BUILTIN_PROFILES)
    if path is None:
        return profiles
    path = Path(path)
    tables = _load_toml(path).get("profiles")
    if not isinstance(tables, dict) or not tables:
        raise ProfileError(f"{path}: has no [profiles.NAME] tables")
    for name, table in tables.items():
        profiles[name] = _profile_from_table(path, name, table, profiles)
    return profiles


def get_profile(device: Union[str, DeviceProfile], path: Union[str, Path, None] = None) -> DeviceProfile:
    """A profile object given itself or its name (built in, or from the TOML file ``path``)."""
    if isinstance(device, DeviceProfile):
        return device
    if not isinstance(device, str):
        raise UsageError(f"device must be a profile name or a DeviceProfile, not {type(device).__name__}")
    profiles = load_profiles(path)
    if device not in profiles:
        raise ProfileError(f"unknown device profile {device!r}; known profiles: {', '.join(sorted(profiles))}")
    return profiles[device]
