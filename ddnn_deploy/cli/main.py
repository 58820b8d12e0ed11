"""The click group and the error mapping: a DDNNError becomes one line on stderr and its exit code.

Commands are registered explicitly in ``ddnn_deploy.cli`` (``cli/__init__.py``); each parses its
options, calls ONE library function and prints. torch is imported only inside the library calls
that need it, so ``ddnn-deploy --help`` works without torch.
"""

from __future__ import annotations

import errno
import sys

import click

from .. import __version__
from ..children import sigterm_as_interrupt
from ..errors import EXIT_INTERRUPTED, INSTALL_HINTS, DDNNError, MissingDependencyError


def _missing_module(exc: ModuleNotFoundError) -> MissingDependencyError | None:
    """A known optional package missing below a library call: the same one line as optional_import."""
    top = (exc.name or "").split(".", 1)[0]
    if top not in INSTALL_HINTS:
        return None
    what, hint = INSTALL_HINTS[top]
    return MissingDependencyError(f"{top} is not installed; {what} needs it; install it with: {hint}")


class DDNNGroup(click.Group):
    def invoke(self, ctx: click.Context):
        try:
            with sigterm_as_interrupt():
                return super().invoke(ctx)
        except DDNNError as exc:
            click.echo(f"error: {_one_line(str(exc))}", err=True)
            sys.exit(exc.exit_code)
        except click.UsageError as exc:  # click's own four-line usage message, as one line
            where = f"ddnn-deploy {exc.ctx.info_name}" if exc.ctx is not None and exc.ctx.parent else "ddnn-deploy"
            click.echo(f"error: {exc.format_message().rstrip('.')} (see `{where} --help`)", err=True)
            sys.exit(exc.exit_code)
        except ModuleNotFoundError as exc:
            missing = _missing_module(exc)
            if missing is None:
                raise
            click.echo(f"error: {missing}", err=True)
            sys.exit(missing.exit_code)
        except OSError as exc:
            where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
            hint = "; free some space and run again (nothing was replaced)" if exc.errno == errno.ENOSPC else ""
            click.echo(_one_line(f"error: {exc.strerror or exc}{where}{hint}"), err=True)
            sys.exit(1)
        except KeyboardInterrupt:
            click.echo(f"interrupted: {_after_interrupt(ctx.invoked_subcommand)}", err=True)
            sys.exit(EXIT_INTERRUPTED)


def _one_line(text: str) -> str:
    """Control characters (a newline in a file name) never break the one-line error."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _after_interrupt(command: str | None) -> str:
    if command == "train":
        return "the last complete checkpoint (if any) is intact; continue with --resume"
    if command in ("export", "calibrate", "convert", "bench"):
        return "nothing was replaced; earlier outputs are intact"
    return "stopped"


@click.group(cls=DDNNGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="ddnn-deploy")
def cli() -> None:
    """Train, export, calibrate, bench and pick depths of depth-level dynamic networks."""
