"""The trainer: SGD (Nesterov), warm-up + cosine, augmentation, AMP on CUDA, per-epoch evaluation of
every depth, atomic checkpoints with resume, DDP through torchrun, and BN recalibration per depth.

Run under ``torchrun --nproc_per_node N`` for data-parallel training (NCCL on GPU, Gloo on CPU);
rank 0 evaluates and writes. The data order and augmentation of epoch ``e`` come from a generator
seeded with ``(seed, e)``, so a CPU run is repeatable and a resumed run sees the same batches.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F

from .. import __version__
from ..atomic import remove_stale_temps, writer_lock
from ..checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from ..data import ImageDataset, load_dataset
from ..errors import CheckpointError, DataError, TrainingError, UsageError
from ..evaluation import as_percentages, correct_counts
from ..models import DepthNet, build_model, count_macs, recalibrate_bn
from ..models.bn import bn_stats_of
from ..models.device import torch_device
from ..progress import progress_bar
from ..spec import ArchSpec, DepthConfig, arch_spec, parse_depths
from .config import MODES, TrainConfig
from .task import DistillTask


def _dist_info() -> tuple[int, int]:
    """(rank, world size); (0, 1) outside torchrun."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _launched_by_torchrun() -> bool:
    """torchrun (and torch.distributed.run) set these for every process, one process included."""
    return all(key in os.environ for key in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"))


def _init_distributed(device: torch.device) -> None:
    # under torchrun even one process joins a process group and trains through DDP: a one-GPU run then takes the
    # same path (NCCL, DDP's gradient hooks) as a many-GPU one
    if _launched_by_torchrun() and not dist.is_initialized():
        import datetime

        if device.type == "cuda":
            torch.cuda.set_device(device)  # each rank on its own GPU, or NCCL collectives can hang
        # rank 0 evaluates and recalibrates BN alone while the others wait at a barrier
        dist.init_process_group(
            backend="nccl" if device.type == "cuda" else "gloo", timeout=datetime.timedelta(hours=2)
        )


def _pick_device(name: str | None) -> torch.device:
    if name:
        device = torch_device(name)
        if device.type == "cuda" and device.index is None:  # "cuda": this process's GPU (its rank's under torchrun)
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        return device
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
        crop = padded[i, :, dy[i] : dy[i] + h, dx[i] : dx[i] + w]
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


def _epoch_order(n: int, seed: int, epoch: int) -> np.ndarray:
    return np.random.default_rng([seed, epoch]).permutation(n)


def train(config: TrainConfig, *, log: Callable[[str], None] | None = print) -> Checkpoint:
    """Train a DDNN (or each depth alone, ``mode="individual"``) and return the final checkpoint.

    ``log`` receives one status line per epoch and per step of the run (``None``: silent);
    ``config.progress`` shows a progress bar on stderr.
    """
    if not isinstance(config, TrainConfig):
        raise UsageError(f"config must be a TrainConfig, not {type(config).__name__}")
    if log is not None and not callable(log):
        raise UsageError(f"log must be a callable taking one string, or None, not {type(log).__name__}")
    if config.mode not in MODES:
        raise UsageError(f"unknown training mode {config.mode!r}; choose one of {', '.join(MODES)}")
    say = log or (lambda message: None)
    # one writer per --out: a second run of the same command (or a --resume of a run still going) stops at once
    # instead of training the same epochs again beside it. Rank 0 writes, so rank 0 holds it.
    lead = not _launched_by_torchrun() or os.environ.get("RANK") == "0"
    lock = writer_lock(config.out, f"--out {config.out}") if lead else contextlib.nullcontext()
    try:
        with lock:
            _check_targets(config)
            if config.mode == "individual":
                return _train_individual(config, log=say)
            return _train_ddnn(config, log=say)
    finally:
        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()  # NCCL leaks its communicators otherwise (and warns at exit)


def _train_individual(config: TrainConfig, *, log: Callable[[str], None]) -> Checkpoint:
    """The baseline: each depth trained as its own network, one checkpoint per depth (``OUT-dDEPTH.pt``)."""
    spec = arch_spec(config.arch)
    out = Path(config.out)
    last = None
    targets = [out.with_name(f"{out.stem}-d{spec.depth_of(d)}{out.suffix}") for d in parse_depths(spec, config.depths)]
    if config.resume and not any(t.exists() for t in targets):
        raise CheckpointError(
            f"--resume: no per-depth checkpoint of an individual run exists yet ({targets[0].name}, ...); "
            "drop --resume to start afresh"
        )
    for depth in parse_depths(spec, config.depths):
        target = out.with_name(f"{out.stem}-d{spec.depth_of(depth)}{out.suffix}")
        resume = False
        if config.resume and target.exists():
            if "resume" not in load_checkpoint(target).training:
                log(f"individual: depth {spec.depth_of(depth)} already finished in {target}")
                last = load_checkpoint(target)
                continue
            resume = True
        sub = replace(config, mode="ce", depths=str(depth), out=str(target), resume=resume)
        log(f"individual: training depth {spec.depth_of(depth)} ({depth}) alone -> {sub.out}")
        last = _train_ddnn(sub, log=log, mode_label="individual")
    assert last is not None
    return last


def _load_weights(model: torch.nn.Module, state: dict, what: str) -> None:
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        detail = next(
            (line.strip() for line in str(exc).splitlines() if "size mismatch" in line or "Missing" in line),
            str(exc).strip().splitlines()[0],
        )
        raise CheckpointError(
            f"{what}: weights do not fit this model ({detail[:160]}); use the same --arch "
            "and --width as the run that wrote them"
        ) from None


def _load_init(model: torch.nn.Module, state: dict, what: str) -> None:
    """Fine-tuning: every weight of ``state``; a classifier for another number of classes (ImageNet's 1000 on a
    10-class folder) is left freshly initialised, and only it. The depth tables need not match: sub-nets are
    slices of the same weights."""
    own = model.state_dict()
    last = [name for name, m in model.named_modules() if isinstance(m, torch.nn.Linear)][-1:]
    head = {k for k in own if last and k.rsplit(".", 1)[0] == last[0]}
    other = {k for k in head if k in state and tuple(state[k].shape) != tuple(own[k].shape)}
    if other and other == head:
        state = {k: v for k, v in state.items() if k not in head}
        state.update({k: own[k] for k in head})
    _load_weights(model, state, what)


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
    """(training set, evaluation set): the test split, or with ``holdout`` images held out of training. Image
    folders stream (file lists; ``stream.FolderFiles``), the other datasets are decoded into memory."""
    folder = config.dataset == "imagefolder"
    train_set = _open_folder(config, "train") if folder else load_dataset(config.dataset, "train", config.data_dir)
    if config.holdout:
        try:
            train_set, test_set = train_set.split(config.holdout, seed=HOLDOUT_SEED)
        except DataError as exc:
            raise UsageError(f"--holdout: {exc}") from None
    elif folder:
        test_set = _open_folder(config, "val")
        if test_set.classes != train_set.classes:
            raise DataError(f"{test_set.root} and {train_set.root} have different class folders")
    else:
        test_set = load_dataset(config.dataset, "test", config.data_dir)
    return train_set.subset(config.train_limit, seed=1), test_set.subset(config.test_limit, seed=2)


def _open_folder(config: TrainConfig, split: str) -> Any:
    """ROOT/train (or ROOT itself) or ROOT/val of ``--data`` as a streamed ``FolderFiles``."""
    from .stream import FolderFiles

    if config.data_dir is None:
        raise UsageError("--dataset imagefolder needs --data ROOT (ROOT/train/CLASS/*.jpg and ROOT/val/CLASS/*.jpg)")
    root = Path(config.data_dir)
    if split == "train":
        folder = root / "train" if (root / "train").is_dir() else root
    elif (root / "val").is_dir():
        folder = root / "val"
    else:
        raise UsageError(f"{root} has no val/ folder: add ROOT/val/CLASS/*.jpg, or hold out images with --holdout N")
    return FolderFiles.open(folder, config.image_size, config.workers)


def _streamed_batches(run: _Run) -> Callable[[int], Iterator[tuple[torch.Tensor, torch.Tensor]]]:
    """For a streamed training set: epoch -> this rank's augmented batches, from one loader kept across epochs."""
    loader = run.train_set.loader(
        run.config.batch_size, seed=run.config.seed, rank=run.rank, world=run.world, workers=run.config.workers,
        pin_memory=run.device.type == "cuda",
    )  # fmt: skip

    def batches(epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        loader.sampler.set_epoch(epoch)
        return iter(loader)

    return batches


def depths_text(spec: ArchSpec, configs: list[DepthConfig]) -> str:
    """``"8,14,20"``: depth numbers where the architecture's table names the config, else ``"1-2-3"``."""
    table = spec.table()
    return ",".join(str(spec.depth_of(c)) if table.get(spec.depth_of(c)) == c else str(c) for c in configs)


@dataclass
class _Run:
    """One training run: built once by ``_setup``, advanced epoch by epoch, written by ``_make_checkpoint``."""

    config: TrainConfig
    device: torch.device
    rank: int
    world: int
    spec: ArchSpec
    depths: list[DepthConfig]
    train_set: ImageDataset
    test_set: ImageDataset
    model_kwargs: dict[str, Any]
    model: DepthNet
    task: DistillTask
    wrapped: torch.nn.Module  # the task, or its DistributedDataParallel wrapper under torchrun
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    scaler: torch.amp.GradScaler
    steps_per_epoch: int
    settings: dict[str, Any]
    history: list[dict[str, Any]] = field(default_factory=list)
    start_epoch: int = 0
    elapsed: float = 0.0  # seconds spent in training steps (evaluation excluded), over every session
    # the auxiliary terms' gradient norms over the CE's, measured on the epoch's first batch (ekd, ipkd modes)
    grad_ratio: dict[str, float] = field(default_factory=dict)
    # where each session of the run trained: [{"from_epoch", "device", "cpu", "torch", "world_size"}, ...]
    sessions: list[dict[str, Any]] = field(default_factory=list)
    # epoch -> this rank's (uint8 images, labels) batches, for streamed data; None: the in-memory path
    batches: Callable[[int], Iterator[tuple[torch.Tensor, torch.Tensor]]] | None = None

    @property
    def out(self) -> Path:
        return Path(self.config.out)

    @property
    def use_amp(self) -> bool:
        return self.config.amp and self.device.type == "cuda"

    @property
    def split_name(self) -> str:
        return "held-out" if self.config.holdout else "test"


def _train_ddnn(config: TrainConfig, *, log: Callable[[str], None], mode_label: str | None = None) -> Checkpoint:
    """Set up, resume if asked, train epoch by epoch (rank 0 evaluating and checkpointing), then
    recalibrate BN per depth and write the final checkpoint."""
    run = _setup(config, mode_label)
    if run.rank == 0:
        _check_output(run.out)
        remove_stale_temps(run.out.parent, run.out.name)  # what a killed run left beside the checkpoint
        where = f"training on {run.device}, AMP {'on (fp16)' if run.use_amp else 'off'}"
        where += f", lr {effective_lr(config, run.world):g}"
        if dist.is_available() and dist.is_initialized():
            where += f", DDP with {run.world} process(es) over {dist.get_backend()}"
        log(where)
    if config.resume:
        _resume(run, log)
    normalize = Normalizer(run.train_set, run.device)
    for epoch in range(run.start_epoch, config.epochs):
        started = time.time()
        sums = _train_epoch(run, epoch, normalize)
        _check_finite(sums, epoch, config)
        run.elapsed += time.time() - started
        _evaluate_and_save(run, epoch, sums, started, log)
        if run.world > 1:
            dist.barrier()
    _finish(run, log)
    if run.world > 1:
        dist.barrier()
    return load_checkpoint(run.out)


def _check_finite(sums: Sums, epoch: int, config: TrainConfig) -> None:
    """Stop, before the epoch's checkpoint replaces the last good one, when the loss has become NaN or inf."""
    bad = [depth for depth, (loss, _, _) in sums.items() if not math.isfinite(loss)]
    if bad:
        raise TrainingError(
            f"the training loss became non-finite in epoch {epoch + 1} (depths {', '.join(bad)}); the last good "
            f"checkpoint is intact; lower --lr (now {config.lr:g}) or check the data"
        )


def _check_targets(config: TrainConfig) -> None:
    """Before any work: never replace a checkpoint without being asked (--resume continues it, --force replaces
    it)."""
    out = Path(config.out)
    spec = arch_spec(config.arch)
    targets = [out]
    if config.mode == "individual":
        targets = [
            out.with_name(f"{out.stem}-d{spec.depth_of(d)}{out.suffix}") for d in parse_depths(spec, config.depths)
        ]
    for target in targets:
        if target.exists() and not target.is_dir() and not config.resume and not config.force:
            raise UsageError(
                f"--out {target} already exists; pass --resume to continue that run, --force to replace it, "
                "or choose another --out"
            )


def _setup(config: TrainConfig, mode_label: str | None) -> _Run:
    """Device, process group, data, model (seeded), task, optimizer and schedule of one run."""
    device = _pick_device(config.device)
    _init_distributed(device)
    rank, world = _dist_info()
    if config.threads:
        torch.set_num_threads(config.threads)
    spec = arch_spec(config.arch)
    depths = parse_depths(spec, config.depths)
    train_set, test_set = _load_data(config)
    model, model_kwargs = _build_model(config, train_set, device)
    task = DistillTask(
        model,
        depths,
        mode=config.mode if mode_label is None else "ce",
        kl_weight=config.kl_weight,
        at_weight=config.at_weight,
        temperature=config.temperature,
        attention_power=config.attention_power,
        stage_combine=config.at_combine,
        ipkd_hard_labels=config.ipkd_loss == "soft+hard",
    )
    wrapped: torch.nn.Module = task
    if dist.is_available() and dist.is_initialized():
        # Blocks deeper than every trained depth get no gradient; DDP must be told.
        covers_all = all(max(c.blocks[i] for c in depths) == n for i, n in enumerate(spec.full.blocks))
        wrapped = torch.nn.parallel.DistributedDataParallel(
            task, device_ids=[device.index] if device.type == "cuda" else None, find_unused_parameters=not covers_all
        )
    steps_per_epoch = max(1, len(train_set) // world // (config.batch_size * config.grad_accum))  # optimizer steps
    optimizer, scheduler = _optimizer(model, config, steps_per_epoch, world)
    scaler = torch.amp.GradScaler("cuda", enabled=config.amp and device.type == "cuda")
    settings = {k: v for k, v in asdict(config).items() if k not in ("progress", "extra", "resume")}
    settings.update(
        {
            "depths": depths_text(spec, depths),
            "world_size": world,
            "device": device.type,
            "torch": str(torch.__version__),
            "mode": mode_label or config.mode,
        }
    )
    run = _Run(
        config,
        device,
        rank,
        world,
        spec,
        depths,
        train_set,
        test_set,
        model_kwargs,
        model,
        task,
        wrapped,
        optimizer,
        scheduler,
        scaler,
        steps_per_epoch,
        settings,
    )
    run.sessions = [_session(device, 0, world)]
    if not isinstance(train_set, ImageDataset):
        run.batches = _streamed_batches(run)
    return run


def _build_model(config: TrainConfig, train_set: ImageDataset, device: torch.device) -> tuple[DepthNet, dict[str, Any]]:
    """The seeded model (or the ``--init`` checkpoint's weights) on ``device``, and its build arguments."""
    c, h, _ = train_set.input_shape
    model_kwargs = {"num_classes": len(train_set.classes), "in_channels": c, "input_size": h, "width": config.width}
    torch.manual_seed(config.seed)
    model = build_model(config.arch, **model_kwargs)
    if config.init:
        init = load_checkpoint(config.init)
        if init.arch != config.arch:
            raise UsageError(f"--init checkpoint is {init.arch}, not {config.arch}")
        _load_init(model, init.state_dict, f"--init {config.init}")
    model.to(device)
    if config.channels_last:
        model.to(memory_format=torch.channels_last)
    return model, model_kwargs


def effective_lr(config: TrainConfig, world: int = 1) -> float:
    """``--lr``, or with ``--lr-scale linear`` the linear scaling rule (Goyal et al.): ``--lr`` per
    ``--lr-base-batch`` images, times the global batch (batch size x gradient accumulation x processes)."""
    if config.lr_scale == "linear":
        return config.lr * config.batch_size * config.grad_accum * world / config.lr_base_batch
    return config.lr


def _optimizer(
    model: DepthNet, config: TrainConfig, steps_per_epoch: int, world: int = 1
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """SGD with Nesterov momentum (no weight decay on BN and biases), linear warm-up + cosine."""
    decay, no_decay = [], []
    for p in model.parameters():
        (no_decay if p.ndim <= 1 else decay).append(p)
    optimizer = torch.optim.SGD(
        [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=effective_lr(config, world),
        momentum=config.momentum,
        nesterov=True,
    )
    total_steps = steps_per_epoch * config.epochs
    warmup = int(config.warmup_epochs * steps_per_epoch)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, total_steps, warmup))
    return optimizer, scheduler


# What a run IS: resuming with another value would silently make a different run under the old record.
# Everything else (device, threads, amp, progress, test_limit, data_dir, out) may change between sessions.
RUN_DEFINING = (
    "arch",
    "depths",
    "dataset",
    "width",
    "mode",
    "epochs",
    "batch_size",
    "grad_accum",
    "lr",
    "lr_scale",
    "lr_base_batch",
    "momentum",
    "weight_decay",
    "warmup_epochs",
    "kl_weight",
    "at_weight",
    "temperature",
    "attention_power",
    "at_combine",
    "ipkd_loss",
    "seed",
    "init",
    "train_limit",
    "holdout",
    "image_size",
    "recal_samples",
    "world_size",
)


# A run recorded before a setting existed ran with that time's behaviour, not today's default:
# setting -> (the modes it changes, the value it had then).
LEGACY_SETTINGS = {
    "attention_power": (("ekd",), 1),
    "at_combine": (("ekd",), "sum"),
    "ipkd_loss": (("ipkd", "ipkd-ta"), "soft+hard"),
}


def _check_same_run(recorded: dict[str, Any], now: dict[str, Any], out: Path) -> None:
    mode = recorded.get("mode")
    legacy = {k: v for k, (modes, v) in LEGACY_SETTINGS.items() if mode in modes}
    recorded = {**legacy, **recorded}
    unused = {k for k, (modes, _) in LEGACY_SETTINGS.items() if mode is not None and mode not in modes}
    differences = [
        f"--{key.replace('_', '-')} {recorded[key]!r} -> {now.get(key)!r}"
        for key in RUN_DEFINING
        if key in recorded and key not in unused and recorded[key] != now.get(key)  # a setting its mode ignores
    ]
    if differences:
        raise UsageError(
            f"--resume {out}: these settings differ from the run being resumed: {'; '.join(differences)}; "
            "resume with the recorded settings, or train to a new --out"
        )


def _session(device: torch.device, from_epoch: int, world: int) -> dict[str, Any]:
    from ..measure.environment import cpu_model

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else device.type
    return {"from_epoch": from_epoch, "device": name, "cpu": cpu_model(), "torch": str(torch.__version__),
            "world_size": world}  # fmt: skip


def recorded_sessions(training: dict[str, Any]) -> list[dict[str, Any]]:
    """Where a checkpoint's run trained, session by session; a checkpoint from before sessions were recorded
    knows only its last one (its settings' device and torch, from an unknown epoch)."""
    settings = training.get("settings") or {}
    return training.get("sessions") or [
        {"from_epoch": None, "device": settings.get("device"), "torch": settings.get("torch")}
    ]


def _resume(run: _Run, log: Callable[[str], None]) -> None:
    """Load the unfinished run at ``--out``: weights, optimizer, schedule, history and time spent."""
    out = run.out
    if not out.exists():
        raise CheckpointError(f"--resume: {out} does not exist yet; drop --resume to start afresh")
    prev = load_checkpoint(out)
    state = prev.training.get("resume")
    if not state:
        raise CheckpointError(
            f"--resume: {out} holds a finished run (no resume state); "
            "train to a new --out, or use --init to fine-tune from it"
        )
    _check_same_run(prev.training.get("settings") or {}, run.settings, out)
    _load_weights(run.model, prev.state_dict, f"--resume {out}")
    try:
        run.optimizer.load_state_dict(state["optimizer"])
        run.scheduler.load_state_dict(state["scheduler"])
    except (ValueError, KeyError) as exc:
        raise CheckpointError(
            f"--resume {out}: optimizer state does not match this run ({exc}); "
            "resume with the same --arch, --width and --depths"
        ) from None
    run.start_epoch, run.elapsed = int(state["epoch"]), float(state["elapsed_s"])
    run.history = list(prev.training.get("history", []))
    run.sessions = [*recorded_sessions(prev.training), _session(run.device, run.start_epoch, run.world)]
    log(f"resuming {out} at epoch {run.start_epoch + 1}/{run.config.epochs}")


Sums = dict[str, list[float]]  # per depth: [summed loss, correct, seen]
EVAL_BATCH = 500  # images per evaluation batch (and per shard unit)
RECAL_BATCH = 250  # images per BN recalibration batch: the unit the ranks share out


def _in_memory_batches(run: _Run, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """This rank's (uint8 images, labels) batches of ``epoch`` from an in-memory dataset, augmented here."""
    config = run.config
    generator = torch.Generator().manual_seed((config.seed * 100003 + epoch) * 1009 + run.rank)
    # Interleaved shards: step s of all ranks together covers the same images as step s of a
    # single process with world x the batch size.
    per_rank = len(run.train_set) // run.world
    order = _epoch_order(len(run.train_set), config.seed, epoch)[run.rank :: run.world][:per_rank]
    pad, flip = _augment_settings(config.dataset, run.train_set.input_shape[1])
    images_all, labels_all = torch.from_numpy(run.train_set.images), torch.from_numpy(run.train_set.labels)
    for step in range(run.steps_per_epoch * config.grad_accum):
        index = torch.from_numpy(order[step * config.batch_size : (step + 1) * config.batch_size])
        yield augment(images_all[index], generator, pad=pad, flip=flip), labels_all[index]


def _train_epoch(run: _Run, epoch: int, normalize: Normalizer) -> Sums:
    """One epoch over this rank's shard; returns each depth's training loss and accuracy sums (over all ranks).

    The sums stay on the device until the epoch ends (no host synchronisation per step); the progress bar reads
    them at most once a second. ``--grad-accum N``: N batches per optimizer step."""
    config = run.config
    run.model.train()
    run.optimizer.zero_grad(set_to_none=True)
    accum = config.grad_accum
    # per depth: summed loss, correct, seen (float64 where the device has it: exact counts over a long epoch)
    sums = torch.zeros(len(run.task.depths), 3, device=run.device,
                       dtype=torch.float32 if run.device.type == "mps" else torch.float64)  # fmt: skip
    bar = progress_bar(
        range(run.steps_per_epoch), enabled=config.progress and run.rank == 0, desc=f"epoch {epoch + 1}/{config.epochs}"
    )
    batches = run.batches(epoch) if run.batches is not None else _in_memory_batches(run, epoch)
    clock = _StepClock()
    for micro in range(run.steps_per_epoch * accum):
        with clock.waiting():
            images, labels = next(batches)
        inputs = normalize(images.to(run.device, non_blocking=True))
        if config.channels_last:
            inputs = inputs.contiguous(memory_format=torch.channels_last)
        target = labels.to(run.device, non_blocking=True)
        if micro == 0 and run.task.mode not in ("ce", "individual"):
            run.grad_ratio = _grad_norm_ratios(run, inputs, target)
        last = (micro + 1) % accum == 0
        parts, logits = _train_step(run, inputs, target, step=last, scale=1.0 / accum)
        with torch.no_grad():
            stacked = torch.stack([z.detach().float() for z in logits])  # depths x batch x classes
            losses = F.cross_entropy(stacked.flatten(0, 1), target.repeat(len(logits)), reduction="none")
            sums[:, 0] += losses.view(len(logits), -1).sum(1)
            sums[:, 1] += (stacked.argmax(2) == target).sum(1)
            sums[:, 2] += len(target)
        if last:
            clock.images += len(target) * accum * run.world
            bar.update(1)
            if not bar.disable and clock.due():  # a device sync, at most once a second
                bar.set_postfix_str(_progress_text(run, sums, parts, clock))
    bar.close()
    if run.world > 1:
        dist.all_reduce(sums)  # every rank's shard: the epoch's training figures over the whole split
    values = sums.cpu().tolist()
    return {str(d): [v[0], int(v[1]), int(v[2])] for d, v in zip(run.task.depths, values)}


def _grad_norm_ratios(run: _Run, inputs: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
    """``||grad(w_kl * kl)|| / ||grad(ce)||`` and the same for the attention term, over the shared weights, on one
    batch: whether an auxiliary term moves the weights at all. The model's BN buffers are put back afterwards."""
    model = run.model
    params = [p for p in model.parameters() if p.requires_grad]
    buffers = {k: v.clone() for k, v in model.named_buffers()}
    try:
        parts, _ = run.task(inputs, target)  # unwrapped: no DDP hooks, nothing accumulated into .grad

        def norm(term: torch.Tensor, weight: float) -> float:
            if weight == 0 or not term.requires_grad:
                return 0.0
            grads = torch.autograd.grad(term * weight, params, retain_graph=True, allow_unused=True)
            return float(torch.sqrt(sum((g.float() ** 2).sum() for g in grads if g is not None)))

        ce = max(norm(parts["ce"], 1.0), 1e-12)
        return {"kl": norm(parts["kl"], run.task.kl_weight) / ce, "at": norm(parts["at"], run.task.at_weight) / ce}
    finally:
        with torch.no_grad():
            for key, value in model.named_buffers():
                value.copy_(buffers[key])


class _StepClock:
    """Wall time, time spent waiting for batches, images done: the progress line's images/s and data-wait share."""

    def __init__(self) -> None:
        self.started = self.shown = time.perf_counter()
        self.waited, self.images = 0.0, 0

    @contextlib.contextmanager
    def waiting(self) -> Iterator[None]:
        t0 = time.perf_counter()
        yield
        self.waited += time.perf_counter() - t0

    def due(self) -> bool:
        now = time.perf_counter()
        if now - self.shown < 1.0:
            return False
        self.shown = now
        return True

    def text(self) -> str:
        spent = max(time.perf_counter() - self.started, 1e-9)
        return f"{self.images / spent:.0f} img/s, data wait {100 * self.waited / spent:.0f}%"


def _progress_text(run: _Run, sums: torch.Tensor, parts: dict, clock: _StepClock) -> str:
    values = sums.cpu().tolist()
    per_depth = " ".join(
        f"d{run.spec.depth_of(d)} {v[0] / max(v[2], 1):.3f}/{100 * v[1] / max(v[2], 1):.1f}%"
        for d, v in zip(run.task.depths, values)
    )
    return f"{per_depth} kl {float(parts['kl'].detach()):.3f} at {float(parts['at'].detach()):.4f}, {clock.text()}"


def _train_step(
    run: _Run, inputs: torch.Tensor, target: torch.Tensor, *, step: bool = True, scale: float = 1.0
) -> tuple[dict, list[torch.Tensor]]:
    """Forward every depth and backward the combined loss (times ``scale``); with ``step``, one optimizer and
    scheduler step. Gradients accumulate between steps; DDP all-reduces them only on the stepping batch."""
    sync = step or not isinstance(run.wrapped, torch.nn.parallel.DistributedDataParallel)
    with contextlib.nullcontext() if sync else run.wrapped.no_sync():
        with torch.autocast(run.device.type, dtype=torch.float16, enabled=run.use_amp):
            parts, logits = run.wrapped(inputs, target)
        run.scaler.scale(parts["loss"] * scale if scale != 1.0 else parts["loss"]).backward()
    if step:
        run.scaler.step(run.optimizer)
        run.scaler.update()
        run.optimizer.zero_grad(set_to_none=True)
        run.scheduler.step()
    return parts, logits


def _shard(n: int, run: _Run, batch: int = 1) -> np.ndarray:
    """This rank's indices of ``n`` samples: whole ``batch``-sized runs, dealt to the ranks in turn."""
    starts = np.arange(0, n, batch)[run.rank :: run.world]
    return np.concatenate([np.arange(b, min(b + batch, n)) for b in starts]) if len(starts) else np.zeros(0, int)


def _evaluate(run: _Run, dataset: ImageDataset, *, shared_bn: bool = False) -> dict[str, dict[str, float]]:
    """Every depth's accuracy on ``dataset``: each rank evaluates its shard, the counts are summed over ranks."""
    part = dataset if run.world == 1 else dataset.take(_shard(len(dataset), run, EVAL_BATCH))
    counts = correct_counts(run.model, part, run.depths, shared_bn=shared_bn, batch_size=EVAL_BATCH, device=run.device)
    if run.world > 1:
        counts = counts.to(run.device)
        dist.all_reduce(counts)
    return as_percentages(counts.cpu(), run.depths)


def _recalibrate(run: _Run, depth: DepthConfig, recal_set: ImageDataset) -> dict[str, torch.Tensor]:
    """``depth``'s BN statistics over every batch of ``recal_set``: each rank runs its share of the batches and the
    ranks' cumulative averages are merged (``_merge_bn_stats``): the single-process result, to float rounding."""
    part = recal_set if run.world == 1 else recal_set.take(_shard(len(recal_set), run, RECAL_BATCH))
    if len(part):
        batches = (torch.as_tensor(x) for x, _ in part.batches(RECAL_BATCH))
        stats = recalibrate_bn(run.model, depth, batches, run.device)
    else:  # fewer batches than ranks: this rank adds nothing
        stats = {k: torch.zeros_like(v) for k, v in bn_stats_of(run.model, depth).items()}
    if run.world > 1:
        stats = _merge_bn_stats(stats, math.ceil(len(part) / RECAL_BATCH), run.device)
    return {k: v.cpu() for k, v in stats.items()}


def _merge_bn_stats(stats: dict[str, torch.Tensor], batches: int, device: torch.device) -> dict[str, torch.Tensor]:
    """Each rank's averages over its ``batches`` batches -> the averages over every rank's batches (weighted by
    batch counts), in one all-reduce; ``num_batches_tracked`` becomes the total count."""
    averaged = [k for k in stats if not k.endswith("num_batches_tracked")]
    parts = [stats[k].to(device, torch.float64).flatten() * batches for k in averaged]
    packed = torch.cat([*parts, torch.tensor([float(batches)], dtype=torch.float64, device=device)])
    dist.all_reduce(packed)
    total, merged, offset = packed[-1], {}, 0
    for key in averaged:
        size = stats[key].numel()
        merged[key] = (packed[offset : offset + size] / total).view_as(stats[key]).to(stats[key].dtype)
        offset += size
    for key in stats:
        if key not in merged:
            merged[key] = torch.full_like(stats[key], int(total.item()))
    return merged


def _evaluate_and_save(run: _Run, epoch: int, sums: Sums, started: float, log: Callable[[str], None]) -> None:
    """After each epoch, on every rank: every depth's accuracy (shared BN, each rank its shard); rank 0 records
    the history row and writes a resumable checkpoint."""
    test = _evaluate(run, run.test_set, shared_bn=True)
    if run.rank != 0:
        return
    row = {
        "epoch": epoch + 1,
        "lr": run.scheduler.get_last_lr()[0],
        "seconds": round(time.time() - started, 1),
        "train": {
            str(d): {"loss": s[0] / max(s[2], 1), "top1": 100 * s[1] / max(s[2], 1)}
            for d, s in ((d, sums[str(d)]) for d in run.task.depths)
        },
        "test_top1": {k: v["top1"] for k, v in test.items()},
    }
    if run.grad_ratio:
        row["grad_norm_ratio"] = dict(run.grad_ratio)
    run.history.append(row)
    log(
        f"epoch {epoch + 1}/{run.config.epochs} ({row['seconds']:.0f}s) {run.split_name} top-1: "
        + ", ".join(f"d{run.spec.depth_of(d)} {test[str(d)]['top1']:.2f}%" for d in run.depths)
    )
    resume_state = {
        "epoch": epoch + 1,
        "optimizer": run.optimizer.state_dict(),
        "scheduler": run.scheduler.state_dict(),
        "elapsed_s": run.elapsed,
    }
    save_checkpoint(_make_checkpoint(run, resume_state, {}, {}), run.out)


def _finish(run: _Run, log: Callable[[str], None]) -> None:
    """After the last epoch, on every rank (each its share): BN statistics per depth re-estimated on un-augmented
    training images, every depth evaluated with its own and with the shared statistics; rank 0 writes the final
    checkpoint."""
    model, depths = run.model, run.depths
    shared = _evaluate(run, run.test_set, shared_bn=True)
    recal_set = run.train_set.subset(run.config.recal_samples, seed=3)
    bn_stats = {str(d): _recalibrate(run, d, recal_set) for d in depths}
    model.set_depth_bn_stats(bn_stats)
    own = _evaluate(run, run.test_set)
    if run.rank != 0:
        return
    shape = tuple(run.train_set.input_shape)
    metrics: dict[str, dict[str, Any]] = {}
    for d in depths:
        key = str(d)
        metrics[key] = {
            "top1": own[key]["top1"],
            "top5": own[key]["top5"],
            "n": own[key]["n"],
            "top1_shared_bn": shared[key]["top1"],
            "split": run.split_name,
            "params": model.count_params(d),
            "macs": count_macs(model, d, shape),
        }
        log(
            f"depth {run.spec.depth_of(d)} ({d}): top-1 {own[key]['top1']:.2f}% with its own BN statistics, "
            f"{shared[key]['top1']:.2f}% with the shared ones"
        )
    final = _make_checkpoint(run, None, metrics, bn_stats)
    final.training["recal_samples"] = len(recal_set)
    final.training["train_samples"] = len(run.train_set)  # after --holdout and --train-limit
    save_checkpoint(final, run.out)
    log(f"wrote {run.out}")


def _make_checkpoint(run: _Run, resume_state: dict | None, metrics: dict, bn_stats: dict) -> Checkpoint:
    """The run as a checkpoint: the shared weights, with ``resume_state`` while it is unfinished."""
    training = {
        "settings": run.settings,
        "history": run.history,
        "epochs_done": len(run.history),
        "wall_time_s": round(run.elapsed, 1),
        "sessions": run.sessions,
    }
    if resume_state is not None:
        training["resume"] = resume_state
    state_dict = {k: v.detach().cpu().contiguous() for k, v in run.model.state_dict().items()}
    return Checkpoint(
        arch=run.config.arch,
        model=run.model_kwargs,
        depths=run.depths,
        state_dict=state_dict,
        bn_stats=bn_stats,
        preprocess=run.train_set.preprocess.to_dict(),
        input_shape=list(run.train_set.input_shape),
        dataset=run.config.dataset,
        class_names=list(run.train_set.classes),
        metrics=metrics,
        training=training,
        tool_version=__version__,
    )
