"""ddnn-deploy's commands. Each parses its options, calls ONE library function and prints (a table, or
JSON with ``--json``). Choices and defaults come from the library; registration is in ``cli/__init__``."""

from __future__ import annotations

import json
import shutil

import click

from ..data import DATASETS
from ..distill.config import AT_COMBINE, IPKD_LOSSES, LR_SCALES, MODES, RECIPES, TrainConfig
from ..distill.config import default as train_default
from ..errors import UsageError
from ..formats.profiles import BUILTIN_PROFILES
from ..formats.results import LATENCY_STATS
from ..onnx_export.settings import DEFAULT_OPSET, EXPORTERS, FP32_TOLERANCE
from ..quantize.config import METHODS, TARGETS, QuantConfig


def _depth_numbers(text: str | None, what: str = "--depths") -> list[int] | None:
    """``"8,20"`` -> [8, 20] for commands that select among exported depths by number (or take batch sizes)."""
    if not text:
        return None
    from ..errors import UsageError

    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        kind = "depth numbers" if what == "--depths" else "numbers"
        raise UsageError(f"{what} takes {kind} separated by commas (e.g. 8,20), not {text!r}") from None


def _precisions(text: str | None) -> list[str] | None:
    """``"fp32,int8"`` -> ["fp32", "int8"]; None -> the profile's; an empty value is an error."""
    if text is None:
        return None
    names = [part.strip() for part in text.split(",") if part.strip()]
    if not names:
        from ..errors import UsageError

        raise UsageError("--precision is empty; give precisions such as fp32,int8, or leave it out")
    return names


def _echo_json(payload: object) -> None:
    click.echo(json.dumps(payload, indent=2))


def _log(message: str) -> None:
    click.echo(message, err=True)


def print_table(title: str, columns: list[str], rows: list[list[object]]) -> None:
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


def _train_option(name: str, type_: type, help_text: str | None = None):
    return click.option(
        f"--{name.replace('_', '-')}", name, type=type_, default=train_default(name), show_default=True, help=help_text
    )


@click.command("train")
@click.option(
    "--recipe",
    type=click.Choice(sorted(RECIPES)),
    default=None,
    help="Defaults for a kind of run (options given explicitly still win); see the README.",
)
@click.option("--arch", default=train_default("arch"), show_default=True, help="Architecture (see `info --arch`).")
@click.option(
    "--depths",
    default=None,
    help="Depths to train together, e.g. 8,14,20 or 1-1-1,3-3-3 (default: every depth in the architecture's table).",
)
@click.option("--dataset", type=click.Choice(DATASETS), default=train_default("dataset"), show_default=True)
@click.option(
    "--data",
    "data_dir",
    default=None,
    help="Dataset folder (default for Fashion-MNIST: /usr/share/datasets/fashion-mnist).",
)
@click.option("--width", type=int, default=None, help="Base channel width (CIFAR ResNet default 16, ResNet 64).")
@click.option(
    "--mode",
    type=click.Choice(MODES),
    default=train_default("mode"),
    show_default=True,
    help="ekd: the paper; ce: hard labels only; ipkd / ipkd-ta: inplace distillation "
    "(with teacher assistants); individual: each depth as its own network.",
)
@_train_option("epochs", int)
@_train_option("batch_size", int, "Images per process and step.")
@_train_option("grad_accum", int, "Batches per optimizer step (their gradients summed): a larger batch in less memory.")
@_train_option("lr", float)
@_train_option("weight_decay", float)
@_train_option("warmup_epochs", float)
@_train_option("kl_weight", float)
@_train_option(
    "at_weight", float, "Weight of the attention-map MSE (its raw value is ~1e-3, so it needs a large weight)."
)
@_train_option("temperature", float)
@_train_option(
    "attention_power", click.IntRange(1, 2), "EKD attention maps: 1 = sum_c F (Eq. 3), 2 = sum_c F^2 (as in AT)."
)
@click.option(
    "--at-combine", type=click.Choice(AT_COMBINE), default=train_default("at_combine"), show_default=True,
    help="EKD's attention term over the stages: sum (Eq. 6) or mean.",
)  # fmt: skip
@click.option(
    "--ipkd-loss", type=click.Choice(IPKD_LOSSES), default=train_default("ipkd_loss"), show_default=True,
    help="ipkd / ipkd-ta sub-nets: soft (in-place distillation: the teacher's soft target only) or soft+hard.",
)  # fmt: skip
@_train_option("seed", int)
@click.option("--out", required=True, help="Checkpoint to write (atomically, after every epoch).")
@click.option("--resume", is_flag=True, help="Continue the unfinished run saved at --out (same settings).")
@click.option("--force", is_flag=True, help="Replace an existing checkpoint at --out.")
@click.option("--init", default=None, help="Start from the weights of this ddnn-deploy checkpoint.")
@click.option("--device", default=None, help="torch device (default: cuda when available, else cpu).")
@click.option("--threads", type=int, default=None, help="CPU threads for torch.")
@click.option("--no-amp", is_flag=True, help="Disable mixed precision on CUDA.")
@click.option("--train-limit", type=int, default=None, help="Train on a random subset of this many images.")
@click.option("--test-limit", type=int, default=None, help="Evaluate on a random subset of this many images.")
@_train_option(
    "holdout",
    int,
    "Hold out N training images (a fixed split) and evaluate on them instead of the "
    "test set: tune hyper-parameters this way, never on the test set.",
)
@_train_option("recal_samples", int, "Training images used to recalibrate each depth's BN statistics.")
@_train_option("image_size", int, "Image folders: training crop and evaluation centre crop, in pixels.")
@click.option("--workers", type=int, default=None, help="Image folders: loader processes per rank (default: by cores).")
@click.option(
    "--lr-scale",
    type=click.Choice(LR_SCALES),
    default=train_default("lr_scale"),
    show_default=True,
    help="linear: --lr is per --lr-base-batch images, scaled with the global batch (batch x grad-accum x processes).",
)
@_train_option("lr_base_batch", int)
@click.option("--no-channels-last", is_flag=True, help="Keep NCHW memory layout (channels_last is on by default).")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
def train(**opts) -> None:
    """Train a DDNN checkpoint (EKD by default); works under torchrun for DDP."""
    from ..distill.trainer import train as run_train

    recipe = opts.pop("recipe")
    if recipe is not None:  # the recipe's values where the user left the option at its default
        context = click.get_current_context()
        for key, value in RECIPES[recipe].items():
            if context.get_parameter_source(key) in (None, click.core.ParameterSource.DEFAULT):
                opts[key] = value
        if recipe == "imagenet-finetune" and not opts.get("init"):
            raise UsageError(
                "--recipe imagenet-finetune fine-tunes weights you have: convert them first (ddnn-deploy convert "
                "--arch resnet50 --weights resnet50-*.pth --out r50-init.pt), then pass --init r50-init.pt"
            )
    opts["amp"] = not opts.pop("no_amp")
    opts["channels_last"] = not opts.pop("no_channels_last")
    opts["progress"] = not opts.pop("no_progress")
    run_train(TrainConfig(**opts), log=_log)


@click.command("eval")
@click.option("--ckpt", required=True, help="ddnn-deploy checkpoint.")
@click.option("--depths", default=None, help="Depths to evaluate (default: every depth in the checkpoint).")
@click.option(
    "--dataset",
    type=click.Choice(DATASETS),
    default=None,
    help="Dataset (default: the one the checkpoint was trained on).",
)
@click.option("--data", "data_dir", default=None, help="Dataset folder.")
@click.option("--limit", type=int, default=None, help="Evaluate on a random subset of this many test images.")
@click.option("--device", default="cpu", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON on stdout.")
def eval_command(ckpt, depths, dataset, data_dir, limit, device, as_json) -> None:
    """Top-1/top-5 of every depth on the test split, each with its own BN statistics."""
    from ..evaluation import evaluate_checkpoint

    result = evaluate_checkpoint(ckpt, dataset=dataset, data_dir=data_dir, depths=depths, limit=limit, device=device)
    if as_json:
        _echo_json(result)
        return
    print_table(
        f"{ckpt} on {result['dataset']} (test)",
        ["depth", "blocks", "top-1 %", "top-5 %", "images"],
        [
            [r["depth"], "-".join(map(str, r["blocks"])), f"{r['top1']:.2f}", f"{r['top5']:.2f}", r["n"]]
            for r in result["depths"]
        ],
    )


@click.command("info")
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

    result = describe(
        arch=arch,
        ckpt=ckpt,
        depths=depths,
        num_classes=num_classes,
        in_channels=in_channels,
        input_size=input_size,
        width=width,
    )
    if as_json:
        _echo_json(result)
        return
    has_top1 = any("top1" in r for r in result["depths"])
    split = next((r["top1_split"] for r in result["depths"] if r.get("top1_split")), "test")
    columns = ["depth", "blocks", "params", "MACs"] + ([f"top-1 % ({split})"] if has_top1 else [])
    rows = [
        [r["depth"], "-".join(map(str, r["blocks"])), _fmt_count(r["params"]), _fmt_count(r["macs"])]
        + ([f"{r['top1']:.2f}" if r.get("top1") is not None else "-"] if has_top1 else [])
        for r in result["depths"]
    ]
    print_table(f"{result['arch']}, input {'x'.join(map(str, result['input_shape']))}", columns, rows)


@click.command("convert")
@click.option("--arch", required=True, help="Architecture name, e.g. resnet50.")
@click.option(
    "--weights",
    default=None,
    help="torchvision/timm state_dict (.pth/.pt/.safetensors); omit for a seeded random init (latency studies).",
)
@click.option("--depths", default=None, help="The checkpoint's depth table (default: the architecture's).")
@click.option("--num-classes", type=int, default=None, help="Default: read from the weights, else 1000.")
@click.option("--in-channels", type=int, default=None)
@click.option("--input-size", type=int, default=None)
@click.option("--width", type=int, default=None)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", required=True, help="Checkpoint to write.")
@click.option("--force", is_flag=True, help="Replace an existing file at --out.")
def convert(arch, weights, depths, num_classes, in_channels, input_size, width, seed, out, force) -> None:
    """Wrap a plain torchvision/timm ResNet state_dict (or a random init) into a DDNN checkpoint."""
    from ..convert import convert_weights

    ckpt = convert_weights(
        arch=arch,
        weights=weights,
        depths=depths,
        num_classes=num_classes,
        in_channels=in_channels,
        input_size=input_size,
        width=width,
        seed=seed,
        out=out,
        force=force,
    )
    _log(f"wrote {out}: {arch}, depths {', '.join(str(ckpt.spec.depth_of(c)) for c in ckpt.depths)}")


@click.command("export")
@click.option("--ckpt", required=True, help="ddnn-deploy checkpoint.")
@click.option("--out", required=True, help="Output directory (built beside it, moved into place when verified).")
@click.option("--depths", default=None, help="Depths to export (default: every depth in the checkpoint).")
@click.option("--selector", is_flag=True, help="Also write one graph with a depth selector input.")
@click.option(
    "--opset", type=int, default=None, help=f"ONNX opset (default: {DEFAULT_OPSET} with torchscript, 18 with dynamo)."
)
@click.option("--input-size", type=int, default=None, help="Input height = width (default: the checkpoint's).")
@click.option("--batch", type=int, default=None, help="Static batch size (default: dynamic batch axis).")
@click.option("--no-simplify", is_flag=True, help="Skip onnxsim.")
@click.option(
    "--exporter",
    type=click.Choice(EXPORTERS),
    default=EXPORTERS[0],
    show_default=True,
    help="torch.onnx exporter, passed explicitly and recorded (dynamo needs onnxscript).",
)
@click.option(
    "--tolerance",
    type=float,
    default=FP32_TOLERANCE,
    show_default=True,
    help="Largest allowed |onnx - torch| relative to the largest |logit|.",
)
@click.option(
    "--fp16",
    is_flag=True,
    help="Also write an FP16 graph per depth (float32 input/output), "
    "for back-ends that take precision from the graph, e.g. TensorRT 11.",
)
@click.option("--force", is_flag=True, help="Replace an output directory that already holds files.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@click.option("--json", "as_json", is_flag=True, help="Print the manifest on stdout.")
def export_command(
    ckpt,
    out,
    depths,
    selector,
    opset,
    input_size,
    batch,
    no_simplify,
    exporter,
    tolerance,
    fp16,
    force,
    no_progress,
    as_json,
) -> None:
    """Slice a checkpoint into verified per-depth ONNX graphs (+ an optional selector graph)."""
    from ..onnx_export.api import export

    manifest = export(
        ckpt,
        out,
        depths=depths,
        selector=selector,
        opset=opset,
        input_size=input_size,
        batch=batch,
        simplify=not no_simplify,
        force=force,
        exporter=exporter,
        tolerance=tolerance,
        fp16=fp16,
        progress=not no_progress,
        log=_log,
    )
    if as_json:
        _echo_json(manifest.to_json_dict())
        return
    rows = []
    for a in manifest.artifacts:
        depth = a.depth if a.kind == "depth" else ",".join(map(str, a.depths))
        rows.append(
            [
                depth,
                f"{a.kind} {a.precision}",
                a.path,
                f"{a.bytes / 1e6:.2f} MB",
                _fmt_count(a.params or 0),
                "yes" if a.simplified else "no",
                f"{(a.parity or {}).get('max_rel_err', 0):.1e}",
            ]
        )
    print_table(
        f"{out}/manifest.json ({manifest.export_seconds or 0:.0f} s)",
        ["depth", "kind", "file", "size", "params", "onnxsim", "parity (rel)"],
        rows,
    )


def _print_pick(pick) -> None:
    acc = f", top-1 {pick.top1:.2f}%" if pick.top1 is not None else ""
    click.echo(
        f"pick: depth {pick.depth} ({pick.backend} {pick.precision}, batch {pick.batch}): "
        f"{pick.stat} {pick.latency_ms:.3f} ms <= {pick.budget_ms:g} ms{acc}"
    )
    if pick.top1 is None:
        _log("note: these results hold no accuracy, so the deepest depth that fits was picked, not the most accurate "
             "(bench with --dataset to rank by accuracy)")  # fmt: skip


def _print_bench(results, title: str) -> None:
    rows = []
    for r in results.rows:
        lat, acc, mem = r.latency_ms, r.accuracy, r.memory_mb or {}
        rows.append(
            [
                r.depth,
                r.kind,
                r.backend,
                r.precision,
                r.batch,
                f"{lat.p50:.3f}" if lat else "-",
                f"{lat.p90:.3f}" if lat else "-",
                f"{r.throughput:.1f}" if r.throughput else "-",
                f"{acc.top1:.2f}" if acc and acc.top1 is not None else "-",
                f"{mem.get('peak_rss_mb') or 0:.0f}" if r.memory_mb else "-",
                r.status if r.status == "ok" else f"{r.status}: {r.error}",
            ]
        )
    print_table(
        title,
        [
            "depth",
            "kind",
            "back-end",
            "precision",
            "batch",
            "p50 ms",
            "p90 ms",
            "img/s",
            "top-1 %",
            "peak MB",
            "status",
        ],
        rows,
    )


@click.command("bench")
@click.option("--artifacts", default=None, help="Export directory (manifest.json + graphs).")
@click.option("--onnx", "onnx_path", default=None, help="Instead of --artifacts: one bare ONNX graph (latency only).")
@click.option(
    "--device",
    default="x86-cpu",
    show_default=True,
    help=f"Device profile ({', '.join(BUILTIN_PROFILES)}, or one from --profiles).",
)
@click.option("--profiles", "profiles_file", default=None, help="TOML file adding or overriding device profiles.")
@click.option(
    "--dataset",
    default=None,
    help=f"Dataset for accuracy ({', '.join(DATASETS)}, a folder with one sub-folder per class, or none for "
    "latency only). Default: the model's own dataset when its test data is here, else latency only.",
)
@click.option("--data", "data_dir", default=None, help="Dataset folder.")
@click.option("--limit", type=int, default=None, help="Measure accuracy on this many test images.")
@click.option("--depths", default=None, help="Depth numbers to measure, e.g. 8,20 (default: all).")
@click.option("--selector", "include_selector", is_flag=True, help="Also measure the selector graph.")
@click.option("--ckpt", default=None, help="Checkpoint, for the torch back-end.")
@click.option("--results", "results_path", default="results.json", show_default=True)
@click.option("--force", is_flag=True, help="Replace a file at --results that is not an earlier results file.")
@click.option("--engine-cache", default=None, help="TensorRT engine cache (default: ARTIFACTS/engines).")
@click.option("--precision", default=None, help="Precisions to measure, e.g. fp32,int8 (default: the profile's).")
@click.option("--budget-ms", type=float, default=None, help="Also print the depth this budget picks.")
@click.option(
    "--stat",
    type=click.Choice(LATENCY_STATS),
    default="p90",
    show_default=True,
    help="Latency statistic for --budget-ms.",
)
@click.option("--warmup", type=int, default=None, help="Warm-up iterations (overrides the profile).")
@click.option("--iterations", type=int, default=None, help="At least this many timed iterations (overrides).")
@click.option("--duration", type=float, default=None, help="At least this many seconds of timing (overrides).")
@click.option("--threads", type=int, default=None, help="CPU threads (overrides the profile).")
@click.option("--batch-sizes", default=None, help="Batch sizes, e.g. 1,8 (overrides the profile).")
@click.option("--host", default=None, help="Bench on this device over SSH ([user@]name); results come back here.")
@click.option("--port", type=int, default=22, show_default=True, help="SSH port of --host.")
@click.option("--identity", default=None, help="SSH private key for --host (default: ssh's keys and agent).")
@click.option("--remote-python", default="python3", show_default=True, help="Interpreter on --host with ddnn-deploy.")
@click.option("--known-hosts", default=None, help="known_hosts file for --host (default: ssh's).")
@click.option(
    "--accept-new-host-key", is_flag=True, help="Trust --host's key on first use (a changed key is still refused)."
)
@click.option(
    "--install", is_flag=True, help="Push this ddnn-deploy (a wheel) to --host first (its dependencies must be there)."
)
@click.option("--no-progress", is_flag=True)
@click.option("--json", "as_json", is_flag=True, help="Print the results on stdout.")
def bench_command(
    artifacts,
    onnx_path,
    device,
    profiles_file,
    dataset,
    data_dir,
    limit,
    depths,
    include_selector,
    ckpt,
    results_path,
    force,
    engine_cache,
    precision,
    budget_ms,
    stat,
    warmup,
    iterations,
    duration,
    threads,
    batch_sizes,
    host,
    port,
    identity,
    remote_python,
    known_hosts,
    accept_new_host_key,
    install,
    no_progress,
    as_json,
) -> None:
    """Measure latency, throughput, accuracy and memory of every depth on a device profile."""
    from ..pick import check_budget

    if budget_ms is not None:
        check_budget(budget_ms, stat)
    overrides = _profile_overrides(warmup, iterations, duration, threads, batch_sizes)
    if (artifacts is None) == (onnx_path is None):
        raise UsageError("give --artifacts (an export folder) or --onnx (one bare graph), one of the two")
    if onnx_path is not None:
        given = {"--dataset": dataset, "--limit": limit, "--depths": depths, "--selector": include_selector,
                 "--ckpt": ckpt, "--precision": precision, "--host": host, "--engine-cache": engine_cache,
                 "--install": install}  # fmt: skip
        results = _bench_bare(onnx_path, given, device, profiles_file, overrides, results_path, force, no_progress)
        _report_bench(results, device, results_path, budget_ms, stat, as_json)
        return
    common = dict(
        device=device,
        profiles_file=profiles_file,
        dataset="auto" if dataset is None else dataset,
        data_dir=data_dir,
        limit=limit,
        depths=_depth_numbers(depths),
        include_selector=include_selector,
        results_path=results_path,
        force=force,
        engine_cache=engine_cache,
        precisions=_precisions(precision),
        overrides=overrides,
        log=_log,
    )
    if host is not None:
        from ..remote import SSHTarget, bench_on_host

        if ckpt is not None:
            raise UsageError("--ckpt (the torch reference) runs where the checkpoint is: bench it without --host")
        target = SSHTarget(
            host, port=port, identity=identity, python=remote_python, known_hosts=known_hosts,
            accept_new_host_key=accept_new_host_key,
        )  # fmt: skip
        results = bench_on_host(artifacts, target, install=install, **common)
    else:
        if install:
            raise UsageError("--install pushes ddnn-deploy to a remote device: give --host too")
        from ..measure.sweep import bench

        results = bench(artifacts, checkpoint=ckpt, progress=not no_progress, **common)
    _report_bench(results, device, results_path, budget_ms, stat, as_json)


def _bench_bare(onnx_path, given, device, profiles_file, overrides, results_path, force, no_progress):
    """bench --onnx: one bare graph's latency; the options that need an export folder are refused."""
    extra = [flag for flag, value in given.items() if value]
    if extra:
        raise UsageError(f"--onnx measures one bare graph's latency: drop {', '.join(extra)}")
    from ..measure.bare import bench_onnx

    return bench_onnx(onnx_path, device=device, profiles_file=profiles_file, overrides=overrides,
                      results_path=results_path, force=force, progress=not no_progress, log=_log)  # fmt: skip


def _report_bench(results, device, results_path, budget_ms, stat, as_json) -> None:
    """The table (or JSON), the pick for --budget-ms, and exit 10 when some rows failed."""
    from ..pick import pick_depth

    if as_json:
        _echo_json(results.to_json_dict())
    else:
        _print_bench(results, f"{results.arch or results.artifacts.get('onnx')} on {device} -> {results_path}")
    if budget_ms is not None:
        _print_pick(pick_depth(results, budget_ms, stat=stat))
    failed = [r for r in results.rows if r.status == "error"]  # skipped rows (bf16 without BF16) are not failures
    if failed:
        from ..errors import PartialMeasurementError

        raise PartialMeasurementError(
            f"{len(failed)} of {len(results.rows)} measurements failed (first: depth {failed[0].depth} "
            f"{failed[0].precision} batch {failed[0].batch}: {failed[0].error}); the good rows and the errors "
            f"are in {results_path}"
        )


def _profile_overrides(warmup, iterations, duration, threads, batch_sizes) -> dict | None:
    """The knobs trtexec / benchmark_app users expect, as profile fields."""
    overrides = {}
    for key, value in (("warmup_iters", warmup), ("min_iters", iterations), ("min_seconds", duration)):
        if value is not None:
            overrides[key] = value
    if threads is not None:
        overrides["threads"] = threads
    if batch_sizes is not None:
        overrides["batch_sizes"] = _depth_numbers(batch_sizes, what="--batch-sizes")
    return overrides or None


@click.command("pick")
@click.option("--results", "results_path", default="results.json", show_default=True)
@click.option("--budget-ms", type=float, required=True, help="Latency budget in milliseconds.")
@click.option("--stat", type=click.Choice(LATENCY_STATS), default="p90", show_default=True)
@click.option("--min-accuracy", type=float, default=None, help="Lowest acceptable top-1 (%).")
@click.option("--batch", type=int, default=1, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def pick_command(results_path, budget_ms, stat, min_accuracy, batch, as_json) -> None:
    """The most accurate depth whose latency fits the budget (ties go to the faster)."""
    from ..formats.results import read_results
    from ..pick import check_budget, pick_depth

    check_budget(budget_ms, stat)  # before reading anything
    pick = pick_depth(read_results(results_path), budget_ms, stat=stat, min_accuracy=min_accuracy, batch=batch)
    if as_json:
        _echo_json(pick.to_dict())
    else:
        _print_pick(pick)


@click.command("calibrate")
@click.option("--artifacts", required=True, help="Export directory (manifest.json + FP32 graphs).")
@click.option(
    "--dataset",
    default=None,
    help="Calibration data: a dataset name (training split), a folder of "
    "images, a .npz sample, or 'random' (default: the bundled sample of the manifest's dataset).",
)
@click.option("--samples", type=int, default=512, show_default=True)
@click.option(
    "--target",
    type=click.Choice(TARGETS),
    default=QuantConfig.target,
    show_default=True,
    help="cpu: unsigned activations (x86 VNNI); tensorrt: symmetric signed INT8.",
)
@click.option("--method", type=click.Choice(METHODS), default=QuantConfig.method, show_default=True)
@click.option(
    "--percentile",
    type=float,
    default=QuantConfig.percentile,
    show_default=True,
    help="Histogram percentile kept by --method percentile.",
)
@click.option(
    "--max-drop",
    type=float,
    default=1.0,
    show_default=True,
    help="Largest allowed FP32 -> INT8 top-1 drop (points) on held-out test images.",
)
@click.option(
    "--eval-samples", type=int, default=2000, show_default=True, help="Held-out test images for the accuracy guard."
)
@click.option("--depths", default=None, help="Depth numbers to calibrate (default: all).")
@click.option("--no-progress", is_flag=True)
@click.option("--json", "as_json", is_flag=True)
def calibrate_command(
    artifacts, dataset, samples, target, method, percentile, max_drop, eval_samples, depths, no_progress, as_json
) -> None:
    """Calibrate an INT8 (QDQ) graph for every depth and record it in the manifest."""
    from ..quantize.calibrate import calibrate

    manifest = calibrate(
        artifacts,
        QuantConfig(target=target, method=method, percentile=percentile),
        dataset=dataset,
        samples=samples,
        max_drop=max_drop,
        eval_samples=eval_samples,
        depths=_depth_numbers(depths),
        progress=not no_progress,
        log=_log,
    )
    if as_json:
        _echo_json(manifest.to_json_dict())
        return
    rows = [
        [
            a.depth,
            a.target,
            a.path,
            f"{a.bytes / 1e6:.2f} MB",
            f"{a.accuracy['fp32_top1']:.2f}" if a.accuracy else "-",
            f"{a.accuracy['int8_top1']:.2f}" if a.accuracy else "-",
        ]
        for a in manifest.select(precision="int8")
    ]
    print_table(
        f"INT8 artifacts in {artifacts}/manifest.json (the selector graph stays FP32)",
        ["depth", "target", "file", "size", "FP32 top-1 %", "INT8 top-1 %"],
        rows,
    )
