"""A small trainable classifier over frozen speech embeddings (:class:`speechkit.frontends.SpeechEmbedding`).

In the spirit of openWakeWord's own heads (dense layers + LayerNorm + ReLU over the 96-d
``speech_embedding`` frames), but independent of the clip length: a per-frame dense layer, a few
1-D convolutions over time (each ``hidden`` wide, kernel 3, residual), then max- and mean-pooling
over time and a linear classifier. Shapes: B batch, T' embedding frames (one per 80 ms), D input
dimension (96), H hidden width, C classes.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from speechkit.errors import SpeechkitError


class _ConvBlock(nn.Module):
    """Residual ``x + ReLU(LayerNorm(Conv1d(x)))`` over time; (B, T', H) -> (B, T', H)."""

    def __init__(self, hidden: int, kernel_size: int, dropout: float) -> None:
        super().__init__()
        self.conv = nn.Conv1d(hidden, hidden, kernel_size, padding=kernel_size // 2)
        self.norm = nn.LayerNorm(hidden)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        y = self.conv(x.transpose(1, 2)).transpose(1, 2)
        return x + self.drop(torch.relu(self.norm(y)))


class EmbeddingHead(nn.Module):
    """Dense + temporal convolutions + max/mean pooling over speech-embedding frames -> logits.

    Args:
        num_classes: C.
        in_dim: D, the embedding size (96 for ``speech_embedding``).
        hidden: H, the width of every layer.
        num_blocks: residual temporal convolution blocks after the input layer (0: none).
        kernel_size: their kernel, in embedding frames (odd; 3 frames = 160 ms of extra context).
        dropout: dropout after each layer in training.

    Example:
        >>> head = EmbeddingHead(num_classes=12, hidden=64).eval()
        >>> head(torch.randn(2, 3, 96)).shape
        torch.Size([2, 12])
        >>> head(torch.randn(1, 16, 96)).shape  # any number of frames >= 1
        torch.Size([1, 12])
        >>> head.config()["hidden"], sum(p.numel() for p in head.parameters())
        (64, 32844)
    """

    def __init__(
        self,
        num_classes: int,
        in_dim: int = 96,
        hidden: int = 64,
        num_blocks: int = 2,
        kernel_size: int = 3,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        if num_classes < 1 or in_dim < 1 or hidden < 1 or num_blocks < 0:
            raise SpeechkitError(
                f"EmbeddingHead needs num_classes, in_dim, hidden >= 1 and num_blocks >= 0, got "
                f"{num_classes}, {in_dim}, {hidden}, {num_blocks}"
            )
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise SpeechkitError(f"EmbeddingHead needs an odd kernel_size >= 1, got {kernel_size}")
        if not 0.0 <= dropout < 1.0:
            raise SpeechkitError(f"EmbeddingHead needs 0 <= dropout < 1, got {dropout}")
        self._config = dict(num_classes=int(num_classes), in_dim=int(in_dim), hidden=int(hidden),
                            num_blocks=int(num_blocks), kernel_size=int(kernel_size), dropout=float(dropout))
        self.num_classes = int(num_classes)
        self.in_dim = int(in_dim)
        self.input = nn.Sequential(nn.Linear(in_dim, hidden), nn.LayerNorm(hidden), nn.ReLU(), nn.Dropout(dropout))
        self.blocks = nn.Sequential(*[_ConvBlock(hidden, kernel_size, dropout) for _ in range(num_blocks)])
        self.classifier = nn.Linear(2 * hidden, num_classes)

    def config(self) -> dict[str, Any]:
        """Constructor arguments: ``EmbeddingHead(**head.config())`` rebuilds it."""
        return dict(self._config)

    def forward(self, feats: Tensor) -> Tensor:
        """Classify.

        Args:
            feats: (B, T', D) embedding frames, T' >= 1.

        Returns:
            (B, C) logits.
        """
        if feats.dim() != 3 or feats.shape[-1] != self.in_dim:
            raise SpeechkitError(f"EmbeddingHead expects feats (batch, frames, {self.in_dim}), got {tuple(feats.shape)}")
        x = self.blocks(self.input(feats))  # (B, T', H)
        pooled = torch.cat([x.amax(dim=1), x.mean(dim=1)], dim=-1)  # (B, 2H)
        return self.classifier(pooled)
