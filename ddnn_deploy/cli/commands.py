"""ddnn-deploy's commands: train, eval, info, convert."""

from __future__ import annotations

import json

import click

from .main import cli

_MODES = ["ekd", "ce", "ipkd", "ipkd-ta", "individual"]
_DATASETS = ["fashion-mnist", "cifar10", "cifar100", "imagefolder"]


def _echo_json(payload: object) -> None:
    click.echo(json.dumps(payload, indent=2))


@cli.command()
@click.option("--arch", default="cifar_resnet20", show_default=True, help="Architecture (see `info --arch`).")
@click.option("--depths", default=None, help="Depths to train together, e.g. 8,14,20 or 1-1-1,3-3-3 "
              "(default: every depth in the architecture's table).")
@click.option("--dataset", type=click.Choice(_DATASETS), default="fashion-mnist", show_default=True)
@click.option("--data", "data_dir", default=None, help="Dataset folder (default for Fashion-MNIST: "
              "/usr/share/datasets/fashion-mnist).")
@click.option("--width", type=int, default=None, help="Base channel width (CIFAR ResNet default 16, ResNet 64).")
@click.option("--mode", type=click.Choice(_MODES), default="ekd", show_default=True,
              help="ekd: the paper; ce: hard labels only; ipkd / ipkd-ta: inplace distillation "
              "(with teacher assistants); individual: each depth as its own network.")
@click.option("--epochs", type=int, default=30, show_default=True)
@click.option("--batch-size", type=int, default=128, show_default=True)
@click.option("--lr", type=float, default=0.1, show_default=True)
@click.option("--weight-decay", type=float, default=5e-4, show_default=True)
@click.option("--warmup-epochs", type=float, default=1.0, show_default=True)
@click.option("--kl-weight", type=float, default=1.0, show_default=True)
@click.option("--at-weight", type=float, default=100.0, show_default=True,
              help="Weight of the attention-map MSE (its raw value is ~1e-3, so it needs a large weight).")
@click.option("--temperature", type=float, default=1.0, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", required=True, help="Checkpoint to write (atomically, after every epoch).")
@click.option("--resume", is_flag=True, help="Continue the unfinished run saved at --out.")
@click.option("--init", default=None, help="Start from the weights of this ddnn-deploy checkpoint.")
@click.option("--device", default=None, help="torch device (default: cuda when available, else cpu).")
@click.option("--threads", type=int, default=None, help="CPU threads for torch.")
@click.option("--no-amp", is_flag=True, help="Disable mixed precision on CUDA.")
@click.option("--train-limit", type=int, default=None, help="Train on a random subset of this many images.")
@click.option("--test-limit", type=int, default=None, help="Evaluate on a random subset of this many images.")
@click.option("--recal-samples", type=int, default=10000, show_default=True,
              help="Training images used to recalibrate each depth's BN statistics.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
def train(**opts) -> None:
    """Train a DDNN checkpoint (EKD by default); works under torchrun for DDP."""
    from ..distill.trainer import TrainConfig, train as run_train

    opts["amp"] = not opts.pop("no_amp")
    opts["progress"] = not opts.pop("no_progress")
    run_train(TrainConfig(**opts), log=lambda m: click.echo(m, err=True))
    click.echo(f"wrote {opts['out']}", err=True)
