"""A fleet at once: ``fleet_bench`` measures every device of a fleet file in parallel (over SSH, or here for
``host = "local"``), one results file per device plus ``fleet.json``; ``fleet_plan`` turns them into the
deployment plan: for each device, the most accurate depth and precision that fits its budget, or why none does.
One device failing (unreachable, a bad profile, a timeout) marks its entry failed; the others finish."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

from .atomic import writer_lock
from .errors import DDNNError, UsageError
from .formats.fleet import Fleet, FleetDevice, FleetEntry, FleetRecord, read_fleet, read_record, write_record
from .formats.manifest import read_manifest

Log = Callable[[str], None]


def _one(name: str, spec: FleetDevice, artifacts: Path, out: Path, common: dict[str, Any], ssh: dict[str, Any],
         install: bool, log: Log) -> FleetEntry:  # fmt: skip
    started = time.monotonic()
    results = out / f"{name}.json"
    entry = {"name": name, "host": spec.host, "device": spec.device, "budget_ms": spec.budget_ms}
    try:
        if spec.host == "local":
            from .measure.sweep import bench

            bench(artifacts, device=spec.device, results_path=results, force=True, progress=False,
                  log=lambda m: log(f"{name}: {m}"), **common)  # fmt: skip
        else:
            from .remote import SSHTarget, bench_on_host

            target = SSHTarget(spec.host, port=spec.port, identity=spec.identity, python=spec.python, **ssh)
            bench_on_host(artifacts, target, device=spec.device, results_path=results, force=True,
                          timeout=spec.timeout_s, install=install, log=lambda m: log(f"{name}: {m}"),
                          **common)  # fmt: skip
        return FleetEntry(**entry, results=results.name, seconds=time.monotonic() - started)
    except DDNNError as exc:  # PartialMeasurementError included: its results were written
        written = results.name if results.exists() and exc.exit_code == 10 else None
        return FleetEntry(**entry, results=written, error=str(exc), seconds=time.monotonic() - started)


def fleet_bench(
    fleet: str | Path | Fleet,
    artifacts: str | Path,
    out: str | Path,
    *,
    dataset: str | None = None,
    limit: int | None = None,
    precisions: list[str] | None = None,
    profiles_file: str | Path | None = None,
    known_hosts: str | None = None,
    accept_new_host_key: bool = False,
    install: bool = False,
    parallel: bool = True,
    log: Log | None = None,
) -> FleetRecord:
    """Bench ``artifacts`` on every device of ``fleet``; writes ``out/NAME.json`` per device and ``out/fleet.json``.
    ``install`` pushes a wheel of this ddnn-deploy to every remote device first."""
    say = log or (lambda message: None)
    spec = fleet if isinstance(fleet, Fleet) else read_fleet(fleet)
    manifest = read_manifest(artifacts)  # checked once, here
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file; give a folder for the fleet's results")
    if out.is_dir() and any(out.iterdir()) and not (out / "fleet.json").exists():
        raise UsageError(f"--out {out} holds other files; give an empty folder or an earlier fleet folder")
    out.mkdir(parents=True, exist_ok=True)
    common = {"dataset": dataset, "limit": limit, "precisions": precisions, "profiles_file": profiles_file}
    ssh = {"known_hosts": known_hosts, "accept_new_host_key": accept_new_host_key}
    jobs = list(spec.devices.items())
    with writer_lock(out, f"the fleet folder {out}"):  # two fleet benches into one folder: the second stops
        with ThreadPoolExecutor(max_workers=len(jobs) if parallel else 1) as pool:
            one = lambda job: _one(job[0], job[1], Path(artifacts), out, common, ssh, install, say)  # noqa: E731
            entries = list(pool.map(one, jobs))
        record = FleetRecord(artifacts=str(artifacts), checkpoint_sha256=manifest.checkpoint.sha256, devices=entries)
        write_record(out, record)
    return record


def fleet_plan(folder: str | Path, *, stat: str = "p90") -> list[dict[str, Any]]:
    """For every device of an earlier ``fleet_bench``: the pick for its budget, or why there is none."""
    from .formats.results import read_results
    from .pick import pick_depth

    folder = Path(folder)
    record = read_record(folder)
    plan = []
    for entry in record.devices:
        row: dict[str, Any] = {"name": entry.name, "host": entry.host, "device": entry.device,
                               "budget_ms": entry.budget_ms}  # fmt: skip
        if entry.results is None:
            plan.append({**row, "error": entry.error or "no results"})
            continue
        try:
            results = read_results(folder / entry.results)
            if results.artifacts.get("checkpoint_sha256") != record.checkpoint_sha256:
                raise UsageError(f"{entry.results} was measured on another model")
            pick = pick_depth(results, entry.budget_ms, stat=stat)
        except DDNNError as exc:
            plan.append({**row, "error": str(exc)})
            continue
        plan.append({**row, "depth": pick.depth, "precision": pick.precision, "backend": pick.backend,
                     "latency_ms": pick.latency_ms, "top1": pick.top1, "error": None})  # fmt: skip
    return plan
