"""Span masking of HuBERT pre-training and masking distillation (fairseq ``compute_mask_indices``).

Each utterance of T valid frames gets ``prob * T / length`` spans (randomly rounded, at least
one when ``prob > 0``) of ``length`` frames, starts drawn uniformly, spans free to overlap.
HuBERT's ``mask_prob=0.8, mask_length=10`` makes 8 % of the frames span starts (the paper's
p = 0.08, L = 10), which masks about half of the frames.

Example:
    >>> mask = span_mask(torch.tensor([50, 20]), 50, prob=0.8, length=10, generator=torch.Generator().manual_seed(0))
    >>> tuple(mask.shape), bool(mask[1, 20:].any())
    ((2, 50), False)
"""

from __future__ import annotations

import torch
from torch import Tensor


def span_mask(lens: Tensor, max_len: int, prob: float, length: int, generator: torch.Generator | None = None) -> Tensor:
    """(B, T) bool mask of spans inside each item's valid frames.

    Args:
        lens: (B,) int64 valid frames.
        max_len: T.
        prob: fairseq ``mask_prob``: ``prob * T / length`` spans per item (fraction of frames
            covered before overlaps).
        length: span length in frames (``mask_length``; shortened for utterances shorter than it).
        generator: random source (CPU).
    """
    mask = torch.zeros(len(lens), max_len, dtype=torch.bool)
    for b, n in enumerate(lens.tolist()):
        if n <= 0 or prob <= 0:
            continue
        span = min(length, n)
        num = max(1, int(prob * n / span + torch.rand((), generator=generator).item()))
        starts = torch.randint(0, n - span + 1, (num,), generator=generator)
        for s in starts.tolist():
            mask[b, s : s + span] = True
    return mask.to(lens.device)
