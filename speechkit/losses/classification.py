"""Classification objectives (kept apart from the networks, docs/ARCHITECTURE.md contract 3)."""

from __future__ import annotations

from torch import Tensor, nn


class CrossEntropyLoss(nn.Module):
    """Softmax cross-entropy with optional label smoothing.

    ``loss(logits, batch) -> (loss, stats)`` where ``logits`` is (B, C) and ``batch["labels"]``
    is int64 (B,). ``stats`` holds the detached loss.

    Args:
        label_smoothing: mass moved uniformly to all classes (0 = plain CE, as BC-ResNet).

    Example:
        >>> import torch
        >>> loss_fn = CrossEntropyLoss(label_smoothing=0.1)
        >>> loss, stats = loss_fn(torch.zeros(2, 3), {"labels": torch.tensor([0, 2])})
        >>> round(loss.item(), 4)
        1.0986
    """

    def __init__(self, label_smoothing: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        self.label_smoothing = label_smoothing

    def forward(self, logits: Tensor, batch: dict) -> tuple[Tensor, dict[str, Tensor]]:
        loss = nn.functional.cross_entropy(
            logits, batch["labels"], label_smoothing=self.label_smoothing
        )
        return loss, {"loss": loss.detach()}
