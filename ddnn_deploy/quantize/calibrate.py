"""``calibrate``: a calibrated INT8 (QDQ) graph for every exported depth, recorded in the manifest.

Each depth is calibrated on its own graph (activation ranges differ by depth) with onnxruntime's
own tooling: ``quant_pre_process``, then ``quantize_static`` in QDQ format with per-channel weights.
An accuracy guard compares each depth's INT8 top-1 with its FP32 top-1 on held-out test images;
a depth that drops more than ``max_drop`` points gets no INT8 artifact (its FP32 graph stays the
deployable one) and the command fails naming it. The selector graph stays FP32: static QDQ does not
reach inside ``If`` branches.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..atomic import make_readable, sha256_file, write_text_atomic
from ..bench.accuracy import runner_accuracy
from ..bench.artifacts import load_manifest
from ..data import Preprocess, load_dataset
from ..errors import DataError, DDNNError, UsageError
from ..runners.onnxruntime_runner import OrtRunner, import_onnxruntime
from .config import QuantConfig
from .reader import FeedReader, calibration_images, data_hash


class AccuracyDropError(DDNNError):
    exit_code = 8


def _quantize(src: Path, dst: Path, reader: FeedReader, config: QuantConfig, work: Path) -> None:
    import_onnxruntime()
    from onnxruntime.quantization import quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    prepared = work / f"{src.stem}.pre.onnx"
    quant_pre_process(str(src), str(prepared), skip_symbolic_shape=True)
    quantize_static(str(prepared), str(dst), reader, **config.quantize_static_kwargs())
    prepared.unlink(missing_ok=True)


def calibrate(artifacts: str | Path, *, dataset: str | None = None, samples: int = 512, target: str = "cpu",
              method: str = "minmax", per_channel: bool = True, max_drop: float = 1.0,
              eval_samples: int | None = 2000, depths: list[int] | None = None, threads: int | None = None,
              log: Callable[[str], None] = lambda m: None) -> dict[str, Any]:
    """Quantize every FP32 depth artifact; returns the updated manifest (written atomically)."""
    config = QuantConfig(target=target, method=method, per_channel=per_channel)
    if samples < 1:
        raise UsageError("--samples must be at least 1")
    root = Path(artifacts)
    manifest = load_manifest(root)
    sources = [a for a in manifest["artifacts"] if a["kind"] == "depth" and a["precision"] == "fp32"]
    if depths:
        known = sorted(a["depth"] for a in sources)
        missing = sorted(set(depths) - set(known))
        if missing:
            raise UsageError(f"the artifacts hold no FP32 depth {missing}; exported depths: {known}")
        sources = [a for a in sources if a["depth"] in depths]
    if not sources:
        raise UsageError(f"{root} holds no FP32 per-depth graph to calibrate; run `ddnn-deploy export` first")
    input_shape = tuple(manifest["input"]["shape"][1:])
    static_batch = manifest["input"]["shape"][0] if isinstance(manifest["input"]["shape"][0], int) else None
    preprocess = Preprocess.from_dict(manifest["preprocess"])
    images, source = calibration_images(dataset, input_shape=input_shape, samples=samples,
                                        manifest_dataset=manifest.get("dataset"))
    if static_batch and images is not None and len(images) < static_batch:
        raise DataError(f"{len(images)} calibration images cannot fill one static batch of {static_batch}")
    digest = data_hash(images, 0, samples, input_shape)
    held_out = None
    if images is not None and manifest.get("dataset") and eval_samples:
        try:
            held_out = load_dataset(manifest["dataset"], "test").subset(eval_samples, seed=7)
            held_out.preprocess = preprocess
        except DataError as exc:
            log(f"note: no held-out data for the accuracy guard ({exc})")
    log(f"calibrating {len(sources)} depth(s) for {target} ({method}) on {source}: "
        f"{len(images) if images is not None else samples} images")

    work = Path(tempfile.mkdtemp(prefix=".calibrate-", dir=root))
    new_entries, failures = [], []
    try:
        for source_artifact in sources:
            depth = source_artifact["depth"]
            t0 = time.time()
            reader = FeedReader(images, preprocess, input_shape=input_shape, samples=samples,
                                static_batch=static_batch)
            src = Path(source_artifact["file"])
            name = f"{src.stem}.int8-{target}.onnx"
            _quantize(src, work / name, reader, config, work)
            entry = {k: v for k, v in source_artifact.items() if k not in ("file", "parity", "simplify_note")}
            entry.update({"precision": "int8", "path": name, "sha256": sha256_file(work / name),
                          "bytes": (work / name).stat().st_size, "target": target, "method": method,
                          "per_channel": per_channel, "calibration": {"source": source, "samples": len(images)
                                                                      if images is not None else samples,
                                                                      "sha256": digest,
                                                                      "valid_for_accuracy": images is not None},
                          "from": source_artifact["path"]})
            if held_out is not None:
                with OrtRunner(src, threads=threads) as fp32_runner:
                    fp32 = runner_accuracy(fp32_runner, held_out, static_batch=static_batch)
                with OrtRunner(work / name, threads=threads) as int8_runner:
                    int8 = runner_accuracy(int8_runner, held_out, static_batch=static_batch)
                drop = fp32["top1"] - int8["top1"]
                entry["accuracy"] = {"fp32_top1": fp32["top1"], "int8_top1": int8["top1"], "drop": drop,
                                     "n": int8["n"], "max_drop": max_drop}
                log(f"depth {depth}: INT8 top-1 {int8['top1']:.2f}% vs FP32 {fp32['top1']:.2f}% "
                    f"(drop {drop:+.2f}) in {time.time() - t0:.0f} s")
                if drop > max_drop:
                    failures.append(f"depth {depth} drops {drop:.2f} points (> {max_drop})")
                    continue
            else:
                with OrtRunner(work / name, threads=threads) as int8_runner:  # it must at least load and run
                    int8_runner.infer(next(iter(FeedReader(None, preprocess, input_shape=input_shape,
                                                           samples=static_batch or 1, static_batch=static_batch))))
                log(f"depth {depth}: quantized in {time.time() - t0:.0f} s (no accuracy guard: no held-out data)")
            new_entries.append(entry)
        # New files get content-addressed names, so no file the current manifest lists is overwritten;
        # the manifest is replaced atomically; only then are superseded INT8 files deleted.
        for entry in new_entries:
            final = f"{Path(entry['path']).stem}-{entry['sha256'][:8]}.onnx"
            os.replace(work / entry["path"], root / final)
            make_readable(root / final)
            entry["path"] = final
        redone = {(a["depth"], target) for a in sources}
        kept = [{k: v for k, v in a.items() if k != "file"} for a in manifest["artifacts"]
                if not (a["precision"] == "int8" and (a["depth"], a.get("target")) in redone)]
        dropped = [a["path"] for a in manifest["artifacts"] if a["precision"] == "int8"
                   and (a["depth"], a.get("target")) in redone]
        manifest = {k: v for k, v in manifest.items() if k != "artifacts"}
        manifest["artifacts"] = kept + new_entries
        write_text_atomic(root / "manifest.json", json.dumps(manifest, indent=2) + "\n")
        still_listed = {a["path"] for a in manifest["artifacts"]}
        for path in dropped:
            if path not in still_listed:
                (root / path).unlink(missing_ok=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if failures:
        raise AccuracyDropError("INT8 accuracy guard failed, FP32 stays the deployable graph for: "
                                + "; ".join(failures))
    return manifest
