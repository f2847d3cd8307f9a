"""Multi-head self-attention with rotary positions (RoFormer, Su et al. 2021, arXiv 2104.09864).

Shape legend: B batch, T frames, Tc cached frames, H heads, Dh head width, D = H * Dh.

Why rotary: the score of query i and key j depends only on ``i - j``, so a streaming cache can
keep keys *unrotated* and rotate the window ``[cache; chunk]`` at positions ``0 .. Tc + T - 1``
each step. No position counter is carried in the state and positions stay bounded on endless
streams, while the scores equal those of the whole utterance up to float rounding.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class RotaryEmbedding(nn.Module):
    """Cos/sin tables of rotary positions for heads of width ``head_dim`` (even)."""

    def __init__(self, head_dim: int, base: float = 10000.0) -> None:
        super().__init__()
        if head_dim % 2:
            raise ValueError(f"rotary positions need an even head width, got {head_dim}")
        inv_freq = 1.0 / base ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    def forward(self, num_positions: int, device=None) -> tuple[Tensor, Tensor]:
        """Return ``(cos, sin)``, each (num_positions, head_dim), for positions 0 .. n - 1."""
        positions = torch.arange(num_positions, device=device, dtype=torch.float32)
        angles = positions[:, None] * self.inv_freq[None, :]
        angles = torch.cat([angles, angles], dim=-1)
        return angles.cos(), angles.sin()


def apply_rotary(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate (B, H, T, Dh) by (T, Dh) tables (the "rotate half" layout of GPT-NeoX)."""
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return x * cos.to(x.dtype) + rotated * sin.to(x.dtype)


class MultiHeadSelfAttention(nn.Module):
    """Self-attention over a boolean mask, with rotary positions.

    Args:
        dim: model width D.
        num_heads: H (D must be a multiple of H, D / H even).
        dropout: attention-probability dropout in training.
        rotary_base: rotary frequency base.

    Example:
        >>> attn = MultiHeadSelfAttention(16, 2)
        >>> x, mask = torch.randn(2, 5, 16), torch.ones(2, 1, 5, 5, dtype=torch.bool)
        >>> tuple(attn(x, mask).shape)
        (2, 5, 16)
        >>> q, k, v = attn.project(x)  # what forward attends with, for relation distillation
        >>> tuple(q.shape)
        (2, 2, 5, 8)
        >>> torch.equal(attn.attend(q, k, v, mask), attn(x, mask))
        True
    """

    def __init__(self, dim: int, num_heads: int, dropout: float = 0.0, rotary_base: float = 10000.0) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"width {dim} is not a multiple of {num_heads} heads")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.dropout = dropout
        self.in_proj = nn.Linear(dim, 3 * dim)
        self.out_proj = nn.Linear(dim, dim)
        self.rotary = RotaryEmbedding(self.head_dim, rotary_base)

    def _heads(self, x: Tensor) -> Tensor:
        """(B, T, D) -> (B, H, T, Dh)."""
        b, t, _ = x.shape
        return x.view(b, t, self.num_heads, self.head_dim).transpose(1, 2)

    def project(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Per-head projections ``(q, k, v)``, each (B, H, T, Dh), of (B, T, D).

        Taken *before* rotary positions (content only): what layer-to-layer distillation of
        Q-Q, K-K, V-V relations (MiniLM) compares.
        """
        return tuple(self._heads(p) for p in self.in_proj(x).chunk(3, dim=-1))

    def attend(self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor) -> Tensor:
        """Rotate q (last Tq positions) and k (all Tk positions), attend, merge heads -> (B, Tq, D).

        Args:
            q: (B, H, Tq, Dh) unrotated queries.
            k, v: (B, H, Tk, Dh) unrotated keys and values (Tk >= Tq; the queries are the last Tq).
            mask: (B, 1, Tq, Tk) bool, True = may attend.
        """
        tq, tk = q.shape[2], k.shape[2]
        cos, sin = self.rotary(tk, device=q.device)
        q = apply_rotary(q, cos[tk - tq:], sin[tk - tq:])
        k = apply_rotary(k, cos, sin)
        out = nn.functional.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0
        )
        b = out.shape[0]
        return self.out_proj(out.transpose(1, 2).reshape(b, tq, -1))

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        """Attend over the whole (padded) sequence: (B, T, D) under a (B, 1, T, T) bool mask
        (True = may attend, see :mod:`.masks`) -> (B, T, D). The projections it attends with
        come from :meth:`project`."""
        return self.attend(*self.project(x), mask)

    def streaming_forward(self, x: Tensor, mask: Tensor, kv_cache: Tensor) -> tuple[Tensor, Tensor]:
        """Attend from one chunk to ``[cached frames; chunk]``.

        Args:
            x: (B, T, D) the chunk.
            mask: (B, 1, T, Tc + T) bool over the window.
            kv_cache: (B, Tc, 2D) unrotated keys and values of the cached frames, concatenated
                on the last axis.

        Returns:
            ``(out, kv_window)``: (B, T, D) and (B, Tc + T, 2D), the keys and values of the whole
            window, from which the caller keeps the latest frames as the next cache.
        """
        q, k_new, v_new = self.in_proj(x).chunk(3, dim=-1)
        kv_window = torch.cat([kv_cache, torch.cat([k_new, v_new], dim=-1)], dim=1)
        k, v = kv_window.chunk(2, dim=-1)
        out = self.attend(self._heads(q), self._heads(k), self._heads(v), mask)
        return out, kv_window
