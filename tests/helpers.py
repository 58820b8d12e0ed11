"""Small test helpers shared by several test modules."""

from __future__ import annotations

import inspect

from click.testing import CliRunner


def cli_runner() -> CliRunner:
    """A CliRunner whose result has stdout and stderr apart (click < 8.2, as on Python 3.8, mixes them by default)."""
    if "mix_stderr" in inspect.signature(CliRunner).parameters:
        return CliRunner(mix_stderr=False)
    return CliRunner()
