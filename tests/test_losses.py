"""ekd_loss against an independent, loop-by-loop reading of Eq. 1-7, and its gradient routing."""

import math

import pytest
import torch
import torch.nn.functional as F

from ddnn_deploy.distill.losses import attention_map, distill_loss, ekd_loss, ipkd_loss


def _inputs(k=2, n=4, classes=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    logits = [torch.randn(n, classes, generator=g, requires_grad=True) for _ in range(k + 1)]
    features = [
        [
            torch.randn(n, 3, 4, 4, generator=g, requires_grad=True),
            torch.randn(n, 6, 2, 2, generator=g, requires_grad=True),
        ]
        for _ in range(k + 1)
    ]
    target = torch.randint(0, classes, (n,), generator=g)
    return logits, features, target


def _kl_reference(p_teacher, p_student):
    total = 0.0
    for row_t, row_s in zip(p_teacher.tolist(), p_student.tolist()):
        total += sum(t * (math.log(t) - math.log(s)) for t, s in zip(row_t, row_s))
    return total / len(p_teacher)


def _reference(logits, features, target, kl_weight, at_weight, temperature):
    k = len(logits) - 1
    ce = F.cross_entropy(logits[0], target).item() + sum(F.cross_entropy(z, target).item() for z in logits[1:]) / k
    probs = [torch.softmax(z.detach() / temperature, 1) for z in logits]
    p_et = sum(probs) / (k + 1)
    kl = (_kl_reference(p_et, probs[0]) + sum(_kl_reference(probs[0], p) for p in probs[1:])) / (k + 1)
    kl *= temperature**2
    at = 0.0
    for s in range(len(features[0])):
        maps = []
        for f in features:
            a = f[s].detach().sum(1).flatten(1)
            maps.append(a / a.norm(dim=1, keepdim=True))
        a_et = sum(maps) / (k + 1)
        mse = lambda a, b: ((a - b) ** 2).mean().item()  # noqa: E731
        at += (mse(maps[0], a_et) + sum(mse(m, maps[0]) for m in maps[1:])) / (k + 1)
    return {"ce": ce, "kl": kl, "at": at, "loss": ce + kl_weight * kl + at_weight * at}


@pytest.mark.parametrize("k,temperature", [(1, 1.0), (2, 1.0), (3, 4.0)])
def test_ekd_loss_matches_equations(k, temperature):
    logits, features, target = _inputs(k=k)
    parts = ekd_loss(logits, features, target, kl_weight=0.7, at_weight=30.0, temperature=temperature)
    expected = _reference(logits, features, target, 0.7, 30.0, temperature)
    assert set(parts) == {"loss", "ce", "kl", "at"}
    for key, value in expected.items():
        assert parts[key].item() == pytest.approx(value, rel=1e-5, abs=1e-7), key


def test_identical_nets_have_zero_distillation():
    logits, features, target = _inputs(k=2)
    same_logits = [logits[0]] * 3
    same_features = [features[0]] * 3
    parts = ekd_loss(same_logits, same_features, target, kl_weight=1, at_weight=1)
    assert parts["kl"].item() == pytest.approx(0, abs=1e-6)
    assert parts["at"].item() == pytest.approx(0, abs=1e-9)


def test_sub_net_losses_push_no_gradient_into_the_teacher():
    logits, features, target = _inputs(k=2)
    parts = ekd_loss(logits, features, target, kl_weight=1.0, at_weight=10.0)
    parts["loss"].backward()
    grad_full = logits[0].grad.clone()
    grad_full_feature = features[0][0].grad.clone()

    # The full-net's gradient must come only from its own CE, KL(p_et || p_0) and MSE(A_0, A_et).
    z0 = logits[0].detach().requires_grad_(True)
    p_et = torch.stack([torch.softmax(z.detach(), 1) for z in logits]).mean(0)
    own = F.cross_entropy(z0, target) + (p_et * (p_et.log() - torch.log_softmax(z0, 1))).sum(1).mean() / 3
    own.backward()
    assert torch.allclose(grad_full, z0.grad, atol=1e-6)

    f0 = features[0][0].detach().requires_grad_(True)
    maps = [attention_map(f[0].detach()) for f in features]
    a_et = torch.stack(maps).mean(0)
    own_at = 10.0 * F.mse_loss(attention_map(f0), a_et) / 3
    own_at.backward()
    assert torch.allclose(grad_full_feature, f0.grad, atol=1e-6)


def test_sub_net_gets_gradient_only_from_its_own_terms():
    logits, features, target = _inputs(k=2)
    ekd_loss(logits, features, target, kl_weight=1.0, at_weight=0.0)["loss"].backward()
    z1 = logits[1].detach().requires_grad_(True)
    p0 = torch.softmax(logits[0].detach(), 1)
    own = F.cross_entropy(z1, target) / 2 + (p0 * (p0.log() - torch.log_softmax(z1, 1))).sum(1).mean() / 3
    own.backward()
    assert torch.allclose(logits[1].grad, z1.grad, atol=1e-6)


def test_ipkd_ta_teaches_each_sub_net_from_the_next_deeper_one():
    logits, _, target = _inputs(k=2)
    parts = ipkd_loss(logits, target, kl_weight=1.0, teacher_assistant=True)
    parts["kl"].backward()
    assert logits[0].grad is None  # the full-net is nobody's student
    p1 = torch.softmax(logits[1].detach(), 1)
    expected = _kl_reference(torch.softmax(logits[0].detach(), 1), torch.softmax(logits[1].detach(), 1))
    expected = expected + _kl_reference(p1, torch.softmax(logits[2].detach(), 1))
    assert parts["kl"].item() == pytest.approx(expected, rel=1e-5)  # summed: in-place distillation
    averaged = ipkd_loss(logits, target, kl_weight=1.0, teacher_assistant=True, hard_labels=True)
    assert averaged["kl"].item() == pytest.approx(expected / 3, rel=1e-5)  # the earlier form: over the K+1 nets
    plain = ipkd_loss(logits, target, kl_weight=1.0, teacher_assistant=False)
    assert plain["kl"].item() != pytest.approx(parts["kl"].item())


def test_in_place_distillation_trains_sub_nets_on_the_soft_target_only():
    logits, _, target = _inputs(k=2)
    soft = ipkd_loss(logits, target, kl_weight=1.0)
    assert soft["ce"].item() == pytest.approx(F.cross_entropy(logits[0], target).item(), rel=1e-6)
    soft["loss"].backward()
    z1 = logits[1].detach().requires_grad_(True)  # sub-net 1: the full-net's soft target, no label term
    p0 = torch.softmax(logits[0].detach(), 1)
    (p0 * (p0.log() - torch.log_softmax(z1, 1))).sum(1).mean().backward()
    assert torch.allclose(logits[1].grad, z1.grad, atol=1e-6)
    both = ipkd_loss(logits, target, kl_weight=1.0, hard_labels=True)
    assert both["ce"].item() > soft["ce"].item()  # plus the sub-nets' CE


def test_attention_power_and_stage_combine():
    logits, features, target = _inputs(k=2)
    f = features[0][0]
    squared = attention_map(f, 2)
    expected = F.normalize(f.pow(2).sum(1).flatten(1), dim=1)
    assert torch.allclose(squared, expected, atol=1e-6) and not torch.allclose(squared, attention_map(f, 1))
    summed = ekd_loss(logits, features, target, kl_weight=1.0, at_weight=1.0)["at"]
    mean = ekd_loss(logits, features, target, kl_weight=1.0, at_weight=1.0, stage_combine="mean")["at"]
    assert mean.item() == pytest.approx(summed.item() / len(features[0]), rel=1e-6)


def test_ce_mode_is_hard_labels_only_and_modes_are_checked():
    logits, features, target = _inputs(k=2)
    parts = distill_loss("ce", logits, None, target, kl_weight=5, at_weight=5)
    assert parts["kl"].item() == 0 and parts["at"].item() == 0
    assert parts["loss"].item() == pytest.approx(parts["ce"].item())
    with pytest.raises(ValueError, match="unknown training mode"):
        distill_loss("nope", logits, features, target, kl_weight=1, at_weight=1)
