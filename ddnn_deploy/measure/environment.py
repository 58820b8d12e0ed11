"""Environment capture: what a latency number was measured on (host, CPU, governor, GPU, versions,
Jetson power mode and clocks). Reads files and asks small tools with a timeout; never fails."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from pathlib import Path
from typing import Any


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None


def _run(cmd: list[str], timeout: float = 5.0) -> str | None:
    if shutil.which(cmd[0]) is None:
        return None
    try:
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() if result.returncode == 0 else None


def cpu_model() -> str:
    info = _read("/proc/cpuinfo") or ""
    for line in info.splitlines():
        if line.lower().startswith(("model name", "hardware", "cpu model")):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def cpu_governor() -> str | None:
    return _read("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor")


def jetson_state() -> dict[str, Any] | None:
    release = _read("/etc/nv_tegra_release")
    model = _read("/proc/device-tree/model")
    if release is None and not (model and "jetson" in model.lower()):
        return None
    power = _run(["nvpmodel", "-q"])
    clocks = _run(["jetson_clocks", "--show"])
    return {
        "model": (model or "").rstrip("\x00"),
        "l4t": release,
        "power_mode": power,
        "clocks_locked": None
        if clocks is None
        else ("MaxFreq" in clocks and "MinFreq" in clocks and _clocks_pinned(clocks)),
        "clocks": clocks,
    }


def _clocks_pinned(text: str) -> bool:
    """jetson_clocks --show prints 'MinFreq=X MaxFreq=Y CurrentFreq=Z' per CPU; locked when X == Y."""
    for line in text.splitlines():
        if "MinFreq=" in line and "MaxFreq=" in line:
            parts = dict(p.split("=", 1) for p in line.split() if "=" in p)
            if parts.get("MinFreq") != parts.get("MaxFreq"):
                return False
    return True


def gpus() -> list[dict[str, str]]:
    out = _run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total,compute_cap", "--format=csv,noheader"])
    if not out:
        return []
    rows = []
    for line in out.splitlines():
        parts = [p.strip() for p in line.split(",")]
        rows.append(dict(zip(("name", "driver", "memory", "compute_capability"), parts)))
    return rows


def library_versions(backend: str) -> dict[str, str | None]:
    import importlib.metadata as md

    versions: dict[str, str | None] = {}
    for package in ("numpy", "onnxruntime", "onnxruntime-gpu", "onnx", "tensorrt", "cuda-python", "pycuda", "torch"):
        try:
            versions[package] = md.version(package)
        except md.PackageNotFoundError:
            continue
    versions["backend"] = backend
    return versions


def capture(backend: str, threads: int | None) -> dict[str, Any]:
    from .. import __version__

    return {
        "host": platform.node(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "governor": cpu_governor(),
        "threads": threads,
        "gpus": gpus(),
        "jetson": jetson_state(),
        "libraries": library_versions(backend),
        "ddnn_deploy": __version__,
    }


def warnings_for(env: dict[str, Any]) -> list[str]:
    """Conditions that make latency numbers hard to trust or to reproduce."""
    notes = []
    if env.get("governor") and env["governor"] != "performance":
        notes.append(
            f"CPU governor is '{env['governor']}', not 'performance': latency may drift "
            "(sudo cpupower frequency-set -g performance)"
        )
    jetson = env.get("jetson")
    if jetson and jetson.get("clocks_locked") is False:
        notes.append("Jetson clocks are not locked: run `sudo jetson_clocks` for stable numbers")
    return notes
