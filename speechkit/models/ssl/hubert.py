"""HuBERT in pure torch: CNN feature extractor, conv positional embedding, post-LN Transformer.

Hsu et al., "HuBERT: Self-Supervised Speech Representation Learning by Masked Prediction of
Hidden Units", IEEE/ACM TASLP 2021, arXiv 2106.07447; layer for layer the fairseq
``HubertModel`` (``extractor_mode=default``, ``layer_norm_first=False``), so fairseq and Hugging
Face checkpoints load into it (:mod:`speechkit.models.ssl.checkpoints`). Smaller configurations
(the STaR / ARMHuBERT students, methods.md section 5.3) are the same class with other sizes.

Shape legend: B batch, S samples (16 kHz), T frames (20 ms for the Base CNN), C CNN channels,
D model width, H heads, L layers.

One deliberate difference from fairseq: the group norm of the first CNN layer and every attention
ignore the padding of a batch (statistics over the valid frames only), so a padded batch gives
exactly each item's own output (tested). For unpadded input the two are identical.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
from torch import Tensor, nn

#: fairseq's Base extractor: (channels, kernel, stride) per layer; 320 samples per frame.
BASE_CONV_LAYERS: tuple[tuple[int, int, int], ...] = ((512, 10, 5),) + ((512, 3, 2),) * 4 + ((512, 2, 2),) * 2


@dataclass
class HubertConfig:
    """Sizes of a HuBERT-style encoder (fairseq argument names in brackets).

    Attributes:
        conv_layers: (channels, kernel, stride) of each CNN layer [conv_feature_layers]; the first
            layer has a group norm (one group per channel) [extractor_mode=default].
        dim: Transformer width D [encoder_embed_dim]; the CNN output is projected to it when the
            widths differ [post_extract_proj].
        num_layers: Transformer layers [encoder_layers].
        num_heads: attention heads [encoder_attention_heads].
        ffn_dim: feed-forward width [encoder_ffn_embed_dim].
        pos_conv_kernel, pos_conv_groups: convolutional positional embedding [conv_pos, conv_pos_groups].
        dropout, attention_dropout, activation_dropout, input_dropout: as fairseq's
            [dropout, attention_dropout, activation_dropout, dropout_input].
        final_dim, num_classes: pre-training head (projection to ``final_dim`` and one embedding
            per cluster id) [final_dim, len(dictionaries)]; ``num_classes=0``: no head.
        sample_rate: input rate in Hz.
    """

    conv_layers: list[tuple[int, int, int]] = field(default_factory=lambda: list(BASE_CONV_LAYERS))
    dim: int = 768
    num_layers: int = 12
    num_heads: int = 12
    ffn_dim: int = 3072
    pos_conv_kernel: int = 128
    pos_conv_groups: int = 16
    dropout: float = 0.1
    attention_dropout: float = 0.1
    activation_dropout: float = 0.0
    input_dropout: float = 0.0
    final_dim: int = 256
    num_classes: int = 0
    sample_rate: int = 16000

    def __post_init__(self) -> None:
        self.conv_layers = [tuple(int(v) for v in layer) for layer in self.conv_layers]
        if self.dim % self.num_heads or self.dim % self.pos_conv_groups:
            raise ValueError(f"dim {self.dim} must divide by num_heads {self.num_heads} and "
                             f"pos_conv_groups {self.pos_conv_groups}")

    @property
    def hop_samples(self) -> int:
        """Samples per output frame (product of the CNN strides; 320 = 20 ms for Base)."""
        return math.prod(s for _, _, s in self.conv_layers)

    @property
    def min_samples(self) -> int:
        """Shortest input giving one frame: the CNN's receptive field (400 samples for Base)."""
        field_ = 1
        for _, kernel, stride in reversed(self.conv_layers):
            field_ = (field_ - 1) * stride + kernel
        return field_

    def to_dict(self) -> dict:
        return asdict(self)


def conv_output_lengths(lens: Tensor, conv_layers) -> Tensor:
    """Frames after the CNN: ``floor((S - k) / s) + 1`` per layer (no padding), clamped at 0."""
    for _, kernel, stride in conv_layers:
        lens = torch.div(lens - kernel, stride, rounding_mode="floor") + 1
        lens = lens.clamp(min=0)
    return lens


def padding_mask(lens: Tensor, max_len: int) -> Tensor:
    """(B, T) bool, True at valid frames."""
    return torch.arange(max_len, device=lens.device)[None, :] < lens[:, None]


class MaskedGroupNorm(nn.GroupNorm):
    """GroupNorm with one group per channel whose statistics skip padded frames.

    fairseq's first CNN layer normalises each channel over all T frames, padding included; here
    only the valid ones count, so padding does not change the valid output.
    """

    def forward(self, x: Tensor, valid: Tensor | None = None) -> Tensor:  # (B, C, T), (B, T) bool
        if valid is None:
            return super().forward(x)
        w = valid[:, None, :].to(x.dtype)
        count = w.sum(-1, keepdim=True).clamp(min=1.0)
        mean = (x * w).sum(-1, keepdim=True) / count
        var = (((x - mean) * w) ** 2).sum(-1, keepdim=True) / count
        x = (x - mean) / torch.sqrt(var + self.eps)
        return x * self.weight[:, None] + self.bias[:, None]


class ConvLayer(nn.Module):
    """Conv1d (no bias) -> [group norm] -> GELU."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int, norm: bool) -> None:
        super().__init__()
        self.kernel, self.stride = kernel, stride
        self.conv = nn.Conv1d(in_ch, out_ch, kernel, stride=stride, bias=False)
        self.norm = MaskedGroupNorm(out_ch, out_ch, affine=True) if norm else None

    def forward(self, x: Tensor, lens: Tensor) -> tuple[Tensor, Tensor]:
        x = self.conv(x)
        lens = conv_output_lengths(lens, [(0, self.kernel, self.stride)])
        if self.norm is not None:
            x = self.norm(x, padding_mask(lens, x.shape[-1]))
        return nn.functional.gelu(x), lens


class FeatureExtractor(nn.Module):
    """The CNN: (B, S) waveform -> (B, C, T) features (fairseq ``ConvFeatureExtractionModel``)."""

    def __init__(self, conv_layers) -> None:
        super().__init__()
        layers, in_ch = [], 1
        for i, (ch, kernel, stride) in enumerate(conv_layers):
            layers.append(ConvLayer(in_ch, ch, kernel, stride, norm=i == 0))
            in_ch = ch
        self.conv_layers = nn.ModuleList(layers)

    def forward(self, audio: Tensor, audio_lens: Tensor) -> tuple[Tensor, Tensor]:
        x, lens = audio[:, None, :], audio_lens
        for layer in self.conv_layers:
            x, lens = layer(x, lens)
        return x, lens


class PositionalConv(nn.Module):
    """Grouped conv over time with weight norm (``dim=2``), even kernel trimmed, GELU.

    The weight is ``weight_g * weight_v / ||weight_v||`` with the norm over the channel axes of
    each kernel tap, as ``torch.nn.utils.weight_norm(conv, dim=2)`` in fairseq and HF: the two
    tensors are plain parameters here, so both checkpoint spellings map onto them
    (``weight_g/weight_v`` and ``parametrizations.weight.original0/original1``).
    """

    def __init__(self, dim: int, kernel: int, groups: int) -> None:
        super().__init__()
        self.kernel, self.groups = kernel, groups
        self.weight_g = nn.Parameter(torch.ones(1, 1, kernel))
        self.weight_v = nn.Parameter(torch.randn(dim, dim // groups, kernel) * math.sqrt(4.0 / (kernel * dim)))
        self.bias = nn.Parameter(torch.zeros(dim))

    def forward(self, x: Tensor) -> Tensor:  # (B, D, T) -> (B, D, T)
        v = self.weight_v
        weight = self.weight_g * v / v.norm(dim=(0, 1), keepdim=True)
        y = nn.functional.conv1d(x, weight, self.bias, padding=self.kernel // 2, groups=self.groups)
        if self.kernel % 2 == 0:  # fairseq SamePad: an even kernel gives one frame too many
            y = y[..., :-1]
        return nn.functional.gelu(y)


class SelfAttention(nn.Module):
    """Multi-head self-attention returning the attention probabilities (B, H, T, T)."""

    def __init__(self, dim: int, num_heads: int, dropout: float) -> None:
        super().__init__()
        self.num_heads, self.dropout = num_heads, dropout
        self.q_proj, self.k_proj = nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.v_proj, self.out_proj = nn.Linear(dim, dim), nn.Linear(dim, dim)

    def forward(self, x: Tensor, valid: Tensor) -> tuple[Tensor, Tensor]:
        b, t, d = x.shape
        h = self.num_heads
        q, k, v = (proj(x).view(b, t, h, d // h).transpose(1, 2) for proj in (self.q_proj, self.k_proj, self.v_proj))
        scores = (q * (d // h) ** -0.5) @ k.transpose(-1, -2)
        scores = scores.masked_fill(~valid[:, None, None, :], torch.finfo(scores.dtype).min)
        attn = scores.softmax(dim=-1)
        out = nn.functional.dropout(attn, self.dropout, self.training) @ v
        return self.out_proj(out.transpose(1, 2).reshape(b, t, d)), attn


class TransformerLayer(nn.Module):
    """Post-LN layer: ``x = LN(x + attn(x)); x = LN(x + fc2(gelu(fc1(x))))``."""

    def __init__(self, cfg: HubertConfig) -> None:
        super().__init__()
        self.attn = SelfAttention(cfg.dim, cfg.num_heads, cfg.attention_dropout)
        self.attn_norm = nn.LayerNorm(cfg.dim)
        self.fc1, self.fc2 = nn.Linear(cfg.dim, cfg.ffn_dim), nn.Linear(cfg.ffn_dim, cfg.dim)
        self.final_norm = nn.LayerNorm(cfg.dim)
        self.dropout, self.activation_dropout = nn.Dropout(cfg.dropout), nn.Dropout(cfg.activation_dropout)

    def forward(self, x: Tensor, valid: Tensor) -> tuple[Tensor, Tensor]:
        y, attn = self.attn(x, valid)
        x = self.attn_norm(x + self.dropout(y))
        y = self.fc2(self.activation_dropout(nn.functional.gelu(self.fc1(x))))
        return self.final_norm(x + self.dropout(y)), attn


@dataclass
class SslFeatures:
    """What :meth:`HubertModel.extract_features` returns.

    Attributes:
        post_cnn: (B, T, D) projected CNN features (after masking, before the positional conv).
        hidden: L + 1 tensors (B, T, D): the Transformer input (after positional conv and layer
            norm), then every layer's output (s3prl's ``hidden_states`` order).
        attn: L tensors (B, H, T, T), each layer's attention probabilities.
        lens: (B,) int64 valid frames; frames past them are padding (zeroed in ``hidden``).
    """

    post_cnn: Tensor
    hidden: list[Tensor]
    attn: list[Tensor]
    lens: Tensor

    @property
    def last(self) -> Tensor:
        return self.hidden[-1]


class HubertModel(nn.Module):
    """HuBERT encoder (Base by default; see :data:`speechkit.models.ssl.PRESETS`).

    Args:
        config: :class:`HubertConfig` or a dict of its fields.

    Example:
        >>> model = HubertModel(HubertConfig(conv_layers=[(16, 10, 5), (16, 4, 4)], dim=32, num_layers=2,
        ...                                  num_heads=4, ffn_dim=64, pos_conv_kernel=8, pos_conv_groups=4)).eval()
        >>> y, y_lens = model(torch.randn(2, 1600), torch.tensor([1600, 800]))
        >>> tuple(y.shape), y_lens.tolist()
        ((2, 79, 32), [79, 39])
    """

    def __init__(self, config: HubertConfig | dict | None = None) -> None:
        super().__init__()
        cfg = config if isinstance(config, HubertConfig) else HubertConfig(**(config or {}))
        self.config = cfg
        conv_dim = cfg.conv_layers[-1][0]
        self.feature_extractor = FeatureExtractor(cfg.conv_layers)
        self.feature_norm = nn.LayerNorm(conv_dim)
        self.feature_proj = nn.Linear(conv_dim, cfg.dim) if conv_dim != cfg.dim else None
        self.mask_emb = nn.Parameter(torch.empty(cfg.dim).uniform_())
        self.pos_conv = PositionalConv(cfg.dim, cfg.pos_conv_kernel, cfg.pos_conv_groups)
        self.encoder_norm = nn.LayerNorm(cfg.dim)
        self.layers = nn.ModuleList(TransformerLayer(cfg) for _ in range(cfg.num_layers))
        self.input_dropout = nn.Dropout(cfg.input_dropout)
        self.dropout = nn.Dropout(cfg.dropout)
        if cfg.num_classes > 0:
            self.final_proj = nn.Linear(cfg.dim, cfg.final_dim)
            self.label_embs = nn.Parameter(torch.randn(cfg.num_classes, cfg.final_dim) / math.sqrt(cfg.final_dim))
        else:
            self.final_proj, self.label_embs = None, None

    @property
    def dim(self) -> int:
        return self.config.dim

    @property
    def num_layers(self) -> int:
        return self.config.num_layers

    def output_lengths(self, audio_lens: Tensor) -> Tensor:
        """(B,) samples -> (B,) frames."""
        return conv_output_lengths(audio_lens, self.config.conv_layers)

    def cnn_features(self, audio: Tensor, audio_lens: Tensor) -> tuple[Tensor, Tensor]:
        """(B, S) -> projected CNN features (B, T, D) and lengths (B,)."""
        x, lens = self.feature_extractor(audio, audio_lens)
        x = self.feature_norm(x.transpose(1, 2))
        if self.feature_proj is not None:
            x = self.feature_proj(x)
        return x, lens

    def extract_features(self, audio: Tensor, audio_lens: Tensor | None = None, mask: Tensor | None = None,
                         num_layers: int | None = None) -> SslFeatures:
        """Every layer's output and attention map.

        Args:
            audio: (B, S) float waveform at ``config.sample_rate`` (HuBERT Base: not normalised).
            audio_lens: (B,) int64 valid samples; ``None``: all S.
            mask: (B, T) bool frames replaced by the learned mask embedding (pre-training,
                masking distillation); ``None``: none.
            num_layers: run only the first layers (the rest are left out of ``hidden``/``attn``).

        Returns:
            :class:`SslFeatures`.
        """
        if audio_lens is None:
            audio_lens = torch.full((audio.shape[0],), audio.shape[1], dtype=torch.int64, device=audio.device)
        x, lens = self.cnn_features(audio, audio_lens)
        valid = padding_mask(lens, x.shape[1])
        if mask is not None:
            x = torch.where(mask[..., None], self.mask_emb.to(x.dtype), x)
        post_cnn = x = self.input_dropout(x)
        x = x * valid[..., None].to(x.dtype)  # fairseq zeroes padding before the positional conv
        x = x + self.pos_conv(x.transpose(1, 2)).transpose(1, 2)
        x = self.dropout(self.encoder_norm(x))
        keep = valid[..., None].to(x.dtype)
        hidden, attn = [x * keep], []
        for layer in self.layers[: num_layers if num_layers is not None else len(self.layers)]:
            x, a = layer(x, valid)
            hidden.append(x * keep)
            attn.append(a)
        return SslFeatures(post_cnn, hidden, attn, lens)

    def forward(self, audio: Tensor, audio_lens: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """(B, S), (B,) -> last layer (B, T, D), frames (B,)."""
        features = self.extract_features(audio, audio_lens)
        return features.last, features.lens

    def logits(self, hidden: Tensor, temperature: float = 0.1) -> Tensor:
        """Pre-training logits (B, T, num_classes): cosine of the projected frame to each cluster
        embedding over ``temperature`` (fairseq ``compute_nce`` with all clusters as candidates)."""
        if self.final_proj is None:
            raise ValueError("this HubertModel has no pre-training head (num_classes=0)")
        proj = nn.functional.normalize(self.final_proj(hidden), dim=-1)
        embs = nn.functional.normalize(self.label_embs, dim=-1)
        return proj @ embs.t() / temperature

    def remove_pretraining_modules(self) -> None:
        """Drop the pre-training head (fairseq's method of the same name)."""
        self.final_proj, self.label_embs = None, None
        self.config.num_classes = 0

    def encoder_parameters(self) -> int:
        """Parameters without the pre-training head (what a downstream user keeps)."""
        head = {id(p) for m in (self.final_proj,) if m is not None for p in m.parameters()}
        if self.label_embs is not None:
            head.add(id(self.label_embs))
        return sum(p.numel() for p in self.parameters() if id(p) not in head)

    def macs(self, num_samples: int) -> int:
        """Multiply-accumulates of one forward pass on ``num_samples`` samples (no padding):
        convolutions, linear layers, attention scores and weighted sums; norms and activations
        are not counted."""
        cfg, total, length, in_ch = self.config, 0, num_samples, 1
        for ch, kernel, stride in cfg.conv_layers:
            length = (length - kernel) // stride + 1
            total += length * ch * in_ch * kernel
            in_ch = ch
        t, d = length, cfg.dim
        if self.feature_proj is not None:
            total += t * in_ch * d
        total += t * d * (d // cfg.pos_conv_groups) * cfg.pos_conv_kernel
        per_layer = 4 * t * d * d + 2 * t * t * d + 2 * t * d * cfg.ffn_dim
        return total + cfg.num_layers * per_layer
