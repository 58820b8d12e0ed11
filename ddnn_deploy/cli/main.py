"""The click group and the error mapping: a DDNNError becomes one line on stderr and its exit code.

Each command parses its options, calls ONE library function and prints; torch is imported only
inside the commands that need it, so ``ddnn-deploy --help`` works without torch.
"""

from __future__ import annotations

import sys

import click

from .. import __version__
from ..errors import DDNNError


class DDNNGroup(click.Group):
    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except DDNNError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(exc.exit_code)
        except OSError as exc:
            where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
            click.echo(f"error: {exc.strerror or exc}{where}", err=True)
            sys.exit(1)
        except KeyboardInterrupt:
            click.echo("interrupted: the last complete checkpoint (if any) is intact; "
                       "continue with --resume", err=True)
            sys.exit(130)


@click.group(cls=DDNNGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="ddnn-deploy")
def cli() -> None:
    """Train, export, calibrate, bench and pick depths of depth-level dynamic networks."""


def main() -> None:
    from . import commands  # noqa: F401  (registers the commands)

    cli(prog_name="ddnn-deploy")
