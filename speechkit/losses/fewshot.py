"""Few-shot losses: the ProtoNet / D-ProtoNets episode loss.

``FewShotLoss(logits, batch)``: cross-entropy of the known queries over the episode's classes
(plus the dummy class when the head has one) and, with a dummy, ``lambda_U`` times the
cross-entropy of the unknown (open-set) queries towards the dummy class (D-ProtoNets, Kim et
al., Interspeech 2022). The AuxSL term ``lambda * CE(LibriWord)`` is added by the task, which
owns the auxiliary classifier (:class:`speechkit.tasks.fewshot.FewShotKwsTask`).

Shapes: M queries (known then unknown), N ways.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class FewShotLoss(nn.Module):
    """Episode loss, ``L = CE(known) + lambda_U * CE(unknown -> dummy)``.

    Args:
        lambda_u: weight of the unknown queries' loss (used only with a dummy class).

    Call:
        ``loss(logits, batch)`` with logits ``(M, N)`` (ProtoNet) or ``(M, N + 1)`` (dummy in
        the last column) and ``batch["query_targets"]`` ``(M,)`` int64: the episode class of
        each known query, ``N`` for each unknown one; ``batch["ways"]`` = N.
        Returns ``(loss, {"loss", "acc", "loss_known", "loss_unknown"})``; ``acc`` is the
        closed-set accuracy of the known queries over the N classes.

    Example:
        >>> loss_fn = FewShotLoss(lambda_u=0.5)
        >>> logits = torch.tensor([[5.0, 0.0, 0.0], [0.0, 5.0, 0.0], [0.0, 0.0, 5.0]])
        >>> loss, stats = loss_fn(logits, {"query_targets": torch.tensor([0, 1, 2]), "ways": 2})
        >>> round(stats["acc"].item(), 2), loss.item() < 0.05
        (1.0, True)
    """

    def __init__(self, lambda_u: float = 1.0) -> None:
        super().__init__()
        self.lambda_u = float(lambda_u)

    def forward(self, logits: Tensor, batch: dict) -> tuple[Tensor, dict[str, Tensor]]:
        ways = int(batch["ways"])
        targets = batch["query_targets"]
        known = targets < ways
        loss_known = nn.functional.cross_entropy(logits[known], targets[known])
        acc = (logits[known, :ways].argmax(dim=1) == targets[known]).float().mean()
        loss_unknown = torch.zeros((), device=logits.device)
        if logits.shape[1] > ways and (~known).any():
            loss_unknown = nn.functional.cross_entropy(logits[~known], targets[~known])
        loss = loss_known + self.lambda_u * loss_unknown
        return loss, {"loss": loss.detach(), "acc": acc, "loss_known": loss_known.detach(),
                      "loss_unknown": loss_unknown.detach()}
