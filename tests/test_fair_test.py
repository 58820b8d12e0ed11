"""Issue 17's registered rules, applied by benchmarks/fair_test.py: the held-out selection and the verdicts."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
fair_test = pytest.importorskip("fair_test")


def _rows(method, errors_by_seed, split="test"):
    """errors_by_seed: {seed: (err8, err14, err20)} -> result rows (top1 = 100 - error, shared BN 5 points worse)."""
    return [
        {"method": method, "depth": d, "seed": s, "top1": 100 - e, "top1_shared_bn": 95 - e, "split": split}
        for s, errs in errors_by_seed.items()
        for d, e in zip((8, 14, 20), errs)
    ]


def _grid(**sub_full):
    """{tag: (sub-net error, full-net error)} -> held-out rows per grid configuration."""
    configs = {"at100_p1": (100.0, 1), "at100_p2": (100.0, 2), "at1000_p1": (1000.0, 1), "at1000_p2": (1000.0, 2)}
    return {configs[k]: _rows("ekd", {0: (sub, sub, full)}, "held-out") for k, (sub, full) in sub_full.items()}


def test_selection_takes_the_best_held_out_sub_nets_whose_full_net_stays_close():
    chosen = fair_test.select(_grid(at100_p1=(7.6, 7.3), at100_p2=(7.5, 7.4), at1000_p1=(7.0, 7.6), at1000_p2=(8, 7)))
    assert chosen["selected"] == (100.0, 2)  # 1000/p1 is better on sub-nets but its full-net is 0.3 worse


def test_selection_keeps_the_default_for_a_gain_under_the_threshold_or_without_its_run():
    chosen = fair_test.select(_grid(at100_p1=(7.60, 7.3), at100_p2=(7.56, 7.3), at1000_p1=(8, 7), at1000_p2=(8, 7)))
    assert chosen["selected"] == fair_test.DEFAULT and "0.05" in chosen["reason"]
    assert fair_test.select(_grid(at100_p2=(7.0, 7.0)))["selected"] is None
    partial = fair_test.select(_grid(at100_p1=(7.6, 7.3), at100_p2=(7.0, 7.0)))  # the rule needs the whole grid
    assert partial["selected"] is None and "2 of 4" in partial["reason"]


def test_verdicts_follow_the_registered_rule_seed_by_seed():
    individual = _rows("individual", {0: (9.0, 8.5, 8.4), 1: (9.0, 8.5, 8.4), 2: (9.0, 8.5, 8.4)})
    ce = _rows("ce", {0: (9.5, 8.9, 8.6), 1: (9.5, 8.9, 8.6), 2: (9.5, 8.9, 8.6)})
    good = _rows("ekd", {0: (8.4, 8.0, 8.5), 1: (8.4, 8.0, 8.5), 2: (8.4, 8.0, 8.5)})
    v = fair_test.verdicts(individual + ce + good, "top1")
    assert v["beats_individual"]["holds"] and v["full_net_preserved"]["holds"] and v["beats_ce"]["holds"]
    # one seed misses the 0.5-point margin, and the full-net is 0.3 above: both claims fail
    mixed = _rows("ekd", {0: (8.4, 8.0, 8.7), 1: (8.4, 8.0, 8.7), 2: (8.7, 8.3, 8.7)})
    v = fair_test.verdicts(individual + ce + mixed, "top1")
    assert v["beats_individual"]["holds"] is False and v["full_net_preserved"]["holds"] is False
    assert v["beats_ce"]["holds"] is True
    assert v["beats_individual"]["individual_minus_ekd_per_seed"][2] == pytest.approx(0.25)
    # a missing run decides nothing
    assert fair_test.verdicts(individual + good, "top1")["beats_ce"]["holds"] is None
