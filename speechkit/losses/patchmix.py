"""Patch-Mix and Patch-Mix contrastive learning (Bae et al., Interspeech 2023, arXiv 2305.14032).

Official code: raymin0223/patch-mix_contrastive_learning (``models/ast.py`` ``patch_mix``,
``method/patchmix.py``, ``method/patchmix_cl.py``, ``models/projector.py``).

* :func:`patch_mix`: CutMix on patch tokens (B, P, D) after the patch projection, before the
  [CLS]/distillation tokens and positional embeddings: draw lambda ~ Beta(beta, beta) and a batch
  permutation pi, pick K = floor(P (1 - lambda)) positions (the same for the whole batch), copy
  tokens ``E[pi(b)][S]`` into ``E[b][S]``, and return the recomputed fraction lambda' = 1 - K / P.
  ``time_only`` swaps whole time columns of the (f, t) grid instead.
* :class:`PatchMixCrossEntropy`: lambda' CE(y_b) + (1 - lambda') CE(y_pi(b)).
* :class:`PatchMixContrastiveLoss`: the mixed sample's projected feature is a positive for both
  sources, weighted lambda' and 1 - lambda'; every other sample is a negative; cosine
  similarity / temperature (0.06). In the ``grad_block`` mode the sources' features are the
  unmixed clips' pooled AST features, detached, without projector.
* :class:`Projector`: Linear -> BatchNorm1d -> ReLU -> Linear (``models/projector.py``).

Shapes: B batch, P patches, D width, C classes, f x t patch grid.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn


class PatchMix(NamedTuple):
    """What :func:`patch_mix` returns.

    Attributes:
        tokens: (B, P, D) mixed patch tokens.
        lam: lambda', the share of each sample's own (unswapped) patches.
        perm: (B,) int64, the partner of each sample.
        swapped: (P,) bool, True at the swapped positions.
    """

    tokens: Tensor
    lam: float
    perm: Tensor
    swapped: Tensor


def patch_mix(
    tokens: Tensor,
    beta: float = 1.0,
    grid: tuple[int, int] | None = None,
    time_only: bool = False,
    lam: float | None = None,
    generator: torch.Generator | None = None,
) -> PatchMix:
    """Swap a random share of patch positions between each sample and a random partner.

    Args:
        tokens: (B, P, D) patch embeddings (frequency-major when ``time_only``).
        beta: lambda ~ Beta(beta, beta); ``beta <= 0`` means lambda = 1 (no mixing).
        grid: (f, t) with f * t = P; needed for ``time_only``.
        time_only: swap K = floor(t (1 - lambda)) whole time columns.
        lam: a fixed lambda instead of a draw (tests).
        generator: random source of the permutation, the positions and lambda.

    Returns:
        :class:`PatchMix`; ``tokens`` is a new tensor (the input is not modified).

    Example:
        >>> out = patch_mix(torch.arange(8.0).reshape(2, 4, 1), lam=0.5, generator=torch.Generator().manual_seed(0))
        >>> out.lam, int(out.swapped.sum())
        (0.5, 2)
    """
    b, p, _ = tokens.shape
    if lam is None:
        lam = float(_beta_sample(beta, generator)) if beta > 0 else 1.0
    perm = torch.randperm(b, generator=generator).to(tokens.device)
    if time_only:
        if grid is None or grid[0] * grid[1] != p:
            raise ValueError(f"time_only Patch-Mix needs grid=(f, t) with f * t = {p}, got {grid}")
        f, t = grid
        k = int(t * (1.0 - lam))
        columns = torch.randperm(t, generator=generator)[:k]
        swapped = torch.zeros(f, t, dtype=torch.bool)
        swapped[:, columns] = True
        swapped = swapped.reshape(p)
        lam_used = 1.0 - k / t
    else:
        k = int(p * (1.0 - lam))
        swapped = torch.zeros(p, dtype=torch.bool)
        swapped[torch.randperm(p, generator=generator)[:k]] = True
        lam_used = 1.0 - k / p
    swapped = swapped.to(tokens.device)
    mixed = torch.where(swapped[None, :, None], tokens[perm], tokens)
    return PatchMix(mixed, lam_used, perm, swapped)


def _beta_sample(beta: float, generator: torch.Generator | None) -> Tensor:
    # Beta(1, 1), the paper's choice, is uniform: drawn from ``generator``. torch's Beta takes no
    # generator, so other betas use the global random state.
    if beta == 1.0:
        return torch.rand((), generator=generator)
    return torch.distributions.Beta(beta, beta).sample()


class PatchMixCrossEntropy(nn.Module):
    """lambda' CE(logits, y) + (1 - lambda') CE(logits, y[perm]) (Patch-Mix CE).

    Example:
        >>> loss = PatchMixCrossEntropy()
        >>> logits, y = torch.tensor([[2.0, 0.0], [0.0, 2.0]]), torch.tensor([0, 1])
        >>> round(float(loss(logits, y, 1.0, torch.tensor([1, 0]))), 4)
        0.1269
    """

    def __init__(self, weight: Tensor | None = None) -> None:
        super().__init__()
        self.register_buffer("weight", weight, persistent=False)

    def forward(self, logits: Tensor, targets: Tensor, lam: float, perm: Tensor) -> Tensor:
        """logits (B, C), targets (B,) int64, lam in [0, 1], perm (B,) -> scalar."""
        ce = nn.functional.cross_entropy
        return lam * ce(logits, targets, weight=self.weight) + (1 - lam) * ce(logits, targets[perm], weight=self.weight)


class PatchMixContrastiveLoss(nn.Module):
    """Patch-Mix contrastive loss (``PatchMixConLoss``), weighted positives at lambda' and 1 - lambda'.

    L = -(1/B) sum_b [lambda' log softmax_k(s_bk)[b] + (1 - lambda') log softmax_k(s_bk)[pi(b)]],
    s_bk = cos(mixed_b, source_k) / temperature.

    Args:
        temperature: tau (0.06 in the paper).

    Example:
        >>> sources = torch.eye(3)
        >>> loss = PatchMixContrastiveLoss()
        >>> float(loss(sources, sources, 1.0, torch.arange(3))) < 1e-6
        True
    """

    def __init__(self, temperature: float = 0.06) -> None:
        super().__init__()
        self.temperature = temperature

    def forward(self, mixed: Tensor, sources: Tensor, lam: float, perm: Tensor) -> Tensor:
        """mixed (B, D) projected features of the mixed clips, sources (B, D) -> scalar.

        ``sources`` are used as given: detach them for the ``grad_block`` mode.
        """
        mixed = nn.functional.normalize(mixed, dim=1)
        sources = nn.functional.normalize(sources, dim=1)
        sim = mixed @ sources.T / self.temperature  # (B, B)
        log_prob = sim - sim.max(dim=1, keepdim=True).values.detach()
        log_prob = log_prob - torch.logsumexp(log_prob, dim=1, keepdim=True)
        b = sim.shape[0]
        rows = torch.arange(b, device=sim.device)
        weights = torch.zeros_like(sim)
        weights[rows, rows] += lam
        weights[rows, perm] += 1 - lam
        return -((weights * log_prob).sum(1) / weights.sum(1)).mean()


class Projector(nn.Module):
    """Linear -> BatchNorm1d -> ReLU -> Linear: (B, D) -> (B, proj_dim) (Patch-Mix CL's head).

    Example:
        >>> Projector(8, 4).eval()(torch.randn(3, 8)).shape
        torch.Size([3, 4])
    """

    def __init__(self, in_dim: int, proj_dim: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_dim, in_dim), nn.BatchNorm1d(in_dim), nn.ReLU(), nn.Linear(in_dim, proj_dim))

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)
