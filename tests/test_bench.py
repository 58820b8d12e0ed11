"""bench and pick on real exported graphs with the real onnxruntime, in child processes."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import cli_runner

from ddnn_deploy.cli import cli
from ddnn_deploy.errors import ArtifactsError, MissingDependencyError, ResultsError, UsageError
from ddnn_deploy.formats.manifest import FORMAT as MANIFEST_FORMAT
from ddnn_deploy.formats.manifest import read_manifest
from ddnn_deploy.formats.profiles import TimingSettings, get_profile, load_profiles
from ddnn_deploy.formats.results import FORMAT, read_results
from ddnn_deploy.measure.sweep import bench
from ddnn_deploy.measure.timing import latency_stats, measure

QUICK = """
[profiles.quick]
extends = "x86-cpu"
optional_backends = []  # onnxruntime only: OpenVINO has tests of its own
precisions = ["fp32"]
threads = 1
batch_sizes = [1, 2]
warmup_iters = 2
warmup_seconds = 0.0
min_iters = 15
min_seconds = 0.0
"""


@pytest.fixture(scope="module")
def artifacts(tiny_artifacts):
    return tiny_artifacts  # bench only reads it; the tests that change files work on a copy


@pytest.fixture()
def profiles(tmp_path):
    path = tmp_path / "profiles.toml"
    path.write_text(QUICK)
    return path


def test_timing_statistics():
    stats = latency_stats([1.0, 2.0, 3.0, 4.0, 100.0])
    assert stats["min"] == 1 and stats["max"] == 100 and stats["p50"] == 3 and stats["n"] == 5
    assert stats["p90"] == pytest.approx(61.6) and stats["mean"] == pytest.approx(22.0)
    calls = []
    stats, samples = measure(
        lambda: calls.append(1), TimingSettings(warmup_iters=3, warmup_seconds=0.0, min_iters=7, min_seconds=0.0)
    )
    assert len(samples) == 7 and len(calls) == 10 and stats["n"] == 7


def test_profiles_builtin_toml_and_errors(tmp_path, profiles):
    assert {"x86-cpu", "cuda", "jetson"} <= set(load_profiles())
    quick = get_profile("quick", profiles)
    assert quick.backend == "onnxruntime" and quick.batch_sizes == (1, 2) and quick.threads == 1
    with pytest.raises(UsageError, match="known profiles: cuda, jetson, torch-cuda, x86-cpu"):
        get_profile("nano")
    bad = tmp_path / "bad.toml"
    bad.write_text("[profiles.x\nthreads = 1")
    with pytest.raises(UsageError, match="not valid TOML"):
        load_profiles(bad)
    bad.write_text("[profiles.x]\nthreds = 1\n")
    with pytest.raises(UsageError, match="profiles.x: threds: is not a known key"):
        load_profiles(bad)
    bad.write_text("[profiles.x]\nbackend = 'tflite'\n")
    with pytest.raises(UsageError, match="profiles.x: backend must be one of onnxruntime"):
        load_profiles(bad)
    bad.write_text("[profiles.x]\nbackend = 'openvino'\nhint = 'fastest'\n")
    with pytest.raises(UsageError, match="profiles.x: hint must be one of latency, throughput, not 'fastest'"):
        load_profiles(bad)


def test_jetson_profile_here_names_the_missing_package(artifacts):
    with pytest.raises(MissingDependencyError, match="needs tensorrt, which is not installed: pip install"):
        bench(artifacts, device="jetson")


def test_bench_measures_every_depth_and_fp32_accuracy_equals_pytorch(artifacts, tiny_ckpt, profiles, tmp_path):
    results_path = tmp_path / "out" / "results.json"
    results = bench(
        artifacts,
        device="quick",
        profiles_file=profiles,
        dataset="fashion-mnist",
        limit=300,
        include_selector=True,
        results_path=results_path,
        progress=False,
    )
    on_disk = json.loads(results_path.read_text())
    assert on_disk["format"] == "ddnn-deploy.bench" and on_disk["version"] == 1
    assert results_path.with_suffix(".csv").read_text().startswith("depth,blocks,kind,precision")
    rows = results.to_json_dict()["rows"]
    assert {(r["depth"], r["kind"], r["batch"]) for r in rows} == {
        (d, k, b) for d in (8, 14) for k in ("depth", "selector") for b in (1, 2)
    }
    from ddnn_deploy.evaluation import evaluate_checkpoint

    reference = {r["depth"]: r for r in evaluate_checkpoint(str(tiny_ckpt), limit=300)["depths"]}
    for row in rows:
        assert row["status"] == "ok", row.get("error")
        lat = row["latency_ms"]
        assert lat["n"] >= 15 and lat["min"] <= lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"]
        assert len(row["samples_ms"]) == lat["n"] and row["throughput"] > 0
        assert row["accuracy"]["top1"] == pytest.approx(reference[row["depth"]]["top1"], abs=1e-9)
        assert row["accuracy"]["top5"] == pytest.approx(reference[row["depth"]]["top5"], abs=1e-9)
        assert row["memory_mb"]["peak_rss_mb"] > 10
    env = results.device["environment"]
    assert env["cores"] and env["cpu"] and env["libraries"]["onnxruntime"]


def test_bench_without_the_models_data_is_latency_only_and_says_why(artifacts, profiles, tmp_path):
    base = ["bench", "--artifacts", str(artifacts), "--device", "quick", "--profiles", str(profiles), "--no-progress"]
    elsewhere = cli_runner().invoke(
        cli, [*base, "--results", str(tmp_path / "a.json")], env={"DDNN_FASHION_MNIST": str(tmp_path / "absent")}
    )
    assert elsewhere.exit_code == 0, elsewhere.output
    assert "latency only: fashion-mnist's test data is not here (give --data DIR" in elsewhere.stderr
    told = cli_runner().invoke(cli, [*base, "--dataset", "none", "--results", str(tmp_path / "b.json")])
    assert told.exit_code == 0 and "accuracy on" not in told.stderr and "latency only" not in told.stderr
    for name in ("a.json", "b.json"):
        payload = json.loads((tmp_path / name).read_text())
        assert payload["settings"]["dataset"] is None and all(r["accuracy"] is None for r in payload["rows"])


def test_cli_bench_then_pick(artifacts, profiles, tmp_path):
    results_path = tmp_path / "r.json"
    result = cli_runner().invoke(
        cli,
        [
            "bench",
            "--artifacts",
            str(artifacts),
            "--device",
            "quick",
            "--profiles",
            str(profiles),
            "--results",
            str(results_path),
            "--budget-ms",
            "1000",
            "--no-progress",
        ],
    )
    assert result.exit_code == 0, result.output
    # no --dataset: the model's own (Fashion-MNIST, installed here), said in one line, so the plot has accuracy
    assert "accuracy on fashion-mnist's test split" in result.stderr
    plotted = importlib.util.find_spec("matplotlib") is not None  # the Python 3.8 runtime job has none
    assert "pick: depth" in result.stdout and results_path.with_suffix(".png").exists() is plotted
    assert all(row["accuracy"]["n"] == 10000 for row in json.loads(results_path.read_text())["rows"])
    picked = cli_runner().invoke(cli, ["pick", "--results", str(results_path), "--budget-ms", "1000", "--json"])
    assert picked.exit_code == 0, picked.output
    payload = json.loads(picked.stdout)
    assert payload["depth"] in (8, 14) and payload["latency_ms"] > 0 and "top1" in payload
    nothing = cli_runner().invoke(cli, ["pick", "--results", str(results_path), "--budget-ms", "0.000001"])
    assert nothing.exit_code == 7 and "the fastest, depth" in nothing.stderr
    for args, code, text in (
        (["pick", "--results", str(results_path), "--budget-ms", "-3"], 2, "positive"),
        (["pick", "--results", str(artifacts / "manifest.json"), "--budget-ms", "3"], 3, "not a ddnn-deploy bench"),
        (["bench", "--artifacts", str(tmp_path), "--no-progress"], 3, "no manifest.json"),
        (["bench", "--artifacts", str(artifacts), "--device", "nano"], 2, "known profiles"),
    ):
        result = cli_runner().invoke(cli, args)
        assert result.exit_code == code, (args, result.output)
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and text in lines[0] and "Traceback" not in result.output


def test_tampered_artifacts_are_refused(artifacts, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(artifacts, copy)
    manifest = read_manifest(copy)
    victim = copy / manifest.artifacts[0].path
    victim.write_bytes(victim.read_bytes() + b"\0")
    with pytest.raises(ArtifactsError, match="no longer matches the sha256"):
        read_manifest(copy)
    data = json.loads((copy / "manifest.json").read_text())
    data["artifacts"][0]["path"] = "../../etc/passwd"
    (copy / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(ArtifactsError, match="artifacts\\[0\\].path: must be a relative path inside the folder"):
        read_manifest(copy)
    (copy / "escape.onnx").symlink_to("/etc/passwd")  # a path that looks inside but resolves outside
    data["artifacts"][0]["path"] = "escape.onnx"
    (copy / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(ArtifactsError, match="points outside"):
        read_manifest(copy)


@pytest.mark.parametrize(
    "content, message",
    [
        ("{not json", "is not valid JSON"),
        ('["a list"]', "format list"),
        ('{"format": "something-else", "version": 1}', "format 'something-else'"),
        ('{"format": "%s", "version": 99}', "version 99; this tool reads version 1"),
    ],
)
def test_foreign_or_future_json_files_are_refused_in_one_line(tmp_path, content, message):
    (tmp_path / "manifest.json").write_text(content.replace("%s", MANIFEST_FORMAT))
    with pytest.raises(ArtifactsError, match=message) as caught:
        read_manifest(tmp_path)
    assert "\n" not in str(caught.value) and "re-export" in str(caught.value)
    (tmp_path / "results.json").write_text(content.replace("%s", FORMAT))
    with pytest.raises(ResultsError, match=message):
        read_results(tmp_path / "results.json")


def test_a_crashing_worker_records_a_failed_row_and_the_sweep_goes_on(artifacts, profiles, tmp_path):
    import shutil

    copy = tmp_path / "broken"
    shutil.copytree(artifacts, copy)
    data = json.loads((copy / "manifest.json").read_text())
    first = copy / data["artifacts"][0]["path"]
    first.write_bytes(b"not an onnx graph")
    import hashlib

    data["artifacts"][0]["sha256"] = hashlib.sha256(first.read_bytes()).hexdigest()
    data["artifacts"][0]["bytes"] = first.stat().st_size
    (copy / "manifest.json").write_text(json.dumps(data))
    results = bench(copy, device="quick", profiles_file=profiles, progress=False)
    status = {(r.depth, r.batch): r.status for r in results.rows}
    assert status[(8, 1)] == "error" and status[(14, 1)] == "ok"
    assert "INVALID_PROTOBUF" in results.rows[0].error or "Load model" in results.rows[0].error
    out = tmp_path / "r.json"
    args = ["bench", "--artifacts", str(copy), "--device", "quick", "--profiles", str(profiles), "--no-progress"]
    result = cli_runner().invoke(cli, [*args, "--results", str(out)])
    assert result.exit_code == 10, result.output  # some rows failed: its own code, a summary line, the results
    assert result.stderr.strip().splitlines()[-1].startswith("error: 2 of 4 measurements failed (first: depth 8 fp32")
    assert {row["status"] for row in json.loads(out.read_text())["rows"]} == {"ok", "error"}


def test_results_never_overwrite_what_is_not_a_results_file(artifacts, profiles, tmp_path):
    import shutil

    copy = tmp_path / "art"
    shutil.copytree(artifacts, copy)
    notes = tmp_path / "notes.json"
    notes.write_text('{"mine": true}')
    graph = next(copy.glob("*.onnx"))
    cases = [
        (copy / "manifest.json", "a file of the export folder"),
        (graph, "a file of the export folder"),
        (graph.with_suffix(".json"), "would overwrite " + graph.name),  # its .csv/.png siblings are safe, but
        (notes, "is not a ddnn-deploy results file"),
    ]
    cases[2] = (copy / "manifest.csv", "")  # a companion of manifest.json: harmless, allowed below
    for path, message in [c for c in cases if c[1]]:
        before = path.read_bytes()
        with pytest.raises(UsageError, match=message):
            bench(copy, device="quick", profiles_file=profiles, progress=False, results_path=path)
        assert path.read_bytes() == before
    results = bench(copy, device="quick", profiles_file=profiles, progress=False, results_path=notes, force=True)
    assert read_results(notes).rows == results.rows  # --force replaces it
    bench(copy, device="quick", profiles_file=profiles, progress=False, results_path=notes)  # a results file: ok
    assert not list(tmp_path.glob(".*"))  # no temporary names left


def test_results_json_csv_and_png_are_written_all_or_none(artifacts, profiles, tmp_path, monkeypatch):
    from ddnn_deploy.measure import plot

    out = tmp_path / "r.json"
    first = bench(artifacts, device="quick", profiles_file=profiles, progress=False, results_path=out)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    def full_disk(results, path, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(plot, "plot_results", full_disk)
    with pytest.raises(OSError, match="No space"):
        bench(artifacts, device="quick", profiles_file=profiles, progress=False, results_path=out)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before  # the old trio, untouched
    assert read_results(out).rows == first.rows


def test_runtime_side_works_without_torch(artifacts, profiles, tmp_path):
    """bench and pick with torch made unimportable, in this process and in the workers."""
    blocker = tmp_path / "blocker" / "torch"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('torch is blocked for this test')\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(blocker.parent), str(Path(__file__).parents[1])])}
    results_path = tmp_path / "nt.json"
    cmd = [
        sys.executable,
        "-m",
        "ddnn_deploy",
        "bench",
        "--artifacts",
        str(artifacts),
        "--device",
        "quick",
        "--profiles",
        str(profiles),
        "--dataset",
        "fashion-mnist",
        "--limit",
        "100",
        "--results",
        str(results_path),
        "--budget-ms",
        "1000",
        "--no-progress",
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-1500:]
    rows = json.loads(results_path.read_text())["rows"]
    assert all(r["status"] == "ok" for r in rows) and rows[0]["accuracy"]["n"] == 100
    check = subprocess.run([sys.executable, "-c", "import torch"], capture_output=True, text=True, env=env)
    assert check.returncode != 0  # the blocker really blocks


def test_torch_reference_backend(artifacts, tiny_ckpt, tmp_path):
    profiles = tmp_path / "p.toml"
    profiles.write_text(QUICK.replace('[profiles.quick]\nextends = "x86-cpu"', '[profiles.ref]\nbackend = "torch"'))
    results = bench(
        artifacts,
        device="ref",
        profiles_file=profiles,
        checkpoint=str(tiny_ckpt),
        dataset="fashion-mnist",
        limit=200,
        progress=False,
    )
    from ddnn_deploy.evaluation import evaluate_checkpoint

    reference = {r["depth"]: r for r in evaluate_checkpoint(str(tiny_ckpt), limit=200)["depths"]}
    for row in results.rows:
        assert row.status == "ok" and row.backend == "torch", row.error
        assert row.top1 == pytest.approx(reference[row.depth]["top1"])


def test_a_gpu_provider_this_onnxruntime_lacks_stops_before_the_sweep(artifacts, tmp_path):
    results = tmp_path / "cuda.json"
    result = cli_runner().invoke(
        cli, ["bench", "--artifacts", str(artifacts), "--device", "cuda", "--results", str(results), "--no-progress"]
    )
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.exit_code == 5 and len(lines) == 1 and "CUDAExecutionProvider" in lines[0], result.output
    assert "onnxruntime-gpu" in lines[0] and not results.exists()


@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="needs torch")
def test_torch_cuda_without_a_gpu_stops_before_the_sweep(artifacts, tiny_ckpt, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    results = tmp_path / "torch-cuda.json"
    args = ["bench", "--artifacts", str(artifacts), "--device", "torch-cuda", "--ckpt", str(tiny_ckpt)]
    result = cli_runner().invoke(cli, [*args, "--results", str(results), "--no-progress"])
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.exit_code == 5 and len(lines) == 1 and "sees no CUDA GPU" in lines[0], result.output
    assert not results.exists()


def test_a_silent_cpu_fallback_of_onnxruntime_is_refused(artifacts, monkeypatch):
    import onnxruntime

    from ddnn_deploy.runners.onnxruntime_runner import OrtRunner

    real = onnxruntime.InferenceSession

    def cpu_only(path, options, providers):  # what onnxruntime-gpu does when CUDA fails to load
        return real(path, options, providers=["CPUExecutionProvider"])

    monkeypatch.setattr(
        onnxruntime, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"]
    )
    monkeypatch.setattr(onnxruntime, "InferenceSession", cpu_only)
    with pytest.raises(MissingDependencyError, match="could not start CUDAExecutionProvider .* runs CPUExecution"):
        OrtRunner(artifacts / "cifar_resnet20-d8.onnx", provider="cuda").activate()


def test_every_row_failing_exits_non_zero_and_keeps_the_results(artifacts, profiles, tmp_path):
    import hashlib
    import shutil

    copy = tmp_path / "broken"
    shutil.copytree(artifacts, copy)
    data = json.loads((copy / "manifest.json").read_text())
    for entry in data["artifacts"]:
        if entry["kind"] == "depth":
            graph = copy / entry["path"]
            graph.write_bytes(b"not an onnx graph")
            entry["sha256"], entry["bytes"] = hashlib.sha256(graph.read_bytes()).hexdigest(), graph.stat().st_size
    (copy / "manifest.json").write_text(json.dumps(data))
    results = tmp_path / "r.json"
    result = cli_runner().invoke(
        cli,
        [
            "bench",
            "--artifacts",
            str(copy),
            "--device",
            "quick",
            "--profiles",
            str(profiles),
            "--results",
            str(results),
            "--no-progress",
        ],
    )
    assert result.exit_code == 9, result.output
    assert "error: every measurement failed (first: depth 8" in result.stderr
    assert {row["status"] for row in json.loads(results.read_text())["rows"]} == {"error"}


def test_a_failed_accuracy_pass_keeps_the_latency_rows(artifacts, tmp_path):
    from ddnn_deploy.formats.profiles import TimingSettings
    from ddnn_deploy.measure.plan import DatasetRef, plan_jobs
    from ddnn_deploy.measure.worker import run_job

    profile = get_profile("x86-cpu").with_timing(
        TimingSettings(warmup_iters=1, warmup_seconds=0, min_iters=5, min_seconds=0)
    )
    broken = DatasetRef(name="fashion-mnist", data_dir=str(tmp_path))  # an empty folder: accuracy must fail
    job = plan_jobs(read_manifest(artifacts), profile, depths=[8], dataset=broken)[0]
    rows = run_job(job)
    assert [r["status"] for r in rows] == ["ok", "ok"] and all(r["latency_ms"]["n"] >= 5 for r in rows)
    assert all(r["accuracy"] is None and r["accuracy_error"].startswith("DataError") for r in rows)


def test_tensorrt_accuracy_is_fed_within_the_engine_profile():
    from ddnn_deploy.measure.plan import accuracy_batch

    assert accuracy_batch(get_profile("jetson")) == 1  # the engine is built for batch 1 only
    assert accuracy_batch(get_profile("jetson").model_copy(update={"batch_sizes": (1, 4)})) == 4
    assert accuracy_batch(get_profile("x86-cpu")) == 256  # onnxruntime has no profile to respect
