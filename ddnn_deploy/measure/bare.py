"""``bench --onnx model.onnx``: latency of one bare graph, without an export folder (no manifest, so no accuracy):
one row per batch size, on the profile's back-end, in a worker process like every bench row. A graph ddnn-deploy
exported keeps its identity (depth, blocks, architecture, checkpoint) from its own metadata.

The graph's external data must be plain files beside it (no links, nothing outside its folder): there is no
manifest to hash them against, so they are confined instead.
"""

from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path
from typing import Any

from .. import __version__
from ..atomic import sha256_file
from ..errors import ArtifactsError, UsageError, optional_import
from ..formats.profiles import TimingSettings
from ..formats.results import BenchResults


def describe_graph(path: Path) -> dict[str, Any]:
    """Input name and shape, precision, static batch and ddnn metadata of a bare ONNX graph (not its weights)."""
    onnx = optional_import("onnx", "bench --onnx")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception:  # noqa: BLE001 - protobuf decode errors share no public base
        raise ArtifactsError(f"--onnx {path} is not an ONNX graph") from None
    from ..formats.external_data import external_locations

    for location in sorted(external_locations(path, model)):
        data = path.parent / location
        if Path(location).is_absolute() or ".." in Path(location).parts or data.is_symlink() or not data.is_file():
            raise ArtifactsError(f"--onnx {path.name} reads external data {location!r}, which is not a plain file "
                                 "beside it; refusing")  # fmt: skip
    initializers = {t.name for t in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    images = [i for i in inputs if len(i.type.tensor_type.shape.dim) == 4]
    if len(images) != 1 or len(inputs) - len(images) > 1:
        raise UsageError(f"--onnx {path.name}: bench takes graphs with one NCHW image input (it has "
                         f"{', '.join(i.name for i in inputs) or 'none'})")  # fmt: skip
    image = images[0]
    dims = image.type.tensor_type.shape.dim
    if any(not d.HasField("dim_value") for d in dims[1:]):
        raise UsageError(f"--onnx {path.name}: input {image.name} needs fixed channels, height and width")
    elem = image.type.tensor_type.elem_type
    quantized = any(n.op_type in ("QuantizeLinear", "DequantizeLinear", "QLinearConv") for n in model.graph.node)
    metadata = {e.key: e.value for e in model.metadata_props}
    return {
        "input_name": image.name,
        "input_shape": [d.dim_value for d in dims[1:]],
        "static_batch": dims[0].dim_value if dims[0].HasField("dim_value") else None,
        "precision": "int8" if quantized else ("fp16" if elem == onnx.TensorProto.FLOAT16 else "fp32"),
        "metadata": metadata,
    }


def _meta(metadata: dict[str, str], key: str, default: Any = None) -> Any:
    try:
        return json.loads(metadata[key]) if key in metadata else default
    except ValueError:
        return metadata[key]


def bench_onnx(
    path: str | Path,
    *,
    device: Any = "x86-cpu",
    profiles_file: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
    timing: TimingSettings | None = None,
    results_path: str | Path | None = None,
    force: bool = False,
    plot: bool = True,
    progress: bool = True,
    job_timeout: float = 1800.0,
    log: Any = None,
) -> BenchResults:
    """Latency (and throughput, memory) of the bare graph ``path`` on ``device``; written to ``results_path``."""
    from .environment import capture
    from .plan import Job
    from .sweep import check_backend, protect_and_check, resolve_profile, run_jobs, write_outputs

    say = log or (lambda message: None)
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"--onnx {path} {'is a folder; give a .onnx file' if path.is_dir() else 'does not exist'}")
    profile = resolve_profile(device, profiles_file, None, timing, overrides)
    check_backend(profile)
    graph = describe_graph(path)
    if results_path is not None:
        own = {path.resolve(), *(p.resolve() for p in path.parent.glob(f"{path.name}.data"))}
        protect_and_check(Path(results_path), own, None, str(path.parent), force=force)
    meta = graph["metadata"]
    depth = _meta(meta, "ddnn.depth", 0)
    job = Job(
        file=str(path), sha256=sha256_file(path), depth=depth if isinstance(depth, int) else 0,
        blocks=list(_meta(meta, "ddnn.blocks", [])) if isinstance(_meta(meta, "ddnn.blocks", []), list) else [],
        kind="depth", backend=profile.backend, provider=profile.provider, hint=profile.hint,
        input_name=graph["input_name"], threads=profile.resolved_threads(), precision=graph["precision"],
        graph_precision=graph["precision"], batch_sizes=list(profile.batch_sizes), static_batch=graph["static_batch"],
        timing=profile.timing, input_shape=graph["input_shape"], preprocess={}, accuracy_batch=1,
    )  # fmt: skip
    env = capture(profile.backend, profile.resolved_threads())
    rows = run_jobs([job], profile, timeout=job_timeout, progress=progress, log=say)
    results = BenchResults(
        tool_version=__version__,
        created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        arch=meta.get("ddnn.architecture"),
        device={"profile": profile.to_dict(), "environment": env},
        settings={"timing": profile.timing.model_dump(), "batch_sizes": list(profile.batch_sizes), "dataset": None},
        artifacts={
            "onnx": str(path), "onnx_sha256": job.sha256, "checkpoint_sha256": meta.get("ddnn.checkpoint_sha256")
        },
        rows=rows,
    )  # fmt: skip
    if results_path is not None:
        write_outputs(results, Path(results_path), plot=plot)
    return results
