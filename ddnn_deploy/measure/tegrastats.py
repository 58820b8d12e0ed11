"""Jetson ``tegrastats``: its lines parsed, and a sampler that runs it beside a measurement.

One line per interval, fields separated by spaces, their set depending on the board, the L4T release and on
whether it runs as root (recorded examples with their sources: ``tests/fixtures/jetson/*-tegrastats.txt``)::

    [MM-DD-YYYY HH:MM:SS] RAM 1464/3964MB (lfb 214x4MB) SWAP 0/1982MB (cached 0MB) CPU [90%@1479,off,...]
    EMC_FREQ 6%@1600 GR3D_FREQ 7%@768 APE 25 PLL@28C CPU@32C ... POM_5V_IN 2746/2911 POM_5V_GPU 159/161

* CPU: ``X%@MHz`` per core, ``off`` for a core that is powered down; old releases ``[X%,Y%]@MHz``.
* EMC / GPU: ``EMC_FREQ X%@MHz`` and ``GR3D_FREQ X%@MHz``; without root only ``X%``; Orin on L4T 35-36 writes
  the GPU clock per GPC (``GR3D_FREQ 0%@[305]``, ``0%@[0,0]``), early L4T 35 one field per GPC
  (``GR3D_FREQ 0%@0 GR3D2_FREQ 0%@0``). The GPU load is the highest of them, its clock the highest GPC clock.
* Temperatures ``name@47.5C``; L4T 39 adds the maximum so far (``cpu@47.562C/48C``). ``-256C`` means the sensor
  could not be read (an idle AGX Orin's GPU and CV sensors): it is dropped, it is not a temperature.
* Power rails current/average in mW: ``VDD_IN 4123mW/4123mW`` (L4T 35+), ``POM_5V_IN 1984/1984`` (Nano),
  ``GPU 463/463`` (Xavier on L4T 32); L4T 39 adds the maximum (``4093mW/4463mW/4832mW``).

:func:`parse_tegrastats` never raises: an unknown token is ignored, a field it cannot read is left out.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import threading
from typing import Any, Iterable

from ..children import child_options

_TIME = re.compile(r"^\s*(\d{2}-\d{2}-\d{4} \d{2}:\d{2}:\d{2})\s")
_MEMORY = re.compile(r"\b(RAM|SWAP) (\d+)/(\d+)([kMG]?)B(?: ?\(cached (\d+)([kMG]?)B\))?")
_CPU = re.compile(r"\bCPU \[([^\]]*)\](?:@(\d+))?")
_CORE = re.compile(r"(\d+)%(?:@(\d+))?")
_CLOCKED = re.compile(r"\b(EMC|GR3D\d*)_FREQ (?:(\d+)%)?(?:@\[?([\d,]+)\]?)?")
_TEMP = re.compile(r"(?<![\w@%.-])([A-Za-z][\w-]*)@(-?\d+(?:\.\d+)?)C(?:/-?\d+(?:\.\d+)?C)?(?![\w])")
_RAIL = re.compile(r"\b([A-Z][A-Z0-9_]*) (\d+)(?:mW)?/(\d+)(?:mW)?(?:/(\d+)(?:mW)?)?(?![\w/])")
_NOT_RAILS = {"RAM", "SWAP", "IRAM"}
_UNREADABLE_C = -200.0  # tegrastats prints -256C for a sensor it cannot read
_TO_MB = {"k": 1 / 1024, "": 1 / 1024 / 1024, "M": 1, "G": 1024}


def _mb(value: str, unit: str) -> float | int:
    return int(value) if unit == "M" else round(int(value) * _TO_MB[unit], 3)


def _memory(line: str, out: dict[str, Any]) -> None:
    for name, used, total, unit, cached, cached_unit in _MEMORY.findall(line):
        entry: dict[str, Any] = {"used_mb": _mb(used, unit), "total_mb": _mb(total, unit)}
        if cached:
            entry["cached_mb"] = _mb(cached, cached_unit)
        out.setdefault(name.lower(), entry)


def _cpus(line: str, out: dict[str, Any]) -> None:
    match = _CPU.search(line)
    if match is None:
        return
    shared = int(match.group(2)) if match.group(2) else None
    cores = []
    for entry in match.group(1).split(","):
        entry = entry.strip()
        core = _CORE.fullmatch(entry)
        if entry == "off":
            cores.append({"online": False})
        elif core is not None:
            mhz = int(core.group(2)) if core.group(2) else shared
            cores.append({"online": True, "load_pct": int(core.group(1)), "mhz": mhz})
        else:
            cores.append({"online": None})  # not a form tegrastats is known to print
    out["cpus"] = cores


def _clocked(line: str, out: dict[str, Any]) -> None:
    loads: dict[str, list[int]] = {"emc": [], "gpu": []}
    clocks: dict[str, list[int]] = {"emc": [], "gpu": []}
    for name, load, mhz in _CLOCKED.findall(line):
        key = "emc" if name == "EMC" else "gpu"
        if load:
            loads[key].append(int(load))
        clocks[key].extend(int(v) for v in mhz.split(",") if v)
    for key in ("emc", "gpu"):
        if not loads[key] and not clocks[key]:
            continue
        entry: dict[str, Any] = {
            "load_pct": max(loads[key]) if loads[key] else None,
            "mhz": max(clocks[key]) if clocks[key] else None,
        }
        if key == "gpu":
            entry["gpc_mhz"] = clocks[key]
        out[key] = entry


def _temps(line: str, out: dict[str, Any]) -> None:
    temps = {name: float(value) for name, value in _TEMP.findall(line) if float(value) > _UNREADABLE_C}
    if temps:
        out["temps"] = temps


def _power(line: str, out: dict[str, Any]) -> None:
    rails = {}
    for name, cur, avg, peak in _RAIL.findall(line):
        if name in _NOT_RAILS:
            continue
        rails[name] = {"cur_mw": int(cur), "avg_mw": int(avg)}
        if peak:
            rails[name]["max_mw"] = int(peak)
    if rails:
        out["power"] = rails


def parse_tegrastats(line: str) -> dict[str, Any]:
    """One ``tegrastats`` line -> ``time`` (the L4T 35+ timestamp, as printed), ``ram``/``swap``
    (``used_mb``, ``total_mb``, ``cached_mb``), ``cpus`` (per core ``online``, ``load_pct``, ``mhz``), ``emc`` and
    ``gpu`` (``load_pct``, ``mhz``; the GPU also ``gpc_mhz``), ``temps`` (sensor -> °C) and ``power`` (rail ->
    ``cur_mw``, ``avg_mw``, maybe ``max_mw``). Only the fields found are present; odd input gives what parsed."""
    out: dict[str, Any] = {}
    if not isinstance(line, str):
        return out
    stamp = _TIME.match(line)
    if stamp is not None:
        out["time"] = stamp.group(1)
    for part in (_memory, _cpus, _clocked, _temps, _power):
        try:
            part(line, out)
        except (ValueError, TypeError, KeyError, IndexError):  # pragma: no cover - the patterns admit digits only
            continue
    return out


class TegrastatsSummary:
    """Running totals over parsed samples, so a long run keeps no list of them."""

    def __init__(self) -> None:
        self.samples = 0
        self.temp_max: dict[str, float] = {}
        self.gpu_loads: list[int] = []
        self.power_sum: dict[str, float] = {}
        self.power_n: dict[str, int] = {}
        self.emc_mhz: set[int] = set()
        self.gpu_mhz: set[int] = set()
        self.ram_max: float | None = None

    def add(self, sample: dict[str, Any]) -> None:
        if not sample:
            return
        self.samples += 1
        for name, value in sample.get("temps", {}).items():
            self.temp_max[name] = max(value, self.temp_max.get(name, value))
        gpu, emc = sample.get("gpu") or {}, sample.get("emc") or {}
        if gpu.get("load_pct") is not None:
            self.gpu_loads.append(gpu["load_pct"])
        if gpu.get("mhz") is not None:
            self.gpu_mhz.add(gpu["mhz"])
        if emc.get("mhz") is not None:
            self.emc_mhz.add(emc["mhz"])
        for rail, values in sample.get("power", {}).items():
            self.power_sum[rail] = self.power_sum.get(rail, 0.0) + values["cur_mw"]
            self.power_n[rail] = self.power_n.get(rail, 0) + 1
        used = (sample.get("ram") or {}).get("used_mb")
        if used is not None:
            self.ram_max = used if self.ram_max is None else max(self.ram_max, used)

    def result(self) -> dict[str, Any]:
        loads = self.gpu_loads
        return {
            "available": True,
            "samples": self.samples,
            "temp_max_c": dict(sorted(self.temp_max.items())),
            "gpu_load_mean_pct": round(sum(loads) / len(loads), 2) if loads else None,
            "gpu_load_max_pct": max(loads) if loads else None,
            "power_mean_mw": {rail: round(total / self.power_n[rail], 1) for rail, total in self.power_sum.items()},
            "emc_mhz_seen": sorted(self.emc_mhz),
            "gpu_mhz_seen": sorted(self.gpu_mhz),
            "ram_used_max_mb": self.ram_max,
        }


def summarize_tegrastats(lines: Iterable[str]) -> dict[str, Any]:
    """The summary :class:`TegrastatsSampler` gives, over recorded lines (a ``tegrastats --logfile`` file)."""
    totals = TegrastatsSummary()
    for line in lines:
        totals.add(parse_tegrastats(line))
    return totals.result()


class TegrastatsSampler:
    """Runs ``tegrastats --interval MS`` as a child process (killed if this process dies) and reads its lines in a
    thread; :meth:`stop` (or leaving the ``with`` block) ends it and returns the summary, also kept in ``summary``::

        with TegrastatsSampler(interval_ms=100) as sampler:
            run_the_benchmark()
        sampler.summary  # {"available": True, "samples": ..., "temp_max_c": {...}, "power_mean_mw": {...}, ...}

    Without ``tegrastats`` on PATH (not a Jetson) nothing starts and the summary is ``{"available": False}``.
    ``sudo=True`` runs it through ``sudo -n`` (root adds the EMC and GPU clocks on some releases; never a password
    prompt: without passwordless sudo the child fails at once and the summary says ``stopped_early``; sudo being
    setuid, the kernel drops the die-with-parent request for that child)."""

    def __init__(
        self, interval_ms: int = 100, executable: str = "tegrastats", sudo: bool = False, stop_timeout_s: float = 2.0
    ) -> None:
        if int(interval_ms) < 1:
            raise ValueError(f"interval_ms must be at least 1, not {interval_ms}")
        self.interval_ms = int(interval_ms)
        self.executable = executable
        self.sudo = sudo
        self.stop_timeout_s = stop_timeout_s
        self.summary: dict[str, Any] | None = None
        self._totals = TegrastatsSummary()
        self._lock = threading.Lock()
        self._proc: subprocess.Popen | None = None
        self._thread: threading.Thread | None = None

    @property
    def available(self) -> bool:
        return shutil.which(self.executable) is not None

    def command(self) -> list[str] | None:
        path = shutil.which(self.executable)
        if path is None:
            return None
        cmd = ["sudo", "-n"] if self.sudo else []
        stdbuf = shutil.which("stdbuf")  # line-buffered even if tegrastats' stdio would buffer a pipe
        if stdbuf is not None:
            cmd += [stdbuf, "-oL"]
        return [*cmd, path, "--interval", str(self.interval_ms)]

    def start(self) -> TegrastatsSampler:
        if self._proc is not None or self.summary is not None:
            return self
        cmd = self.command()
        if cmd is None:
            self.summary = {"available": False}
            return self
        try:
            self._proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
                errors="replace",
                bufsize=1,
                **child_options(),
            )
        except OSError as exc:
            self.summary = {"available": False, "error": str(exc)}
            return self
        self._thread = threading.Thread(target=self._read, args=(self._proc,), name="tegrastats", daemon=True)
        self._thread.start()
        return self

    def _read(self, proc: subprocess.Popen) -> None:
        if proc.stdout is None:  # pragma: no cover - Popen was given stdout=PIPE
            return
        try:
            for line in proc.stdout:
                sample = parse_tegrastats(line)
                with self._lock:
                    self._totals.add(sample)
        except (OSError, ValueError):  # the pipe went away under the reader
            return

    def snapshot(self) -> dict[str, Any]:
        """The summary so far, while it runs."""
        if self.summary is not None:
            return self.summary
        with self._lock:
            return {**self._totals.result(), "interval_ms": self.interval_ms}

    def stop(self) -> dict[str, Any]:
        if self.summary is not None:
            return self.summary
        proc, stopped_early = self._proc, False
        if proc is not None:
            stopped_early = proc.poll() is not None
            if not stopped_early:
                proc.terminate()
            try:
                proc.wait(timeout=self.stop_timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        thread = self._thread
        if thread is not None:
            thread.join(timeout=self.stop_timeout_s)
        # closed only once the reader is done: a grandchild still holding the pipe must not block stop()
        if proc is not None and proc.stdout is not None and (thread is None or not thread.is_alive()):
            proc.stdout.close()
        with self._lock:
            self.summary = {**self._totals.result(), "interval_ms": self.interval_ms, "stopped_early": stopped_early}
        return self.summary

    def __enter__(self) -> TegrastatsSampler:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
