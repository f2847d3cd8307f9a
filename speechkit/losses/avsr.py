"""AVSR training objective: CTC + temporal-dynamics BCE losses + the V2A refinement loss.

L = ctc_weight * L_CTC + order_weight * L_order + direction_weight * L_direction
    + speed_weight * L_speed + ref_weight * L_ref            (methods.md section 6.4)

The paper's weights are 0.1 (order), 0.05 (direction), 0.05 (speed) and 0.1 (ref); its ASR loss
is label-smoothed cross-entropy of a seq2seq decoder, here CTC (:class:`speechkit.losses.ctc.CTCLoss`).

* Each temporal loss is binary cross-entropy with logits, **summed over the samples of an
  utterance** (time positions, both the positive and the negative copy) and averaged over the
  utterances and the two copies (divided by 2 B), as in the paper's code.
* L_ref = sum over frames of (1/D) ||V2A(noisy audio, video)_t - Frontend(clean audio)_t||^2,
  summed per utterance and averaged over the batch (the paper sums over the batch too; averaging
  matches :class:`CTCLoss`, which sums per utterance and averages over the batch).

``loss(outputs, batch) -> (loss, stats)`` with ``outputs`` from :class:`speechkit.models.avsr.AvsrModel`
(``log_probs``, ``log_prob_lens``, and where present ``dynamics`` and ``v2a``/``clean``).

Example:
    >>> import torch
    >>> loss_fn = AvsrLoss()
    >>> outputs = {"log_probs": torch.full((1, 2, 2), 0.5).log(), "log_prob_lens": torch.tensor([2]),
    ...            "dynamics": {"direction": (torch.zeros(2), torch.tensor([1.0, 0.0]))}}
    >>> batch = {"tokens": torch.tensor([[1]]), "token_lens": torch.tensor([1])}
    >>> loss, stats = loss_fn(outputs, batch)
    >>> round(stats["direction"].item(), 4), round(loss.item(), 4)  # 2 log 2 / 2; 0.2877 + 0.05 * 0.6931
    (0.6931, 0.3223)
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from speechkit.losses.ctc import CTCLoss


class AvsrLoss(nn.Module):
    """Weighted sum of CTC, the three temporal-dynamics BCE losses and L_ref (module docstring)."""

    def __init__(self, ctc_weight: float = 1.0, order_weight: float = 0.1, direction_weight: float = 0.05,
                 speed_weight: float = 0.05, ref_weight: float = 0.1) -> None:
        super().__init__()
        self.ctc = CTCLoss()
        self.weights = {"ctc": ctc_weight, "order": order_weight, "direction": direction_weight,
                        "speed": speed_weight, "ref": ref_weight}

    def forward(self, outputs: dict, batch: dict) -> tuple[Tensor, dict[str, Tensor]]:
        ctc, ctc_stats = self.ctc(outputs, batch)
        batch_size = outputs["log_probs"].shape[0]
        total = self.weights["ctc"] * ctc
        stats = {"ctc": ctc.detach(), "loss_per_token": ctc_stats.get("loss_per_token", ctc.detach())}
        for name, (logits, labels) in (outputs.get("dynamics") or {}).items():
            if self.weights.get(name, 0.0) == 0.0 or logits.numel() == 0:
                continue
            bce = nn.functional.binary_cross_entropy_with_logits(logits.float(), labels.float(), reduction="sum")
            loss = bce / (2 * batch_size)
            total = total + self.weights[name] * loss
            stats[name] = loss.detach()
            stats[f"{name}_acc"] = ((logits.detach() > 0).float() == labels).float().mean()
        if outputs.get("v2a") is not None and outputs.get("clean") is not None and self.weights["ref"] > 0:
            ref = ref_loss(outputs["v2a"], outputs["clean"], outputs["log_prob_lens"])
            total = total + self.weights["ref"] * ref
            stats["ref"] = ref.detach()
        stats["loss"] = total.detach()
        return total, stats


def ref_loss(prediction: Tensor, target: Tensor, lens: Tensor) -> Tensor:
    """(B, T, D) V2A output vs (B, T, D) clean front-end features: per-frame squared error / D,
    summed over valid frames, averaged over the batch. The target carries no gradient."""
    err = (prediction.float() - target.detach().float()).square().mean(-1)
    valid = torch.arange(err.shape[1], device=err.device)[None, :] < lens[:, None]
    return (err * valid).sum() / max(prediction.shape[0], 1)
