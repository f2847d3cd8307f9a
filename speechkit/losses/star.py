"""Distillation losses for compressing a speech SSL teacher (issue 16; methods.md section 5.4).

* STaR (Jang, Kim, Kim, ICASSP 2024, arXiv 2312.09040): temporal Gram matrices (TGM)
  ``G = F F^T`` (T x T, frame by frame) of teacher and student layers are matched, so the two
  widths need not agree and no projection head is trained. :class:`LayerTgmLoss` compares each
  mapped layer's TGM, :class:`IntraTgmLoss` the cross-layer TGM ``F^{l-1} (F^l)^T`` (each frame
  of a layer's input against each frame of its output). STaR's final loss is their sum. The
  official distillation code is not released; the equations follow the public reimplementation's
  report. How F is scaled before the product is not stated in the paper: ``normalize`` chooses
  ``frame`` (each frame L2-normalised: the TGM holds cosines, our default), ``dim`` (divided by
  sqrt(D), so the TGM is a per-channel average) or ``none`` (raw, as the equations read).
* ARMHuBERT masking distillation (Jang et al., Interspeech 2023, arXiv 2305.11685):
  :class:`MaskedLayerMseLoss`, MSE on masked frames against the clean-input teacher and on
  unmasked frames against the masked-input teacher.
* The DistilHuBERT-style baseline reuses :class:`speechkit.losses.asr_kd.FeatureLoss`
  (L1 - log sigmoid cos on projected layers) unchanged.

Shapes: B batch, T frames, D width (teacher and student may differ). ``lens`` (B,) int64 valid
frames; padded frames never count. Teacher tensors are detached here.
"""

from __future__ import annotations

import math
from typing import Literal, Sequence

import torch
from torch import Tensor, nn

from speechkit.losses.asr_kd import lengths_to_mask

Normalize = Literal["frame", "dim", "none"]


def _scaled(x: Tensor, normalize: str) -> Tensor:
    x = x.float()
    if normalize == "frame":
        return nn.functional.normalize(x, dim=-1, eps=1e-6)
    if normalize == "dim":
        return x / math.sqrt(x.shape[-1])
    if normalize == "none":
        return x
    raise ValueError(f"normalize must be 'frame', 'dim' or 'none', got {normalize!r}")


def temporal_gram(left: Tensor, right: Tensor, lens: Tensor, normalize: Normalize = "frame") -> Tensor:
    """``G[b, i, j] = <left[b, i], right[b, j]>`` over channels: (B, T, D) x (B, T, D) -> (B, T, T).

    Entries with a padded frame on either side are 0.

    Example:
        >>> f = torch.tensor([[[3.0, 4.0], [0.0, 2.0]]])
        >>> temporal_gram(f, f, torch.tensor([2]), "none").tolist()
        [[[25.0, 8.0], [8.0, 4.0]]]
    """
    valid = lengths_to_mask(lens, left.shape[1])
    a = _scaled(left, normalize) * valid[..., None]
    b = _scaled(right, normalize) * valid[..., None]
    return a @ b.transpose(1, 2)


def _gram_mse(student: Tensor, teacher: Tensor, lens: Tensor) -> Tensor:
    """Mean squared difference over the valid (i, j) pairs of all items."""
    pairs = (lens.float() ** 2).sum().clamp(min=1.0)
    return ((student - teacher) ** 2).sum() / pairs


class LayerTgmLoss(nn.Module):
    """Layer-wise TGM loss: ``sum_l MSE(G_S^l, G_T^l)`` with ``G^l = F^l (F^l)^T``.

    Args:
        normalize: frame scaling before the product (module docstring).

    Example:
        >>> s, lens = [torch.randn(2, 6, 4)], torch.tensor([6, 4])
        >>> t = [torch.cat([s[0][..., [2, 0, 3, 1]], torch.zeros(2, 6, 3)], -1)]  # permuted, wider
        >>> LayerTgmLoss()(s, t, lens).abs().item() < 1e-6
        True
    """

    def __init__(self, normalize: Normalize = "frame") -> None:
        super().__init__()
        self.normalize = normalize

    def forward(self, student: Sequence[Tensor], teacher: Sequence[Tensor], lens: Tensor) -> Tensor:
        """Paired layers: ``student[k]`` (B, T, Ds) against ``teacher[k]`` (B, T, Dt) -> scalar."""
        total = lens.new_zeros((), dtype=torch.float32)
        for s, t in zip(student, teacher, strict=True):
            t = t.detach()
            total = total + _gram_mse(temporal_gram(s, s, lens, self.normalize),
                                      temporal_gram(t, t, lens, self.normalize), lens)
        return total


class IntraTgmLoss(nn.Module):
    """Intra-layer TGM loss: ``sum_l MSE(Ğ_S^l, Ğ_T^l)`` with ``Ğ^l = F^{l-1} (F^l)^T``.

    Args:
        normalize: frame scaling before the product (module docstring).

    Example:
        >>> s = [torch.randn(1, 5, 4), torch.randn(1, 5, 4)]
        >>> IntraTgmLoss()([(s[0], s[1])], [(s[0] * 3, s[1] * 3)], torch.tensor([5])).abs().item() < 1e-6
        True
    """

    def __init__(self, normalize: Normalize = "frame") -> None:
        super().__init__()
        self.normalize = normalize

    def forward(self, student: Sequence[tuple[Tensor, Tensor]], teacher: Sequence[tuple[Tensor, Tensor]],
                lens: Tensor) -> Tensor:
        """Paired ``(input, output)`` of a layer: student (B, T, Ds) each, teacher (B, T, Dt) -> scalar."""
        total = lens.new_zeros((), dtype=torch.float32)
        for (s_in, s_out), (t_in, t_out) in zip(student, teacher, strict=True):
            g_s = temporal_gram(s_in, s_out, lens, self.normalize)
            g_t = temporal_gram(t_in.detach(), t_out.detach(), lens, self.normalize)
            total = total + _gram_mse(g_s, g_t, lens)
        return total


class MaskedLayerMseLoss(nn.Module):
    """ARMHuBERT masking distillation for one layer: per-frame MSE (mean over channels) on the
    masked frames against the clean-input teacher ``target_clean`` plus on the unmasked frames
    against the masked-input teacher ``target_masked``; each summed over its frames and divided
    by the number of valid frames (the reference divides by B*T).

    Example:
        >>> h = torch.randn(1, 4, 3)
        >>> m = torch.tensor([[True, False, True, False]])
        >>> MaskedLayerMseLoss()(h, h, h + 1, m, torch.tensor([4])).item()  # unmasked half, error 1
        0.5
    """

    def forward(self, pred: Tensor, target_clean: Tensor, target_masked: Tensor, mask: Tensor, lens: Tensor) -> Tensor:
        """pred (B, T, D) projected student, targets (B, T, D) teacher, mask (B, T) bool -> scalar."""
        valid = lengths_to_mask(lens, pred.shape[1])
        err_clean = ((pred.float() - target_clean.detach()) ** 2).mean(-1)
        err_masked = ((pred.float() - target_masked.detach()) ** 2).mean(-1)
        per_frame = torch.where(mask, err_clean, err_masked) * valid
        return per_frame.sum() / valid.sum().clamp(min=1)
