"""``calibrate``: a calibrated INT8 (QDQ) graph for every exported depth, recorded in the manifest.

Each depth is calibrated on its own graph (activation ranges differ by depth) with onnxruntime's
own tooling: ``quant_pre_process``, then ``quantize_static`` in QDQ format, behind a ``QuantConfig``.
An accuracy guard compares each depth's INT8 top-1 with its FP32 top-1 on held-out test images;
a depth that drops more than ``max_drop`` points gets no INT8 artifact (its FP32 graph stays the
deployable one) and the call fails naming it. The selector graph stays FP32: static QDQ does not
reach inside ``If`` branches.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import make_readable, remove_stale_temps, sha256_file, temp_name, writer_lock
from ..checks import number
from ..data import ImageDataset, Preprocess, load_dataset
from ..errors import AccuracyDropError, ArtifactsError, DataError, DDNNError, UsageError, optional_import
from ..formats.manifest import Artifact, Manifest, read_manifest, write_manifest
from ..progress import Log, progress_bar
from ..runners.accuracy import runner_accuracy
from ..runners.onnxruntime_runner import OrtRunner
from .config import QuantConfig
from .conformance import tensorrt_qdq_problems
from .reader import FeedReader, calibration_images, data_hash


@dataclass
class CalibrationData:
    """The images every depth is calibrated on (None: random, latency studies only) and where they came from."""

    images: np.ndarray | None
    source: str
    samples: int
    sha256: str
    held_out: ImageDataset | None  # test images for the accuracy guard


@contextlib.contextmanager
def _temporary_files_in(folder: Path) -> Iterator[None]:
    """``tempfile``'s default folder is ``folder`` inside the block (onnxruntime's quantizer makes its own
    temporary folders there), so a killed calibration leaves them inside its work folder, which the next run
    removes."""
    previous = tempfile.tempdir
    tempfile.tempdir = str(folder)
    try:
        yield
    finally:
        tempfile.tempdir = previous


def _quantize(src: Path, dst: Path, reader: FeedReader, config: QuantConfig, work: Path) -> None:
    quantization = optional_import("onnxruntime.quantization", "INT8 calibration")
    shape_inference = optional_import("onnxruntime.quantization.shape_inference")
    prepared = work / f"{src.stem}.pre.onnx"
    try:
        with _temporary_files_in(work):  # onnxruntime's own temporary folders die with ours (a killed run)
            shape_inference.quant_pre_process(str(src), str(prepared), skip_symbolic_shape=True)
            quantization.quantize_static(str(prepared), str(dst), reader, **config.quantize_static_kwargs())
    except (DDNNError, KeyboardInterrupt, MemoryError):
        raise
    except Exception as exc:  # noqa: BLE001 - onnx/onnxruntime/protobuf errors share no public base class
        detail = " ".join(str(exc).split())[:200]
        raise ArtifactsError(f"cannot quantize {src.name}: {type(exc).__name__}: {detail}; re-export it") from None
    prepared.unlink(missing_ok=True)
    if config.target == "tensorrt":
        problems = tensorrt_qdq_problems(optional_import("onnx").load(str(dst)))
        if problems:
            raise DDNNError(
                f"{src.name}: the INT8 graph would not parse in TensorRT: {problems[0]} "
                f"({len(problems)} problem(s)); please report this"
            )


def _sources(manifest: Manifest, depths: Sequence[int] | None) -> list[Artifact]:
    sources = list(manifest.select(kind="depth", precision="fp32"))
    if depths:
        known = sorted(a.depth for a in sources)  # type: ignore[type-var]
        missing = sorted(set(depths) - set(known))
        if missing:
            raise UsageError(f"the artifacts hold no FP32 depth {missing}; exported depths: {known}")
        sources = [a for a in sources if a.depth in depths]
    if not sources:
        raise UsageError(f"{manifest.root} holds no FP32 per-depth graph to calibrate; run `ddnn-deploy export` first")
    return sources


def _calibration_data(
    manifest: Manifest, dataset: str | None, samples: int, eval_samples: int | None, log: Log
) -> CalibrationData:
    images, source = calibration_images(
        dataset, input_shape=manifest.input_shape, samples=samples, manifest_dataset=manifest.dataset
    )
    if manifest.static_batch and images is not None and len(images) < manifest.static_batch:
        raise DataError(f"{len(images)} calibration images cannot fill one static batch of {manifest.static_batch}")
    held_out = None
    if images is not None and manifest.dataset and eval_samples:
        try:
            held_out = load_dataset(manifest.dataset, "test").subset(eval_samples, seed=7)
            held_out.preprocess = Preprocess.from_dict(manifest.preprocess.to_json_dict())
        except DataError as exc:
            log(f"note: no held-out data for the accuracy guard ({exc})")
    return CalibrationData(
        images,
        source,
        len(images) if images is not None else samples,
        data_hash(images, 0, samples, manifest.input_shape),
        held_out,
    )


def _guard(
    fp32_graph: Path, int8_graph: Path, data: CalibrationData, manifest: Manifest, threads: int | None
) -> dict[str, Any] | None:
    """FP32 and INT8 top-1 on held-out images; without them, only check the INT8 graph loads and runs."""
    preprocess = Preprocess.from_dict(manifest.preprocess.to_json_dict())
    if data.held_out is None:
        with OrtRunner(int8_graph, threads=threads) as int8_runner:
            int8_runner.infer(
                next(
                    iter(
                        FeedReader(
                            None,
                            preprocess,
                            input_shape=manifest.input_shape,
                            samples=manifest.static_batch or 1,
                            static_batch=manifest.static_batch,
                        )
                    )
                )
            )
        return None
    with OrtRunner(fp32_graph, threads=threads) as fp32_runner:
        fp32 = runner_accuracy(fp32_runner, data.held_out, static_batch=manifest.static_batch)
    with OrtRunner(int8_graph, threads=threads) as int8_runner:
        int8 = runner_accuracy(int8_runner, data.held_out, static_batch=manifest.static_batch)
    return {"fp32_top1": fp32["top1"], "int8_top1": int8["top1"], "drop": fp32["top1"] - int8["top1"], "n": int8["n"]}


def _calibrate_depth(
    source: Artifact,
    manifest: Manifest,
    data: CalibrationData,
    config: QuantConfig,
    work: Path,
    *,
    max_drop: float,
    threads: int | None,
    log: Log,
) -> tuple[Artifact | None, str | None]:
    """(the INT8 artifact in ``work``, None) or (None, why the accuracy guard refused it)."""
    t0 = time.time()
    src = manifest.file(source)
    name = f"{src.stem}.int8-{config.target}.onnx"
    reader = FeedReader(
        data.images,
        Preprocess.from_dict(manifest.preprocess.to_json_dict()),
        input_shape=manifest.input_shape,
        samples=data.samples,
        static_batch=manifest.static_batch,
    )
    _quantize(src, work / name, reader, config, work)
    accuracy = _guard(src, work / name, data, manifest, threads)
    entry = {k: v for k, v in source.to_json_dict().items() if k not in ("parity", "simplify_note")}
    entry.update(
        {
            "precision": "int8",
            "path": name,
            "sha256": sha256_file(work / name),
            "bytes": (work / name).stat().st_size,
            **config.manifest_fields(),
            "calibration": {
                "source": data.source,
                "samples": data.samples,
                "sha256": data.sha256,
                "valid_for_accuracy": data.images is not None,
            },
            "from": source.path,
        }
    )
    if accuracy is None:
        log(f"depth {source.depth}: quantized in {time.time() - t0:.0f} s (no accuracy guard: no held-out data)")
        return Artifact.model_validate(entry), None
    entry["accuracy"] = {**accuracy, "max_drop": max_drop}
    log(
        f"depth {source.depth}: INT8 top-1 {accuracy['int8_top1']:.2f}% vs FP32 {accuracy['fp32_top1']:.2f}% "
        f"(drop {accuracy['drop']:+.2f}) in {time.time() - t0:.0f} s"
    )
    if not accuracy["drop"] <= max_drop:  # a NaN accuracy fails the guard
        return None, f"depth {source.depth} drops {accuracy['drop']:.2f} points (> {max_drop})"
    return Artifact.model_validate(entry), None


def _commit(manifest: Manifest, new: list[Artifact], sources: list[Artifact], target: str, work: Path) -> Manifest:
    """New files get content-addressed names, so no file the current manifest lists is overwritten; the
    manifest is replaced atomically; only then are superseded INT8 files deleted. Runs under the folder's
    lock, on the manifest as it is NOW (re-read), so what another run recorded meanwhile is kept."""
    root = manifest.root
    manifest = read_manifest(root)
    missing = [
        a.path for a in sources if not any(b.path == a.path and b.sha256 == a.sha256 for b in manifest.artifacts)
    ]
    if missing:
        raise UsageError(
            f"{root} changed while this calibration ran ({', '.join(missing)} is no longer the graph calibrated); "
            "calibrate again"
        )
    placed = []
    for artifact in new:
        final = f"{Path(artifact.path).stem}-{artifact.sha256[:8]}.onnx"
        os.replace(work / artifact.path, root / final)
        make_readable(root / final)
        placed.append(artifact.model_copy(update={"path": final}))
    redone = {(a.depth, target) for a in sources}
    superseded = [a for a in manifest.artifacts if a.precision == "int8" and (a.depth, a.target) in redone]
    kept = [a for a in manifest.artifacts if a not in superseded]
    updated = manifest.model_copy(update={"artifacts": kept + placed})
    write_manifest(root, updated)
    still_listed = {a.path for a in updated.artifacts}
    for artifact in superseded:
        if artifact.path not in still_listed:
            (root / artifact.path).unlink(missing_ok=True)
    updated._root = root
    return updated


def calibrate(
    artifacts: str | Path,
    config: QuantConfig | None = None,
    *,
    dataset: str | None = None,
    samples: int = 512,
    max_drop: float = 1.0,
    eval_samples: int | None = 2000,
    depths: Sequence[int] | None = None,
    threads: int | None = None,
    progress: bool = True,
    log: Log | None = None,
) -> Manifest:
    """Quantize every FP32 depth artifact per ``config``; returns the updated manifest (written atomically).

    ``dataset``: a dataset name (training split), an image folder, a ``.npz`` sample, ``"random"``, or None
    for the default sample of the manifest's dataset. Raises ``AccuracyDropError`` naming the depths whose
    INT8 top-1 dropped more than ``max_drop`` points (they keep their FP32 graph only).
    """
    config = QuantConfig() if config is None else config
    if not isinstance(config, QuantConfig):
        raise UsageError(f"config must be a QuantConfig, not {type(config).__name__}")
    number("--samples", samples, at_least=1, integer=True)
    number("--max-drop", max_drop, at_least=0)
    if eval_samples is not None:
        number("--eval-samples", eval_samples, at_least=0, integer=True)
    say = log or (lambda message: None)
    read_manifest(artifacts, verify=False)  # not an export folder: fail before a lock is made beside it
    with writer_lock(artifacts, f"the export folder {artifacts}"):
        remove_stale_temps(artifacts)  # what a killed calibrate left behind
        return _calibrate_locked(
            artifacts, config, dataset, samples, max_drop, eval_samples, depths, threads, progress, say
        )


def _calibrate_locked(
    artifacts: str | Path,
    config: QuantConfig,
    dataset: str | None,
    samples: int,
    max_drop: float,
    eval_samples: int | None,
    depths: Sequence[int] | None,
    threads: int | None,
    progress: bool,
    say: Log,
) -> Manifest:
    manifest = read_manifest(artifacts)
    sources = _sources(manifest, depths)
    data = _calibration_data(manifest, dataset, samples, eval_samples, say)
    say(
        f"calibrating {len(sources)} depth(s) for {config.target} ({config.method}) on {data.source}: "
        f"{data.samples} images"
    )
    work = Path(tempfile.mkdtemp(prefix=temp_name("work", "calibrate"), dir=manifest.root))
    new, failures = [], []
    try:
        for source in progress_bar(sources, enabled=progress, desc=f"INT8 ({config.target})", unit="depth"):
            artifact, failure = _calibrate_depth(
                source, manifest, data, config, work, max_drop=max_drop, threads=threads, log=say
            )
            new += [artifact] if artifact is not None else []
            failures += [failure] if failure else []
        manifest = _commit(manifest, new, sources, config.target, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if failures:
        raise AccuracyDropError(
            "INT8 accuracy guard failed, FP32 stays the deployable graph for: " + "; ".join(failures)
        )
    return manifest
