"""Labels of the three temporal-dynamics tasks (Kim, Jang et al., SLT 2024; methods.md 6.3).

All three work on per-frame video features ``u_t`` (and audio features ``w_t``) of one clip of
``length`` frames and are binary:

* **playback direction**: a window ``[u_t, u_t+1, u_t+2]`` is *forward* (label 1); the same frames
  played backwards ``[u_t+2, u_t+1, u_t]`` are *reversed* (label 0);
* **playback speed**: ``[u_t, u_t+1, u_t+2]`` is *normal* (label 1); ``[u_t, u_t+2, u_t+4]``, the
  clip at 2x, is *fast* (label 0);
* **video-audio context order**: time indices are permuted at random and paired, each pair
  sorted (i < j); ``[u_i ; w_j]`` is *normal* (label 1) and ``[u_j ; w_i]`` *reverse* (label 0).

The labels are computed from the frame indices themselves (:func:`direction_label`,
:func:`speed_label`), so a reversed clip is labelled reversed and a 2x clip fast whatever
builds the windows.

Example:
    >>> direction_label([3, 4, 5]), direction_label([5, 4, 3]), speed_label([0, 1, 2]), speed_label([0, 2, 4])
    (1, 0, 1, 0)
    >>> windows, labels = direction_samples(5)
    >>> windows.tolist(), labels.tolist()
    ([[0, 1, 2], [1, 2, 3], [2, 3, 4], [2, 1, 0], [3, 2, 1], [4, 3, 2]], [1, 1, 1, 0, 0, 0])
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

FORWARD, REVERSED = 1, 0
NORMAL, FAST = 1, 0


def direction_label(indices: Sequence[int]) -> int:
    """1 (forward) if the frame indices increase, 0 (reversed) if they decrease.

    Raises:
        ValueError: indices that neither increase nor decrease throughout.
    """
    steps = [b - a for a, b in zip(indices, indices[1:])]
    if steps and all(s > 0 for s in steps):
        return FORWARD
    if steps and all(s < 0 for s in steps):
        return REVERSED
    raise ValueError(f"frame indices {list(indices)} are not monotonic")


def speed_label(indices: Sequence[int]) -> int:
    """1 (normal) if consecutive frames are 1 apart, 0 (fast) if 2 apart (2x playback).

    Raises:
        ValueError: any other spacing.
    """
    steps = {abs(b - a) for a, b in zip(indices, indices[1:])}
    if steps == {1}:
        return NORMAL
    if steps == {2}:
        return FAST
    raise ValueError(f"frame indices {list(indices)} are neither 1x nor 2x playback")


def _windows(length: int, step: int) -> Tensor:
    starts = torch.arange(max(length - 2 * step, 0))
    return torch.stack([starts, starts + step, starts + 2 * step], dim=1)


def direction_samples(length: int) -> tuple[Tensor, Tensor]:
    """Forward windows then their reversals: int64 (2N, 3) frame indices and (2N,) labels, N = length - 2."""
    forward = _windows(length, 1)
    windows = torch.cat([forward, forward.flip(1)])
    return windows, torch.tensor([direction_label(w) for w in windows.tolist()], dtype=torch.int64)


def speed_samples(length: int) -> tuple[Tensor, Tensor]:
    """Normal windows (step 1) for every start that also has a 2x window, then the 2x windows:
    int64 (2N, 3) and (2N,) labels, N = length - 4."""
    fast = _windows(length, 2)
    windows = torch.cat([_windows(length, 1)[: len(fast)], fast])
    return windows, torch.tensor([speed_label(w) for w in windows.tolist()], dtype=torch.int64)


def order_samples(length: int, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """Video-audio order pairs: int64 (2P, 2) ``(video index, audio index)`` and (2P,) labels.

    A random permutation of ``range(length)`` is cut into P = length // 2 pairs, each sorted so
    that i < j; normal ``(i, j)`` is label 1, reverse ``(j, i)`` label 0.
    """
    perm = torch.randperm(length, generator=generator)[: 2 * (length // 2)].reshape(-1, 2)
    pairs = perm.sort(dim=1).values
    samples = torch.cat([pairs, pairs.flip(1)])
    labels = torch.cat([torch.ones(len(pairs), dtype=torch.int64), torch.zeros(len(pairs), dtype=torch.int64)])
    return samples, labels
