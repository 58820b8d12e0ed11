"""Energy per inference, where the hardware tells it, read around the timed loop of each bench row:

- ``rapl``: Intel/AMD RAPL through ``/sys/class/powercap`` (the CPU packages; ``energy_uj`` counters that wrap at
  ``max_energy_range_uj``; root-only on most kernels since 2020);
- ``nvml``: an NVIDIA GPU's total energy counter (``nvmlDeviceGetTotalEnergyConsumption``, Volta and later;
  ``pip install nvidia-ml-py``);
- ``tegrastats``: a Jetson's input rail (``VDD_IN``, or ``POM_5V_IN`` on older boards): its mean power over the
  loop times the loop's duration.

Where none can be read the row says ``{"unavailable": why}``, never 0.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

POWERCAP = Path("/sys/class/powercap")
INPUT_RAILS = ("VDD_IN", "POM_5V_IN")


class Unavailable(Exception):
    """No energy source can be read here; the message says why."""


class RaplMeter:
    """The CPU packages' RAPL counters (top-level zones only: sub-zones such as core/uncore are inside them)."""

    source = "rapl"
    scope = "CPU packages"

    def __init__(self, root: Path = POWERCAP) -> None:
        if not root.is_dir():
            raise Unavailable(f"no RAPL here ({root} is missing)")
        self.zones = []
        for zone in sorted(root.glob("*-rapl:*")):
            if zone.name.count(":") != 1:  # intel-rapl:0:0 is a sub-zone of intel-rapl:0
                continue
            energy, wrap = zone / "energy_uj", zone / "max_energy_range_uj"
            try:
                int(energy.read_text())
                self.zones.append((energy, int(wrap.read_text()) if wrap.exists() else None))
            except PermissionError:
                raise Unavailable(f"{energy} is readable by root only (run as root, or chmod it)") from None
            except (OSError, ValueError) as exc:
                raise Unavailable(f"{energy} cannot be read ({exc})") from None
        if not self.zones:
            raise Unavailable(f"no RAPL package zones under {root}")

    def read(self) -> list[int]:
        return [int(energy.read_text()) for energy, _ in self.zones]

    def joules(self, before: list[int], after: list[int]) -> float:
        total = 0
        for (_, wrap), a, b in zip(self.zones, before, after):
            delta = b - a
            if delta < 0 and wrap:  # the counter wrapped once during the loop
                delta += wrap
            total += max(delta, 0)
        return total / 1e6


class NvmlMeter:
    source = "nvml"
    scope = "GPU 0"

    def __init__(self) -> None:
        try:
            import pynvml

            pynvml.nvmlInit()
            self.nvml = pynvml
            self.handle = pynvml.nvmlDeviceGetHandleByIndex(0)
            pynvml.nvmlDeviceGetTotalEnergyConsumption(self.handle)
        except ImportError:
            raise Unavailable("NVML is not installed (pip install nvidia-ml-py)") from None
        except Exception as exc:  # noqa: BLE001 - NVMLError_* (no GPU, not supported before Volta)
            raise Unavailable(f"the GPU's energy counter cannot be read ({type(exc).__name__})") from None

    def read(self) -> int:
        return int(self.nvml.nvmlDeviceGetTotalEnergyConsumption(self.handle))  # mJ

    def joules(self, before: int, after: int) -> float:
        return max(after - before, 0) / 1e3


class TegrastatsMeter:
    source = "tegrastats"
    scope = "the board's input rail"

    def __init__(self) -> None:
        from .tegrastats import TegrastatsSampler

        self.sampler = TegrastatsSampler(interval_ms=100)
        self.started = False
        if not self.sampler.available:
            raise Unavailable("tegrastats is not on PATH (not a Jetson)")

    def read(self) -> float:
        if not self.started:  # the first reading (before the loop) starts the sampler, the second only times
            self.sampler.start()
            self.started = True
        return time.monotonic()

    def joules(self, before: float, after: float) -> float:
        power = self.sampler.stop().get("power_mean_mw") or {}
        rail = next((r for r in INPUT_RAILS if r in power), None)
        if rail is None:
            raise Unavailable("tegrastats printed no input rail (VDD_IN / POM_5V_IN)")
        return power[rail] / 1e3 * (after - before)


def make_meter(backend: str, provider: str, root: Path = POWERCAP) -> Any:
    """The meter for where the work runs: tegrastats on a Jetson, NVML for a GPU elsewhere, RAPL for the CPU."""
    reasons = []
    gpu = backend == "tensorrt" or provider in ("cuda", "tensorrt")
    makers = [TegrastatsMeter, NvmlMeter] if gpu else [TegrastatsMeter, lambda: RaplMeter(root)]
    for maker in makers:
        try:
            return maker()
        except Unavailable as exc:
            reasons.append(str(exc))
    raise Unavailable("; ".join(reasons[-1:]) if not gpu else "; ".join(reasons))


class EnergyReading:
    """``start``/``stop`` around the timed loop (``measure``'s hooks), then ``result(calls, batch)``."""

    def __init__(self, backend: str, provider: str, root: Path = POWERCAP) -> None:
        try:
            self.meter: Any = make_meter(backend, provider, root)
            self.reason = None
        except Unavailable as exc:
            self.meter, self.reason = None, str(exc)
        self.before: Any = None
        self.after: Any = None
        self.seconds = 0.0

    def start(self) -> None:
        if self.meter is not None:
            self.before, self._t = self.meter.read(), time.monotonic()

    def stop(self) -> None:
        if self.meter is not None:
            self.after, self.seconds = self.meter.read(), time.monotonic() - self._t

    def result(self, calls: int, batch: int) -> dict[str, Any]:
        if self.meter is None:
            return {"unavailable": self.reason}
        try:
            joules = self.meter.joules(self.before, self.after)
        except Unavailable as exc:
            return {"unavailable": str(exc)}
        return {
            "source": self.meter.source,
            "scope": self.meter.scope,
            "joules_per_call": joules / max(calls, 1),
            "joules_per_image": joules / max(calls * batch, 1),
            "mean_watts": joules / self.seconds if self.seconds > 0 else None,
        }
