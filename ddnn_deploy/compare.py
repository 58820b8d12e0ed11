"""``compare``: the same depths side by side across devices or runs (latency ratio to the first file, accuracy
difference, throughput), and one plot with each file's accuracy-latency Pareto front."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .errors import ResultsError, UsageError
from .formats.results import LATENCY_STATS, BenchResults, read_results

Key = tuple  # (depth, kind, backend, precision)


def _label(path: Path, results: BenchResults, taken: set[str]) -> str:
    label = path.stem
    if label in taken:  # the same file name from two folders: tell them apart by host
        label = f"{label}@{results.device.get('environment', {}).get('host')}"
    while label in taken:
        label += "'"
    taken.add(label)
    return label


def load(paths: Sequence[str | Path], allow_different_models: bool = False) -> list[tuple[str, BenchResults]]:
    if len(paths) < 2:
        raise UsageError("compare needs at least two results files")
    taken: set[str] = set()
    loaded = [(Path(p), read_results(p)) for p in paths]
    models = {r.artifacts.get("checkpoint_sha256") for _, r in loaded}
    if len(models) > 1 and not allow_different_models:
        raise ResultsError(
            "these results were measured on different models (checkpoint sha256 differs): the same depth number "
            "is not the same network; pass --allow-different-models to compare them anyway"
        )
    return [(_label(path, results, taken), results) for path, results in loaded]


def compare_results(
    paths: Sequence[str | Path], *, stat: str = "p50", batch: int = 1, allow_different_models: bool = False
) -> dict[str, Any]:
    """``{"stat", "batch", "files": [...], "rows": [{"depth", "kind", "backend", "precision", "results":
    [{"file", "latency_ms", "top1", "throughput", "latency_ratio", "top1_diff"}]}]}``; ratios and differences
    are against the first file that has the row."""
    if stat not in LATENCY_STATS:
        raise UsageError(f"--stat must be one of {', '.join(LATENCY_STATS)}")
    files = load(paths, allow_different_models)
    table: dict[Key, dict[str, Any]] = {}
    for label, results in files:
        for row in results.rows:
            if row.status != "ok" or row.batch != batch:
                continue
            key = (row.depth, row.kind, row.backend, row.precision)
            table.setdefault(key, {})[label] = row
    rows = []
    for key in sorted(table):
        cells, first = [], None
        for label, _ in files:
            row = table[key].get(label)
            if row is None:
                cells.append({"file": label, "latency_ms": None, "top1": None, "throughput": None,
                              "latency_ratio": None, "top1_diff": None})  # fmt: skip
                continue
            first = first or row
            latency = row.latency(stat)
            cells.append({
                "file": label,
                "latency_ms": latency,
                "top1": row.top1,
                "throughput": row.throughput,
                "latency_ratio": latency / first.latency(stat) if latency and first.latency(stat) else None,
                "top1_diff": row.top1 - first.top1 if row.top1 is not None and first.top1 is not None else None,
            })  # fmt: skip
        rows.append(dict(zip(("depth", "kind", "backend", "precision"), key), results=cells))
    if not rows:
        raise ResultsError(f"no successful batch-{batch} rows in these results to compare")
    return {"stat": stat, "batch": batch, "files": [label for label, _ in files], "rows": rows}


def plot_comparison(comparison: dict[str, Any], path: str | Path) -> Path | None:
    """Accuracy against latency, one colour and one Pareto front per file; None without matplotlib or accuracy."""
    from .measure.plot import pareto_front, pyplot, save_plot

    plt = pyplot("the comparison plot")
    if plt is None:
        return None
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    drawn = False
    for index, label in enumerate(comparison["files"]):
        points = [(c["latency_ms"], c["top1"], r["depth"]) for r in comparison["rows"] for c in r["results"]
                  if c["file"] == label and c["latency_ms"] is not None and c["top1"] is not None]  # fmt: skip
        if not points:
            continue
        drawn = True
        colour = f"C{index % 10}"
        ax.scatter([p[0] for p in points], [p[1] for p in points], color=colour, label=label, zorder=3)
        front = pareto_front(points)
        ax.plot([p[0] for p in front], [p[1] for p in front], "--", color=colour, zorder=2)
    if not drawn:
        plt.close(fig)
        return None
    xlabel = f"latency {comparison['stat']} (ms), batch {comparison['batch']}"
    return save_plot(plt, fig, ax, path, xlabel=xlabel, title="accuracy against latency, Pareto front per results file")
