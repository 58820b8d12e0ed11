"""Bench results: ``results.json`` (format ``ddnn-deploy.bench``, version 1) and a CSV beside it.

Layout (DESIGN.md): ``format``, ``version``, ``device`` (profile + environment), ``settings``,
``artifacts``, ``rows``; each row: ``depth``, ``blocks``, ``kind``, ``precision``, ``backend``, ``batch``,
``latency_ms`` (mean/std/min/p50/p90/p95/p99/max/n/cv), ``throughput`` (images/s), ``accuracy``
(``top1``/``top5`` in percent, ``n``), ``memory_mb``, ``status`` (ok / error / skipped), ``error``,
``samples_ms`` (the raw latency samples).
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from ..atomic import read_versioned_json, write_text_atomic
from ..errors import DDNNError, UsageError

FORMAT = "ddnn-deploy.bench"
VERSION = 1
CSV_COLUMNS = ["depth", "blocks", "kind", "precision", "backend", "batch", "status", "mean_ms", "std_ms", "min_ms",
               "p50_ms", "p90_ms", "p95_ms", "p99_ms", "max_ms", "n", "cv", "throughput", "top1", "top5",
               "peak_rss_mb", "error"]


class ResultsError(DDNNError):
    exit_code = 3


def to_csv(rows: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, CSV_COLUMNS)
    writer.writeheader()
    for row in rows:
        lat = row.get("latency_ms") or {}
        acc = row.get("accuracy") or {}
        mem = row.get("memory_mb") or {}
        writer.writerow({
            "depth": row["depth"], "blocks": "-".join(map(str, row.get("blocks") or [])), "kind": row.get("kind"),
            "precision": row["precision"], "backend": row["backend"], "batch": row["batch"], "status": row["status"],
            **{f"{k}_ms": (f"{lat[k]:.4f}" if k in lat else "") for k in
               ("mean", "std", "min", "p50", "p90", "p95", "p99", "max")},
            "n": lat.get("n", ""), "cv": f"{lat['cv']:.4f}" if "cv" in lat else "",
            "throughput": f"{row['throughput']:.2f}" if row.get("throughput") else "",
            "top1": f"{acc['top1']:.2f}" if acc.get("top1") is not None else "",
            "top5": f"{acc['top5']:.2f}" if acc.get("top5") is not None else "",
            "peak_rss_mb": f"{mem['peak_rss_mb']:.1f}" if mem.get("peak_rss_mb") else "",
            "error": row.get("error") or ""})
    return buffer.getvalue()


def save_results(results: dict[str, Any], path: str | Path) -> Path:
    path = Path(path)
    if path.is_dir():
        raise UsageError(f"--results {path} is a directory; give a file name such as {path / 'results.json'}")
    write_text_atomic(path, json.dumps(results, indent=1) + "\n")
    write_text_atomic(path.with_suffix(".csv"), to_csv(results["rows"]))
    return path


def load_results(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ResultsError(f"results file {path} does not exist; run `ddnn-deploy bench` first")
    data = read_versioned_json(path, fmt=FORMAT, version=VERSION, what="ddnn-deploy bench results file",
                               fix="run `ddnn-deploy bench` again to write it", error=ResultsError)
    if not isinstance(data.get("rows"), list):
        raise ResultsError(f"{path} has no rows")
    return data
