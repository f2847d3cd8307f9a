"""Few-shot episodes: N-way K-shot with Q queries per class and open-set (unknown) queries.

An episode picks ``ways`` classes, ``shots`` support items and ``queries`` query items of each,
and ``unknown`` more queries from classes *outside* the episode (the open-set queries of
D-ProtoNets, Kim et al., Interspeech 2022, arXiv 2206.13691). Episode ``i`` of a sampler is a
pure function of ``(seed, i)``: the same seed gives the same episodes, in any order, on any
machine (numpy's ``default_rng`` streams are stable).

Shapes: N ways, K shots, Q queries per class, U unknown queries. Indices are positions in the
``targets`` list the sampler was built from.

Example:
    >>> sampler = EpisodeSampler([0, 0, 0, 1, 1, 1, 2, 2, 2], ways=2, shots=1, queries=2, unknown=1, seed=0)
    >>> ep = sampler.episode(0)
    >>> ep.support.shape, ep.query.shape, ep.unknown.shape
    ((2, 1), (2, 2), (1,))
    >>> sampler.episode(0) == ep
    True
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from speechkit.errors import CorpusError


@dataclass(frozen=True, eq=False)
class Episode:
    """One episode (indices into the sampler's ``targets``).

    Attributes:
        classes: (N,) class ids of the episode, in episode order (episode label n = classes[n]).
        support: (N, K) item indices; row n belongs to ``classes[n]``.
        query: (N, Q) item indices; row n belongs to ``classes[n]``.
        unknown: (U,) item indices of classes not in ``classes``.
    """

    classes: np.ndarray
    support: np.ndarray
    query: np.ndarray
    unknown: np.ndarray

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Episode) and all(
            np.array_equal(getattr(self, f), getattr(other, f)) for f in ("classes", "support", "query", "unknown")
        )

    @property
    def items(self) -> np.ndarray:
        """All indices in batch order: supports (class-major), known queries, unknown queries."""
        return np.concatenate([self.support.reshape(-1), self.query.reshape(-1), self.unknown])


class EpisodeSampler:
    """Draws episodes from labelled items.

    Args:
        targets: class id of every item.
        ways: N classes per episode.
        shots: K support items per class.
        queries: Q query items per class (disjoint from the supports).
        unknown: U open-set queries from classes outside the episode (0: closed set).
        seed: episode ``i`` depends only on ``(seed, i)``.
        num_episodes: length of iteration (``None``: ``len`` is undefined, iterate forever).

    Raises:
        CorpusError: fewer than N classes with ``K + Q`` items each, or open-set queries asked
            for but no class is left outside an episode.
    """

    def __init__(
        self,
        targets: Sequence[int],
        ways: int,
        shots: int,
        queries: int,
        unknown: int = 0,
        seed: int = 0,
        num_episodes: int | None = None,
    ) -> None:
        if ways < 1 or shots < 1 or queries < 0 or unknown < 0:
            raise CorpusError(f"episodes need ways >= 1, shots >= 1, queries >= 0, unknown >= 0; got "
                              f"{ways}-way {shots}-shot, {queries} queries, {unknown} unknown")
        self.targets = np.asarray(targets, dtype=np.int64)
        self.ways, self.shots, self.queries, self.unknown = int(ways), int(shots), int(queries), int(unknown)
        self.seed = int(seed)
        self.num_episodes = num_episodes
        classes, counts = np.unique(self.targets, return_counts=True)
        self.by_class = {int(c): np.flatnonzero(self.targets == c) for c in classes}
        self.eligible = np.array([c for c, n in zip(classes, counts) if n >= shots + queries], dtype=np.int64)
        need = ways + (1 if unknown else 0)
        if len(self.eligible) < need:
            raise CorpusError(
                f"{ways}-way {shots}-shot episodes with {queries} queries per class need {need} classes with at "
                f"least {shots + queries} items each{' (one left over for unknown queries)' if unknown else ''}; "
                f"found {len(self.eligible)} of {len(classes)} classes"
            )

    def episode(self, index: int) -> Episode:
        """Episode number ``index`` (deterministic in ``(seed, index)``)."""
        rng = np.random.default_rng([self.seed, int(index), 0xE915])
        chosen = rng.choice(self.eligible, size=self.ways, replace=False)
        rows = [rng.choice(self.by_class[int(c)], size=self.shots + self.queries, replace=False) for c in chosen]
        support = np.stack([r[: self.shots] for r in rows])
        query = np.stack([r[self.shots :] for r in rows]) if self.queries else np.zeros((self.ways, 0), np.int64)
        outside = np.flatnonzero(~np.isin(self.targets, chosen))
        unknown = (rng.choice(outside, size=self.unknown, replace=len(outside) < self.unknown)
                   if self.unknown else np.zeros(0, np.int64))
        return Episode(chosen.astype(np.int64), support.astype(np.int64), query.astype(np.int64),
                       np.asarray(unknown, np.int64))

    def __len__(self) -> int:
        if self.num_episodes is None:
            raise TypeError("an EpisodeSampler without num_episodes has no length")
        return self.num_episodes

    def __iter__(self) -> Iterator[Episode]:
        i = 0
        while self.num_episodes is None or i < self.num_episodes:
            yield self.episode(i)
            i += 1
