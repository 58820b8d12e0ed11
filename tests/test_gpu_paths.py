"""What the GPU paths do that can be checked without a GPU: onnxruntime's provider options per precision, the
I/O-binding call (real, on the CPU device), the TensorRT provider's engine-cache ledger, the worker's GPU-compute
figure, and the torch runner's CUDA checks. benchmarks/gpu_check.sh runs the rest on a GPU."""

from __future__ import annotations

import importlib.util
import json
from types import SimpleNamespace

import numpy as np
import pytest

from ddnn_deploy.errors import EngineMismatchError, MissingDependencyError, UsageError
from ddnn_deploy.formats.profiles import TimingSettings
from ddnn_deploy.runners import cache_ledger
from ddnn_deploy.runners.onnxruntime_runner import OrtRunner, provider_list

HAS_TORCH = importlib.util.find_spec("torch") is not None


def test_provider_options_follow_the_precision(tmp_path):
    assert provider_list("cpu") == ["CPUExecutionProvider"]
    (cuda, options), cpu = provider_list("cuda", "fp32")
    assert cuda == "CUDAExecutionProvider" and options["use_tf32"] == 0 and cpu == "CPUExecutionProvider"
    assert provider_list("cuda", "fp16")[0][1]["use_tf32"] == 1
    (trt, trt_options), (behind, _), last = provider_list("tensorrt", "fp16", tmp_path / "cache")
    assert (trt, behind, last) == ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")
    assert trt_options["trt_fp16_enable"] is True and trt_options["trt_int8_enable"] is False
    assert trt_options["trt_engine_cache_enable"] and trt_options["trt_engine_cache_path"] == str(tmp_path / "cache")
    int8 = provider_list("tensorrt", "int8", None)[0][1]
    assert int8["trt_int8_enable"] is True and "trt_engine_cache_path" not in int8


def test_io_binding_runs_the_graph_and_matches_a_plain_run(tiny_artifacts):
    x = np.random.default_rng(0).standard_normal((4, 1, 28, 28)).astype(np.float32)
    with OrtRunner(tiny_artifacts / "cifar_resnet20-d8.onnx", threads=1) as runner:
        expected = runner.infer({"input": x})[0]
        binding = runner.bound_call({"input": x}, device="cpu")()  # the same call the GPU providers time
        np.testing.assert_allclose(binding.copy_outputs_to_cpu()[0], expected, rtol=1e-5, atol=1e-5)
        assert runner.compute_timer({"input": x}) is None  # the CPU provider has no device-only figure
        assert runner.info()["provider"] == "CPUExecutionProvider"


def test_the_engine_cache_refuses_files_of_unknown_origin(tmp_path):
    cache = tmp_path / "ort-tensorrt"
    cache_ledger.check_cache(cache)  # no folder yet: nothing to refuse
    cache.mkdir()
    engine = cache / "TensorrtExecutionProvider_TRTKernel_graph_1234_sm90.engine"
    engine.write_bytes(b"built by onnxruntime")
    with pytest.raises(EngineMismatchError, match="was not written by ddnn-deploy.*delete it"):
        cache_ledger.check_cache(cache)
    cache_ledger.record_cache(cache)  # what a finished run does
    cache_ledger.check_cache(cache)
    ledger = json.loads((cache / cache_ledger.LEDGER).read_text())
    assert list(ledger["files"]) == [engine.name] and ledger["files"][engine.name]["size"] == 20
    engine.write_bytes(b"built by someone else")  # same name, other bytes
    with pytest.raises(EngineMismatchError, match="changed since ddnn-deploy recorded it"):
        cache_ledger.check_cache(cache)
    (cache / cache_ledger.LEDGER).write_text("[1, 2]")
    with pytest.raises(EngineMismatchError, match="not a ddnn-deploy engine ledger"):
        cache_ledger.check_cache(cache)


def test_the_tensorrt_provider_checks_its_cache_before_onnxruntime_loads_it(tiny_artifacts, tmp_path, monkeypatch):
    import onnxruntime

    cache = tmp_path / "engines" / "ort-tensorrt"
    cache.mkdir(parents=True)
    (cache / "planted.engine").write_bytes(b"\x7fELF")
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: ["TensorrtExecutionProvider"])
    started = []
    monkeypatch.setattr(onnxruntime, "InferenceSession", lambda *a, **k: started.append(a))
    runner = OrtRunner(
        tiny_artifacts / "cifar_resnet20-d8.onnx", provider="tensorrt", engine_cache=tmp_path / "engines"
    )
    with pytest.raises(EngineMismatchError, match="planted.engine was not written by ddnn-deploy"):
        runner.activate()
    assert started == []  # refused before onnxruntime saw the folder


def test_gpu_compute_comes_from_the_timed_calls_not_the_warm_up():
    from ddnn_deploy.measure.worker import gpu_compute

    job = SimpleNamespace(timing=TimingSettings(warmup_iters=0, warmup_seconds=0, min_iters=3, min_seconds=0))
    events = SimpleNamespace(compute_ms=[50.0, 50.0, 1.0, 2.0, 3.0])  # two warm-up calls, then three timed ones
    stats = gpu_compute(events, {}, job, timed_calls=3)
    assert stats["n"] == 3 and stats["max"] == 3.0 and stats["mean"] == pytest.approx(2.0)
    calls = []
    bound = SimpleNamespace(compute_ms=None, compute_timer=lambda feed: lambda: calls.append(1))
    assert gpu_compute(bound, {}, job, timed_calls=3)["n"] == 3 and len(calls) == 3  # a second, device-only pass
    cpu = SimpleNamespace(compute_ms=None, compute_timer=lambda feed: None)
    assert gpu_compute(cpu, {}, job, timed_calls=3) is None


@pytest.mark.skipif(not HAS_TORCH, reason="needs torch")
def test_the_torch_runner_refuses_what_it_cannot_measure(tiny_ckpt):
    import torch

    from ddnn_deploy.runners.torch_runner import TorchRunner

    with pytest.raises(UsageError, match="fp16 on CUDA only"):
        TorchRunner(tiny_ckpt, 8, precision="fp16")
    with pytest.raises(UsageError, match="fp32 or fp16, not int8"):
        TorchRunner(tiny_ckpt, 8, precision="int8", device="cuda")
    if not torch.cuda.is_available():
        with pytest.raises(MissingDependencyError, match="sees no CUDA GPU"):
            TorchRunner(tiny_ckpt, 8, device="cuda").activate()
    x = np.zeros((2, 1, 28, 28), np.float32)
    with TorchRunner(tiny_ckpt, 8, threads=1) as runner:  # the CPU: timed() is infer()
        np.testing.assert_allclose(runner.timed({"input": x})(), runner.infer({"input": x}))
        assert runner.compute_ms is None


def _has_cuda_python() -> bool:
    try:
        from ddnn_deploy.runners.cuda_buffers import _cudart

        return _cudart() is not None
    except Exception:  # noqa: BLE001
        return False


@pytest.mark.gpu
@pytest.mark.skipif(not _has_cuda_python(), reason="needs cuda-python (cuda.bindings or cuda.cudart)")
def test_cuda_buffers_copy_page_locked_memory_and_time_with_events():  # pragma: no cover - needs a GPU
    from ddnn_deploy.runners.cuda_buffers import CudaBuffers, gpu_identity

    identity = gpu_identity()
    assert identity["sm_count"] > 0 and identity["total_memory"] > 2**30 and identity["cuda_driver"] >= 11000
    buffers = CudaBuffers()
    try:
        assert buffers.backend == "cuda-python"
        source = buffers.pinned((32, 3, 224, 224), np.float32)
        source[...] = np.random.default_rng(0).standard_normal(source.shape)
        back = buffers.pinned(source.shape, np.float32)
        assert back.flags["C_CONTIGUOUS"] and back.ctypes.data != source.ctypes.data
        before = buffers.memory_used_mb()
        device = buffers.alloc(source.nbytes)
        start, end = buffers.event(), buffers.event()
        buffers.record(start)
        buffers.to_device(device, source)
        buffers.record(end)
        buffers.to_host(back, device)
        buffers.synchronize()
        np.testing.assert_array_equal(back, source)  # bit-exact through the GPU
        copy_ms = buffers.elapsed_ms(start, end)
        assert 0 < copy_ms < 1000  # 19 MB over PCIe / NVLink-C2C: well under a second
        assert buffers.memory_used_mb() - before >= source.nbytes / 2**20 * 0.9  # the allocation shows
    finally:
        buffers.close()


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_TORCH, reason="needs torch")
def test_the_torch_runner_on_cuda_matches_the_cpu(tiny_ckpt):  # pragma: no cover - needs a GPU
    from ddnn_deploy.runners.torch_runner import TorchRunner

    x = np.random.default_rng(0).standard_normal((8, 1, 28, 28)).astype(np.float32)
    with TorchRunner(tiny_ckpt, 14, threads=1) as cpu:
        expected = cpu.infer({"input": x})[0]
    with TorchRunner(tiny_ckpt, 14, device="cuda") as gpu:
        np.testing.assert_allclose(gpu.infer({"input": x})[0], expected, rtol=1e-4, atol=1e-4)  # FP32, no TF32
        run = gpu.timed({"input": x})
        for _ in range(5):
            out = run()
        np.testing.assert_allclose(out.numpy(), expected, rtol=1e-4, atol=1e-4)
        assert len(gpu.compute_ms) == 5 and all(ms > 0 for ms in gpu.compute_ms)
        assert gpu.info()["tf32"] is False
    with TorchRunner(tiny_ckpt, 14, device="cuda", precision="fp16") as half:
        got = half.infer({"input": x})[0]
        assert got.dtype == np.float32 and (got.argmax(1) == expected.argmax(1)).mean() >= 0.75
