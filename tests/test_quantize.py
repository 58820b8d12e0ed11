"""INT8 calibration with onnxruntime's real quantization tooling on tiny exported graphs."""

import json
import shutil

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from ddnn_deploy.data import PREPROCESS
from ddnn_deploy.errors import AccuracyDropError, ArtifactsError, DataError, UsageError
from ddnn_deploy.formats.manifest import read_manifest
from ddnn_deploy.quantize import QuantConfig, calibrate
from ddnn_deploy.quantize.reader import FeedReader


@pytest.fixture()
def artifacts(tiny_artifacts, tmp_path):
    copy = tmp_path / "artifacts"  # calibrate rewrites the manifest: each test gets its own copy
    shutil.copytree(tiny_artifacts, copy)
    return copy


def _zero_point_types(path):
    model = onnx.load(str(path))
    inits = {i.name: i for i in model.graph.initializer}
    kinds = set()
    for node in model.graph.node:
        if node.op_type == "QuantizeLinear" and len(node.input) > 2 and node.input[2] in inits:
            kinds.add(numpy_helper.to_array(inits[node.input[2]]).dtype.name)
    return kinds


def test_feed_reader_is_a_calibration_data_reader():
    from onnxruntime.quantization import CalibrationDataReader

    images = np.random.default_rng(0).integers(0, 255, (10, 1, 28, 28), dtype=np.uint8)
    reader = FeedReader(images, PREPROCESS["fashion-mnist"], input_shape=(1, 28, 28), batch=4)
    assert isinstance(reader, CalibrationDataReader)
    sizes = []
    while (item := reader.get_next()) is not None:
        sizes.append(item["input"].shape[0])
        assert item["input"].dtype == np.float32
    assert sizes == [4, 4, 2] and reader.get_next() is None
    static = FeedReader(images, PREPROCESS["fashion-mnist"], input_shape=(1, 28, 28), static_batch=4)
    assert [b["input"].shape[0] for b in static] == [4, 4]  # a static graph never sees a short batch


def test_calibrate_every_depth_for_cpu_and_tensorrt(artifacts):
    # the tiny one-epoch model is near chance level, so INT8 noise moves it by a point or two: the guard's
    # threshold is exercised in its own test; the demo model's drops are measured in benchmarks/
    manifest = calibrate(artifacts, eval_samples=300, max_drop=10.0, progress=False).to_json_dict()
    int8 = {a["depth"]: a for a in manifest["artifacts"] if a["precision"] == "int8"}
    assert sorted(int8) == [8, 14]
    for entry in int8.values():
        assert entry["target"] == "cpu" and entry["method"] == "minmax" and entry["per_channel"] is True
        assert entry["calibration"]["samples"] == 512 and entry["calibration"]["valid_for_accuracy"]
        assert len(entry["calibration"]["sha256"]) == 64
        assert abs(entry["accuracy"]["drop"]) <= 10.0 and entry["accuracy"]["n"] == 300
        ops = {n.op_type for n in onnx.load(str(artifacts / entry["path"])).graph.node}
        assert {"QuantizeLinear", "DequantizeLinear"} <= ops
        assert _zero_point_types(artifacts / entry["path"]) == {"uint8"}  # unsigned activations for x86
    read_manifest(artifacts)  # sha256 of every file, new ones included, verifies
    assert any(a["kind"] == "selector" and a["precision"] == "fp32" for a in manifest["artifacts"])

    trt = calibrate(artifacts, QuantConfig(target="tensorrt"), depths=[8], eval_samples=None).to_json_dict()
    entry = next(a for a in trt["artifacts"] if a.get("target") == "tensorrt")
    assert _zero_point_types(artifacts / entry["path"]) == {"int8"}  # symmetric signed for TensorRT
    from ddnn_deploy.quantize.conformance import tensorrt_qdq_problems

    trt_graph = onnx.load(str(artifacts / entry["path"]))
    assert tensorrt_qdq_problems(trt_graph) == []  # INT8 DQ inputs only, zero points 0, per-channel axis 0
    assert not [i for i in trt_graph.graph.initializer if i.data_type == onnx.TensorProto.INT32]  # float biases
    cpu_graph = onnx.load(str(artifacts / int8[8]["path"]))
    assert any("uint8" in p or "INT32" in p or "int32" in p for p in tensorrt_qdq_problems(cpu_graph))
    assert len([a for a in trt["artifacts"] if a["precision"] == "int8"]) == 3


@pytest.mark.parametrize("int8_top1", [40.0, float("nan")])  # a NaN accuracy fails the guard too
def test_accuracy_guard_names_the_depth_and_keeps_fp32(artifacts, monkeypatch, int8_top1):
    import importlib

    calibrate_module = importlib.import_module("ddnn_deploy.quantize.calibrate")

    def guard(*args, **kwargs):  # the real guard runs in test_calibrate_every_depth...; here the drop is set
        return {"fp32_top1": 50.0, "int8_top1": int8_top1, "drop": 50.0 - int8_top1, "n": 200}

    monkeypatch.setattr(calibrate_module, "_guard", guard)
    before = json.loads((artifacts / "manifest.json").read_text())
    with pytest.raises(AccuracyDropError, match="depth 8 drops .* depth 14 drops"):
        calibrate(artifacts, eval_samples=200, max_drop=1.0)
    after = json.loads((artifacts / "manifest.json").read_text())
    assert [a["path"] for a in after["artifacts"]] == [a["path"] for a in before["artifacts"]]
    assert not list(artifacts.glob("*.int8-*.onnx"))


def test_recalibration_replaces_old_int8_files_atomically(artifacts):
    first = calibrate(artifacts, depths=[8], eval_samples=None, dataset="random", samples=8).to_json_dict()
    old = next(a["path"] for a in first["artifacts"] if a["precision"] == "int8")
    second = calibrate(
        artifacts, QuantConfig(method="percentile", percentile=99.9), depths=[8], eval_samples=None, samples=64
    ).to_json_dict()
    new = [a for a in second["artifacts"] if a["precision"] == "int8"]
    assert len(new) == 1 and new[0]["path"] != old and new[0]["method"] == "percentile"
    assert new[0]["percentile"] == 99.9
    assert not (artifacts / old).exists() and (artifacts / new[0]["path"]).exists()
    read_manifest(artifacts)  # every listed file still matches its sha256


def test_random_calibration_is_marked_not_valid_for_accuracy(artifacts):
    manifest = calibrate(artifacts, dataset="random", samples=16, depths=[8]).to_json_dict()
    entry = next(a for a in manifest["artifacts"] if a["precision"] == "int8")
    assert entry["calibration"]["valid_for_accuracy"] is False and "accuracy" not in entry


def test_bad_input_leaves_artifacts_untouched(artifacts, tmp_path):
    before = (artifacts / "manifest.json").read_bytes()
    with pytest.raises(UsageError, match="unknown calibration method"):
        calibrate(artifacts, QuantConfig(method="kl"))
    with pytest.raises(UsageError, match="config must be a QuantConfig, not str"):
        calibrate(artifacts, "tensorrt")
    with pytest.raises(UsageError, match="percentile must be a number"):
        QuantConfig(percentile=120)
    with pytest.raises(UsageError, match="unknown INT8 target"):
        QuantConfig(target="npu")
    wrong = tmp_path / "wrong.npz"
    np.savez(wrong, images=np.zeros((4, 3, 32, 32), dtype=np.uint8))
    with pytest.raises(DataError, match="\\[3, 32, 32\\] .* wants \\[1, 28, 28\\]"):
        calibrate(artifacts, dataset=str(wrong))
    empty = tmp_path / "empty.npz"
    np.savez(empty, images=np.zeros((0, 1, 28, 28), dtype=np.uint8))
    with pytest.raises(DataError, match="no images"):
        calibrate(artifacts, dataset=str(empty))
    with pytest.raises(DataError, match="neither a dataset name"):
        calibrate(artifacts, dataset=str(tmp_path / "nothing-here"))
    with pytest.raises(UsageError, match="no FP32 depth \\[20\\]"):
        calibrate(artifacts, depths=[20])
    with pytest.raises(ArtifactsError, match="no manifest.json"):
        calibrate(tmp_path)
    assert (artifacts / "manifest.json").read_bytes() == before
    assert not [p for p in artifacts.iterdir() if p.name.startswith(".calibrate-")]


def test_calibrate_checks_numbers_before_any_work(artifacts):
    before = (artifacts / "manifest.json").read_bytes()
    for bad in ({"max_drop": float("nan")}, {"max_drop": -1.0}, {"samples": 0}, {"eval_samples": -5}):
        with pytest.raises(UsageError):
            calibrate(artifacts, progress=False, **bad)
    with pytest.raises(UsageError):
        QuantConfig(method="percentile", percentile=float("nan"))
    assert (artifacts / "manifest.json").read_bytes() == before


def test_two_calibrations_of_one_folder_take_turns(artifacts):
    """A second writer is told the folder is busy (exit 11); the holder's manifest stays consistent."""
    import subprocess
    import sys

    from ddnn_deploy.atomic import writer_lock
    from ddnn_deploy.errors import BusyError

    with writer_lock(artifacts), pytest.raises(BusyError, match="is writing the export folder"):
        calibrate(artifacts, dataset="random", samples=8, progress=False)
    script = (
        "import sys; from ddnn_deploy.quantize import calibrate; "
        "calibrate(sys.argv[1], dataset='random', samples=64, depths=[8, 14], progress=False)"
    )
    runs = [
        subprocess.Popen([sys.executable, "-c", script, str(artifacts)], stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outcomes = sorted((run.wait(timeout=300), run.stderr.read()) for run in runs)
    assert outcomes[0][0] == 0, outcomes  # one ran; the other ran after it or was told the folder was busy
    assert outcomes[1][0] == 0 or "is writing the export folder" in outcomes[1][1], outcomes
    manifest = read_manifest(artifacts)
    listed = {a.path for a in manifest.artifacts}
    assert all((artifacts / path).exists() for path in listed)  # no entry names a deleted file
    on_disk = {p.name for p in artifacts.iterdir() if p.suffix == ".onnx"}
    assert on_disk == listed and len(list(manifest.select(precision="int8"))) == 2
    assert [p.name for p in artifacts.iterdir() if p.name.startswith(".")] == []
    assert [p.name for p in artifacts.parent.iterdir() if p.name.startswith(".")] == []


def test_a_killed_calibration_leaves_nothing_the_next_run_keeps(artifacts):
    import subprocess
    import sys

    dead = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True).stdout)
    orphan = artifacts / f".work.calibrate-{dead}-x1y2"
    orphan.mkdir()
    (orphan / "half.onnx").write_bytes(b"\0" * 10)
    calibrate(artifacts, dataset="random", samples=8, depths=[8], progress=False)
    assert not orphan.exists()
