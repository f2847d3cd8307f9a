"""Normalization blocks shared by the CNN families (KWS, acoustic scenes, respiratory).

* :class:`SubSpectralNorm` (SSN): BatchNorm with separate statistics and affine parameters per
  frequency sub-band. Chang et al., "Subspectral Normalization for Neural Audio Data
  Processing", ICASSP 2021, arXiv 2103.13620. Used inside every BC-ResNet block.
* :class:`FreqNorm` and :class:`ResNorm`: per-instance, per-frequency-bin normalization and its
  residual form, ``ResNorm(x) = lambda * x + FreqNorm(x)``. Kim et al., "Domain Generalization on
  Efficient Acoustic Scene Classification using Residual Normalization", DCASE 2021 Workshop,
  arXiv 2111.06531. It removes a device's spectral colouring (a per-bin gain/offset) while the
  scaled identity keeps some of the absolute level. Note: Qualcomm holds patent filings on
  ResNorm (US 2022/0405547); check before shipping it commercially.

All modules take ``(B, C, F, T)`` tensors: batch, channels, frequency bins, frames.
"""

import torch
from torch import Tensor, nn


class SubSpectralNorm(nn.Module):
    """BatchNorm computed separately for ``num_subbands`` contiguous frequency sub-bands.

    The frequency axis is split into ``num_subbands`` equal contiguous bands and each
    (channel, band) pair gets its own running statistics and affine weight/bias, implemented as
    a reshape ``(B, C, F, T) -> (B, C*S, F/S, T)`` around ``BatchNorm2d(C*S)``. The reshape is
    plain, so the module exports to ONNX as Reshape + BatchNormalization.

    Args:
        num_channels: C, the number of input channels.
        num_subbands: S, the number of frequency sub-bands; F must be divisible by S.
        eps: BatchNorm epsilon.

    Shape:
        x: ``(B, C, F, T)`` with ``F % S == 0``; output: same shape.

    Example:
        >>> ssn = SubSpectralNorm(num_channels=8, num_subbands=5)
        >>> ssn(torch.randn(2, 8, 20, 101)).shape
        torch.Size([2, 8, 20, 101])
    """

    def __init__(self, num_channels: int, num_subbands: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.num_channels = num_channels
        self.num_subbands = num_subbands
        self.bn = nn.BatchNorm2d(num_channels * num_subbands, eps=eps)

    def forward(self, x: Tensor) -> Tensor:
        """Normalize ``x`` of shape ``(B, C, F, T)``; returns the same shape."""
        b, c, f, t = x.shape
        if f % self.num_subbands != 0:
            raise ValueError(
                f"SubSpectralNorm: {f} frequency bins are not divisible into "
                f"{self.num_subbands} sub-bands"
            )
        # Channel c, band s lands on BatchNorm channel c*S + s: each band is contiguous in F.
        y = self.bn(x.reshape(b, c * self.num_subbands, f // self.num_subbands, t))
        return y.reshape(b, c, f, t)

    def extra_repr(self) -> str:
        return f"num_channels={self.num_channels}, num_subbands={self.num_subbands}"


class FreqNorm(nn.Module):
    """Per-instance, per-frequency-bin normalization over the channel and time axes.

    ``y[n, c, f, t] = (x[n, c, f, t] - mu[n, f]) / sqrt(var[n, f] + eps)`` where ``mu`` and the
    biased ``var`` are taken over ``c`` and ``t``. No parameters, no running statistics: train
    and eval behave the same. A clip with a single frame and channel has zero variance and maps
    to zeros.

    Args:
        eps: added to the variance.

    Shape:
        x: ``(B, C, F, T)``; output: same shape.

    Example:
        >>> FreqNorm()(torch.randn(2, 4, 40, 101)).shape
        torch.Size([2, 4, 40, 101])
    """

    def __init__(self, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        """Normalize ``x`` of shape ``(B, C, F, T)``; returns the same shape."""
        var, mean = torch.var_mean(x, dim=(1, 3), correction=0, keepdim=True)
        return (x - mean) * torch.rsqrt(var + self.eps)

    def extra_repr(self) -> str:
        return f"eps={self.eps}"


class ResNorm(nn.Module):
    """Residual normalization: ``lambda * x + FreqNorm(x)``.

    Args:
        lambda_: weight of the identity path (0.1 in the DCASE 2021 reimplementations; not
            checked against the paper).
        eps: FreqNorm epsilon.

    Shape:
        x: ``(B, C, F, T)``; output: same shape.

    Example:
        >>> ResNorm(lambda_=0.1)(torch.randn(2, 1, 256, 50)).shape
        torch.Size([2, 1, 256, 50])
    """

    def __init__(self, lambda_: float = 0.1, eps: float = 1e-5) -> None:
        super().__init__()
        self.lambda_ = lambda_
        self.freq_norm = FreqNorm(eps)

    def forward(self, x: Tensor) -> Tensor:
        """Apply ResNorm to ``x`` of shape ``(B, C, F, T)``; returns the same shape."""
        return self.lambda_ * x + self.freq_norm(x)

    def extra_repr(self) -> str:
        return f"lambda_={self.lambda_}"
