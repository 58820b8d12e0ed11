"""TensorRT runner: build an engine on the target from a per-depth ONNX, cache it with a sidecar,
and check the sidecar BEFORE deserializing (deserializing runs native code: only engines this tool
built for this TensorRT, this GPU, this precision and this exact ONNX are ever loaded).

Versions: TensorRT 8.5 / 8.6 (JetPack 5 / 6), 10.x, and 11 (no precision builder flags and no
implicit INT8 calibrator: precision comes from the graph in a strongly typed network). FP16 uses
``BuilderFlag.FP16`` where it exists; INT8 needs a QDQ graph (explicit quantization).
Written against the documented Python API; it cannot run on machines without a GPU.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import atomic_path
from ..errors import DDNNError, EngineMismatchError, optional_import
from .base import Runner

PRECISIONS = ("fp32", "fp16", "int8")


def import_tensorrt():
    return optional_import("tensorrt")


def trt_major(version: str) -> int:
    return int(version.split(".")[0])


def expected_sidecar(
    *, trt_version: str, gpu: dict[str, Any], precision: str, onnx_sha256: str, max_batch: int
) -> dict[str, Any]:
    return {
        "format": "ddnn-deploy.engine",
        "version": 2,
        "tensorrt": trt_version,
        **{key: gpu.get(key) for key in GPU_KEYS},
        "precision": precision,
        "onnx_sha256": onnx_sha256,
        "max_batch": max_batch,
    }


# What identifies the device an engine was built for. Orin Nano, NX and AGX all report "Orin", compute 8.7:
# the SM count and memory tell them apart; CUDA runtime/driver and the L4T release change the kernels chosen.
GPU_KEYS = ("gpu", "compute_capability", "sm_count", "total_memory", "cuda_runtime", "cuda_driver", "l4t")
SIDECAR_KEYS = ("format", "version", "tensorrt", *GPU_KEYS, "precision", "onnx_sha256", "max_batch")


def read_sidecar(path: Path) -> dict[str, Any] | None:
    """The sidecar as a dict, or None when it is missing or unreadable (which means: rebuild, not a traceback)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError, RecursionError):  # unreadable, not UTF-8, not JSON, [[[[... nested too deep
        return None
    return data if isinstance(data, dict) else None


def sidecar_mismatch(
    found: dict[str, Any] | None, expected: dict[str, Any], engine_sha256: str | None = None
) -> str | None:
    """None when the cached engine may be loaded; otherwise why not (checked before deserializing)."""
    if found is None:
        return "no sidecar"
    for key in SIDECAR_KEYS:
        if found.get(key) != expected.get(key):
            return f"{key} differs (engine: {found.get(key)!r}, here: {expected.get(key)!r})"
    if engine_sha256 is not None and found.get("engine_sha256") != engine_sha256:
        return "the engine file does not match the sha256 its sidecar recorded (replaced after build?)"
    return None


def engine_footprint_mb(engine_mb: float | None, io_buffers: dict[str, tuple[int, int]]) -> float | None:
    """The engine's memory (free-memory delta around creating engine + context) plus its I/O buffers."""
    if engine_mb is None:
        return None
    return max(0.0, engine_mb) + sum(size for _, size in io_buffers.values()) / 2**20


def _l4t_present() -> bool:
    return Path("/etc/nv_tegra_release").exists()


def engine_paths(cache_dir: Path, onnx_path: Path, precision: str, max_batch: int) -> tuple[Path, Path]:
    stem = f"{onnx_path.stem}.{precision}.b{max_batch}"
    return cache_dir / f"{stem}.engine", cache_dir / f"{stem}.engine.json"


def builder_network_flags(trt: Any, precision: str) -> int:
    """EXPLICIT_BATCH on TensorRT 8 (implicit in 10+); STRONGLY_TYPED on 11 (precision from the graph)."""
    flags = 0
    major = trt_major(trt.__version__)
    if major < 10:
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    if major >= 11:
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    return flags


def build_engine(
    trt: Any,
    onnx_path: Path,
    precision: str,
    max_batch: int,
    input_shape: tuple[int, ...],
    workspace_mb: int = 1024,
    graph_precision: str = "fp32",
) -> bytes:
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(builder_network_flags(trt, precision))
    parser = trt.OnnxParser(network, logger)
    # parse from the path, not the bytes: the selector graph keeps its weights in external data beside the file
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise DDNNError(f"TensorRT could not parse {onnx_path.name}: {errors[:300]}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mb << 20)
    major = trt_major(trt.__version__)
    if precision == "fp16":
        if major >= 11 and graph_precision != "fp16":
            raise DDNNError("TensorRT 11 takes precision from the graph: export with --fp16 for FP16 engines")
        if major < 11:
            config.set_flag(trt.BuilderFlag.FP16)
    elif precision == "int8" and major < 11:
        config.set_flag(trt.BuilderFlag.INT8)  # explicit quantization: scales come from the QDQ nodes
    tensor = network.get_input(0)
    if tensor.shape[0] == -1:  # dynamic batch: one optimization profile up to max_batch
        profile = builder.create_optimization_profile()
        profile.set_shape(tensor.name, (1, *input_shape), (max_batch, *input_shape), (max_batch, *input_shape))
        config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise DDNNError(f"TensorRT failed to build an engine for {onnx_path.name} ({precision})")
    return bytes(serialized)


class TrtRunner(Runner):
    name = "tensorrt"

    def __init__(
        self,
        onnx_path: str | Path,
        *,
        precision: str = "fp16",
        cache_dir: str | Path | None = None,
        onnx_sha256: str | None = None,
        max_batch: int = 1,
        rebuild: bool = True,
        graph_precision: str = "fp32",
    ) -> None:
        super().__init__()
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}")
        self.onnx_path = Path(onnx_path)
        self.precision = precision
        self.cache_dir = Path(cache_dir) if cache_dir else self.onnx_path.parent / "engines"
        self.onnx_sha256 = onnx_sha256
        self.max_batch = max_batch
        self.rebuild = rebuild
        self.graph_precision = graph_precision
        self.built = False

    def _activate(self) -> None:
        from .cuda_buffers import CudaBuffers, gpu_identity

        trt = import_tensorrt()
        sha = self.onnx_sha256 or hashlib.sha256(self.onnx_path.read_bytes()).hexdigest()
        expected = expected_sidecar(
            trt_version=trt.__version__,
            gpu=gpu_identity(),
            precision=self.precision,
            onnx_sha256=sha,
            max_batch=self.max_batch,
        )
        engine_path, sidecar_path = engine_paths(self.cache_dir, self.onnx_path, self.precision, self.max_batch)
        found = read_sidecar(sidecar_path)
        blob = engine_path.read_bytes() if engine_path.is_file() else None  # read ONCE: hashed and deserialized
        engine_sha = hashlib.sha256(blob).hexdigest() if blob is not None else None
        reason = sidecar_mismatch(found, expected, engine_sha) if blob is not None else "no cached engine"
        if reason is not None:
            if blob is not None and not self.rebuild:
                raise EngineMismatchError(f"refusing cached engine {engine_path.name}: {reason}")
            import onnx

            shape = tuple(
                d.dim_value
                for d in onnx.load(str(self.onnx_path), load_external_data=False)
                .graph.input[0]
                .type.tensor_type.shape.dim[1:]
            )
            blob = build_engine(
                trt, self.onnx_path, self.precision, self.max_batch, shape, graph_precision=self.graph_precision
            )
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            with atomic_path(engine_path) as tmp:
                tmp.write_bytes(blob)
            with atomic_path(sidecar_path) as tmp:
                tmp.write_text(json.dumps({**expected, "engine_sha256": hashlib.sha256(blob).hexdigest()}, indent=1))
            self.built = True
        self.buffers = CudaBuffers()  # first: pycuda pushes the primary context the engine must live in
        self.logger = trt.Logger(trt.Logger.WARNING)
        self.runtime = trt.Runtime(self.logger)
        before = self.buffers.memory_used_mb()  # device-wide: other processes (and on Jetson the OS) count too
        self.engine = self.runtime.deserialize_cuda_engine(blob)  # the bytes whose sha256 was checked
        if self.engine is None:
            raise EngineMismatchError(f"TensorRT could not deserialize {engine_path.name}; delete it to rebuild")
        self.context = self.engine.create_execution_context()
        after = self.buffers.memory_used_mb()
        # the engine's own footprint: the free-memory delta around creating it (weights + context activations)
        self.engine_mb = after - before if before is not None and after is not None else None
        self.trt = trt
        self.names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.inputs = [n for n in self.names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.outputs = [n for n in self.names if n not in self.inputs]
        self._device: dict[str, tuple[int, int]] = {}  # name -> (pointer, bytes)

    def _buffer(self, name: str, nbytes: int) -> int:
        ptr, size = self._device.get(name, (0, 0))
        if size < nbytes:
            ptr = self.buffers.alloc(nbytes)
            self._device[name] = (ptr, nbytes)
        return ptr

    def _infer(self, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        for name in self.inputs:
            host = np.ascontiguousarray(feed[name])
            # False when the shape is outside the engine's optimisation profile: TensorRT 10 then leaves the input
            # unspecified and older versions keep the previous shape; either way the result would be wrong
            if self.context.set_input_shape(name, host.shape) is False:
                raise DDNNError(
                    f"input {name} of shape {list(host.shape)} is outside the engine's profile (batch 1-"
                    f"{self.max_batch}); feed it in chunks of at most {self.max_batch}"
                )
            ptr = self._buffer(name, host.nbytes)
            self.buffers.to_device(ptr, host)
            self.context.set_tensor_address(name, ptr)
        results = []
        for name in self.outputs:
            shape = tuple(self.context.get_tensor_shape(name))
            dtype = np.dtype(self.trt.nptype(self.engine.get_tensor_dtype(name)))
            host = np.empty(shape, dtype=dtype)
            ptr = self._buffer(name, host.nbytes)
            self.context.set_tensor_address(name, ptr)
            results.append(host)
        if not self.context.execute_async_v3(self.buffers.stream_handle):
            raise DDNNError("TensorRT execution failed")
        for name, host in zip(self.outputs, results):
            self.buffers.to_host(host, self._device[name][0])
        self.buffers.synchronize()
        return results

    def _deactivate(self) -> None:
        self.context = self.engine = self.runtime = None  # TensorRT objects go before their memory
        self.buffers.close()

    def info(self) -> dict[str, Any]:
        trt = import_tensorrt()
        footprint = engine_footprint_mb(getattr(self, "engine_mb", None), getattr(self, "_device", {}))
        engine = getattr(self, "engine", None)
        scratch = getattr(engine, "device_memory_size_v2", None) or getattr(engine, "device_memory_size", None)
        return {
            "backend": self.name,
            "tensorrt": trt.__version__,
            "precision": self.precision,
            "engine_built_now": self.built,
            "buffers": getattr(self.buffers, "backend", None),
            # this engine's own memory, not the device-wide total (which counts other processes, and the OS on
            # a Jetson, where GPU memory IS system RAM)
            **({"gpu_memory_mb": footprint} if footprint is not None else {}),
            **({"engine_scratch_mb": int(scratch) / 2**20} if scratch else {}),
            "gpu_memory_shared_with_cpu": _l4t_present(),
        }
