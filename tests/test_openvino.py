"""The OpenVINO back-end, for real (skipped where openvino is not installed, e.g. the Python 3.8 job): FP32 equal
to onnxruntime, BF16 where the CPU has it (skipped rows where not), INT8 from the QDQ graphs, the selector's depth
checked before every call, the compiled-model cache ledger, x86-cpu measuring both back-ends and pick choosing
across them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from helpers import cli_runner

from ddnn_deploy.cli import cli
from ddnn_deploy.errors import EngineMismatchError, UsageError
from ddnn_deploy.formats.profiles import get_profile
from ddnn_deploy.measure.sweep import bench
from ddnn_deploy.runners.factory import graph_runner
from ddnn_deploy.runners.onnxruntime_runner import OrtRunner

ov = pytest.importorskip("openvino", reason="OpenVINO is not installed (pip install 'ddnn-deploy[openvino]')")
from ddnn_deploy.runners import openvino_runner  # noqa: E402
from ddnn_deploy.runners.openvino_runner import OvRunner, compile_config, has_native_bf16  # noqa: E402

NATIVE_BF16 = has_native_bf16(ov.Core())
QUICK = dict(batch_sizes=(1,), threads=1, warmup_iters=2, warmup_seconds=0.0, min_iters=10, min_seconds=0.0)


@pytest.fixture()
def folder(tiny_artifacts, tmp_path):
    """A copy: OpenVINO's model cache goes into the export folder (engines/openvino)."""
    copy = tmp_path / "artifacts"
    shutil.copytree(tiny_artifacts, copy)
    return copy


def _x(n=4):
    return np.random.default_rng(0).standard_normal((n, 1, 28, 28)).astype(np.float32)


def test_fp32_equals_onnxruntime_and_is_really_fp32(folder):
    graph = folder / "cifar_resnet20-d14.onnx"
    with OrtRunner(graph, threads=1) as ort_runner:
        expected = ort_runner.infer({"input": _x()})[0]
    with OvRunner(graph, precision="fp32", threads=1) as runner:
        np.testing.assert_allclose(runner.infer({"input": _x()})[0], expected, rtol=1e-4, atol=1e-4)
        assert runner.info()["inference_precision"] in ("f32", "<Type: 'float32'>")  # not OpenVINO's BF16 default
        run = runner.timed({"input": _x(1)})  # the graph compiled for batch 1, as benchmark_app -shape does
        np.testing.assert_allclose(run()[0], expected[:1], rtol=1e-4, atol=1e-4)
        assert runner.timed({"input": _x(1)}) is not None and len(runner._static) == 1  # compiled once per shape
        # after the shared timed call, a batch of another size still works (own tensors per call)
        assert runner.infer({"input": _x(7)})[0].shape == (7, 10)
        # a feed the runner had to copy (Fortran order) stays alive for its request, whatever runs in between
        run = runner.timed({"input": np.asfortranarray(_x(1))})
        runner.infer({"input": _x(3)})
        np.testing.assert_allclose(run()[0], expected[:1], rtol=1e-4, atol=1e-4)


def test_the_settings_are_checked_before_anything_loads(folder):
    assert compile_config("bf16", "throughput", 2, None) == {
        "INFERENCE_PRECISION_HINT": "bf16",
        "PERFORMANCE_HINT": "THROUGHPUT",
        "INFERENCE_NUM_THREADS": 2,
    }
    assert compile_config("int8", "latency", None, "/c")["INFERENCE_PRECISION_HINT"] == "f32"
    with pytest.raises(UsageError, match="performance hint must be one of latency, throughput"):
        OvRunner(folder / "cifar_resnet20-d8.onnx", hint="fast")
    with pytest.raises(UsageError, match="OpenVINO measures fp32, bf16, int8, not fp16"):
        OvRunner(folder / "cifar_resnet20-d8.onnx", precision="fp16")


def test_a_selector_depth_the_graph_lacks_is_refused_before_the_call(folder):
    graph = folder / "cifar_resnet20-selector.onnx"
    unchecked = OvRunner(graph, threads=1)
    with unchecked:  # what the issue found: OpenVINO answers a missing depth with zeros
        zeros = unchecked.infer({"input": _x(), "depth": np.asarray(9, dtype=np.int64)})[0]
        assert not zeros.any()
    for backend in ("openvino", "onnxruntime"):
        runner = graph_runner(backend, graph, precision="fp32", threads=1, selector_depths=[14, 8])
        with runner:
            good = runner.infer({"input": _x(), "depth": np.asarray(8, dtype=np.int64)})[0]
            assert good.shape == (4, 10) and good.any()
            for bad in (np.asarray(9, dtype=np.int64), np.asarray([8, 14]), np.asarray(8.0)):
                with pytest.raises(UsageError, match="is not one of this selector graph's depths \\(8, 14\\)"):
                    runner.infer({"input": _x(), "depth": bad})
                with pytest.raises(UsageError, match="selector graph's depths"):
                    runner.timed({"input": _x(), "depth": bad})


def test_the_model_cache_refuses_files_of_unknown_origin(folder):
    graph = folder / "cifar_resnet20-d8.onnx"
    with OvRunner(graph, threads=1):
        pass
    cache = folder / "engines" / "openvino"
    ledger = json.loads((cache / "ddnn-engines.json").read_text())
    assert ledger["files"] and all(name.endswith(".blob") for name in ledger["files"])
    with OvRunner(graph, threads=1):  # its own cache: accepted
        pass
    (cache / "123.blob").write_bytes(b"not from here")
    with pytest.raises(EngineMismatchError, match="123.blob was not written by ddnn-deploy"):
        OvRunner(graph, threads=1).activate()


def test_bf16_without_native_support_is_a_skipped_row_with_the_reason(folder, tmp_path, monkeypatch):
    from ddnn_deploy.formats.manifest import read_manifest
    from ddnn_deploy.measure import worker
    from ddnn_deploy.measure.plan import plan_jobs

    profile = get_profile("x86-openvino").model_copy(update={**QUICK, "precisions": ("bf16",)})
    job = plan_jobs(read_manifest(folder), profile, depths=[8])[0]
    (tmp_path / "job.json").write_text(job.model_dump_json())
    monkeypatch.setattr(openvino_runner, "has_native_bf16", lambda core, device="CPU": False)
    assert worker.main(str(tmp_path / "job.json"), str(tmp_path / "rows.json")) == 0
    (row,) = json.loads((tmp_path / "rows.json").read_text())
    assert row["status"] == "skipped" and "no native BF16" in row["error"]


def test_x86_cpu_measures_both_back_ends_and_every_precision(folder):
    profile = get_profile("x86-cpu").model_copy(update=QUICK)
    results = bench(folder, device=profile, depths=[8], dataset="fashion-mnist", limit=300, progress=False)
    rows = {(r.backend, r.precision): r for r in results.rows}
    expected = {("onnxruntime", "fp32"), ("openvino", "fp32"), ("openvino", "bf16")}
    assert set(rows) == expected  # no INT8 graph in this folder; bf16 is OpenVINO's only
    assert rows[("openvino", "fp32")].top1 == rows[("onnxruntime", "fp32")].top1  # the same FP32 graph
    bf16 = rows[("openvino", "bf16")]
    if NATIVE_BF16:
        assert bf16.status == "ok" and abs(bf16.top1 - rows[("onnxruntime", "fp32")].top1) <= 1.0
        assert bf16.runner["inference_precision"] in ("bf16", "<Type: 'bfloat16'>")
    else:
        assert bf16.status == "skipped"
    env = results.device["environment"]
    assert env["openvino"]["devices"] and isinstance(env["cpu_features"], list)


def test_int8_qdq_graphs_run_on_openvino_within_a_point_of_fp32(folder):
    from ddnn_deploy.quantize import calibrate

    calibrate(folder, depths=[14], eval_samples=None, samples=64)
    profile = get_profile("x86-openvino").model_copy(update={**QUICK, "precisions": ("fp32", "int8")})
    results = bench(folder, device=profile, depths=[14], dataset="fashion-mnist", limit=500, progress=False)
    top1 = {r.precision: r.top1 for r in results.rows}
    assert set(top1) == {"fp32", "int8"} and abs(top1["int8"] - top1["fp32"]) <= 1.0


def test_pick_chooses_across_back_ends_from_real_results(folder, tmp_path):
    """A budget between onnxruntime's and OpenVINO's full-depth latency picks full depth on the faster one."""
    from ddnn_deploy.pick import pick_depth

    profile = get_profile("x86-cpu").model_copy(update={**QUICK, "precisions": ("fp32", "bf16"), "min_iters": 200})
    results = bench(folder, device=profile, dataset="fashion-mnist", limit=300, progress=False)
    full = max(r.depth for r in results.rows)
    at_full = {(r.backend, r.precision): r.latency("p50") for r in results.rows if r.depth == full and r.status == "ok"}
    fastest = min(at_full, key=at_full.get)
    slowest = max(at_full.values())
    if at_full[fastest] >= 0.95 * slowest:
        pytest.skip(f"no back-end/precision is clearly faster at depth {full} on this CPU: {at_full}")
    budget = (at_full[fastest] + min(v for k, v in at_full.items() if k != fastest)) / 2
    rows = [r for r in results.rows if r.status == "ok"]
    best_top1 = max(r.top1 for r in rows if r.depth == full)
    picked = pick_depth(rows, budget, stat="p50")
    assert picked.depth == full or picked.top1 >= best_top1  # full depth (or an equally accurate one)
    assert (picked.backend, picked.precision) == fastest or picked.latency_ms <= budget


def test_a_missing_openvino_is_one_line(folder, tmp_path):
    blocker = tmp_path / "blocker" / "openvino"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('openvino is blocked for this test')\n")
    env = {**os.environ, "PYTHONPATH": f"{blocker.parent}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    run = [sys.executable, "-m", "ddnn_deploy", "bench", "--artifacts", str(folder), "--no-progress", "--depths", "8"]
    common = dict(capture_output=True, text=True, env=env, cwd=tmp_path)  # its results.json lands in tmp_path
    result = subprocess.run([*run, "--device", "x86-openvino"], timeout=120, **common)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 5 and len(lines) == 1 and "pip install openvino" in lines[0], result.stderr
    # x86-cpu goes on with onnxruntime and says why OpenVINO is left out
    result = subprocess.run([*run, "--device", "x86-cpu", "--json"], timeout=300, **common)
    assert result.returncode == 0, result.stderr
    assert "note: openvino is not installed, so 'x86-cpu' measures onnxruntime only" in result.stderr
    assert {r["backend"] for r in json.loads(result.stdout)["rows"]} == {"onnxruntime"}


def test_the_bench_table_names_the_back_end(folder, tmp_path):
    args = ["bench", "--artifacts", str(folder), "--device", "x86-openvino", "--depths", "8", "--no-progress"]
    result = cli_runner().invoke(cli, [*args, "--precision", "fp32", "--results", str(tmp_path / "r.json")])
    assert result.exit_code == 0, result.output
    assert "back-end" in result.stdout and "openvino" in result.stdout


def test_the_runtime_predicts_on_openvino(folder):
    from ddnn_deploy.runtime import DepthRuntime

    images = np.random.default_rng(1).integers(0, 255, (3, 28, 28), dtype=np.uint8)
    with_ort = DepthRuntime.from_artifacts(folder, device="x86-cpu", threads=1, depth=14)
    with_ov = DepthRuntime.from_artifacts(folder, device="x86-openvino", threads=1, use_selector=True, depth=14)
    assert [p.label for p in with_ov.predict(list(images))] == [p.label for p in with_ort.predict(list(images))]
    with pytest.raises(UsageError, match="depth 9 is not loaded; loaded depths: \\[8, 14\\]"):
        with_ov.logits(np.zeros((1, 1, 28, 28), np.float32), 9)
    with pytest.raises(UsageError, match="x86-cpu runs onnxruntime, which has no bf16; bf16 runs on openvino"):
        DepthRuntime.from_artifacts(folder, device="x86-cpu", precision="bf16")
    runner = with_ov._runners[14]  # and the runner under it checks too
    with pytest.raises(UsageError, match="selector graph's depths"):
        runner.infer({"input": np.zeros((1, 1, 28, 28), np.float32), "depth": np.asarray(9)})


def test_several_runners_share_one_cache_in_one_process(folder):
    """The runtime activates one runner per depth before any is closed: each must accept the others' blobs."""
    runners = [OvRunner(folder / f"cifar_resnet20-d{d}.onnx", threads=1) for d in (8, 14)]
    for runner in runners:
        runner.activate()
    for runner in runners:
        assert runner.infer({"input": _x(1)})[0].shape == (1, 10)
        runner.deactivate()
