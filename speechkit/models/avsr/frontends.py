"""Audio and visual front-ends of the AVSR model, both giving (B, T, D) at the video rate (25 Hz).

Shape legend: B batch, T video frames (40 ms), Ta = 4 T filter-bank frames (10 ms), F bins,
H x W mouth-ROI pixels (88 x 88), D model width.

* :class:`AudioFrontend`: global CMVN of log filter-banks, 4 consecutive frames stacked into one
  25 Hz frame (AV-HuBERT's audio front-end), a linear layer to D.
* :class:`VisualFrontend`: the lip-reading front-end of Stafylakis & Tzimiropoulos (2017) used by
  AV-HuBERT: a 3D convolution (5 x 7 x 7, stride 1 x 2 x 2) with max-pooling over the gray ROI
  sequence, then a 2D ResNet trunk applied to every frame (ResNet-18: ``blocks=(2, 2, 2, 2)``,
  ``channels=64``; smaller with fewer channels/blocks), global average pooling, a linear layer to D.
  Only the 3D convolution mixes frames, and padded frames are zeroed before it, so a padded batch
  equals its items (in eval mode; BatchNorm uses batch statistics in training).

Example:
    >>> import torch
    >>> afe, vfe = AudioFrontend(80, 64), VisualFrontend(64, channels=8, blocks=(1, 1, 1, 1))
    >>> a, a_lens = afe(torch.randn(2, 40, 80), torch.tensor([40, 20]), num_frames=10)
    >>> v = vfe(torch.randint(0, 255, (2, 10, 88, 88), dtype=torch.uint8), torch.tensor([10, 5]))
    >>> tuple(a.shape), a_lens.tolist(), tuple(v.shape)
    ((2, 10, 64), [10, 5], (2, 10, 64))
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from speechkit.models.asr.masks import lengths_to_mask

STACK = 4  # filter-bank frames (10 ms) per video frame (40 ms)
#: Gray-level mean and std of mouth ROIs (AV-HuBERT's image normalisation, pixels / 255).
VIDEO_MEAN, VIDEO_STD = 0.421, 0.165


class AudioFrontend(nn.Module):
    """CMVN, stack ``STACK`` frames, Linear(STACK * F -> D).

    Args:
        input_dim: filter-bank bins F.
        dim: output width D.
    """

    def __init__(self, input_dim: int = 80, dim: int = 256) -> None:
        super().__init__()
        self.input_dim = input_dim
        self.register_buffer("feat_mean", torch.zeros(input_dim))
        self.register_buffer("feat_inv_std", torch.ones(input_dim))
        self.proj = nn.Linear(STACK * input_dim, dim)

    @torch.no_grad()
    def set_feature_stats(self, mean: Tensor, std: Tensor) -> None:
        """Global mean/std (F,) of the training filter-banks (std floored at 1e-5)."""
        self.feat_mean.copy_(mean)
        self.feat_inv_std.copy_(1.0 / std.clamp(min=1e-5))

    def forward(self, feats: Tensor, feat_lens: Tensor, num_frames: int | None = None) -> tuple[Tensor, Tensor]:
        """(B, Ta, F), int64 (B,) -> (B, T, D), int64 (B,) with ``T = num_frames`` (the video's
        length; the stacked audio is cut or zero-padded to it) or ``ceil(Ta / 4)``."""
        x = (feats - self.feat_mean) * self.feat_inv_std
        x = x * lengths_to_mask(feat_lens, x.shape[1])[..., None]
        frames = -(-x.shape[1] // STACK) if num_frames is None else num_frames
        pad = frames * STACK - x.shape[1]
        x = nn.functional.pad(x, (0, 0, 0, pad)) if pad > 0 else x[:, : frames * STACK]
        x = x.reshape(x.shape[0], frames, STACK * self.input_dim)
        lens = torch.clamp(torch.div(feat_lens + STACK - 1, STACK, rounding_mode="floor"), max=frames)
        return self.proj(x), lens


class BasicBlock(nn.Module):
    """ResNet basic block: two 3x3 convolutions with BatchNorm, ReLU, and a (projected) shortcut."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: Tensor) -> Tensor:
        y = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(y)) + self.shortcut(x))


class VisualFrontend(nn.Module):
    """3D convolution + 2D ResNet trunk over gray mouth ROIs.

    Args:
        dim: output width D.
        channels: width of the first stage (64 in ResNet-18); stages have 1, 2, 4, 8 times it.
        blocks: basic blocks per stage ((2, 2, 2, 2) is ResNet-18).
    """

    def __init__(self, dim: int = 256, channels: int = 64, blocks: tuple[int, ...] = (2, 2, 2, 2)) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv3d(1, channels, (5, 7, 7), (1, 2, 2), (2, 3, 3), bias=False), nn.BatchNorm3d(channels),
            nn.ReLU(), nn.MaxPool3d((1, 3, 3), (1, 2, 2), (0, 1, 1)),
        )
        layers, cin = [], channels
        for stage, count in enumerate(blocks):
            cout = channels * 2**stage
            for b in range(count):
                layers.append(BasicBlock(cin, cout, 2 if (b == 0 and stage > 0) else 1))
                cin = cout
        self.trunk = nn.Sequential(*layers)
        self.proj = nn.Linear(cin, dim)

    def forward(self, video: Tensor, video_lens: Tensor) -> Tensor:
        """uint8 or float pixels (B, T, H, W) in 0..255, int64 (B,) -> (B, T, D)."""
        b, t = video.shape[:2]
        x = (video.float() / 255.0 - VIDEO_MEAN) / VIDEO_STD
        x = x * lengths_to_mask(video_lens, t)[:, :, None, None]
        x = self.stem(x.unsqueeze(1))  # (B, C, T, H', W')
        x = x.transpose(1, 2).reshape(b * t, x.shape[1], x.shape[3], x.shape[4])
        x = self.trunk(x).mean(dim=(2, 3))
        return self.proj(x.reshape(b, t, -1))
