"""Distillation losses (speechkit.losses.asr_kd): zero for identical inputs, positive otherwise,
padding ignored, and gradients only where they belong (never into the teacher)."""

from __future__ import annotations

import math

import pytest
import torch

from speechkit.losses import ApcLoss, AttentionRelationLoss, FeatureLoss, TokenKdLoss

LENS = torch.tensor([7, 4])


def _qkv(seed: int, heads: int = 2, dh: int = 4):
    g = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(2, heads, 7, dh, generator=g) for _ in range(3))


def _cases():
    g = torch.Generator().manual_seed(0)
    h, z = torch.randn(2, 7, 6, generator=g), torch.randn(2, 7, 6, generator=g)
    lp, lq = torch.randn(2, 7, 5, generator=g).log_softmax(-1), torch.randn(2, 7, 5, generator=g).log_softmax(-1)
    return [
        ("feature", FeatureLoss(), h, z),
        ("relation", AttentionRelationLoss(2), _qkv(1), _qkv(2)),
        ("token", TokenKdLoss(), lp, lq),
    ]


@pytest.mark.parametrize("name,loss,same,other", _cases(), ids=lambda c: c if isinstance(c, str) else "")
def test_kd_loss_is_zero_for_identical_inputs_and_positive_otherwise(name, loss, same, other):
    assert abs(loss(same, same, LENS).item()) < 1e-5
    assert loss(other, same, LENS).item() > 1e-3


def test_apc_loss_is_zero_when_each_frame_predicts_the_teacher_n_frames_ahead():
    h = torch.randn(2, 7, 6)
    r = torch.cat([h[:, 3:], torch.randn(2, 3, 6)], dim=1)  # r_t = h_{t+3}; the last 3 frames are never scored
    assert abs(ApcLoss(shift=3)(r, h, LENS).item()) < 1e-5
    assert ApcLoss(shift=3)(h, h, LENS).item() > 1e-3  # r_t = h_t is not the future
    assert ApcLoss(shift=2)(r, h, LENS).item() > 1e-3


def test_feature_loss_value_by_hand():
    pred, target = torch.tensor([[[1.0, 0.0]]]), torch.tensor([[[0.0, 1.0]]])
    # L1/D = 1; cos = 0: -log sigmoid(0) = log 2; minus the identical-input constant -log sigmoid(1).
    expected = 1.0 + math.log(2.0) - math.log(1.0 + math.exp(-1.0))
    assert FeatureLoss()(pred, target, torch.tensor([1])).item() == pytest.approx(expected, abs=1e-6)


def test_kd_losses_ignore_padding():
    h, z = torch.randn(2, 7, 6), torch.randn(2, 7, 6)
    z2, h2 = z.clone(), h.clone()
    z2[1, 4:], h2[1, 4:] = 100.0, -3.0  # item 1 has 4 valid frames
    assert FeatureLoss()(z2, h2, LENS).item() == pytest.approx(FeatureLoss()(z, h, LENS).item(), abs=1e-6)
    qs, qt = _qkv(1), _qkv(2)
    qs2 = tuple(x.clone() for x in qs)
    for x in qs2:
        x[1, :, 4:] = 50.0
    relation = AttentionRelationLoss(2)
    assert relation(qs2, qt, LENS).item() == pytest.approx(relation(qs, qt, LENS).item(), abs=1e-5)


def test_relation_loss_compares_different_head_layouts():
    """MiniLM-v2 re-splits heads: a 4-head x 2 student vs a 2-head x 6 teacher still compares."""
    student, teacher = _qkv(1, heads=4, dh=2), _qkv(2, heads=2, dh=6)
    assert AttentionRelationLoss(2)(student, teacher, LENS).item() > 0


@pytest.mark.parametrize("loss,make", [
    (FeatureLoss(), lambda: (torch.randn(2, 7, 6), torch.randn(2, 7, 6))),
    (ApcLoss(2), lambda: (torch.randn(2, 7, 6), torch.randn(2, 7, 6))),
    (TokenKdLoss(), lambda: (torch.randn(2, 7, 5), torch.randn(2, 7, 5))),
    (AttentionRelationLoss(2), lambda: (_qkv(1), _qkv(2))),
])
def test_kd_loss_gradient_reaches_the_student_never_the_teacher(loss, make):
    student, teacher = make()
    leaves = list(student) if isinstance(student, tuple) else [student]
    teacher_leaves = list(teacher) if isinstance(teacher, tuple) else [teacher]
    for x in leaves + teacher_leaves:
        x.requires_grad_(True)
    loss(student, teacher, LENS).backward()
    assert all(x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0 for x in leaves)
    assert all(x.grad is None for x in teacher_leaves)


def test_apc_target_is_the_teachers_future_frame():
    """The gradient on r_t points at h_{t+N}: one step of descent on r moves r_t toward h_{t+N}."""
    n = 2
    h = torch.randn(1, 7, 6)
    r = torch.randn(1, 7, 6, requires_grad=True)
    ApcLoss(n)(r, h, torch.tensor([7])).backward()
    stepped = r.detach() - 0.5 * r.grad
    before = (r.detach()[:, :-n] - h[:, n:]).abs().sum()
    after = (stepped[:, :-n] - h[:, n:]).abs().sum()
    assert after < before
    assert r.grad[:, -n:].abs().sum() == 0  # the last N frames have no future to predict
