"""Streaming BC-ResNet: causal temporal convolutions and a frame-level pooling ring buffer.

:class:`StreamingBCResNet` has the block layout, widths, dilations and SubSpectralNorms of
:class:`~speechkit.models.kws.bcresnet.BCResNet` (Kim et al., Interspeech 2021,
arXiv 2106.04140) with three changes that let a detector compute only the new frames each hop:

* every temporal convolution is **causal**: left padding ``(k - 1) * dilation``, none on the
  right (the head's 5x5 conv, each block's dilated 1x3 depthwise conv, the classifier's 5x5
  depthwise conv; frequency padding as in BC-ResNet);
* the head gives **per-frame logits** ``z_t`` (depthwise 5x5 -> 1x1 -> BN -> ReLU -> mean over
  frequency -> 1x1 conv with bias) and the score at frame ``t`` is the mean of ``z`` over the
  last ``window_frames`` frames (over the frames seen so far at the start of a stream). As the
  last 1x1 conv is linear, that equals BC-ResNet's "average, then classify" over the window;
* the optional input normalization is **running**: per mel bin,
  ``lambda * x + (x - mu_t) / sqrt(var_t + eps)`` with ``mu_t``, ``var_t`` over the last
  ``norm_frames`` frames up to ``t`` (fewer at the start), instead of BC-ResNet's per-clip ResNorm.

``streaming_forward`` carries a flat list of fixed-shape tensors (ONNX can carry them): frames
seen, the pooling ring buffer, the input-norm buffer and one left-context buffer per causal conv.
Fed any chunking of a stream it returns what ``frame_logits`` returns on the whole stream.

Receptive field (defaults, dilations 1, 2, 4, 8): the per-frame logit ``z_t`` sees
``1 + 4 (head) + 2*2*1 + 2*2*2 + 4*2*4 + 4*2*8 (blocks) + 4 (classifier) = 117`` frames; the
pooled score adds ``window_frames - 1 = 97``, and the running input norm ``norm_frames - 1 = 99``:
313 frames (3.13 s at a 10 ms hop) of past input. Look-ahead: 0 frames. Algorithmic latency: the
front-end's analysis window only (the score of frame ``t`` exists once that frame's last sample
has arrived; 30 ms for the BC-ResNet 480-sample window), plus however the caller buffers audio.

Shapes: B batch, T frames, F mel bins, C classes (or channels inside blocks).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from speechkit.errors import SpeechkitError
from speechkit.models.kws.bcresnet import (
    BCResBlock,
    ClassifierFeatures,
    _bcresnet_freq_sizes,
    bcresnet_layout,
    features_to_map,
)

#: Variance floor of the running input norm. Larger than the usual 1e-5 so that digital silence
#: (a constant log-mel, variance 0) maps to ~0 the same way in every chunking, whatever the
#: rounding of ``E[x^2] - mu^2``; log-mel variances of speech are ~1..10, far above it.
NORM_EPS = 1e-3

INPUT_NORMS = ("running", "none")


def causal_window_sum(ext: Tensor, window: int, dim: int = -1) -> Tensor:
    """Sums over the last ``window`` positions of a left-extended sequence, in float64.

    Args:
        ext: ``window - 1 + T`` positions along ``dim``: ``window - 1`` of history (zeros at the
            start of a stream) followed by ``T`` new ones.
        window: positions per sum.
        dim: the time axis.

    Returns:
        float64, ``T`` along ``dim``: output ``i`` sums positions ``i .. i + window - 1``. The
        cumulative sum is in float64 so that long sequences (``frame_logits`` over minutes)
        lose no precision and agree with the short sums of ``streaming_forward``.

    Example:
        >>> causal_window_sum(torch.tensor([0.0, 1.0, 2.0, 3.0]), 2)
        tensor([1., 3., 5.], dtype=torch.float64)
    """
    dim = dim % ext.dim()
    csum = torch.cumsum(ext.double(), dim=dim)
    head = [slice(None)] * dim
    csum = torch.cat([torch.zeros_like(csum[(*head, slice(0, 1))]), csum], dim=dim)
    return csum[(*head, slice(window, None))] - csum[(*head, slice(None, -window))]


def window_counts(frames_seen: Tensor, num_new: int, window: int) -> Tensor:
    """How many real frames each of ``num_new`` new frames averages over: ``min(seen + i, window)``.

    Args:
        frames_seen: ``(B, 1)`` float frames fed before these (clamped, see ``streaming_forward``).
        num_new: new frames T.
        window: window length in frames.

    Returns:
        ``(B, T)`` float64 counts, ``i = 1 .. T``.
    """
    steps = torch.arange(1, num_new + 1, device=frames_seen.device, dtype=torch.float64)
    return torch.clamp(frames_seen.double() + steps[None, :], max=float(window))


class CausalConv2d(nn.Module):
    """A Conv2d over ``(B, C, F, T)`` that pads time on the left only, with a streaming step.

    Frequency is padded as ``freq_padding`` (symmetric); time gets ``(k_t - 1) * dilation_t``
    frames of left context: zeros in :meth:`forward` (start of a stream), the cached last input
    frames in :meth:`stream`. Both run the same conv on ``cat(context, x)``, so a stream cut into
    chunks gives the frames of the whole.

    Args:
        in_channels, out_channels, kernel_size, stride, dilation, groups, bias: as ``nn.Conv2d``
            (``kernel_size``/``stride``/``dilation`` as ``(freq, time)`` pairs; time stride 1).
        freq_padding: frequency padding on both sides.

    Shape:
        x: ``(B, C_in, F, T)``; output ``(B, C_out, F', T)``; cache ``(B, C_in, F, context)``.

    Example:
        >>> conv = CausalConv2d(4, 4, (1, 3), dilation=(1, 2), groups=4)
        >>> x = torch.randn(1, 4, 1, 10)
        >>> y, cache = conv.stream(x[..., :3], conv.initial_cache(x[..., :0]))
        >>> y2, _ = conv.stream(x[..., 3:], cache)
        >>> torch.allclose(torch.cat([y, y2], -1), conv(x), atol=1e-6)
        True
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: tuple[int, int],
        stride: tuple[int, int] = (1, 1),
        dilation: tuple[int, int] = (1, 1),
        groups: int = 1,
        bias: bool = False,
        freq_padding: int = 0,
    ) -> None:
        super().__init__()
        if stride[1] != 1:
            raise SpeechkitError(f"CausalConv2d: time stride must be 1, got {stride[1]}")
        self.context = (kernel_size[1] - 1) * dilation[1]
        self.conv = nn.Conv2d(
            in_channels, out_channels, kernel_size, stride=stride, padding=(freq_padding, 0),
            dilation=dilation, groups=groups, bias=bias,
        )

    def initial_cache(self, x: Tensor) -> Tensor:
        """Zero context for input like ``x`` ``(B, C_in, F, any T)``: ``(B, C_in, F, context)``."""
        b, c, f, _ = x.shape
        return x.new_zeros(b, c, f, self.context)

    def stream(self, x: Tensor, cache: Tensor) -> tuple[Tensor, Tensor]:
        """Convolve new frames ``x`` after the cached ones; returns ``(y, next_cache)``."""
        ext = torch.cat([cache, x], dim=-1)
        return self.conv(ext), ext[..., -self.context:]  # negative start: no shape arithmetic in ONNX

    def forward(self, x: Tensor) -> Tensor:
        """Convolve a whole sequence from the start of a stream (zero left context)."""
        return self.stream(x, self.initial_cache(x))[0]


class CausalBCResBlock(BCResBlock):
    """A :class:`BCResBlock` whose dilated 1x3 temporal depthwise conv is causal.

    The 2D frequency part (``f2``) has no temporal extent and is kept as is; ``f1[0]`` becomes
    a :class:`CausalConv2d` with left context ``2 * dilation``. Same parameters as the parent.

    Shape:
        x: ``(B, C_in, F, T)``; output ``(B, C_out, F', T)``; cache ``(B, C_out, 1, 2 * dilation)``.

    Example:
        >>> block = CausalBCResBlock(16, 8, freq_stride=2, dilation=2).eval()
        >>> block(torch.randn(2, 16, 20, 7)).shape
        torch.Size([2, 8, 10, 7])
    """

    def __init__(self, in_channels: int, out_channels: int, freq_stride: int = 1,
                 dilation: int = 1, num_subbands: int = 5, dropout_prob: float = 0.1) -> None:
        super().__init__(in_channels, out_channels, freq_stride, dilation, num_subbands,
                         dropout_prob)
        self.f1[0] = CausalConv2d(out_channels, out_channels, (1, 3), dilation=(1, dilation),
                                  groups=out_channels)

    def initial_cache(self, x: Tensor) -> Tensor:
        """Zero context ``(B, C_out, 1, 2 * dilation)`` for a batch like ``x``."""
        conv = self.f1[0]
        return x.new_zeros(x.shape[0], conv.conv.in_channels, 1, conv.context)

    def stream(self, x: Tensor, cache: Tensor) -> tuple[Tensor, Tensor]:
        """Run new frames ``x`` after the cached context; returns ``(y, next_cache)``."""
        aux_2d = self.f2(x)
        h, next_cache = self.f1[0].stream(aux_2d.mean(dim=2, keepdim=True), cache)
        y = self.f1[1:](h) + aux_2d  # (B, C, 1, T) broadcast over F
        if not self.transition:
            y = y + x
        return nn.functional.relu(y), next_cache

    def forward(self, x: Tensor) -> Tensor:
        """Map ``(B, C_in, F, T)`` to ``(B, C_out, F', T)`` from the start of a stream."""
        return self.stream(x, self.initial_cache(x))[0]


class StreamingBCResNet(nn.Module):
    """Causal BC-ResNet-tau with per-frame logits pooled over a sliding window (module doc).

    Layout (``c = int(8 * width)``), as :class:`~speechkit.models.kws.bcresnet.BCResNet`:

    ========== ================================================================= ==============
    input norm running per-bin ``lambda*x + (x - mu_t)/sqrt(var_t + eps)`` or none 1 x F x T
    head       causal Conv 5x5, stride (2 freq, 1 time), 1 -> 2c; BN; ReLU       2c x F/2 x T
    stages     2, 2, 4, 4 causal BC-ResBlocks, widths c, 1.5c, 2c, 2.5c,
               freq strides 1, 2, 2, 1, dilations 1, 2, 4, 8                     2.5c x F/8 x T
    classifier causal depthwise 5x5 (no freq pad); 1x1 -> 4c; BN; ReLU; mean over
               F; 1x1 conv with bias -> z_t                                      C x T
    pooling    score_t = mean(z over the last window_frames frames up to t)     C x T
    ========== ================================================================= ==============

    Parameters: exactly BC-ResNet's (9,232 at width 1 and 12 classes); the norm and the pooling
    have none.

    Args:
        num_classes: logits C.
        width: width multiplier tau.
        num_subbands: SubSpectralNorm sub-bands.
        dropout_prob: Dropout2d probability at the end of each block's 1D branch.
        in_bins: mel bins F.
        window_frames: frames the pooled score averages (98 = 1 s of audio at a 10 ms hop and
            a 480-sample uncentred window); at least 2.
        input_norm: ``"running"`` (causal per-bin normalization, see the module doc) or ``"none"``.
        norm_frames: frames of the running norm's statistics; at least 2.
        resnorm_lambda: identity weight ``lambda`` of the running norm.

    Shape:
        feats: ``(B, T, F)`` time-major features, ``F == in_bins``, ``T >= 1``. ``forward``:
        ``(B, C)`` score at the last frame; ``frame_logits``: ``(B, T, C)`` score at every frame.
        In a padded batch, each item's valid frames get the scores of the item alone (the model
        is causal); ``forward`` reads the last frame, so feed it equal-length clips.

    Raises:
        SpeechkitError: for a bad ``input_norm``, window/norm length, width, or ``in_bins``.

    Example:
        >>> model = StreamingBCResNet(num_classes=12, width=1).eval()
        >>> sum(p.numel() for p in model.parameters())
        9232
        >>> feats = torch.randn(2, 30, 40)
        >>> model(feats).shape, model.frame_logits(feats).shape
        (torch.Size([2, 12]), torch.Size([2, 30, 12]))
        >>> state = model.initial_state(batch_size=2)
        >>> a, state = model.streaming_forward(feats[:, :7], state)
        >>> b, state = model.streaming_forward(feats[:, 7:], state)
        >>> torch.allclose(torch.cat([a, b], 1), model.frame_logits(feats), atol=1e-5)
        True
    """

    def __init__(
        self,
        num_classes: int = 12,
        width: float = 1.0,
        num_subbands: int = 5,
        dropout_prob: float = 0.1,
        in_bins: int = 40,
        window_frames: int = 98,
        input_norm: str = "running",
        norm_frames: int = 100,
        resnorm_lambda: float = 0.1,
    ) -> None:
        super().__init__()
        c, widths, blocks_per_stage, freq_strides = bcresnet_layout(
            "StreamingBCResNet", width, num_classes, num_subbands, in_bins
        )
        if input_norm not in INPUT_NORMS:
            raise SpeechkitError(
                f"StreamingBCResNet: input_norm={input_norm!r}; choose one of {list(INPUT_NORMS)}"
            )
        if window_frames < 2 or norm_frames < 2:
            raise SpeechkitError(
                f"StreamingBCResNet: window_frames={window_frames} and norm_frames={norm_frames} "
                f"must both be at least 2"
            )
        self.num_classes = num_classes
        self.in_bins = in_bins
        self.window_frames = window_frames
        self.input_norm = input_norm
        self.norm_frames = norm_frames
        self.resnorm_lambda = resnorm_lambda
        self.head_conv = CausalConv2d(1, 2 * c, (5, 5), stride=(2, 1), freq_padding=2)
        self.head = nn.Sequential(nn.BatchNorm2d(2 * c), nn.ReLU())
        self.stages = nn.ModuleList()
        in_ch = 2 * c
        for i, (n, out_ch, stride) in enumerate(zip(blocks_per_stage, widths, freq_strides)):
            self.stages.append(nn.ModuleList(
                CausalBCResBlock(
                    in_ch if j == 0 else out_ch, out_ch, freq_stride=stride if j == 0 else 1,
                    dilation=2**i, num_subbands=num_subbands, dropout_prob=dropout_prob,
                )
                for j in range(n)
            ))
            in_ch = out_ch
        self.classifier_conv = CausalConv2d(in_ch, in_ch, (5, 5), groups=in_ch)
        self.classifier = nn.Sequential(
            nn.Conv2d(in_ch, 4 * c, 1, bias=False),
            nn.BatchNorm2d(4 * c),
            nn.ReLU(),
        )
        self.output = nn.Conv2d(4 * c, num_classes, 1)

    # ---- full-sequence path -------------------------------------------------------------

    def forward(self, feats: Tensor) -> Tensor:
        """Pooled logits ``(B, C)`` at the last frame of ``feats`` ``(B, T, F)``."""
        z = self._frame_z(feats)  # (B, C, T)
        return z[..., -self.window_frames:].mean(dim=-1)

    def frame_logits(self, feats: Tensor) -> Tensor:
        """Pooled logits at every frame: ``(B, T, F)`` -> ``(B, T, C)`` (a fresh stream)."""
        z = self._frame_z(feats)
        b, c, t = z.shape
        ext = torch.cat([z.new_zeros(b, c, self.window_frames - 1), z], dim=-1)
        counts = window_counts(z.new_zeros(b, 1), t, self.window_frames)  # (B, T)
        pooled = causal_window_sum(ext, self.window_frames) / counts[:, None, :]
        return pooled.to(z.dtype).transpose(1, 2)

    def extract_features(self, feats: Tensor) -> ClassifierFeatures:
        """The four stages' outputs ``(B, C_i, F_i, T)`` for ``(B, T, F)`` features.

        ``stages[-1]`` is the input of the per-frame head (``classifier_conv``, ``classifier``,
        mean over frequency, ``output``), before the window pooling.
        """
        x = self.head(self.head_conv(self._normalize(feats, None)[0]))
        stages = []
        for stage in self.stages:
            for block in stage:
                x = block(x)
            stages.append(x)
        return ClassifierFeatures(stages)

    def _frame_z(self, feats: Tensor) -> Tensor:
        """Per-frame (unpooled) logits ``(B, C, T)``."""
        return self._head_out(self.classifier_conv(self.extract_features(feats).last))

    def _head_out(self, x: Tensor) -> Tensor:
        """``(B, C_last, F_last', T)`` after the causal depthwise conv -> ``z`` ``(B, C, T)``."""
        h = self.classifier(x).mean(dim=2, keepdim=True)
        return self.output(h).squeeze(2)

    def _normalize(self, feats: Tensor, cache: Tensor | None,
                   frames_seen: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """Running input norm of ``(B, T, F)`` features -> ``((B, 1, F, T) map, next cache)``.

        ``cache`` ``(B, norm_frames - 1, F)`` holds the previous raw frames (zeros before the
        stream starts, which add nothing to the sums; the counts exclude them).
        """
        x = features_to_map(feats, self.in_bins, "StreamingBCResNet")
        if self.input_norm == "none":
            return x, cache
        b, t, f = feats.shape
        if cache is None:
            cache = feats.new_zeros(b, self.norm_frames - 1, f)
            frames_seen = feats.new_zeros(b, 1)
        ext = torch.cat([cache, feats], dim=1)  # (B, N - 1 + T, F)
        # One float64 window sum over [x, x^2] (few graph nodes: the streaming graph's cost is
        # mostly per node), then the statistics in float64 and the normalization in float32.
        counts = window_counts(frames_seen, t, self.norm_frames)[..., None]  # (B, T, 1)
        moments = causal_window_sum(torch.cat([ext, ext * ext], dim=2), self.norm_frames, dim=1)
        moments = moments / counts  # (B, T, 2F): mean, mean of squares
        mean, mean_sq = moments[..., :f], moments[..., f:]
        std = torch.sqrt(torch.clamp(mean_sq - mean * mean, min=0.0) + NORM_EPS)
        y = self.resnorm_lambda * feats + (feats - mean.to(feats.dtype)) / std.to(feats.dtype)
        return y.transpose(1, 2).unsqueeze(1), ext[:, -(self.norm_frames - 1):]

    # ---- streaming path -----------------------------------------------------------------

    def initial_state(self, batch_size: int = 1) -> list[Tensor]:
        """Zero state of a fresh stream: a flat list of fixed-shape float tensors.

        Order: frames seen ``(B, 1)``; pooling ring buffer ``(B, C, window_frames - 1)``;
        input-norm buffer ``(B, norm_frames - 1, F)`` (only with ``input_norm="running"``);
        head conv context ``(B, 1, F, 4)``; each block's temporal context ``(B, C_i, 1, 2 d_i)``
        in order; classifier depthwise context ``(B, C_last, F_last, 4)``.
        """
        p = next(self.parameters())
        ref = p.new_zeros(batch_size, 1, self.in_bins, 0)
        state = [p.new_zeros(batch_size, 1), p.new_zeros(batch_size, self.num_classes,
                                                          self.window_frames - 1)]
        if self.input_norm == "running":
            state.append(p.new_zeros(batch_size, self.norm_frames - 1, self.in_bins))
        state.append(self.head_conv.initial_cache(ref))
        for stage in self.stages:
            for block in stage:
                state.append(block.initial_cache(ref))
        f_last = _bcresnet_freq_sizes(self.in_bins, (1, 2, 2, 1))[-1]
        c_last = self.classifier_conv.conv.in_channels
        state.append(p.new_zeros(batch_size, c_last, f_last, self.classifier_conv.context))
        return state

    def streaming_forward(self, feats: Tensor, state: list[Tensor]) -> tuple[Tensor, list[Tensor]]:
        """Score new frames of a stream.

        Args:
            feats: ``(B, Tc, F)`` new frames, any ``Tc >= 1``.
            state: from :meth:`initial_state` or the previous call.

        Returns:
            ``(logits (B, Tc, C), next_state)``: the pooled logits of the new frames, equal (to
            float rounding) to ``frame_logits`` of all frames fed since ``initial_state``.
        """
        expected = 4 + (self.input_norm == "running") + sum(len(s) for s in self.stages)
        if len(state) != expected:
            raise SpeechkitError(
                f"StreamingBCResNet.streaming_forward: expected {expected} state tensors, got "
                f"{len(state)}; start a stream with initial_state(batch_size)"
            )
        frames_seen, pool_cache, *rest = state
        norm_cache = rest.pop(0) if self.input_norm == "running" else None
        x, next_norm = self._normalize(feats, norm_cache, frames_seen)
        next_state: list[Tensor] = []
        x, cache = self.head_conv.stream(x, rest.pop(0))
        next_state.append(cache)
        x = self.head(x)
        for stage in self.stages:
            for block in stage:
                x, cache = block.stream(x, rest.pop(0))
                next_state.append(cache)
        x, cache = self.classifier_conv.stream(x, rest.pop(0))
        next_state.append(cache)
        z = self._head_out(x)  # (B, C, Tc)
        tc = z.shape[-1]
        ext = torch.cat([pool_cache, z], dim=-1)
        counts = window_counts(frames_seen, tc, self.window_frames)[:, None, :]
        logits = (causal_window_sum(ext, self.window_frames) / counts).to(z.dtype)
        # Clamp: past max(window, norm) frames every count is full, and the counter stays bounded.
        horizon = float(max(self.window_frames, self.norm_frames))
        seen = torch.clamp(frames_seen + tc, max=horizon)
        head = [seen, ext[..., -(self.window_frames - 1):]]
        if next_norm is not None:
            head.append(next_norm)
        return logits.transpose(1, 2), head + next_state

    def state_names(self) -> list[str]:
        """A name per :meth:`initial_state` tensor, in order (for artifact metadata)."""
        names = ["frames_seen", "pooling"] + (["input_norm"] if self.input_norm == "running" else []) + ["head"]
        names += [f"stage{i}_block{j}" for i, stage in enumerate(self.stages) for j in range(len(stage))]
        return names + ["classifier"]

    def initial_state_shapes(self, batch_size: int = 1) -> list[tuple[int, ...]]:
        """Shapes of :meth:`initial_state` tensors, in order."""
        return [tuple(s.shape) for s in self.initial_state(batch_size)]


__all__ = ["CausalBCResBlock", "CausalConv2d", "StreamingBCResNet"]
