"""``DepthRuntime``: an export folder loaded for prediction, with its depth switchable at run time.

No torch. One runner per depth (or the one selector graph, switched by its ``depth`` input), the manifest's
preprocessing and class names; ``predict`` takes paths, PIL images, encoded bytes or pixel arrays. The depth
comes from the call, else from the policy (fixed, budget, or the adaptive SLO controller).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..data import Preprocess
from ..errors import ResultsError, UsageError
from ..formats.manifest import Artifact, Manifest, read_manifest
from ..formats.profiles import DeviceProfile, get_profile
from ..formats.results import BenchResults, read_results
from ..measure.plan import graph_for
from ..pick import pick_depth
from ..runners.factory import GRAPH_BACKENDS, graph_runner
from .inputs import to_pixels
from .policy import FixedPolicy, SLOController, latency_table


@dataclass
class Prediction:
    label: int
    class_name: str
    score: float  # softmax probability of ``label``
    top_k: list[dict[str, Any]]
    depth: int
    latency_ms: float  # of the whole predict call this image was part of
    path: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("extra")
        return data


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def _make_runner(profile: DeviceProfile, file: Path, artifact: Artifact, precision: str) -> Any:
    if profile.backend not in GRAPH_BACKENDS:
        raise UsageError(f"the runtime runs exported graphs on {', '.join(GRAPH_BACKENDS)}, not {profile.backend!r}")
    return graph_runner(
        profile.backend,
        file,
        precision=precision,
        provider=profile.provider,
        threads=profile.resolved_threads(),
        onnx_sha256=artifact.sha256,
        max_batch=max(profile.batch_sizes),
        batch_sizes=profile.batch_sizes,
        graph_precision=artifact.precision,
        hint=profile.hint,
        selector_depths=artifact.depths if artifact.kind == "selector" else None,
    )


def check_results_match(results: BenchResults, manifest: Manifest, where: str) -> None:
    """Results measured on another model say nothing about this one: refuse them."""
    measured = results.artifacts.get("checkpoint_sha256")
    if measured != manifest.checkpoint.sha256:
        raise ResultsError(
            f"{where} was measured on another model (checkpoint sha256 {str(measured)[:12]}..., these "
            f"artifacts: {manifest.checkpoint.sha256[:12]}...); bench these artifacts first"
        )


class DepthRuntime:
    """Predict with a DDNN's exported depths and switch between them (``set_depth``, or a policy)."""

    def __init__(
        self,
        manifest: Manifest,
        runners: dict[int, Any],
        *,
        precision: str,
        use_selector: bool,
        policy: Any,
        results: BenchResults | None = None,
    ) -> None:
        self.manifest = manifest
        self.precision = precision
        self.use_selector = use_selector
        self.results = results
        self._runners = runners  # depth -> runner (the same runner for every depth with the selector)
        self._preprocess = Preprocess.from_dict(manifest.preprocess.to_json_dict())
        self.class_names = list(manifest.class_names)
        self.policy = policy
        self._lock = threading.Lock()  # onnxruntime sessions are thread-safe; this guards depth switches

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_artifacts(
        cls,
        artifacts_dir: str | Path,
        *,
        device: str | DeviceProfile = "x86-cpu",
        precision: str = "fp32",
        results: str | Path | BenchResults | None = None,
        use_selector: bool = False,
        depth: int | None = None,
        slo_ms: float | None = None,
        budget_ms: float | None = None,
        stat: str = "p99",
        threads: int | None = None,
    ) -> DepthRuntime:
        """Load ``artifacts_dir`` (sha256 checked). The policy: ``depth`` (fixed), ``budget_ms`` (the pick from
        ``results``), ``slo_ms`` (adaptive, needs ``results``), else fixed at the deepest depth."""
        manifest = read_manifest(artifacts_dir)
        profile = get_profile(device)
        if threads is not None:
            if isinstance(threads, bool) or not isinstance(threads, int) or not 1 <= threads <= 1024:
                raise UsageError(f"threads must be an integer in 1..1024, not {threads!r}")
            profile = profile.model_copy(update={"threads": threads})
        bench = _load_results(results, manifest)
        runners = _runners(manifest, profile, precision, use_selector)
        policy = _policy(
            sorted(runners),
            bench,
            precision,
            profile.backend,
            depth=depth,
            slo_ms=slo_ms,
            budget_ms=budget_ms,
            stat=stat,
        )
        runtime = cls(manifest, runners, precision=precision, use_selector=use_selector, policy=policy, results=bench)
        for runner in {id(r): r for r in runners.values()}.values():
            runner.activate()
        runtime.warm_up()
        return runtime

    def warm_up(self) -> None:
        """One inference per depth, so the first real request does not pay for lazy initialisation."""
        zeros = np.zeros((self.manifest.static_batch or 1, *self.manifest.input_shape), dtype=np.float32)
        for depth in self.depths:
            self.logits(zeros, depth)

    def close(self) -> None:
        for runner in {id(r): r for r in self._runners.values()}.values():
            runner.deactivate()

    def __enter__(self) -> DepthRuntime:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ depth

    @property
    def depths(self) -> list[int]:
        return sorted(self._runners)

    @property
    def depth(self) -> int:
        return self.policy.depth

    def check_depth(self, depth: Any) -> int:
        if isinstance(depth, bool) or not isinstance(depth, (int, np.integer)) or int(depth) not in self._runners:
            raise UsageError(f"depth {depth!r} is not loaded; loaded depths: {self.depths}")
        return int(depth)

    def set_depth(self, depth: int) -> None:
        """Fix the depth from now on (replaces any adaptive policy)."""
        with self._lock:
            self.policy = FixedPolicy(self.check_depth(depth))

    # ------------------------------------------------------------------ inference

    def logits(self, pixels: np.ndarray, depth: int) -> np.ndarray:
        """Raw logits of float32 NCHW pixels (0-255 units) at ``depth``."""
        depth = self.check_depth(depth)  # before any back-end sees it
        runner = self._runners[depth]
        feed = {"input": self._preprocess.apply(pixels)}
        if self.use_selector:
            feed["depth"] = np.asarray(depth, dtype=np.int64)
        return runner.infer(feed)[0]

    def predict(self, inputs: Any, *, depth: int | None = None, top_k: int = 1) -> list[Prediction]:
        """One ``Prediction`` per input image (an array ``[N,C,H,W]`` is N images)."""
        if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
            raise UsageError(f"top_k must be a positive integer, not {top_k!r}")
        chosen = self.depth if depth is None else self.check_depth(depth)
        pixels, names = to_pixels(inputs, self.manifest.input_shape)
        started = time.perf_counter()
        logits = self.run_batches(pixels, chosen)
        elapsed = (time.perf_counter() - started) * 1e3
        return self.decode(logits, chosen, elapsed, names, top_k)

    def run_batches(self, pixels: np.ndarray, depth: int) -> np.ndarray:
        """Logits of float32 NCHW pixels at ``depth``, chunked and padded for a static-batch graph."""
        static = self.manifest.static_batch
        if not static:
            return self.logits(pixels, depth)
        outputs = []
        for start in range(0, len(pixels), static):
            chunk = pixels[start : start + static]
            padded = np.concatenate([chunk, np.zeros((static - len(chunk), *chunk.shape[1:]), np.float32)])
            outputs.append(self.logits(padded, depth)[: len(chunk)])
        return np.concatenate(outputs)

    def decode(
        self, logits: np.ndarray, depth: int, latency_ms: float, names: Sequence[str | None], top_k: int = 1
    ) -> list[Prediction]:
        probs = softmax(logits.astype(np.float64))
        if top_k == 1:  # argmax takes the first of equal scores, as the stable sort does, at a fraction of its cost
            order = probs.argmax(axis=1)[:, None]
        else:
            order = np.argsort(-probs, axis=1, kind="stable")[:, :top_k]
        predictions = []
        for row, name, ranked in zip(probs, names, order):
            top = [{"label": int(i), "class_name": self._class(int(i)), "score": float(row[i])} for i in ranked]
            predictions.append(
                Prediction(
                    label=top[0]["label"],
                    class_name=top[0]["class_name"],
                    score=top[0]["score"],
                    top_k=top,
                    depth=depth,
                    latency_ms=latency_ms,
                    path=name,
                )
            )
        return predictions

    def _class(self, label: int) -> str:
        return self.class_names[label] if label < len(self.class_names) else str(label)


def _load_results(results: str | Path | BenchResults | None, manifest: Manifest) -> BenchResults | None:
    if results is None:
        return None
    bench = results if isinstance(results, BenchResults) else read_results(results)
    check_results_match(bench, manifest, "the results" if isinstance(results, BenchResults) else str(results))
    return bench


def _runners(manifest: Manifest, profile: DeviceProfile, precision: str, use_selector: bool) -> dict[int, Any]:
    if use_selector:
        selector = next(manifest.select(kind="selector"), None)
        if selector is None:
            raise UsageError(f"{manifest.root} has no selector graph; export with --selector, or drop use_selector")
        if precision != "fp32" and not (precision == "bf16" and profile.backend == "openvino"):
            raise UsageError(
                "the selector graph is FP32 only (static INT8 does not reach inside If branches; OpenVINO runs it "
                "in bf16 too)"
            )
        runner = _make_runner(profile, manifest.file(selector), selector, precision)
        return {depth: runner for depth in selector.depths}
    from ..formats.profiles import BACKEND_PRECISIONS

    if precision not in BACKEND_PRECISIONS.get(profile.backend, (precision,)):
        others = [b for b, ps in BACKEND_PRECISIONS.items() if precision in ps and b != "torch"]
        raise UsageError(
            f"{profile.name} runs {profile.backend}, which has no {precision}; {precision} runs on "
            f"{' or '.join(others)} (choose such a --device)"
        )
    chosen = list(manifest.select(kind="depth"))
    runners = {}
    for artifact in chosen:
        if graph_for(artifact, precision, profile, chosen) and artifact.depth not in runners:
            runners[artifact.depth] = _make_runner(profile, manifest.file(artifact), artifact, precision)
    if not runners:
        available = sorted({a.precision for a in chosen})
        raise UsageError(
            f"{manifest.root} has no {precision} graph for {profile.name}; it has {available} (calibrate for int8)"
        )
    return runners


def _policy(
    depths: list[int],
    results: BenchResults | None,
    precision: str,
    backend: str,
    *,
    depth: int | None,
    slo_ms: float | None,
    budget_ms: float | None,
    stat: str,
) -> Any:
    if sum(x is not None for x in (depth, slo_ms, budget_ms)) > 1:
        raise UsageError("choose one of depth, slo_ms and budget_ms")
    if depth is not None:
        if depth not in depths:
            raise UsageError(f"depth {depth!r} is not loaded; loaded depths: {depths}")
        return FixedPolicy(depth)
    if budget_ms is not None or slo_ms is not None:
        if results is None:
            raise UsageError("a latency budget or SLO needs the bench results of these artifacts (results=...)")
        # the rows of the back-end and precision that will run (one results file may hold several back-ends)
        rows = [r for r in results.rows if r.precision == precision and r.backend == backend and r.depth in depths]
        if budget_ms is not None:
            return FixedPolicy(pick_depth(rows, budget_ms, stat=stat).depth)
        table = latency_table(rows, stat=stat, precision=precision)
        missing = sorted(set(depths) - set(table))
        if missing:
            raise UsageError(f"the results hold no {backend} {precision} batch-1 {stat} latency for depth(s) {missing}")
        return SLOController(table, slo_ms)  # type: ignore[arg-type]
    return FixedPolicy(depths[-1])
