"""Distillation losses from a full-context teacher encoder to a streaming student (issue 13).

Shim et al., Interspeech 2023, arXiv 2308.16415 ("Knowledge Distillation from Non-streaming to
Streaming ASR Encoder using Auxiliary Non-streaming Layer"); the loss forms follow the public
reimplementation summarised in docs/methods (methods.md section 4.4), not paper-verified code.

Shape legend: B batch, T encoder frames, D width, H heads, Dh head width, V units.

Every loss here is a per-layer term ``loss(student_side, teacher_side, lens) -> scalar``; the
distillation task (:class:`speechkit.tasks.asr_kd.AsrKdTask`) sums them with the recipe's
weights: ``L = L_CTC + sum_l (a L_feat + b L_attn + c L_APC)`` (+ ``w L_token`` for token KD).
Teacher tensors are always detached here, so no gradient ever reaches the teacher. Frames past
``lens`` are padding and never counted. Each loss is 0 for identical inputs and positive otherwise.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

#: -log sigmoid(1): the cosine term's value at cos = 1, subtracted so identical features give 0.
_LOG_SIGMOID_ONE = -math.log(1.0 / (1.0 + math.exp(-1.0)))


def lengths_to_mask(lens: Tensor, max_len: int) -> Tensor:
    """(B, T) bool, True at the first ``lens[b]`` frames (losses may not import models)."""
    return torch.arange(max_len, device=lens.device)[None, :] < lens[:, None]


def _masked_mean(values: Tensor, mask: Tensor) -> Tensor:
    """Mean of (B, T) ``values`` over the True entries of the (B, T) ``mask`` (0 if none)."""
    mask = mask.to(values.dtype)
    return (values * mask).sum() / mask.sum().clamp(min=1.0)


class FeatureLoss(nn.Module):
    """DistilHuBERT-style feature loss: ``(1/D) |h_t - z_t|_1 - log sigmoid(cos(h_t, z_t))``.

    Averaged over valid frames (the reference sums over t; the mean keeps the weight independent
    of utterance length), and shifted by ``log sigmoid(1)`` so identical features give exactly 0
    (the shift is a constant: gradients are the reference's).

    Example:
        >>> h = torch.randn(2, 5, 8)
        >>> loss = FeatureLoss()
        >>> loss(h, h, torch.tensor([5, 3])).abs().item() < 1e-6, loss(h + 1, h, torch.tensor([5, 3])).item() > 0
        (True, True)
    """

    def forward(self, pred: Tensor, target: Tensor, lens: Tensor) -> Tensor:
        """pred (B, T, D) student side, target (B, T, D) teacher (detached), int64 (B,) -> scalar."""
        target = target.detach()
        pred = pred.float()
        l1 = (pred - target).abs().mean(dim=-1)
        cos = nn.functional.cosine_similarity(pred, target, dim=-1, eps=1e-6)
        per_frame = l1 - nn.functional.logsigmoid(cos) - _LOG_SIGMOID_ONE
        return _masked_mean(per_frame, lengths_to_mask(lens, pred.shape[1]))


class AttentionRelationLoss(nn.Module):
    """MiniLM-v2 self-attention relation loss: KL(R_teacher || R_student) for Q-Q, K-K and V-V.

    For each relation head a, ``R_{a,t} = softmax_k(x_{a,t} . x_{a,k} / sqrt(d))`` over the valid
    frames k. Q (and K, V) of all heads are concatenated and re-split into ``num_relation_heads``
    heads (MiniLM-v2), so teacher and student may have different widths and head counts.
    Averaged over valid query frames and relation heads, summed over Q, K, V.

    Args:
        num_relation_heads: relation heads (must divide both widths).

    Example:
        >>> q = torch.randn(1, 2, 6, 4)
        >>> loss = AttentionRelationLoss(2)
        >>> loss((q, q, q), (q, q, q), torch.tensor([6])).abs().item() < 1e-6
        True
    """

    def __init__(self, num_relation_heads: int = 4) -> None:
        super().__init__()
        self.num_relation_heads = num_relation_heads

    def _log_relations(self, x: Tensor, key_valid: Tensor) -> Tensor:
        """(B, H, T, Dh) -> (B, A, T, T) log-relations over valid keys."""
        b, h, t, dh = x.shape
        a = self.num_relation_heads
        x = x.float().transpose(1, 2).reshape(b, t, a, h * dh // a).transpose(1, 2)
        scores = x @ x.transpose(-1, -2) / math.sqrt(x.shape[-1])
        scores = scores.masked_fill(~key_valid[:, None, None, :], float("-inf"))
        return torch.log_softmax(scores, dim=-1)

    def forward(self, student_qkv, teacher_qkv, lens: Tensor) -> Tensor:
        """``(q, k, v)`` triples, each (B, H, T, Dh) (H, Dh may differ between the two) -> scalar."""
        valid = lengths_to_mask(lens, student_qkv[0].shape[2])
        total = student_qkv[0].new_zeros((), dtype=torch.float32)
        for s, t in zip(student_qkv, teacher_qkv):
            log_r_s = self._log_relations(s, valid)
            log_r_t = self._log_relations(t.detach(), valid)
            # KL(t || s) per query row; padded keys have p_t = 0 and contribute 0.
            kl = (log_r_t.exp() * (log_r_t - log_r_s)).masked_fill(~valid[:, None, None, :], 0.0).sum(-1)
            total = total + _masked_mean(kl.mean(dim=1), valid)
        return total


class ApcLoss(nn.Module):
    """Autoregressive-predictive-coding KD: ``r_t`` predicts the teacher's frame ``h_{t+N}``.

    The feature loss (:class:`FeatureLoss`) between ``r_t`` and ``h_{t+N}`` over the frames
    ``t < len - N`` of each utterance; the teacher is detached (it is the target only).

    Args:
        shift: N, frames ahead (encoder frames of 40 ms).

    Example:
        >>> h = torch.randn(1, 6, 4)
        >>> r = torch.cat([h[:, 2:], torch.zeros(1, 2, 4)], dim=1)  # r_t = h_{t+2}; the last 2 unused
        >>> ApcLoss(shift=2)(r, h, torch.tensor([6])).abs().item() < 1e-6
        True
    """

    def __init__(self, shift: int = 2) -> None:
        super().__init__()
        if shift < 1:
            raise ValueError(f"APC shift must be >= 1 frame, got {shift}")
        self.shift = shift
        self.feature_loss = FeatureLoss()

    def forward(self, pred: Tensor, target: Tensor, lens: Tensor) -> Tensor:
        """pred (B, T, D) = r, target (B, T, D) = teacher h, int64 (B,) -> scalar."""
        n = self.shift
        if pred.shape[1] <= n:
            return pred.sum() * 0.0
        return self.feature_loss(pred[:, :-n], target[:, n:], (lens - n).clamp(min=0))


class TokenKdLoss(nn.Module):
    """Token-probability KD (the baseline the paper beats): KL(p_teacher || p_student) per frame
    over CTC posteriors, averaged over valid frames.

    Args:
        temperature: softens both distributions (1: the posteriors as they are).

    Example:
        >>> lp = torch.randn(2, 4, 5).log_softmax(-1)
        >>> TokenKdLoss()(lp, lp, torch.tensor([4, 2])).abs().item() < 1e-6
        True
    """

    def __init__(self, temperature: float = 1.0) -> None:
        super().__init__()
        self.temperature = temperature

    def forward(self, student_log_probs: Tensor, teacher_log_probs: Tensor, lens: Tensor) -> Tensor:
        """(B, T, V) log-probabilities of each, int64 (B,) -> scalar."""
        tau = self.temperature
        log_s = torch.log_softmax(student_log_probs.float() / tau, dim=-1)
        log_t = torch.log_softmax(teacher_log_probs.detach().float() / tau, dim=-1)
        kl = (log_t.exp() * (log_t - log_s)).sum(dim=-1)
        return _masked_mean(kl, lengths_to_mask(lens, kl.shape[1])) * tau * tau
