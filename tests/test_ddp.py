"""Data-parallel training: two Gloo processes on the CPU through torchrun, rank 0 writing."""

import os
import subprocess
import sys

import pytest

from ddnn_deploy.checkpoint import load_checkpoint


@pytest.mark.slow
def test_torchrun_two_gloo_processes(tmp_path, fashion_mnist_dir):
    out = tmp_path / "ddp.pt"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "ddnn_deploy",
        "train",
        "--arch",
        "cifar_resnet20",
        "--width",
        "4",
        "--depths",
        "8,14",
        "--epochs",
        "1",
        "--batch-size",
        "32",
        "--train-limit",
        "256",
        "--test-limit",
        "64",
        "--recal-samples",
        "64",
        "--device",
        "cpu",
        "--threads",
        "1",
        "--no-progress",
        "--out",
        str(out),
    ]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    ckpt = load_checkpoint(out)
    assert ckpt.training["settings"]["world_size"] == 2
    assert len(ckpt.training["history"]) == 1
    assert set(ckpt.bn_stats) == {"1-1-1", "2-2-2"}
    # rank 0 alone writes: exactly one "epoch 1/1" line and no stray temporary files
    assert result.stderr.count("epoch 1/1") == 1
    assert [p.name for p in tmp_path.iterdir()] == ["ddp.pt"]


@pytest.mark.slow
def test_an_interrupted_ddp_run_resumes_to_the_same_weights(tmp_path, fashion_mnist_dir):
    import torch

    child = os.path.join(os.path.dirname(__file__), "ddp_resume_child.py")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def launch(out, how):
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", child,
               str(out), how]  # fmt: skip
        return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)

    straight = launch(tmp_path / "straight.pt", "straight")
    assert straight.returncode == 0, straight.stderr[-2000:]
    interrupted = launch(tmp_path / "resumed.pt", "interrupt")
    assert interrupted.returncode != 0 and "KeyboardInterrupt" in interrupted.stderr
    partial = load_checkpoint(tmp_path / "resumed.pt")
    assert partial.training["epochs_done"] == 1 and partial.training["resume"]["epoch"] == 1
    resumed = launch(tmp_path / "resumed.pt", "resume")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    a, b = load_checkpoint(tmp_path / "straight.pt"), load_checkpoint(tmp_path / "resumed.pt")
    assert a.state_dict.keys() == b.state_dict.keys()
    for key, value in a.state_dict.items():
        assert torch.equal(value, b.state_dict[key]), key
    assert a.metrics == b.metrics
