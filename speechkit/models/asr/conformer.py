"""Streaming Conformer encoder (Gulati et al. 2020, arXiv 2005.08100) trained with chunk masks.

Shape legend: B batch, T feature frames (10 ms), F feature bins, T' encoder frames (40 ms),
D model width, N layers, K depthwise kernel, C chunk size and L left chunks (in encoder frames).

Each layer: macaron half-step feed-forward, rotary multi-head self-attention under a chunk mask
(:mod:`.masks`), a convolution module with a *causal* depthwise convolution, a second half-step
feed-forward, and a final LayerNorm. The convolution module uses LayerNorm where the paper has
BatchNorm, so that a padded batch equals its items and a chunk decoded alone equals the same
chunk in the whole utterance (WeNet's ``cnn_module_norm: layer_norm``).

Streaming (docs/ARCHITECTURE.md contract 2): :meth:`ConformerEncoder.streaming_forward` on consecutive
chunks with carried states gives the outputs of :meth:`ConformerEncoder.forward` with the same
``chunk_size`` and ``left_chunks``, up to float rounding. This is the one place where the state
is documented.

**Input frames per chunk.** A chunk of ``C`` encoder frames reads
``chunk_input_frames(C) = (C - 1) * 4 + 7`` feature frames, and the next chunk starts
``chunk_shift_frames(C) = 4 * C`` feature frames later, so consecutive inputs overlap by 3
frames (the subsampling's right context). The *caller* keeps that overlap (the ONNX artifact's
``chunk_frames`` and ``shift_frames``); the encoder state holds none. The last chunk of an
utterance may be shorter (``chunk_lens``); once an item has had a short chunk its stream is over.

**State** (a flat list of 3 tensors, batch first, float32, all zeros initially)::

    states[0]  attention cache  (B, N, L * C, 2 * D)  per layer, keys then values (before
                                rotary positions) of the latest L * C encoder frames,
                                right-aligned (oldest first)
    states[1]  conv cache       (B, N, K - 1, D)      per layer, the depthwise convolution's
                                input over the latest K - 1 frames (zeros = its left padding)
    states[2]  cached frames    (B,)                  how many attention-cache slots hold real
                                frames (0 .. L * C); float so every state has one dtype

**Per-layer activations** (for distillation) come from :meth:`ConformerEncoder.extract_features`,
not from ``forward``, whose return type never changes: an :class:`EncoderFeatures` with every
layer's output and every attention's Q, K, V.

Example:
    >>> enc = conformer_xs().eval()
    >>> feats, feat_lens = torch.randn(2, 300, 80), torch.tensor([300, 200])
    >>> out, out_lens = enc(feats, feat_lens, chunk_size=8, left_chunks=4)
    >>> tuple(out.shape), out_lens.tolist()
    ((2, 74, 144), [74, 49])
    >>> features = enc.extract_features(feats, feat_lens, chunk_size=8, left_chunks=4)
    >>> len(features.hidden), tuple(features.qkv[0][0].shape)  # 5 layers; q of layer 1 (B, H, T', Dh)
    (5, (2, 4, 74, 36))
    >>> torch.allclose(features.last, out, atol=1e-6)
    True
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from speechkit.models.asr import masks
from speechkit.models.asr.attention import MultiHeadSelfAttention
from speechkit.models.asr.subsampling import SUBSAMPLING, Conv2dSubsampling4, input_frames


class FeedForward(nn.Module):
    """Pre-norm feed-forward: LayerNorm, Linear D->Dff, SiLU, dropout, Linear Dff->D, dropout."""

    def __init__(self, dim: int, ffn_dim: int, dropout: float) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.LayerNorm(dim), nn.Linear(dim, ffn_dim), nn.SiLU(), nn.Dropout(dropout),
            nn.Linear(ffn_dim, dim), nn.Dropout(dropout),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class CausalConvModule(nn.Module):
    """Conformer convolution module with a causal depthwise convolution (left padding only).

    LayerNorm, pointwise D->2D, GLU, depthwise conv (kernel K, left context K - 1 frames),
    LayerNorm, SiLU, pointwise D->D, dropout.
    """

    def __init__(self, dim: int, kernel_size: int, dropout: float) -> None:
        super().__init__()
        self.norm_in = nn.LayerNorm(dim)
        self.pointwise_in = nn.Linear(dim, 2 * dim)
        self.depthwise = nn.Conv1d(dim, dim, kernel_size, groups=dim)
        self.norm_mid = nn.LayerNorm(dim)
        self.pointwise_out = nn.Linear(dim, dim)
        self.dropout = nn.Dropout(dropout)
        self.context = kernel_size - 1

    def forward(self, x: Tensor, cache: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Convolve a sequence or chunk.

        Args:
            x: (B, T, D).
            cache: (B, K - 1, D) depthwise input of the previous frames; None = zeros (start).

        Returns:
            ``(out, conv_in)``: (B, T, D) and (B, K - 1 + T, D), the depthwise input with its
            left context, from which the caller keeps the latest K - 1 frames.
        """
        y = nn.functional.glu(self.pointwise_in(self.norm_in(x)), dim=-1)
        if cache is None:
            cache = y.new_zeros(y.shape[0], self.context, y.shape[2])
        conv_in = torch.cat([cache, y], dim=1)
        y = self.depthwise(conv_in.transpose(1, 2)).transpose(1, 2)
        y = self.pointwise_out(nn.functional.silu(self.norm_mid(y)))
        return self.dropout(y), conv_in


class ConformerLayer(nn.Module):
    """One Conformer block: x + FF/2, x + MHSA, x + Conv, x + FF/2, LayerNorm."""

    def __init__(self, dim: int, num_heads: int, ffn_dim: int, kernel_size: int, dropout: float) -> None:
        super().__init__()
        self.ff1 = FeedForward(dim, ffn_dim, dropout)
        self.norm_attn = nn.LayerNorm(dim)
        self.attn = MultiHeadSelfAttention(dim, num_heads, dropout)
        self.dropout = nn.Dropout(dropout)
        self.conv = CausalConvModule(dim, kernel_size, dropout)
        self.ff2 = FeedForward(dim, ffn_dim, dropout)
        self.norm_out = nn.LayerNorm(dim)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        """(B, T, D) under a (B, 1, T, T) mask -> (B, T, D)."""
        return self.extract_features(x, mask)[0]

    def extract_features(self, x: Tensor, mask: Tensor) -> tuple[Tensor, tuple[Tensor, Tensor, Tensor]]:
        """Like :meth:`forward`, also returning the attention's ``(q, k, v)``, each (B, H, T, Dh),
        before rotary positions (:meth:`MultiHeadSelfAttention.project`)."""
        x = x + 0.5 * self.ff1(x)
        qkv = self.attn.project(self.norm_attn(x))
        x = x + self.dropout(self.attn.attend(*qkv, mask))
        x = x + self.conv(x)[0]
        return self.norm_out(x + 0.5 * self.ff2(x)), qkv

    def streaming_forward(
        self, x: Tensor, mask: Tensor, kv_cache: Tensor, conv_cache: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        """One chunk: returns the output and the uncut key/value window and conv input."""
        x = x + 0.5 * self.ff1(x)
        attn, kv_window = self.attn.streaming_forward(self.norm_attn(x), mask, kv_cache)
        x = x + self.dropout(attn)
        conv, conv_window = self.conv(x, conv_cache)
        x = x + conv
        return self.norm_out(x + 0.5 * self.ff2(x)), kv_window, conv_window


def _keep_latest(window: Tensor, valid_lens: Tensor, keep: int) -> Tensor:
    """From (B, P + T, E) windows whose first P slots are cache and whose chunk has
    ``valid_lens`` real frames, keep the ``keep`` (= P) latest real frames -> (B, P, E)."""
    index = valid_lens[:, None] + torch.arange(keep, device=window.device)[None, :]
    return torch.gather(window, 1, index[:, :, None].expand(-1, -1, window.shape[2]))


@dataclass
class EncoderFeatures:
    """Per-layer activations of :meth:`ConformerEncoder.extract_features` (N layers).

    Attributes:
        hidden: N tensors (B, T', D), each layer's output in order; ``hidden[-1]`` is the
            encoder output, what ``forward`` returns and the CTC head consumes.
        lens: int64 (B,) valid encoder frames of each item (frames past it are padding).
        qkv: N triples ``(q, k, v)``, each (B, H, T', Dh): every layer's attention
            projections before rotary positions, for Q-Q, K-K, V-V relation distillation.
    """

    hidden: list[Tensor]
    lens: Tensor
    qkv: list[tuple[Tensor, Tensor, Tensor]]

    @property
    def last(self) -> Tensor:
        """(B, T', D) the last layer's output (= ``forward``'s ``enc_out``)."""
        return self.hidden[-1]


class ConformerEncoder(nn.Module):
    """Conformer encoder over filter-bank features, streamable by chunk masks.

    Args:
        input_dim: feature bins F.
        dim: model width D.
        num_layers: N.
        num_heads: attention heads (D / heads must be even, for rotary positions).
        ffn_dim: feed-forward hidden width.
        conv_kernel_size: K of the causal depthwise convolution.
        subsampling_channels: channels of the subsampling convolutions.
        dropout: dropout in feed-forward, attention and convolution modules.

    The buffers ``feat_mean`` and ``feat_inv_std`` (F,) normalise features (global CMVN,
    identity until :meth:`set_feature_stats` is called); they travel with the weights.
    """

    def __init__(
        self,
        input_dim: int = 80,
        dim: int = 144,
        num_layers: int = 6,
        num_heads: int = 4,
        ffn_dim: int = 576,
        conv_kernel_size: int = 15,
        subsampling_channels: int = 64,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.input_dim, self.dim, self.num_layers = input_dim, dim, num_layers
        self.conv_context = conv_kernel_size - 1
        self.register_buffer("feat_mean", torch.zeros(input_dim))
        self.register_buffer("feat_inv_std", torch.ones(input_dim))
        self.subsampling = Conv2dSubsampling4(input_dim, subsampling_channels, dim)
        self.dropout = nn.Dropout(dropout)
        self.layers = nn.ModuleList(
            ConformerLayer(dim, num_heads, ffn_dim, conv_kernel_size, dropout) for _ in range(num_layers)
        )

    @property
    def output_dim(self) -> int:
        return self.dim

    @torch.no_grad()
    def set_feature_stats(self, mean: Tensor, std: Tensor) -> None:
        """Set global mean/std (F,) of the training features (std floored at 1e-5)."""
        self.feat_mean.copy_(mean)
        self.feat_inv_std.copy_(1.0 / std.clamp(min=1e-5))

    @staticmethod
    def chunk_input_frames(chunk_size: int) -> int:
        """Feature frames fed per chunk of ``chunk_size`` encoder frames: ``(C - 1) * 4 + 7``."""
        return input_frames(chunk_size)

    @staticmethod
    def chunk_shift_frames(chunk_size: int) -> int:
        """Feature frames between the starts of consecutive chunks: ``4 * C``."""
        return SUBSAMPLING * chunk_size

    def embed(self, feats: Tensor, feat_lens: Tensor) -> tuple[Tensor, Tensor]:
        """Normalise and subsample: (B, T, F) -> (B, T', D), int64 (B,)."""
        x, x_lens = self.subsampling((feats - self.feat_mean) * self.feat_inv_std, feat_lens)
        return self.dropout(x), x_lens

    def forward(
        self, feats: Tensor, feat_lens: Tensor, chunk_size: int = -1, left_chunks: int = -1
    ) -> tuple[Tensor, Tensor]:
        """Encode a padded batch.

        Args:
            feats: (B, T, F) features; frames past ``feat_lens`` are padding.
            feat_lens: int64 (B,).
            chunk_size: C encoder frames per attention chunk; -1 for full context.
            left_chunks: L chunks of left context; -1 for all.

        Returns:
            ``(enc_out, enc_lens)``: (B, T', D) and int64 (B,). Per-layer outputs come from
            :meth:`extract_features`.
        """
        x, x_lens = self.embed(feats, feat_lens)
        mask = masks.attention_mask(x_lens, x.shape[1], chunk_size, left_chunks)
        for layer in self.layers:
            x = layer(x, mask)
        return x, x_lens

    def extract_features(
        self, feats: Tensor, feat_lens: Tensor, chunk_size: int = -1, left_chunks: int = -1
    ) -> EncoderFeatures:
        """Every layer's output and attention Q, K, V (for distillation); arguments as :meth:`forward`.

        ``extract_features(...).last`` equals ``forward(...)[0]`` (same computation).
        """
        x, x_lens = self.embed(feats, feat_lens)
        mask = masks.attention_mask(x_lens, x.shape[1], chunk_size, left_chunks)
        hidden, qkv = [], []
        for layer in self.layers:
            x, layer_qkv = layer.extract_features(x, mask)
            hidden.append(x)
            qkv.append(layer_qkv)
        return EncoderFeatures(hidden, x_lens, qkv)

    def init_states(self, batch_size: int = 1, chunk_size: int = 8, left_chunks: int = 8) -> list[Tensor]:
        """Zero states for streaming with chunks of ``chunk_size`` and ``left_chunks`` of context.

        The default (8 x 8 frames) is 320 ms chunks with 2.56 s of left context. See the
        module docstring for the layout.
        """
        if chunk_size <= 0 or left_chunks < 0:
            raise ValueError(f"streaming needs chunk_size > 0 and left_chunks >= 0, got {chunk_size}, {left_chunks}")
        param = self.feat_mean
        return [
            param.new_zeros(batch_size, self.num_layers, left_chunks * chunk_size, 2 * self.dim),
            param.new_zeros(batch_size, self.num_layers, self.conv_context, self.dim),
            param.new_zeros(batch_size),
        ]

    def streaming_forward(
        self, chunk_feats: Tensor, chunk_lens: Tensor, states: list[Tensor]
    ) -> tuple[Tensor, Tensor, list[Tensor]]:
        """Encode one chunk with carried states (eval mode).

        Args:
            chunk_feats: (B, chunk_input_frames(C), F) features of the chunk plus its
                3-frame overlap with the next (fewer frames for the last chunk).
            chunk_lens: int64 (B,) valid frames of ``chunk_feats``.
            states: from :meth:`init_states` or the previous call.

        Returns:
            ``(enc_out, enc_lens, new_states)``: (B, C', D) with C' <= C, int64 (B,), and the
            states for the next chunk.
        """
        attn_cache, conv_cache, cached_frames = states
        x, x_lens = self.embed(chunk_feats, chunk_lens)
        cache_len = attn_cache.shape[2]
        mask = masks.streaming_attention_mask(cached_frames, cache_len, x_lens, x.shape[1])
        new_attn, new_conv = [], []
        for i, layer in enumerate(self.layers):
            x, kv_window, conv_window = layer.streaming_forward(x, mask, attn_cache[:, i], conv_cache[:, i])
            new_attn.append(_keep_latest(kv_window, x_lens, cache_len))
            new_conv.append(_keep_latest(conv_window, x_lens, self.conv_context))
        cached_frames = torch.clamp(cached_frames + x_lens.to(cached_frames.dtype), max=float(cache_len))
        return x, x_lens, [torch.stack(new_attn, dim=1), torch.stack(new_conv, dim=1), cached_frames]


def conformer_xs(input_dim: int = 80, dropout: float = 0.1) -> ConformerEncoder:
    """2.51 M parameters (D=144, 5 layers): the CPU quickstart model."""
    return ConformerEncoder(input_dim, dim=144, num_layers=5, num_heads=4, ffn_dim=576,
                            conv_kernel_size=15, subsampling_channels=32, dropout=dropout)


def conformer_s(input_dim: int = 80, dropout: float = 0.1) -> ConformerEncoder:
    """12.9 M parameters (D=256, 8 layers)."""
    return ConformerEncoder(input_dim, dim=256, num_layers=8, num_heads=4, ffn_dim=1024,
                            conv_kernel_size=15, subsampling_channels=128, dropout=dropout)


def conformer_m(input_dim: int = 80, dropout: float = 0.1) -> ConformerEncoder:
    """29.2 M parameters (D=256, 18 layers): LibriSpeech 960 h on GPUs."""
    return ConformerEncoder(input_dim, dim=256, num_layers=18, num_heads=4, ffn_dim=1024,
                            conv_kernel_size=15, subsampling_channels=256, dropout=dropout)


PRESETS = {"xs": conformer_xs, "s": conformer_s, "m": conformer_m}
