"""Which measurements a bench runs: ``plan_jobs(manifest, profile) -> list[Job]``, a pure function.

One ``Job`` per (depth, precision) of a graph; each runs in its own worker process. The choices made
here: the graph a precision is measured from on each back-end (TensorRT FP16 from the FP16 graph
when export made one, else from the FP32 graph with the FP16 builder flag; INT8 only from a QDQ graph
of the back-end's target, the CPU-target graph preferred on onnxruntime when both exist).
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence

from pydantic import ConfigDict

from ..errors import UsageError
from ..formats._schema import Schema
from ..formats.manifest import Artifact, Manifest
from ..formats.profiles import BACKEND_PRECISIONS, DeviceProfile, TimingSettings


class DatasetRef(Schema):
    name: str
    data_dir: Optional[str] = None
    limit: Optional[int] = None


class Job(Schema):
    """Everything one worker process needs: the graph, the depth, the back-end and the settings."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    file: str
    sha256: str
    depth: int
    blocks: List[int]
    kind: str  # "depth" or "selector"
    selector_depths: Optional[List[int]] = None  # the depths a selector graph holds (checked before every call)
    backend: str
    provider: str
    hint: str = "latency"
    input_name: str = "input"  # the graph's image input (a bare graph's may be named otherwise)
    threads: Optional[int]
    precision: str  # the precision measured
    graph_precision: str  # the precision of the graph it is measured from
    batch_sizes: List[int]
    static_batch: Optional[int]
    timing: TimingSettings
    input_shape: List[int]
    preprocess: Dict[str, Any]
    accuracy_batch: int
    class_names: Optional[List[str]] = None
    checkpoint: Optional[str] = None
    engine_cache: Optional[str] = None
    dataset: Optional[DatasetRef] = None

    @property
    def selector(self) -> bool:
        return self.kind == "selector"

    def feed_extra(self) -> Dict[str, Any]:
        """Inputs besides the image: the selector graph's ``depth``."""
        import numpy as np

        return {"depth": np.asarray(self.depth, dtype=np.int64)} if self.selector else {}


def cpu_backend(profile: DeviceProfile, backend: str) -> bool:
    """Back-ends that run on the CPU: onnxruntime's CPU provider, OpenVINO, torch on the CPU."""
    return backend == "openvino" or (backend in ("onnxruntime", "torch") and profile.provider == "cpu")


def graph_for(
    artifact: Artifact,
    precision: str,
    profile: DeviceProfile,
    chosen: Sequence[Artifact],
    backend: Optional[str] = None,
) -> bool:
    """Whether ``precision`` on ``backend`` (the profile's by default) is measured from this artifact's graph."""
    backend = backend or profile.backend
    if precision not in BACKEND_PRECISIONS[backend]:
        return False
    same_depth = [a for a in chosen if a.depth == artifact.depth]
    if backend == "tensorrt":
        if precision == "int8":
            return artifact.precision == "int8" and artifact.target == "tensorrt"
        # FP16 engines: the FP16 graph where export made one (TensorRT 11 takes precision from the graph),
        # else the FP32 graph with TensorRT's FP16 builder flag (TensorRT 8.5-10)
        has_fp16 = any(a.precision == "fp16" for a in same_depth)
        return artifact.precision == ("fp16" if precision == "fp16" and has_fp16 else "fp32")
    if backend == "torch":  # the checkpoint runs in every precision; one row per FP32 graph's depth
        return artifact.precision == "fp32"
    if precision == "bf16":  # OpenVINO: the FP32 graph compiled with the BF16 hint, no new artifact
        return artifact.precision == "fp32"
    if artifact.precision != precision:
        return False
    if precision == "int8" and artifact.target == "tensorrt":
        if cpu_backend(profile, backend):  # S8S8 graphs leave convolutions unfused there: slower than FP32
            return False
        if profile.provider == "tensorrt":
            return True
        return not any(a.precision == "int8" and a.target == "cpu" for a in same_depth)
    if precision == "int8" and profile.provider == "tensorrt":
        return not any(a.precision == "int8" and a.target == "tensorrt" for a in same_depth)
    return True


def tensorrt_int8_only(manifest: Manifest, profile: DeviceProfile, backends: Sequence[str]) -> bool:
    """INT8 asked for on CPU back-ends while the folder's INT8 graphs are all TensorRT's (S8S8)."""
    int8 = [a for a in manifest.artifacts if a.precision == "int8"]
    return (
        "int8" in profile.precisions
        and any(cpu_backend(profile, b) for b in backends)
        and bool(int8)
        and all(a.target == "tensorrt" for a in int8)
    )


def accuracy_batch(profile: DeviceProfile) -> int:
    """The accuracy pass's batch: a TensorRT engine's optimisation profile ends at the largest timed batch, so
    accuracy is fed in chunks within it (a larger input would leave the engine's input unspecified)."""
    if profile.backend == "tensorrt":
        return min(profile.accuracy_batch, max(profile.batch_sizes))
    return profile.accuracy_batch


def _select(manifest: Manifest, depths: Optional[Sequence[int]], include_selector: bool) -> List[Artifact]:
    kinds = ("depth", "selector") if include_selector else ("depth",)
    chosen = [a for a in manifest.artifacts if a.kind in kinds]
    if include_selector and not any(a.kind == "selector" for a in chosen):
        raise UsageError(f"{manifest.root} has no selector graph; export with --selector, or drop --selector")
    if depths:
        known = manifest.depth_numbers()
        missing = sorted(set(depths) - set(known))
        if missing:
            raise UsageError(f"the artifacts hold no depth {missing}; exported depths: {known}")
        chosen = [a for a in chosen if a.kind == "selector" or a.depth in depths]
    return chosen


def plan_jobs(
    manifest: Manifest,
    profile: DeviceProfile,
    *,
    depths: Optional[Sequence[int]] = None,
    include_selector: bool = False,
    checkpoint: Optional[str] = None,
    dataset: Optional[DatasetRef] = None,
    engine_cache: Optional[str] = None,
    backends: Optional[Sequence[str]] = None,
) -> List[Job]:
    """Every (back-end, artifact, depth, precision) the profile measures, back-end by back-end in manifest order.
    ``backends``: the profile's back-end and its installed optional ones by default. Pure: reads nothing."""
    chosen = _select(manifest, depths, include_selector)
    backends = list(backends) if backends is not None else list(profile.backends())
    jobs = []
    for backend in backends:
        for artifact in chosen:
            for precision in profile.precisions:
                if graph_for(artifact, precision, profile, chosen, backend):
                    jobs.extend(
                        _jobs_of(
                            manifest, profile, artifact, precision, backend, depths, checkpoint, dataset, engine_cache
                        )
                    )
    if not jobs:
        hint = "export or calibrate first"
        unsupported = [p for p in profile.precisions if not any(p in BACKEND_PRECISIONS[b] for b in backends)]
        if unsupported == list(profile.precisions):
            where = {p: [b for b, ps in BACKEND_PRECISIONS.items() if p in ps] for p in unsupported}
            hint = "; ".join(f"{p} is measured on {' or '.join(bs)}" for p, bs in where.items())
        elif tensorrt_int8_only(manifest, profile, backends):
            hint = (
                "the INT8 graphs here are calibrated for TensorRT (S8S8), which runs slower than FP32 on CPU "
                "back-ends: calibrate --target cpu"
            )
        raise UsageError(
            f"no artifact matches profile '{profile.name}' (precisions {list(profile.precisions)} on "
            f"{', '.join(backends)}); {hint}"
        )
    return jobs


def _jobs_of(
    manifest: Manifest,
    profile: DeviceProfile,
    artifact: Artifact,
    precision: str,
    backend: str,
    depths: Optional[Sequence[int]],
    checkpoint: Optional[str],
    dataset: Optional[DatasetRef],
    engine_cache: Optional[str],
) -> List[Job]:
    """One job per depth of the artifact (a selector graph holds several)."""
    return [
        Job(
            file=str(manifest.file(artifact)) if manifest._root is not None else artifact.path,
            sha256=artifact.sha256,
            depth=depth,
            blocks=artifact.blocks_of(depth),
            kind=artifact.kind,
            selector_depths=list(artifact.depths) if artifact.kind == "selector" else None,
            backend=backend,
            provider=profile.provider,
            hint=profile.hint,
            threads=profile.resolved_threads(),
            precision=precision,
            graph_precision=artifact.precision,
            batch_sizes=list(profile.batch_sizes),
            static_batch=artifact.batch,
            timing=profile.timing,
            input_shape=list(manifest.input_shape),
            preprocess=manifest.preprocess.to_json_dict(),
            accuracy_batch=accuracy_batch(profile),
            class_names=manifest.class_names or None,
            checkpoint=checkpoint,
            engine_cache=engine_cache,
            dataset=dataset,
        )
        for depth in artifact.depths
        if not (depths and artifact.kind == "selector" and depth not in depths)
    ]
