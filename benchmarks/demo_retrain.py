"""Issue 17's last step: the demo checkpoint retrained with the settings the fair test selected, against the one
shipped. The rule (benchmarks/README.md): replace the demo only if the retrained one has a higher test top-1 at
every depth.

    ddnn-deploy train --arch cifar_resnet20 --depths 8,14,20 --width 16 --mode ekd --epochs 30 \\
        --batch-size 128 --threads 2 --seed 0 --out runs/demo-p2.pt        # add --resume to continue it
    python benchmarks/demo_retrain.py [--new runs/demo-p2.pt]

Writes results/demo_retrain.json (both checkpoints' per-depth top-1, own and shared BN, and the decision). It
replaces nothing: swapping models/fmnist-resnet20-ddnn.pt also means its model card and tables.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from _common import ROOT, save_result  # benchmarks/ is on sys.path when a script here runs

# what must match for the comparison to be about the loss settings alone
SAME = ("arch", "depths", "dataset", "width", "mode", "epochs", "batch_size", "lr", "weight_decay", "seed")


def compare(old_path: Path, new_path: Path) -> dict:
    from ddnn_deploy.checkpoint import load_checkpoint

    old, new = load_checkpoint(old_path), load_checkpoint(new_path)
    if "resume" in new.training:
        done = new.training.get("epochs_done")
        raise SystemExit(f"{new_path} is unfinished ({done} epochs done): resume it with train --resume first")
    old_s, new_s = old.training["settings"], new.training["settings"]
    differ = [k for k in SAME if old_s.get(k) != new_s.get(k)]
    if differ:
        raise SystemExit(f"{new_path} differs from the demo in more than its loss settings: {', '.join(differ)}")
    rows = []
    for config in new.depths:
        key = str(config)
        rows.append(
            {
                "depth": new.spec.depth_of(config),
                "old_top1": old.metrics[key]["top1"],
                "new_top1": new.metrics[key]["top1"],
                "old_top1_shared_bn": old.metrics[key]["top1_shared_bn"],
                "new_top1_shared_bn": new.metrics[key]["top1_shared_bn"],
            }
        )
    better = all(r["new_top1"] > r["old_top1"] for r in rows)
    return {
        "old": {"file": str(old_path), "attention_power": old_s.get("attention_power", 1),
                "at_weight": old_s.get("at_weight")},
        "new": {"file": str(new_path), "attention_power": new_s.get("attention_power"),
                "at_weight": new_s.get("at_weight"), "sessions": new.training.get("sessions")},
        "rows": rows,
        "replace": better,
        "rule": "replace only if the retrained checkpoint's test top-1 (per-depth BN) is higher at every depth",
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--old", type=Path, default=ROOT / "models" / "fmnist-resnet20-ddnn.pt")
    parser.add_argument("--new", type=Path, default=ROOT / "runs" / "demo-p2.pt")
    args = parser.parse_args()
    if not args.new.exists():
        sys.exit(f"{args.new} does not exist: train it first (see this script's help)")
    from ddnn_deploy.errors import DDNNError

    try:
        result = compare(args.old.resolve(), args.new)
    except DDNNError as exc:  # not a checkpoint, or not one of this kind: one line
        sys.exit(f"error: {exc}")
    for r in result["rows"]:
        print(f"depth {r['depth']}: {r['old_top1']:.2f}% -> {r['new_top1']:.2f}% "
              f"(shared BN {r['old_top1_shared_bn']:.2f}% -> {r['new_top1_shared_bn']:.2f}%)")  # fmt: skip
    print("replace the demo:", "yes" if result["replace"] else "no (not better at every depth)")
    save_result("demo_retrain", result)


if __name__ == "__main__":
    main()
