"""Reproduce the paper's claim on Fashion-MNIST: EKD vs hard labels (ce) vs individually trained nets
(and ipkd-ta), same family, epochs, schedule, augmentation and per-depth BN recalibration, several seeds.

    python benchmarks/reproduce_fashion_mnist.py                      # resumes where it stopped
    nohup python benchmarks/reproduce_fashion_mnist.py > runs/reproduce.log 2>&1 &
    python benchmarks/reproduce_fashion_mnist.py --report-only        # table + plot from what is done

Every run writes its checkpoint under --work (default benchmarks/reproduce_runs/, committed so a later
session resumes); a finished run is skipped, an
interrupted one resumes from its last epoch. No tuning happens here (the trainer's defaults are used
for every method), so nothing is tuned on the test set. Runs unchanged on CUDA (the trainer picks it).
Results: benchmarks/results/reproduce_fashion_mnist.json (+ .md table, + .png plot).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "reproduce_fashion_mnist.json"


def _finished(path: Path) -> bool:
    if not path.exists():
        return False
    from ddnn_deploy.checkpoint import load_checkpoint

    return "resume" not in load_checkpoint(path).training


def run_all(args: argparse.Namespace) -> None:
    from ddnn_deploy.distill.trainer import TrainConfig, train
    from ddnn_deploy.spec import arch_spec, parse_depths

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    depths = parse_depths(arch_spec(args.arch), args.depths)
    for seed in args.seeds:
        for method in args.methods:
            base = dict(arch=args.arch, width=args.width, epochs=args.epochs, batch_size=args.batch_size,
                        seed=seed, progress=False, threads=args.threads, train_limit=args.train_limit,
                        test_limit=args.test_limit)
            if method == "individual":
                for depth in depths:
                    number = arch_spec(args.arch).depth_of(depth)
                    final = work / f"individual-s{seed}-d{number}.pt"
                    if _finished(final):
                        continue
                    print(f"[{time.strftime('%H:%M:%S')}] individual depth {number} seed {seed}", flush=True)
                    train(TrainConfig(**base, mode="individual", depths=str(depth),
                                      out=str(work / f"individual-s{seed}.pt"), resume=final.exists()))
            else:
                out = work / f"{method}-s{seed}.pt"
                if _finished(out):
                    continue
                print(f"[{time.strftime('%H:%M:%S')}] {method} seed {seed}", flush=True)
                train(TrainConfig(**base, mode=method, depths=args.depths, out=str(out), resume=out.exists(),
                                  kl_weight=args.kl_weight, at_weight=args.at_weight))
            collect(args)


def collect(args: argparse.Namespace) -> dict:
    from ddnn_deploy.checkpoint import load_checkpoint

    work = Path(args.work)
    rows = []
    for path in sorted(work.glob("*.pt")):
        if not _finished(path):
            continue
        ckpt = load_checkpoint(path)
        method = ckpt.training["settings"]["mode"]
        seed = ckpt.training["settings"]["seed"]
        for config in ckpt.depths:
            m = ckpt.metrics[str(config)]
            rows.append({"method": method, "depth": ckpt.spec.depth_of(config), "blocks": list(config.blocks),
                         "seed": seed, "top1": m["top1"], "top1_shared_bn": m["top1_shared_bn"],
                         "train_seconds": ckpt.training.get("wall_time_s")})
    import torch

    result = {"benchmark": "reproduce_fashion_mnist", "dataset": "fashion-mnist (60k train / 10k test)",
              "settings": {"arch": args.arch, "width": args.width, "depths": args.depths, "epochs": args.epochs,
                           "batch_size": args.batch_size, "seeds": args.seeds, "methods": args.methods,
                           "kl_weight": args.kl_weight, "at_weight": args.at_weight,
                           "schedule": "SGD nesterov 0.9, lr 0.1, wd 5e-4, 1 warm-up epoch + cosine",
                           "augmentation": "pad 2 + random crop 28, horizontal flip",
                           "bn": "per-depth recalibration on 10k training images"},
              "environment": {"cpu": platform.processor() or platform.machine(), "torch": str(torch.__version__),
                              "device": "cuda" if torch.cuda.is_available() else "cpu"},
              "rows": rows, "updated": time.strftime("%Y-%m-%d %H:%M")}
    out = Path(args.results)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    report(result, out)
    return result


def report(result: dict, out: Path) -> None:
    rows = result["rows"]
    methods = [m for m in result["settings"]["methods"] if any(r["method"] == m for r in rows)]
    depths = sorted({r["depth"] for r in rows})
    lines = ["| depth | " + " | ".join(f"{m} error % (mean ± sd, n)" for m in methods) + " |",
             "|---|" + "---|" * len(methods)]
    means: dict[tuple[str, int], float] = {}
    for depth in depths:
        cells = []
        for method in methods:
            values = [100 - r["top1"] for r in rows if r["method"] == method and r["depth"] == depth]
            if values:
                means[(method, depth)] = float(np.mean(values))
                spread = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
                cells.append(f"{np.mean(values):.2f} ± {spread:.2f} ({len(values)})")
            else:
                cells.append("-")
        lines.append(f"| {depth} | " + " | ".join(cells) + " |")
    summary = []
    full = max(depths) if depths else None
    subs = [d for d in depths if d != full]
    for other in ("ce", "individual", "ipkd-ta"):
        pairs = [means[(other, d)] - means[("ekd", d)] for d in subs if (other, d) in means and ("ekd", d) in means]
        if pairs:
            summary.append(f"{other} sub-nets have {np.mean(pairs):+.2f} points more top-1 error than EKD's, "
                           f"on average over depths {subs} (positive = EKD better)")
    if full is not None and ("ekd", full) in means and ("individual", full) in means:
        summary.append(f"full-net ({full}): EKD error {means[('ekd', full)]:.2f}% vs individual "
                       f"{means[('individual', full)]:.2f}%")
    text = "\n".join(lines + [""] + [f"- {s}" for s in summary]) + "\n"
    out.with_suffix(".md").write_text(text)
    print(text)
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    for i, method in enumerate(methods):
        xs = [d + (i - len(methods) / 2) * 0.3 for d in depths if (method, d) in means]
        ys = [means[(method, d)] for d in depths if (method, d) in means]
        ax.plot(xs, ys, "o-", label=method)
    ax.set_xlabel("depth")
    ax.set_ylabel("top-1 error on the test set (%)")
    ax.set_title("Fashion-MNIST: EKD vs hard labels vs individual")
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
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--train-limit", type=int, default=None, help="smoke tests only")
    parser.add_argument("--test-limit", type=int, default=None, help="smoke tests only")
    parser.add_argument("--results", default=str(RESULTS))
    parser.add_argument("--work", default=str(ROOT / "benchmarks" / "reproduce_runs"))
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args()
    if args.report_only:
        collect(args)
    else:
        run_all(args)


if __name__ == "__main__":
    main()
