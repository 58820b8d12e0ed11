"""ddnn-deploy's commands: train, eval, info, convert."""

from __future__ import annotations

import json
from pathlib import Path

import click

from .main import cli

_MODES = ["ekd", "ce", "ipkd", "ipkd-ta", "individual"]
_DATASETS = ["fashion-mnist", "cifar10", "cifar100", "imagefolder"]


def _depth_numbers(text: str | None) -> list[int] | None:
    """``"8,20"`` -> [8, 20] for commands that select among exported depths by number."""
    if not text:
        return None
    from ..errors import UsageError

    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise UsageError(f"--depths takes depth numbers separated by commas (e.g. 8,20), not {text!r}") from None


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
@click.option("--holdout", type=int, default=0, show_default=True,
              help="Hold out N training images (a fixed split) and evaluate on them instead of the test set: "
                   "tune hyper-parameters this way, never on the test set.")
@click.option("--recal-samples", type=int, default=10000, show_default=True,
              help="Training images used to recalibrate each depth's BN statistics.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
def train(**opts) -> None:
    """Train a DDNN checkpoint (EKD by default); works under torchrun for DDP."""
    from ..distill.trainer import TrainConfig
    from ..distill.trainer import train as run_train

    opts["amp"] = not opts.pop("no_amp")
    opts["progress"] = not opts.pop("no_progress")
    run_train(TrainConfig(**opts), log=lambda m: click.echo(m, err=True))


def _print_table(title: str, columns: list[str], rows: list[list[object]]) -> None:
    import shutil

    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for i, name in enumerate(columns):
        table.add_column(name, justify="left" if i == 0 and name != "depth" else "right")
    for row in rows:
        table.add_row(*[str(v) for v in row])
    Console(width=shutil.get_terminal_size((160, 24)).columns).print(table)


def _fmt_count(n: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.2f} {unit}"
    return str(int(n))


@cli.command("eval")
@click.option("--ckpt", required=True, help="ddnn-deploy checkpoint.")
@click.option("--depths", default=None, help="Depths to evaluate (default: every depth in the checkpoint).")
@click.option("--dataset", type=click.Choice(_DATASETS), default=None,
              help="Dataset (default: the one the checkpoint was trained on).")
@click.option("--data", "data_dir", default=None, help="Dataset folder.")
@click.option("--limit", type=int, default=None, help="Evaluate on a random subset of this many test images.")
@click.option("--device", default="cpu", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON on stdout.")
def eval_command(ckpt, depths, dataset, data_dir, limit, device, as_json) -> None:
    """Top-1/top-5 of every depth on the test split, each with its own BN statistics."""
    from ..evaluation import evaluate_checkpoint

    result = evaluate_checkpoint(ckpt, dataset=dataset, data_dir=data_dir, depths=depths, limit=limit,
                                 device=device)
    if as_json:
        _echo_json(result)
        return
    _print_table(f"{ckpt} on {result['dataset']} (test)", ["depth", "blocks", "top-1 %", "top-5 %", "images"],
                 [[r["depth"], "-".join(map(str, r["blocks"])), f"{r['top1']:.2f}", f"{r['top5']:.2f}", r["n"]]
                  for r in result["depths"]])


@cli.command()
@click.option("--arch", default=None, help="Architecture name.")
@click.option("--ckpt", default=None, help="ddnn-deploy checkpoint.")
@click.option("--depths", default=None, help="Depths to describe (default: all in the table).")
@click.option("--input-size", type=int, default=None, help="Input height = width (with --arch).")
@click.option("--in-channels", type=int, default=None, help="Input channels (with --arch).")
@click.option("--num-classes", type=int, default=None, help="Classes (with --arch).")
@click.option("--width", type=int, default=None, help="Base channel width (with --arch).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON on stdout.")
def info(arch, ckpt, depths, input_size, in_channels, num_classes, width, as_json) -> None:
    """Parameters and MACs of every depth of an architecture or a checkpoint."""
    from ..describe import describe

    result = describe(arch=arch, ckpt=ckpt, depths=depths, num_classes=num_classes, in_channels=in_channels,
                      input_size=input_size, width=width)
    if as_json:
        _echo_json(result)
        return
    has_top1 = any("top1" in r for r in result["depths"])
    split = next((r["top1_split"] for r in result["depths"] if r.get("top1_split")), "test")
    columns = ["depth", "blocks", "params", "MACs"] + ([f"top-1 % ({split})"] if has_top1 else [])
    rows = [[r["depth"], "-".join(map(str, r["blocks"])), _fmt_count(r["params"]), _fmt_count(r["macs"])]
            + ([f"{r['top1']:.2f}" if r.get("top1") is not None else "-"] if has_top1 else [])
            for r in result["depths"]]
    _print_table(f"{result['arch']}, input {'x'.join(map(str, result['input_shape']))}", columns, rows)


@cli.command()
@click.option("--arch", required=True, help="Architecture name, e.g. resnet50.")
@click.option("--weights", default=None, help="torchvision/timm state_dict (.pth/.pt/.safetensors); "
              "omit for a seeded random init (latency studies).")
@click.option("--depths", default=None, help="The checkpoint's depth table (default: the architecture's).")
@click.option("--num-classes", type=int, default=None, help="Default: read from the weights, else 1000.")
@click.option("--in-channels", type=int, default=None)
@click.option("--input-size", type=int, default=None)
@click.option("--width", type=int, default=None)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", required=True, help="Checkpoint to write.")
def convert(arch, weights, depths, num_classes, in_channels, input_size, width, seed, out) -> None:
    """Wrap a plain torchvision/timm ResNet state_dict (or a random init) into a DDNN checkpoint."""
    from ..convert import convert_weights

    ckpt = convert_weights(arch=arch, weights=weights, depths=depths, num_classes=num_classes,
                           in_channels=in_channels, input_size=input_size, width=width, seed=seed, out=out)
    click.echo(f"wrote {out}: {arch}, depths {', '.join(str(ckpt.spec.depth_of(c)) for c in ckpt.depths)}",
               err=True)


@cli.command("export")
@click.option("--ckpt", required=True, help="ddnn-deploy checkpoint.")
@click.option("--out", required=True, help="Output directory (built beside it, moved into place when verified).")
@click.option("--depths", default=None, help="Depths to export (default: every depth in the checkpoint).")
@click.option("--selector", is_flag=True, help="Also write one graph with a depth selector input.")
@click.option("--opset", type=int, default=17, show_default=True)
@click.option("--input-size", type=int, default=None, help="Input height = width (default: the checkpoint's).")
@click.option("--batch", type=int, default=None, help="Static batch size (default: dynamic batch axis).")
@click.option("--no-simplify", is_flag=True, help="Skip onnxsim.")
@click.option("--exporter", type=click.Choice(["torchscript", "dynamo"]), default="torchscript", show_default=True,
              help="torch.onnx exporter, passed explicitly and recorded (dynamo needs onnxscript).")
@click.option("--tolerance", type=float, default=1e-4, show_default=True,
              help="Largest allowed |onnx - torch| relative to the largest |logit|.")
@click.option("--fp16", is_flag=True, help="Also write an FP16 graph per depth (float32 input/output), "
              "for back-ends that take precision from the graph, e.g. TensorRT 11.")
@click.option("--force", is_flag=True, help="Replace an output directory that already holds files.")
@click.option("--json", "as_json", is_flag=True, help="Print the manifest on stdout.")
def export_command(ckpt, out, depths, selector, opset, input_size, batch, no_simplify, exporter, tolerance, fp16,
                   force, as_json) -> None:
    """Slice a checkpoint into verified per-depth ONNX graphs (+ an optional selector graph)."""
    from ..export import export

    manifest = export(ckpt, out, depths=depths, selector=selector, opset=opset, input_size=input_size, batch=batch,
                      simplify=not no_simplify, force=force, exporter=exporter, tolerance=tolerance, fp16=fp16,
                      progress=lambda m: click.echo(m, err=True))
    if as_json:
        _echo_json(manifest)
        return
    rows = []
    for a in manifest["artifacts"]:
        depth = a["depth"] if a["kind"] == "depth" else ",".join(map(str, a["depth"]))
        rows.append([depth, f"{a['kind']} {a['precision']}", a["path"], f"{a['bytes'] / 1e6:.2f} MB",
                     _fmt_count(a["params"]), "yes" if a["simplified"] else "no", f"{a['parity']['max_rel_err']:.1e}"])
    _print_table(f"{out}/manifest.json ({manifest['export_seconds']:.0f} s)",
                 ["depth", "kind", "file", "size", "params", "onnxsim", "parity (rel)"], rows)


def _print_pick(pick) -> None:
    acc = f", top-1 {pick.top1:.2f}%" if pick.top1 is not None else ""
    click.echo(f"pick: depth {pick.depth} ({pick.backend} {pick.precision}, batch {pick.batch}): "
               f"{pick.stat} {pick.latency_ms:.3f} ms <= {pick.budget_ms:g} ms{acc}")


@cli.command("bench")
@click.option("--artifacts", required=True, help="Export directory (manifest.json + graphs).")
@click.option("--device", default="x86-cpu", show_default=True, help="Device profile (x86-cpu, cuda, jetson, ...).")
@click.option("--profiles", "profiles_file", default=None, help="TOML file adding or overriding device profiles.")
@click.option("--dataset", default=None, help="Dataset for accuracy (fashion-mnist, cifar10, cifar100, "
              "imagefolder, or none for latency only).")
@click.option("--data", "data_dir", default=None, help="Dataset folder.")
@click.option("--limit", type=int, default=None, help="Measure accuracy on this many test images.")
@click.option("--depths", default=None, help="Depth numbers to measure, e.g. 8,20 (default: all).")
@click.option("--selector", "include_selector", is_flag=True, help="Also measure the selector graph.")
@click.option("--ckpt", default=None, help="Checkpoint, for the torch back-end.")
@click.option("--results", "results_path", default="results.json", show_default=True)
@click.option("--engine-cache", default=None, help="TensorRT engine cache (default: ARTIFACTS/engines).")
@click.option("--precision", default=None, help="Precisions to measure, e.g. fp32,int8 (default: the profile's).")
@click.option("--budget-ms", type=float, default=None, help="Also print the depth this budget picks.")
@click.option("--stat", default="p90", show_default=True, help="Latency statistic for --budget-ms.")
@click.option("--no-progress", is_flag=True)
@click.option("--json", "as_json", is_flag=True, help="Print the results on stdout.")
def bench_command(artifacts, device, profiles_file, dataset, data_dir, limit, depths, include_selector, ckpt,
                  results_path, engine_cache, precision, budget_ms, stat, no_progress, as_json) -> None:
    """Measure latency, throughput, accuracy and memory of every depth on a device profile."""
    from ..bench.plot import plot_results
    from ..bench.sweep import bench

    depth_list = _depth_numbers(depths)
    if budget_ms is not None:
        from ..pick import check_budget

        check_budget(budget_ms, stat)
    results = bench(artifacts, device=device, profiles_file=profiles_file, dataset=dataset, data_dir=data_dir,
                    limit=limit, depths=depth_list, include_selector=include_selector, checkpoint=ckpt,
                    results_path=results_path, engine_cache=engine_cache, progress=not no_progress,
                    precisions=precision.split(",") if precision else None,
                    log=lambda m: click.echo(m, err=True))
    plot = plot_results(results, Path(results_path).with_suffix(".png"))
    if as_json:
        _echo_json(results)
    else:
        rows = []
        for r in results["rows"]:
            lat, acc = r.get("latency_ms") or {}, r.get("accuracy") or {}
            rows.append([r["depth"], r.get("kind", "depth"), r["precision"], r["batch"],
                         f"{lat['p50']:.3f}" if lat else "-", f"{lat['p90']:.3f}" if lat else "-",
                         f"{r['throughput']:.1f}" if r.get("throughput") else "-",
                         f"{acc['top1']:.2f}" if acc.get("top1") is not None else "-",
                         f"{(r.get('memory_mb') or {}).get('peak_rss_mb', 0):.0f}" if r.get("memory_mb") else "-",
                         r["status"] if r["status"] == "ok" else f"{r['status']}: {r.get('error')}"])
        _print_table(f"{results['arch']} on {device} -> {results_path}" + (f", {plot}" if plot else ""),
                     ["depth", "kind", "precision", "batch", "p50 ms", "p90 ms", "img/s", "top-1 %", "peak MB",
                      "status"], rows)
    if budget_ms is not None:
        from ..pick import pick_depth

        _print_pick(pick_depth(results["rows"], budget_ms, stat=stat))


@cli.command("pick")
@click.option("--results", "results_path", default="results.json", show_default=True)
@click.option("--budget-ms", type=float, required=True, help="Latency budget in milliseconds.")
@click.option("--stat", default="p90", show_default=True, help="mean, min, p50, p90, p95, p99 or max.")
@click.option("--min-accuracy", type=float, default=None, help="Lowest acceptable top-1 (%).")
@click.option("--batch", type=int, default=1, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def pick_command(results_path, budget_ms, stat, min_accuracy, batch, as_json) -> None:
    """The most accurate depth whose latency fits the budget (ties go to the faster)."""
    from ..bench.results import load_results
    from ..pick import pick_depth

    results = load_results(results_path)
    pick = pick_depth(results["rows"], budget_ms, stat=stat, min_accuracy=min_accuracy, batch=batch)
    if as_json:
        _echo_json(pick.to_dict())
    else:
        _print_pick(pick)


@cli.command("calibrate")
@click.option("--artifacts", required=True, help="Export directory (manifest.json + FP32 graphs).")
@click.option("--dataset", default=None, help="Calibration data: a dataset name (training split), a folder of "
              "images, a .npz sample, or 'random' (default: calibration/ sample of the manifest's dataset).")
@click.option("--samples", type=int, default=512, show_default=True)
@click.option("--target", type=click.Choice(["cpu", "tensorrt"]), default="cpu", show_default=True,
              help="cpu: unsigned activations (x86 VNNI); tensorrt: symmetric signed INT8.")
@click.option("--method", type=click.Choice(["minmax", "entropy", "percentile"]), default="minmax",
              show_default=True)
@click.option("--max-drop", type=float, default=1.0, show_default=True,
              help="Largest allowed FP32 -> INT8 top-1 drop (points) on held-out test images.")
@click.option("--eval-samples", type=int, default=2000, show_default=True,
              help="Held-out test images for the accuracy guard.")
@click.option("--depths", default=None, help="Depth numbers to calibrate (default: all).")
@click.option("--json", "as_json", is_flag=True)
def calibrate_command(artifacts, dataset, samples, target, method, max_drop, eval_samples, depths, as_json) -> None:
    """Calibrate an INT8 (QDQ) graph for every depth and record it in the manifest."""
    from ..quantize import calibrate

    depth_list = _depth_numbers(depths)
    manifest = calibrate(artifacts, dataset=dataset, samples=samples, target=target, method=method,
                         max_drop=max_drop, eval_samples=eval_samples, depths=depth_list,
                         log=lambda m: click.echo(m, err=True))
    int8 = [a for a in manifest["artifacts"] if a["precision"] == "int8"]
    if as_json:
        _echo_json(manifest)
        return
    rows = [[a["depth"], a.get("target"), a["path"], f"{a['bytes'] / 1e6:.2f} MB",
             f"{a['accuracy']['fp32_top1']:.2f}" if a.get("accuracy") else "-",
             f"{a['accuracy']['int8_top1']:.2f}" if a.get("accuracy") else "-"] for a in int8]
    _print_table(f"INT8 artifacts in {artifacts}/manifest.json (the selector graph stays FP32)",
                 ["depth", "target", "file", "size", "FP32 top-1 %", "INT8 top-1 %"], rows)
