"""Reproduce the paper's claim on Fashion-MNIST: EKD vs hard labels (ce) vs individually trained nets
(and ipkd-ta), same family, epochs, schedule, augmentation and per-depth BN recalibration, several seeds.

    python benchmarks/reproduce_fashion_mnist.py                      # resumes where it stopped
    nohup python benchmarks/reproduce_fashion_mnist.py > runs/reproduce.log 2>&1 &
    python benchmarks/reproduce_fashion_mnist.py --report-only        # table + plot from what is done

Every run writes its checkpoint under --work (default benchmarks/reproduce_runs/, committed so a later
session resumes); a finished run is skipped, an
interrupted one resumes from its last epoch. The test-set runs use the trainer's defaults for every
method. Any tuning (loss weights, temperature) goes through --holdout N, which trains on 60,000 - N
training images and evaluates on the N held out, in its own folder and results file, e.g.

    python benchmarks/reproduce_fashion_mnist.py --holdout 10000 --methods ekd --seeds 0 --at-weight 30 \
        --work benchmarks/reproduce_runs/holdout10000-at30 --results benchmarks/results/tune/at30.json

Runs unchanged on CUDA (the trainer picks it).
Results: benchmarks/results/reproduce_fashion_mnist.json (+ .md table, + .png plot).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from _common import RESULTS as RESULTS_DIR  # benchmarks/ is on sys.path when a script here runs
from _common import ROOT

from ddnn_deploy.atomic import write_text_atomic
from ddnn_deploy.distill.config import TrainConfig

RESULTS = RESULTS_DIR / "reproduce_fashion_mnist.json"


def _finished(path: Path) -> bool:
    if not path.exists():
        return False
    from ddnn_deploy.checkpoint import load_checkpoint

    return "resume" not in load_checkpoint(path).training


def units(args: argparse.Namespace) -> list[tuple[str, dict, Path]]:
    """Every training run the study needs, as (label, TrainConfig keywords, final checkpoint), the longest first.
    A finished run is left out; an unfinished one resumes."""
    from ddnn_deploy.spec import arch_spec, parse_depths

    work = Path(args.work)
    spec = arch_spec(args.arch)
    out: list[tuple[str, dict, Path]] = []
    for seed in args.seeds:
        base = dict(
            arch=args.arch,
            width=args.width,
            epochs=args.epochs,
            batch_size=args.batch_size,
            seed=seed,
            progress=False,
            threads=args.threads or (1 if args.jobs > 1 else None),
            train_limit=args.train_limit,
            test_limit=args.test_limit,
            holdout=args.holdout,
            amp=args.amp,
        )
        for method in args.methods:
            if method == "individual":  # one unit per depth: they can run side by side
                for depth in parse_depths(spec, args.depths):
                    final = work / f"individual-s{seed}-d{spec.depth_of(depth)}.pt"
                    config = dict(base, mode="individual", depths=str(depth), out=str(work / f"individual-s{seed}.pt"))
                    out.append((f"individual depth {spec.depth_of(depth)} seed {seed}", config, final))
            else:
                final = work / f"{method}-s{seed}.pt"
                config = dict(
                    base,
                    mode=method,
                    depths=args.depths,
                    out=str(final),
                    kl_weight=args.kl_weight,
                    at_weight=args.at_weight,
                    temperature=args.temperature,
                    attention_power=args.attention_power,
                    at_combine=args.at_combine,
                )
                out.append((f"{method} seed {seed}", config, final))
    todo = [(label, config, final) for label, config, final in out if not _finished(final)]
    return sorted(todo, key=lambda u: u[1]["mode"] == "individual")  # DDNN runs (the long ones) first


def run_unit(label: str, config: dict, final: str) -> str:
    """Train one unit (in this process or a pool worker); its log lines carry the label."""
    from ddnn_deploy.distill.trainer import TrainConfig, train

    print(f"[{time.strftime('%H:%M:%S')}] start {label}", flush=True)
    started = time.time()
    train(
        TrainConfig(**config, resume=Path(final).exists()),
        log=lambda line: print(f"[{time.strftime('%H:%M:%S')}] {label}: {line}", flush=True),
    )
    return f"[{time.strftime('%H:%M:%S')}] done {label} in {time.time() - started:.0f} s"


def cores(widen: bool = False) -> int:
    """The cores this process may run on (its affinity, which a container or ``taskset`` can narrow below
    ``os.cpu_count()``: a GPU lease here once gave 1 of 16). ``widen``: ask for every core first."""
    import os

    if not hasattr(os, "sched_getaffinity"):
        return os.cpu_count() or 1
    if widen and len(os.sched_getaffinity(0)) < (os.cpu_count() or 1):
        try:
            os.sched_setaffinity(0, range(os.cpu_count() or 1))
        except OSError as exc:
            print(f"could not widen the CPU affinity: {exc}", flush=True)
    return len(os.sched_getaffinity(0))


def run_pool(todo: list[tuple[str, dict, Path]], jobs: int) -> None:
    """Run the units, ``jobs`` at a time, each in its own process (spawned: safe with CUDA)."""
    available = cores()
    if jobs > available:
        print(f"note: {jobs} jobs share {available} core(s) this process may use (--all-cores widens it)", flush=True)
    if jobs <= 1:
        for label, config, final in todo:
            print(run_unit(label, config, str(final)), flush=True)
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    failed = []
    with ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {pool.submit(run_unit, label, config, str(final)): label for label, config, final in todo}
        for future in as_completed(futures):
            try:
                print(future.result(), flush=True)
            except Exception as exc:  # one failed run does not stop the others; it is listed at the end
                failed.append(f"{futures[future]}: {type(exc).__name__}: {exc}")
                print(f"FAILED {failed[-1]}", flush=True)
    if failed:
        raise SystemExit("failed runs:\n" + "\n".join(failed))


def positive_int(text: str) -> int:
    """argparse type: an integer of at least 1 (``--jobs``)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, not {text!r}")
    return value


def run_all(args: argparse.Namespace) -> None:
    Path(args.work).mkdir(parents=True, exist_ok=True)
    run_pool(units(args), args.jobs)
    collect(args)


def collect(args: argparse.Namespace) -> dict:
    from ddnn_deploy.checkpoint import load_checkpoint
    from ddnn_deploy.distill.trainer import recorded_sessions
    from ddnn_deploy.measure.environment import cpu_model

    work = Path(args.work)
    rows = []
    for path in sorted(work.glob("*.pt")):
        if not _finished(path):
            continue
        ckpt = load_checkpoint(path)
        settings = ckpt.training["settings"]
        history = ckpt.training.get("history") or []
        for config in ckpt.depths:
            m = ckpt.metrics[str(config)]
            last = history[-1]["train"].get(str(config), {}) if history else {}
            rows.append(
                {
                    "method": settings["mode"],
                    "depth": ckpt.spec.depth_of(config),
                    "blocks": list(config.blocks),
                    "seed": settings["seed"],
                    "top1": m["top1"],
                    "top1_shared_bn": m["top1_shared_bn"],
                    "split": m.get("split", "test"),
                    "n": m["n"],
                    "params": m["params"],
                    "macs": m["macs"],
                    "kl_weight": settings["kl_weight"],
                    "at_weight": settings["at_weight"],
                    "temperature": settings["temperature"],
                    "attention_power": settings.get("attention_power", 1),
                    "at_combine": settings.get("at_combine", "sum"),
                    "train_samples": ckpt.training.get("train_samples") or _train_samples(settings),
                    "last_epoch_train_top1": last.get("top1"),
                    "grad_norm_ratio_first_last": (
                        [history[0]["grad_norm_ratio"], history[-1]["grad_norm_ratio"]]
                        if history and "grad_norm_ratio" in history[0]
                        else None
                    ),
                    "epochs": settings["epochs"],
                    "train_seconds": ckpt.training.get("wall_time_s"),
                    "trained_on": recorded_sessions(ckpt.training),
                    "file": path.name,
                }
            )
    import torch

    sizes = sorted({r["train_samples"] for r in rows})
    result = {
        "benchmark": "reproduce_fashion_mnist",
        "dataset": (
            f"fashion-mnist: {_size_text(sizes)} training images / 10k test"
            if not args.holdout
            else f"fashion-mnist: {_size_text(sizes)} training images from the {60000 - args.holdout} not held out / "
            f"{args.holdout} held out of the training split (the test set is not used)"
        ),
        "settings": {
            "arch": args.arch,
            "width": args.width,
            "depths": args.depths,
            "epochs": args.epochs,
            "batch_size": args.batch_size,
            "seeds": args.seeds,
            "methods": args.methods,
            "kl_weight": args.kl_weight,
            "at_weight": args.at_weight,
            "temperature": args.temperature,
            "holdout": args.holdout,
            "attention_power": args.attention_power,
            "at_combine": args.at_combine,
            "amp": args.amp,
            "train_limit": args.train_limit,
            "train_samples": sizes[0] if len(sizes) == 1 else sizes,
            "schedule": "SGD nesterov 0.9, lr 0.1, wd 5e-4, 1 warm-up epoch + cosine",
            "augmentation": "pad 2 + random crop 28, horizontal flip",
            "bn": "per-depth recalibration on 10k training images",
        },
        "environment": {
            "cpu": cpu_model(),
            "threads": args.threads,
            "torch": str(torch.__version__),
            "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
            "jobs": args.jobs,
        },
        "rows": rows,
        "updated": time.strftime("%Y-%m-%d %H:%M"),
    }
    result["summary"] = summarize(rows, args.methods)
    out = Path(args.results)
    write_text_atomic(out, json.dumps(result, indent=2) + "\n")
    report(result, out)
    return result


def _size_text(sizes: list[int]) -> str:
    return ", ".join(f"{n:,}" for n in sizes) or "?"


def _train_samples(settings: dict) -> int:
    """Training images a checkpoint saw, for checkpoints older than its ``train_samples`` record."""
    available = 60000 - (settings.get("holdout") or 0)
    return min(available, settings.get("train_limit") or available)


def _errors(rows: list[dict], method: str, depth: int, key: str = "top1") -> dict[int, float]:
    """{seed: top-1 error %} for one method and depth."""
    return {r["seed"]: 100 - r[key] for r in rows if r["method"] == method and r["depth"] == depth}


def summarize(rows: list[dict], methods: list[str]) -> dict:
    """EKD against each other method: error difference (other - EKD, positive = EKD better), averaged over
    the sub-net depths, per seed where both ran that seed, then mean over seeds; and the full-net's change."""
    depths = sorted({r["depth"] for r in rows})
    if not depths:
        return {}
    full, subs = depths[-1], depths[:-1]
    out: dict = {"full_depth": full, "sub_depths": subs, "ekd_vs": {}}
    for other in [m for m in methods if m != "ekd"]:
        per_seed = {}
        for seed in sorted({r["seed"] for r in rows}):
            diffs = []
            for d in subs:
                a, b = _errors(rows, other, d), _errors(rows, "ekd", d)
                if seed in a and seed in b:
                    diffs.append(a[seed] - b[seed])
            if subs and len(diffs) == len(subs):
                per_seed[seed] = float(np.mean(diffs))
        a, b = _errors(rows, other, full), _errors(rows, "ekd", full)
        full_seed = {s: a[s] - b[s] for s in a if s in b}
        if per_seed or full_seed:
            out["ekd_vs"][other] = {
                "sub_nets_points": float(np.mean(list(per_seed.values()))) if per_seed else None,
                "sub_nets_points_per_seed": per_seed,
                "full_net_points": float(np.mean(list(full_seed.values()))) if full_seed else None,
                "full_net_points_per_seed": full_seed,
            }
    return out


def _cell(values: list[float], bold: bool) -> str:
    if not values:
        return "-"
    text = f"{np.mean(values):.2f}" + (f" ± {np.std(values, ddof=1):.2f}" if len(values) > 1 else " (n=1)")
    return f"**{text}**" if bold else text


def table(rows: list[dict], methods: list[str], key: str = "top1") -> list[str]:
    """Table 1 of the paper, our way: one row per depth, top-1 error % per method (mean ± sd over seeds)."""
    depths = sorted({r["depth"] for r in rows})
    lines = ["| depth | MACs | " + " | ".join(methods) + " |", "|---|---|" + "---|" * len(methods)]
    for depth in depths:
        values = {m: list(_errors(rows, m, depth, key).values()) for m in methods}
        best = min((np.mean(v) for v in values.values() if v), default=None)
        macs = next(r["macs"] for r in rows if r["depth"] == depth)
        lines.append(
            f"| {depth} | {macs / 1e6:.1f} M | "
            + " | ".join(_cell(values[m], bool(values[m]) and np.mean(values[m]) == best) for m in methods)
            + " |"
        )
    return lines


def report(result: dict, out: Path) -> None:
    rows = result["rows"]
    methods = [m for m in result["settings"]["methods"] if any(r["method"] == m for r in rows)]
    seeds = sorted({r["seed"] for r in rows})
    split = "held-out training images" if result["settings"].get("holdout") else "test set"
    lines = [
        f"Top-1 error % on the {split} (mean ± sd over seeds {seeds}; bold = best per depth), "
        "each depth with its own recalibrated BN statistics:",
        "",
    ] + table(rows, methods)
    lines += ["", "The same networks with the shared (training-time) BN statistics:", ""]
    lines += table(rows, methods, "top1_shared_bn")
    summary = result.get("summary") or {}
    if summary.get("ekd_vs"):
        lines += [
            "",
            "EKD against each method (other's error minus EKD's, points; positive = EKD better):",
            "",
            f"| method | sub-nets {summary['sub_depths']}, mean over depths | per seed | "
            f"full-net ({summary['full_depth']}) | per seed |",
            "|---|---|---|---|---|",
        ]
        fmt = lambda v: "-" if v is None else f"{v:+.2f}"  # noqa: E731
        for other, d in summary["ekd_vs"].items():
            lines.append(
                f"| {other} | {fmt(d['sub_nets_points'])} | "
                + ", ".join(f"s{s}: {v:+.2f}" for s, v in d["sub_nets_points_per_seed"].items())
                + f" | {fmt(d['full_net_points'])} | "
                + ", ".join(f"s{s}: {v:+.2f}" for s, v in d["full_net_points_per_seed"].items())
                + " |"
            )
    text = "\n".join(lines) + "\n"
    write_text_atomic(out.with_suffix(".md"), text)
    print(text)
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    depths = sorted({r["depth"] for r in rows})
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    for i, method in enumerate(methods):
        shift = (i - (len(methods) - 1) / 2) * 0.25
        xs, ys, lo, hi = [], [], [], []
        for d in depths:
            v = list(_errors(rows, method, d).values())
            if v:
                xs.append(d + shift)
                ys.append(float(np.mean(v)))
                lo.append(ys[-1] - min(v))
                hi.append(max(v) - ys[-1])
        ax.errorbar(xs, ys, yerr=[lo, hi], fmt="o-", capsize=3, label=method)
    ax.set_xticks(depths)
    ax.set_xlabel("depth (cifar_resnet20 family)")
    ax.set_ylabel(f"top-1 error on the {split} (%)")
    ax.set_title(f"Fashion-MNIST, mean and range over seeds {seeds}")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out.with_suffix(".png"))
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default="cifar_resnet20")
    parser.add_argument("--width", type=int, default=8)
    parser.add_argument("--depths", default="8,14,20")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--seeds", type=lambda s: [int(x) for x in s.split(",")], default=[0, 1])
    parser.add_argument("--methods", type=lambda s: s.split(","), default=["individual", "ce", "ekd", "ipkd-ta"])
    parser.add_argument("--kl-weight", type=float, default=1.0)
    parser.add_argument("--at-weight", type=float, default=100.0)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument(
        "--holdout",
        type=int,
        default=0,
        help="tuning: hold out N training images and evaluate on them, not on the test set "
        "(use with its own --work and --results)",
    )
    parser.add_argument(
        "--attention-power",
        type=int,
        default=TrainConfig.attention_power,
        choices=[1, 2],
        help="default: the trainer's",
    )
    parser.add_argument("--at-combine", default="sum", choices=["sum", "mean"])
    parser.add_argument(
        "--amp", action="store_true", help="mixed precision on CUDA (default FP32 everywhere, so devices compare)"
    )
    parser.add_argument("--jobs", type=positive_int, default=1, help="runs side by side, each in its own process")
    parser.add_argument("--all-cores", action="store_true", help="widen this process's CPU affinity to every core")
    parser.add_argument("--threads", type=int, default=None, help="per run (default: 1 with --jobs > 1)")
    parser.add_argument("--train-limit", type=int, default=None, help="smoke tests only")
    parser.add_argument("--test-limit", type=int, default=None, help="smoke tests only")
    parser.add_argument(
        "--results",
        default=None,
        help=f"default {RESULTS.relative_to(ROOT)} (with --holdout N: reproduce_fashion_mnist_holdoutN.json beside it)",
    )
    parser.add_argument(
        "--work",
        default=None,
        help="checkpoint folder (default benchmarks/reproduce_runs, "
        "with --holdout N: benchmarks/reproduce_runs/holdoutN)",
    )
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args()
    suffix = f"holdout{args.holdout}" if args.holdout else ""
    if args.work is None:  # tuning runs never share a folder (or a results file) with the test-set runs
        args.work = str(ROOT / "benchmarks" / "reproduce_runs" / suffix)
    if args.results is None:
        args.results = str(RESULTS.with_name(f"{RESULTS.stem}_{suffix}.json") if suffix else RESULTS)
    cores(widen=args.all_cores)
    if args.report_only:
        collect(args)
    else:
        run_all(args)


if __name__ == "__main__":
    main()
