"""Depth selection over measured results: the most accurate depth whose latency fits a budget.

Pure Python, no torch, no back-end: ``pick_depth(rows, budget_ms, stat="p90")``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .errors import DDNNError, UsageError

LATENCY_STATS = ("mean", "min", "p50", "p90", "p95", "p99", "max")


class NothingFitsError(DDNNError):
    """No measured depth fits the budget (or the accuracy floor)."""

    exit_code = 7


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
        return {"depth": self.depth, "blocks": self.blocks, "precision": self.precision, "backend": self.backend,
                "batch": self.batch, "latency_ms": self.latency_ms, "stat": self.stat, "top1": self.top1,
                "top5": self.top5, "budget_ms": self.budget_ms}


def _usable(rows: Iterable[Mapping[str, Any]], stat: str, batch: int | None) -> list[Mapping[str, Any]]:
    usable = []
    for row in rows:
        if row.get("status") != "ok" or not row.get("latency_ms"):
            continue
        if batch is not None and row.get("batch") != batch:
            continue
        if row["latency_ms"].get(stat) is None:
            continue
        usable.append(row)
    return usable


def check_budget(budget_ms: float, stat: str) -> None:
    if not budget_ms or budget_ms <= 0:
        raise UsageError(f"the budget must be a positive number of milliseconds, not {budget_ms}")
    if stat not in LATENCY_STATS:
        raise UsageError(f"unknown latency statistic {stat!r}; choose one of {', '.join(LATENCY_STATS)}")


def pick_depth(rows: Iterable[Mapping[str, Any]], budget_ms: float, *, stat: str = "p90",
               min_accuracy: float | None = None, batch: int | None = 1) -> Pick:
    """The row with the best top-1 whose ``latency_ms[stat]`` fits ``budget_ms``; ties go to the faster.

    Rows without accuracy rank below rows with it (then by speed). Raises ``NothingFitsError``
    naming what the fastest depth costs when nothing fits.
    """
    check_budget(budget_ms, stat)
    candidates = _usable(rows, stat, batch)
    if not candidates:
        raise NothingFitsError(f"the results hold no successful measurement at batch {batch}; run `bench` first")
    fits = [r for r in candidates if r["latency_ms"][stat] <= budget_ms]
    if min_accuracy is not None:
        fits = [r for r in fits if (r.get("accuracy") or {}).get("top1") is not None
                and r["accuracy"]["top1"] >= min_accuracy]
    if not fits:
        fastest = min(candidates, key=lambda r: r["latency_ms"][stat])
        floor = f" with top-1 >= {min_accuracy}%" if min_accuracy is not None else ""
        raise NothingFitsError(
            f"no depth fits {budget_ms:g} ms ({stat}){floor}: the fastest, depth {fastest['depth']} "
            f"({fastest.get('precision')}, {fastest.get('backend')}), takes {fastest['latency_ms'][stat]:.3f} ms")

    def key(row: Mapping[str, Any]) -> tuple[float, float]:
        top1 = (row.get("accuracy") or {}).get("top1")
        return (-(top1 if top1 is not None else float("-inf")), row["latency_ms"][stat])

    best = min(fits, key=key)
    accuracy = best.get("accuracy") or {}
    return Pick(depth=int(best["depth"]), blocks=best.get("blocks"), precision=str(best.get("precision")),
                backend=str(best.get("backend")), batch=int(best.get("batch", 1)),
                latency_ms=float(best["latency_ms"][stat]), stat=stat, top1=accuracy.get("top1"),
                top5=accuracy.get("top5"), budget_ms=float(budget_ms))
