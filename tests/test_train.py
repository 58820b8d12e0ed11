"""Short real training runs on real Fashion-MNIST images: every mode, resume, Ctrl-C, seeds, BN per depth."""

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from ddnn_deploy.checkpoint import load_checkpoint
from ddnn_deploy.distill import trainer as trainer_module
from ddnn_deploy.distill.trainer import TrainConfig, train
from ddnn_deploy.errors import CheckpointError, UsageError
from ddnn_deploy.models import build_model, recalibrate_bn
from ddnn_deploy.spec import DepthConfig


def _config(tmp_path, name="run.pt", **overrides):
    base = dict(
        arch="cifar_resnet20",
        depths="8,14",
        width=4,
        epochs=1,
        batch_size=64,
        train_limit=256,
        test_limit=128,
        recal_samples=128,
        out=str(tmp_path / name),
        progress=False,
    )
    base.update(overrides)
    return TrainConfig(**base)


@pytest.mark.parametrize("mode", ["ekd", "ce", "ipkd", "ipkd-ta"])
def test_each_mode_trains_and_writes_a_checkpoint(tmp_path, fashion_mnist_dir, mode):
    ckpt = train(_config(tmp_path, mode=mode, depths=[8, "2-2-2", DepthConfig((3, 3, 3))]), log=None)
    assert ckpt.training["settings"]["depths"] == "8,14,20"  # stored plain, whatever form it was given in
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
    saved = (tmp_path / "resumed.pt").read_bytes()
    with pytest.raises(UsageError, match=r"differ .*--lr 0.1 -> 0.05; --seed 3 -> 4"):  # another run: refused
        train(_config(tmp_path, "resumed.pt", epochs=2, seed=4, lr=0.05, resume=True), log=lambda m: None)
    with pytest.raises(UsageError, match="already exists; pass --resume"):  # never replaced without asking
        train(_config(tmp_path, "resumed.pt", epochs=2, seed=3), log=lambda m: None)
    assert (tmp_path / "resumed.pt").read_bytes() == saved
    resumed = train(_config(tmp_path, "resumed.pt", epochs=2, seed=3, resume=True), log=lambda m: None)
    sessions = resumed.training["sessions"]  # where each part of the run trained
    assert [s["from_epoch"] for s in sessions] == [0, 1] and all(s["device"] == "cpu" and s["torch"] for s in sessions)
    for key, value in straight.state_dict.items():
        assert torch.equal(value, resumed.state_dict[key]), key
    with pytest.raises(CheckpointError, match="finished run"):
        train(_config(tmp_path, "resumed.pt", epochs=2, seed=3, resume=True), log=lambda m: None)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["again.pt", "resumed.pt", "straight.pt"]


def test_a_non_finite_loss_stops_training_and_keeps_the_last_checkpoint(tmp_path, fashion_mnist_dir, monkeypatch):
    from ddnn_deploy.errors import TrainingError

    first = train(_config(tmp_path, "run.pt"), log=lambda m: None)
    real_epoch = trainer_module._train_epoch

    def diverging(run, epoch, normalize):
        sums = real_epoch(run, epoch, normalize)
        return {depth: [float("nan"), *rest[1:]] for depth, rest in sums.items()}

    monkeypatch.setattr(trainer_module, "_train_epoch", diverging)
    before = (tmp_path / "run.pt").read_bytes()
    with pytest.raises(TrainingError, match="non-finite in epoch 1 .*lower --lr"):
        train(_config(tmp_path, "run.pt", force=True), log=lambda m: None)
    assert (tmp_path / "run.pt").read_bytes() == before and first.training["epochs_done"] == 1


@pytest.mark.parametrize(
    "bad",
    [
        {"lr": float("nan")},
        {"lr": 0.0},
        {"lr": float("inf")},
        {"temperature": 0.0},
        {"batch_size": 0},
        {"train_limit": 0},
        {"recal_samples": 0},
        {"kl_weight": -1.0},
        {"warmup_epochs": float("nan")},
        {"holdout": -1},
        {"width": -3},
        {"threads": 0},
    ],
)
def test_numbers_are_checked_before_any_work(tmp_path, bad):
    with pytest.raises(UsageError, match="must be"):
        _config(tmp_path, **bad)


def test_bad_training_inputs(tmp_path):
    with pytest.raises(UsageError, match="unknown training mode"):
        train(_config(tmp_path, mode="distill"))
    with pytest.raises(UsageError, match="config must be a TrainConfig, not dict"):
        train({"arch": "cifar_resnet20"})
    with pytest.raises(UsageError, match="log must be a callable"):
        train(_config(tmp_path), log="stderr")
    with pytest.raises(UsageError, match="depths must be"):
        train(_config(tmp_path, depths=8.5))
    with pytest.raises(UsageError, match="valid depths"):
        train(_config(tmp_path, depths="9"))
    with pytest.raises(CheckpointError, match="does not exist yet"):
        train(_config(tmp_path, resume=True))


def test_recalibrated_bn_statistics_are_exact_batch_statistics():
    torch.manual_seed(0)
    model = build_model("cifar_resnet20", num_classes=10, in_channels=1, input_size=28, width=4)
    depth = DepthConfig((1, 1, 1))
    batches = [torch.randn(16, 1, 28, 28) * 2 + 1 for _ in range(3)]
    shared = {k: v.clone() for k, v in model.state_dict().items()}
    stats = recalibrate_bn(model, depth, iter(batches))
    # the stem's BN sees conv1(x) directly: check it against the exact moments
    conv_out = torch.cat([model.conv1(b) for b in batches]).detach()
    assert torch.allclose(stats["bn1.running_mean"], conv_out.mean((0, 2, 3)), atol=1e-5)
    # cumulative average of per-batch unbiased variances, as momentum=None defines it
    per_batch = torch.stack([model.conv1(b).detach().var((0, 2, 3), unbiased=True) for b in batches]).mean(0)
    assert torch.allclose(stats["bn1.running_var"], per_batch, atol=1e-4)
    # only the depth's own BN layers: the stem's and two in each of its three blocks, three buffers each
    assert len(stats) == 7 * 3 and not any(k.startswith("layer1.1.") for k in stats)
    assert int(stats["bn1.num_batches_tracked"]) == 3
    assert model.bn1.momentum == 0.1  # settings restored
    assert all(torch.equal(shared[k], v) for k, v in model.state_dict().items())  # the shared statistics too


def test_holdout_evaluates_on_training_images_never_seen_in_training(tmp_path, fashion_mnist_dir):
    config = _config(tmp_path, holdout=5000, train_limit=None, test_limit=None, depths="8")
    train_set, eval_set = trainer_module._load_data(config)
    # 55,000 images left to train on, 5,000 held out; no image appears in both (pixels + label as identity)
    assert len(train_set) == 55000 and len(eval_set) == 5000
    key = lambda ds: {ds.images[i].tobytes() + bytes([ds.labels[i]]) for i in range(len(ds))}  # noqa: E731
    held = key(eval_set)
    assert len(held & key(train_set.subset(20000, seed=0))) <= 5  # Fashion-MNIST has a few exact duplicates
    # the split is fixed: another seed holds out exactly the same images
    assert key(trainer_module._load_data(replace(config, seed=9))[1]) == held
    messages = []
    ckpt = train(_config(tmp_path, holdout=5000, test_limit=None, depths="8"), log=messages.append)
    metrics = ckpt.metrics["1-1-1"]
    assert metrics["split"] == "held-out" and metrics["n"] == 5000
    assert ckpt.training["settings"]["holdout"] == 5000
    assert any("held-out top-1" in m for m in messages)
    with pytest.raises(UsageError, match="--holdout"):
        train(_config(tmp_path, "bad.pt", holdout=10**6))


def test_each_epoch_records_how_hard_the_auxiliary_terms_pull(tmp_path, fashion_mnist_dir):
    """The gradient norms of w_kl * KL and w_at * AT over the CE's, per epoch: a term near 0 does nothing."""
    ekd = train(_config(tmp_path, "ekd.pt", attention_power=2, at_combine="mean"), log=lambda m: None)
    ratio = ekd.training["history"][0]["grad_norm_ratio"]
    assert ratio["kl"] > 0 and ratio["at"] > 0
    settings = ekd.training["settings"]
    assert settings["attention_power"] == 2 and settings["at_combine"] == "mean" and settings["ipkd_loss"] == "soft"
    no_at = train(_config(tmp_path, "no-at.pt", at_weight=0.0), log=lambda m: None)
    assert no_at.training["history"][0]["grad_norm_ratio"]["at"] == 0
    ce = train(_config(tmp_path, "ce.pt", mode="ce"), log=lambda m: None)
    assert "grad_norm_ratio" not in ce.training["history"][0]
    for bad in (dict(attention_power=3), dict(at_combine="max"), dict(ipkd_loss="hard")):
        with pytest.raises(UsageError, match="must be one of"):
            _config(tmp_path, **bad)


def test_a_run_recorded_before_a_loss_option_existed_resumes_only_with_that_times_behaviour():
    from ddnn_deploy.distill.trainer import _check_same_run

    now = dict(mode="ekd", seed=0, attention_power=1, at_combine="sum", ipkd_loss="soft")
    _check_same_run({"mode": "ekd", "seed": 0}, now, Path("old.pt"))  # the behaviour of that time: same run
    with pytest.raises(UsageError, match=r"--attention-power 1 -> 2"):  # today's default would change the loss
        _check_same_run({"mode": "ekd", "seed": 0}, dict(now, attention_power=2), Path("old.pt"))
    with pytest.raises(UsageError, match=r"--ipkd-loss 'soft\+hard' -> 'soft'"):
        _check_same_run({"mode": "ipkd-ta", "seed": 0}, dict(now, mode="ipkd-ta"), Path("old.pt"))
    _check_same_run({"mode": "ipkd-ta", "seed": 0}, dict(now, mode="ipkd-ta", ipkd_loss="soft+hard"), Path("o.pt"))
    # a setting the run's mode ignores never blocks a resume (ce recorded attention power 1, today's default is 2)
    _check_same_run({"mode": "ce", "seed": 0, "attention_power": 1}, dict(now, mode="ce", attention_power=2), Path("c"))
