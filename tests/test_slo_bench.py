"""The SLO serving benchmark's statistics (benchmarks/slo_serving.py) on hand-made request records."""

import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
slo_serving = pytest.importorskip("slo_serving")

PHASE, SLO = 10.0, 100.0


def records(bad_at=(), refused_at=(), rate=20.0, depth=50):
    """One request every 1/rate s over the three phases; those sent in a ``bad_at`` (lo, hi) span take 300 ms."""
    out = []
    for i in range(int(3 * PHASE * rate)):
        t = i / rate
        slow = any(lo <= t < hi for lo, hi in bad_at)
        status = 503 if any(lo <= t < hi for lo, hi in refused_at) else 200
        out.append({"t": t, "latency_ms": 300.0 if slow else 50.0, "status": status, "depth": depth, "infer_ms": 40.0})
    return out


def test_recovery_is_how_long_the_slowdown_took_to_absorb():
    assert slo_serving.recovery_seconds(records(), phase=PHASE, slo=SLO) == 0.0  # never broken
    late = records(bad_at=[(14.0, 15.0)])  # absorbed at once; a burst 4 s in is a breach, not the recovery
    assert slo_serving.recovery_seconds(late, phase=PHASE, slo=SLO) == 0.0
    assert slo_serving.last_breach_seconds(late, phase=PHASE, slo=SLO) == pytest.approx(5.0)
    transient = records(bad_at=[(10.0, 11.2)], refused_at=[(11.2, 11.4)])  # 1.4 s over or refused, then fine
    assert slo_serving.recovery_seconds(transient, phase=PHASE, slo=SLO) == pytest.approx(1.5)
    assert slo_serving.last_breach_seconds(transient, phase=PHASE, slo=SLO) == pytest.approx(1.5)
    never = records(bad_at=[(10.0, 20.0)])
    assert slo_serving.recovery_seconds(never, phase=PHASE, slo=SLO) is None


def test_summary_rows_and_pooling_over_traces():
    top1 = {50: 76.0}
    clean = slo_serving.summarize(records(), phase=PHASE, slo=SLO, top1=top1)
    hog = slo_serving.summarize(records(bad_at=[(10.0, 12.0)]), phase=PHASE, slo=SLO, top1=top1)
    assert hog[1]["slo_violation_rate"] == pytest.approx(0.2) and hog[1]["recovery_s"] == pytest.approx(2.0)
    assert hog[1]["busy_fraction"] == pytest.approx(20 * 40.0 / 1e3)  # 20 req/s x 40 ms of inference
    assert hog[1]["infer_p50_ms"] == {"50": 40.0}
    pooled = slo_serving.pooled({"1": clean, "2": hog}, phase=PHASE)
    assert pooled[1]["slo_violation_rate"] == pytest.approx(0.1)  # 40 of 400 requests
    assert pooled[1]["worst_trace_violation_rate"] == pytest.approx(0.2)
    assert pooled[1]["recovery_s"] == pytest.approx(2.0) and pooled[1]["recovery_s_per_trace"] == [0.0, 2.0]
    assert pooled[1]["reaction_s"] == 0.0  # one depth: it is the shallowest
    assert pooled[1]["accuracy_served"] == pytest.approx(76.0)
    empty = slo_serving.summarize(records(refused_at=[(10.0, 20.0)]), phase=PHASE, slo=SLO, top1=top1)
    assert math.isnan(empty[1]["p99_ms"])  # nothing served in the hog phase
    both = slo_serving.pooled({"1": empty, "2": hog}, phase=PHASE)
    assert both[1]["worst_p99_ms"] == pytest.approx(hog[1]["p99_ms"])  # the NaN does not win or poison it


def test_reaction_is_the_first_request_served_shallower_after_the_hog_starts():
    stepped = [dict(r, depth=50 if r["t"] < 10.4 else 26) for r in records()]
    assert slo_serving.reaction_seconds(stepped, phase=PHASE, shallowest=26) == pytest.approx(0.4)
    assert slo_serving.reaction_seconds(records(), phase=PHASE, shallowest=26) is None  # fixed at 50
    assert slo_serving.reaction_seconds(records(depth=26), phase=PHASE, shallowest=26) == 0.0


def test_resummarize_moves_inline_timelines_to_the_gzipped_file(tmp_path, monkeypatch):
    import gzip
    import json

    monkeypatch.setattr(slo_serving, "RESULTS", tmp_path)
    monkeypatch.setattr(
        slo_serving, "save_result", lambda stem, data: (tmp_path / f"{stem}.json").write_text(json.dumps(data))
    )
    rows = [[r["t"], r["latency_ms"], r["status"], r["depth"], r["infer_ms"]] for r in records(bad_at=[(10.0, 11.0)])]
    saved = {
        "slo_ms": SLO, "phase_seconds": PHASE, "rate_per_s": 20.0, "seeds": [1], "bench_top1": {"50": 76.0},
        "timeline_columns": ["t_s", "latency_ms", "status", "depth", "infer_ms"], "timelines": {"fixed": {"1": rows}},
    }  # fmt: skip
    (tmp_path / "slo_serving-demo.json").write_text(json.dumps(saved))
    slo_serving.resummarize("demo")
    data = json.loads((tmp_path / "slo_serving-demo.json").read_text())
    assert "timelines" not in data and data["per_trace"]["fixed"]["1"][1]["recovery_s"] == pytest.approx(1.0)
    with gzip.open(tmp_path / data["timelines_file"], "rt") as f:
        assert json.load(f) == {"fixed": {"1": rows}}
    assert (tmp_path / "slo_serving-demo.png").stat().st_size > 0
    slo_serving.resummarize("demo")  # and again, now from the gzipped file
    assert json.loads((tmp_path / "slo_serving-demo.json").read_text())["summary"] == data["summary"]
