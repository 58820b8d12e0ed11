"""Depth policies: which depth serves the next request.

- ``FixedPolicy``: always one depth.
- ``budget_policy``: the depth ``pick`` chooses for a latency budget from a results file (fixed afterwards).
- ``SLOController``: adaptive. It watches the end-to-end latency of recent requests (queueing included),
  steps DOWN when the window's tail (p99 by default) nears the SLO and back UP one depth at a time after
  sustained slack, with hysteresis (different thresholds down and up) and a cool-down after each switch.
  It never moves to a depth whose measured latency, scaled by the slowdown it observes now, cannot fit.
  Given each request's service time too (the server passes it), it also watches the LOAD: the request rate
  times each depth's time per request as the device runs now. A device that slows shows in the next few
  calls' service times, long before the queue it will build shows in the latency tail, so the controller
  steps down before the requests queue past the SLO instead of after (a queue near saturation has a long
  tail whatever the depth's own latency).

A controller is a pure function of its observations and its clock (injectable): the tests drive it with
synthetic traces and a fake clock, no sleeps.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from ..checks import is_finite
from ..errors import UsageError


class FixedPolicy:
    """One depth, whatever happens."""

    name = "fixed"

    def __init__(self, depth: int) -> None:
        self._depth = int(depth)

    @property
    def depth(self) -> int:
        return self._depth

    def observe(self, latency_ms: float, depth: int, service_ms: float | None = None, images: int = 1) -> None:
        """Fixed: observations change nothing."""

    def arrived(self, images: int = 1) -> None:
        """Fixed: arrivals change nothing."""

    def describe(self) -> dict:
        return {"policy": self.name, "depth": self._depth}


@dataclass(frozen=True)
class ControllerSettings:
    """``down_at``: step down when the tail exceeds this fraction of the SLO; ``target``: the fraction a new
    (shallower) depth must be predicted to stay under; ``up_at``: step up only when the next deeper depth is
    predicted under this fraction (the hysteresis gap) for ``up_after_s``; ``cooldown_s`` after any switch."""

    quantile: float = 0.99
    window: int = 64
    window_s: float = 5.0  # the tail is taken over the last ``window`` requests no older than this
    min_samples: int = 6
    down_at: float = 0.85
    target: float = 0.7
    up_at: float = 0.6
    up_after_s: float = 2.0
    cooldown_s: float = 0.5
    # the load (a fraction of the device's time busy with inference), when service times are observed:
    # step down above ``load_down``, to a depth predicted at or under ``load_target``; up only at or under
    # ``load_up``. The rate is counted over ``rate_window_s``, the device's speed from the last ``speed_calls``.
    load_down: float = 0.85
    load_target: float = 0.75
    load_up: float = 0.65
    rate_window_s: float = 10.0
    speed_calls: int = 5

    def __post_init__(self) -> None:
        if not 0 < self.quantile <= 1 or not 0 < self.up_at < self.target <= self.down_at <= 1:
            raise UsageError("controller settings need 0 < up_at < target <= down_at <= 1 and 0 < quantile <= 1")
        if not 0 < self.load_up < self.load_target <= self.load_down <= 1:
            raise UsageError("controller settings need 0 < load_up < load_target <= load_down <= 1")
        if not self.rate_window_s > 0 or not self.window_s > 0 or self.speed_calls < 1:
            raise UsageError("controller settings need rate_window_s > 0, window_s > 0 and speed_calls >= 1")
        if self.window < self.min_samples or self.min_samples < 1:
            raise UsageError("controller settings need 1 <= min_samples <= window")


class SLOController:
    """Adaptive depth under a latency SLO. ``table_ms``: each depth's measured latency at the tail statistic
    (e.g. the bench's p99 at batch 1), the scale against which the observed slowdown is measured."""

    name = "adaptive"

    def __init__(
        self,
        table_ms: Mapping[int, float],
        slo_ms: float,
        *,
        settings: ControllerSettings | None = None,
        clock: Callable[[], float] = time.monotonic,
        start_depth: int | None = None,
    ) -> None:
        if not is_finite(slo_ms) or not slo_ms > 0:
            raise UsageError(f"the SLO must be a positive number of milliseconds, not {slo_ms!r}")
        if not table_ms or any(not is_finite(v) or not v > 0 for v in table_ms.values()):
            raise UsageError("the adaptive policy needs a measured latency (> 0) for every depth")
        self.table = {int(d): float(v) for d, v in sorted(table_ms.items())}
        self.depths: list[int] = sorted(self.table)
        self.slo_ms = float(slo_ms)
        self.settings = settings or ControllerSettings()
        self.clock = clock
        self.switches = 0
        fitting = [d for d in self.depths if self.table[d] <= self.settings.target * self.slo_ms]
        self._depth = start_depth if start_depth is not None else (fitting[-1] if fitting else self.depths[0])
        self._samples: deque[tuple[float, float]] = deque(maxlen=self.settings.window)  # (finished, latency)
        # the rate: (when, images) of each arrival the server reports (refused ones included), else of each
        # finished request (in-process use)
        self._arrivals = _Counts(self.settings.rate_window_s)
        self._finished = _Counts(self.settings.rate_window_s)
        self._speed: deque[float] = deque(maxlen=self.settings.speed_calls)  # call time per image / table
        self._carried: float | None = None  # the slowdown that decided the last switch
        self._last_switch = -float("inf")
        self._slack_since: float | None = None

    @property
    def depth(self) -> int:
        return self._depth

    def describe(self) -> dict:
        return {"policy": self.name, "depth": self._depth, "slo_ms": self.slo_ms, "switches": self.switches}

    def slowdown(self) -> float | None:
        """Observed tail at the current depth / its measured tail (queueing included, so about 1 on the bench's
        machine at light load and 2 or more at half speed). Right after a switch (too few samples at the new
        depth), the larger of the slowdown that decided the switch and the service-time ``speed``."""
        return self._slowdown(self.tail() if len(self._samples) >= self.settings.min_samples else None)

    def _slowdown(self, tail: float | None) -> float | None:
        if tail is not None:
            return tail / self.table[self._depth]
        known = [x for x in (self._carried, self.speed()) if x is not None]
        return max(known) if known else None

    def speed(self) -> float | None:
        """The device's slowdown from the recent calls (median of time per image / table): unlike the latency
        tail it holds no queueing, and it carries over a switch (each call is scaled by its own depth). Below 1
        when the table is a tail statistic or calls are batched: it measures time per image as served."""
        return _quantile(self._speed, 0.5) if self._speed else None

    def arrived(self, images: int = 1) -> None:
        """A request of ``images`` reached the server (called before it may be refused): the rate then counts
        arrivals, which a saturated or refusing server cannot hide."""
        self._arrivals.add(self.clock(), images)

    def rate(self, now: float) -> float | None:
        """Images per second over the last ``rate_window_s``: arrived, when the server reports arrivals, else
        finished (the arrival rate unless the device is saturated, when it is the device's capacity: a load
        near 1 either way). None before 2 s of them."""
        events = self._arrivals if self._arrivals.trim(now) else self._finished
        events.trim(now)
        span = events.span(now)
        if events.count < self.settings.min_samples or span < min(2.0, self.settings.rate_window_s):
            return None
        return (events.images - events.first_images) / span

    def load(self, depth: int, now: float) -> float | None:
        """The predicted fraction of the device's time busy at ``depth``: rate x its time per image now."""
        rate, speed = self.rate(now), self.speed()
        if rate is None or speed is None:
            return None
        return rate * self.table[depth] * speed / 1e3

    def tail(self) -> float:
        return _quantile([latency for _, latency in self._samples], self.settings.quantile)

    def predicted(self, depth: int, slowdown: float) -> float:
        return self.table[depth] * slowdown

    def observe(self, latency_ms: float, depth: int, service_ms: float | None = None, images: int = 1) -> None:
        """One finished request of ``images``: its end-to-end latency, the depth that served it and, once per
        inference call, the call's time per image (``service_ms``: no queueing; None for the call's other
        requests)."""
        now = self.clock()
        self._finished.add(now, images)
        if service_ms is not None and is_finite(service_ms) and service_ms > 0 and depth in self.table:
            self._speed.append(float(service_ms) / self.table[depth])
        if depth != self._depth:
            return  # its latency was served before the last switch: says nothing about the current depth
        self._samples.append((now, float(latency_ms)))
        while len(self._samples) > self.settings.min_samples and now - self._samples[0][0] > self.settings.window_s:
            self._samples.popleft()  # a slow spell is forgotten once it is over (the newest few always count)
        enough = len(self._samples) >= self.settings.min_samples  # else only the load may move it (down)
        tail = self.tail() if enough else None  # once per request: it sorts the window
        slowdown = self._slowdown(tail)
        if slowdown is None or now - self._last_switch < self.settings.cooldown_s:
            return
        load = self.load(self._depth, now)
        tail_high = tail is not None and tail > self.settings.down_at * self.slo_ms and not self._futile(now, tail)
        if tail_high or (load is not None and load > self.settings.load_down):
            self._step_down(slowdown, now)
        elif enough:
            self._maybe_step_up(slowdown, now)
        else:
            self._slack_since = None  # slack is only seen with enough samples

    def _inference_tail(self, depth: int, speed: float, now: float) -> float:
        """A pessimistic tail (at ``quantile``) of the part of a request's latency spent on inference at
        ``depth``: its own call, plus waiting behind others as in a single-server queue with exponential
        service, ``service x (1 + -ln(1 - q) x load / (1 - load))`` (the M/M/1 tail when loaded; deterministic
        service waits about half as long)."""
        load = min(self.load(depth, now) or 0.0, 0.99)
        waiting = -math.log(1.0 - min(self.settings.quantile, 0.999)) * load / (1.0 - load)
        return self.table[depth] * speed * (1.0 + waiting)

    def _futile(self, now: float, tail: float) -> bool:
        """Whether no depth could bring the tail under the SLO because most of the latency is not the model's
        (the HTTP stack, the network, a client): the tail minus even a pessimistic inference share, plus the
        shallowest depth's share, still over ``down_at``. Stepping down would then give up accuracy for
        nothing. Needs service times; without them, never. Before 2 s of requests the load is taken as 0."""
        speed = self.speed()
        if speed is None or self._depth == self.depths[0]:
            return False
        best = tail - self._inference_tail(self._depth, speed, now)
        return best + self._inference_tail(self.depths[0], speed, now) > self.settings.down_at * self.slo_ms

    def _fits(self, depth: int, slowdown: float, now: float, latency_at: float, load_at: float) -> bool:
        load = self.load(depth, now)
        return self.predicted(depth, slowdown) <= latency_at * self.slo_ms and (load is None or load <= load_at)

    def _step_down(self, slowdown: float, now: float) -> None:
        shallower = [d for d in self.depths if d < self._depth]
        if not shallower:
            return
        fits = [d for d in shallower if self._fits(d, slowdown, now, self.settings.target, self.settings.load_target)]
        self._switch(fits[-1] if fits else shallower[0], now, slowdown)  # the deepest that fits, else shallowest

    def _maybe_step_up(self, slowdown: float, now: float) -> None:
        deeper = [d for d in self.depths if d > self._depth]
        if not deeper or not self._fits(deeper[0], slowdown, now, self.settings.up_at, self.settings.load_up):
            self._slack_since = None
            return
        if self._slack_since is None:
            self._slack_since = now
        elif now - self._slack_since >= self.settings.up_after_s:
            self._switch(deeper[0], now, slowdown)

    def _switch(self, depth: int, now: float, slowdown: float) -> None:
        self._carried = slowdown
        self._depth = depth
        self._samples.clear()
        self._last_switch = now
        self._slack_since = None
        self.switches += 1


def _quantile(values: Sequence[float] | deque[float], q: float) -> float:
    """numpy's default (linear) quantile of a few values, in plain Python: a tenth of np.quantile's cost on the
    64 samples the controller keeps, paid on every request."""
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


class _Counts:
    """(when, images) events over the last ``seconds``, with their image total kept as they come and go: the
    rate costs O(1) per request, not a pass over every request of the window (thousands at a high rate)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.events: deque[tuple[float, int]] = deque()
        self.images = 0

    @property
    def count(self) -> int:
        return len(self.events)

    @property
    def first_images(self) -> int:
        return self.events[0][1]

    def add(self, now: float, images: int) -> None:
        self.events.append((now, int(images)))
        self.images += int(images)
        self.trim(now)

    def trim(self, now: float) -> int:
        """Drop what is older than the window; how many events are left."""
        while self.events and now - self.events[0][0] > self.seconds:
            self.images -= self.events.popleft()[1]
        return len(self.events)

    def span(self, now: float) -> float:
        return now - self.events[0][0] if self.events else 0.0


def latency_table(
    rows: Sequence, *, stat: str = "p99", batch: int = 1, precision: str = "fp32", kind: str = "depth"
) -> dict[int, float]:
    """depth -> measured latency from bench rows (typed ``ResultRow``s) of one precision at one batch size."""
    table = {}
    for row in rows:
        if row.status == "ok" and row.batch == batch and row.precision == precision and row.kind == kind:
            value = row.latency(stat)
            if value is not None:
                table[row.depth] = float(value)
    return table
