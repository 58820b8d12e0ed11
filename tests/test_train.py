"""Short real training runs on real Fashion-MNIST images: every mode, resume, Ctrl-C, seeds, BN per depth."""

import pytest
import torch

from ddnn_deploy.checkpoint import load_checkpoint
from ddnn_deploy.distill import trainer as trainer_module
from ddnn_deploy.distill.trainer import TrainConfig, train
from ddnn_deploy.errors import CheckpointError, UsageError
from ddnn_deploy.models import build_model, recalibrate_bn
from ddnn_deploy.spec import DepthConfig


def _config(tmp_path, name="run.pt", **overrides):
    base = dict(arch="cifar_resnet20", depths="8,14", width=4, epochs=1, batch_size=64, train_limit=256,
                test_limit=128, recal_samples=128, out=str(tmp_path / name), progress=False)
    base.update(overrides)
    return TrainConfig(**base)


@pytest.mark.parametrize("mode", ["ekd", "ce", "ipkd", "ipkd-ta"])
def test_each_mode_trains_and_writes_a_checkpoint(tmp_path, fashion_mnist_dir, mode):
    ckpt = train(_config(tmp_path, mode=mode, depths="8,14,20"), log=lambda m: None)
    assert [c.blocks for c in ckpt.depths] == [(1, 1, 1), (2, 2, 2), (3, 3, 3)]
    assert set(ckpt.bn_stats) == {"1-1-1", "2-2-2", "3-3-3"}
    assert ckpt.training["settings"]["mode"] == mode
    assert "resume" not in ckpt.training  # finished runs drop the optimizer state
    for metrics in ckpt.metrics.values():
        assert 0 <= metrics["top1"] <= 100 and metrics["n"] == 128
    history = ckpt.training["history"]
    assert len(history) == 1 and history[0]["train"]["3-3-3"]["loss"] > 0


def test_individual_mode_trains_each_depth_alone(tmp_path, fashion_mnist_dir):
    train(_config(tmp_path, mode="individual"), log=lambda m: None)
    for depth, blocks in ((8, (1, 1, 1)), (14, (2, 2, 2))):
        ckpt = load_checkpoint(tmp_path / f"run-d{depth}.pt")
        assert [c.blocks for c in ckpt.depths] == [blocks]
        assert ckpt.training["settings"]["mode"] == "individual"
    before = (tmp_path / "run-d8.pt").read_bytes()
    (tmp_path / "run-d14.pt").unlink()  # as if stopped before the second depth started
    messages = []
    train(_config(tmp_path, mode="individual", resume=True), log=messages.append)
    assert (tmp_path / "run-d8.pt").read_bytes() == before and (tmp_path / "run-d14.pt").exists()
    assert any("already finished" in m for m in messages)


def test_training_learns(tmp_path, fashion_mnist_dir):
    ckpt = train(_config(tmp_path, epochs=2, train_limit=1024, test_limit=500, width=8), log=lambda m: None)
    # ten classes: chance is 10 %; two short epochs on 1,024 images reach far above it
    assert all(m["top1"] > 50 for m in ckpt.metrics.values()), ckpt.metrics


def test_seed_makes_cpu_runs_repeatable_and_resume_continues_exactly(tmp_path, fashion_mnist_dir):
    straight = train(_config(tmp_path, "straight.pt", epochs=2, seed=3), log=lambda m: None)
    again = train(_config(tmp_path, "again.pt", epochs=2, seed=3), log=lambda m: None)
    for key, value in straight.state_dict.items():
        assert torch.equal(value, again.state_dict[key]), key

    class Stop(Exception):
        pass

    calls = {"n": 0}
    original = trainer_module.augment

    def interrupting_augment(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 6:  # first step of epoch 2 (4 steps per epoch)
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    trainer_module.augment = interrupting_augment
    try:
        with pytest.raises(KeyboardInterrupt):
            train(_config(tmp_path, "resumed.pt", epochs=2, seed=3), log=lambda m: None)
    finally:
        trainer_module.augment = original
    partial = load_checkpoint(tmp_path / "resumed.pt")  # the last complete checkpoint stays valid
    assert partial.training["epochs_done"] == 1 and partial.training["resume"]["epoch"] == 1
    resumed = train(_config(tmp_path, "resumed.pt", epochs=2, seed=3, resume=True), log=lambda m: None)
    for key, value in straight.state_dict.items():
        assert torch.equal(value, resumed.state_dict[key]), key
    with pytest.raises(CheckpointError, match="finished run"):
        train(_config(tmp_path, "resumed.pt", epochs=2, seed=3, resume=True), log=lambda m: None)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["again.pt", "resumed.pt", "straight.pt"]


def test_bad_training_inputs(tmp_path):
    with pytest.raises(UsageError, match="unknown training mode"):
        train(_config(tmp_path, mode="distill"))
    with pytest.raises(UsageError, match="valid depths"):
        train(_config(tmp_path, depths="9"))
    with pytest.raises(CheckpointError, match="does not exist yet"):
        train(_config(tmp_path, resume=True))


def test_recalibrated_bn_statistics_are_exact_batch_statistics():
    torch.manual_seed(0)
    model = build_model("cifar_resnet20", num_classes=10, in_channels=1, input_size=28, width=4)
    depth = DepthConfig((1, 1, 1))
    batches = [torch.randn(16, 1, 28, 28) * 2 + 1 for _ in range(3)]
    stats = recalibrate_bn(model, depth, iter(batches))
    stem = model.bn1.__class__  # the stem's BN sees conv1(x) directly: check it against the exact moments
    conv_out = torch.cat([model.conv1(b) for b in batches]).detach()
    assert isinstance(model.bn1, stem)
    assert torch.allclose(stats["bn1.running_mean"], conv_out.mean((0, 2, 3)), atol=1e-5)
    # cumulative average of per-batch unbiased variances, as momentum=None defines it
    per_batch = torch.stack([model.conv1(b).detach().var((0, 2, 3), unbiased=True) for b in batches]).mean(0)
    assert torch.allclose(stats["bn1.running_var"], per_batch, atol=1e-4)
    assert not any(k.startswith("layer1.1.") for k in stats)  # only the depth's own BN layers
    assert model.bn1.momentum == 0.1  # settings restored


def test_holdout_evaluates_on_training_images_never_seen_in_training(tmp_path, fashion_mnist_dir, monkeypatch):
    seen = {}
    real_load = trainer_module._load_data

    def spy(config):
        train_set, eval_set = real_load(config)
        seen["train"], seen["eval"] = train_set, eval_set
        return train_set, eval_set

    monkeypatch.setattr(trainer_module, "_load_data", spy)
    messages = []
    ckpt = train(_config(tmp_path, holdout=5000, train_limit=None, test_limit=None, epochs=0, depths="8"),
                 log=messages.append)
    # 55,000 images left to train on, 5,000 held out; no image appears in both (pixels + label as identity)
    assert len(seen["train"]) == 55000 and len(seen["eval"]) == 5000
    key = lambda ds: {ds.images[i].tobytes() + bytes([ds.labels[i]]) for i in range(len(ds))}  # noqa: E731
    held = key(seen["eval"])
    assert len(held & key(seen["train"].subset(20000, seed=0))) <= 5  # Fashion-MNIST has a few exact duplicates
    metrics = ckpt.metrics["1-1-1"]
    assert metrics["split"] == "held-out" and metrics["n"] == 5000
    assert ckpt.training["settings"]["holdout"] == 5000
    # the split is fixed: another seed holds out exactly the same images
    train(_config(tmp_path, "other.pt", holdout=5000, train_limit=None, test_limit=None, epochs=0, depths="8",
                  seed=9), log=lambda m: None)
    assert key(seen["eval"]) == held
    with pytest.raises(UsageError, match="--holdout"):
        train(_config(tmp_path, "bad.pt", holdout=10**6))
