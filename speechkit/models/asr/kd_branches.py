"""Training-only branches for distilling a full-context teacher into a streaming Conformer.

Shim et al., Interspeech 2023, arXiv 2308.16415: teacher and student layers see different
context, so the student's streaming layer l is not compared with teacher layer m directly but
through an **auxiliary non-streaming branch**: a projection to the teacher width, one
full-context Transformer layer (z_l, compared with the teacher's h_m, including Q/K/V relations),
and a uni-directional LSTM head (r_l) for the APC loss (r_l at frame t predicts h_m at t + N).
The branches are discarded after training: the student alone is the streaming model.

Shape legend: B batch, T' encoder frames, Ds student width, Dt teacher width, H heads.

Where the LSTM reads (not verified in the paper, methods.md 4.3 [U]): the reimplementation puts
it on the full-context z_l and masks the next N frames in the auxiliary attention so that z_l
cannot see the target. We feed the LSTM the *projected streaming features* instead: they never
see past the chunk edge, so APC cannot copy the target and no extra mask is needed, and the APC
gradient reaches exactly the streaming layers it is meant to teach to anticipate.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from speechkit.models.asr.attention import MultiHeadSelfAttention
from speechkit.models.asr.masks import attention_mask


def default_layer_map(num_student_layers: int, num_teacher_layers: int) -> list[tuple[int, int]]:
    """Every second student layer -> the teacher layer at the same relative depth (0-based).

    Student layer ``s`` (the 2nd, 4th, ... layer: ``s = 1, 3, ...``) maps to teacher layer
    ``round((s + 1) * Nt / Ns) - 1``.

    Example:
        >>> default_layer_map(6, 12)
        [(1, 3), (3, 7), (5, 11)]
        >>> default_layer_map(5, 5)
        [(1, 1), (3, 3)]
    """
    return [(s, max(0, round((s + 1) * num_teacher_layers / num_student_layers) - 1))
            for s in range(1, num_student_layers, 2)]


class FullContextLayer(nn.Module):
    """Pre-norm Transformer layer at full context (padding masked): x + MHSA, x + FF.

    ``forward`` returns the output and its attention's ``(q, k, v)`` (B, H, T', Dh) for the
    relation loss.
    """

    def __init__(self, dim: int, num_heads: int, ffn_dim: int) -> None:
        super().__init__()
        self.norm_attn = nn.LayerNorm(dim)
        self.attn = MultiHeadSelfAttention(dim, num_heads)
        self.ff = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, ffn_dim), nn.SiLU(), nn.Linear(ffn_dim, dim))

    def forward(self, x: Tensor, lens: Tensor) -> tuple[Tensor, tuple[Tensor, Tensor, Tensor]]:
        qkv = self.attn.project(self.norm_attn(x))
        x = x + self.attn.attend(*qkv, attention_mask(lens, x.shape[1]))
        return x + self.ff(x), qkv


@dataclass
class BranchOutputs:
    """What one branch gives the losses (all (B, T', Dt) or Q/K/V (B, H, T', Dh)).

    Attributes:
        proj: the student layer projected to the teacher width (streaming: causal up to the
            chunk edge); what "layer KD without auxiliary layers" compares with the teacher.
        aux: z, the auxiliary full-context layer's output (None without it).
        aux_qkv: its attention projections (None without it).
        apc: r, the LSTM head's output (None without APC).
    """

    proj: Tensor
    aux: Tensor | None
    aux_qkv: tuple[Tensor, Tensor, Tensor] | None
    apc: Tensor | None


class KdBranch(nn.Module):
    """One student layer's branch: Linear Ds->Dt, [full-context layer], [LSTM Dt->Dt]."""

    def __init__(self, student_dim: int, teacher_dim: int, num_heads: int, ffn_dim: int, aux: bool, apc: bool) -> None:
        super().__init__()
        self.proj = nn.Linear(student_dim, teacher_dim)
        self.aux = FullContextLayer(teacher_dim, num_heads, ffn_dim) if aux else None
        self.apc = nn.LSTM(teacher_dim, teacher_dim, batch_first=True) if apc else None

    def forward(self, hidden: Tensor, lens: Tensor) -> BranchOutputs:
        proj = self.proj(hidden)
        aux, aux_qkv = self.aux(proj, lens) if self.aux is not None else (None, None)
        apc = self.apc(proj)[0] if self.apc is not None else None
        return BranchOutputs(proj, aux, aux_qkv, apc)


class KdBranches(nn.Module):
    """The auxiliary branches of every mapped student layer.

    Args:
        student_dim: Ds.
        teacher_dim: Dt.
        layer_map: ``(student layer, teacher layer)`` 0-based pairs (:func:`default_layer_map`).
        num_heads: heads of each auxiliary attention (Dt / heads even).
        ffn_dim: feed-forward width of the auxiliary layer (0: 4 Dt).
        aux: add the full-context layer (False: projection only, "layer KD direct").
        apc: add the LSTM head.

    Example:
        >>> import torch
        >>> branches = KdBranches(32, 48, [(1, 3)], num_heads=2, aux=True, apc=True)
        >>> out = branches([torch.randn(2, 7, 32)] * 2, torch.tensor([7, 5]))
        >>> tuple(out[0].aux.shape), tuple(out[0].apc.shape), tuple(out[0].aux_qkv[0].shape)
        ((2, 7, 48), (2, 7, 48), (2, 2, 7, 24))
    """

    def __init__(
        self,
        student_dim: int,
        teacher_dim: int,
        layer_map: list[tuple[int, int]],
        num_heads: int = 4,
        ffn_dim: int = 0,
        aux: bool = True,
        apc: bool = False,
    ) -> None:
        super().__init__()
        self.layer_map = [(int(s), int(t)) for s, t in layer_map]
        self.branches = nn.ModuleList(
            KdBranch(student_dim, teacher_dim, num_heads, ffn_dim or 4 * teacher_dim, aux, apc) for _ in self.layer_map
        )

    def forward(self, student_hidden: list[Tensor], lens: Tensor) -> list[BranchOutputs]:
        """Student per-layer outputs (N tensors (B, T', Ds)), int64 (B,) -> one output per pair."""
        return [branch(student_hidden[s], lens) for branch, (s, _) in zip(self.branches, self.layer_map)]
