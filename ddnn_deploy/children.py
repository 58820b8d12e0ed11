"""Child processes that die with their parent, and SIGTERM handled like Ctrl-C.

onnxsim and the bench workers run in child processes (a crash there must not take the command down). If the
command itself is killed (``kill -9``, an OOM kill, a CI timeout), those children must not keep running on
their own: on Linux each one asks the kernel for SIGKILL when its parent dies (``PR_SET_PDEATHSIG``).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import signal
import sys
from collections.abc import Iterator
from typing import Any, Callable

_PR_SET_PDEATHSIG = 1


def _die_with_parent(parent: int) -> Callable[[], None] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    except OSError:  # pragma: no cover - no libc to call
        return None

    def preexec() -> None:  # runs in the child, between fork and exec
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return preexec


def child_options() -> dict[str, Any]:
    """Keyword arguments for ``subprocess.run``/``Popen`` so that the child is killed when this process dies."""
    preexec = _die_with_parent(os.getpid())
    return {"preexec_fn": preexec} if preexec is not None else {}


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM raises ``KeyboardInterrupt`` like Ctrl-C, so the same clean-up runs (temporary
    files removed, nothing half-written) and the command exits 130. Only in the main thread."""
    try:
        previous = signal.getsignal(signal.SIGTERM)

        def handler(signum: int, frame: Any) -> None:
            raise KeyboardInterrupt

        signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
