"""Run under torchrun by tests/test_ddp.py: one small EKD run, straight through, interrupted on every rank at the
first step of epoch 2 (as Ctrl-C would), or resumed."""

from __future__ import annotations

import sys

import ddnn_deploy.distill.trainer as trainer_module
from ddnn_deploy.distill.config import TrainConfig
from ddnn_deploy.distill.trainer import train

out, how = sys.argv[1], sys.argv[2]
config = TrainConfig(arch="cifar_resnet20", width=4, depths="8,14", epochs=2, batch_size=32, train_limit=256,
                     test_limit=64, recal_samples=64, device="cpu", threads=1, seed=3, progress=False, out=out,
                     resume=how == "resume")  # fmt: skip
if how == "interrupt":
    calls = {"n": 0}
    original = trainer_module.augment

    def interrupting(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 5:  # 4 steps per epoch per rank: the first step of epoch 2
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    trainer_module.augment = interrupting
train(config, log=None)
