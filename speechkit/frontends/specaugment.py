"""SpecAugment frequency and time masking (Park et al. 2019, https://arxiv.org/abs/1904.08779).

Applied to time-major features ``(B, T, F)`` in training mode only; without time warping.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from speechkit.frontends.spectral import full_lengths


def _random_masks(
    num_masks: int, max_width: int, lens: Tensor, size: int, generator: torch.Generator | None
) -> Tensor:
    """Union of ``num_masks`` random bands per item along an axis of length ``size``.

    Each band has a width drawn uniformly from ``{0, ..., min(max_width, len)}`` and lies
    inside ``[0, len)``, independently per item and per band.

    Args:
        num_masks: bands per item.
        max_width: largest band width.
        lens: (B,) int64 valid extent per item (<= size).
        size: axis length.
        generator: random source (None: torch's global one).

    Returns:
        (B, size) bool, True where masked.
    """
    batch = lens.shape[0]
    shape = (batch, num_masks)
    draw_w = torch.rand(shape, generator=generator, device=lens.device)
    draw_s = torch.rand(shape, generator=generator, device=lens.device)
    lens = lens[:, None].clamp(min=0)  # (B, 1)
    width = torch.minimum((draw_w * (max_width + 1)).long(), lens)  # (B, M)
    start = (draw_s * (lens - width + 1)).long()  # uniform in {0, ..., len - width}
    pos = torch.arange(size, device=lens.device)[None, None, :]  # (1, 1, size)
    inside = (pos >= start[..., None]) & (pos < (start + width)[..., None])  # (B, M, size)
    return inside.any(dim=1)


class SpecAugment(nn.Module):
    """Random frequency and time masks on ``(B, T, F)`` features; identity in eval mode.

    Args:
        num_freq_masks: frequency bands masked per item.
        freq_mask_width: largest band width in bins; each width is uniform in [0, width].
        num_time_masks: time bands masked per item, inside the item's valid frames only.
        time_mask_width: largest band width in frames (capped at the item's length).
        fill: value written into masked cells:

            * ``"mean"``: the item's mean over its valid frames and all bins (computed before
              masking). For log features that is an average level, the usual choice.
            * ``"zero"``: 0, as in the BC-ResNet code. Note that 0 is **not** silence in
              log-mel space: it is a mel energy of 1, an arbitrary level, while silence is
              ``log(1e-6)`` = -13.8 for :class:`LogMel` and -15.9 for :class:`Fbank`.
            * a float: that value.

    Masks are drawn independently per item. Frames beyond ``feat_lens`` are never changed.

    Example:
        >>> aug = SpecAugment().train()
        >>> out = aug(torch.randn(2, 50, 40), torch.tensor([50, 30]))
        >>> tuple(out.shape)
        (2, 50, 40)
    """

    def __init__(
        self,
        num_freq_masks: int = 2,
        freq_mask_width: int = 7,
        num_time_masks: int = 2,
        time_mask_width: int = 20,
        fill: str | float = "mean",
    ) -> None:
        super().__init__()
        if min(num_freq_masks, freq_mask_width, num_time_masks, time_mask_width) < 0:
            raise ValueError("SpecAugment mask counts and widths must be >= 0")
        if isinstance(fill, str) and fill not in ("mean", "zero"):
            raise ValueError(f'fill must be "mean", "zero" or a number, got {fill!r}')
        if not isinstance(fill, str):
            fill = float(fill)
        self.num_freq_masks = num_freq_masks
        self.freq_mask_width = freq_mask_width
        self.num_time_masks = num_time_masks
        self.time_mask_width = time_mask_width
        self.fill = fill

    def config(self) -> dict[str, Any]:
        """Constructor arguments (JSON-serialisable)."""
        return dict(
            num_freq_masks=self.num_freq_masks, freq_mask_width=self.freq_mask_width,
            num_time_masks=self.num_time_masks, time_mask_width=self.time_mask_width,
            fill=self.fill,
        )

    def forward(
        self,
        feats: Tensor,
        feat_lens: Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Mask random bands (training mode only).

        Args:
            feats: (B, T, F) features.
            feat_lens: (B,) int64 valid frames per item; None means all T.
            generator: random source for reproducible masks (None: torch's global RNG, so
                ``torch.manual_seed`` makes runs repeatable).

        Returns:
            (B, T, F) features, ``feats`` itself in eval mode.
        """
        if not self.training:
            return feats
        if feats.dim() != 3:
            raise ValueError(f"SpecAugment expects (batch, frames, bins), got {tuple(feats.shape)}")
        batch, num_frames, num_bins = feats.shape
        lens = full_lengths(feats, feat_lens).clamp(max=num_frames)
        freq = _random_masks(
            self.num_freq_masks, self.freq_mask_width,
            torch.full_like(lens, num_bins), num_bins, generator,
        )  # (B, F)
        time = _random_masks(
            self.num_time_masks, self.time_mask_width, lens, num_frames, generator
        )  # (B, T)
        valid = torch.arange(num_frames, device=feats.device)[None, :] < lens[:, None]  # (B, T)
        # Frequency masks span the valid frames only, so padding stays untouched.
        mask = (freq[:, None, :] & valid[:, :, None]) | time[:, :, None]  # (B, T, F)
        return torch.where(mask, self._fill_value(feats, valid), feats)

    def _fill_value(self, feats: Tensor, valid: Tensor) -> Tensor:
        """(B, 1, 1) value written into masked cells (see the class docstring)."""
        if self.fill == "mean":
            weights = valid[:, :, None].to(feats.dtype)  # (B, T, 1)
            count = (weights.sum(dim=(1, 2)) * feats.shape[2]).clamp(min=1)
            return ((feats * weights).sum(dim=(1, 2)) / count)[:, None, None]
        value = 0.0 if self.fill == "zero" else float(self.fill)
        return torch.full((feats.shape[0], 1, 1), value, dtype=feats.dtype, device=feats.device)
