"""STaR temporal-Gram-matrix losses and the masking-distillation loss (issue 16)."""

from __future__ import annotations

import pytest
import torch

from speechkit.losses.star import IntraTgmLoss, LayerTgmLoss, MaskedLayerMseLoss, temporal_gram


def _widen(x, extra, perm=None):
    x = x[..., perm] if perm is not None else x
    return torch.cat([x, torch.zeros(*x.shape[:-1], extra)], dim=-1)


@pytest.mark.parametrize("normalize", ["frame", "none"])
def test_tgm_losses_are_zero_for_identical_inputs(normalize):
    torch.manual_seed(0)
    s = [torch.randn(2, 7, 6) for _ in range(3)]
    lens = torch.tensor([7, 5])
    assert LayerTgmLoss(normalize)(s, s, lens).item() == 0.0
    assert IntraTgmLoss(normalize)(list(zip(s, s[1:])), list(zip(s, s[1:])), lens).item() == 0.0


@pytest.mark.parametrize("normalize", ["frame", "none"])
def test_tgm_losses_ignore_channel_permutation_and_width(normalize):
    torch.manual_seed(0)
    s = [torch.randn(2, 7, 6) for _ in range(3)]
    perm = torch.randperm(6)
    t = [_widen(x, 10, perm) for x in s]  # teacher 16 wide, same frames in other channel order
    lens = torch.tensor([7, 5])
    assert LayerTgmLoss(normalize)(s, t, lens).item() < 1e-6
    assert IntraTgmLoss(normalize)(list(zip(s, s[1:])), list(zip(t, t[1:])), lens).item() < 1e-6
    other = [torch.randn(2, 7, 16) for _ in range(3)]
    assert LayerTgmLoss(normalize)(s, other, lens).item() > 1e-2
    assert IntraTgmLoss(normalize)(list(zip(s, s[1:])), list(zip(other, other[1:])), lens).item() > 1e-2


def test_frame_normalisation_removes_the_scale_of_the_teacher():
    torch.manual_seed(0)
    s, lens = [torch.randn(1, 5, 4)], torch.tensor([5])
    assert LayerTgmLoss("frame")(s, [s[0] * 7.0], lens).item() < 1e-6
    assert LayerTgmLoss("none")(s, [s[0] * 7.0], lens).item() > 1.0


def test_tgm_hand_computed_and_padding_ignored():
    f = torch.tensor([[[1.0, 0.0], [0.0, 2.0], [5.0, 5.0]]])
    g = temporal_gram(f, f, torch.tensor([2]), "none")
    assert g.tolist() == [[[1.0, 0.0, 0.0], [0.0, 4.0, 0.0], [0.0, 0.0, 0.0]]]
    t = f.clone()
    t[0, 2] = -9.0  # only the padded frame differs
    assert LayerTgmLoss("none")([f], [t], torch.tensor([2])).item() == 0.0
    # one entry off by 2 of the 4 valid pairs: MSE 4 / 4 = 1
    t2 = torch.tensor([[[1.0, 0.0], [0.0, 2.0 ** 0.5 * 2 ** 0.5 * 1.0]]])
    t2[0, 1, 1] = 6 ** 0.5
    assert LayerTgmLoss("none")([f[:, :2]], [t2], torch.tensor([2])).item() == pytest.approx(1.0)


def test_tgm_losses_give_finite_gradients_to_the_student_only():
    s = [torch.randn(2, 6, 4, requires_grad=True)]
    t = [torch.randn(2, 6, 8, requires_grad=True)]
    LayerTgmLoss()(s, t, torch.tensor([6, 3])).backward()
    assert torch.isfinite(s[0].grad).all() and s[0].grad.abs().sum() > 0 and t[0].grad is None


def test_masked_mse_picks_the_teacher_per_frame():
    pred = torch.zeros(1, 4, 2)
    clean, masked = torch.ones(1, 4, 2), torch.full((1, 4, 2), 3.0)
    mask = torch.tensor([[True, True, False, False]])
    # masked frames vs clean (error 1), unmasked vs masked teacher (error 9); frame 3 is padding
    assert MaskedLayerMseLoss()(pred, clean, masked, mask, torch.tensor([3])).item() == pytest.approx((1 + 1 + 9) / 3)
