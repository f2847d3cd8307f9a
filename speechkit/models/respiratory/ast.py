"""Audio Spectrogram Transformer (Gong, Chung, Glass, Interspeech 2021, arXiv 2104.01778).

The DeiT-style ViT that Patch-Mix CL (Bae et al., Interspeech 2023) fine-tunes on ICBHI:

* the fbank (B, T, F) is read as a one-channel image (B, 1, F, T) and cut into 16x16 patches
  with **stride 10** in both axes (overlapping): ``f = (F - 16) // 10 + 1``,
  ``t = (T - 16) // 10 + 1`` (128 bins x 798 frames -> 12 x 79 = 948 patches);
* patch tokens are ordered frequency-major (token ``i * t + j`` is frequency row ``i``, time
  column ``j``), preceded by a [CLS] and a distillation token, plus learnt positional
  embeddings for the ``(f, t)`` grid of the configured input size;
* pre-norm transformer blocks (LayerNorm eps 1e-6, GELU MLP), a final LayerNorm, and the
  **mean of the [CLS] and distillation outputs** as the clip feature;
* head: LayerNorm + Linear (AST's ``mlp_head``).

Patch-Mix needs the tokens between the patch projection and the rest, so the forward pass is
split into :meth:`AST.embed` (feats -> patch tokens), :meth:`AST.encode` (patch tokens ->
pooled feature) and :attr:`AST.head`; ``forward`` chains them. Pretrained AST checkpoints
(original and Hugging Face layouts) load with
:func:`speechkit.models.respiratory.checkpoint.load_ast_checkpoint`.

Shapes: B batch, T frames, F mel bins, P patches, D width, C classes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn

from speechkit.errors import SpeechkitError

PATCH = 16
STRIDE = 10


def grid_size(num_mel_bins: int, num_frames: int, patch: int = PATCH, stride: int = STRIDE) -> tuple[int, int]:
    """Patch grid ``(f, t)`` of a (num_frames, num_mel_bins) input: ``(n - patch) // stride + 1``."""
    return (num_mel_bins - patch) // stride + 1, (num_frames - patch) // stride + 1


@dataclass
class AstConfig:
    """AST dimensions. Presets: :meth:`tiny` (CPU), :meth:`base` (DeiT-base-384, the paper's)."""

    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_ratio: float = 4.0
    num_mel_bins: int = 128
    input_frames: int = 798
    dropout: float = 0.0

    @classmethod
    def tiny(cls, **kwargs) -> AstConfig:
        """A CPU-sized AST: width 64, 4 blocks, 4 heads (0.28 M parameters at 128 bins x 798 frames)."""
        return cls(**{"embed_dim": 64, "depth": 4, "num_heads": 4, **kwargs})

    @classmethod
    def base(cls, **kwargs) -> AstConfig:
        """DeiT-base-384 (width 768, 12 blocks, 12 heads; ~86 M parameters), as in AST."""
        return cls(**kwargs)


class Attention(nn.Module):
    """Multi-head self-attention with a fused qkv projection (timm's ``Attention`` names)."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        if dim % num_heads:
            raise SpeechkitError(f"AST: embed_dim {dim} is not a multiple of num_heads {num_heads}")
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        """x (B, N, D) -> (B, N, D)."""
        b, n, d = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.num_heads, d // self.num_heads).permute(2, 0, 3, 1, 4)
        out = nn.functional.scaled_dot_product_attention(q, k, v)  # (B, H, N, D/H)
        return self.proj(out.transpose(1, 2).reshape(b, n, d))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block: ``x + attn(norm1(x))``, then ``x + mlp(norm2(x))``."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, dropout: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.drop(self.attn(self.norm1(x)))
        return x + self.drop(self.mlp(self.norm2(x)))


class PatchEmbed(nn.Module):
    """16x16 patches with stride 10: (B, T, F) fbank -> (B, P, D) tokens, frequency-major."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(1, dim, kernel_size=PATCH, stride=STRIDE)

    def forward(self, feats: Tensor) -> Tensor:
        image = feats.transpose(1, 2).unsqueeze(1)  # (B, 1, F, T)
        return self.proj(image).flatten(2).transpose(1, 2)  # (B, f * t, D)


class AST(nn.Module):
    """Audio Spectrogram Transformer classifier: fbank (B, T, F) -> logits (B, C).

    Args:
        num_classes: C (linked from the data module in recipes).
        embed_dim, depth, num_heads, mlp_ratio: transformer size (see :class:`AstConfig`).
        num_mel_bins: F of the input.
        input_frames: T of the input (798 for 8 s at 10 ms); fixes the positional grid.
        dropout: after attention and MLP.
        preset: ``tiny`` or ``base`` fills the size arguments left at ``None``.
        pretrained: a local AST checkpoint (original or Hugging Face layout) to start from
            (:func:`~speechkit.models.respiratory.checkpoint.load_ast_checkpoint`).

    Example:
        >>> model = AST(num_classes=4, preset="tiny", num_mel_bins=32, input_frames=100).eval()
        >>> feats = torch.randn(2, 100, 32)
        >>> model(feats).shape, model.grid, model.embed(feats).shape
        (torch.Size([2, 4]), (2, 9), torch.Size([2, 18, 64]))
    """

    def __init__(
        self,
        num_classes: int = 4,
        embed_dim: int | None = None,
        depth: int | None = None,
        num_heads: int | None = None,
        mlp_ratio: float = 4.0,
        num_mel_bins: int = 128,
        input_frames: int = 798,
        dropout: float = 0.0,
        preset: str = "tiny",
        pretrained: str | None = None,
    ) -> None:
        super().__init__()
        if preset not in ("tiny", "base"):
            raise SpeechkitError(f"AST preset must be 'tiny' or 'base', got {preset!r}")
        sizes = {k: v for k, v in dict(embed_dim=embed_dim, depth=depth, num_heads=num_heads).items() if v is not None}
        cfg = getattr(AstConfig, preset)(mlp_ratio=mlp_ratio, num_mel_bins=num_mel_bins, input_frames=input_frames,
                                         dropout=dropout, **sizes)
        self.cfg, self.num_classes = cfg, num_classes
        self.grid = grid_size(cfg.num_mel_bins, cfg.input_frames)
        if min(self.grid) < 1:
            raise SpeechkitError(f"AST needs at least 16 mel bins and 16 frames, got {num_mel_bins} x {input_frames}")
        d = cfg.embed_dim
        self.patch_embed = PatchEmbed(d)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
        self.dist_token = nn.Parameter(torch.zeros(1, 1, d))
        self.pos_embed = nn.Parameter(torch.zeros(1, self.num_patches + 2, d))
        self.pos_drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(d, cfg.num_heads, cfg.mlp_ratio, cfg.dropout) for _ in range(cfg.depth))
        self.norm = nn.LayerNorm(d, eps=1e-6)
        self.head = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, num_classes))
        for p in (self.cls_token, self.dist_token, self.pos_embed):
            nn.init.trunc_normal_(p, std=0.02)
        if pretrained:
            from speechkit.models.respiratory.checkpoint import load_ast_checkpoint

            load_ast_checkpoint(self, pretrained)

    @property
    def num_patches(self) -> int:
        return self.grid[0] * self.grid[1]

    @property
    def feature_dim(self) -> int:
        """D, the width of :meth:`encode`'s output (what a Patch-Mix CL projector takes)."""
        return self.cfg.embed_dim

    def config(self) -> dict:
        """The network's size (for export metadata)."""
        return {**asdict(self.cfg), "num_classes": self.num_classes}

    def embed(self, feats: Tensor) -> Tensor:
        """feats (B, T, F) -> patch tokens (B, P, D) after the patch projection (Patch-Mix's input).

        Raises:
            SpeechkitError: ``(T, F)`` differs from the configured input size.
        """
        expected = (self.cfg.input_frames, self.cfg.num_mel_bins)
        if tuple(feats.shape[1:]) != expected:
            raise SpeechkitError(
                f"AST was built for {expected[0]} frames x {expected[1]} bins, got {tuple(feats.shape[1:])}; "
                "set input_frames / num_mel_bins to the front-end's output for the clip length"
            )
        return self.patch_embed(feats)

    def encode(self, patches: Tensor) -> Tensor:
        """patch tokens (B, P, D) -> clip feature (B, D): mean of the [CLS] and distillation outputs."""
        b = patches.shape[0]
        tokens = torch.cat([self.cls_token.expand(b, -1, -1), self.dist_token.expand(b, -1, -1), patches], dim=1)
        x = self.pos_drop(tokens + self.pos_embed)
        for block in self.blocks:
            x = block(x)
        x = self.norm(x)
        return (x[:, 0] + x[:, 1]) / 2

    def forward(self, feats: Tensor) -> Tensor:
        """feats (B, T, F) -> logits (B, C)."""
        return self.head(self.encode(self.embed(feats)))
