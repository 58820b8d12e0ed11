"""``bench``: measure every exported depth on a device profile, one child process per (depth, precision).

Steps: resolve the profile and check its back-end is installed, read the manifest (sha256 checked),
check the accuracy data once, plan the jobs (``plan.plan_jobs``), run each job in a worker process,
assemble ``BenchResults``, write ``results.json`` / ``.csv`` / ``.png``.
"""

from __future__ import annotations

import datetime as _dt
import importlib
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .. import __version__
from ..atomic import atomic_path, remove_stale_temps, sha256_file, temp_name
from ..checks import number
from ..children import child_options
from ..errors import INSTALL_HINTS, MeasurementError, MissingDependencyError, UsageError, optional_import
from ..formats.manifest import Manifest, read_manifest
from ..formats.profiles import PRECISIONS, DeviceProfile, TimingSettings, get_profile
from ..formats.results import FORMAT as RESULTS_FORMAT
from ..formats.results import BenchResults, ResultRow, to_csv, to_json_text
from ..progress import Log, progress_bar
from .environment import capture, warnings_for
from .plan import DatasetRef, Job, plan_jobs, tensorrt_int8_only
from .worker import error_rows

AUTO_DATASET = "auto"  # bench(dataset=...): the manifest's dataset when its test data is here


def check_backend(profile: DeviceProfile) -> None:
    """Stop early, in one line, when the profile's back-end is not installed."""
    module = profile.backend
    if importlib.util.find_spec(module) is None:
        raise MissingDependencyError(
            f"device profile '{profile.name}' needs {module}, which is not installed: {INSTALL_HINTS[module][1]}"
        )
    if profile.backend == "tensorrt" and not any(importlib.util.find_spec(m) for m in ("cuda", "pycuda")):
        raise MissingDependencyError(
            f"device profile '{profile.name}' needs cuda-python or pycuda for device buffers: pip install cuda-python"
        )
    if profile.backend == "tensorrt" and importlib.util.find_spec("onnx") is None:
        raise MissingDependencyError(f"device profile '{profile.name}' needs onnx: {INSTALL_HINTS['onnx'][1]}")
    if profile.backend == "openvino":  # imported, not only found: a broken install is one line here too
        optional_import("openvino", f"device profile '{profile.name}'")
    if profile.backend == "onnxruntime" and profile.provider != "cpu":
        check_provider(profile)
    if profile.backend == "torch" and profile.provider != "cpu":
        if profile.provider != "cuda":
            raise UsageError(f"device profile '{profile.name}': the torch back-end runs on provider cpu or cuda")
        from ..runners.torch_runner import check_torch_device

        check_torch_device("cuda")


def check_provider(profile: DeviceProfile) -> None:
    """A GPU execution provider this onnxruntime lacks would fail every row: say so before the sweep starts."""
    from ..runners.onnxruntime_runner import PROVIDERS, import_onnxruntime

    wanted = PROVIDERS[profile.provider]
    available = import_onnxruntime().get_available_providers()
    if wanted not in available:
        raise MissingDependencyError(
            f"device profile '{profile.name}' needs onnxruntime's {wanted}, and this onnxruntime has only "
            f"{', '.join(available)}: pip uninstall onnxruntime && pip install onnxruntime-gpu (with CUDA and cuDNN)"
        )


def resolve_profile(
    device: str | DeviceProfile,
    profiles_file: str | Path | None,
    precisions: Sequence[str] | None,
    timing: TimingSettings | None,
    overrides: dict[str, Any] | None = None,
) -> DeviceProfile:
    """The profile object with the caller's precision, timing and other field overrides applied (``overrides``:
    profile fields such as ``threads``, ``batch_sizes``, ``min_iters``; checked like a profile file's)."""
    profile = get_profile(device, profiles_file)
    if overrides:
        from ..errors import ProfileError
        from ..formats._schema import validate

        data = {**profile.model_dump(mode="json"), **overrides}
        profile = validate(
            DeviceProfile, data, where=f"profile '{profile.name}' with the given overrides", error=ProfileError
        )
    if precisions:
        if isinstance(precisions, str) or any(p not in PRECISIONS for p in precisions):
            raise UsageError(f"precisions must be a list of {', '.join(PRECISIONS)}, not {precisions!r}")
        profile = profile.model_copy(update={"precisions": tuple(precisions)})
    if timing is not None:
        if not isinstance(timing, TimingSettings):
            raise UsageError(f"timing must be a TimingSettings, not {type(timing).__name__}")
        profile = profile.with_timing(timing)
    return profile


def _dataset_ref(
    manifest: Manifest, dataset: str | None, data_dir: str | None, limit: int | None, say: Log
) -> DatasetRef | None:
    """Check the accuracy data here, once, rather than failing in every worker. ``auto``: the manifest's
    dataset when its data is here (said in one line either way), else latency only."""
    if limit is not None:
        number("--limit", limit, at_least=1, integer=True)
    if dataset == AUTO_DATASET:
        dataset = _auto_dataset(manifest, data_dir, say)
    if dataset is None or dataset == "none":
        return None
    from ..data import load_eval_data

    load_eval_data(
        dataset, data_dir=data_dir, input_shape=manifest.input_shape, class_names=manifest.class_names or None, limit=1
    )
    return DatasetRef(name=dataset, data_dir=data_dir, limit=limit)


def _auto_dataset(manifest: Manifest, data_dir: str | None, say: Log) -> str | None:
    from ..data import eval_data_present

    name = manifest.dataset
    if name and eval_data_present(name, data_dir):
        say(f"accuracy on {name}'s test split (the model's dataset; --dataset none for latency only)")
        return name
    if name:
        say(f"latency only: {name}'s test data is not here (give --data DIR, or --dataset none to silence this)")
    return None


def run_worker(job: Job, timeout: float) -> list[dict[str, Any]]:
    """Run one job in a child process; a crash or a timeout becomes failed rows, never an exception."""
    with tempfile.TemporaryDirectory(prefix=temp_name("ddnn", "bench")) as tmp:
        job_path, result_path = Path(tmp) / "job.json", Path(tmp) / "result.json"
        job_path.write_text(job.model_dump_json())
        env = {**os.environ, **({"OMP_NUM_THREADS": str(job.threads)} if job.threads else {})}
        try:
            proc = subprocess.run(
                [sys.executable, "-m", "ddnn_deploy.measure.worker", str(job_path), str(result_path)],
                capture_output=True,
                text=True,
                timeout=timeout,
                env=env,
                **child_options(),
            )
            if result_path.exists():
                return json.loads(result_path.read_text())
            error = f"worker died (exit {proc.returncode}): " + (proc.stderr.strip().splitlines() or ["no message"])[-1]
        except subprocess.TimeoutExpired:
            error = f"worker timed out after {timeout:.0f} s"
    return error_rows(job.batch_sizes, error)


def _row(job: Job, raw: dict[str, Any], profile: DeviceProfile, log: Log) -> ResultRow:
    row = ResultRow.model_validate(
        {
            "depth": job.depth,
            "blocks": job.blocks,
            "kind": job.kind,
            "precision": job.precision,
            "backend": job.backend,
            **raw,
        }
    )
    cv = row.latency_ms.cv if row.latency_ms else 0.0
    if cv > profile.max_cv:
        row.warning = f"latency spread is wide (cv {cv:.2f} > {profile.max_cv}); numbers are noisy"
        log(f"warning: depth {job.depth} batch {row.batch}: {row.warning}")
    if row.status == "error":
        log(f"depth {job.depth} {job.precision} batch {row.batch} failed: {row.error}")
    return row


def run_jobs(jobs: list[Job], profile: DeviceProfile, *, timeout: float, progress: bool, log: Log) -> list[ResultRow]:
    iterator = progress_bar(jobs, enabled=progress, desc=f"bench on {profile.name}", unit="depth")
    rows = []
    for job in iterator:
        if hasattr(iterator, "set_postfix_str"):
            iterator.set_postfix_str(f"depth {job.depth} {job.precision}")
        rows.extend(_row(job, raw, profile, log) for raw in run_worker(job, timeout))
    return rows


def _own_files(manifest: Manifest) -> set[Path]:
    root = manifest.root.resolve()
    own = {root / "manifest.json"}
    for artifact in manifest.artifacts:
        own.update((root / record.path).resolve() for record in artifact.files())
    return own


def check_results_target(path: Path, manifest: Manifest, *, force: bool) -> None:
    """Refuse, before measuring, a results path that would overwrite the export's own files, or a file that is
    not an earlier results file (a checkpoint, a user's notes) unless ``force``."""
    protect_and_check(path, _own_files(manifest), manifest.root.resolve() / "engines", str(manifest.root), force=force)


def protect_and_check(path: Path, own: set[Path], engines: Path | None, where: str, *, force: bool) -> None:
    """``check_results_target`` for any set of files that must never be written (``own``, ``engines``)."""
    if path.is_dir():
        raise UsageError(f"--results {path} is a directory; give a file name such as {path / 'results.json'}")
    for target in (path, path.with_suffix(".csv"), path.with_suffix(".png")):
        resolved = target.resolve()
        if resolved in own or (engines is not None and engines in resolved.parents):
            raise UsageError(
                f"--results {path} would overwrite {target.name}, a file of the export folder {where}; write the "
                "results elsewhere"
            )
    if force:
        return
    if path.exists() and not _is_results_file(path):
        raise UsageError(
            f"--results {path} exists and is not a ddnn-deploy results file; choose another path, "
            "or pass --force to replace it"
        )
    if not path.exists():  # a .csv/.png already there belongs to someone else: no results file beside it
        for companion in (path.with_suffix(".csv"), path.with_suffix(".png")):
            if companion.exists():
                raise UsageError(
                    f"--results {path} would replace {companion}, which no earlier results wrote; choose another "
                    "path, or pass --force to replace it"
                )


def _is_results_file(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            head = f.read(64 << 20)
        return isinstance(data := json.loads(head), dict) and data.get("format") == RESULTS_FORMAT
    except (OSError, ValueError):
        return False


def check_checkpoint_matches(path: Path, manifest: Manifest) -> None:
    """The torch runner measures ``--ckpt``; its rows are filed under the manifest's checkpoint, so it must be
    that checkpoint (the file the export read, or the same content)."""
    if not path.is_file():
        raise UsageError(f"--ckpt {path} does not exist")
    if sha256_file(path) == manifest.checkpoint.sha256:
        return
    from ..checkpoint import content_sha256, load_checkpoint

    if content_sha256(load_checkpoint(path)) != manifest.checkpoint.sha256:
        raise UsageError(
            f"--ckpt {path} is not the checkpoint {manifest.root} was exported from "
            f"({manifest.checkpoint.path or 'sha256 ' + manifest.checkpoint.sha256[:12]}); pass that one"
        )


def write_outputs(results: BenchResults, path: Path, *, plot: bool) -> None:
    """results.json, .csv and .png, all or none: everything is written to temporary names first, and only then
    renamed into place (the JSON last), so a full disk or a kill never leaves a new JSON beside an old plot."""
    png = path.with_suffix(".png")
    with atomic_path(path) as json_tmp, atomic_path(path.with_suffix(".csv")) as csv_tmp:  # renamed csv, json
        json_tmp.write_text(to_json_text(results))
        csv_tmp.write_text(to_csv(results.rows))
        drawn = None
        if plot:
            from .plot import plot_results

            png_tmp = path.parent / f"{temp_name(png.name, 'tmp')}plot"
            try:
                drawn = plot_results(results, png_tmp)
                if drawn is not None:
                    os.replace(png_tmp, png)
            finally:
                png_tmp.unlink(missing_ok=True)
        if drawn is None:
            png.unlink(missing_ok=True)  # no plot of these results: an older one beside them would mislead


def _check_depths(depths: Any) -> None:
    if depths is not None and (
        isinstance(depths, (str, bytes)) or not all(isinstance(d, int) and not isinstance(d, bool) for d in depths)
    ):
        raise UsageError(f"depths must be a list of exported depth numbers, not {depths!r}")


def _importable(module: str) -> bool:
    try:
        importlib.import_module(module)
        return True
    except Exception:  # noqa: BLE001 - broken or missing: either way not measured
        return False


def _backends(profile: DeviceProfile, manifest: Manifest, say: Log) -> tuple[str, ...]:
    """The profile's back-end and its installed optional ones; one line for what is left out and why."""
    backends = profile.backends(installed=tuple(b for b in profile.optional_backends if _importable(b)))
    for name in profile.optional_backends:
        if name not in backends:
            say(
                f"note: {name} is not installed, so '{profile.name}' measures {', '.join(backends)} only "
                f"({INSTALL_HINTS.get(name, (name, 'pip install ' + name))[1]})"
            )
    if tensorrt_int8_only(manifest, profile, backends) and len(profile.precisions) > 1:
        say(
            "note: the INT8 graphs here are calibrated for TensorRT (S8S8) and are not measured on CPU back-ends, "
            "where they run slower than FP32; calibrate --target cpu for CPU INT8"
        )
    return backends


def _sweep(
    jobs: list[Job], profile: DeviceProfile, env: dict[str, Any], *, timeout: float, progress: bool, log: Log
) -> list[ResultRow]:
    """``run_jobs``; on a Jetson with tegrastats running beside it, its summary filed in ``env``: what the board
    did meanwhile (temperatures, power per rail, GPU load and clocks)."""
    if env.get("jetson") is None:
        return run_jobs(jobs, profile, timeout=timeout, progress=progress, log=log)
    from .tegrastats import TegrastatsSampler

    with TegrastatsSampler(interval_ms=500) as sampler:
        rows = run_jobs(jobs, profile, timeout=timeout, progress=progress, log=log)
    env["tegrastats"] = sampler.summary
    return rows


def bench(
    artifacts: str | Path,
    *,
    device: str | DeviceProfile = "x86-cpu",
    profiles_file: str | Path | None = None,
    timing: TimingSettings | None = None,
    precisions: Sequence[str] | None = None,
    dataset: str | None = None,
    data_dir: str | None = None,
    limit: int | None = None,
    depths: Sequence[int] | None = None,
    include_selector: bool = False,
    checkpoint: str | Path | None = None,
    results_path: str | Path | None = None,
    force: bool = False,
    plot: bool = True,
    engine_cache: str | Path | None = None,
    job_timeout: float = 1800.0,
    progress: bool = True,
    log: Log | None = None,
    overrides: dict[str, Any] | None = None,
) -> BenchResults:
    """Measure every per-depth artifact (and the selector, if asked) on ``device``.

    ``device`` is a profile name (built in or from ``profiles_file``) or a ``DeviceProfile``; ``timing``,
    ``precisions`` and ``overrides`` (profile fields, e.g. ``{"threads": 2, "batch_sizes": [1, 8]}``) override
    the profile's. With ``results_path`` the results are written there (JSON + CSV, and a PNG of accuracy
    against latency when ``plot`` and matplotlib allow). Returns the results.

    ``dataset``: a dataset name or class-per-folder directory, ``"auto"`` (the manifest's dataset when its test
    data is here: the CLI's default), or ``None`` / ``"none"`` (latency only).
    ``results_path`` replaces an earlier results file (else needs ``force``), never the export folder's files.
    """
    say = log or (lambda message: None)
    profile = resolve_profile(device, profiles_file, precisions, timing, overrides)
    check_backend(profile)
    manifest = read_manifest(artifacts)
    if results_path is not None:
        check_results_target(Path(results_path), manifest, force=force)
    if checkpoint is not None:
        check_checkpoint_matches(Path(checkpoint), manifest)
    remove_stale_temps(tempfile.gettempdir(), "ddnn")  # the work folders of killed benches
    _check_depths(depths)
    dataset_ref = _dataset_ref(manifest, dataset, data_dir, limit, say)
    env = capture(profile.backend, profile.resolved_threads())
    for note in warnings_for(env):
        say(f"warning: {note}")
    backends = _backends(profile, manifest, say)
    jobs = plan_jobs(
        manifest,
        profile,
        depths=depths,
        include_selector=include_selector,
        checkpoint=str(checkpoint) if checkpoint else None,
        dataset=dataset_ref,
        engine_cache=str(engine_cache) if engine_cache else None,
        backends=backends,
    )
    rows = _sweep(jobs, profile, env, timeout=job_timeout, progress=progress, log=say)
    results = BenchResults(
        tool_version=__version__,
        created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        arch=manifest.arch,
        device={"profile": profile.to_dict(), "environment": env},
        settings={
            "timing": profile.timing.model_dump(),
            "batch_sizes": list(profile.batch_sizes),
            "dataset": dataset_ref.name if dataset_ref else None,
            "limit": limit,
            "threads": env["threads"],
        },
        artifacts={"path": str(Path(artifacts)), "checkpoint_sha256": manifest.checkpoint.sha256},
        rows=rows,
    )
    if results_path is not None:
        write_outputs(results, Path(results_path), plot=plot)
    if rows and all(row.status == "error" for row in rows):
        where = f"; the errors are in {results_path}" if results_path is not None else ""
        raise MeasurementError(f"every measurement failed (first: depth {rows[0].depth}: {rows[0].error}){where}")
    return results
