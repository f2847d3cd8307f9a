"""Convolutional subsampling x4: feature frames (10 ms) to encoder frames (40 ms).

Two 3x3 convolutions with stride 2 and no padding over (time, frequency), as WeNet's
``Conv2dSubsampling4`` and the Conformer paper. No padding keeps it exactly local: an output
frame depends on 7 input frames and nothing else, which is what makes a padded batch equal its
items and a chunk computed alone equal the same chunk inside the whole utterance.

Length arithmetic (T input frames, T' output frames)::

    after conv 1:  T1 = floor((T - 3) / 2) + 1 = floor((T - 1) / 2)
    after conv 2:  T' = floor((T1 - 1) / 2)    = floor((floor((T - 1) / 2) - 1) / 2)
                      = floor((T - 3) / 4)  for T >= 3, and 0 below 7 frames

Output frame j reads input frames ``4j ... 4j + 6``. So ``C`` output frames need
``(C - 1) * 4 + 7`` input frames (:func:`input_frames`), and consecutive chunks of ``C`` output
frames start ``4 * C`` input frames apart: they overlap by 3 frames.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

# The frame constants live in one place, shared with the torch-free runtime's chunk schedule:
# SUBSAMPLING (encoder frame = 4 feature frames; re-exported for the encoder), RECEPTIVE_FIELD
# (7 input frames per output frame).
from speechkit.runtime.chunking import RECEPTIVE_FIELD, chunk_input_frames
from speechkit.runtime.chunking import SUBSAMPLING as SUBSAMPLING


def output_lengths(feat_lens: Tensor) -> Tensor:
    """Output frames for ``feat_lens`` input frames: ``floor((floor((T - 1) / 2) - 1) / 2)``, >= 0.

    Args:
        feat_lens: int64 (B,) input frame counts.

    Returns:
        int64 (B,) output frame counts.
    """
    return torch.clamp(((feat_lens - 1) // 2 - 1) // 2, min=0)


def input_frames(num_output_frames: int) -> int:
    """Input frames that produce exactly ``num_output_frames``: ``(C - 1) * 4 + 7``."""
    return chunk_input_frames(num_output_frames)


class Conv2dSubsampling4(nn.Module):
    """Conv2d subsampling by 4 in time, then a linear projection to the model width.

    Args:
        input_dim: feature bins F (80 for the Kaldi fbank).
        channels: convolution channels. Smaller than ``output_dim`` in the small presets: the
            second convolution costs ``9 * channels^2 * F/4`` per output frame, which at
            ``channels = output_dim`` would exceed the rest of a small encoder.
        output_dim: model width D.

    Example:
        >>> sub = Conv2dSubsampling4(80, 32, 144)
        >>> x, lens = sub(torch.randn(2, 100, 80), torch.tensor([100, 50]))
        >>> tuple(x.shape), lens.tolist()
        ((2, 24, 144), [24, 11])
    """

    def __init__(self, input_dim: int, channels: int, output_dim: int) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(1, channels, kernel_size=3, stride=2),
            nn.ReLU(),
            nn.Conv2d(channels, channels, kernel_size=3, stride=2),
            nn.ReLU(),
        )
        freq_out = ((input_dim - 1) // 2 - 1) // 2
        self.out = nn.Linear(channels * freq_out, output_dim)

    def forward(self, feats: Tensor, feat_lens: Tensor) -> tuple[Tensor, Tensor]:
        """Subsample.

        Args:
            feats: (B, T, F) features; frames past ``feat_lens`` are padding.
            feat_lens: int64 (B,) valid frames.

        Returns:
            ``(x, x_lens)``: (B, T', D) and int64 (B,), with ``T' = output_lengths(T)``
            (at least 1 frame: inputs shorter than 7 frames are zero-padded; their length is 0).
        """
        if feats.shape[1] < RECEPTIVE_FIELD:
            feats = nn.functional.pad(feats, (0, 0, 0, RECEPTIVE_FIELD - feats.shape[1]))
        x = self.conv(feats.unsqueeze(1))  # (B, C, T', F')
        b, c, t, f = x.shape
        x = self.out(x.transpose(1, 2).reshape(b, t, c * f))
        return x, output_lengths(feat_lens)
