"""compare: real results of two benches side by side, the plot, and different models refused."""

from __future__ import annotations

import importlib.util
import json

import pytest
from helpers import cli_runner

from ddnn_deploy.cli import cli
from ddnn_deploy.compare import compare_results
from ddnn_deploy.errors import ResultsError, UsageError
from ddnn_deploy.formats.profiles import get_profile
from ddnn_deploy.measure.sweep import bench

QUICK = dict(batch_sizes=(1,), warmup_iters=2, warmup_seconds=0.0, min_iters=10, min_seconds=0.0,
             precisions=("fp32",), optional_backends=())  # fmt: skip


@pytest.fixture(scope="module")
def two_runs(tiny_artifacts, tmp_path_factory):
    folder = tmp_path_factory.mktemp("compare")
    for name, threads in (("one-thread", 1), ("two-threads", 2)):
        profile = get_profile("x86-cpu").model_copy(update={**QUICK, "threads": threads})
        bench(tiny_artifacts, device=profile, dataset="fashion-mnist", limit=100, progress=False,
              results_path=folder / f"{name}.json", plot=False)  # fmt: skip
    return folder / "one-thread.json", folder / "two-threads.json"


def test_the_same_depths_side_by_side(two_runs, tmp_path):
    comparison = compare_results(two_runs, stat="p50")
    assert comparison["files"] == ["one-thread", "two-threads"]
    assert [(r["depth"], r["backend"], r["precision"]) for r in comparison["rows"]] == [
        (8, "onnxruntime", "fp32"),
        (14, "onnxruntime", "fp32"),
    ]
    for row in comparison["rows"]:
        first, second = row["results"]
        assert first["latency_ratio"] == 1.0 and second["latency_ratio"] > 0
        assert second["latency_ratio"] == pytest.approx(second["latency_ms"] / first["latency_ms"])
        assert second["top1_diff"] == 0.0  # same model, same images
    result = cli_runner().invoke(cli, ["compare", *map(str, two_runs), "--plot", str(tmp_path / "c.png")])
    assert result.exit_code == 0, result.output
    assert "one-thread p50 ms" in result.stdout
    if importlib.util.find_spec("matplotlib") is not None:
        assert (tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"
    else:  # the Python 3.8 job has no matplotlib: a note, no file
        assert "note: no plot" in result.stderr and not (tmp_path / "c.png").exists()
    as_json = cli_runner().invoke(cli, ["compare", *map(str, two_runs), "--json", "--stat", "p90"])
    assert json.loads(as_json.stdout)["stat"] == "p90"


def test_different_models_are_refused_unless_asked(two_runs, tmp_path):
    other = tmp_path / "other.json"
    data = json.loads(two_runs[1].read_text())
    data["artifacts"]["checkpoint_sha256"] = "0" * 64
    other.write_text(json.dumps(data))
    with pytest.raises(ResultsError, match="different models"):
        compare_results([two_runs[0], other])
    result = cli_runner().invoke(cli, ["compare", str(two_runs[0]), str(other)])
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.exit_code == 3 and len(lines) == 1 and "--allow-different-models" in lines[0]
    assert compare_results([two_runs[0], other], allow_different_models=True)["rows"]
    with pytest.raises(UsageError, match="at least two"):
        compare_results([two_runs[0]])
