"""What ``progress=True`` means everywhere in the library: a tqdm bar on stderr, shown only when stderr
is a terminal (so logs and CI output stay clean); ``progress=False`` never shows one. Status lines go
to the separate ``log`` callable of each API function."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any, Callable

# what every API function's ``log=`` takes; typing.Callable (not collections.abc): evaluated at import on Python 3.8
Log = Callable[[str], None]  # noqa: UP006


def progress_bar(iterable: Iterable[Any] | None = None, *, enabled: bool, **options: Any) -> Any:
    """A tqdm bar over ``iterable`` (or a manual one with ``total=``); ``options`` go to tqdm."""
    from tqdm.auto import tqdm

    return tqdm(
        iterable, disable=None if enabled else True, leave=False, file=sys.stderr, dynamic_ncols=True, **options
    )
