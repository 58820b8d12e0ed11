"""The TensorRT runner's logic that needs no GPU: sidecar checks before deserializing, network flags
per TensorRT version, engine cache paths. The real build/run is marked and skipped without TensorRT."""

import importlib.util
from types import SimpleNamespace

import pytest

from ddnn_deploy.errors import MissingDependencyError
from ddnn_deploy.runners import tensorrt_runner as trt_runner


def _fake_trt(version):
    # the enum values of the real bindings: 8.x has EXPLICIT_BATCH=0; 10.x EXPLICIT_BATCH=0 (deprecated) and
    # STRONGLY_TYPED=1; 11.x dropped EXPLICIT_BATCH, so STRONGLY_TYPED=0
    major = int(version.split(".")[0])
    if major >= 11:
        flags = SimpleNamespace(STRONGLY_TYPED=0)
    elif major == 10:
        flags = SimpleNamespace(EXPLICIT_BATCH=0, STRONGLY_TYPED=1)
    else:
        flags = SimpleNamespace(EXPLICIT_BATCH=0)
    return SimpleNamespace(__version__=version, NetworkDefinitionCreationFlag=flags)


def test_network_flags_follow_the_tensorrt_version():
    assert trt_runner.builder_network_flags(_fake_trt("8.5.2"), "fp16") == 1  # EXPLICIT_BATCH
    assert trt_runner.builder_network_flags(_fake_trt("8.6.1"), "fp16") == 1
    assert trt_runner.builder_network_flags(_fake_trt("10.3.0"), "fp16") == 0  # explicit batch is implicit
    assert trt_runner.builder_network_flags(_fake_trt("11.0.0"), "fp16") == 1 << 0  # strongly typed


def test_sidecar_is_checked_field_by_field():
    gpu = {"gpu": "Orin", "compute_capability": "8.7"}
    expected = trt_runner.expected_sidecar(
        trt_version="10.3.0", gpu=gpu, precision="fp16", onnx_sha256="ab", max_batch=1
    )
    assert trt_runner.sidecar_mismatch(dict(expected), expected) is None
    assert trt_runner.sidecar_mismatch(None, expected) == "no sidecar"
    for key, value in (
        ("tensorrt", "8.6.1"),
        ("compute_capability", "7.2"),
        ("precision", "int8"),
        ("onnx_sha256", "cd"),
        ("gpu", "Xavier"),
        ("max_batch", 8),
        ("batch_sizes", [1, 8]),
    ):
        reason = trt_runner.sidecar_mismatch({**expected, key: value}, expected)
        assert reason is not None and key in reason
    recorded = {**expected, "engine_sha256": "11"}
    assert trt_runner.sidecar_mismatch(recorded, expected, engine_sha256="11") is None
    assert "does not match the sha256" in trt_runner.sidecar_mismatch(recorded, expected, engine_sha256="22")


def test_orin_modules_cuda_and_l4t_are_told_apart(tmp_path):
    # Orin Nano 8 GB and AGX Orin 64 GB both report "Orin", compute 8.7: SM count and memory differ
    nano = {
        "gpu": "Orin",
        "compute_capability": "8.7",
        "sm_count": 8,
        "total_memory": 7_990_000_000,
        "cuda_runtime": 12020,
        "cuda_driver": 12020,
        "l4t": "# R36 (release), REVISION: 3.0",
    }
    agx = {**nano, "sm_count": 16, "total_memory": 64_300_000_000}
    built_on_nano = trt_runner.expected_sidecar(
        trt_version="10.3.0", gpu=nano, precision="fp16", onnx_sha256="ab", max_batch=1
    )
    on_agx = trt_runner.expected_sidecar(trt_version="10.3.0", gpu=agx, precision="fp16", onnx_sha256="ab", max_batch=1)
    assert "sm_count differs" in trt_runner.sidecar_mismatch(built_on_nano, on_agx)
    for key, value in (("cuda_driver", 12060), ("l4t", "# R36 (release), REVISION: 4.0")):
        assert key in trt_runner.sidecar_mismatch({**built_on_nano, key: value}, built_on_nano)
    old = {**{k: v for k, v in built_on_nano.items() if k not in ("sm_count", "total_memory")}, "version": 1}
    assert "version differs" in trt_runner.sidecar_mismatch(old, built_on_nano)  # version-1 sidecars: rebuild


def test_a_corrupt_sidecar_means_rebuild_not_a_traceback(tmp_path):
    sidecar = tmp_path / "d8.fp16.b1.engine.json"
    for content in ("{not json", "[1, 2]", "\xff\xfe"):
        sidecar.write_text(content)
        assert trt_runner.read_sidecar(sidecar) is None
    assert trt_runner.read_sidecar(tmp_path / "missing.json") is None
    sidecar.write_text('{"format": "ddnn-deploy.engine"}')
    assert trt_runner.read_sidecar(sidecar) == {"format": "ddnn-deploy.engine"}


def test_engine_cache_paths(tmp_path):
    engine, sidecar = trt_runner.engine_paths(tmp_path, tmp_path / "cifar_resnet20-d8.onnx", "fp16", 4)
    assert engine.name == "cifar_resnet20-d8.fp16.b4.engine" and sidecar.name == engine.name + ".json"
    engine, _ = trt_runner.engine_paths(tmp_path, tmp_path / "d8.onnx", "fp32", 8, batch_sizes=[8, 1])
    assert engine.name == "d8.fp32.b1-8.engine"  # one engine per set of profiles


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="TensorRT is installed here")
def test_missing_tensorrt_is_one_clear_error():
    with pytest.raises(MissingDependencyError, match="pip install 'ddnn-deploy\\[trt\\]'"):
        trt_runner.import_tensorrt()


@pytest.mark.tensorrt
@pytest.mark.gpu
@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is None, reason="TensorRT is not installed (no GPU here)")
def test_engine_builds_caches_and_matches_onnxruntime(tiny_ckpt, tmp_path):  # pragma: no cover - needs a GPU
    import numpy as np

    from ddnn_deploy import bench, export, get_profile
    from ddnn_deploy.runners import OrtRunner

    manifest = export(tiny_ckpt, tmp_path / "a", depths="8", simplify=False, selector=True).to_json_dict()
    onnx_file = tmp_path / "a" / manifest["artifacts"][0]["path"]
    # accuracy through the engine (batch 1 profile, 300 images fed in chunks) equals onnxruntime's on the CPU
    jetson = get_profile("jetson").model_copy(update={"precisions": ("fp32",), "min_iters": 20, "min_seconds": 0.0})
    on_gpu = bench(tmp_path / "a", device=jetson, dataset="fashion-mnist", limit=300, progress=False)
    on_cpu = bench(tmp_path / "a", device="x86-cpu", dataset="fashion-mnist", limit=300, progress=False)
    assert on_gpu.rows[0].status == "ok" and abs(on_gpu.rows[0].top1 - on_cpu.rows[0].top1) <= 0.5
    x = np.random.default_rng(0).standard_normal((1, 1, 28, 28)).astype(np.float32)
    with OrtRunner(onnx_file) as ort_runner:
        expected = ort_runner.infer({"input": x})[0]
    with trt_runner.TrtRunner(onnx_file, precision="fp32", cache_dir=tmp_path / "engines") as runner:
        got = runner.infer({"input": x})[0]
        assert runner.built
    np.testing.assert_allclose(got, expected, atol=1e-3)
    with trt_runner.TrtRunner(onnx_file, precision="fp32", cache_dir=tmp_path / "engines") as runner:
        assert not runner.built  # the cached engine's sidecar matched


def _bound_runner(tmp_path, batch_sizes, accepts):
    """A TrtRunner past activation, with TensorRT's context and engine replaced by recorders."""
    runner = trt_runner.TrtRunner(tmp_path / "d8.onnx", precision="fp16", batch_sizes=batch_sizes)
    calls = []
    runner.context = SimpleNamespace(
        set_input_shape=lambda name, shape: calls.append(("shape", shape)) or accepts,
        set_optimization_profile_async=lambda index, stream: calls.append(("profile", index)) or True,
    )
    runner.engine = SimpleNamespace(
        num_optimization_profiles=len(batch_sizes), get_tensor_dtype=lambda name: SimpleNamespace(name="FLOAT")
    )
    runner.buffers = SimpleNamespace(stream_handle=0)
    runner.inputs, runner.active, runner._profile = ["input"], True, 0
    return runner, calls


def test_an_input_outside_the_engine_profile_is_refused_not_run(tmp_path):
    import numpy as np

    from ddnn_deploy.errors import DDNNError

    # larger than every profile: refused before TensorRT is asked anything
    runner, calls = _bound_runner(tmp_path, [1], accepts=True)
    with pytest.raises(DDNNError, match=r"a batch of 256 is outside the engine's profiles \(batch 1-1\)"):
        runner.infer({"input": np.zeros((256, 1, 28, 28), np.float32)})
    assert calls == []
    # inside a profile, but TensorRT says no (set_input_shape returns False, TensorRT 8.5-11): nothing runs after it
    runner, calls = _bound_runner(tmp_path, [1, 8], accepts=False)
    with pytest.raises(DDNNError, match=r"shape \[8, 1, 28, 28\] is outside the engine's profile \(batch 1-8\)"):
        runner.infer({"input": np.zeros((8, 1, 28, 28), np.float32)})
    assert calls == [("profile", 1), ("shape", (8, 1, 28, 28))]  # batch 8 runs in its own profile (opt = 8)


def test_each_timed_batch_size_gets_its_own_profile():
    assert trt_runner.optimization_profiles([8, 1, 8, 32]) == [(1, 1, 1), (1, 8, 8), (1, 32, 32)]
    assert [trt_runner.profile_for(b, [1, 8, 32]) for b in (1, 8, 32, 5, 20)] == [0, 1, 2, 1, 2]
    assert trt_runner.profile_for(33, [1, 8, 32]) is None


def test_tensorrt_dtypes_map_to_numpy_without_trt_nptype():
    import numpy as np

    from ddnn_deploy.errors import DDNNError

    # the members as the bindings name them (DataType.HALF.name == "HALF"); str() gives "DataType.HALF"
    assert trt_runner.numpy_dtype(SimpleNamespace(name="HALF")) == np.float16
    assert trt_runner.numpy_dtype(SimpleNamespace(name="BOOL")) == np.bool_  # not np.bool (gone in numpy 1.24)
    assert trt_runner.numpy_dtype("DataType.INT64") == np.int64
    with pytest.raises(DDNNError, match="BF16 has no numpy equivalent"):
        trt_runner.numpy_dtype(SimpleNamespace(name="BF16"))


def test_fp32_rows_clear_tf32_and_fp16_rows_set_fp16():
    flags = SimpleNamespace(TF32="TF32", FP16="FP16", INT8="INT8")

    def build(version, precision, graph="fp32"):
        calls = []
        config = SimpleNamespace(
            set_flag=lambda f: calls.append(("set", f)), clear_flag=lambda f: calls.append(("clear", f))
        )
        trt_runner.set_precision_flags(
            SimpleNamespace(__version__=version, BuilderFlag=flags), config, precision, graph
        )
        return calls

    assert build("10.3.0", "fp32") == [("clear", "TF32")]
    assert build("10.3.0", "fp16") == [("set", "FP16")]
    assert build("8.6.1", "int8") == [("set", "INT8")]
    assert build("11.0.0", "fp16", graph="fp16") == []  # strongly typed: precision from the graph
    with pytest.raises(Exception, match="export with --fp16"):
        build("11.0.0", "fp16")


def test_an_old_driver_is_one_line_that_says_what_to_install():
    from ddnn_deploy.runners.cuda_buffers import _check

    with pytest.raises(MissingDependencyError, match=r"cudaErrorInsufficientDriver.*ddnn-deploy\[trt-cu12\]"):
        _check((35,))  # what cuda-python 13 returns on a CUDA 12 driver
    assert _check((0, 7)) == 7
    with pytest.raises(RuntimeError, match="CUDA runtime error 2"):
        _check((2, None))


def test_gpu_memory_is_the_engines_own_not_the_devices():
    # 300 MB more in use after creating engine + context, and two I/O buffers of 1 MiB and 40 KiB
    assert trt_runner.engine_footprint_mb(300.0, {"input": (1, 2**20), "logits": (2, 40 * 1024)}) == pytest.approx(
        300.0 + 1 + 40 / 1024
    )
    assert trt_runner.engine_footprint_mb(None, {}) is None  # unknown, not the device-wide total
    assert trt_runner.engine_footprint_mb(-3.0, {}) == 0.0  # another process freed memory meanwhile
