"""Training at scale: the shared-prefix step, host-sync-free logging, distributed evaluation and BN recalibration,
the streaming image-folder pipeline (issue 16)."""

from __future__ import annotations

import copy
import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")

from ddnn_deploy.distill.losses import distill_loss  # noqa: E402
from ddnn_deploy.models import build_model  # noqa: E402
from ddnn_deploy.spec import arch_spec, parse_depths  # noqa: E402


@pytest.mark.parametrize(
    ("arch", "depths", "shape", "width"),
    [
        ("cifar_resnet20", "8,14,20", (1, 28, 28), 8),
        ("resnet50", "26,38,50", (3, 64, 64), 8),
        ("resnet18", None, (3, 32, 32), 8),
        ("vgg11_bn", None, (3, 32, 32), 8),
    ],
)
def test_the_shared_prefix_step_has_the_naive_steps_loss_and_gradients(arch, depths, shape, width):
    torch.manual_seed(0)
    model = build_model(arch, num_classes=10, in_channels=shape[0], input_size=shape[1], width=width).train()
    configs = parse_depths(arch_spec(arch), depths)
    twin = copy.deepcopy(model)
    x, target = torch.randn(6, *shape), torch.randint(0, 10, (6,))
    results = []
    for net, shared in ((model, False), (twin, True)):
        torch.manual_seed(1)  # the same dropout masks (VGG's head) both ways
        if shared:
            outputs = net.forward_many(x, configs, return_features=True)
        else:
            outputs = [net(x, c, return_features=True) for c in configs]
        logits, features = [o[0] for o in outputs], [o[1] for o in outputs]
        parts = distill_loss("ekd", logits, features, target, kl_weight=1.0, at_weight=100.0)
        parts["loss"].backward()
        grads = {n: p.grad.clone() for n, p in net.named_parameters() if p.grad is not None}
        results.append((parts, logits, grads))
    (naive, naive_logits, naive_grads), (shared, shared_logits, shared_grads) = results
    for key in ("loss", "ce", "kl", "at"):
        assert torch.allclose(naive[key], shared[key], rtol=1e-5, atol=1e-7), key
    for a, b in zip(naive_logits, shared_logits):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-6)
    assert naive_grads.keys() == shared_grads.keys() and naive_grads
    # relative to each tensor's largest gradient: the sums run in another order, float32 rounding differs
    worst = max(
        float((naive_grads[k] - shared_grads[k]).abs().max() / naive_grads[k].abs().max().clamp_min(1e-12))
        for k in naive_grads
    )
    assert worst < 1e-4, worst


def test_forward_many_in_eval_mode_is_each_depth_with_its_own_statistics():
    torch.manual_seed(0)
    model = build_model("cifar_resnet20", num_classes=10, in_channels=1, input_size=28, width=8).eval()
    configs = parse_depths(arch_spec("cifar_resnet20"), "8,20")
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        for got, config in zip(model.forward_many(x, configs), configs):
            assert torch.equal(got, model(x, config))


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory, fashion_mnist_dir):
    """Fashion-MNIST as an ImageNet-layout folder: 3-channel PNGs at 64 px, 10 classes, 60 train + 20 val each."""
    import numpy as np
    from PIL import Image

    from ddnn_deploy.data import load_dataset

    root = tmp_path_factory.mktemp("folder")
    data = load_dataset("fashion-mnist", "train")
    for split, per_class, offset in (("train", 60, 0), ("val", 20, 60)):
        for label in range(10):
            (root / split / f"c{label}").mkdir(parents=True)
            picks = np.flatnonzero(data.labels == label)[offset : offset + per_class]
            for n, i in enumerate(picks):
                gray = Image.fromarray(data.images[i, 0]).resize((64, 64), Image.Resampling.BILINEAR)
                Image.merge("RGB", (gray, gray, gray)).save(root / split / f"c{label}" / f"{n}.png")
    return root


LOADER_CHECK = """
import sys, torch
from ddnn_deploy.distill.stream import FolderFiles
files = FolderFiles.open(sys.argv[1], size=32)
def first(workers, epoch):
    loader = files.loader(16, seed=5, rank=1, world=2, workers=workers)
    loader.sampler.set_epoch(epoch)
    return [batch for _, batch in zip(range(3), loader)]
one, two, other = first(0, 3), first(2, 3), first(0, 4)
same = all(torch.equal(a, b) and torch.equal(la, lb) for (a, la), (b, lb) in zip(one, two))
print("same-with-0-and-2-workers" if same else "differ", "epochs-differ" if not torch.equal(one[0][0], other[0][0])
      else "epochs-same", one[0][0].dtype, "x".join(map(str, one[0][0].shape)))
"""


def test_the_loader_shards_disjointly_and_augments_the_same_with_any_worker_count(image_folder):
    from ddnn_deploy.distill.stream import FolderFiles

    files = FolderFiles.open(image_folder / "train", size=32)
    assert len(files) == 600 and files.input_shape == (3, 32, 32) and files.paths.dtype.kind == "S"
    shards = []
    for rank in (0, 1):
        loader = files.loader(16, seed=5, rank=rank, world=2, workers=0)
        loader.sampler.set_epoch(3)
        shards.append([index for _, index in loader.sampler])
    assert len(shards[0]) == len(shards[1]) == 300 and not set(shards[0]) & set(shards[1])

    # in a child process: loader workers in this one would share it with the thread pools other tests left
    # (OpenVINO's among them), which crashed the test process once its workers were running
    done = subprocess.run([sys.executable, "-c", LOADER_CHECK, str(image_folder / "train")], capture_output=True,
                          text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["same-with-0-and-2-workers", "epochs-differ", "torch.uint8", "16x3x32x32"]


def test_random_resized_crop_keeps_within_the_image_and_flips():
    import numpy as np
    from PIL import Image

    from ddnn_deploy.distill.stream import random_resized_crop

    ramp = np.tile(np.arange(200, dtype=np.uint8), (100, 1))  # brightness grows left to right
    img = Image.fromarray(np.stack([ramp] * 3, axis=2))
    flips = 0
    for seed in range(40):
        out = random_resized_crop(img, 24, np.random.default_rng(seed))
        assert out.shape == (3, 24, 24) and out.dtype == np.uint8
        flips += int(out[0, 0, 0] > out[0, 0, -1])
    assert 5 < flips < 35  # about half mirrored
    strip = Image.fromarray(np.zeros((4, 400, 3), dtype=np.uint8))  # no try fits: the centre-crop fallback
    assert random_resized_crop(strip, 8, np.random.default_rng(0)).shape == (3, 8, 8)


@pytest.mark.slow
def test_torchrun_streams_an_image_folder_and_evaluates_over_both_ranks(image_folder, tmp_path):
    import os

    from ddnn_deploy.checkpoint import load_checkpoint
    from ddnn_deploy.evaluation import evaluate_checkpoint

    out = tmp_path / "folder.pt"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "ddnn_deploy",
           "train", "--arch", "resnet18", "--width", "8", "--dataset", "imagefolder", "--data", str(image_folder),
           "--image-size", "32", "--workers", "1", "--epochs", "1", "--batch-size", "16", "--grad-accum", "2",
           "--recal-samples", "600", "--device", "cpu", "--threads", "1", "--no-progress",
           "--out", str(out)]  # fmt: skip
    result = subprocess.run(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True,
                            timeout=600)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    ckpt = load_checkpoint(out)
    assert ckpt.input_shape == [3, 32, 32] and ckpt.training["settings"]["world_size"] == 2
    assert ckpt.training["settings"]["grad_accum"] == 2 and ckpt.dataset == "imagefolder"
    # 600 images, 2 ranks, 16 x 2 per optimizer step: 9 steps; the epoch's training figures cover both ranks
    assert ckpt.training["history"][0]["train"][str(ckpt.depths[0])]["top1"] >= 0
    single = evaluate_checkpoint(out, dataset="imagefolder", data_dir=str(image_folder))
    assert {r["depth"]: r["top1"] for r in single["depths"]} == {
        ckpt.spec.depth_of(c): ckpt.metrics[str(c)]["top1"] for c in ckpt.depths
    }
    assert all(r["n"] == 200 for r in single["depths"])


def test_init_from_another_class_count_keeps_all_but_the_classifier():
    from ddnn_deploy.distill.trainer import _load_init

    torch.manual_seed(0)
    imagenet = build_model("resnet18", num_classes=1000, width=8).state_dict()
    model = build_model("resnet18", num_classes=10, width=8)
    fresh_head = model.fc.weight.detach().clone()
    _load_init(model, imagenet, "--init x")
    state = model.state_dict()
    assert all(torch.equal(state[k], v) for k, v in imagenet.items() if not k.startswith("fc."))
    assert torch.equal(model.fc.weight, fresh_head)
    broken = {k: (v[:1] if k == "conv1.weight" else v) for k, v in imagenet.items()}
    from ddnn_deploy.errors import CheckpointError

    with pytest.raises(CheckpointError, match="do not fit"):  # anything but the classifier must fit
        _load_init(model, broken, "--init x")


@pytest.mark.slow
def test_the_finetune_recipe_scales_the_lr_and_starts_from_converted_weights(image_folder, tmp_path):
    from helpers import cli_runner

    from ddnn_deploy.checkpoint import load_checkpoint
    from ddnn_deploy.cli import cli

    init = tmp_path / "init.pt"
    made = cli_runner().invoke(cli, ["convert", "--arch", "resnet18", "--width", "8", "--out", str(init)])
    assert made.exit_code == 0, made.output
    args = ["train", "--recipe", "imagenet-finetune", "--arch", "resnet18", "--width", "8", "--data",
            str(image_folder), "--image-size", "32", "--epochs", "1", "--batch-size", "32", "--workers", "0",
            "--recal-samples", "100", "--test-limit", "50", "--no-progress",
            "--out", str(tmp_path / "ft.pt")]  # fmt: skip
    missing = cli_runner().invoke(cli, args)
    assert missing.exit_code == 2 and "--init" in missing.stderr
    result = cli_runner().invoke(cli, [*args, "--init", str(init)])
    assert result.exit_code == 0, result.output
    assert "lr 0.00125" in result.stderr  # 0.01 per 256 images x a global batch of 32
    settings = load_checkpoint(tmp_path / "ft.pt").training["settings"]
    assert settings["lr_scale"] == "linear" and settings["weight_decay"] == 1e-4 and settings["epochs"] == 1
    assert settings["dataset"] == "imagefolder" and settings["init"] == str(init)


def test_depths_on_the_same_path_share_blocks_as_a_tree():
    """ResNet-50's 26/38/50 (2-2-2-2, 3-3-3-3, 3-4-6-3): 36 block calls one depth at a time; shared, 2 for
    all three in stage 1, then 38 and 50 together for the rest of stage 1 and three blocks of stage 2: 28."""
    model = build_model("resnet50", num_classes=10, width=4, input_size=32).train()
    calls = []
    for stage in model.stages():
        for block in stage:
            block.register_forward_hook(lambda module, args, out: calls.append(module))
    configs = parse_depths(arch_spec("resnet50"), "26,38,50")
    model.forward_many(torch.randn(2, 3, 32, 32), configs)
    assert len(calls) == 28
    calls.clear()
    for config in configs:
        model(torch.randn(2, 3, 32, 32), config)
    assert len(calls) == 36


@pytest.mark.slow
def test_under_torchrun_each_rank_trains_on_its_own_shard(image_folder, tmp_path):
    import json
    import os

    child = os.path.join(os.path.dirname(__file__), "shard_trace_child.py")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", child,
           str(image_folder), str(tmp_path / "shards.pt"), str(tmp_path / "seen")]  # fmt: skip
    done = subprocess.run(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True,
                          timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    seen = [json.loads((tmp_path / f"seen.{rank}").read_text()) for rank in (0, 1)]
    # 600 images, 2 ranks, batches of 20: 15 batches of 20 = 300 images per rank, none on both ranks
    assert len(seen[0]) == len(seen[1]) == 300
    assert len(set(seen[0])) == 300 and not set(seen[0]) & set(seen[1])
