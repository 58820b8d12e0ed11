"""The three file formats (manifest, results, profiles): one-line errors naming the file and the field, and a
property-based sweep that feeds mutated files to the readers: only the project's own errors may escape."""

from __future__ import annotations

import copy
import hashlib
import json
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ddnn_deploy.errors import ArtifactsError, DDNNError, ProfileError, ResultsError, UsageError
from ddnn_deploy.formats.manifest import parse_manifest, read_manifest, write_manifest
from ddnn_deploy.formats.profiles import DeviceProfile, TimingSettings, get_profile, load_profiles
from ddnn_deploy.formats.results import parse_results, read_results, write_results
from ddnn_deploy.measure.plan import plan_jobs
from ddnn_deploy.pick import pick_depth

SHA = "ab" * 32


def artifact(depth, precision="fp32", path=None, **extra):
    blocks = {8: [1, 1, 1], 14: [2, 2, 2]}[depth]
    return {
        "depth": depth,
        "blocks": blocks,
        "kind": "depth",
        "precision": precision,
        "path": path or f"net-d{depth}.{precision}.onnx",
        "sha256": SHA,
        "bytes": 10,
        "params": 1000,
        "macs": 5000,
        "opset": 17,
        "exporter": "torchscript",
        "simplified": True,
        "simplify_note": "ok",
        "batch": None,
        "parity": {"max_rel_err": 1e-6},
        **extra,
    }


def manifest_dict(artifacts=None):
    return {
        "format": "ddnn-deploy.export",
        "version": 1,
        "tool_version": "0.1.0",
        "created": "2026-11-25T00:00:00",
        "checkpoint": {"path": "model.pt", "sha256": SHA},
        "arch": "cifar_resnet20",
        "dataset": "fashion-mnist",
        "input": {"name": "input", "dtype": "float32", "layout": "NCHW", "shape": ["batch", 1, 28, 28]},
        "output": {"name": "logits", "dtype": "float32", "shape": ["batch", 10]},
        "preprocess": {"scale": 1 / 255, "mean": [0.286], "std": [0.353], "layout": "NCHW"},
        "class_names": [str(i) for i in range(10)],
        "export_seconds": 1.0,
        "artifacts": artifacts
        if artifacts is not None
        else [
            artifact(8),
            artifact(14),
            {
                "depth": [8, 14],
                "blocks": [[1, 1, 1], [2, 2, 2]],
                "kind": "selector",
                "precision": "fp32",
                "path": "net-selector.onnx",
                "sha256": SHA,
                "bytes": 20,
                "data": {"path": "net-selector.onnx.data", "sha256": SHA, "bytes": 5},
                "macs": {"8": 1, "14": 2},
            },
        ],
    }


def latency(p90):
    return {
        "mean": p90 * 0.9,
        "std": 0.01,
        "min": p90 * 0.5,
        "p50": p90 * 0.8,
        "p90": p90,
        "p95": p90 * 1.1,
        "p99": p90 * 1.2,
        "max": p90 * 2,
        "n": 50,
        "cv": 0.05,
    }


def results_dict():
    rows = [
        {
            "depth": d,
            "blocks": b,
            "kind": "depth",
            "precision": "fp32",
            "backend": "onnxruntime",
            "batch": 1,
            "status": "ok",
            "error": None,
            "latency_ms": latency(p90),
            "throughput": 1000 / p90,
            "accuracy": {"top1": top1, "top5": 99.0, "n": 100},
            "memory_mb": {"peak_rss_mb": 80.0},
            "samples_ms": [p90] * 3,
        }
        for d, b, p90, top1 in ((8, [1, 1, 1], 0.2, 91.0), (14, [2, 2, 2], 0.4, 93.0))
    ]
    rows.append(
        {
            "depth": 20,
            "blocks": [3, 3, 3],
            "kind": "depth",
            "precision": "fp32",
            "backend": "onnxruntime",
            "batch": 1,
            "status": "error",
            "error": "worker died",
            "latency_ms": None,
        }
    )
    return {
        "format": "ddnn-deploy.bench",
        "version": 1,
        "arch": "cifar_resnet20",
        "device": {"profile": {"name": "x86-cpu"}, "environment": {"cpu": "test"}},
        "settings": {"batch_sizes": [1]},
        "artifacts": {"path": "a", "checkpoint_sha256": SHA},
        "rows": rows,
    }


# ---------------------------------------------------------------- one line naming the field


@pytest.mark.parametrize(
    "mutate, field, message",
    [
        (
            lambda m: m["artifacts"][2].__setitem__("path", "/etc/passwd"),
            "artifacts[2].path",
            "must be a relative path inside the folder",
        ),
        (lambda m: m["artifacts"][0].__setitem__("path", "a/../../x.onnx"), "artifacts[0].path", "relative path"),
        (lambda m: m["artifacts"][1].__setitem__("bytes", "10"), "artifacts[1].bytes", "must be an integer"),
        (lambda m: m["artifacts"][0].pop("sha256"), "artifacts[0].sha256", "required field is missing"),
        (lambda m: m["artifacts"][0].__setitem__("sha256", "xyz"), "artifacts[0].sha256", "must be a sha256"),
        (lambda m: m["preprocess"].__setitem__("std", [float("nan")]), "preprocess.std[0]", "must be a finite number"),
        (
            lambda m: m["artifacts"][0]["parity"].__setitem__("max_rel_err", float("inf")),
            "artifacts[0].parity.max_rel_err",
            "must be a finite number",
        ),
        (lambda m: m["artifacts"][0].__setitem__("precision", "int4"), "artifacts[0].precision", "'fp32', 'fp16' or"),
        (
            lambda m: m["artifacts"][2]["data"].__setitem__("path", "../w.data"),
            "artifacts[2].data.path",
            "relative path",
        ),
        (lambda m: m["input"].__setitem__("shape", ["batch", 28, 28]), "input.shape", "[batch, C, H, W]"),
    ],
)
def test_manifest_errors_name_the_field(mutate, field, message):
    data = manifest_dict()
    mutate(data)
    with pytest.raises(ArtifactsError) as caught:
        parse_manifest(data, where="manifest.json")
    text = str(caught.value)
    assert text.startswith(f"manifest.json: {field}") and message in text and "\n" not in text, text


def test_results_and_profile_errors_name_the_field(tmp_path):
    data = results_dict()
    data["rows"][1]["latency_ms"]["p90"] = float("nan")
    with pytest.raises(ResultsError, match=r"^results.json: rows\[1\].latency_ms.p90: must be a finite number"):
        parse_results(data)
    data = results_dict()
    data["rows"][0]["status"] = "fine"
    with pytest.raises(ResultsError, match=r"rows\[0\].status: input should be 'ok', 'error' or 'skipped'"):
        parse_results(data)
    toml = tmp_path / "p.toml"
    toml.write_text('[profiles.nano]\nextends = "jetson"\nbatch_sizes = [1, "4"]\n')
    with pytest.raises(ProfileError, match=r"p.toml: profiles.nano: batch_sizes\[1\]: must be an integer"):
        load_profiles(toml)
    toml.write_text("[profiles.nano]\nmin_seconds = inf\n")
    with pytest.raises(ProfileError, match="profiles.nano: min_seconds: must be a finite number"):
        load_profiles(toml)


def test_round_trips_keep_every_key(tmp_path):
    data = manifest_dict()
    data["artifacts"][0]["future_key"] = {"kept": True}
    for name in ("net-d8.fp32.onnx", "net-d14.fp32.onnx", "net-selector.onnx"):
        (tmp_path / name).write_bytes(b"")  # an empty ONNX model: no tensors, no external data
    (tmp_path / "net-selector.onnx.data").write_bytes(b"x")
    for entry in data["artifacts"]:
        entry["sha256"] = hashlib.sha256(b"").hexdigest()
    data["artifacts"][2]["data"]["sha256"] = hashlib.sha256(b"x").hexdigest()
    write_manifest(tmp_path, data)
    assert json.loads((tmp_path / "manifest.json").read_text()) == data
    manifest = read_manifest(tmp_path)
    assert manifest.file(manifest.artifacts[0]) == (tmp_path / "net-d8.fp32.onnx").resolve()
    results = results_dict()
    write_results(results, tmp_path / "r.json")
    assert json.loads((tmp_path / "r.json").read_text()) == results
    assert read_results(tmp_path / "r.json").rows[1].latency("p90") == 0.4
    assert (tmp_path / "r.csv").read_text().splitlines()[0].startswith("depth,blocks,kind")


def test_profiles_and_timing_are_objects():
    quick = get_profile("x86-cpu").with_timing(TimingSettings(min_iters=5, min_seconds=0.0))
    assert quick.min_iters == 5 and quick.timing.min_seconds == 0.0 and quick.batch_sizes == (1, 8)
    assert get_profile(quick) is quick
    with pytest.raises(UsageError, match="device must be a profile name or a DeviceProfile, not int"):
        get_profile(3)
    with pytest.raises(Exception, match="backend must be one of"):
        DeviceProfile(name="x", backend="tpu")


def test_pick_takes_results_objects_rows_or_dicts():
    data = results_dict()
    assert pick_depth(parse_results(data), 0.5).depth == 14
    assert pick_depth(data["rows"], 0.3).depth == 8
    with pytest.raises(UsageError, match=r"rows\[0\]: .*must be an integer"):
        pick_depth([{**data["rows"][0], "batch": "one"}], 1.0)
    with pytest.raises(UsageError, match="must be BenchResults or a list of result rows, not dict"):
        pick_depth(data, 1.0)


# ---------------------------------------------------------------- plan_jobs: which graph each precision uses


def _plan_manifest(with_fp16_for_8=True):
    arts = [
        artifact(8),
        artifact(14),
        artifact(8, "int8", "d8-cpu.onnx", target="cpu"),
        artifact(8, "int8", "d8-trt.onnx", target="tensorrt"),
        artifact(14, "int8", "d14-trt.onnx", target="tensorrt"),
    ]
    if with_fp16_for_8:
        arts.append(artifact(8, "fp16"))
    return parse_manifest(manifest_dict(arts))


def test_plan_jobs_tensorrt_fp16_uses_the_fp16_graph_where_export_made_one():
    jetson = get_profile("jetson")
    jobs = {j.depth: j for j in plan_jobs(_plan_manifest(), jetson)}
    assert jobs[8].graph_precision == "fp16" and jobs[8].file == "net-d8.fp16.onnx"
    assert jobs[14].graph_precision == "fp32" and jobs[14].precision == "fp16"  # FP16 builder flag on the FP32 graph
    assert all(j.threads is None and j.batch_sizes == [1] for j in jobs.values())


def test_plan_jobs_int8_target_preference():
    trt = get_profile("jetson").model_copy(update={"precisions": ("int8",)})
    assert sorted((j.depth, j.file) for j in plan_jobs(_plan_manifest(), trt)) == [
        (8, "d8-trt.onnx"),
        (14, "d14-trt.onnx"),
    ]
    cpu = get_profile("x86-cpu").model_copy(update={"precisions": ("fp32", "int8")})
    jobs = sorted(
        (j.backend, j.depth, j.precision, j.file)
        for j in plan_jobs(_plan_manifest(), cpu, backends=["onnxruntime", "openvino"])
    )
    # CPU back-ends take the CPU-target (U8S8) INT8 graph, never TensorRT's S8S8 one (slower than FP32 there)
    assert jobs == [
        (b, d, p, f)
        for b in ("onnxruntime", "openvino")
        for d, p, f in ((8, "fp32", "net-d8.fp32.onnx"), (8, "int8", "d8-cpu.onnx"), (14, "fp32", "net-d14.fp32.onnx"))
    ]
    # onnxruntime's TensorRT provider takes TensorRT's graph
    ort_trt = cpu.model_copy(update={"provider": "tensorrt", "precisions": ("int8",)})
    assert sorted(j.file for j in plan_jobs(_plan_manifest(), ort_trt, backends=["onnxruntime"])) == [
        "d14-trt.onnx",
        "d8-trt.onnx",
    ]
    # bf16 is OpenVINO's: the FP32 graph with its precision hint, nothing on onnxruntime
    bf16 = cpu.model_copy(update={"precisions": ("bf16",)})
    assert sorted(
        (j.backend, j.file) for j in plan_jobs(_plan_manifest(), bf16, backends=["onnxruntime", "openvino"])
    ) == [
        ("openvino", "net-d14.fp32.onnx"),
        ("openvino", "net-d8.fp32.onnx"),
    ]
    with pytest.raises(UsageError, match="precisions \\['bf16'\\] on onnxruntime\\); bf16 is measured on openvino"):
        plan_jobs(_plan_manifest(), bf16, backends=["onnxruntime"])


def test_plan_jobs_selector_depths_and_errors():
    manifest = parse_manifest(manifest_dict())
    profile = get_profile("x86-cpu").model_copy(update={"optional_backends": ()})
    jobs = plan_jobs(manifest, profile, include_selector=True, depths=[14])
    assert [(j.kind, j.depth, j.blocks) for j in jobs] == [("depth", 14, [2, 2, 2]), ("selector", 14, [2, 2, 2])]
    assert (
        jobs[1].feed_extra()["depth"] == 14 and jobs[1].selector_depths == [8, 14] and jobs[0].selector_depths is None
    )
    with pytest.raises(UsageError, match=r"no depth \[20\]; exported depths: \[8, 14\]"):
        plan_jobs(manifest, profile, depths=[20])
    with pytest.raises(UsageError, match="no artifact matches profile 'x86-cpu'"):
        plan_jobs(manifest, profile.model_copy(update={"precisions": ("int8",)}))


# ---------------------------------------------------------------- hypothesis: mutated files


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6,
)


def _paths(value, prefix=()):
    yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _paths(item, (*prefix, index))


@st.composite
def mutated(draw, base):
    data = copy.deepcopy(base)
    for _ in range(draw(st.integers(1, 3))):
        paths = [p for p in _paths(data) if p]
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = data
        for key in path[:-1]:
            parent = parent[key]
        action = draw(st.sampled_from(["replace", "delete", "add"]))
        if action == "delete":
            del parent[path[-1]]
        elif action == "add" and isinstance(parent, dict):
            parent[draw(st.text(max_size=6))] = draw(JSON_VALUES)
        else:
            parent[path[-1]] = draw(JSON_VALUES)
    return data


def _only_our_errors(call):
    try:
        call()
    except DDNNError as exc:
        assert "\n" not in str(exc) and str(exc), repr(exc)


@settings(
    max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=mutated(manifest_dict()))
def test_mutated_manifests_raise_only_our_errors(data, tmp_path):
    _only_our_errors(lambda: parse_manifest(data))
    (tmp_path / "manifest.json").write_text(json.dumps(data))  # NaN and Infinity too: Python's json writes them
    _only_our_errors(lambda: read_manifest(tmp_path))


@settings(
    max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=mutated(results_dict()))
def test_mutated_results_raise_only_our_errors(data, tmp_path):
    _only_our_errors(lambda: parse_results(data))
    (tmp_path / "results.json").write_text(json.dumps(data))
    _only_our_errors(lambda: read_results(tmp_path / "results.json"))
    _only_our_errors(lambda: pick_depth(data.get("rows") if isinstance(data, dict) else data, 1.0))


TOML_SCALARS = (
    st.booleans() | st.integers(-(2**64), 2**64) | st.text(max_size=8) | st.floats(allow_nan=True, allow_infinity=True)
)


def _toml_value(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf") if math.isinf(value) else repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(value) if isinstance(value, str) else str(value)


@settings(
    max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    table=st.dictionaries(
        st.sampled_from(
            [
                "extends",
                "backend",
                "provider",
                "precisions",
                "threads",
                "batch_sizes",
                "warmup_iters",
                "warmup_seconds",
                "min_iters",
                "min_seconds",
                "accuracy_batch",
                "max_cv",
                "description",
                "unknown_key",
            ]
        ),
        TOML_SCALARS | st.lists(TOML_SCALARS, max_size=3),
        max_size=5,
    )
)
def test_mutated_profiles_raise_only_our_errors(table, tmp_path):
    path = tmp_path / "profiles.toml"
    path.write_text("[profiles.fuzz]\n" + "".join(f"{k} = {_toml_value(v)}\n" for k, v in table.items()))
    _only_our_errors(lambda: load_profiles(path))
