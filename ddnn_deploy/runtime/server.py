"""``serve``: a ``DepthRuntime`` behind HTTP (FastAPI under uvicorn), following the serving world's conventions.

- ``POST /v1/predict``: a PNG/JPEG image or a ``.npy`` array (``application/x-npy``, pixel units) ->
  ``{"predictions": [{"label", "class_name", "score"}], "depth", "latency_ms"}``.
- ``GET /healthz`` and ``GET /metrics`` (Prometheus: requests, latency histogram by depth, current depth,
  depth switches, rejections, queue length).
- Inference runs off the event loop in ONE worker thread fed by a bounded queue: beyond ``max_queue`` waiting
  requests the answer is 503 with ``Retry-After``, not unbounded latency. With ``max_batch > 1`` the worker
  groups queued requests (up to ``max_wait_ms``) into one batch call, as Triton's dynamic batcher does.
- The policy sees every request's end-to-end latency (queueing included) and its call's time per image, and
  picks the next depth.
- Every answer carries a ``Server-Timing`` header (``decode``, ``queue``, ``infer`` in ms), so a client can
  tell the network and HTTP share of its latency from the model's.
Errors are JSON ``{"error": "..."}`` with a 4xx status; the server keeps serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np

from ..checks import is_finite
from ..errors import DDNNError, UsageError, optional_import
from .engine import DepthRuntime
from .inputs import decode_image, from_array

IMAGE_TYPES = ("image/png", "image/jpeg", "image/jpg")
NPY_TYPES = ("application/x-npy", "application/octet-stream")
MAX_BODY_BYTES = 16 * 1024 * 1024


@dataclass
class ServeSettings:
    max_queue: int = 64
    max_batch: int = 1
    max_wait_ms: float = 2.0
    max_body_bytes: int = MAX_BODY_BYTES
    # refuse (503) a request whose predicted completion (what is left of the call in progress, then the images
    # waiting ahead of it and its own at the serving depth's recent time per image) is past this many ms
    shed_ms: float | None = None

    def __post_init__(self) -> None:
        if self.shed_ms is not None and (not is_finite(self.shed_ms) or not self.shed_ms > 0):
            raise UsageError(f"the SLO must be a positive number of milliseconds, not {self.shed_ms!r}")
        for name in ("max_queue", "max_batch", "max_body_bytes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise UsageError(f"{name} must be a positive integer, not {value!r}")
        if not is_finite(self.max_wait_ms) or not self.max_wait_ms >= 0:
            raise UsageError(f"max_wait_ms must be >= 0, not {self.max_wait_ms!r}")


class Metrics:
    """The Prometheus metrics of one server, in their own registry."""

    def __init__(self) -> None:
        prometheus = optional_import("prometheus_client", "the server's /metrics")
        self.registry = prometheus.CollectorRegistry()
        self.requests = prometheus.Counter(
            "ddnn_requests", "Prediction requests by outcome", ["status"], registry=self.registry
        )
        self.latency = prometheus.Histogram(
            "ddnn_request_latency_seconds",
            "End-to-end latency of served requests (queueing included)",
            ["depth"],
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0),
            registry=self.registry,
        )
        self.depth = prometheus.Gauge("ddnn_depth", "The depth serving the next request", registry=self.registry)
        self.switches = prometheus.Counter(
            "ddnn_depth_switches", "Depth changes made by the policy", registry=self.registry
        )
        self.rejected = prometheus.Counter("ddnn_rejected", "Requests refused", ["reason"], registry=self.registry)
        self.queue = prometheus.Gauge("ddnn_queue_length", "Requests waiting for inference", registry=self.registry)
        self.batch = prometheus.Histogram(
            "ddnn_batch_images", "Images per inference call", buckets=(1, 2, 4, 8, 16, 32, 64), registry=self.registry
        )
        self._generate, self.content_type = prometheus.generate_latest, prometheus.CONTENT_TYPE_LATEST

    def render(self) -> bytes:
        return self._generate(self.registry)


@dataclass
class _Item:
    pixels: np.ndarray
    arrival: float
    future: asyncio.Future
    depth: int | None = None  # asked for explicitly, else the policy's
    queued: float = 0.0  # when the decoded pixels entered the queue


@dataclass
class Batcher:
    """The bounded queue and the one inference thread behind it."""

    runtime: DepthRuntime
    settings: ServeSettings
    metrics: Metrics
    queue: asyncio.Queue = field(init=False)
    executor: ThreadPoolExecutor = field(init=False)

    # per depth: (recent time per image in ms (EWMA), when it was last refreshed)
    image_ms: dict[int, tuple[float, float]] = field(init=False, default_factory=dict)
    waiting: int = field(init=False, default=0)  # images submitted and not yet in a call (queued or being batched)
    running: tuple[float, float] | None = field(init=False, default=None)  # the call in progress: (start, ms expected)

    def __post_init__(self) -> None:
        self.queue = asyncio.Queue(maxsize=self.settings.max_queue)
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ddnn-infer")

    def _per_image(self, depth: int, now: float) -> float | None:
        known = self.image_ms.get(depth)
        return known[0] if known is not None and now - known[1] <= ESTIMATE_TTL_S else None

    def predicted_ms(self, arrival: float, depth: int | None, images: int) -> float | None:
        """When a request of ``images`` submitted now would be answered (ms after its arrival): what is left of
        the call in progress, then every image waiting ahead of it and its own, at the serving depth's recent
        time per image. None when nothing is ahead (it starts at once, and its call refreshes the estimate) or
        the estimate is missing or stale."""
        now = time.perf_counter()
        if self.running is None and self.waiting == 0:
            return None
        per_image = self._per_image(depth if depth is not None else self.runtime.depth, now)
        if per_image is None:
            return None
        left = max(self.running[1] - (now - self.running[0]) * 1e3, 0.0) if self.running is not None else 0.0
        return (now - arrival) * 1e3 + left + (self.waiting + images) * per_image

    def submit(self, pixels: np.ndarray, arrival: float, depth: int | None) -> asyncio.Future:
        self.runtime.policy.arrived(len(pixels))  # refused or not: the load the device is offered
        if self.settings.shed_ms is not None:
            predicted = self.predicted_ms(arrival, depth, len(pixels))
            if predicted is not None and predicted > self.settings.shed_ms:
                raise Refused("slo", f"it would be answered in about {predicted:.0f} ms, past the SLO of "
                                     f"{self.settings.shed_ms:g} ms; retry shortly")  # fmt: skip
        future = asyncio.get_running_loop().create_future()
        try:
            self.queue.put_nowait(_Item(pixels, arrival, future, depth, time.perf_counter()))
        except asyncio.QueueFull:
            full = f"the queue is full ({self.settings.max_queue} waiting); retry shortly"
            raise Refused("queue_full", full) from None
        self.waiting += len(pixels)
        self.metrics.queue.set(self.queue.qsize())
        return future

    async def _next_batch(self) -> list[_Item]:
        batch = [await self.queue.get()]
        deadline = time.perf_counter() + self.settings.max_wait_ms / 1e3
        images = len(batch[0].pixels)
        while images < self.settings.max_batch and batch[0].depth is None:
            remaining = deadline - time.perf_counter()
            try:
                item = (
                    self.queue.get_nowait() if remaining <= 0 else await asyncio.wait_for(self.queue.get(), remaining)
                )
            except (asyncio.QueueEmpty, asyncio.TimeoutError):
                break
            if item.depth is not None:  # an explicit depth runs alone
                await self._run([item])
                continue
            batch.append(item)
            images += len(item.pixels)
        return batch

    async def run_forever(self) -> None:
        while True:
            batch = await self._next_batch()
            await self._run(batch)

    async def _run(self, batch: list[_Item]) -> None:
        self.metrics.queue.set(self.queue.qsize())
        depth = batch[0].depth if batch[0].depth is not None else self.runtime.depth
        pixels = np.concatenate([item.pixels for item in batch])
        loop = asyncio.get_running_loop()
        self.waiting -= len(pixels)
        per_image = self._per_image(depth, time.perf_counter())
        self.running = (time.perf_counter(), len(pixels) * per_image if per_image is not None else 0.0)
        try:
            logits, started, done = await loop.run_in_executor(self.executor, self._infer, pixels, depth)
        except Exception as exc:  # noqa: BLE001 - a failed call fails its requests, not the server
            for item in batch:
                if not item.future.done():
                    item.future.set_exception(exc)
            return
        finally:
            self.running = None
        took = (done - started) * 1e3 / len(pixels)
        previous = self._per_image(depth, done)
        self.image_ms[depth] = (took if previous is None else 0.7 * previous + 0.3 * took, done)
        self.metrics.batch.observe(len(pixels))
        start = 0
        for index, item in enumerate(batch):
            count = len(item.pixels)
            latency_ms = (done - item.arrival) * 1e3
            timing = {
                "decode": (item.queued - item.arrival) * 1e3,
                "queue": (started - item.queued) * 1e3,
                "infer": (done - started) * 1e3,
            }
            if not item.future.done():
                item.future.set_result((logits[start : start + count], depth, latency_ms, timing))
            start += count
            self._observe(latency_ms, depth, took if index == 0 else None, count)  # the call's time once

    def _infer(self, pixels: np.ndarray, depth: int) -> tuple[np.ndarray, float, float]:
        started = time.perf_counter()
        logits = self.runtime.run_batches(pixels, depth)
        return logits, started, time.perf_counter()

    def _observe(self, latency_ms: float, depth: int, service_ms: float | None, images: int) -> None:
        before = self.runtime.depth
        self.runtime.policy.observe(latency_ms, depth, service_ms, images)
        self.metrics.latency.labels(depth=str(depth)).observe(latency_ms / 1e3)
        if self.runtime.depth != before:
            self.metrics.switches.inc()
        self.metrics.depth.set(self.runtime.depth)


async def _decode(body: bytes, content_type: str, runtime: DepthRuntime) -> np.ndarray:
    """A small .npy body decodes right here (about 0.1 ms: cheaper than a thread hand-off); images and large
    arrays decode off the event loop."""
    if content_type in NPY_TYPES and len(body) <= INLINE_DECODE_BYTES:
        return _decode_body(body, content_type, runtime)
    return await asyncio.get_running_loop().run_in_executor(None, _decode_body, body, content_type, runtime)


ESTIMATE_TTL_S = 5.0  # --shed: a depth's time per image older than this is not trusted (it may have run slow)
INLINE_DECODE_BYTES = 1 << 20  # .npy bodies up to this size decode on the event loop (one 224 px image: 150 KB)


def _decode_body(body: bytes, content_type: str, runtime: DepthRuntime) -> np.ndarray:
    shape = runtime.manifest.input_shape
    if content_type in IMAGE_TYPES:
        return decode_image(body, shape, name="the request body")[None].astype(np.float32)
    if content_type in NPY_TYPES:
        try:
            array = load_npy(body)
        except (ValueError, OSError, EOFError) as exc:
            raise UsageError(f"the request body is not a .npy array ({str(exc)[:120]})") from None
        return from_array(np.asarray(array), shape, "the request body")
    raise _UnsupportedType(
        f"Content-Type {content_type or '(none)'} is not supported; send image/png, image/jpeg or application/x-npy"
    )


_NPY_HEADERS: dict[bytes, tuple[tuple[int, ...], bool, np.dtype]] = {}  # header bytes -> numpy's reading of it


def load_npy(body: bytes) -> np.ndarray:
    """``np.load(allow_pickle=False)`` of a .npy body, with numpy's reading of each distinct header kept: a
    client sends the same header every time, and parsing it (``ast.literal_eval``) is most of a small load."""
    if body[:6] != b"\x93NUMPY" or body[6:8] not in (b"\x01\x00", b"\x02\x00"):
        return np.load(io.BytesIO(body), allow_pickle=False)  # other versions, and numpy says what is wrong
    width = 2 if body[6] == 1 else 4
    start = 8 + width + int.from_bytes(body[8 : 8 + width], "little")
    header = body[:start]
    known = _NPY_HEADERS.get(header)
    if known is None:
        stream = io.BytesIO(header)
        version = np.lib.format.read_magic(stream)
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        known = read(stream)
        if known[2].hasobject:
            raise ValueError("object arrays are not accepted (they need pickle)")
        if len(_NPY_HEADERS) < 64:
            _NPY_HEADERS[header] = known
    shape, fortran, dtype = known
    count = math.prod(shape)  # Python integers: a hostile header's shape cannot overflow
    if len(body) - start < count * dtype.itemsize:
        raise ValueError(f"the array is truncated: {len(body) - start} of {count * dtype.itemsize} data bytes")
    flat = np.frombuffer(body, dtype=dtype, count=count, offset=start).copy()  # writable, owns its memory
    return flat.reshape(shape[::-1]).transpose() if fortran else flat.reshape(shape)


class _UnsupportedType(DDNNError):
    pass


class Refused(Exception):
    """A request turned away with 503: ``reason`` "queue_full" (``max_queue`` waiting), or "slo" (``shed_ms``:
    it would be answered past the SLO, so it is refused now instead)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


async def _read_body(request: Any, limit: int) -> bytes:
    """The body, refusing (413) anything over ``limit`` bytes before it is all read."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _TooLarge(f"the body is {declared} bytes; the limit is {limit}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _TooLarge(f"the body is over the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


class _TooLarge(DDNNError):
    pass


def _status_of(exc: Exception) -> int:
    if isinstance(exc, _TooLarge):
        return 413
    if isinstance(exc, _UnsupportedType):
        return 415
    return 400


def create_app(runtime: DepthRuntime, settings: ServeSettings | None = None) -> Any:
    """The FastAPI application (its OpenAPI description is at ``/openapi.json``)."""
    fastapi = optional_import("fastapi", "the server")
    responses = optional_import("fastapi.responses")
    settings = settings or ServeSettings()
    metrics = Metrics()
    metrics.depth.set(runtime.depth)
    state: dict[str, Any] = {}

    @contextlib.asynccontextmanager
    async def lifespan(app: Any):
        state["batcher"] = Batcher(runtime, settings, metrics)
        task = asyncio.create_task(state["batcher"].run_forever())
        yield
        while not state["batcher"].queue.empty():  # in-flight requests finish before the worker stops
            await asyncio.sleep(0.01)
        task.cancel()
        state["batcher"].executor.shutdown(wait=True)

    app = fastapi.FastAPI(
        title="ddnn-deploy",
        version=_version(),
        lifespan=lifespan,
        description="Predictions from a depth-level dynamic network whose depth follows a policy.",
    )

    def error(status: int, message: str, headers: dict[str, str] | None = None) -> Any:
        return responses.JSONResponse({"error": message}, status_code=status, headers=headers)

    @app.exception_handler(fastapi.exceptions.RequestValidationError)
    async def _invalid(request: Any, exc: Any) -> Any:
        return error(422, f"invalid request: {exc.errors()[0].get('msg', 'malformed')}")

    @app.exception_handler(fastapi.HTTPException)
    async def _http(request: Any, exc: Any) -> Any:
        return error(exc.status_code, str(exc.detail))

    async def predict(request, depth=None):
        arrival = time.perf_counter()
        try:
            if depth is not None:
                runtime.check_depth(depth)
            body = await _read_body(request, settings.max_body_bytes)
            content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
            pixels = await _decode(body, content_type, runtime)
            future = state["batcher"].submit(pixels, arrival, depth)
        except Refused as exc:  # a full queue, or (--shed) an answer that would come past the SLO
            metrics.rejected.labels(reason=exc.reason).inc()
            metrics.requests.labels(status="503").inc()
            return error(503, str(exc), {"Retry-After": "1"})
        except DDNNError as exc:
            metrics.rejected.labels(reason=str(_status_of(exc))).inc()
            metrics.requests.labels(status=str(_status_of(exc))).inc()
            return error(_status_of(exc), str(exc))
        logits, served_depth, latency_ms, timing = await future
        metrics.requests.labels(status="200").inc()
        predictions = runtime.decode(logits, served_depth, latency_ms, [None] * len(logits))
        body = {
            "predictions": [{"label": p.label, "class_name": p.class_name, "score": p.score} for p in predictions],
            "depth": served_depth,
            "latency_ms": latency_ms,
        }
        return responses.JSONResponse(body, headers={"Server-Timing": server_timing(timing)})

    # annotations as objects: fastapi is imported here, lazily, so a string annotation could not be resolved
    predict.__annotations__ = {"request": fastapi.Request, "depth": Optional[int]}  # noqa: UP045 - Python 3.8
    app.post("/v1/predict", summary="Predict the class of one image, or of every image in a .npy array")(predict)

    @app.get("/healthz", summary="Liveness, the current depth and the policy")
    async def healthz() -> Any:
        return {"status": "ok", "depth": runtime.depth, "policy": runtime.policy.describe()}

    @app.get("/metrics", summary="Prometheus metrics")
    async def prometheus_metrics() -> Any:
        metrics.depth.set(runtime.depth)
        return responses.Response(metrics.render(), media_type=metrics.content_type)

    return app


def server_timing(timing: dict[str, float]) -> str:
    """The W3C ``Server-Timing`` header value: ``decode;dur=0.210, queue;dur=0.050, infer;dur=78.100`` (ms)."""
    return ", ".join(f"{name};dur={value:.3f}" for name, value in timing.items())


def parse_server_timing(value: str) -> dict[str, float]:
    """The inverse of ``server_timing``: {name: ms}; entries without a duration are skipped."""
    timing = {}
    for entry in value.split(","):
        name, _, params = entry.strip().partition(";")
        for param in params.split(";"):
            key, _, number = param.strip().partition("=")
            if key == "dur" and name:
                with contextlib.suppress(ValueError):
                    timing[name] = float(number)
    return timing


def _version() -> str:
    from .. import __version__

    return __version__


def check_listen(host: str, port: int) -> None:
    """Fail in one line, before anything loads, when the server could not listen on ``host:port``."""
    import socket

    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise UsageError(f"port must be 0-65535, not {port!r}")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        with socket.socket(infos[0][0], socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
            probe.bind(infos[0][4])
    except OSError as exc:
        raise UsageError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}; choose another --host/--port"
        ) from None


def serve(
    runtime: DepthRuntime,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    settings: ServeSettings | None = None,
    log_level: str = "warning",
) -> None:
    """Run the server until SIGINT/SIGTERM; in-flight requests finish (uvicorn's graceful shutdown)."""
    uvicorn = optional_import("uvicorn", "the server")
    check_listen(host, port)
    uvicorn.run(create_app(runtime, settings), host=host, port=port, log_level=log_level, timeout_graceful_shutdown=30)
