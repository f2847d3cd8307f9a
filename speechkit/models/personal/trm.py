"""Task Representation Module (TRM) of PK-MTL (Yang et al., Interspeech 2022, section 2.3).

The L2-normalized keyword and speaker embeddings are concatenated, ``x = [z^k/|z^k|, z^s/|z^s|]``
(2D values); two FC layers with a bottleneck of width 2 give SE-style attention weights
``a = sigmoid(W2 relu(W1 x + b1) + b2)`` and the task embedding is ``a * x``. The score of a
test clip against an enrolment is ``cos(TRM(z^k, z^s), TRM(p^k, p^s))`` with ``p^k`` the target
keyword's prototype and ``p^s`` the enrolment speaker embedding. One TRM serves TB-KWS, another
TO-KWS; both are trained after the backbone (frozen) with the angular prototypical loss
(:mod:`speechkit.losses.personal`).

The runtime computes the same function in numpy from the weights in the artifact's metadata
(:func:`speechkit.runtime.personal.trm_apply`).

Shapes: B batch, D embedding dim (each of z^k, z^s).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class TaskRepresentationModule(nn.Module):
    """SE-style re-weighting of the concatenated, normalized keyword and speaker embeddings.

    Args:
        embedding_dim: D of each embedding (the module works on 2D values).
        bottleneck: width of the attention bottleneck (2 in the paper).

    Shape:
        z_k, z_s ``(B, D)`` -> task embedding ``(B, 2D)``.

    Example:
        >>> import torch
        >>> trm = TaskRepresentationModule(8)
        >>> trm(torch.randn(3, 8), torch.randn(3, 8)).shape
        torch.Size([3, 16])
        >>> sum(p.numel() for p in trm.parameters())
        82
    """

    def __init__(self, embedding_dim: int, bottleneck: int = 2) -> None:
        super().__init__()
        self.embedding_dim = embedding_dim
        self.squeeze = nn.Linear(2 * embedding_dim, bottleneck)
        self.excite = nn.Linear(bottleneck, 2 * embedding_dim)

    def forward(self, z_k: Tensor, z_s: Tensor) -> Tensor:
        x = torch.cat([nn.functional.normalize(z_k, dim=-1), nn.functional.normalize(z_s, dim=-1)], dim=-1)
        attention = torch.sigmoid(self.excite(torch.relu(self.squeeze(x))))
        return attention * x

    def weights(self) -> dict[str, list]:
        """The weights as nested lists (for the artifact metadata; :func:`speechkit.runtime.personal.trm_apply`)."""
        return {
            "w1": self.squeeze.weight.detach().cpu().tolist(), "b1": self.squeeze.bias.detach().cpu().tolist(),
            "w2": self.excite.weight.detach().cpu().tolist(), "b2": self.excite.bias.detach().cpu().tolist(),
        }
