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


def _run(cmd: list[str], timeout: float = 5.0, any_exit_code: bool = False) -> str | None:
    """stdout of a small tool, None when it is missing, fails to start, times out or (unless ``any_exit_code``)
    exits non-zero. Never prompts: stdin is closed."""
    if shutil.which(cmd[0]) is None:
        return None
    try:
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() if result.returncode == 0 or any_exit_code else None


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
    # without root `nvpmodel -q` still prints the mode, then NVPM ERROR lines about files it may not read (Nano,
    # L4T 32): read what it printed, whatever its exit code
    power = parse_nvpmodel(_run(["nvpmodel", "-q"], any_exit_code=True))
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
    """``nvpmodel -q``: 'NV Power Mode: MAXN' then the mode's id on the next line. Other lines come and go with the
    release ('NV Fan Mode:quiet' first on Xavier, 'NVPM WARN ...' / 'NVPM ERROR ...' lines, no id line at all on
    some L4T 32 boards): they are skipped, a missing id is None."""
    if not text:
        return {}
    lines = [line.strip() for line in text.splitlines()]
    name = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("NV Power Mode:")), None)
    ids = [line for line in lines if line.isdigit()]
    return {"name": name or None, "id": int(ids[-1]) if ids else None}


def _freqs(line: str) -> dict[str, str]:
    return dict(part.split("=", 1) for part in line.split() if "=" in part)


def _mhz(value: str | None, per_mhz: int) -> int | None:
    return int(value) // per_mhz if value is not None and value.isdigit() else None


def _emc_locked(values: dict[str, str]) -> bool | None:
    """L4T 32-36 print ``FreqOverride``: 1 once ``jetson_clocks`` pinned the memory clock, although MinFreq stays
    below MaxFreq. L4T 39 (JetPack 7) prints no FreqOverride; there ``jetson_clocks`` raises MinFreq to MaxFreq."""
    override = values.get("FreqOverride")
    if override == "1":
        return True
    low, high = values.get("MinFreq"), values.get("MaxFreq")
    if low is not None and high is not None:
        return low == high
    return False if override == "0" else None


def parse_jetson_clocks(text: str | None) -> dict[str, Any]:
    """``jetson_clocks --show`` -> which clocks are pinned. Online CPUs and the GPU are locked when MinFreq ==
    MaxFreq (CurrentFreq is not compared: on Xavier and Orin cpufreq estimates it from counters, so cores of one
    cluster read different values at one clock); the memory clock as :func:`_emc_locked` says. A CPU is offline
    only when it says ``Online=0`` (L4T 39 prints no Online field). ``locked`` is None when the output is missing
    (no root: unknown), or when no line was understood."""
    if not text:
        return {"locked": None}
    cpus, gpu, emc, mode, gpu_mhz, emc_mhz = [], None, None, None, None, None
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("cpu") and "MinFreq=" in line:
            values = _freqs(line)
            if values.get("Online") != "0":
                cpus.append(values.get("MinFreq") == values.get("MaxFreq"))
        elif line.startswith("GPU MinFreq="):
            values = _freqs(line)
            gpu, gpu_mhz = values.get("MinFreq") == values.get("MaxFreq"), _mhz(values.get("CurrentFreq"), 10**6)
        elif line.startswith("EMC MinFreq="):
            values = _freqs(line)
            emc, emc_mhz = _emc_locked(values), _mhz(values.get("CurrentFreq"), 10**6)
        elif line.startswith("NV Power Mode:"):
            mode = line.split(":", 1)[1].strip() or None
    parts = {"cpu_locked": all(cpus) if cpus else None, "gpu_locked": gpu, "emc_locked": emc}
    known = [v for v in parts.values() if v is not None]
    return {
        **parts,
        "gpu_mhz": gpu_mhz,
        "emc_mhz": emc_mhz,
        "power_mode": mode,
        "locked": all(known) if known else None,
    }


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
    for package in (
        "numpy",
        "onnxruntime",
        "onnxruntime-gpu",
        "onnx",
        "openvino",
        "tensorrt",
        "cuda-python",
        "pycuda",
        "torch",
    ):
        try:
            versions[package] = md.version(package)
        except md.PackageNotFoundError:
            continue
    versions["backend"] = backend
    return versions


# The instruction-set features that decide the CPU back-ends' speed: VNNI for INT8, AVX512-BF16 / AMX for BF16
CPU_FEATURES = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8")


def cpu_features(cpuinfo: str | None = None) -> list[str]:
    """Which of CPU_FEATURES the CPU has (the ``flags`` line of /proc/cpuinfo), in that order."""
    text = cpuinfo if cpuinfo is not None else (_read("/proc/cpuinfo") or "")
    flags: set[str] = set()
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            flags.update(line.partition(":")[2].split())
            break
    return [f for f in CPU_FEATURES if f in flags]


def openvino_state() -> dict[str, Any] | None:
    """OpenVINO's version, the devices it sees and the CPU's capabilities it reports; None when not installed."""
    import importlib.util

    if importlib.util.find_spec("openvino") is None:
        return None
    try:
        import openvino as ov

        core = ov.Core()
        return {
            "version": ov.get_version(),
            "devices": list(core.available_devices),
            "cpu_capabilities": list(core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")),
        }
    except Exception as exc:  # noqa: BLE001 - informational: record why it could not be read
        return {"error": f"{type(exc).__name__}: {exc}"[:200]}


def capture(backend: str, threads: int | None) -> dict[str, Any]:
    from .. import __version__

    return {
        "host": platform.node(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "cpu_features": cpu_features(),
        "governor": cpu_governor(),
        "threads": threads,
        "gpus": gpus(),
        "jetson": jetson_state(),
        "libraries": library_versions(backend),
        "openvino": openvino_state(),
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
