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
    # `jetson_clocks --show` needs root: as root it runs directly, otherwise `sudo -n` (never a password prompt);
    # without either the clock state is unknown (None), never guessed
    show = ["jetson_clocks", "--show"] if os.geteuid() == 0 else ["sudo", "-n", "jetson_clocks", "--show"]
    clocks = _run(show)
    power = parse_nvpmodel(_run(["nvpmodel", "-q"]))
    state = parse_jetson_clocks(clocks)
    return {
        "model": (model or "").rstrip("\x00"),
        "l4t": release,
        "power_mode": power.get("name") or state.get("power_mode"),
        "power_mode_id": power.get("id"),
        "clocks_locked": state.get("locked"),
        "clocks": state,
        "clocks_raw": clocks,
    }


def parse_nvpmodel(text: str | None) -> dict[str, Any]:
    """``nvpmodel -q``: 'NV Power Mode: MAXN' then the mode's id on the next line."""
    if not text:
        return {}
    name = next((line.split(":", 1)[1].strip() for line in text.splitlines() if "Power Mode:" in line), None)
    ids = [line.strip() for line in text.splitlines() if line.strip().isdigit()]
    return {"name": name, "id": int(ids[-1]) if ids else None}


def _freqs(line: str) -> dict[str, str]:
    return dict(part.split("=", 1) for part in line.split() if "=" in part)


def parse_jetson_clocks(text: str | None) -> dict[str, Any]:
    """``jetson_clocks --show`` -> which clocks are pinned. CPUs (online ones) and the GPU are locked when
    MinFreq == MaxFreq; the memory clock (EMC) keeps MinFreq < MaxFreq even after ``jetson_clocks``, and is
    locked when ``FreqOverride=1``. ``locked`` is None when the output is missing (no root: unknown)."""
    if not text:
        return {"locked": None}
    cpus, gpu, emc, mode = [], None, None, None
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("cpu") and "MinFreq=" in line:
            values = _freqs(line)
            if values.get("Online", "1") == "1":
                cpus.append(values.get("MinFreq") == values.get("MaxFreq"))
        elif line.startswith("GPU MinFreq="):
            values = _freqs(line)
            gpu = values.get("MinFreq") == values.get("MaxFreq")
        elif line.startswith("EMC MinFreq="):
            emc = _freqs(line).get("FreqOverride") == "1"
        elif line.startswith("NV Power Mode:"):
            mode = line.split(":", 1)[1].strip()
    parts = {"cpu_locked": all(cpus) if cpus else None, "gpu_locked": gpu, "emc_locked": emc}
    known = [v for v in parts.values() if v is not None]
    return {**parts, "power_mode": mode, "locked": all(known) if known else None}


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
