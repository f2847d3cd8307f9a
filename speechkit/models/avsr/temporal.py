"""Temporal-dynamics predictors on the A2V stream output (methods.md section 6.3).

Shape legend: B batch, T frames, D width, h = D // 3 aggregated width, N samples.

An aggregator (Conv1d D -> h, kernel 3, no padding, GELU) turns the video stream into ``u_t``
(B, T - 2, h); a second one turns the audio (V2A) stream into ``w_t``. Three linear heads score
windows drawn by :mod:`speechkit.data.avsr_dynamics`: context order ``[u_i ; w_j]`` (2h -> 1),
playback direction and playback speed ``[u_a ; u_b ; u_c]`` (3h -> 1). Clips too short for a
task give no samples for it (direction needs T - 2 >= 3, speed T - 2 >= 5, as the paper's
T > 5 and T > 7).

Example:
    >>> import torch
    >>> heads = TemporalDynamicsHeads(48)
    >>> out = heads(torch.randn(2, 12, 48), torch.randn(2, 12, 48), torch.tensor([12, 6]))
    >>> [tuple(out[k][0].shape) for k in ("order", "direction", "speed")]
    [(14,), (20,), (12,)]
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from speechkit.data.avsr_dynamics import direction_samples, order_samples, speed_samples


class TemporalDynamicsHeads(nn.Module):
    """The aggregators and the three binary heads.

    Args:
        dim: D of the streams.
        hidden: h (default ``D // 3``, as the paper's 1024 -> 341).
    """

    def __init__(self, dim: int, hidden: int | None = None) -> None:
        super().__init__()
        hidden = hidden or max(dim // 3, 1)
        self.video_agg = nn.Sequential(nn.Conv1d(dim, hidden, 3), nn.GELU())
        self.audio_agg = nn.Sequential(nn.Conv1d(dim, hidden, 3), nn.GELU())
        self.order = nn.Linear(2 * hidden, 1)
        self.direction = nn.Linear(3 * hidden, 1)
        self.speed = nn.Linear(3 * hidden, 1)

    def forward(self, video: Tensor, audio: Tensor, lens: Tensor,
                generator: torch.Generator | None = None) -> dict[str, tuple[Tensor, Tensor]]:
        """(B, T, D) A2V output, (B, T, D) V2A output, int64 (B,) ->
        ``{"order"|"direction"|"speed": (logits (N,), labels float (N,))}`` over all items."""
        u = self.video_agg(video.transpose(1, 2)).transpose(1, 2)
        w = self.audio_agg(audio.transpose(1, 2)).transpose(1, 2)
        out = {k: ([], []) for k in ("order", "direction", "speed")}
        for b, n in enumerate((lens - 2).clamp(min=0).tolist()):
            ub, wb = u[b, :n], w[b, :n]
            for name, (idx, labels) in (
                ("order", order_samples(n, generator) if n >= 2 else _empty(2)),
                ("direction", direction_samples(n) if n >= 3 else _empty(3)),
                ("speed", speed_samples(n) if n >= 5 else _empty(3)),
            ):
                if len(labels) == 0:
                    continue
                idx = idx.to(u.device)
                if name == "order":
                    feats = torch.cat([ub[idx[:, 0]], wb[idx[:, 1]]], dim=-1)
                else:
                    feats = ub[idx].flatten(1)
                out[name][0].append(getattr(self, name)(feats).squeeze(-1))
                out[name][1].append(labels.to(u.device, torch.float32))
        result = {k: (torch.cat(v[0]) if v[0] else u.new_zeros(0), torch.cat(v[1]) if v[1] else u.new_zeros(0))
                  for k, v in out.items()}
        return result


def _empty(width: int) -> tuple[Tensor, Tensor]:
    return torch.zeros(0, width, dtype=torch.int64), torch.zeros(0, dtype=torch.int64)
