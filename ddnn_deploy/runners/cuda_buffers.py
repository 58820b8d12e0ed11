"""Device buffers behind one small interface, through cuda-python or, where that is what is installed,
pycuda. Lazily imported; nothing here runs on a machine without a GPU.

cuda-python 13 moved ``cuda.cudart`` to ``cuda.bindings.runtime``; both spellings are tried.
"""

from __future__ import annotations

import ctypes
from typing import Any

import numpy as np

from ..errors import MissingDependencyError, optional_import


def _cudart() -> Any | None:
    try:
        from cuda.bindings import runtime as cudart  # cuda-python >= 12.6 / 13

        return cudart
    except ImportError:
        pass
    try:
        from cuda import cudart  # type: ignore[no-redef]  # cuda-python 11.x / 12.x

        return cudart
    except ImportError:
        return None


CUDA_ERROR_INSUFFICIENT_DRIVER = 35  # cudaError_t cudaErrorInsufficientDriver


def _check(result: Any) -> Any:
    """cuda-python returns (err, *values); raise on a non-zero error code."""
    err, *values = result if isinstance(result, tuple) else (result,)
    if int(err) == CUDA_ERROR_INSUFFICIENT_DRIVER:
        raise MissingDependencyError(
            "the NVIDIA driver is older than this cuda-python / TensorRT build needs (cudaErrorInsufficientDriver): "
            "for CUDA 12 drivers and JetPack 6 install pip install 'ddnn-deploy[trt-cu12]' (tensorrt-cu12, "
            "cuda-python<13), or update the driver (CUDA 13 builds need driver >= 580)"
        )
    if int(err) != 0:
        raise RuntimeError(f"CUDA runtime error {err}")
    return values[0] if len(values) == 1 else (tuple(values) if values else None)


class CudaBuffers:
    """Allocate device memory, copy host<->device, own a stream; ``backend`` is cuda-python or pycuda."""

    def __init__(self) -> None:
        self.cudart = _cudart()
        if self.cudart is not None:
            self.backend = "cuda-python"
            self.stream = _check(self.cudart.cudaStreamCreate())
            self._context = None
        else:
            drv = optional_import("pycuda.driver", "TensorRT's device buffers (or: pip install cuda-python)")
            self.backend = "pycuda"
            drv.init()
            self._drv = drv
            # the primary context: the one the CUDA runtime (and so TensorRT) uses
            self._context = drv.Device(0).retain_primary_context()
            self._context.push()
            self.stream = drv.Stream()
        self._allocations: list[Any] = []
        self._host: list[Any] = []  # pinned host allocations (cuda-python pointers, or pycuda's arrays)
        self._events: list[Any] = []

    @property
    def stream_handle(self) -> int:
        return int(self.stream) if self.backend == "cuda-python" else self.stream.handle

    def alloc(self, nbytes: int) -> int:
        if self.backend == "cuda-python":
            ptr = _check(self.cudart.cudaMalloc(nbytes))
            self._allocations.append(ptr)
            return int(ptr)
        mem = self._drv.mem_alloc(nbytes)
        self._allocations.append(mem)
        return int(mem)

    def to_device(self, ptr: int, host: np.ndarray) -> None:
        host = np.ascontiguousarray(host)
        if self.backend == "cuda-python":
            kind = self.cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
            _check(self.cudart.cudaMemcpyAsync(ptr, host.ctypes.data, host.nbytes, kind, self.stream))
        else:
            self._drv.memcpy_htod_async(ptr, host, self.stream)

    def to_host(self, host: np.ndarray, ptr: int) -> None:
        if self.backend == "cuda-python":
            kind = self.cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
            _check(self.cudart.cudaMemcpyAsync(host.ctypes.data, ptr, host.nbytes, kind, self.stream))
        else:
            self._drv.memcpy_dtoh_async(host, ptr, self.stream)

    def pinned(self, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
        """A page-locked host array: copies from and to it are DMA transfers, not staged through pageable memory
        (what an application that cares about latency uses, and what trtexec measures)."""
        dtype = np.dtype(dtype)
        count = int(np.prod(shape, dtype=np.int64))
        nbytes = max(1, count) * dtype.itemsize
        if self.backend == "cuda-python":
            ptr = int(_check(self.cudart.cudaHostAlloc(nbytes, 0)))  # 0: cudaHostAllocDefault
            self._host.append(ptr)
            raw = (ctypes.c_uint8 * nbytes).from_address(ptr)  # valid until close(), which frees it
            return np.frombuffer(raw, dtype=dtype, count=count).reshape(shape)
        array = self._drv.pagelocked_empty(shape, dtype)
        self._host.append(array)
        return array

    def event(self) -> Any:
        if self.backend == "cuda-python":
            event = _check(self.cudart.cudaEventCreate())
        else:
            event = self._drv.Event()
        self._events.append(event)
        return event

    def record(self, event: Any) -> None:
        """Record ``event`` on this runner's stream (it completes when the work queued before it has)."""
        if self.backend == "cuda-python":
            _check(self.cudart.cudaEventRecord(event, self.stream))
        else:
            event.record(self.stream)

    def elapsed_ms(self, start: Any, end: Any) -> float:
        """GPU time between two recorded events, in ms (after they completed: call ``synchronize`` first)."""
        if self.backend == "cuda-python":
            # CUDA 12.8 added cudaEventElapsedTime_v2 (the same call); take the plain name where it is kept
            elapsed = getattr(self.cudart, "cudaEventElapsedTime", None) or self.cudart.cudaEventElapsedTime_v2
            return float(_check(elapsed(start, end)))
        return float(end.time_since(start))

    def synchronize(self) -> None:
        if self.backend == "cuda-python":
            _check(self.cudart.cudaStreamSynchronize(self.stream))
        else:
            self.stream.synchronize()

    def memory_used_mb(self) -> float | None:
        try:
            if self.backend == "cuda-python":
                free, total = _check(self.cudart.cudaMemGetInfo())
            else:
                free, total = self._drv.mem_get_info()
            return (total - free) / 2**20
        except Exception:  # noqa: BLE001 - informational only
            return None

    def close(self) -> None:
        if self.backend == "cuda-python":
            for ptr in self._allocations:
                self.cudart.cudaFree(ptr)
            for ptr in self._host:
                self.cudart.cudaFreeHost(ptr)
            for event in self._events:
                self.cudart.cudaEventDestroy(event)
            self.cudart.cudaStreamDestroy(self.stream)
        else:
            for mem in self._allocations:
                mem.free()
            self._host.clear()  # pycuda frees page-locked arrays when they are collected
            self._events.clear()
            if self._context is not None:
                self._drv.Context.pop()
                self._context.detach()
        self._allocations.clear()
        self._host.clear()
        self._events.clear()


def gpu_identity() -> dict[str, Any]:
    """Name and compute capability of GPU 0 (for the engine sidecar)."""
    cudart = _cudart()
    l4t = _l4t_release()
    if cudart is not None:
        props = _check(cudart.cudaGetDeviceProperties(0))
        name = props.name.decode() if isinstance(props.name, bytes) else str(props.name)
        return {
            "gpu": name.strip("\x00"),
            "compute_capability": f"{props.major}.{props.minor}",
            "sm_count": int(props.multiProcessorCount),
            "total_memory": int(props.totalGlobalMem),
            "cuda_runtime": int(_check(cudart.cudaRuntimeGetVersion())),
            "cuda_driver": int(_check(cudart.cudaDriverGetVersion())),
            "l4t": l4t,
        }
    drv = optional_import("pycuda.driver", "TensorRT's device buffers (or: pip install cuda-python)")
    drv.init()
    cuda_version = drv.get_version()  # the CUDA pycuda was built against: (major, minor, patch)
    device = drv.Device(0)
    major, minor = device.compute_capability()
    return {
        "gpu": device.name(),
        "compute_capability": f"{major}.{minor}",
        "sm_count": int(device.get_attribute(drv.device_attribute.MULTIPROCESSOR_COUNT)),
        "total_memory": int(device.total_memory()),
        "cuda_runtime": int(cuda_version[0] * 1000 + cuda_version[1] * 10),
        "cuda_driver": int(drv.get_driver_version()),
        "l4t": l4t,
    }


def _l4t_release() -> str | None:
    """The first line of /etc/nv_tegra_release on a Jetson ("# R35 (release), REVISION: 4.1, ..."), else None."""
    try:
        with open("/etc/nv_tegra_release") as f:
            return f.readline().strip() or None
    except OSError:
        return None
