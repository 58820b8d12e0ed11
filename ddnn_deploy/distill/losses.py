"""Distillation losses as pure functions (the paper's Eq. 1-7 and the baselines it compares to).

Conventions shared by every function here:
- ``logits[0]`` and ``features[0]`` belong to the full-net, ``logits[1:]`` to the K sub-nets,
  ordered from deepest to shallowest (``ipkd-ta`` relies on that order);
- ``features[i][s]`` is net i's output of stage s;
- every teacher is detached: a student's loss never pushes gradient into its teacher.
Each function returns a dict with tensors under ``loss``, ``ce``, ``kl`` and ``at``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from .config import MODES

Tensor = torch.Tensor


def kl_divergence(teacher_probs: Tensor, student_logits: Tensor, temperature: float) -> Tensor:
    """Batch mean of ``sum p_t (log p_t - log p_s)``, times T^2 (Hinton et al.'s gradient scale)."""
    student_log_probs = F.log_softmax(student_logits / temperature, dim=1)
    teacher_log_probs = torch.log(teacher_probs.clamp_min(1e-12))
    per_sample = (teacher_probs * (teacher_log_probs - student_log_probs)).sum(dim=1)
    return per_sample.mean() * temperature**2


def attention_map(feature: Tensor, power: int = 1) -> Tensor:
    """Channel-sum attention, flattened over H x W and L2-normalised per sample: ``A = sum_c F`` (``power`` 1, Eq. 3
    as printed) or ``A = sum_c F^2`` (``power`` 2, the attention-transfer convention of Zagoruyko & Komodakis)."""
    summed = feature.sum(dim=1) if power == 1 else feature.float().pow(power).sum(dim=1)
    return F.normalize(summed.flatten(1), p=2, dim=1)


def cross_entropy_part(logits: Sequence[Tensor], target: Tensor) -> Tensor:
    """``CE(z_0) + mean_k CE(z_k)`` (Eq. 7's first term)."""
    ce = F.cross_entropy(logits[0], target)
    if len(logits) > 1:
        ce = ce + torch.stack([F.cross_entropy(z, target) for z in logits[1:]]).mean()
    return ce


def _result(ce: Tensor, kl: Tensor, at: Tensor, kl_weight: float, at_weight: float) -> dict[str, Tensor]:
    return {"loss": ce + kl_weight * kl + at_weight * at, "ce": ce, "kl": kl, "at": at}


def ekd_loss(
    logits: Sequence[Tensor],
    features: Sequence[Sequence[Tensor]],
    target: Tensor,
    *,
    kl_weight: float,
    at_weight: float,
    temperature: float = 1.0,
    attention_power: int = 1,
    stage_combine: str = "sum",
) -> dict[str, Tensor]:
    """Embedded Knowledge Distillation, Eq. 1-7.

    ``kl = (KL(p_et || p_0) + sum_k KL(p_0 || p_k)) / (K+1)`` with ``p_et`` the mean of all K+1
    probability vectors; ``at = sum_s (MSE(A_0, A_et) + sum_k MSE(A_k, A_0)) / (K+1)`` with
    ``A_et`` the mean of all K+1 normalised attention maps. Teachers (``p_0`` and ``A_0`` when
    they teach a sub-net, ``p_et`` and ``A_et`` always) are detached. ``attention_power`` 2 squares the features
    before the channel sum; ``stage_combine`` ``"mean"`` averages the stages' terms instead of summing them.
    """
    n_nets = len(logits)
    ce = cross_entropy_part(logits, target)
    probs = [F.softmax(z / temperature, dim=1) for z in logits]
    ensemble = torch.stack(probs).mean(dim=0).detach()
    full_teacher = probs[0].detach()
    kl = kl_divergence(ensemble, logits[0], temperature)
    for z in logits[1:]:
        kl = kl + kl_divergence(full_teacher, z, temperature)
    kl = kl / n_nets

    at = ce.new_zeros(())
    stages = len(features[0])
    for stage in range(stages):
        maps = [attention_map(f[stage], attention_power) for f in features]
        ensemble_map = torch.stack(maps).mean(dim=0).detach()
        stage_loss = F.mse_loss(maps[0], ensemble_map)
        for student_map in maps[1:]:
            stage_loss = stage_loss + F.mse_loss(student_map, maps[0].detach())
        at = at + stage_loss / n_nets
    if stage_combine == "mean" and stages:
        at = at / stages
    return _result(ce, kl, at, kl_weight, at_weight)


def ce_loss(logits: Sequence[Tensor], target: Tensor) -> dict[str, Tensor]:
    """Hard labels only for every depth (the paper's "DDNN" column)."""
    ce = cross_entropy_part(logits, target)
    zero = ce.new_zeros(())
    return _result(ce, zero, zero, 0.0, 0.0)


def ipkd_loss(
    logits: Sequence[Tensor],
    target: Tensor,
    *,
    kl_weight: float,
    temperature: float = 1.0,
    teacher_assistant: bool = False,
    hard_labels: bool = False,
) -> dict[str, Tensor]:
    """Inplace distillation: each sub-net distils from the full-net (``ipkd``), or from the next deeper net
    (``ipkd-ta``, teacher assistants).

    By default the literal form of slimmable networks' in-place distillation: the full-net learns from the labels
    (``ce = CE(z_0)``), every sub-net from its teacher's soft target only, the sub-nets' terms summed
    (``kl = sum_k KL(p_teacher || p_k)``). ``hard_labels=True`` is this project's earlier form: every net also
    learns from the labels (Eq. 7's CE term) and ``kl`` is averaged over the K+1 nets as in EKD."""
    ce = cross_entropy_part(logits, target) if hard_labels else F.cross_entropy(logits[0], target)
    kl = ce.new_zeros(())
    for k in range(1, len(logits)):
        teacher = logits[k - 1] if teacher_assistant else logits[0]
        teacher_probs = F.softmax(teacher.detach() / temperature, dim=1)
        kl = kl + kl_divergence(teacher_probs, logits[k], temperature)
    if hard_labels:
        kl = kl / len(logits)
    return _result(ce, kl, ce.new_zeros(()), kl_weight, 0.0)


def distill_loss(
    mode: str,
    logits: Sequence[Tensor],
    features: Sequence[Sequence[Tensor]] | None,
    target: Tensor,
    *,
    kl_weight: float,
    at_weight: float,
    temperature: float = 1.0,
    attention_power: int = 1,
    stage_combine: str = "sum",
    ipkd_hard_labels: bool = False,
) -> dict[str, Tensor]:
    """Dispatch on the training mode (``individual`` trains one net at a time with plain CE)."""
    if mode == "ekd":
        if features is None:
            raise ValueError("ekd needs the stage features")
        return ekd_loss(logits, features, target, kl_weight=kl_weight, at_weight=at_weight, temperature=temperature,
                        attention_power=attention_power, stage_combine=stage_combine)  # fmt: skip
    if mode in ("ce", "individual"):
        return ce_loss(logits, target)
    if mode in ("ipkd", "ipkd-ta"):
        return ipkd_loss(logits, target, kl_weight=kl_weight, temperature=temperature,
                         teacher_assistant=mode == "ipkd-ta", hard_labels=ipkd_hard_labels)  # fmt: skip
    raise ValueError(f"unknown training mode {mode!r}; choose one of {', '.join(MODES)}")
