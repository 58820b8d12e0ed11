"""The Runner lifecycle shared by every back-end: activate / infer / deactivate, as a context manager.

Runners are constructed cheaply (paths and settings only); nothing touches a device or loads a
library until ``activate``. Runners never time anything: timing lives in ``ddnn_deploy.measure.timing``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ..errors import UsageError


class PrecisionUnsupported(Exception):
    """This device cannot run the precision asked for (OpenVINO's bf16 on a CPU without native BF16): the bench
    records the rows as skipped, with this reason, and goes on."""


class Runner:
    name = "runner"
    # GPU compute time (ms) of each call of the ``timed`` callable, where the back-end can time the device alone
    # (CUDA events around the enqueue); None where it cannot
    compute_ms: list[float] | None = None
    # a selector graph's depths: a ``depth`` input outside them is refused before the back-end sees it (OpenVINO
    # would return zeros for a depth the graph lacks, onnxruntime raises)
    selector_depths: list[int] | None = None

    def __init__(self) -> None:
        self.active = False

    def activate(self) -> Runner:
        if not self.active:
            self._activate()
            self.active = True
        return self

    def deactivate(self) -> None:
        if self.active:
            self._deactivate()
            self.active = False

    def infer(self, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Run one inference; ``feed`` maps input names to arrays. Returns the outputs as numpy."""
        if not self.active:
            raise RuntimeError(f"{self.name}: call activate() (or use `with`) before infer()")
        self.check_depth(feed)
        return self._infer(feed)

    def check_depth(self, feed: dict[str, np.ndarray]) -> None:
        """Refuse a selector ``depth`` the graph does not hold, on every back-end, before any call."""
        if self.selector_depths is None or "depth" not in feed:
            return
        value = np.asarray(feed["depth"])
        depth = int(value) if value.size == 1 and np.issubdtype(value.dtype, np.integer) else None
        if depth not in self.selector_depths:
            raise UsageError(
                f"depth {value.tolist()!r} is not one of this selector graph's depths "
                f"({', '.join(map(str, self.selector_depths))})"
            )

    def timed(self, feed: dict[str, np.ndarray]) -> Callable[[], object]:
        """One inference as a zero-argument callable for the timing loop. Back-ends that can do the per-call work
        once (shapes, buffers, addresses, page-locked input copies) do it here, so the loop measures inference,
        not set-up; GPU back-ends also fill ``compute_ms``. The default calls ``infer``."""
        if not self.active:
            raise RuntimeError(f"{self.name}: call activate() (or use `with`) before timed()")
        self.check_depth(feed)
        return lambda: self._infer(feed)

    def compute_timer(self, feed: dict[str, np.ndarray]) -> Callable[[], object] | None:
        """A callable that runs inference on inputs already on the device, for back-ends that time the GPU by
        wall clock without host copies (onnxruntime's I/O binding); None for the others."""
        return None

    def info(self) -> dict[str, Any]:
        """Back-end details recorded with the results (versions, providers, precision)."""
        return {"backend": self.name}

    def __enter__(self) -> Runner:
        return self.activate()

    def __exit__(self, *exc: object) -> None:
        self.deactivate()

    def _activate(self) -> None:
        raise NotImplementedError

    def _deactivate(self) -> None:
        pass

    def _infer(self, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        raise NotImplementedError
