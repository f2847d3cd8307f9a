"""Attention masks for chunked (streaming) encoders, and the dynamic chunk size draw.

Masks are boolean with ``True`` = "may attend" (the convention of
``torch.nn.functional.scaled_dot_product_attention``). Encoder frames are split into chunks of
``C`` frames starting at frame 0; a frame sees every frame of its own chunk and of the ``L``
chunks before it (``L = -1``: all of them). With ``C = -1`` every frame sees every frame.
This is WeNet U2's chunk mask (Zhang et al. 2020, arXiv 2012.05481).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


def lengths_to_mask(lens: Tensor, max_len: int) -> Tensor:
    """(B, T) bool, True at the first ``lens[b]`` frames of each row (the valid ones)."""
    return torch.arange(max_len, device=lens.device)[None, :] < lens[:, None]


def chunk_mask(num_frames: int, chunk_size: int, left_chunks: int, device=None) -> Tensor:
    """(T, T) bool: may query frame i attend to key frame j under chunks of ``chunk_size``.

    Args:
        num_frames: T.
        chunk_size: C frames per chunk; ``<= 0`` for full context (all True).
        left_chunks: L chunks of left context; ``< 0`` for all.

    Example:
        >>> chunk_mask(4, 2, 0).int().tolist()
        [[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 1], [0, 0, 1, 1]]
    """
    if chunk_size <= 0:
        return torch.ones(num_frames, num_frames, dtype=torch.bool, device=device)
    chunk_index = torch.arange(num_frames, device=device) // chunk_size
    query, key = chunk_index[:, None], chunk_index[None, :]
    mask = key <= query
    if left_chunks >= 0:
        mask &= key >= query - left_chunks
    return mask


def attention_mask(lens: Tensor, max_len: int, chunk_size: int = -1, left_chunks: int = -1) -> Tensor:
    """(B, 1, T, T) bool: the chunk mask, restricted to valid keys, plus the diagonal.

    The diagonal is always allowed so that no row is empty (an empty row makes softmax NaN);
    it only matters for padded queries, whose outputs are ignored.

    Args:
        lens: int64 (B,) valid frames.
        max_len: T (padded length).
        chunk_size, left_chunks: as in :func:`chunk_mask`.
    """
    mask = chunk_mask(max_len, chunk_size, left_chunks, lens.device)[None] & lengths_to_mask(lens, max_len)[:, None, :]
    mask |= torch.eye(max_len, dtype=torch.bool, device=lens.device)[None]
    return mask.unsqueeze(1)


def streaming_attention_mask(cached_frames: Tensor, cache_len: int, chunk_lens: Tensor, chunk_len: int) -> Tensor:
    """(B, 1, Tq, cache_len + Tq) bool for one chunk attending to [cache; chunk].

    The cache is right-aligned: its last ``cached_frames[b]`` slots hold real frames.

    Args:
        cached_frames: (B,) number of valid cache slots (any numeric dtype).
        cache_len: cache slots (L * C).
        chunk_lens: int64 (B,) valid frames of the chunk.
        chunk_len: Tq, frames of the (padded) chunk.
    """
    device = chunk_lens.device
    cache_valid = torch.arange(cache_len, device=device)[None, :] >= cache_len - cached_frames[:, None]
    key_valid = torch.cat([cache_valid, lengths_to_mask(chunk_lens, chunk_len)], dim=1)
    query = torch.arange(chunk_len, device=device)[:, None] + cache_len
    diagonal = query == torch.arange(cache_len + chunk_len, device=device)[None, :]
    return (key_valid[:, None, :] | diagonal[None]).unsqueeze(1)


@dataclass
class DynamicChunk:
    """Dynamic chunk training (WeNet U2): draw a chunk size per batch.

    One model then serves several latencies; decoding picks the chunk size.

    Attributes:
        full_context_prob: probability of full context for a batch (WeNet: about 0.5).
        max_chunk_size: otherwise C is uniform in ``[min_chunk_size, max_chunk_size]`` encoder
            frames (25 frames = 1 s at 40 ms, WeNet's value).
        max_left_chunks: ``-1``: unlimited left context in training; ``>= 0``: L uniform in
            ``[0, max_left_chunks]`` (WeNet's ``use_dynamic_left_chunk``), for models decoded
            with a bounded left context.
        min_chunk_size: smallest chunk drawn (WeNet: 1). A model only ever decoded at, say,
            160-640 ms chunks learns those faster when training skips the 40-120 ms ones.
    """

    full_context_prob: float = 0.5
    max_chunk_size: int = 25
    max_left_chunks: int = -1
    min_chunk_size: int = 1

    def __post_init__(self) -> None:
        if not 1 <= self.min_chunk_size <= self.max_chunk_size:
            raise ValueError(f"chunk sizes: expected 1 <= min_chunk_size ({self.min_chunk_size}) "
                             f"<= max_chunk_size ({self.max_chunk_size})")

    def sample(self, generator: torch.Generator | None = None) -> tuple[int, int]:
        """Return ``(chunk_size, left_chunks)``; ``(-1, -1)`` means full context."""
        if torch.rand((), generator=generator).item() < self.full_context_prob:
            return -1, -1
        chunk_size = int(torch.randint(self.min_chunk_size, self.max_chunk_size + 1, (), generator=generator))
        if self.max_left_chunks < 0:
            return chunk_size, -1
        return chunk_size, int(torch.randint(0, self.max_left_chunks + 1, (), generator=generator))
