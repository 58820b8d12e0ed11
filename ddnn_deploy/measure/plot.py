"""Accuracy against latency per depth, with the Pareto front, as a PNG beside the results."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..atomic import atomic_path
from ..errors import MissingDependencyError, optional_import
from ..formats.results import BenchResults, ResultRow

MARKERS = {"onnxruntime": "o", "openvino": "s", "tensorrt": "^", "torch": "D"}  # one per back-end; colour per precision


def pareto_front(points: list[tuple[float, float, Any]]) -> list[tuple[float, float, Any]]:
    """Points (latency, accuracy, label) not beaten by another that is both faster and more accurate."""
    front = []
    best = float("-inf")
    for latency, acc, label in sorted(points, key=lambda p: (p[0], -p[1])):
        if acc > best:
            front.append((latency, acc, label))
            best = acc
    return front


def pyplot(purpose: str) -> Any:
    """matplotlib's pyplot on the non-interactive Agg back-end, or None where matplotlib is not installed."""
    try:
        optional_import("matplotlib", purpose).use("Agg")
        return optional_import("matplotlib.pyplot")
    except MissingDependencyError:
        return None


def save_plot(plt: Any, fig: Any, ax: Any, path: str | Path, *, xlabel: str, title: str) -> Path:
    """Label accuracy against latency, then write the PNG atomically (temporary name, then rename)."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel("top-1 accuracy (%)")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return path


def plot_results(results: BenchResults, path: str | Path, *, stat: str = "p50", batch: int = 1) -> Path | None:
    """Write the plot; returns None when matplotlib is missing or nothing has both latency and accuracy."""
    plt = pyplot("the accuracy/latency plot")
    if plt is None:
        return None
    rows = [r for r in results.rows if r.status == "ok" and r.batch == batch and r.top1 is not None]
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    groups: dict[tuple[str, str, str], list[ResultRow]] = {}
    for row in rows:
        groups.setdefault((row.precision, row.backend, row.kind), []).append(row)
    points = []
    for (precision, backend, kind), members in sorted(groups.items()):
        xs = [m.latency(stat) for m in members]
        ys = [m.top1 for m in members]
        label = f"{backend} {precision}" + (" (selector)" if kind == "selector" else "")
        ax.scatter(xs, ys, label=label, marker=MARKERS.get(backend, "o"), zorder=3)
        for m, x, y in zip(members, xs, ys):
            ax.annotate(str(m.depth), (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
            points.append((x, y, m.depth))
    front = pareto_front(points)
    ax.plot([p[0] for p in front], [p[1] for p in front], "--", color="gray", zorder=2, label="Pareto front")
    xlabel, title = f"latency {stat} (ms), batch {batch}", f"{results.arch or ''} on {results.device_name}"
    return save_plot(plt, fig, ax, path, xlabel=xlabel, title=title)
