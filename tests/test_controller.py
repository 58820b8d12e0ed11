"""The adaptive SLO controller on synthetic latency traces with a fake clock: no sleeps, no server."""

from __future__ import annotations

import numpy as np
import pytest

from ddnn_deploy.errors import UsageError
from ddnn_deploy.runtime.policy import ControllerSettings, FixedPolicy, SLOController

TABLE = {8: 0.2, 14: 0.4, 20: 0.6}  # measured p99 per depth (ms) on the bench machine
SLO = 1.0


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def run(trace, *, rate_hz=200.0, seed=0, slo=SLO, table=TABLE, settings=None):
    """Feed the controller requests at ``rate_hz``; ``trace(t)`` gives the slowdown factor at time t.
    Returns (times, depths, latencies) per request."""
    clock = Clock()
    ctl = SLOController(table, slo, clock=clock, settings=settings)
    rng = np.random.default_rng(seed)
    times, depths, latencies = [], [], []
    for step in range(int(trace.duration * rate_hz)):
        clock.now = step / rate_hz
        depth = ctl.depth
        latency = table[depth] * trace(clock.now) * rng.uniform(0.85, 1.0)
        ctl.observe(latency, depth)
        times.append(clock.now)
        depths.append(depth)
        latencies.append(latency)
    return np.array(times), np.array(depths), np.array(latencies), ctl


class Step:
    """Slowdown ``factor`` between ``start`` and ``stop`` seconds, 1.0 otherwise."""

    def __init__(self, factor, start, stop, duration):
        self.factor, self.start, self.stop, self.duration = factor, start, stop, duration

    def __call__(self, t):
        return self.factor if self.start <= t < self.stop else 1.0


def test_starts_at_the_deepest_depth_that_fits_and_stays_there_without_pressure():
    times, depths, lat, ctl = run(Step(1.0, 0, 0, 10.0))
    assert set(depths) == {20} and ctl.switches == 0


def test_a_step_slowdown_is_absorbed_within_two_seconds_and_full_depth_returns_after():
    # a neighbour steals half the CPU at t=5 s (x2.5 slower) and leaves at t=15 s
    times, depths, lat, ctl = run(Step(2.5, 5.0, 15.0, 30.0))
    during = (times >= 7.0) & (times < 15.0)
    assert set(depths[during]) <= {8}  # 0.6*2.5 = 1.5 and 0.4*2.5 = 1.0 do not fit 0.7 ms: only depth 8 does
    first_safe = times[(times >= 5.0) & (depths == 8)][0]
    assert first_safe - 5.0 < 2.0
    over = lat[(times >= 5.0 + 2.0)] > SLO
    assert over.mean() <= 0.01
    assert depths[-1] == 20 and depths[times >= 25.0].min() == 20  # back at full depth after recovery
    assert ctl.switches <= 4  # 20 -> 8 once, then 8 -> 14 -> 20: no oscillation


def test_never_steps_up_to_a_depth_the_table_says_cannot_fit():
    # slowed x1.6 for good: depth 20 would take 0.96 ms (> up_at * SLO) so it must never come back
    times, depths, lat, ctl = run(Step(1.6, 2.0, 1e9, 40.0))
    assert depths[times > 5.0].max() <= 14
    assert 20 not in set(depths[times > 5.0])


def test_a_slow_ramp_converges_without_oscillating():
    class Ramp:
        duration = 40.0

        def __call__(self, t):
            return 1.0 + min(t, 20.0) / 20.0 * 1.5  # 1x -> 2.5x over 20 s, then flat

    times, depths, lat, ctl = run(Ramp())
    tail = depths[times > 25.0]
    assert len(set(tail)) == 1  # settled on one depth
    changes = np.count_nonzero(np.diff(depths))
    assert changes == ctl.switches and changes <= 4


def test_noise_alone_does_not_cause_switches():
    class Noisy:
        duration = 30.0

        def __init__(self):
            self.rng = np.random.default_rng(3)

        def __call__(self, t):
            return 1.0 + abs(self.rng.normal(0, 0.08))  # jitter, never near the SLO at depth 20

    times, depths, lat, ctl = run(Noisy())
    assert ctl.switches == 0


def test_cooldown_and_stale_observations():
    clock = Clock()
    ctl = SLOController(TABLE, SLO, clock=clock, settings=ControllerSettings(min_samples=2, window=4, cooldown_s=1.0))
    for _ in range(2):
        ctl.observe(2.0, 20)
    assert ctl.depth == 8 and ctl.switches == 1
    for _ in range(5):
        ctl.observe(2.0, 20)  # requests that were still served at the old depth say nothing now
    ctl.observe(5.0, 8)
    ctl.observe(5.0, 8)
    assert ctl.depth == 8  # nothing shallower exists; and the cool-down holds anyway


def test_bad_settings_are_refused():
    with pytest.raises(UsageError, match="positive number of milliseconds"):
        SLOController(TABLE, 0)
    with pytest.raises(UsageError, match="up_at < target <= down_at"):
        ControllerSettings(up_at=0.9, target=0.8)
    with pytest.raises(UsageError, match="measured latency"):
        SLOController({8: 0.0}, 1.0)
    fixed = FixedPolicy(14)
    fixed.observe(100.0, 14)
    assert fixed.depth == 14 and fixed.describe() == {"policy": "fixed", "depth": 14}


# ---------------------------------------------------------------- a queue in front of the device

R50 = {26: 44.0, 38: 60.0, 50: 76.0}  # ms per request at batch 1, like this project's ResNet-50 on 1 core


def serve_queue(slowdown, *, rate=7.5, seconds=60.0, slo=400.0, service=True, seed=1, policy=None):
    """One FIFO worker fed by Poisson arrivals (``rate``/s): each request runs at the depth the controller holds
    when its call starts, for the table's time x ``slowdown(t)`` x noise. The controller sees every end-to-end
    latency (queueing included) and, with ``service``, the call's time. Returns per request: arrival (s),
    latency (ms), depth; and the controller."""
    clock = Clock()
    ctl = policy or SLOController(R50, slo, clock=clock)
    ctl.clock = clock
    rng = np.random.default_rng(seed)
    arrivals = np.cumsum(rng.exponential(1.0 / rate, int(rate * seconds * 2)))
    arrivals = arrivals[arrivals < seconds]
    free, rows = 0.0, []
    for arrival in arrivals:
        start = max(arrival, free)
        clock.now = start
        depth = ctl.depth
        took = R50[depth] * slowdown(start) * rng.uniform(0.9, 1.05)
        free = start + took / 1e3
        clock.now = free
        latency = (free - arrival) * 1e3
        ctl.observe(latency, depth, took if service else None)
        rows.append((arrival, latency, depth))
    return np.array(rows), ctl


def hog(t):  # a neighbour takes half the core from 20 s to 40 s
    return 2.0 if 20.0 <= t < 40.0 else 1.0


def test_full_depth_cannot_hold_the_slo_under_the_hog():
    rows, ctl = serve_queue(hog, policy=FixedPolicy(50))
    during = rows[(rows[:, 0] >= 20) & (rows[:, 0] < 40)]
    assert (during[:, 1] > 400).mean() > 0.5  # 76 ms x 2 at 7.5/s is more work than the device can do


def test_watching_the_load_steps_down_before_the_queue_builds():
    for seed in (1, 2, 3, 4):  # whatever the trace: within a second of the hog, at the one depth that fits
        rows, _ = serve_queue(hog, seed=seed)
        t, latency, depth = rows.T
        assert t[(t >= 20) & (depth == 26)][0] - 20 < 1.0  # a few slow calls tell it; the tail takes seconds
        assert set(depth[(t >= 21) & (t < 40)]) == {26}  # the only depth under 75 % load at half speed
    rows, ctl = serve_queue(hog, seed=1)
    t, latency, depth = rows.T
    assert set(depth[t < 20]) == {50}  # 55 % load at full speed: no switch before the hog
    assert (latency[(t >= 20) & (t < 40)] > 400).mean() <= 0.01
    assert depth[t >= 50].min() == 50  # back at full depth within 10 s of the hog leaving
    assert ctl.switches == 3  # 50 -> 26, then up one depth at a time: no oscillation


def test_the_load_signal_reacts_sooner_than_the_latency_tail():
    def reaction(service: bool) -> float:
        rows, _ = serve_queue(hog, service=service)
        t, _, depth = rows.T
        return t[(t >= 20) & (depth < 50)][0] - 20

    assert reaction(True) < reaction(False)


def test_service_times_alone_never_step_up_into_a_load_that_cannot_be_carried():
    # slowed x1.3 for good: full depth then needs 7.5 x 76 x 1.3 = 74 % of the device, over the 65 % allowed up
    rows, ctl = serve_queue(lambda t: 1.3 if t >= 10 else 1.0, seconds=50)
    t, latency, depth = rows.T
    assert 50 not in set(depth[t >= 15])
    assert (latency[t >= 10] > 400).mean() <= 0.01


def test_load_settings_are_checked():
    with pytest.raises(UsageError, match="load_up < load_target <= load_down"):
        ControllerSettings(load_up=0.8, load_target=0.7)
    with pytest.raises(UsageError, match="rate_window_s"):
        ControllerSettings(rate_window_s=0)


def test_at_low_traffic_the_newest_samples_still_decide():
    # one request every 2 s, each over the SLO: the 5-s window keeps the newest few, so it still steps down
    clock = Clock()
    ctl = SLOController(R50, 100.0, clock=clock)
    for step in range(8):
        clock.now = 2.0 * step
        ctl.observe(150.0, ctl.depth)
    assert ctl.depth == 26


def test_arrivals_count_what_a_saturated_or_refusing_server_never_finishes():
    # 20 images/s arrive, the device finishes 7/s at depth 50 (the rest refused): the load is 20/s x 76 ms
    clock = Clock()
    ctl = SLOController(R50, 400.0, clock=clock)
    for step in range(60):  # 3 s: arrivals every 50 ms, one request finished in three
        clock.now = step * 0.05
        ctl.arrived()
        if step % 3 == 0:
            ctl.observe(120.0, ctl.depth, 76.0 if ctl.depth == 50 else R50[ctl.depth])
    assert ctl.rate(clock.now) == pytest.approx(20.0, rel=0.05)
    assert ctl.depth == 26  # 20/s is more than any depth can carry (152, 120, 88 % load): the shallowest
    finished_only = SLOController(R50, 400.0, clock=clock)
    for step in range(60):
        clock.now = 10.0 + step * 0.05
        if step % 3 == 0:
            finished_only.observe(120.0, 50, 76.0)
    assert finished_only.depth == 50  # 7/s finished looks like 50 % load: arrivals are what tell


def test_no_accuracy_is_given_up_when_the_latency_is_not_the_models():
    # a small model behind a slow HTTP path: 0.2-0.6 ms of inference in 3-20 ms requests, a 7 ms SLO
    def feed(service: bool):
        clock = Clock()
        ctl = SLOController(TABLE, 7.0, clock=clock)
        rng = np.random.default_rng(5)
        for step in range(3000):  # 300 requests/s for 10 s
            clock.now = step / 300
            took = TABLE[ctl.depth] * rng.uniform(0.9, 1.1)
            overhead = 3.0 + rng.exponential(2.0)  # the part no depth changes
            ctl.observe(overhead + took, ctl.depth, took if service else None)
        return ctl

    assert feed(service=False).depth == 8  # on latency alone it steps down, for nothing
    blind = feed(service=True)
    assert blind.depth == 20 and blind.switches == 0  # the service times show the model is not the cause
