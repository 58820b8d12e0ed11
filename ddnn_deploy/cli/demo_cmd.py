"""``ddnn-deploy demo``: the main job on the built-in demo checkpoint, from a checkout or a wheel.

It runs the same steps ``scripts/demo.sh`` always ran, by invoking the ordinary commands (so it
prints their tables, and their errors end it with their exit codes): describe and evaluate every
depth, export every depth (+ the selector graph) to verified ONNX, calibrate INT8 per depth, bench
FP32 and INT8 on this CPU with Fashion-MNIST accuracy, and pick the depth that fits a latency budget.
The checkpoint and the calibration sample come from ``ddnn_deploy.resources`` (package data in a
wheel, ``models/`` and ``calibration/`` in a checkout).

Registered in the group by the CLI (``cli.add_command(demo)``); the commands it runs are imported
when it runs, so ``ddnn-deploy --help`` stays cheap.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import click

STEPS = ("info", "eval", "export", "calibrate", "bench", "pick")
DATASET = "fashion-mnist"
DEVICE = "x86-cpu"
PRECISIONS = "fp32,int8"


def _commands():
    """The click commands the demo runs, by step (imported late: they pull in the command module)."""
    from .commands import bench_command, calibrate_command, eval_command, export_command, info, pick_command

    return {
        "info": info,
        "eval": eval_command,
        "export": export_command,
        "calibrate": calibrate_command,
        "bench": bench_command,
        "pick": pick_command,
    }


def parse_steps(text: str) -> list[str]:
    """``"eval,info"`` -> ``["info", "eval"]``: the chosen steps, always in the demo's order."""
    from ..errors import UsageError

    chosen = {part.strip() for part in text.split(",") if part.strip()}
    unknown = sorted(chosen - set(STEPS))
    if unknown or not chosen:
        raise UsageError(f"--steps takes some of {','.join(STEPS)} separated by commas, not {text!r}")
    return [step for step in STEPS if step in chosen]


def _shown(path: Path) -> str:
    """A path as the user would type it: relative to the working directory when it lies below it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _holds_earlier_demo(out: Path, ckpt: Path) -> bool:
    """Whether ``out`` is an export of the demo checkpoint (which the demo may replace without --force)."""
    from ..atomic import sha256_file

    try:
        recorded = json.loads((out / "manifest.json").read_text())["checkpoint"]["sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return recorded == sha256_file(ckpt)


@click.command("demo")
@click.option(
    "--out",
    default="artifacts/demo",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Folder for the exported graphs, INT8 graphs and results (.json, .csv, .png).",
)
@click.option("--budget-ms", type=float, default=0.4, show_default=True, help="Latency budget for the pick step.")
@click.option("--stat", default="p90", show_default=True, help="Latency statistic for the pick step.")
@click.option(
    "--limit",
    type=int,
    default=None,
    help="Evaluate and bench accuracy on this many test images (a quick run; default: all 10,000).",
)
@click.option(
    "--steps",
    default=",".join(STEPS),
    show_default=True,
    help="Which steps to run (always in this order); later steps need the files earlier ones wrote.",
)
@click.option(
    "--force", is_flag=True, help="Replace --out even when it holds files other than an earlier demo's export."
)
@click.pass_context
def demo(ctx: click.Context, out: str, budget_ms: float, stat: str, limit: int | None, steps: str, force: bool) -> None:
    """Run the whole job on the built-in Fashion-MNIST demo checkpoint: info, eval, export, calibrate, bench, pick."""
    from ..errors import UsageError
    from ..resources import demo_checkpoint

    chosen = parse_steps(steps)
    if limit is not None and limit <= 0:
        raise UsageError(f"--limit must be a positive number of test images, not {limit}")
    if "pick" in chosen:  # fail before minutes of work rather than after
        from ..pick import check_budget

        check_budget(budget_ms, stat)
    commands = _commands()
    ckpt = demo_checkpoint()
    out_dir = Path(out)
    results = out_dir / "results.json"
    limit_args = ["--limit", str(limit)] if limit is not None else []
    # Like demo.sh, a re-run replaces its own earlier export; other files in --out need --force.
    replace = force or ("export" in chosen and _holds_earlier_demo(out_dir, ckpt))

    # step -> (the equivalent command line, the keyword arguments of its click command)
    plan: dict[str, tuple[list[str], dict[str, object]]] = {
        "info": (["--ckpt", _shown(ckpt)], {"ckpt": str(ckpt)}),
        "eval": (["--ckpt", _shown(ckpt), *limit_args], {"ckpt": str(ckpt), "limit": limit}),
        "export": (
            ["--ckpt", _shown(ckpt), "--out", out, "--selector", *(["--force"] if replace else [])],
            {"ckpt": str(ckpt), "out": out, "selector": True, "force": replace},
        ),
        "calibrate": (["--artifacts", out], {"artifacts": out}),
        "bench": (
            [
                "--artifacts",
                out,
                "--device",
                DEVICE,
                "--precision",
                PRECISIONS,
                "--dataset",
                DATASET,
                *limit_args,
                "--results",
                str(results),
            ],
            {
                "artifacts": out,
                "device": DEVICE,
                "precision": PRECISIONS,
                "dataset": DATASET,
                "limit": limit,
                "results_path": str(results),
            },
        ),
        "pick": (
            ["--results", str(results), "--budget-ms", f"{budget_ms:g}", "--stat", stat],
            {"results_path": str(results), "budget_ms": budget_ms, "stat": stat},
        ),
    }
    for step in chosen:
        argv, kwargs = plan[step]
        click.echo()
        click.echo(f"$ {shlex.join(['ddnn-deploy', step, *argv])}")
        ctx.invoke(commands[step], **kwargs)
    if "bench" in chosen:
        click.echo()
        click.echo(f"results: {results}, {results.with_suffix('.csv')}, plot: {results.with_suffix('.png')}")


__all__ = ["STEPS", "demo", "parse_steps"]
