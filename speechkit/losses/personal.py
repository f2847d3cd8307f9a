"""Objectives of personalized KWS (PK-MTL, Yang et al., Interspeech 2022).

* :class:`MultiTaskLoss`: ``L = L^k + lambda * L^s``, cross-entropies of the keyword and speaker
  cosine classifiers (lambda = 0.1 in the paper); items without a training speaker (silence
  clips, held-out speakers) have speaker index -1 and only count in ``L^k``.
* :func:`angular_prototypical_loss`: ``-1/N sum_i log softmax_j(w cos_ij + b)[i]`` over the rows of
  a (prototype x query) cosine matrix whose diagonal holds the positives; pairs can be masked
  out (the TB task's neutral non-target-speaker / target-keyword pairs).
* :func:`trm_pair_mask`: which (prototype, query) pairs take part, per task.

Shapes: B batch, C keyword classes, S training speakers, P prototypes (rows), Q queries.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class MultiTaskLoss(nn.Module):
    """``L^k + speaker_weight * L^s`` on :class:`~speechkit.models.personal.PersonalOutputs`.

    ``loss(outputs, batch) -> (loss, stats)``; ``batch["labels"]`` (B,) keyword classes and
    ``batch["speakers"]`` (B,) training-speaker indices (-1: none). A system without a head
    skips its term (``vanilla``: keyword only; ``speaker``: speaker only, weight 1).

    Args:
        speaker_weight: lambda (0.1 in the paper).

    Example:
        >>> import torch
        >>> from speechkit.models.personal import PersonalOutputs
        >>> out = PersonalOutputs(torch.zeros(2, 3), torch.zeros(2, 4), None, None)
        >>> loss, stats = MultiTaskLoss(0.1)(out, {"labels": torch.tensor([0, 1]), "speakers": torch.tensor([2, -1])})
        >>> round(loss.item(), 3), round(stats["loss_kw"].item(), 3), round(stats["loss_spk"].item(), 3)
        (1.237, 1.099, 1.386)
    """

    def __init__(self, speaker_weight: float = 0.1) -> None:
        super().__init__()
        self.speaker_weight = float(speaker_weight)

    def forward(self, outputs, batch: dict) -> tuple[Tensor, dict[str, Tensor]]:
        stats: dict[str, Tensor] = {}
        total = None
        if outputs.keyword_logits is not None:
            loss_kw = nn.functional.cross_entropy(outputs.keyword_logits, batch["labels"])
            stats["loss_kw"] = loss_kw.detach()
            total = loss_kw
        if outputs.speaker_logits is not None and "speakers" in batch:
            speakers = batch["speakers"]
            known = speakers >= 0
            if bool(known.any()):
                loss_spk = nn.functional.cross_entropy(outputs.speaker_logits[known], speakers[known])
            else:  # keep the graph connected (DDP) with a zero that has a gradient
                loss_spk = outputs.speaker_logits.sum() * 0.0
            stats["loss_spk"] = loss_spk.detach()
            weight = self.speaker_weight if total is not None else 1.0
            total = weight * loss_spk if total is None else total + weight * loss_spk
        if total is None:
            raise ValueError("MultiTaskLoss: the outputs hold neither keyword nor speaker logits")
        stats["loss"] = total.detach()
        return total, stats


def angular_prototypical_loss(cosine: Tensor, scale: Tensor, bias: Tensor, mask: Tensor | None = None) -> Tensor:
    """Angular prototypical loss (Chung et al. 2020) with the positive of row ``i`` at column ``i``.

    Args:
        cosine: ``(P, Q)`` cosines, ``Q >= P``; row i's positive is column i.
        scale, bias: learnable scalars ``w`` (kept positive by the caller) and ``b``.
        mask: ``(P, Q)`` bool, False for pairs that do not take part; the diagonal must be True.

    Returns:
        Scalar mean over rows of ``-log softmax(w * cos + b)[i, i]``.

    Example:
        >>> import torch
        >>> cos = torch.tensor([[0.9, 0.1], [0.2, 0.8]])
        >>> round(angular_prototypical_loss(cos, torch.tensor(10.0), torch.tensor(0.0)).item(), 4)
        0.0014
        >>> mask = torch.tensor([[True, False], [True, True]])
        >>> round(angular_prototypical_loss(cos, torch.tensor(10.0), torch.tensor(0.0), mask).item(), 4)
        0.0012
    """
    logits = scale * cosine + bias
    if mask is not None:
        logits = logits.masked_fill(~mask, float("-inf"))
    targets = torch.arange(cosine.shape[0], device=cosine.device)
    return nn.functional.cross_entropy(logits, targets)


def trm_pair_mask(keywords: Tensor, speakers: Tensor, task: str) -> Tensor:
    """``(B, B)`` bool: which (prototype i, query j) pairs a TRM batch uses.

    Row i is the prototype of item i's (keyword, speaker); column j is item j's query. Always
    out: j != i with the same keyword and speaker (a second positive). TB-KWS also drops the
    neutral pairs (same keyword, other speaker); TO-KWS keeps them as negatives.

    Args:
        keywords, speakers: ``(B,)`` int64 class and speaker indices.
        task: ``"tb"`` or ``"to"``.

    Example:
        >>> import torch
        >>> trm_pair_mask(torch.tensor([0, 0, 1]), torch.tensor([5, 6, 5]), "tb").int().tolist()
        [[1, 0, 1], [0, 1, 1], [1, 1, 1]]
        >>> trm_pair_mask(torch.tensor([0, 0, 1]), torch.tensor([5, 6, 5]), "to").int().tolist()
        [[1, 1, 1], [1, 1, 1], [1, 1, 1]]
    """
    if task not in ("tb", "to"):
        raise ValueError(f"task must be 'tb' or 'to', got {task!r}")
    same_kw = keywords[:, None] == keywords[None, :]
    same_spk = speakers[:, None] == speakers[None, :]
    eye = torch.eye(len(keywords), dtype=torch.bool, device=keywords.device)
    keep = ~(same_kw & same_spk) | eye
    if task == "tb":
        keep &= ~(same_kw & ~same_spk)
    return keep
