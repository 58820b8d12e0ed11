"""The reproduction benchmark (issue 6) end to end on a tiny budget: every method trains, the results file
holds one row per (method, depth, seed), the summary pairs EKD with each method, and a rerun resumes
(finished runs are not trained again)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "reproduce_fashion_mnist.py"


def _run(tmp_path, *extra):
    args = [
        sys.executable,
        str(SCRIPT),
        "--width",
        "4",
        "--depths",
        "8,14",
        "--epochs",
        "1",
        "--seeds",
        "0",
        "--methods",
        "individual,ce,ekd",
        "--train-limit",
        "256",
        "--test-limit",
        "128",
        "--threads",
        "1",
        "--work",
        str(tmp_path / "runs"),
        "--results",
        str(tmp_path / "r.json"),
        *extra,
    ]
    return subprocess.run(args, capture_output=True, text=True, timeout=600, cwd=ROOT)


@pytest.mark.slow
def test_reproduction_script_trains_reports_and_resumes(tmp_path, fashion_mnist_dir):
    first = _run(tmp_path)
    assert first.returncode == 0, first.stderr[-2000:]
    data = json.loads((tmp_path / "r.json").read_text())
    rows = {(r["method"], r["depth"], r["seed"]) for r in data["rows"]}
    assert rows == {(m, d, 0) for m in ("individual", "ce", "ekd") for d in (8, 14)}
    assert all(0 <= r["top1"] <= 100 and r["split"] == "test" and r["n"] == 128 for r in data["rows"])
    summary = data["summary"]
    assert summary["full_depth"] == 14 and summary["sub_depths"] == [8]
    for other in ("individual", "ce"):
        ekd = next(100 - r["top1"] for r in data["rows"] if r["method"] == "ekd" and r["depth"] == 8)
        theirs = next(100 - r["top1"] for r in data["rows"] if r["method"] == other and r["depth"] == 8)
        assert abs(summary["ekd_vs"][other]["sub_nets_points"] - (theirs - ekd)) < 1e-9
    table = (tmp_path / "r.md").read_text()
    assert "| depth | MACs | individual | ce | ekd |" in table and (tmp_path / "r.png").stat().st_size > 0

    stamps = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "runs").glob("*.pt")}
    again = _run(tmp_path)
    assert again.returncode == 0, again.stderr[-2000:]
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "runs").glob("*.pt")} == stamps
    assert "seed 0" not in again.stdout  # nothing was trained again


def test_holdout_runs_get_their_own_folder_and_never_touch_the_test_set(tmp_path, fashion_mnist_dir):
    result = _run(tmp_path, "--holdout", "2000", "--methods", "ekd")
    assert result.returncode == 0, result.stderr[-2000:]
    data = json.loads((tmp_path / "r.json").read_text())
    assert {r["split"] for r in data["rows"]} == {"held-out"} and data["settings"]["holdout"] == 2000
    assert "held out of the training split" in data["dataset"]
