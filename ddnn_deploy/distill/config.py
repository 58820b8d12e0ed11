"""``TrainConfig``: every training setting, typed, with its default; torch-free so the CLI (and a
user's script) can read the defaults and choices without importing torch."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from typing import Any

from ..checks import number
from ..data import DATASETS
from ..errors import UsageError
from ..spec import DepthsLike

MODES = ("ekd", "ce", "ipkd", "ipkd-ta", "individual")
LR_SCALES = ("none", "linear")
AT_COMBINE = ("sum", "mean")
IPKD_LOSSES = ("soft", "soft+hard")

# ``train --recipe NAME``: defaults for a kind of run; every option given explicitly still wins.
RECIPES: dict[str, dict[str, Any]] = {
    # Fine-tune a converted torchvision ResNet-50 (convert --weights resnet50-*.pth, then --init) into a DDNN of
    # the paper's depth table with EKD. Our choice (the paper gives no ImageNet schedule): 0.01 per 256 images
    # scaled linearly with the global batch, one warm-up epoch then cosine, 10 epochs, weight decay 1e-4.
    "imagenet-finetune": {
        "arch": "resnet50",
        "dataset": "imagefolder",
        "mode": "ekd",
        "epochs": 10,
        "batch_size": 64,
        "lr": 0.01,
        "lr_scale": "linear",
        "lr_base_batch": 256,
        "warmup_epochs": 1.0,
        "weight_decay": 1e-4,
        "image_size": 224,
        "recal_samples": 10000,
    },
}


@dataclass
class TrainConfig:
    arch: str = "cifar_resnet20"
    # "8,14,20", "1-1-1,3-3-3", [8, 14, 20], [DepthConfig(...)]; None = every depth in the arch table
    depths: DepthsLike = None
    dataset: str = "fashion-mnist"
    data_dir: str | None = None
    width: int | None = None
    mode: str = "ekd"
    epochs: int = 30
    batch_size: int = 128  # per process and per step (times grad_accum: per optimizer step)
    grad_accum: int = 1  # batches whose gradients are summed into one optimizer step
    lr: float = 0.1
    lr_scale: str = "none"  # "linear": lr is per lr_base_batch images, scaled with the global batch
    lr_base_batch: int = 256
    momentum: float = 0.9
    weight_decay: float = 5e-4
    warmup_epochs: float = 1.0
    kl_weight: float = 1.0
    at_weight: float = 100.0  # the raw attention MSE is ~1e-3: it needs a large weight to matter
    temperature: float = 1.0
    # EKD's attention maps: 1 = sum_c F (Eq. 3 as printed), 2 = sum_c F^2 (attention transfer). 2 won issue 17's
    # held-out grid (benchmarks/README.md, "The fair test of the claim").
    attention_power: int = 2
    at_combine: str = "sum"  # EKD's attention term over the stages: "sum" (Eq. 6) or "mean"
    ipkd_loss: str = "soft"  # ipkd/ipkd-ta sub-nets: "soft" (in-place distillation) or "soft+hard" (labels too)
    seed: int = 0
    out: str = "model.pt"
    resume: bool = False
    force: bool = False  # replace an existing checkpoint at ``out`` (without it, that is refused)
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
    image_size: int = 224  # image folders: the training crop and the evaluation centre crop (resized x256/224 first)
    workers: int | None = None  # image folders: loader processes per rank (None: by core count, at most 8)
    channels_last: bool = True
    progress: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise UsageError(f"unknown training mode {self.mode!r}; choose one of {', '.join(MODES)}")
        if self.dataset not in DATASETS:
            raise UsageError(f"unknown dataset {self.dataset!r}; choose one of {', '.join(DATASETS)}")
        # upper limits far above any real run, so a typo is one line rather than an overflow deep in torch
        limits = (("epochs", 0, 100_000), ("batch_size", 1, 1 << 20), ("recal_samples", 1, 1 << 30),
                  ("grad_accum", 1, 1 << 16))  # fmt: skip
        for name, least, most in limits:
            number(f"--{name.replace('_', '-')}", getattr(self, name), at_least=least, at_most=most, integer=True)
        for name, most in (("train_limit", 1 << 40), ("test_limit", 1 << 40), ("threads", 1024)):
            if getattr(self, name) is not None:
                number(f"--{name.replace('_', '-')}", getattr(self, name), at_least=1, at_most=most, integer=True)
        number("--holdout", self.holdout, at_least=0, integer=True)
        number("--image-size", self.image_size, at_least=8, at_most=4096, integer=True)
        if self.workers is not None:
            number("--workers", self.workers, at_least=0, at_most=256, integer=True)
        number("--seed", self.seed, at_least=0, at_most=2**32 - 1, integer=True)
        if self.width is not None:
            number("--width", self.width, at_least=1, at_most=4096, integer=True)
        number("--momentum", self.momentum, at_least=0, at_most=1)
        number("--warmup-epochs", self.warmup_epochs, at_least=0, at_most=100_000)
        for name in ("weight_decay", "kl_weight", "at_weight"):
            number(f"--{name.replace('_', '-')}", getattr(self, name), at_least=0, at_most=1e6)
        number("--lr", self.lr, above=0, at_most=1e3)
        if self.lr_scale not in LR_SCALES:
            raise UsageError(f"unknown --lr-scale {self.lr_scale!r}; choose one of {', '.join(LR_SCALES)}")
        number("--lr-base-batch", self.lr_base_batch, at_least=1, at_most=1 << 24, integer=True)
        number("--temperature", self.temperature, above=0, at_most=1e3)
        for name, value, allowed in (
            ("attention-power", self.attention_power, (1, 2)),
            ("at-combine", self.at_combine, AT_COMBINE),
            ("ipkd-loss", self.ipkd_loss, IPKD_LOSSES),
        ):
            if value not in allowed or isinstance(value, bool):
                raise UsageError(f"--{name} must be one of {', '.join(map(str, allowed))}, not {value!r}")
        for name in ("init", "data_dir", "device"):  # an unset shell variable must not mean "the default"
            value = getattr(self, name)
            if isinstance(value, str) and not value.strip():
                raise UsageError(f"--{name.replace('_', '-')} is empty; give a value or leave the option out")
        if isinstance(self.out, os.PathLike):
            self.out = os.fspath(self.out)
        if not isinstance(self.out, str) or not self.out:
            raise UsageError(f"TrainConfig.out must name the checkpoint file to write, not {self.out!r}")


def default(name: str) -> Any:
    """The default of one TrainConfig field (what the CLI shows)."""
    for f in fields(TrainConfig):
        if f.name == name:
            return f.default
    raise KeyError(name)
