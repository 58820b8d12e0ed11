"""The command line: ``ddnn-deploy`` (also ``python -m ddnn_deploy``).

Every command is registered here, explicitly: ``from ddnn_deploy.cli import cli`` has them all.
"""

from __future__ import annotations

from .commands import bench_command, calibrate_command, convert, eval_command, export_command, info, pick_command, train
from .demo_cmd import demo
from .fleet_cmds import compare_command, fleet
from .main import cli
from .runtime_cmds import predict_command, serve_command

COMMANDS = (
    train,
    eval_command,
    info,
    convert,
    export_command,
    calibrate_command,
    bench_command,
    pick_command,
    predict_command,
    serve_command,
    fleet,
    compare_command,
    demo,
)
for _command in COMMANDS:
    cli.add_command(_command)


def main() -> None:
    cli(prog_name="ddnn-deploy")


__all__ = ["COMMANDS", "cli", "main"]
