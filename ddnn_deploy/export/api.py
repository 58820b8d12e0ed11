"""``export``: one shared-weight checkpoint -> verified per-depth ONNX graphs (+ a selector graph).

Everything is built in a temporary directory beside the target and moved into place only when
every artifact passed verification; a failed export leaves whatever was at the target untouched.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import __version__
from ..atomic import make_readable, sha256_file
from ..checkpoint import Checkpoint, load_checkpoint
from ..errors import DataError, DDNNError, UsageError
from ..models import count_macs
from ..spec import DepthConfig, parse_depths
from .onnx_graph import INPUT_NAME, OUTPUT_NAME, export_onnx, set_metadata
from .selector import build_selector_model, save_deduplicated
from .simplify import simplify_in_child
from .subnet import extract_subnet
from .verify import ParityError, check_model, measure_parity, ort_session, parity_inputs

MANIFEST_FORMAT = "ddnn-deploy.export"
MANIFEST_VERSION = 1
DEFAULT_OPSET = 17
FP32_TOLERANCE = 1e-4  # worst |onnx - torch| relative to the largest |logit|
FP16_TOLERANCE = 1e-2  # FP16 graphs: half precision keeps about 3 significant digits


def _prepare_target(out: Path, force: bool) -> None:
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file; give a directory")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise UsageError(f"--out {out} already holds files; pass --force to replace them")
    parent = out.parent if str(out.parent) else Path(".")
    try:
        parent.mkdir(parents=True, exist_ok=True)
        probe = Path(tempfile.mkdtemp(prefix=f".{out.name}.probe-", dir=parent))
        probe.rmdir()
    except OSError as exc:
        raise UsageError(f"cannot write to {parent}: {exc.strerror or exc}; choose another --out") from None


def _commit_directory(tmp: Path, out: Path) -> None:
    """Move the finished temporary directory onto ``out`` (replacing its old contents)."""
    make_readable(tmp, directory=True)
    for child in tmp.iterdir():
        make_readable(child)
    if out.exists():
        backup = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.replace(out, backup)
        os.replace(tmp, out)
        shutil.rmtree(backup, ignore_errors=True)
    else:
        os.replace(tmp, out)


def _real_samples(ckpt: Checkpoint, shape: tuple[int, int, int], count: int) -> np.ndarray | None:
    if not ckpt.dataset or tuple(shape) != tuple(ckpt.input_shape):
        return None
    try:
        from ..data import load_dataset

        test = load_dataset(ckpt.dataset, "test").subset(count, seed=5)
    except DataError:
        return None
    return test.preprocess.apply(test.images)


def _file_record(path: Path, root: Path) -> dict[str, Any]:
    return {"path": path.relative_to(root).as_posix(), "sha256": sha256_file(path), "bytes": path.stat().st_size}


def _metadata(ckpt: Checkpoint, ckpt_sha: str, depth_info: Any, *, exporter: str, opset: int,
              kind: str) -> dict[str, Any]:
    return {"ddnn.kind": kind, "ddnn.depth": depth_info["depth"], "ddnn.blocks": depth_info["blocks"],
            "ddnn.architecture": ckpt.arch, "ddnn.preprocess": ckpt.preprocess,
            "ddnn.class_names": ckpt.class_names, "ddnn.checkpoint_sha256": ckpt_sha,
            "ddnn.exporter": exporter, "ddnn.opset": str(opset), "ddnn.tool_version": __version__}


def _check_parity(parity: dict[str, float], where: str, tolerance: float) -> None:
    if parity["max_rel_err"] > tolerance:
        raise ParityError(
            f"parity check failed at {where}: max abs error "
            f"{max(parity['max_abs_err_real'], parity['max_abs_err_random']):.3g} is "
            f"{parity['max_rel_err']:.3g} of the logits' scale (tolerance {tolerance:g})")


def export(ckpt_path: str | Path, out: str | Path, *, depths: str | None = None, selector: bool = False,
           opset: int = DEFAULT_OPSET, input_size: int | None = None, batch: int | None = None,
           simplify: bool = True, force: bool = False, exporter: str = "torchscript",
           tolerance: float = FP32_TOLERANCE, real_samples: int = 64, simplify_timeout: float = 300.0,
           fp16: bool = False, fp16_tolerance: float = FP16_TOLERANCE,
           progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Export and verify; returns the manifest (also written to ``OUT/manifest.json``)."""
    started = time.time()
    say = progress or (lambda message: None)
    out = Path(out)
    ckpt_path = Path(ckpt_path)
    resolved = out.resolve()
    if resolved == Path.cwd().resolve() or resolved in Path.cwd().resolve().parents:
        raise UsageError(f"--out {out} is the current directory or above it; give a dedicated directory")
    if resolved in ckpt_path.resolve().parents:
        raise UsageError(f"--out {out} holds the checkpoint {ckpt_path}; export into another directory")
    _prepare_target(out, force)
    ckpt = load_checkpoint(ckpt_path)
    ckpt_sha = sha256_file(ckpt_path)
    spec = ckpt.spec
    configs = parse_depths(spec, depths, ckpt.table())
    if batch is not None and batch < 1:
        raise UsageError("--batch must be at least 1")
    channels = ckpt.input_shape[0] if ckpt.input_shape else ckpt.model.get("in_channels", 3)
    size = input_size or (ckpt.input_shape[1] if ckpt.input_shape else ckpt.model.get("input_size", 224))
    shape = (int(channels), int(size), int(size))
    model = ckpt.build()
    try:
        with torch.no_grad():
            model(torch.zeros(1, *shape), configs[0])
    except RuntimeError:
        raise UsageError(f"{spec.name} cannot run at input size {size}; choose a larger --input-size") from None
    real = _real_samples(ckpt, shape, real_samples)

    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent if str(out.parent) else "."))
    try:
        artifacts = []
        for config in configs:
            artifacts.append(_export_depth(ckpt, ckpt_sha, model, config, tmp, shape=shape, opset=opset,
                                           batch=batch, exporter=exporter, simplify=simplify,
                                           tolerance=tolerance, real=real, simplify_timeout=simplify_timeout,
                                           say=say))
        if fp16:
            for record in [a for a in artifacts if a["kind"] == "depth"]:
                artifacts.append(_export_fp16(ckpt, record, tmp, shape=shape, batch=batch, real=real,
                                              tolerance=fp16_tolerance, say=say))
        if selector:
            if len(configs) < 2:
                raise UsageError("--selector needs at least two depths")
            artifacts.append(_export_selector(ckpt, ckpt_sha, model, configs, tmp, shape=shape, opset=opset,
                                              batch=batch, exporter=exporter, tolerance=tolerance, real=real,
                                              say=say))
        manifest = {
            "format": MANIFEST_FORMAT, "version": MANIFEST_VERSION, "tool_version": __version__,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "checkpoint": {"path": str(ckpt_path), "sha256": ckpt_sha},
            "arch": ckpt.arch, "dataset": ckpt.dataset,
            "input": {"name": INPUT_NAME, "dtype": "float32", "layout": "NCHW",
                      "shape": [batch if batch else "batch", *shape]},
            "output": {"name": OUTPUT_NAME, "dtype": "float32", "shape": [batch if batch else "batch",
                                                                        len(ckpt.class_names) or None]},
            "preprocess": ckpt.preprocess, "class_names": ckpt.class_names,
            "export_seconds": round(time.time() - started, 1),
            "artifacts": artifacts,
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        _commit_directory(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest


def _export_depth(ckpt: Checkpoint, ckpt_sha: str, model: Any, config: DepthConfig, root: Path, *,
                  shape: tuple[int, int, int], opset: int, batch: int | None, exporter: str, simplify: bool,
                  tolerance: float, real: np.ndarray | None, simplify_timeout: float,
                  say: Callable[[str], None]) -> dict[str, Any]:
    import onnx

    spec = ckpt.spec
    depth = spec.depth_of(config)
    say(f"depth {depth} ({config}): exporting")
    subnet = extract_subnet(model, config, ckpt.bn_stats.get(str(config)), fold="conv")
    reference = ckpt.build(config)  # unfolded, the depth's own BN statistics: the ground truth
    reference_fn = _bound(reference, config)
    name = f"{ckpt.arch}-d{depth}.onnx"
    path = root / name
    raw_path = root / f".{name}.raw"
    export_onnx(subnet, raw_path, input_shape=shape, opset=opset, batch=batch, exporter=exporter)
    proto = onnx.load(str(raw_path))
    info = {"depth": depth, "blocks": list(config.blocks)}
    set_metadata(proto, _metadata(ckpt, ckpt_sha, info, exporter=exporter, opset=opset, kind="depth"))
    onnx.save(proto, str(raw_path))
    check_model(raw_path)
    feeds = parity_inputs(shape, batch, real)

    simplified, note, parity = False, "skipped (--no-simplify)", None
    if simplify:
        say(f"depth {depth}: simplifying with onnxsim (child process)")
        sim_path = root / f".{name}.sim"
        ok, note = simplify_in_child(raw_path, sim_path, timeout=simplify_timeout)
        if ok:
            try:
                check_model(sim_path)
                sim_parity = measure_parity(reference_fn, ort_session(sim_path), feeds)
                if sim_parity["max_rel_err"] <= tolerance:
                    os.replace(sim_path, path)
                    simplified, parity, note = True, sim_parity, "ok"
                else:
                    note = (f"onnxsim changed the outputs (relative error {sim_parity['max_rel_err']:.3g}); "
                            "kept the unsimplified graph")
            except DDNNError as exc:
                note = f"simplified graph failed verification ({exc}); kept the unsimplified graph"
        sim_path.unlink(missing_ok=True)
    if not simplified:  # the unsimplified graph is the artifact: verify it
        parity = measure_parity(reference_fn, ort_session(raw_path), feeds)
        _check_parity(parity, f"depth {depth}", tolerance)
        os.replace(raw_path, path)
    raw_path.unlink(missing_ok=True)
    assert parity is not None
    record = {"depth": depth, "blocks": list(config.blocks), "kind": "depth", "precision": "fp32",
              **_file_record(path, root), "params": model.count_params(config),
              "macs": count_macs(model, config, shape), "opset": opset, "exporter": exporter,
              "simplified": simplified, "simplify_note": note, "batch": batch,
              "parity": {**parity, "tolerance": tolerance, "real_samples": 0 if real is None else int(len(real)),
                         "batch_sizes": [batch] if batch else [1, 3, 8]}}
    say(f"depth {depth}: ok, {record['bytes'] / 1e6:.2f} MB, max relative error {parity['max_rel_err']:.2e}")
    return record


def _topological_sort(graph: Any) -> None:
    available = {i.name for i in graph.input} | {i.name for i in graph.initializer} | {""}
    pending, ordered = list(graph.node), []
    while pending:
        ready = [n for n in pending if all(i in available for i in n.input)]
        if not ready:
            raise DDNNError("the FP16 graph has a cycle or a missing input; export without --fp16")
        for node in ready:
            ordered.append(node)
            available.update(node.output)
        pending = [n for n in pending if n not in ready]
    copies = [type(n)() for n in ordered]
    for copy, node in zip(copies, ordered):
        copy.CopyFrom(node)
    del graph.node[:]
    graph.node.extend(copies)


def _export_fp16(ckpt: Checkpoint, fp32: dict[str, Any], root: Path, *, shape: tuple[int, int, int],
                 batch: int | None, real: np.ndarray | None, tolerance: float,
                 say: Callable[[str], None]) -> dict[str, Any]:
    """An FP16 copy of a per-depth graph (float32 input and output kept), for back-ends that take
    precision from the graph (TensorRT 11's strongly typed networks)."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    config = ckpt.table()[fp32["depth"]]
    proto = convert_float_to_float16(onnx.load(str(root / fp32["path"])), keep_io_types=True)
    _topological_sort(proto.graph)  # the converter appends its input casts at the end
    path = root / fp32["path"].replace(".onnx", ".fp16.onnx")
    onnx.save(proto, str(path))
    check_model(path)
    reference = ckpt.build(config)
    parity = measure_parity(_bound(reference, config), ort_session(path), parity_inputs(shape, batch, real))
    _check_parity(parity, f"depth {fp32['depth']} (fp16)", tolerance)
    say(f"depth {fp32['depth']}: fp16 ok, max relative error {parity['max_rel_err']:.2e}")
    return {**fp32, "precision": "fp16", **_file_record(path, root), "from": fp32["path"],
            "parity": {**parity, "tolerance": tolerance, "real_samples": 0 if real is None else int(len(real)),
                       "batch_sizes": [batch] if batch else [1, 3, 8]}}


def _bound(model: Any, config: DepthConfig) -> Callable[[torch.Tensor], torch.Tensor]:
    return lambda x: model(x, config)


def _export_selector(ckpt: Checkpoint, ckpt_sha: str, model: Any, configs: list[DepthConfig], root: Path, *,
                     shape: tuple[int, int, int], opset: int, batch: int | None, exporter: str, tolerance: float,
                     real: np.ndarray | None, say: Callable[[str], None]) -> dict[str, Any]:
    import onnx

    spec = ckpt.spec
    say(f"selector: composing {len(configs)} depths into one graph")
    protos = {}
    for config in configs:
        part = root / f".selector-part-{config}.onnx"
        subnet = extract_subnet(model, config, ckpt.bn_stats.get(str(config)), fold="none")
        export_onnx(subnet, part, input_shape=shape, opset=opset, batch=batch, exporter=exporter)
        protos[spec.depth_of(config)] = onnx.load(str(part))
        part.unlink()
    selector = build_selector_model(protos, opset=opset, batch=batch)
    depths = [spec.depth_of(c) for c in configs]
    info = {"depth": depths, "blocks": [list(c.blocks) for c in configs]}
    set_metadata(selector, _metadata(ckpt, ckpt_sha, info, exporter=exporter, opset=opset, kind="selector"))
    name = f"{ckpt.arch}-selector.onnx"
    path = root / name
    sizes = save_deduplicated(selector, path, f"{name}.data")
    check_model(path)
    session = ort_session(path)
    feeds = parity_inputs(shape, batch, real)
    per_depth = {}
    for config, depth in zip(configs, depths):
        reference = ckpt.build(config)
        parity = measure_parity(_bound(reference, config), session, feeds,
                                extra_inputs={"depth": np.asarray(depth, dtype=np.int64)})
        _check_parity(parity, f"depth {depth} of the selector graph", tolerance)
        per_depth[str(depth)] = parity
    data = root / f"{name}.data"
    record = {"depth": depths, "blocks": info["blocks"], "kind": "selector", "precision": "fp32",
              **_file_record(path, root), "data": _file_record(data, root),
              "params": sum(p.numel() for p in model.parameters()),
              "macs": {str(d): count_macs(model, c, shape) for d, c in zip(depths, configs)},
              "opset": opset, "exporter": exporter, "simplified": False,
              "simplify_note": "not simplified: branches keep raw convolution weights so they can share bytes",
              "batch": batch, "weights": sizes,
              "parity": {"per_depth": per_depth, "tolerance": tolerance,
                         "max_rel_err": max(p["max_rel_err"] for p in per_depth.values())}}
    record["bytes"] += record["data"]["bytes"]
    say(f"selector: ok, {record['bytes'] / 1e6:.2f} MB on disk ({sizes['stored_bytes'] / 1e6:.2f} MB of "
        f"weights stored for {sizes['referenced_bytes'] / 1e6:.2f} MB referenced)")
    return record
