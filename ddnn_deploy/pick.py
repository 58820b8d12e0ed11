"""Depth selection over measured results: the most accurate depth whose latency fits a budget.

Pure Python, no torch, no back-end: ``pick_depth(results_or_rows, budget_ms, stat="p90")``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from .checks import is_finite, number
from .errors import NothingFitsError, UsageError
from .formats.results import LATENCY_STATS, ResultRow, RowsLike, as_rows

__all__ = ["LATENCY_STATS", "NothingFitsError", "Pick", "check_budget", "pick_depth"]


@dataclass(frozen=True)
class Pick:
    depth: int
    blocks: list[int] | None
    precision: str
    backend: str
    batch: int
    latency_ms: float
    stat: str
    top1: float | None
    top5: float | None
    budget_ms: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_budget(budget_ms: float, stat: str) -> None:
    if not is_finite(budget_ms) or not budget_ms > 0:
        raise UsageError(f"the budget must be a positive number of milliseconds, not {budget_ms!r}")
    if stat not in LATENCY_STATS:
        raise UsageError(f"unknown latency statistic {stat!r}; choose one of {', '.join(LATENCY_STATS)}")


def _usable(rows: list[ResultRow], stat: str, batch: int | None) -> list[ResultRow]:
    """Successful rows at ``batch`` whose latency (and top-1, when measured) are finite: a NaN never wins."""
    return [
        r
        for r in rows
        if r.status == "ok"
        and is_finite(r.latency(stat))
        and (r.top1 is None or is_finite(r.top1))
        and (batch is None or r.batch == batch)
    ]


def pick_depth(
    rows: RowsLike, budget_ms: float, *, stat: str = "p90", min_accuracy: float | None = None, batch: int | None = 1
) -> Pick:
    """The row with the best top-1 whose ``latency_ms[stat]`` fits ``budget_ms``; ties go to the faster.

    ``rows`` is ``BenchResults``, or its rows (typed, or dicts as in ``results.json``). Rows without
    accuracy rank below rows with it (then by speed). Raises ``NothingFitsError`` naming what the
    fastest depth costs when nothing fits.
    """
    check_budget(budget_ms, stat)
    if min_accuracy is not None:
        number("--min-accuracy", min_accuracy, at_least=0, at_most=100)
    if batch is not None:
        number("--batch", batch, at_least=1, integer=True)
    candidates = _usable(as_rows(rows), stat, batch)
    if not candidates:
        raise NothingFitsError(f"the results hold no successful measurement at batch {batch}; run `bench` first")
    fits = [r for r in candidates if r.latency(stat) <= budget_ms]  # type: ignore[operator]
    if min_accuracy is not None:
        fits = [r for r in fits if r.top1 is not None and r.top1 >= min_accuracy]
    if not fits:
        fastest = min(candidates, key=lambda r: r.latency(stat))  # type: ignore[arg-type,return-value]
        floor = f" with top-1 >= {min_accuracy}%" if min_accuracy is not None else ""
        raise NothingFitsError(
            f"no depth fits {budget_ms:g} ms ({stat}){floor}: the fastest, depth {fastest.depth} "
            f"({fastest.precision}, {fastest.backend}), takes {fastest.latency(stat):.3f} ms"
        )
    # rows with accuracy rank by it (ties to the faster); without accuracy the deeper depth that fits is the better
    # guess of the more accurate one (a DDNN's deeper sub-nets are trained to be), not the faster
    best = min(
        fits,
        key=lambda r: (
            -(r.top1 if r.top1 is not None else float("-inf")),
            -r.depth if r.top1 is None else 0,
            r.latency(stat),
        ),
    )
    accuracy = best.accuracy
    return Pick(
        depth=best.depth,
        blocks=best.blocks,
        precision=best.precision,
        backend=best.backend,
        batch=best.batch,
        latency_ms=float(best.latency(stat)),
        stat=stat,  # type: ignore[arg-type]
        top1=accuracy.top1 if accuracy else None,
        top5=accuracy.top5 if accuracy else None,
        budget_ms=float(budget_ms),
    )
