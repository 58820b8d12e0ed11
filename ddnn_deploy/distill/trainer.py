"""The trainer: SGD (Nesterov), warm-up + cosine, augmentation, AMP on CUDA, per-epoch evaluation of
every depth, atomic checkpoints with resume, DDP through torchrun, and BN recalibration per depth.

Run under ``torchrun --nproc_per_node N`` for data-parallel training (NCCL on GPU, Gloo on CPU);
rank 0 evaluates and writes. The data order and augmentation of epoch ``e`` come from a generator
seeded with ``(seed, e)``, so a CPU run is repeatable and a resumed run sees the same batches.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F

from .. import __version__
from ..checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from ..data import ImageDataset, load_dataset
from ..errors import CheckpointError, DataError, UsageError
from ..evaluation import evaluate
from ..models import build_model, count_macs, recalibrate_bn
from ..spec import arch_spec, parse_depths
from .losses import MODES
from .task import DistillTask


@dataclass
class TrainConfig:
    arch: str = "cifar_resnet20"
    depths: str | None = None  # "8,14,20" or "1-1-1,3-3-3"; None = every depth in the arch table
    dataset: str = "fashion-mnist"
    data_dir: str | None = None
    width: int | None = None
    mode: str = "ekd"
    epochs: int = 30
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    warmup_epochs: float = 1.0
    kl_weight: float = 1.0
    at_weight: float = 100.0  # the raw attention MSE is ~1e-3: it needs a large weight to matter
    temperature: float = 1.0
    seed: int = 0
    out: str = "model.pt"
    resume: bool = False
    init: str | None = None  # a ddnn-deploy checkpoint to start from (fine-tuning)
    amp: bool = True  # used on CUDA only
    device: str | None = None
    threads: int | None = None
    train_limit: int | None = None  # use a subset (tests, quick runs)
    test_limit: int | None = None
    # > 0: hold out this many training images (a fixed split, independent of --seed) and evaluate on them
    # instead of the test set, so hyper-parameters can be tuned without looking at the test set
    holdout: int = 0
    recal_samples: int = 10000
    channels_last: bool = True
    progress: bool = True
    extra: dict[str, Any] = field(default_factory=dict)


def _dist_info() -> tuple[int, int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0))
    return 0, 1, 0


def _init_distributed(device: torch.device) -> None:
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        import datetime

        if device.type == "cuda":
            torch.cuda.set_device(device)  # each rank on its own GPU, or NCCL collectives can hang
        # rank 0 evaluates and recalibrates BN alone while the others wait at a barrier
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo",
                                timeout=datetime.timedelta(hours=2))


def _pick_device(name: str | None) -> torch.device:
    if name:
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return torch.device("cpu")


def augment(images: torch.Tensor, generator: torch.Generator, *, pad: int, flip: bool) -> torch.Tensor:
    """Random crop with zero padding and random horizontal flip on a uint8 NCHW batch."""
    n, _, h, w = images.shape
    padded = F.pad(images, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    flips = torch.rand(n, generator=generator) < 0.5 if flip else torch.zeros(n, dtype=torch.bool)
    out = torch.empty_like(images)
    for i in range(n):
        crop = padded[i, :, dy[i]: dy[i] + h, dx[i]: dx[i] + w]
        out[i] = crop.flip(-1) if flips[i] else crop
    return out


def _augment_settings(dataset: str, size: int) -> tuple[int, bool]:
    # Fashion-MNIST and CIFAR: the usual pad-and-crop + horizontal flip; larger images: 1/8 padding.
    return (2 if dataset == "fashion-mnist" else max(4, size // 8)), True


class Normalizer:
    def __init__(self, dataset: ImageDataset, device: torch.device):
        p = dataset.preprocess
        c = dataset.input_shape[0]
        self.scale = p.scale
        self.mean = torch.tensor(p.mean, dtype=torch.float32, device=device).view(1, c, 1, 1)
        self.std = torch.tensor(p.std, dtype=torch.float32, device=device).view(1, c, 1, 1)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return (images.float() * self.scale - self.mean) / self.std


def lr_factor(step: int, total: int, warmup: int) -> float:
    """Linear warm-up, then cosine decay to zero."""
    if warmup and step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def _progress(iterable, total: int, desc: str, enabled: bool):
    if not enabled:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=desc, leave=False, dynamic_ncols=True)


def _epoch_order(n: int, seed: int, epoch: int) -> np.ndarray:
    return np.random.default_rng([seed, epoch]).permutation(n)


def train(config: TrainConfig, *, log: Callable[[str], None] = print) -> Checkpoint:
    """Train a DDNN (or each depth alone, ``mode="individual"``) and return the final checkpoint."""
    if config.mode not in MODES:
        raise UsageError(f"unknown training mode {config.mode!r}; choose one of {', '.join(MODES)}")
    if config.mode == "individual":
        return _train_individual(config, log=log)
    return _train_ddnn(config, log=log)


def _train_individual(config: TrainConfig, *, log: Callable[[str], None]) -> Checkpoint:
    """The baseline: each depth trained as its own network, one checkpoint per depth (``OUT-dDEPTH.pt``)."""
    spec = arch_spec(config.arch)
    out = Path(config.out)
    last = None
    for depth in parse_depths(spec, config.depths):
        target = out.with_name(f"{out.stem}-d{spec.depth_of(depth)}{out.suffix}")
        resume = False
        if config.resume and target.exists():
            if "resume" not in load_checkpoint(target).training:
                log(f"individual: depth {spec.depth_of(depth)} already finished in {target}")
                last = load_checkpoint(target)
                continue
            resume = True
        sub = TrainConfig(**{**asdict(config), "mode": "ce", "depths": str(depth), "out": str(target),
                             "resume": resume})
        log(f"individual: training depth {spec.depth_of(depth)} ({depth}) alone -> {sub.out}")
        last = _train_ddnn(sub, log=log, mode_label="individual")
    assert last is not None
    return last


def _load_weights(model: torch.nn.Module, state: dict, what: str) -> None:
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        detail = next((line.strip() for line in str(exc).splitlines() if "size mismatch" in line or "Missing" in line),
                      str(exc).strip().splitlines()[0])
        raise CheckpointError(f"{what}: weights do not fit this model ({detail[:160]}); use the same --arch "
                              "and --width as the run that wrote them") from None


def _check_output(out: Path) -> None:
    """Fail before the first epoch, not after it, when the checkpoint cannot be written."""
    if out.is_dir():
        raise UsageError(f"--out {out} is a directory; give a file name such as {out / 'model.pt'}")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        import tempfile

        with tempfile.NamedTemporaryFile(dir=out.parent, prefix=f".{out.name}.probe-"):
            pass
    except OSError as exc:
        raise UsageError(f"cannot write {out}: {exc.strerror or exc}; choose another --out") from None


HOLDOUT_SEED = 20261125  # one split for every run, whatever its --seed


def _load_data(config: TrainConfig) -> tuple[ImageDataset, ImageDataset]:
    """(training set, evaluation set): the test split, or with ``holdout`` images held out of training."""
    train_set = load_dataset(config.dataset, "train", config.data_dir)
    if config.holdout:
        try:
            train_set, test_set = train_set.split(config.holdout, seed=HOLDOUT_SEED)
        except DataError as exc:
            raise UsageError(f"--holdout: {exc}") from None
    else:
        test_set = load_dataset(config.dataset, "test", config.data_dir)
    return train_set.subset(config.train_limit, seed=1), test_set.subset(config.test_limit, seed=2)


def _train_ddnn(config: TrainConfig, *, log: Callable[[str], None], mode_label: str | None = None) -> Checkpoint:
    device = _pick_device(config.device)
    _init_distributed(device)
    rank, world, _ = _dist_info()
    if config.threads:
        torch.set_num_threads(config.threads)
    spec = arch_spec(config.arch)
    depths = parse_depths(spec, config.depths)
    train_set, test_set = _load_data(config)
    c, h, w = train_set.input_shape
    model_kwargs = {"num_classes": len(train_set.classes), "in_channels": c, "input_size": h,
                    "width": config.width}
    torch.manual_seed(config.seed)
    model = build_model(config.arch, **model_kwargs)
    if config.init:
        init = load_checkpoint(config.init)
        if init.arch != config.arch:
            raise UsageError(f"--init checkpoint is {init.arch}, not {config.arch}")
        _load_weights(model, init.state_dict, f"--init {config.init}")
    model.to(device)
    if config.channels_last:
        model.to(memory_format=torch.channels_last)
    task = DistillTask(model, depths, mode=config.mode if mode_label is None else "ce",
                       kl_weight=config.kl_weight, at_weight=config.at_weight, temperature=config.temperature)
    wrapped: torch.nn.Module = task
    if world > 1:
        # Blocks deeper than every trained depth get no gradient; DDP must be told.
        covers_all = all(max(c.blocks[i] for c in depths) == n for i, n in enumerate(spec.full.blocks))
        wrapped = torch.nn.parallel.DistributedDataParallel(
            task, device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=not covers_all)

    decay, no_decay = [], []
    for p in model.parameters():
        (no_decay if p.ndim <= 1 else decay).append(p)
    optimizer = torch.optim.SGD([{"params": decay, "weight_decay": config.weight_decay},
                                 {"params": no_decay, "weight_decay": 0.0}],
                                lr=config.lr, momentum=config.momentum, nesterov=True)
    per_rank = len(train_set) // world
    steps_per_epoch = max(1, per_rank // config.batch_size)
    total_steps = steps_per_epoch * config.epochs
    warmup = int(config.warmup_epochs * steps_per_epoch)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, total_steps, warmup))
    use_amp = config.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)

    history: list[dict[str, Any]] = []
    start_epoch, elapsed = 0, 0.0
    out = Path(config.out)
    if rank == 0:
        _check_output(out)
    if config.resume:
        if not out.exists():
            raise CheckpointError(f"--resume: {out} does not exist yet; drop --resume to start afresh")
        prev = load_checkpoint(out)
        state = prev.training.get("resume")
        if not state:
            raise CheckpointError(f"--resume: {out} holds a finished run (no resume state); "
                                  "train to a new --out, or use --init to fine-tune from it")
        _load_weights(model, prev.state_dict, f"--resume {out}")
        try:
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
        except (ValueError, KeyError) as exc:
            raise CheckpointError(f"--resume {out}: optimizer state does not match this run ({exc}); "
                                  "resume with the same --arch, --width and --depths") from None
        start_epoch, elapsed = int(state["epoch"]), float(state["elapsed_s"])
        history = list(prev.training.get("history", []))
        log(f"resuming {out} at epoch {start_epoch + 1}/{config.epochs}")

    split_name = "held-out" if config.holdout else "test"
    normalize = Normalizer(train_set, device)
    pad, flip = _augment_settings(config.dataset, h)
    settings = {k: v for k, v in asdict(config).items() if k not in ("progress", "extra", "resume")}
    settings.update({"world_size": world, "device": device.type, "torch": str(torch.__version__),
                     "mode": mode_label or config.mode})

    def make_checkpoint(resume_state: dict | None, metrics: dict, bn_stats: dict) -> Checkpoint:
        training = {"settings": settings, "history": history, "epochs_done": len(history),
                    "wall_time_s": round(elapsed, 1)}
        if resume_state is not None:
            training["resume"] = resume_state
        state_dict = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        return Checkpoint(arch=config.arch, model=model_kwargs, depths=depths, state_dict=state_dict,
                          bn_stats=bn_stats, preprocess=train_set.preprocess.to_dict(),
                          input_shape=[c, h, w], dataset=config.dataset, class_names=list(train_set.classes),
                          metrics=metrics, training=training, tool_version=__version__)

    labels_all = torch.from_numpy(train_set.labels)
    images_all = torch.from_numpy(train_set.images)
    for epoch in range(start_epoch, config.epochs):
        t0 = time.time()
        model.train()
        generator = torch.Generator().manual_seed((config.seed * 100003 + epoch) * 1009 + rank)
        # Interleaved shards: step s of all ranks together covers the same images as step s of a
        # single process with world x the batch size.
        order = _epoch_order(len(train_set), config.seed, epoch)[rank::world][:per_rank]
        sums = {str(d): [0.0, 0, 0] for d in task.depths}  # loss, correct, seen
        bar = _progress(range(steps_per_epoch), steps_per_epoch, f"epoch {epoch + 1}/{config.epochs}",
                        config.progress and rank == 0)
        for step in bar:
            index = torch.from_numpy(order[step * config.batch_size: (step + 1) * config.batch_size])
            images = augment(images_all[index], generator, pad=pad, flip=flip)
            inputs = normalize(images.to(device, non_blocking=True))
            if config.channels_last:
                inputs = inputs.contiguous(memory_format=torch.channels_last)
            target = labels_all[index].to(device, non_blocking=True)
            with torch.autocast(device.type, dtype=torch.float16, enabled=use_amp):
                parts, logits = wrapped(inputs, target)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(parts["loss"]).backward()
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            with torch.no_grad():
                for d, z in zip(task.depths, logits):
                    s = sums[str(d)]
                    s[0] += float(F.cross_entropy(z.float(), target)) * len(target)
                    s[1] += int((z.argmax(1) == target).sum())
                    s[2] += len(target)
            if hasattr(bar, "set_postfix_str"):
                bar.set_postfix_str(" ".join(
                    f"d{spec.depth_of(d)} {sums[str(d)][0] / sums[str(d)][2]:.3f}/"
                    f"{100 * sums[str(d)][1] / sums[str(d)][2]:.1f}%" for d in task.depths)
                    + f" kl {float(parts['kl']):.3f} at {float(parts['at']):.4f}")
        elapsed += time.time() - t0
        if rank == 0:
            test = evaluate(model, test_set, depths, device=device)
            row = {"epoch": epoch + 1, "lr": scheduler.get_last_lr()[0], "seconds": round(time.time() - t0, 1),
                   "train": {str(d): {"loss": s[0] / max(s[2], 1), "top1": 100 * s[1] / max(s[2], 1)}
                             for d, s in ((d, sums[str(d)]) for d in task.depths)},
                   "test_top1": {k: v["top1"] for k, v in test.items()}}
            history.append(row)
            log(f"epoch {epoch + 1}/{config.epochs} ({row['seconds']:.0f}s) {split_name} top-1: " + ", ".join(
                f"d{spec.depth_of(d)} {test[str(d)]['top1']:.2f}%" for d in depths))
            resume_state = {"epoch": epoch + 1, "optimizer": optimizer.state_dict(),
                            "scheduler": scheduler.state_dict(), "elapsed_s": elapsed}
            save_checkpoint(make_checkpoint(resume_state, {}, {}), out)
        if world > 1:
            dist.barrier()

    # BN statistics per depth, re-estimated on un-augmented training images.
    final_metrics: dict[str, dict[str, float]] = {}
    bn_stats: dict[str, dict[str, torch.Tensor]] = {}
    if rank == 0:
        shared = evaluate(model, test_set, depths, device=device)
        shared_state = {k: v.clone() for k, v in model.state_dict().items()}
        recal_set = train_set.subset(config.recal_samples, seed=3)
        for d in depths:
            batches = (torch.from_numpy(x) for x, _ in recal_set.batches(250))
            bn_stats[str(d)] = {k: v.cpu() for k, v in recalibrate_bn(model, d, batches, device).items()}
        model.load_state_dict(shared_state)
        own = evaluate(model, test_set, depths, bn_stats=bn_stats, device=device)
        model.load_state_dict(shared_state)
        for d in depths:
            key = str(d)
            final_metrics[key] = {"top1": own[key]["top1"], "top5": own[key]["top5"], "n": own[key]["n"],
                                  "top1_shared_bn": shared[key]["top1"], "split": split_name,
                                  "params": model.count_params(d), "macs": count_macs(model, d, (c, h, w))}
            log(f"depth {spec.depth_of(d)} ({d}): top-1 {own[key]['top1']:.2f}% with its own BN statistics, "
                f"{shared[key]['top1']:.2f}% with the shared ones")
        final = make_checkpoint(None, final_metrics, bn_stats)
        final.training["recal_samples"] = len(recal_set)
        save_checkpoint(final, out)
        log(f"wrote {out}")
    if world > 1:
        dist.barrier()
    return load_checkpoint(out)
