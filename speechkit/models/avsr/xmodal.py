"""Cross-modal attention streams (Kim, Jang et al., SLT 2024, arXiv 2407.03563; methods.md section 6.3).

Shape legend: B batch, T frames (25 Hz), D width.

An :class:`XmodalStream` refines a query stream with another modality: its input is a *detached*
copy of the query features; the key/value stream is detached too and gets a convolutional
positional embedding (grouped Conv1d, kernel 16, same padding, GELU); layer 1 is self-attention
on the query, layer 2 cross-attention to the keys/values ("sa-ca"). Each layer is the paper's
"simpleattention": pre-LN multi-head attention, dropout, LayerNorm, Linear, GELU, dropout, with no
internal residual. The caller adds the stream output to the original features
(``x + stream(x, kv)``), so the main path keeps its gradient.

Deviation: the positional convolution has no weight normalisation (plain weights export to ONNX
without a parametrisation). Padded key frames are zeroed before the convolution and masked in
attention, so a padded batch equals its items.

Example:
    >>> import torch
    >>> stream = XmodalStream(32, num_heads=4)
    >>> q, kv, lens = torch.randn(2, 7, 32), torch.randn(2, 7, 32), torch.tensor([7, 4])
    >>> tuple(stream(q, kv, lens).shape)
    (2, 7, 32)
"""

from __future__ import annotations

from torch import Tensor, nn

from speechkit.models.asr.masks import lengths_to_mask


class SimpleAttention(nn.Module):
    """Pre-LN multi-head attention -> dropout -> LayerNorm -> Linear -> GELU -> dropout (no residual)."""

    def __init__(self, dim: int, num_heads: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.norm_q, self.norm_kv = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.q, self.k, self.v, self.o = (nn.Linear(dim, dim) for _ in range(4))
        self.post = nn.Sequential(nn.Dropout(dropout), nn.LayerNorm(dim), nn.Linear(dim, dim), nn.GELU(),
                                  nn.Dropout(dropout))

    def forward(self, x: Tensor, kv: Tensor, key_valid: Tensor) -> Tensor:
        """(B, Tq, D) attends to (B, Tk, D) under a bool (B, Tk) mask of valid keys -> (B, Tq, D)."""
        b, tq, d = x.shape
        h = self.num_heads
        x, kv = self.norm_q(x), self.norm_kv(kv)
        q = self.q(x).reshape(b, tq, h, d // h).transpose(1, 2)
        k = self.k(kv).reshape(b, -1, h, d // h).transpose(1, 2)
        v = self.v(kv).reshape(b, -1, h, d // h).transpose(1, 2)
        scores = q @ k.transpose(-1, -2) / (d // h) ** 0.5
        scores = scores.masked_fill(~key_valid[:, None, None, :], -1e4)
        out = (scores.softmax(-1) @ v).transpose(1, 2).reshape(b, tq, d)
        return self.post(self.o(out))


class XmodalStream(nn.Module):
    """Self-attention on the query, then cross-attention to the key/value modality ("sa-ca").

    Args:
        dim: D (query and key/value width).
        num_heads: attention heads.
        pos_kernel: kernel of the key/value positional convolution (16 in the paper).
        pos_groups: its groups (16 in the paper; must divide D).
        dropout: dropout after attention and in the output MLP.
    """

    def __init__(self, dim: int, num_heads: int = 4, pos_kernel: int = 16, pos_groups: int = 16,
                 dropout: float = 0.1) -> None:
        super().__init__()
        groups = pos_groups if dim % pos_groups == 0 else 1
        self.pos_conv = nn.Conv1d(dim, dim, pos_kernel, padding=pos_kernel // 2, groups=groups)
        self.pos_trim = 1 if pos_kernel % 2 == 0 else 0  # SamePad: an even kernel gives one extra frame
        self.self_attn = SimpleAttention(dim, num_heads, dropout)
        self.cross_attn = SimpleAttention(dim, num_heads, dropout)

    def forward(self, query: Tensor, kv: Tensor, lens: Tensor) -> Tensor:
        """(B, T, D) queries, (B, T, D) keys/values, int64 (B,) valid frames of both -> (B, T, D).

        Both inputs are detached here (the stream learns from its own losses and, through the
        caller's residual, from the main loss)."""
        valid = lengths_to_mask(lens, query.shape[1])
        query = query.detach() * valid[..., None]
        kv = kv.detach() * valid[..., None]
        pos = self.pos_conv(kv.transpose(1, 2))
        if self.pos_trim:
            pos = pos[..., :-1]
        kv = kv + nn.functional.gelu(pos.transpose(1, 2))
        x = self.self_attn(query, query, valid)
        return self.cross_attn(x, kv, valid)
