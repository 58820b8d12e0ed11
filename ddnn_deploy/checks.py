"""Numeric arguments and file fields are checked finite and in range before any work starts.

NaN compares false with everything, so ``value < 0`` lets it through and ``error > tolerance`` passes a NaN
error: every check here is written so that NaN and infinities fail.
"""

from __future__ import annotations

import math
from typing import Any

from .errors import UsageError


def number(
    name: str,
    value: Any,
    *,
    above: float | None = None,
    at_least: float | None = None,
    at_most: float | None = None,
    integer: bool = False,
    error: type = UsageError,
) -> Any:
    """``value`` when it is a finite number (an integer with ``integer``) within the bounds, else ``error``
    naming ``name`` (e.g. ``--tolerance``) and the range it must be in."""
    bounds = [f"{op} {bound:g}" for op, bound in ((">", above), (">=", at_least), ("<=", at_most)) if bound is not None]
    wanted = ("an integer" if integer else "a finite number") + (" " + " and ".join(bounds) if bounds else "")
    types = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, types) or not math.isfinite(value):
        raise error(f"{name} must be {wanted}, not {value!r}")
    if (
        (above is not None and not value > above)
        or (at_least is not None and not value >= at_least)
        or (at_most is not None and not value <= at_most)
    ):
        raise error(f"{name} must be {wanted}, not {value!r}")
    return value


def is_finite(value: Any) -> bool:
    """A real, finite number (not a bool, not NaN, not an infinity)."""
    return not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
