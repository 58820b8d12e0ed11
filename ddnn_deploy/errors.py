"""One exception hierarchy for ddnn-deploy; the CLI maps each class to an exit code."""

from __future__ import annotations


class DDNNError(Exception):
    """Base class: a problem the user can fix, reported as one line without a traceback."""

    exit_code = 1


class UsageError(DDNNError):
    """Bad arguments: unknown architecture, depth that does not fit, malformed list."""

    exit_code = 2


class CheckpointError(DDNNError):
    """A checkpoint that is missing, truncated, of another format, or unsafe to load."""

    exit_code = 3


class DataError(DDNNError):
    """A dataset folder that is missing or holds the wrong files."""

    exit_code = 4


class MissingDependencyError(DDNNError):
    """An optional back-end is not installed; the message carries the install command."""

    exit_code = 5


def require(module: str, install_hint: str):
    """Import an optional dependency lazily, or raise with the command that installs it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise MissingDependencyError(
            f"{module} is not installed ({exc}); install it with: {install_hint}"
        ) from None
