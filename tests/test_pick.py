import pytest

from ddnn_deploy.errors import UsageError
from ddnn_deploy.pick import NothingFitsError, pick_depth


def _row(depth, p90, top1, batch=1, status="ok", precision="fp32"):
    return {
        "depth": depth,
        "blocks": None,
        "precision": precision,
        "backend": "onnxruntime",
        "batch": batch,
        "status": status,
        "latency_ms": None
        if status != "ok"
        else {
            "mean": p90 * 0.95,
            "std": 0.01,
            "min": p90 * 0.8,
            "p50": p90 * 0.9,
            "p90": p90,
            "p95": p90 * 1.01,
            "p99": p90 * 1.02,
            "max": p90 * 1.1,
            "n": 100,
        },
        "accuracy": {"top1": top1, "top5": 99.0} if top1 is not None else None,
    }


ROWS = [
    _row(8, 1.0, 91.0),
    _row(14, 2.0, 93.0),
    _row(20, 3.0, 93.8),
    _row(20, 1.5, 93.0, batch=8),
    _row(26, 0.5, None, status="error"),
]


def test_most_accurate_depth_that_fits():
    assert pick_depth(ROWS, 2.5).depth == 14
    assert pick_depth(ROWS, 3.0).depth == 20
    assert pick_depth(ROWS, 1.2).depth == 8
    assert pick_depth(ROWS, 2.5, stat="p50").depth == 14
    assert pick_depth(ROWS, 2.8, stat="p50").depth == 20  # p50 of depth 20 is 2.7


def test_ties_go_to_the_faster_and_missing_accuracy_ranks_last():
    rows = [_row(14, 2.0, 93.0), _row(16, 1.8, 93.0), _row(18, 0.5, None)]
    assert pick_depth(rows, 5).depth == 16
    assert pick_depth([_row(18, 0.5, None)], 5).depth == 18  # latency-only results still pick


def test_min_accuracy_and_nothing_fits_names_the_fastest():
    assert pick_depth(ROWS, 10, min_accuracy=93.5).depth == 20
    with pytest.raises(NothingFitsError, match="fastest, depth 8 .* takes 1.000 ms"):
        pick_depth(ROWS, 0.9)
    with pytest.raises(NothingFitsError, match="top-1 >= 95"):
        pick_depth(ROWS, 10, min_accuracy=95)


def test_bad_budget_and_stat():
    for budget in (0, -1):
        with pytest.raises(UsageError, match="positive"):
            pick_depth(ROWS, budget)
    with pytest.raises(UsageError, match="p90"):
        pick_depth(ROWS, 1, stat="p42")


def test_without_accuracy_the_deepest_depth_that_fits_is_picked_not_the_fastest():
    rows = [_row(8, 0.1, None), _row(14, 0.2, None), _row(20, 0.5, None)]
    assert pick_depth(rows, 0.3).depth == 14  # 20 does not fit; 14 is deeper than 8
    assert pick_depth(rows, 1.0).depth == 20
    # rows with accuracy still rank above rows without it
    assert pick_depth([*rows, _row(8, 0.1, 90.0, precision="int8")], 1.0).depth == 8
