"""Bench results: ``results.json`` (format ``ddnn-deploy.bench``, version 1) and ``results.csv`` beside it.

``device`` (profile + environment), ``settings``, ``artifacts`` and ``rows``; each row is one
(depth, kind, precision, backend, batch) with ``latency_ms`` (mean/std/min/p50/p90/p95/p99/max/n/cv),
``throughput`` (images/s), ``accuracy`` (``top1``/``top5`` in percent, ``n``), ``memory_mb``, ``status``
(ok / error / skipped), ``error`` and ``samples_ms`` (the raw latency samples).
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any, Dict, Iterable, List, Literal, Mapping, Optional, Union

from pydantic import model_validator

from ..atomic import write_text_atomic
from ..errors import ResultsError, UsageError
from ._schema import PositiveInt, Schema, read_json_file, validate

FORMAT = "ddnn-deploy.bench"
VERSION = 1
LATENCY_STATS = ("mean", "min", "p50", "p90", "p95", "p99", "max")
CSV_COLUMNS = [
    "depth",
    "blocks",
    "kind",
    "precision",
    "backend",
    "batch",
    "status",
    "mean_ms",
    "std_ms",
    "min_ms",
    "p50_ms",
    "p90_ms",
    "p95_ms",
    "p99_ms",
    "max_ms",
    "n",
    "cv",
    "throughput",
    "top1",
    "top5",
    "peak_rss_mb",
    "error",
]


class LatencyStats(Schema):
    mean: float
    std: float
    min: float
    p50: float
    p90: float
    p95: float
    p99: float
    max: float
    n: PositiveInt
    cv: float = 0.0

    @model_validator(mode="after")
    def _ordered(self) -> LatencyStats:
        if self.min < 0 or not (self.min <= self.p50 <= self.p90 <= self.p95 <= self.p99 <= self.max):
            raise ValueError("latencies must satisfy 0 <= min <= p50 <= p90 <= p95 <= p99 <= max")
        return self


class Accuracy(Schema):
    top1: Optional[float] = None
    top5: Optional[float] = None
    n: int = 0

    @model_validator(mode="after")
    def _percent(self) -> Accuracy:
        for value in (self.top1, self.top5):
            if value is not None and not 0 <= value <= 100:
                raise ValueError("top1 and top5 are percentages between 0 and 100")
        return self


class ResultRow(Schema):
    depth: int
    blocks: Optional[List[int]] = None
    kind: str = "depth"
    precision: str
    backend: str
    batch: PositiveInt
    status: Literal["ok", "error", "skipped"]
    error: Optional[str] = None
    latency_ms: Optional[LatencyStats] = None
    # GPU rows: the device's own time per call (CUDA events, or onnxruntime with inputs already on the device),
    # beside latency_ms, which is end to end with the host copies (what an application sees)
    gpu_compute_ms: Optional[LatencyStats] = None
    throughput: Optional[float] = None
    accuracy: Optional[Accuracy] = None
    memory_mb: Optional[Dict[str, Optional[float]]] = None
    samples_ms: Optional[List[float]] = None
    # joules per call and per image and mean watts over the timed loop (RAPL, NVML or tegrastats), or
    # {"unavailable": why}
    energy: Optional[Dict[str, Any]] = None
    runner: Optional[Dict[str, Any]] = None
    warning: Optional[str] = None

    @model_validator(mode="after")
    def _ok_has_latency(self) -> ResultRow:
        if self.status == "ok" and self.latency_ms is None:
            raise ValueError("a row with status 'ok' needs latency_ms")
        return self

    @property
    def top1(self) -> Optional[float]:
        return self.accuracy.top1 if self.accuracy is not None else None

    def latency(self, stat: str) -> Optional[float]:
        return getattr(self.latency_ms, stat, None) if self.latency_ms is not None else None


class BenchResults(Schema):
    format: Literal["ddnn-deploy.bench"] = FORMAT
    version: Literal[1] = VERSION
    tool_version: Optional[str] = None
    created: Optional[str] = None
    arch: Optional[str] = None
    device: Dict[str, Any]
    settings: Dict[str, Any]
    artifacts: Dict[str, Any]
    rows: List[ResultRow]

    @property
    def device_name(self) -> str:
        return str(self.device.get("profile", {}).get("name", "?"))


RowsLike = Union[BenchResults, Iterable[Union[ResultRow, Mapping[str, Any]]]]


def as_rows(rows: RowsLike, *, where: str = "rows") -> List[ResultRow]:
    """Typed rows from results, typed rows or plain dicts (as in ``results.json``); bad rows raise one line."""
    if isinstance(rows, BenchResults):
        return list(rows.rows)
    if isinstance(rows, (str, bytes, Mapping)) or not isinstance(rows, Iterable):
        raise UsageError(f"{where} must be BenchResults or a list of result rows, not {type(rows).__name__}")
    typed = []
    for index, row in enumerate(rows):
        if isinstance(row, ResultRow):
            typed.append(row)
        elif isinstance(row, Mapping):
            typed.append(validate(ResultRow, dict(row), where=f"{where}[{index}]", error=UsageError))
        else:
            raise UsageError(f"{where}[{index}] must be a result row (a dict), not {type(row).__name__}")
    return typed


def to_csv(rows: Iterable[ResultRow]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, CSV_COLUMNS)
    writer.writeheader()
    for row in rows:
        lat = row.latency_ms.model_dump() if row.latency_ms else {}
        acc = row.accuracy or Accuracy()
        peak = (row.memory_mb or {}).get("peak_rss_mb")
        writer.writerow(
            {
                "depth": row.depth,
                "blocks": "-".join(map(str, row.blocks or [])),
                "kind": row.kind,
                "precision": row.precision,
                "backend": row.backend,
                "batch": row.batch,
                "status": row.status,
                **{
                    f"{k}_ms": (f"{lat[k]:.4f}" if k in lat else "")
                    for k in ("mean", "std", "min", "p50", "p90", "p95", "p99", "max")
                },
                "n": lat.get("n", ""),
                "cv": f"{lat['cv']:.4f}" if "cv" in lat else "",
                "throughput": f"{row.throughput:.2f}" if row.throughput else "",
                "top1": f"{acc.top1:.2f}" if acc.top1 is not None else "",
                "top5": f"{acc.top5:.2f}" if acc.top5 is not None else "",
                "peak_rss_mb": f"{peak:.1f}" if peak else "",
                "error": row.error or "",
            }
        )
    return buffer.getvalue()


def write_results(results: Union[BenchResults, Dict[str, Any]], path: Union[str, Path]) -> Path:
    """Write ``results.json`` and the CSV beside it, each atomically."""
    path = Path(path)
    if path.is_dir():
        raise UsageError(f"--results {path} is a directory; give a file name such as {path / 'results.json'}")
    if not isinstance(results, BenchResults):
        results = validate(
            BenchResults,
            results,
            where="the results being written",
            error=ResultsError,
            fix="this is a bug in ddnn-deploy",
        )
    write_text_atomic(path, to_json_text(results))
    write_text_atomic(path.with_suffix(".csv"), to_csv(results.rows))
    return path


def to_json_text(results: BenchResults) -> str:
    """The text of ``results.json``."""
    return json.dumps(results.to_json_dict(), indent=1) + "\n"


def parse_results(data: Any, *, where: str = "results.json") -> BenchResults:
    return validate(BenchResults, data, where=where, error=ResultsError, fix="run `ddnn-deploy bench` again")


def read_results(path: Union[str, Path]) -> BenchResults:
    """A results file, validated; one line naming the file and the field otherwise."""
    path = Path(path)
    if not path.is_file():
        raise ResultsError(f"results file {path} does not exist; run `ddnn-deploy bench` first")
    data = read_json_file(
        path,
        fmt=FORMAT,
        version=VERSION,
        what="ddnn-deploy bench results file",
        fix="run `ddnn-deploy bench` again to write it",
        error=ResultsError,
    )
    return parse_results(data, where=str(path))
