"""Run under torchrun by tests/test_training_scale.py: a streamed image-folder run whose ranks record every
training image they decode (loader workers off, so the recording runs in the rank itself)."""

from __future__ import annotations

import json
import os
import sys

from ddnn_deploy.distill.config import TrainConfig
from ddnn_deploy.distill.stream import FolderFiles
from ddnn_deploy.distill.trainer import train

folder, out, trace = sys.argv[1], sys.argv[2], sys.argv[3]
seen = []
original = FolderFiles.decode


def recording(self, index, rng=None):
    if rng is not None:  # a training sample (evaluation and BN batches decode without one)
        seen.append(str(self.path(index)))
    return original(self, index, rng)


FolderFiles.decode = recording
train(TrainConfig(arch="resnet18", width=4, dataset="imagefolder", data_dir=folder, image_size=32, epochs=1,
                  batch_size=20, workers=0, recal_samples=100, test_limit=40, device="cpu", threads=1,
                  progress=False, out=out), log=None)  # fmt: skip
with open(f"{trace}.{os.environ['RANK']}", "w") as f:
    json.dump(seen, f)
