"""CTC output layer: encoder frames to log-probabilities over the units (blank = id 0)."""

from __future__ import annotations

from torch import Tensor, nn


class CTCHead(nn.Module):
    """Dropout, a linear layer to the vocabulary, and log-softmax.

    Args:
        input_dim: encoder width D.
        vocab_size: V units including the blank (``Tokenizer.vocab_size``).
        dropout: dropout on the encoder output in training.

    Example:
        >>> import torch
        >>> head = CTCHead(144, 500)
        >>> tuple(head(torch.randn(2, 10, 144)).shape)
        (2, 10, 500)
    """

    def __init__(self, input_dim: int, vocab_size: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.vocab_size = vocab_size
        self.dropout = nn.Dropout(dropout)
        self.proj = nn.Linear(input_dim, vocab_size)

    def forward(self, enc_out: Tensor) -> Tensor:
        """(B, T', D) -> (B, T', V) float32 log-probabilities (float32 also under autocast)."""
        return nn.functional.log_softmax(self.proj(self.dropout(enc_out)).float(), dim=-1)
