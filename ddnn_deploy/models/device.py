"""A torch device named by the user, checked: a one-line error instead of torch's assertion deep in a call."""

from __future__ import annotations

import torch

from ..errors import UsageError


def torch_device(name: str | torch.device | None, *, option: str = "--device") -> torch.device:
    """``name`` as a ``torch.device`` this torch can use; None picks CUDA when there is one, else the CPU."""
    if name is None:
        return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    if isinstance(name, str) and not name.strip():
        raise UsageError(f"{option} is empty; name a torch device (cpu, cuda, cuda:1, mps, ...)")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError, ValueError):
        raise UsageError(f"{option} {name!r} is not a torch device (cpu, cuda, cuda:1, mps, ...)") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UsageError(
                f"{option} {name}: this torch ({torch.__version__}) sees no CUDA GPU; install a CUDA build of "
                "torch on a machine with one, or use --device cpu"
            )
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UsageError(f"{option} {name}: there are only {torch.cuda.device_count()} CUDA device(s) here")
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise UsageError(f"{option} {name}: MPS is not available here; use --device cpu")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise UsageError(f"{option} {name}: ddnn-deploy runs torch on cpu, cuda or mps, not {device.type}")
    return device
