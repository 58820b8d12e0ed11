"""Timing: warm-up by count and by time, then at least N iterations and at least T seconds.

Returns the latency distribution in milliseconds with the raw samples. Nothing here knows about
back-ends: it times a zero-argument callable.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from ..formats.profiles import TimingSettings


def latency_stats(samples_ms: list[float] | np.ndarray) -> dict[str, float]:
    s = np.asarray(samples_ms, dtype=np.float64)
    mean = float(s.mean())
    return {
        "mean": mean,
        "std": float(s.std(ddof=1)) if len(s) > 1 else 0.0,
        "min": float(s.min()),
        "p50": float(np.percentile(s, 50)),
        "p90": float(np.percentile(s, 90)),
        "p95": float(np.percentile(s, 95)),
        "p99": float(np.percentile(s, 99)),
        "max": float(s.max()),
        "n": int(len(s)),
        "cv": float(s.std(ddof=1) / mean) if len(s) > 1 and mean > 0 else 0.0,
    }


def measure(
    run: Callable[[], object],
    settings: TimingSettings,
    *,
    on_start: Callable[[], object] | None = None,
    on_stop: Callable[[], object] | None = None,
) -> tuple[dict[str, float], list[float]]:
    """Warm up, then time ``run`` until both the iteration and the time minimums are met. ``on_start`` and
    ``on_stop`` run right before and after the timed loop (an energy meter's readings), outside every sample."""
    clock = time.perf_counter
    start = clock()
    done = 0
    while done < settings.warmup_iters or clock() - start < settings.warmup_seconds:
        run()
        done += 1
    samples: list[float] = []
    if on_start is not None:
        on_start()
    start = clock()
    while len(samples) < settings.max_iters and (
        len(samples) < settings.min_iters or clock() - start < settings.min_seconds
    ):
        t0 = clock()
        run()
        samples.append((clock() - t0) * 1e3)
    if on_stop is not None:
        on_stop()
    return latency_stats(samples), samples
