"""Training at scale (issue 16): step cost, loader throughput, memory against dataset size.

    python benchmarks/training_scale.py steps      # EKD step vs the sum of the individual depths' steps
    python benchmarks/training_scale.py loader     # images/s per worker, data-wait share with 2 workers
    python benchmarks/training_scale.py memory     # peak RSS of a run on 2,000 vs 20,000 images

``steps``: CIFAR ResNet-20 (width 16, 32 px, batch 128) and ResNet-50 (224 px, batch 8), random data. For each
memory layout (NCHW, channels_last): one EKD step with every depth run from the stem (the old step), one with the
shared prefix run once (``DepthNet.forward_many``), and one plain CE step of each depth alone (SGD step
included). The variants run interleaved, round after round; medians are compared, in one process.
``loader``/``memory``: a generated image folder (Fashion-MNIST as 64 px RGB PNGs) and ``FolderFiles``.
Results: ``results/training-scale-*.json`` with the environment.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from _common import ROOT, save_result  # benchmarks/ is on sys.path when a script here runs

from ddnn_deploy.distill.losses import distill_loss
from ddnn_deploy.models import build_model
from ddnn_deploy.spec import arch_spec, parse_depths

CASES = {
    "cifar_resnet20-w16": dict(arch="cifar_resnet20", depths="8,14,20", shape=(3, 32, 32), width=16, batch=128),
    "resnet50-224": dict(arch="resnet50", depths="26,38,50", shape=(3, 224, 224), width=None, batch=8),
}


def _environment() -> dict:
    from ddnn_deploy.measure.environment import capture

    env = capture("torch", torch.get_num_threads())
    return {"cpu": env.get("cpu"), "cores": env.get("cores"), "threads": torch.get_num_threads(),
            "torch": torch.__version__, "python": sys.version.split()[0]}  # fmt: skip


def _step_fns(case: dict, channels_last: bool):
    torch.manual_seed(0)
    model = build_model(case["arch"], num_classes=10, in_channels=3, input_size=case["shape"][1], width=case["width"])
    model.train()
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model.to(memory_format=fmt)
    configs = parse_depths(arch_spec(case["arch"]), case["depths"])
    configs = sorted(configs, key=lambda c: -model.spec.depth_of(c))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(case["batch"], *case["shape"]).contiguous(memory_format=fmt)
    y = torch.randint(0, 10, (case["batch"],))

    def ekd(shared: bool):
        def step() -> None:
            if shared:
                outputs = model.forward_many(x, configs, return_features=True)
            else:
                outputs = [model(x, c, return_features=True) for c in configs]
            parts = distill_loss("ekd", [o[0] for o in outputs], [o[1] for o in outputs], y, kl_weight=1.0,
                                 at_weight=100.0)  # fmt: skip
            optimizer.zero_grad(set_to_none=True)
            parts["loss"].backward()
            optimizer.step()

        return step

    def alone(config):
        def step() -> None:
            loss = F.cross_entropy(model(x, config), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

        return step

    fns = {"ekd_from_stem": ekd(False), "ekd_shared_prefix": ekd(True)}
    fns.update({f"alone_d{model.spec.depth_of(c)}": alone(c) for c in configs})
    return fns


def steps(rounds: int, names: list[str]) -> None:
    out = {"benchmark": "training_scale steps", "rounds": rounds, "environment": _environment(), "cases": {}}
    for name in names:
        case = CASES[name]
        layouts = {}
        for layout in ("nchw", "channels_last"):
            fns = _step_fns(case, layout == "channels_last")
            times: dict[str, list[float]] = {k: [] for k in fns}
            for round_ in range(rounds + 2):  # two warm-up rounds
                for key, fn in fns.items():
                    t0 = time.perf_counter()
                    fn()
                    if round_ >= 2:
                        times[key].append((time.perf_counter() - t0) * 1e3)
            median = {k: statistics.median(v) for k, v in times.items()}
            individual = sum(v for k, v in median.items() if k.startswith("alone_"))
            layouts[layout] = {
                "median_ms": median,
                "sum_individual_ms": individual,
                "ekd_from_stem_over_sum": median["ekd_from_stem"] / individual,
                "ekd_shared_prefix_over_sum": median["ekd_shared_prefix"] / individual,
            }
            print(f"{name} {layout}: from stem {layouts[layout]['ekd_from_stem_over_sum']:.3f}x, shared prefix "
                  f"{layouts[layout]['ekd_shared_prefix_over_sum']:.3f}x the sum of the depths alone "
                  f"({individual:.1f} ms)")  # fmt: skip
        shared_ms = {lay: layouts[lay]["median_ms"]["ekd_shared_prefix"] for lay in ("nchw", "channels_last")}
        layouts["channels_last_speedup_shared"] = shared_ms["nchw"] / shared_ms["channels_last"]
        layouts["best_over_old"] = min(shared_ms.values()) / layouts["nchw"]["median_ms"]["ekd_from_stem"]
        out["cases"][name] = {**case, "layouts": layouts}
    save_result("training-scale-steps", out)


def make_folder(root: Path, per_class: int) -> Path:
    """Fashion-MNIST training images as 64 px RGB PNGs in ROOT/train/cK and ROOT/val/cK (images repeat past
    6,000 per class: the files are distinct, only their pixels repeat)."""
    from PIL import Image

    from ddnn_deploy.data import load_dataset

    data = load_dataset("fashion-mnist", "train")
    for split, count in (("train", per_class), ("val", 10)):
        for label in range(10):
            folder = root / split / f"c{label}"
            folder.mkdir(parents=True, exist_ok=True)
            picks = np.flatnonzero(data.labels == label)
            for n in range(count):
                gray = Image.fromarray(data.images[picks[n % len(picks)], 0]).resize((64, 64))
                Image.merge("RGB", (gray, gray, gray)).save(folder / f"{n}.png")
    return root


def loader(batches: int) -> None:
    from ddnn_deploy.distill.stream import FolderFiles

    with tempfile.TemporaryDirectory(prefix="ddnn-loader-") as tmp:
        files = FolderFiles.open(make_folder(Path(tmp), 200) / "train", size=56)
        rates = {}
        for workers in (0, 1, 2):
            load = files.loader(32, seed=0, workers=workers)
            load.sampler.set_epoch(0)
            it = iter(load)
            next(it)  # workers started
            t0 = time.perf_counter()
            for _ in range(batches):
                next(it)
            rates[workers] = 32 * batches / (time.perf_counter() - t0)
            del it, load
        # data-wait share of a small training step with 2 workers: the trainer's own progress clock
        model = build_model("resnet18", num_classes=10, width=16, input_size=56).train()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
        load = files.loader(32, seed=0, workers=2)
        load.sampler.set_epoch(1)
        waited = busy = 0.0
        it = iter(load)
        next(it)
        for _ in range(batches):
            t0 = time.perf_counter()
            images, labels = next(it)
            t1 = time.perf_counter()
            loss = F.cross_entropy(model(images.float() / 255), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            waited, busy = waited + t1 - t0, busy + time.perf_counter() - t1
    result = {
        "benchmark": "training_scale loader", "image": "64 px PNG -> RandomResizedCrop 56 + flip", "batch": 32,
        "images_per_s": rates, "images_per_s_per_worker": {w: rates[w] / w for w in rates if w},
        "data_wait_share_2_workers_resnet18_w16": waited / (waited + busy), "environment": _environment(),
    }  # fmt: skip
    save_result("training-scale-loader", result)
    print(result)


MEMORY_CHILD = """
import resource, sys
from ddnn_deploy.distill.config import TrainConfig
from ddnn_deploy.distill.trainer import train
train(TrainConfig(arch="resnet18", width=8, dataset="imagefolder", data_dir=sys.argv[1], image_size=32, epochs=1,
      batch_size=64, workers=1, train_limit=2000, recal_samples=500, out=sys.argv[2], progress=False,
      threads=1), log=None)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""


def memory() -> None:
    """Same training work (2,000 images, one epoch) on a 2,000- and a 20,000-image folder: the file list is all
    that grows, so peak RSS must stay within 10 %."""
    peaks = {}
    with tempfile.TemporaryDirectory(prefix="ddnn-memory-") as tmp:
        for per_class in (200, 2000):
            root = make_folder(Path(tmp) / f"f{per_class}", per_class)
            done = subprocess.run([sys.executable, "-c", MEMORY_CHILD, str(root), str(Path(tmp) / f"{per_class}.pt")],
                                  capture_output=True, text=True, check=True, cwd=ROOT)  # fmt: skip
            peaks[10 * per_class] = float(done.stdout.strip().splitlines()[-1])
    result = {"benchmark": "training_scale memory", "peak_rss_mb_by_folder_size": peaks,
              "ratio": peaks[20000] / peaks[2000], "environment": _environment()}  # fmt: skip
    save_result("training-scale-memory", result)
    print(result)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["steps", "loader", "memory"])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--batches", type=int, default=40)
    args = parser.parse_args()
    torch.set_num_threads(int(os.environ.get("DDNN_BENCH_THREADS", os.cpu_count() or 1)))
    if args.what == "steps":
        steps(args.rounds, args.cases.split(","))
    elif args.what == "loader":
        loader(args.batches)
    else:
        memory()
    print("max RSS of this process:", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024, "MB")


if __name__ == "__main__":
    main()
