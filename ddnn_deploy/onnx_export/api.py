"""``export``: one shared-weight checkpoint -> verified per-depth ONNX graphs (+ a selector graph).

Everything is built in a temporary directory beside the target and moved into place only when
every artifact passed verification; a failed export leaves whatever was at the target untouched.
"""

from __future__ import annotations

import datetime as _dt
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import __version__
from ..atomic import is_temp_name, make_readable, remove_stale_temps, sha256_file, temp_name, writer_lock
from ..checkpoint import Checkpoint, content_sha256, load_checkpoint
from ..checks import number
from ..errors import CheckpointError, DataError, DDNNError, ParityError, UsageError, optional_import
from ..formats.manifest import FORMAT as MANIFEST_FORMAT
from ..formats.manifest import VERSION as MANIFEST_VERSION
from ..formats.manifest import Manifest, parse_manifest, write_manifest
from ..models import DepthNet, count_macs
from ..progress import progress_bar
from ..spec import DepthConfig, DepthsLike, parse_depths
from .fp16 import write_fp16_copy
from .onnx_graph import export_onnx, set_metadata
from .selector import build_selector_model, save_deduplicated
from .settings import DEFAULT_OPSET, EXPORTERS, FP16_TOLERANCE, FP32_TOLERANCE, INPUT_NAME, OUTPUT_NAME
from .simplify import simplify_in_child
from .subnet import extract_subnet
from .verify import check_model, measure_parity, ort_session, parity_inputs


def export(
    ckpt: Checkpoint | str | os.PathLike,
    out: str | os.PathLike,
    *,
    depths: DepthsLike = None,
    selector: bool = False,
    opset: int | None = None,
    input_size: int | None = None,
    batch: int | None = None,
    simplify: bool = True,
    force: bool = False,
    exporter: str = "torchscript",
    tolerance: float = FP32_TOLERANCE,
    real_samples: int = 64,
    simplify_timeout: float = 300.0,
    fp16: bool = False,
    fp16_tolerance: float = FP16_TOLERANCE,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> Manifest:
    """Export and verify every depth; returns the manifest (also written to ``OUT/manifest.json``).

    ``ckpt`` is a checkpoint file or a ``Checkpoint`` object. For a file the manifest records its
    path and sha256; for an object it records ``"path": null`` and the sha256 of the checkpoint's
    serialized content (``checkpoint.content_sha256``), which identifies the content, not a file.
    ``depths``: ``None`` (every depth of the checkpoint), ``"8,14"``, one depth (``8``, ``"1-1-1"``,
    a ``DepthConfig``) or a sequence of them. ``progress`` shows a progress bar on stderr; ``log``
    receives one status line per step. A failed export leaves ``out`` untouched.

    ``force`` replaces a previous export at ``out`` (the files its manifest lists); a folder holding anything
    else is refused. The writers of one folder take turns: a second run while one holds its lock raises
    ``BusyError``.
    """
    arguments = dict(locals())  # every argument, by name: checked before anything is read or written
    arguments["opset"] = default_opset(exporter) if opset is None else opset
    _check_arguments(**{k: v for k, v in arguments.items() if k != "depths"})
    with writer_lock(out, f"the export folder {out}"):
        return _export_locked(Path(out), arguments)


def _export_locked(out: Path, arguments: dict[str, Any]) -> Manifest:
    started = time.time()
    ckpt, depths, selector, force = (arguments[k] for k in ("ckpt", "depths", "selector", "force"))
    batch, fp16, progress, log = (arguments[k] for k in ("batch", "fp16", "progress", "log"))
    ckpt_path = None if isinstance(ckpt, Checkpoint) else Path(ckpt)
    remove_stale_temps(out.parent if str(out.parent) else Path("."), out.name)  # what a killed export left
    _prepare_target(out, force, ckpt_path)
    checkpoint = ckpt if isinstance(ckpt, Checkpoint) else load_checkpoint(ckpt)
    _check_preprocess(checkpoint, ckpt_path)
    ckpt_sha = content_sha256(checkpoint) if ckpt_path is None else sha256_file(ckpt_path)
    configs = parse_depths(checkpoint.spec, depths, checkpoint.table())
    if selector and len(configs) < 2:
        raise UsageError("--selector needs at least two depths")
    shape = _input_shape(checkpoint, arguments["input_size"])
    model = checkpoint.build()
    _probe(model, shape, configs[0])
    settings = {k: arguments[k] for k in ("opset", "batch", "exporter", "tolerance", "simplify", "simplify_timeout")}
    tmp = Path(tempfile.mkdtemp(prefix=temp_name(out.name, "tmp"), dir=out.parent if str(out.parent) else "."))
    try:
        real = _real_samples(checkpoint, shape, arguments["real_samples"])
        job = _Job(checkpoint, ckpt_sha, model, tmp, shape, real=real, log=log or (lambda m: None), **settings)
        artifacts = _write_artifacts(
            job, configs, selector=selector, fp16=fp16, fp16_tolerance=arguments["fp16_tolerance"], progress=progress
        )
        record = build_manifest(
            checkpoint,
            ckpt_path,
            ckpt_sha,
            shape=shape,
            batch=batch,
            artifacts=artifacts,
            seconds=time.time() - started,
        )
        manifest = parse_manifest(record, where="the manifest being written", fix="this is a bug in ddnn-deploy")
        write_manifest(tmp, manifest)
        _commit_directory(tmp, out, job.log)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    manifest._root = out
    return manifest


def build_manifest(
    ckpt: Checkpoint,
    ckpt_path: Path | None,
    ckpt_sha: str,
    *,
    shape: tuple[int, int, int],
    batch: int | None,
    artifacts: list[dict[str, Any]],
    seconds: float,
) -> dict[str, Any]:
    """The export directory's ``manifest.json`` content (README, "Export directory")."""
    batch_dim: int | str = batch if batch else "batch"
    return {
        "format": MANIFEST_FORMAT,
        "version": MANIFEST_VERSION,
        "tool_version": __version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "checkpoint": {"path": None if ckpt_path is None else str(ckpt_path), "sha256": ckpt_sha},
        "arch": ckpt.arch,
        "dataset": ckpt.dataset,
        "input": {"name": INPUT_NAME, "dtype": "float32", "layout": "NCHW", "shape": [batch_dim, *shape]},
        "output": {"name": OUTPUT_NAME, "dtype": "float32", "shape": [batch_dim, len(ckpt.class_names) or None]},
        "preprocess": ckpt.preprocess,
        "class_names": ckpt.class_names,
        "export_seconds": round(seconds, 1),
        "artifacts": artifacts,
    }


# --- arguments and target ------------------------------------------------------------------------

_PATH_TYPES = (str, os.PathLike)


def _check_arguments(*, ckpt: Any, out: Any, log: Any, exporter: Any, depths: Any = None, **values: Any) -> None:
    """One-line UsageErrors naming the argument, before anything is read or written."""
    if not isinstance(ckpt, (Checkpoint, *_PATH_TYPES)):
        raise UsageError(f"ckpt must be a Checkpoint or a path, not {type(ckpt).__name__}")
    if not isinstance(out, _PATH_TYPES):
        raise UsageError(f"out must be a path, not {type(out).__name__}")
    if log is not None and not callable(log):
        raise UsageError(f"log must be a callable taking one string, or None, not {type(log).__name__}")
    if exporter not in EXPORTERS:
        raise UsageError(f"unknown exporter {exporter!r}; choose one of {', '.join(EXPORTERS)}")
    kinds: dict[str, tuple[type, ...]] = {
        "selector": (bool,),
        "simplify": (bool,),
        "force": (bool,),
        "fp16": (bool,),
        "progress": (bool,),
        "opset": (int,),
        "real_samples": (int,),
        "input_size": (int, type(None)),
        "batch": (int, type(None)),
        "tolerance": (int, float),
        "fp16_tolerance": (int, float),
        "simplify_timeout": (int, float),
    }
    for name, value in values.items():
        is_bool = isinstance(value, bool)
        if not isinstance(value, kinds[name]) or (is_bool and bool not in kinds[name]):
            expected = " or ".join("None" if k is type(None) else k.__name__ for k in kinds[name])
            raise UsageError(f"{name} must be {expected}, not {type(value).__name__}")
    for name, most in (("batch", 65536), ("input_size", 8192)):
        if values[name] is not None:
            number(f"--{name.replace('_', '-')}", values[name], at_least=1, at_most=most, integer=True)
    number("real_samples", values["real_samples"], at_least=0, integer=True)
    number("--tolerance", values["tolerance"], above=0)
    number("fp16_tolerance", values["fp16_tolerance"], above=0)
    number("simplify_timeout", values["simplify_timeout"], above=0)
    low, high = opset_range(exporter)
    if not low <= values["opset"] <= high:
        raise UsageError(
            f"--opset {values['opset']} is outside what the {exporter} exporter writes here; choose {low}-{high} "
            f"(default {DEFAULT_OPSET})"
        )


def default_opset(exporter: str) -> int:
    """17 for TorchScript (what TensorRT 8.5+ and onnxruntime 1.14+ read), 18 for dynamo (its lowest)."""
    return 18 if exporter == "dynamo" else DEFAULT_OPSET


def opset_range(exporter: str) -> tuple[int, int]:
    """The opsets ``exporter`` writes with this torch: TorchScript from 11 (the oldest our graphs were verified
    at), dynamo from 18 (it converts older opsets down, and that fails loudly for these graphs)."""
    constants = getattr(torch.onnx, "_constants", None)
    if exporter == "dynamo":
        return 18, int(getattr(constants, "ONNX_MAX_OPSET", 18))
    return 11, int(getattr(constants, "ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET", DEFAULT_OPSET))


def _prepare_target(out: Path, force: bool, ckpt_path: Path | None) -> None:
    resolved = out.resolve()
    if resolved == Path.cwd().resolve() or resolved in Path.cwd().resolve().parents:
        raise UsageError(f"--out {out} is the current directory or above it; give a dedicated directory")
    if ckpt_path is not None and resolved in ckpt_path.resolve().parents:
        raise UsageError(f"--out {out} holds the checkpoint {ckpt_path}; export into another directory")
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file; give a directory")
    if out.is_dir() and any(out.iterdir()):
        if not force:
            raise UsageError(f"--out {out} already holds files; pass --force to replace a previous export there")
    parent = out.parent if str(out.parent) else Path(".")
    try:
        parent.mkdir(parents=True, exist_ok=True)
        probe = Path(tempfile.mkdtemp(prefix=temp_name(out.name, "probe"), dir=parent))
        probe.rmdir()
    except OSError as exc:
        raise UsageError(f"cannot write to {parent}: {exc.strerror or exc}; choose another --out") from None


def listed_entries(folder: Path) -> set[str]:
    """The top-level names a previous export or calibrate wrote in ``folder``: its manifest and the files the
    manifest lists (empty when there is no readable manifest)."""
    import json

    try:
        record = json.loads((folder / "manifest.json").read_text())
        artifacts = record.get("artifacts", [])
        listed = {"manifest.json"}
        for artifact in artifacts if isinstance(artifacts, list) else []:
            for entry in (artifact.get("path"), (artifact.get("data") or {}).get("path")):
                if isinstance(entry, str) and entry and not entry.startswith(("/", "\\", "..")):
                    listed.add(entry.replace("\\", "/").split("/")[0])
        return listed
    except (OSError, ValueError, AttributeError, TypeError):
        return set()


def foreign_entries(folder: Path) -> list[str]:
    """What in ``folder`` ddnn-deploy's export did not write (kept in place by ``--force``), sorted."""
    listed = listed_entries(folder) | {"engines"}  # the TensorRT engine cache stays too (keyed by graph sha256)
    return sorted(e.name for e in folder.iterdir() if e.name not in listed and not is_temp_name(e.name))


def _check_preprocess(ckpt: Checkpoint, path: Path | None) -> None:
    """A graph without its preprocessing cannot be fed correctly by bench, calibrate or the runtime."""
    pre = ckpt.preprocess if isinstance(ckpt.preprocess, dict) else {}
    if not all(key in pre for key in ("scale", "mean", "std")):
        where = path or "the checkpoint"
        raise CheckpointError(
            f"{where} records no input preprocessing (scale, mean, std), so its graphs could not be fed; "
            "re-create it with `ddnn-deploy convert` or `train`, which record it"
        )


def _input_shape(ckpt: Checkpoint, input_size: int | None) -> tuple[int, int, int]:
    channels = ckpt.input_shape[0] if ckpt.input_shape else ckpt.model.get("in_channels", 3)
    size = input_size or (ckpt.input_shape[1] if ckpt.input_shape else ckpt.model.get("input_size", 224))
    return int(channels), int(size), int(size)


def _probe(model: DepthNet, shape: tuple[int, int, int], config: DepthConfig) -> None:
    """Fail early, with the input size in the message, when the model cannot run at ``shape``."""
    try:
        with torch.no_grad():
            model(torch.zeros(1, *shape), config)
    except RuntimeError:
        raise UsageError(
            f"{model.spec.name} cannot run at input size {shape[1]}; choose a larger --input-size"
        ) from None


def _commit_directory(tmp: Path, out: Path, log: Callable[[str], None]) -> None:
    """Move the finished temporary directory into place. A new ``out`` is one rename. Over a previous export
    (``--force``) only that export's files are replaced: the new files move in, ``manifest.json`` last (the
    commit point), then the old export's files that the new one does not reuse are removed. Anything else in
    the folder (another export, the user's notes, results) stays where it is; a new file that would land on
    such an entry is refused before anything moves."""
    make_readable(tmp, directory=True)
    for child in tmp.iterdir():
        make_readable(child)
    if not out.exists():
        os.replace(tmp, out)
        return
    old = listed_entries(out)
    new = sorted((c.name for c in tmp.iterdir()), key=lambda name: name == "manifest.json")
    clashes = [name for name in new if (out / name).exists() and name not in old]
    if clashes:
        raise UsageError(
            f"--out {out} already holds {', '.join(clashes)}, which no previous export there wrote; "
            "move it away or choose another --out"
        )
    for name in new:
        os.replace(tmp / name, out / name)
    for name in sorted(old - set(new)):
        stale = out / name
        if stale.is_dir() and not stale.is_symlink():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            stale.unlink(missing_ok=True)
    tmp.rmdir()
    kept = foreign_entries(out)
    if kept:
        more = " ..." if len(kept) > 5 else ""
        log(f"kept what the previous export did not write in {out}: {', '.join(kept[:5])}{more}")


def _real_samples(ckpt: Checkpoint, shape: tuple[int, int, int], count: int) -> np.ndarray | None:
    if not count or not ckpt.dataset or tuple(shape) != tuple(ckpt.input_shape):
        return None
    try:
        from ..data import load_dataset

        test = load_dataset(ckpt.dataset, "test").subset(count, seed=5)
    except DataError:
        return None
    return test.preprocess.apply(test.images)


# --- artifacts ---------------------------------------------------------------------------------


@dataclass
class _Job:
    """What every artifact of one export shares."""

    ckpt: Checkpoint
    ckpt_sha: str
    model: DepthNet  # the checkpoint's model with every depth's BN statistics: the parity reference
    root: Path  # the temporary directory
    shape: tuple[int, int, int]
    opset: int
    batch: int | None
    exporter: str
    tolerance: float
    real: np.ndarray | None
    simplify: bool
    simplify_timeout: float
    log: Callable[[str], None]

    def reference(self, config: DepthConfig) -> Callable[[torch.Tensor], torch.Tensor]:
        """PyTorch's logits at ``config``, with the depth's own BN statistics: the ground truth."""
        return lambda x: self.model(x, config)

    def feeds(self) -> list[tuple[str, np.ndarray]]:
        return parity_inputs(self.shape, self.batch, self.real)

    def parity_record(self, parity: dict[str, float], tolerance: float) -> dict[str, Any]:
        return {
            **parity,
            "tolerance": tolerance,
            "real_samples": 0 if self.real is None else int(len(self.real)),
            "batch_sizes": [self.batch] if self.batch else [1, 3, 8],
        }

    def metadata(self, info: dict[str, Any], kind: str) -> dict[str, Any]:
        ckpt = self.ckpt
        return {
            "ddnn.kind": kind,
            "ddnn.depth": info["depth"],
            "ddnn.blocks": info["blocks"],
            "ddnn.architecture": ckpt.arch,
            "ddnn.preprocess": ckpt.preprocess,
            "ddnn.class_names": ckpt.class_names,
            "ddnn.checkpoint_sha256": self.ckpt_sha,
            "ddnn.exporter": self.exporter,
            "ddnn.opset": str(self.opset),
            "ddnn.tool_version": __version__,
        }

    def file_record(self, path: Path) -> dict[str, Any]:
        return {
            "path": path.relative_to(self.root).as_posix(),
            "sha256": sha256_file(path),
            "bytes": path.stat().st_size,
        }


def _write_artifacts(
    job: _Job, configs: list[DepthConfig], *, selector: bool, fp16: bool, fp16_tolerance: float, progress: bool
) -> list[dict[str, Any]]:
    """Every artifact of the export, in manifest order: per-depth FP32, their FP16 copies, the selector."""
    steps = len(configs) * (2 if fp16 else 1) + (1 if selector else 0)
    with progress_bar(total=steps, enabled=progress, desc="export", unit="graph") as bar:
        artifacts = []
        for config in configs:
            artifacts.append(_export_depth(job, config))
            bar.update()
        if fp16:
            for record in [a for a in artifacts if a["kind"] == "depth"]:
                artifacts.append(_export_fp16(job, record, fp16_tolerance))
                bar.update()
        if selector:
            artifacts.append(_export_selector(job, configs))
            bar.update()
    return artifacts


def _within(parity: dict[str, float], tolerance: float) -> bool:
    """NaN-safe: a NaN or infinite error (a checkpoint full of NaN) fails, it does not pass."""
    return bool(parity["max_rel_err"] <= tolerance)


def _check_parity(parity: dict[str, float], where: str, tolerance: float) -> None:
    if not _within(parity, tolerance):
        raise ParityError(
            f"parity check failed at {where}: max abs error "
            f"{max(parity['max_abs_err_real'], parity['max_abs_err_random']):.3g} is "
            f"{parity['max_rel_err']:.3g} of the logits' scale (tolerance {tolerance:g})"
        )


def _export_depth(job: _Job, config: DepthConfig) -> dict[str, Any]:
    """One depth's standalone graph (its BN folded into the convolutions), verified against PyTorch."""
    onnx = optional_import("onnx")
    depth = job.ckpt.spec.depth_of(config)
    job.log(f"depth {depth} ({config}): exporting")
    name = f"{job.ckpt.arch}-d{depth}.onnx"
    path, raw_path = job.root / name, job.root / f".{name}.raw"
    export_onnx(
        extract_subnet(job.model, config, fold="conv"),
        raw_path,
        input_shape=job.shape,
        opset=job.opset,
        batch=job.batch,
        exporter=job.exporter,
    )
    proto = onnx.load(str(raw_path))
    opset = graph_opset(proto, job.opset)
    set_metadata(proto, job.metadata({"depth": depth, "blocks": list(config.blocks)}, kind="depth"))
    onnx.save(proto, str(raw_path))
    check_model(raw_path)
    simplified, note, parity = False, "skipped (--no-simplify)", None
    if job.simplify:
        simplified, note, parity = _simplified(job, config, raw_path, path)
    if parity is None:  # the unsimplified graph is the artifact: verify it
        parity = measure_parity(job.reference(config), ort_session(raw_path), job.feeds())
        _check_parity(parity, f"depth {depth}", job.tolerance)
        os.replace(raw_path, path)
    raw_path.unlink(missing_ok=True)
    record = {
        "depth": depth,
        "blocks": list(config.blocks),
        "kind": "depth",
        "precision": "fp32",
        **job.file_record(path),
        "params": job.model.count_params(config),
        "macs": count_macs(job.model, config, job.shape),
        "opset": opset,
        "exporter": job.exporter,
        "simplified": simplified,
        "simplify_note": note,
        "batch": job.batch,
        "parity": job.parity_record(parity, job.tolerance),
    }
    job.log(f"depth {depth}: ok, {record['bytes'] / 1e6:.2f} MB, max relative error {parity['max_rel_err']:.2e}")
    return record


def graph_opset(proto: Any, asked: int) -> int:
    """The default-domain opset the graph really declares (an exporter may write another than asked)."""
    return next((int(o.version) for o in proto.opset_import if o.domain in ("", "ai.onnx")), asked)


def _simplified(
    job: _Job, config: DepthConfig, raw_path: Path, path: Path
) -> tuple[bool, str, dict[str, float] | None]:
    """onnxsim in a child process; ``(True, "ok", parity)`` with the simplified graph moved to ``path``
    when it passes verification, else ``(False, why, None)`` and the raw graph stays the candidate."""
    job.log(f"depth {job.ckpt.spec.depth_of(config)}: simplifying with onnxsim (child process)")
    sim_path = job.root / f".{path.name}.sim"
    try:
        ok, note = simplify_in_child(raw_path, sim_path, timeout=job.simplify_timeout)
        if not ok:
            return False, note, None
        check_model(sim_path)
        parity = measure_parity(job.reference(config), ort_session(sim_path), job.feeds())
        if not _within(parity, job.tolerance):
            return (
                False,
                (
                    f"onnxsim changed the outputs (relative error {parity['max_rel_err']:.3g}); "
                    "kept the unsimplified graph"
                ),
                None,
            )
        os.replace(sim_path, path)
        return True, "ok", parity
    except DDNNError as exc:
        return False, f"simplified graph failed verification ({exc}); kept the unsimplified graph", None
    finally:
        sim_path.unlink(missing_ok=True)


def _export_fp16(job: _Job, fp32: dict[str, Any], tolerance: float) -> dict[str, Any]:
    """An FP16 copy of a per-depth graph (float32 input and output kept), for back-ends that take
    precision from the graph (TensorRT 11's strongly typed networks)."""
    config = job.ckpt.table()[fp32["depth"]]
    path = job.root / fp32["path"].replace(".onnx", ".fp16.onnx")
    write_fp16_copy(job.root / fp32["path"], path)
    check_model(path)
    parity = measure_parity(job.reference(config), ort_session(path), job.feeds())
    _check_parity(parity, f"depth {fp32['depth']} (fp16)", tolerance)
    job.log(f"depth {fp32['depth']}: fp16 ok, max relative error {parity['max_rel_err']:.2e}")
    return {
        **fp32,
        "precision": "fp16",
        **job.file_record(path),
        "from": fp32["path"],
        "parity": job.parity_record(parity, tolerance),
    }


def _export_selector(job: _Job, configs: list[DepthConfig]) -> dict[str, Any]:
    """One graph for every depth (an If chain on the ``depth`` input), weights stored once."""
    onnx = optional_import("onnx")
    spec = job.ckpt.spec
    job.log(f"selector: composing {len(configs)} depths into one graph")
    protos = {}
    for config in configs:
        part = job.root / f".selector-part-{config}.onnx"
        export_onnx(
            extract_subnet(job.model, config, fold="none"),
            part,
            input_shape=job.shape,
            opset=job.opset,
            batch=job.batch,
            exporter=job.exporter,
        )
        protos[spec.depth_of(config)] = onnx.load(str(part))
        part.unlink()
    selector = build_selector_model(protos, opset=job.opset, batch=job.batch)
    depths = [spec.depth_of(c) for c in configs]
    info = {"depth": depths, "blocks": [list(c.blocks) for c in configs]}
    set_metadata(selector, job.metadata(info, kind="selector"))
    path = job.root / f"{job.ckpt.arch}-selector.onnx"
    sizes = save_deduplicated(selector, path, f"{path.name}.data")
    check_model(path)
    session, feeds, per_depth = ort_session(path), job.feeds(), {}
    for config, depth in zip(configs, depths):
        parity = measure_parity(
            job.reference(config), session, feeds, extra_inputs={"depth": np.asarray(depth, dtype=np.int64)}
        )
        _check_parity(parity, f"depth {depth} of the selector graph", job.tolerance)
        per_depth[str(depth)] = parity
    data = job.root / f"{path.name}.data"
    record = {
        "depth": depths,
        "blocks": info["blocks"],
        "kind": "selector",
        "precision": "fp32",
        **job.file_record(path),
        "data": job.file_record(data),
        "params": sum(p.numel() for p in job.model.parameters()),
        "macs": {str(d): count_macs(job.model, c, job.shape) for d, c in zip(depths, configs)},
        "opset": job.opset,
        "exporter": job.exporter,
        "simplified": False,
        "simplify_note": "not simplified: branches keep raw convolution weights so they can share bytes",
        "batch": job.batch,
        "weights": sizes,
        "parity": {
            "per_depth": per_depth,
            "tolerance": job.tolerance,
            "max_rel_err": max(p["max_rel_err"] for p in per_depth.values()),
        },
    }
    record["bytes"] += record["data"]["bytes"]
    job.log(
        f"selector: ok, {record['bytes'] / 1e6:.2f} MB on disk ({sizes['stored_bytes'] / 1e6:.2f} MB of "
        f"weights stored for {sizes['referenced_bytes'] / 1e6:.2f} MB referenced)"
    )
    return record
