"""BN statistics per depth inside the model: ``model(x, depth)`` in eval mode uses the depth's own statistics."""

import copy
import warnings

import numpy as np
import pytest
import torch

from ddnn_deploy.checkpoint import Checkpoint, load_checkpoint
from ddnn_deploy.errors import CheckpointError, UsageError
from ddnn_deploy.evaluation import evaluate_checkpoint
from ddnn_deploy.models import SharedBNWarning, bn_stats_of, build_model, recalibrate_bn
from ddnn_deploy.onnx_export.subnet import extract_subnet
from ddnn_deploy.resources import demo_checkpoint
from ddnn_deploy.spec import DepthConfig

D8, D14, D20 = DepthConfig((1, 1, 1)), DepthConfig((2, 2, 2)), DepthConfig((3, 3, 3))
DEMO_CKPT = demo_checkpoint()


def _random_stats(model, config, seed):
    """BN statistics for ``config`` far from the shared ones (so using the wrong ones shows)."""
    g = torch.Generator().manual_seed(seed)
    stats = bn_stats_of(model, config)
    return {
        k: (
            torch.rand(v.shape, generator=g) * 2 + 0.5
            if k.endswith("running_var")
            else torch.randn(v.shape, generator=g)
            if k.endswith("running_mean")
            else v
        )
        for k, v in stats.items()
    }


def _with_buffers(model, stats):
    """A reference: a copy whose registered BN buffers ARE ``stats`` (the old apply-by-copy semantics)."""
    reference = copy.deepcopy(model)
    reference.set_depth_bn_stats({})
    reference.load_state_dict(stats, strict=False)
    return reference.eval()


@pytest.fixture()
def model():
    torch.manual_seed(0)
    net = build_model("cifar_resnet20", num_classes=10, in_channels=1, input_size=28, width=4)
    net.set_depth_bn_stats({8: _random_stats(net, D8, 1), "2-2-2": _random_stats(net, D14, 2)})
    return net.eval()


def test_eval_mode_uses_each_depths_own_statistics(model):
    x = torch.randn(4, 1, 28, 28)
    with torch.no_grad():
        for config in (D8, D14):
            expected = _with_buffers(model, model.depth_bn_stats(config))(x, config, shared_bn=True)
            for form in (config, model.spec.depth_of(config), str(config)):
                assert torch.equal(model(x, form), expected)
            assert not torch.allclose(model(x, config, shared_bn=True), expected)  # the shared stats differ


def test_state_dict_and_buffers_stay_the_shared_statistics(model):
    fresh = build_model("cifar_resnet20", num_classes=10, in_channels=1, input_size=28, width=4)
    assert list(model.state_dict()) == list(fresh.state_dict())
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        model(torch.randn(2, 1, 28, 28), D8)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_depth_without_statistics_warns_once_and_runs_with_the_shared_ones(model):
    x = torch.randn(2, 1, 28, 28)
    with warnings.catch_warnings(record=True) as caught, torch.no_grad():
        warnings.simplefilter("always")
        first = model(x, 20)
        second = model(x, D20)
        shared = model(x, D20, shared_bn=True)
        model(x, 8)  # a depth with statistics never warns
    messages = [str(w.message) for w in caught if issubclass(w.category, SharedBNWarning)]
    assert len(messages) == 1 and "3-3-3" in messages[0] and "shared" in messages[0]
    assert torch.equal(first, shared) and torch.equal(second, shared)


def test_training_mode_is_unchanged_shared_bn_with_batch_statistics(model):
    plain = copy.deepcopy(model)
    plain.set_depth_bn_stats({})
    model.train()
    plain.train()
    x = torch.randn(8, 1, 28, 28)
    assert torch.equal(model(x, D8), plain(x, D8))
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), plain.state_dict().values()))


def test_to_moves_and_converts_the_statistics(model):
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        expected = model(x, D8).double()
        model.double()
        stats = model.depth_bn_stats(D8)
        assert stats["bn1.running_mean"].dtype == torch.float64
        assert stats["bn1.num_batches_tracked"].dtype == torch.int64
        assert torch.allclose(model(x.double(), D8), expected, atol=1e-5)
        if torch.cuda.is_available():
            model.to("cuda")
            assert model.depth_bn_stats(D8)["bn1.running_mean"].is_cuda
            assert torch.allclose(model(x.double().cuda(), D8).cpu(), expected, atol=1e-5)


def test_deepcopy_keeps_the_table_and_extract_subnet_folds_the_right_depth(model):
    x = torch.randn(3, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(copy.deepcopy(model)(x, D14), model(x, D14))
        for config in (D8, D14):
            for fold in ("conv", "none"):
                assert torch.allclose(extract_subnet(model, config, fold=fold)(x), model(x, config), atol=1e-5)


def test_recalibration_bypasses_the_table_and_leaves_the_model_unchanged(model):
    before = {k: v.clone() for k, v in model.state_dict().items()}
    batches = [torch.randn(16, 1, 28, 28) for _ in range(2)]
    stats = recalibrate_bn(model, D8, iter(batches))
    conv_out = torch.cat([model.conv1(b) for b in batches]).detach()
    assert torch.allclose(stats["bn1.running_mean"], conv_out.mean((0, 2, 3)), atol=1e-5)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not model.training


def _checkpoint():
    net = build_model("cifar_resnet20", num_classes=10, in_channels=1, input_size=28, width=4)
    return Checkpoint(
        arch="cifar_resnet20",
        model={"num_classes": 10, "in_channels": 1, "input_size": 28, "width": 4},
        depths=[D8, D14],
        state_dict=net.state_dict(),
        bn_stats={"1-1-1": _random_stats(net, D8, 3), "2-2-2": _random_stats(net, D14, 4)},
        input_shape=[1, 28, 28],
    )


def test_build_with_a_depth_makes_it_the_default_and_validates_it():
    ckpt = _checkpoint()
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        for form in (8, "8", "1-1-1", D8):
            model = ckpt.build(form)
            assert model.default_depth == D8
            assert torch.equal(model(x), model(x, D8))
        everything = ckpt.build()
        assert everything.default_depth == D20 and set(everything.bn_stats_depths) == {D8, D14}
        assert torch.equal(everything(x, 14), ckpt.build(14)(x))
    with pytest.raises(UsageError, match=r"valid depths: 8 \(1-1-1\), 14 \(2-2-2\)"):
        ckpt.build(20)
    with pytest.raises(UsageError, match="not in this checkpoint"):
        ckpt.build(DepthConfig((1, 2, 3)))


def test_statistics_that_do_not_fit_are_refused(model):
    with pytest.raises(UsageError, match="unknown buffers: layer9.0.bn1.running_mean"):
        model.set_depth_bn_stats({8: {"layer9.0.bn1.running_mean": torch.zeros(4)}})
    with pytest.raises(UsageError, match=r"bn1.running_mean has shape \[5\], not \[4\]"):
        model.set_depth_bn_stats({8: {"bn1.running_mean": torch.zeros(5)}})
    assert set(model.bn_stats_depths) == {D8, D14}  # a refused table leaves the old one in place
    ckpt = _checkpoint()
    ckpt.bn_stats["1-1-1"]["bn1.running_var"] = torch.ones(3)
    with pytest.raises(CheckpointError, match="BN statistics do not fit cifar_resnet20"):
        ckpt.build()


@pytest.mark.slow
def test_demo_checkpoint_reproduces_the_own_bn_accuracy_of_every_depth(fashion_mnist_dir):
    """The natural call is right: ``load_checkpoint(demo).build()`` then ``model(x, depth)`` in eval mode
    gives the README's own-BN top-1 (93.44 / 94.22 / 94.37 %), not the shared-BN one (92.57 % at depth 8)."""
    from ddnn_deploy.data import load_dataset

    ckpt = load_checkpoint(DEMO_CKPT)
    model = ckpt.build()
    test = load_dataset("fashion-mnist", "test", str(fashion_mnist_dir))
    forms = {8: 8, 14: "2-2-2", 20: DepthConfig((3, 3, 3))}  # each form of depth argument on one depth
    readme = {8: 93.44, 14: 94.22, 20: 94.37}

    def top1(depth, images, labels, **kwargs):
        correct = 0
        with torch.no_grad():
            for start in range(0, len(labels), 1000):
                x = torch.from_numpy(images[start : start + 1000])
                correct += int((model(x, depth, **kwargs).argmax(1).numpy() == labels[start : start + 1000]).sum())
        return 100.0 * correct / len(labels)

    images, labels = test.preprocess.apply(test.images), np.asarray(test.labels)
    for depth, form in forms.items():
        stored = ckpt.metrics[str(ckpt.table()[depth])]["top1"]
        assert round(top1(form, images, labels), 2) == readme[depth] == round(stored, 2)
    assert round(top1(8, images, labels, shared_bn=True), 2) == 92.57  # what build() + model(x, 8) gave before
    # and evaluate_checkpoint (``ddnn-deploy eval``) agrees on a subset it draws itself
    subset = test.subset(1000, seed=2)
    sub_images, sub_labels = subset.preprocess.apply(subset.images), np.asarray(subset.labels)
    rows = evaluate_checkpoint(DEMO_CKPT, data_dir=str(fashion_mnist_dir), limit=1000)["depths"]
    assert {r["depth"]: r["top1"] for r in rows} == pytest.approx(
        {d: top1(forms[d], sub_images, sub_labels) for d in forms}, abs=1e-9
    )


def test_evaluate_checkpoint_takes_a_checkpoint_object_and_checks_its_arguments(fashion_mnist_dir):
    ckpt = load_checkpoint(DEMO_CKPT)
    result = evaluate_checkpoint(ckpt, depths=[8], limit=200, data_dir=str(fashion_mnist_dir))
    assert result["checkpoint"] is None and [r["depth"] for r in result["depths"]] == [8]
    assert result["depths"][0]["n"] == 200 and result["depths"][0]["bn_stats"] is True
    with pytest.raises(UsageError, match="ckpt must be a Checkpoint or a path, not float"):
        evaluate_checkpoint(3.5)
    with pytest.raises(UsageError, match="limit must be a positive integer or None, not 0"):
        evaluate_checkpoint(ckpt, limit=0)
