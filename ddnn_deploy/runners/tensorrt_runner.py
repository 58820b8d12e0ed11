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
from collections.abc import Callable, Sequence
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
    *,
    trt_version: str,
    gpu: dict[str, Any],
    precision: str,
    onnx_sha256: str,
    max_batch: int,
    batch_sizes: Sequence[int] | None = None,
) -> dict[str, Any]:
    return {
        "format": "ddnn-deploy.engine",
        "version": 3,
        "tensorrt": trt_version,
        **{key: gpu.get(key) for key in GPU_KEYS},
        "precision": precision,
        "onnx_sha256": onnx_sha256,
        "max_batch": max_batch,
        "batch_sizes": sorted(set(batch_sizes or (max_batch,))),
    }


# What identifies the device an engine was built for. Orin Nano, NX and AGX all report "Orin", compute 8.7:
# the SM count and memory tell them apart; CUDA runtime/driver and the L4T release change the kernels chosen.
GPU_KEYS = ("gpu", "compute_capability", "sm_count", "total_memory", "cuda_runtime", "cuda_driver", "l4t")
SIDECAR_KEYS = ("format", "version", "tensorrt", *GPU_KEYS, "precision", "onnx_sha256", "max_batch", "batch_sizes")


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


def engine_paths(
    cache_dir: Path, onnx_path: Path, precision: str, max_batch: int, batch_sizes: Sequence[int] | None = None
) -> tuple[Path, Path]:
    batches = sorted(set(batch_sizes or (max_batch,)))
    stem = f"{onnx_path.stem}.{precision}.b{'-'.join(str(b) for b in batches)}"
    return cache_dir / f"{stem}.engine", cache_dir / f"{stem}.engine.json"


def optimization_profiles(batch_sizes: Sequence[int]) -> list[tuple[int, int, int]]:
    """(min, opt, max) batch of each optimisation profile: one per timed batch size, tuned for it (opt = that
    batch size, as trtexec's --optShapes), each taking any batch from 1 up to it."""
    return [(1, b, b) for b in sorted(set(batch_sizes))]


def profile_for(batch: int, batch_sizes: Sequence[int]) -> int | None:
    """The index of the profile that runs ``batch``: its own where it is a timed batch size, else the smallest
    that holds it; None when no profile does (the caller then feeds smaller chunks)."""
    for index, (_, _, most) in enumerate(optimization_profiles(batch_sizes)):
        if batch <= most:
            return index
    return None


# TensorRT's DataType members by name -> numpy. Not trt.nptype(): TensorRT 8.5's uses np.bool, which numpy 1.24
# removed. BF16 / FP8 / INT4 have no numpy type; the graphs ddnn-deploy exports never have such inputs or outputs.
NUMPY_DTYPES = {
    "FLOAT": np.float32,
    "HALF": np.float16,
    "INT8": np.int8,
    "INT32": np.int32,
    "INT64": np.int64,
    "BOOL": np.bool_,
    "UINT8": np.uint8,
}


def numpy_dtype(trt_dtype: Any) -> np.dtype:
    """The numpy dtype of a TensorRT ``DataType`` member (8.5 to 11)."""
    name = getattr(trt_dtype, "name", str(trt_dtype).rsplit(".", 1)[-1])
    if name not in NUMPY_DTYPES:
        raise DDNNError(f"TensorRT tensor type {name} has no numpy equivalent; export the graph with float outputs")
    return np.dtype(NUMPY_DTYPES[name])


def builder_network_flags(trt: Any, precision: str) -> int:
    """EXPLICIT_BATCH on TensorRT 8 (implicit in 10+); STRONGLY_TYPED on 11 (precision from the graph)."""
    flags = 0
    major = trt_major(trt.__version__)
    if major < 10:
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    if major >= 11:
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    return flags


def set_precision_flags(trt: Any, config: Any, precision: str, graph_precision: str) -> None:
    """Builder flags per measured precision. FP32 rows run FP32: TensorRT enables TF32 for FP32 layers by
    default on Ampere and later, so it is cleared (otherwise the row would be TF32 labelled fp32)."""
    major = trt_major(trt.__version__)
    tf32 = getattr(trt.BuilderFlag, "TF32", None)
    if precision == "fp32" and tf32 is not None:
        config.clear_flag(tf32)
    if precision == "fp16":
        if major >= 11 and graph_precision != "fp16":
            raise DDNNError("TensorRT 11 takes precision from the graph: export with --fp16 for FP16 engines")
        if major < 11:
            config.set_flag(trt.BuilderFlag.FP16)
    elif precision == "int8" and major < 11:
        config.set_flag(trt.BuilderFlag.INT8)  # explicit quantization: scales come from the QDQ nodes


def build_engine(
    trt: Any,
    onnx_path: Path,
    precision: str,
    max_batch: int,
    input_shape: tuple[int, ...],
    workspace_mb: int = 1024,
    graph_precision: str = "fp32",
    batch_sizes: Sequence[int] | None = None,
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
    set_precision_flags(trt, config, precision, graph_precision)
    tensor = network.get_input(0)
    if tensor.shape[0] == -1:  # dynamic batch: one optimisation profile per timed batch size, opt = that size
        for low, opt, high in optimization_profiles(batch_sizes or (max_batch,)):
            profile = builder.create_optimization_profile()
            profile.set_shape(tensor.name, (low, *input_shape), (opt, *input_shape), (high, *input_shape))
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
        batch_sizes: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}")
        self.onnx_path = Path(onnx_path)
        self.precision = precision
        self.cache_dir = Path(cache_dir) if cache_dir else self.onnx_path.parent / "engines"
        self.onnx_sha256 = onnx_sha256
        self.batch_sizes = sorted(set(batch_sizes or (max_batch,)))
        self.max_batch = max(self.batch_sizes)
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
            batch_sizes=self.batch_sizes,
        )
        engine_path, sidecar_path = engine_paths(
            self.cache_dir, self.onnx_path, self.precision, self.max_batch, self.batch_sizes
        )
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
                trt,
                self.onnx_path,
                self.precision,
                self.max_batch,
                shape,
                graph_precision=self.graph_precision,
                batch_sizes=self.batch_sizes,
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
        self._pinned: dict[tuple[str, tuple[int, ...]], np.ndarray] = {}  # (name, shape) -> page-locked array
        self._profile = 0
        self._events = (self.buffers.event(), self.buffers.event())
        self.compute_ms = []

    def _buffer(self, name: str, nbytes: int) -> int:
        ptr, size = self._device.get(name, (0, 0))
        if size < nbytes:
            ptr = self.buffers.alloc(nbytes)
            self._device[name] = (ptr, nbytes)
        return ptr

    def _host(self, name: str, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
        key = (name, tuple(int(d) for d in shape))
        if key not in self._pinned:
            self._pinned[key] = self.buffers.pinned(key[1], dtype)
        return self._pinned[key]

    def _select_profile(self, batch: int) -> None:
        index = profile_for(batch, self.batch_sizes)
        if index is None:
            raise DDNNError(
                f"a batch of {batch} is outside the engine's profiles (batch 1-{self.max_batch}); "
                f"feed it in chunks of at most {self.max_batch}"
            )
        if index != self._profile and self.engine.num_optimization_profiles > 1:
            if not self.context.set_optimization_profile_async(index, self.buffers.stream_handle):
                raise DDNNError(f"TensorRT could not switch to optimisation profile {index}")
            self._profile = index

    def _bind(self, feed: dict[str, np.ndarray]) -> tuple[list[tuple[int, np.ndarray]], list[tuple[int, np.ndarray]]]:
        """Shapes, device buffers, page-locked host copies of the inputs and tensor addresses, set once for this
        feed: the timed loop then only copies, enqueues and waits."""
        images = feed["input"] if "input" in feed else feed[self.inputs[0]]  # not the selector's 0-d depth
        batch = int(np.shape(images)[0]) if np.ndim(images) else 1
        self._select_profile(batch)
        inputs = []
        for name in self.inputs:
            value = np.asarray(feed[name], dtype=numpy_dtype(self.engine.get_tensor_dtype(name)))
            # False when the shape is outside the active optimisation profile: TensorRT 10 then leaves the input
            # unspecified and older versions keep the previous shape; either way the result would be wrong
            if self.context.set_input_shape(name, value.shape) is False:
                raise DDNNError(
                    f"input {name} of shape {list(value.shape)} is outside the engine's profile (batch 1-"
                    f"{self.max_batch}); feed it in chunks of at most {self.max_batch}"
                )
            host = self._host(name, value.shape, value.dtype)
            host[...] = value
            ptr = self._buffer(name, host.nbytes)
            self.context.set_tensor_address(name, ptr)
            inputs.append((ptr, host))
        outputs = []
        for name in self.outputs:
            shape = tuple(self.context.get_tensor_shape(name))
            host = self._host(name, shape, numpy_dtype(self.engine.get_tensor_dtype(name)))
            ptr = self._buffer(name, host.nbytes)
            self.context.set_tensor_address(name, ptr)
            outputs.append((ptr, host))
        return inputs, outputs

    def timed(self, feed: dict[str, np.ndarray]) -> Callable[[], list[np.ndarray]]:
        """End to end as trtexec's "Latency" (page-locked H2D, enqueue, D2H, wait); each call also appends the
        GPU compute time between two CUDA events around the enqueue (trtexec's "GPU Compute Time") to
        ``compute_ms``."""
        self.check_depth(feed)
        inputs, outputs = self._bind(feed)
        buffers, context, stream = self.buffers, self.context, self.buffers.stream_handle
        start, end = self._events
        self.compute_ms = []

        def run() -> list[np.ndarray]:
            for ptr, host in inputs:
                buffers.to_device(ptr, host)
            buffers.record(start)
            if not context.execute_async_v3(stream):
                raise DDNNError("TensorRT execution failed")
            buffers.record(end)
            for ptr, host in outputs:
                buffers.to_host(host, ptr)
            buffers.synchronize()
            self.compute_ms.append(buffers.elapsed_ms(start, end))
            return [host for _, host in outputs]

        return run

    def _infer(self, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        results = self.timed(feed)()
        return [host.copy() for host in results]  # the page-locked arrays are reused by the next call

    def _deactivate(self) -> None:
        self.context = self.engine = self.runtime = None  # TensorRT objects go before their memory
        self._pinned.clear()  # views of page-locked memory that close() frees
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
            "batch_profiles": [list(p) for p in optimization_profiles(self.batch_sizes)],
            "timing": "end to end: page-locked H2D + enqueue + D2H; gpu compute: CUDA events around the enqueue",
            "engine_built_now": self.built,
            "buffers": getattr(self.buffers, "backend", None),
            # this engine's own memory, not the device-wide total (which counts other processes, and the OS on
            # a Jetson, where GPU memory IS system RAM)
            **({"gpu_memory_mb": footprint} if footprint is not None else {}),
            **({"engine_scratch_mb": int(scratch) / 2**20} if scratch else {}),
            "gpu_memory_shared_with_cpu": _l4t_present(),
        }
