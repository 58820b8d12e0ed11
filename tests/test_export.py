"""Export with the real exporter, onnxsim, onnx.checker and onnxruntime on a tiny trained checkpoint."""

import json
import os
import subprocess
import sys

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from ddnn_deploy import export
from ddnn_deploy.atomic import sha256_file
from ddnn_deploy.checkpoint import content_sha256, load_checkpoint
from ddnn_deploy.errors import CheckpointError, ParityError, UsageError
from ddnn_deploy.formats.manifest import read_manifest
from ddnn_deploy.onnx_export import api
from ddnn_deploy.onnx_export.simplify import simplify_in_child
from ddnn_deploy.spec import DepthConfig


def _run(path, x, depth=None):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feed = {"input": x}
    if depth is not None:
        feed["depth"] = np.asarray(depth, dtype=np.int64)
    return session.run(None, feed)[0]


@pytest.fixture(scope="module")
def exported(tiny_ckpt, tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "artifacts"
    messages = []
    manifest = export(tiny_ckpt, out, selector=True, progress=False, log=messages.append).to_json_dict()
    assert "depth 8 (1-1-1): exporting" in messages and any(m.startswith("selector: ok") for m in messages)
    return out, manifest


def test_manifest_and_per_depth_graphs(exported, tiny_ckpt):
    out, manifest = exported
    on_disk = json.loads((out / "manifest.json").read_text())
    assert on_disk == manifest
    assert manifest["format"] == "ddnn-deploy.export" and manifest["version"] == 1
    assert manifest["checkpoint"]["sha256"] == sha256_file(tiny_ckpt)
    assert set(manifest["preprocess"]) >= {"scale", "mean", "std", "layout"}
    per_depth = [a for a in manifest["artifacts"] if a["kind"] == "depth"]
    assert [a["depth"] for a in per_depth] == [8, 14]
    for a in per_depth:
        path = out / a["path"]
        assert sha256_file(path) == a["sha256"] and path.stat().st_size == a["bytes"]
        assert a["precision"] == "fp32" and a["exporter"] == "torchscript" and a["opset"] == 17
        assert a["parity"]["max_rel_err"] <= 1e-4 and a["parity"]["real_samples"] > 0
        model = onnx.load(str(path))
        ops = [n.op_type for n in model.graph.node]
        assert "BatchNormalization" not in ops  # the depth's BN statistics are folded
        assert ops.count("Conv") == 1 + 2 * sum(a["blocks"])
        meta = {p.key: p.value for p in model.metadata_props}
        assert json.loads(meta["ddnn.depth"]) == a["depth"] and meta["ddnn.checkpoint_sha256"] == a.get(
            "checkpoint_sha256", manifest["checkpoint"]["sha256"]
        )
        assert json.loads(meta["ddnn.class_names"])[0] == "T-shirt/top"
        assert [d.dim_param for d in model.graph.input[0].type.tensor_type.shape.dim][0] == "batch"
    assert per_depth[0]["bytes"] < per_depth[1]["bytes"]  # a shallower depth is a smaller file
    # onnxsim ran and its graph passed verification: the artifact is the simplified one
    assert all(a["simplified"] is True and a["simplify_note"] == "ok" for a in per_depth)
    assert manifest["checkpoint"]["path"] == str(tiny_ckpt)


def test_graphs_match_pytorch_with_each_depths_own_bn(exported, tiny_ckpt):
    out, manifest = exported
    ckpt = load_checkpoint(tiny_ckpt)
    x = np.random.default_rng(0).standard_normal((5, 1, 28, 28)).astype(np.float32)
    model = ckpt.build()  # every depth's own BN statistics: model(x, depth) is the reference
    for a in (a for a in manifest["artifacts"] if a["kind"] == "depth"):
        with torch.no_grad():
            expected = model(torch.from_numpy(x), a["depth"]).numpy()
            shared = model(torch.from_numpy(x), a["depth"], shared_bn=True).numpy()
        got = _run(out / a["path"], x)
        assert np.abs(got - expected).max() <= 1e-4 * np.abs(expected).max()
        assert np.abs(got - shared).max() > 1e-3 * np.abs(expected).max()  # not the shared statistics


def test_selector_equals_per_depth_graphs_and_stores_weights_once(exported):
    out, manifest = exported
    selector = next(a for a in manifest["artifacts"] if a["kind"] == "selector")
    per_depth = {a["depth"]: a for a in manifest["artifacts"] if a["kind"] == "depth"}
    assert selector["depth"] == [8, 14]
    x = np.random.default_rng(1).standard_normal((3, 1, 28, 28)).astype(np.float32)
    for depth, a in per_depth.items():
        np.testing.assert_allclose(_run(out / selector["path"], x, depth), _run(out / a["path"], x), rtol=0, atol=1e-5)
    # weights stored once: the selector's files are about the size of the deepest graph (this tiny
    # width-8 net has relatively large per-branch graph structure; the demo model is at 1.05x)
    assert selector["bytes"] < 1.25 * per_depth[14]["bytes"]
    assert selector["bytes"] < 0.8 * (per_depth[8]["bytes"] + per_depth[14]["bytes"])
    assert selector["weights"]["stored_bytes"] < selector["weights"]["referenced_bytes"]
    assert (out / selector["data"]["path"]).exists()
    with pytest.raises(Exception, match="idx=1000011"):
        _run(out / selector["path"], x, 11)  # a depth the graph lacks fails loudly


def test_static_batch_input_size_and_no_simplify(tiny_ckpt, tmp_path):
    manifest = export(tiny_ckpt, tmp_path / "b2", depths="8", batch=2, input_size=32, simplify=False).to_json_dict()
    a = manifest["artifacts"][0]
    assert a["simplified"] is False and "skipped" in a["simplify_note"] and a["batch"] == 2
    assert manifest["input"]["shape"] == [2, 1, 32, 32]
    model = onnx.load(str(tmp_path / "b2" / a["path"]))
    assert [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim] == [2, 1, 32, 32]
    assert a["parity"]["real_samples"] == 0  # 32 px inputs: no real samples of the 28 px dataset


def test_onnxsim_crash_or_hang_keeps_the_unsimplified_graph(tiny_ckpt, tmp_path, monkeypatch):
    src, dst = tmp_path / "src.onnx", tmp_path / "dst.onnx"
    src.write_bytes(b"")
    segfault = (sys.executable, "-c", "import ctypes; ctypes.string_at(0)")
    ok, reason = simplify_in_child(src, dst, command=segfault)
    assert not ok and "signal 11" in reason
    ok, reason = simplify_in_child(src, dst, timeout=1, command=(sys.executable, "-c", "import time; time.sleep(30)"))
    assert not ok and "timed out" in reason

    def crashing(src_path, dst_path, timeout=300.0):
        return simplify_in_child(src_path, dst_path, timeout, command=segfault)

    monkeypatch.setattr(api, "simplify_in_child", crashing)
    manifest = export(tiny_ckpt, tmp_path / "out", depths="8").to_json_dict()
    a = manifest["artifacts"][0]
    assert a["simplified"] is False and "signal 11" in a["simplify_note"]
    assert a["parity"]["max_rel_err"] <= 1e-4


def test_bad_input_leaves_nothing_half_written(tiny_ckpt, tmp_path):
    with pytest.raises(UsageError, match="valid depths: 8 \\(1-1-1\\), 14 \\(2-2-2\\)"):
        export(tiny_ckpt, tmp_path / "a", depths="20")
    (tmp_path / "file").write_text("x")
    with pytest.raises(UsageError, match="is a file"):
        export(tiny_ckpt, tmp_path / "file")
    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "keep.txt").write_text("precious")
    with pytest.raises(UsageError, match="--force"):
        export(tiny_ckpt, existing)
    with pytest.raises(ParityError, match="parity check failed"):
        export(tiny_ckpt, existing, depths="8", force=True, simplify=False, tolerance=1e-12)
    assert [p.name for p in existing.iterdir()] == ["keep.txt"]  # a failed export leaves it untouched
    with pytest.raises(ParityError, match="parity check failed at depth 8: max abs error"):
        export(tiny_ckpt, tmp_path / "c", depths="8", simplify=False, tolerance=1e-12)
    assert not (tmp_path / "c").exists()  # a failed export leaves nothing
    with pytest.raises(UsageError, match="cannot write"):
        export(tiny_ckpt, "/proc/ddnn-deploy-test/out")
    plain = tmp_path / "plain.pt"
    torch.save({"w": torch.zeros(2)}, plain)
    with pytest.raises(CheckpointError, match="not a ddnn-deploy checkpoint"):
        export(plain, tmp_path / "b")
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]
    assert leftovers == []


def test_force_replaces_a_previous_export_and_nothing_else(tiny_ckpt, tmp_path):
    out = tmp_path / "art"
    export(tiny_ckpt, out, depths="14", simplify=False)
    export(tiny_ckpt, out, depths="8", simplify=False, force=True)
    assert sorted(p.name for p in out.iterdir()) == ["cifar_resnet20-d8.onnx", "manifest.json"]
    (out / "demo").mkdir()  # the README's case: another export (or anything of the user's) inside --out
    (out / "demo" / "manifest.json").write_text("{}")
    (out / "results.json").write_text("{}")
    export(tiny_ckpt, out, depths="14", simplify=False, force=True)  # replaces d8 by d14, keeps the rest
    assert sorted(p.name for p in out.iterdir()) == ["cifar_resnet20-d14.onnx", "demo", "manifest.json", "results.json"]
    assert (out / "demo" / "manifest.json").read_text() == "{}" and (out / "results.json").read_text() == "{}"
    (out / "cifar_resnet20-d8.onnx").write_text("the user's own file, not listed by the manifest")
    with pytest.raises(UsageError, match="no previous export there wrote"):
        export(tiny_ckpt, out, depths="8", simplify=False, force=True)
    assert (out / "cifar_resnet20-d8.onnx").read_text().startswith("the user's") and read_manifest(out)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no lock or temp left


def test_numbers_are_checked_finite_and_nan_parity_fails(tiny_ckpt, tmp_path):
    for bad in ({"tolerance": float("nan")}, {"tolerance": -1.0}, {"batch": 0}, {"opset": 5}, {"opset": 99}):
        with pytest.raises(UsageError):
            export(tiny_ckpt, tmp_path / "x", depths="8", **bad)
    with pytest.raises(UsageError, match="18-"):
        export(tiny_ckpt, tmp_path / "x", depths="8", exporter="dynamo", opset=17)
    nan = load_checkpoint(tiny_ckpt)
    nan.state_dict = {
        k: v.float().fill_(float("nan")) if v.is_floating_point() else v for k, v in nan.state_dict.items()
    }
    with pytest.raises(ParityError, match="not finite"):
        export(nan, tmp_path / "nan", depths="8", simplify=False)
    assert not (tmp_path / "nan").exists()


def test_a_checkpoint_without_preprocessing_is_refused(tiny_ckpt, tmp_path):
    ckpt = load_checkpoint(tiny_ckpt)
    ckpt.preprocess = {}
    with pytest.raises(CheckpointError, match="no input preprocessing"):
        export(ckpt, tmp_path / "out", depths="8", simplify=False)


def test_two_writers_of_one_folder_take_turns(tiny_ckpt, tmp_path):
    from ddnn_deploy.atomic import writer_lock
    from ddnn_deploy.errors import BusyError

    with writer_lock(tmp_path / "out"), pytest.raises(BusyError, match=r"another ddnn-deploy run \(pid \d+\)"):
        export(tiny_ckpt, tmp_path / "out", depths="8", simplify=False)
    assert not (tmp_path / "out").exists()


def test_stale_temporaries_of_a_killed_export_are_removed(tiny_ckpt, tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)  # a process that has exited: its temp folder is an orphan
    orphan = tmp_path / f".out.tmp-{pid}-abcd"
    orphan.mkdir()
    (orphan / "x.onnx").write_text("half")
    alive = tmp_path / f".out.tmp-{os.getpid()}-live"  # a running owner's work is left alone
    alive.mkdir()
    mine = tmp_path / f".other.tmp-{pid}-zz"  # another target's: not this run's business
    mine.mkdir()
    export(tiny_ckpt, tmp_path / "out", depths="8", simplify=False)
    assert not orphan.exists() and alive.exists() and mine.exists()


def test_dynamo_exporter_is_recorded_and_verified(tiny_ckpt, tmp_path):
    pytest.importorskip("onnxscript", reason="the dynamo exporter needs onnxscript (in the export extra)")
    manifest = export(tiny_ckpt, tmp_path / "dyn", depths="8", exporter="dynamo", simplify=False).to_json_dict()
    a = manifest["artifacts"][0]
    assert a["exporter"] == "dynamo" and a["parity"]["max_rel_err"] <= 1e-4
    assert a["parity"]["batch_sizes"] == [1, 3, 8]  # the dynamic batch axis works
    meta = {p.key: p.value for p in onnx.load(str(tmp_path / "dyn" / a["path"])).metadata_props}
    assert meta["ddnn.exporter"] == "dynamo"


def test_fp16_graphs_for_tensorrt_11(tiny_ckpt, tmp_path):
    manifest = export(tiny_ckpt, tmp_path / "h", depths="14", fp16=True, simplify=False).to_json_dict()
    fp32, fp16 = manifest["artifacts"]
    assert (fp32["precision"], fp16["precision"]) == ("fp32", "fp16") and fp16["from"] == fp32["path"]
    assert fp16["bytes"] < 0.6 * fp32["bytes"]  # weights stored in half precision
    assert fp16["parity"]["max_rel_err"] <= 1e-2 and fp16["parity"]["tolerance"] == 1e-2
    model = onnx.load(str(tmp_path / "h" / fp16["path"]))
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT  # float32 in and out
    x = np.random.default_rng(2).standard_normal((2, 1, 28, 28)).astype(np.float32)
    np.testing.assert_allclose(
        _run(tmp_path / "h" / fp16["path"], x), _run(tmp_path / "h" / fp32["path"], x), atol=5e-2
    )


def test_checkpoint_object_depth_forms_and_argument_types(tiny_ckpt, tmp_path):
    ckpt = load_checkpoint(tiny_ckpt)
    manifest = export(
        ckpt, tmp_path / "obj", depths=[DepthConfig((2, 2, 2)), "1-1-1"], simplify=False, progress=False
    ).to_json_dict()
    assert manifest["checkpoint"] == {"path": None, "sha256": content_sha256(ckpt)}
    assert [a["depth"] for a in manifest["artifacts"]] == [8, 14]
    meta = {p.key: p.value for p in onnx.load(str(tmp_path / "obj" / manifest["artifacts"][0]["path"])).metadata_props}
    assert meta["ddnn.checkpoint_sha256"] == content_sha256(ckpt)
    for kwargs, message in (
        ({"ckpt": 3.5}, "ckpt must be a Checkpoint or a path, not float"),
        ({"out": 7}, "out must be a path, not int"),
        ({"progress": print}, "progress must be bool, not builtin_function_or_method"),
        ({"log": "stderr"}, "log must be a callable"),
        ({"batch": 1.5}, "batch must be int or None, not float"),
        ({"selector": 1}, "selector must be bool, not int"),
        ({"depths": 8.5}, "depths must be"),
        ({"depths": [8], "selector": True}, "--selector needs at least two depths"),
    ):
        arguments = {"ckpt": ckpt, "out": tmp_path / "bad", **kwargs}
        with pytest.raises(UsageError, match=message):
            export(arguments.pop("ckpt"), arguments.pop("out"), **arguments)
    assert not (tmp_path / "bad").exists()
