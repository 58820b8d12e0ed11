"""Training at scale: the shared-prefix step, host-sync-free logging, distributed evaluation and BN recalibration,
the streaming image-folder pipeline (issue 16)."""

from __future__ import annotations

import copy

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
