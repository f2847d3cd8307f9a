"""Prototypical networks for few-shot KWS: ProtoNet and D-ProtoNets (dummy prototype).

ProtoNet (Snell et al., NeurIPS 2017): the prototype of class n is the mean of its K support
embeddings, ``c_n = (1/K) sum_i f(x_{n,i})``, and a query's logits are negative squared
Euclidean distances, ``-||f(q) - c_n||^2 / tau``.

D-ProtoNets (Kim et al., "Dummy Prototypical Networks for Few-Shot Open-Set Keyword Spotting",
Interspeech 2022, arXiv 2206.13691): an extra *dummy* prototype for "none of these", generated
from the episode's prototypes by a permutation-invariant DeepSets network,
``c_d = W_g maxpool_n(g1(c_n))``, scored with a larger temperature ``gamma * tau``
(gamma > 1, learnable here, initialised to 3 as reported). Unknown queries are trained towards
the dummy class (:class:`speechkit.losses.fewshot.FewShotLoss`).

Shapes: N ways, K shots, M queries, D embedding size, H generator width.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


def prototypes(support: Tensor) -> Tensor:
    """Class prototypes: ``(N, K, D)`` support embeddings -> ``(N, D)`` means.

    Example:
        >>> prototypes(torch.tensor([[[0.0, 2.0], [2.0, 0.0]]]))
        tensor([[1., 1.]])
    """
    return support.mean(dim=1)


def squared_euclidean(x: Tensor, y: Tensor) -> Tensor:
    """``(M, D)``, ``(N, D)`` -> ``(M, N)`` squared Euclidean distances (exact, non-negative).

    Example:
        >>> squared_euclidean(torch.tensor([[0.0, 0.0]]), torch.tensor([[3.0, 4.0], [0.0, 1.0]]))
        tensor([[25.,  1.]])
    """
    return (x[:, None, :] - y[None, :, :]).pow(2).sum(-1)


class DummyGenerator(nn.Module):
    """DeepSets generator of the dummy prototype: ``W_g maxpool_n(ReLU(g1 c_n + b1)) + b_g``.

    Args:
        dim: embedding size D.
        hidden: width H of ``g1`` (default D).

    Shape:
        protos ``(N, D)`` -> dummy ``(D,)``; invariant to the order of the N prototypes.

    Example:
        >>> gen = DummyGenerator(4)
        >>> c = torch.randn(5, 4)
        >>> torch.allclose(gen(c), gen(c.flip(0)))
        True
    """

    def __init__(self, dim: int, hidden: int | None = None) -> None:
        super().__init__()
        hidden = hidden or dim
        self.g1 = nn.Linear(dim, hidden)
        self.out = nn.Linear(hidden, dim)

    def forward(self, protos: Tensor) -> Tensor:
        return self.out(torch.relu(self.g1(protos)).max(dim=0).values)


class PrototypeHead(nn.Module):
    """Episode logits from support and query embeddings.

    Args:
        embedding_dim: D (linked from the embedding network by the recipe, or set by hand).
        dummy: add the D-ProtoNets dummy class (logit index N); ``False``: plain ProtoNet.
        gamma: initial dummy temperature ratio (> 1).
        learn_gamma: train gamma (kept > 1 through ``1 + softplus``).
        tau: distance temperature of the known classes.

    Shape:
        support ``(N, K, D)``, query ``(M, D)`` -> logits ``(M, N + dummy)``. Permuting the
        episode's classes permutes the first N logit columns the same way; the dummy logit
        does not change.

    Example:
        >>> head = PrototypeHead(8, dummy=True)
        >>> head(torch.randn(5, 2, 8), torch.randn(7, 8)).shape
        torch.Size([7, 6])
        >>> round(head.gamma.item(), 3)
        3.0
    """

    def __init__(self, embedding_dim: int = 32, dummy: bool = True, gamma: float = 3.0,
                 learn_gamma: bool = True, tau: float = 1.0) -> None:
        super().__init__()
        if gamma <= 1.0:
            raise ValueError(f"gamma must be > 1 (the dummy class has the larger temperature), got {gamma}")
        self.dummy = bool(dummy)
        self.tau = float(tau)
        self.embedding_dim = int(embedding_dim)
        self.generator = DummyGenerator(embedding_dim) if dummy else None
        raw = math.log(math.expm1(gamma - 1.0))  # inverse of 1 + softplus
        self.gamma_raw = nn.Parameter(torch.tensor(raw), requires_grad=learn_gamma) if dummy else None

    @property
    def gamma(self) -> Tensor:
        """The dummy temperature ratio (a 0-d tensor > 1); 1 without a dummy."""
        if self.gamma_raw is None:
            return torch.tensor(1.0)
        return 1.0 + nn.functional.softplus(self.gamma_raw)

    def forward(self, support: Tensor, query: Tensor) -> Tensor:
        protos = prototypes(support)
        logits = -squared_euclidean(query, protos) / self.tau
        if not self.dummy:
            return logits
        dummy = self.generator(protos)
        dummy_logit = -squared_euclidean(query, dummy[None]) / (self.gamma * self.tau)
        return torch.cat([logits, dummy_logit], dim=1)

    def unknown_score(self, logits: Tensor) -> Tensor:
        """``(M, N[+1])`` logits -> ``(M,)`` open-set score (higher: more likely unknown).

        D-ProtoNets: the dummy class's softmax probability. ProtoNet: the max-similarity rule,
        minus the largest known logit (the distance to the nearest prototype).
        """
        if self.dummy:
            return logits.softmax(dim=1)[:, -1]
        return -logits.max(dim=1).values

    def open_set_config(self) -> dict:
        """The open-set rule as plain lists, for the torch-free runtime
        (:class:`speechkit.runtime.fewshot.OpenSetRule`)."""
        if not self.dummy:
            return {"rule": "max-similarity", "tau": self.tau}
        g = self.generator
        return {
            "rule": "dummy", "tau": self.tau, "gamma": float(self.gamma.detach()),
            "g1_weight": g.g1.weight.detach().cpu().tolist(), "g1_bias": g.g1.bias.detach().cpu().tolist(),
            "out_weight": g.out.weight.detach().cpu().tolist(), "out_bias": g.out.bias.detach().cpu().tolist(),
        }
