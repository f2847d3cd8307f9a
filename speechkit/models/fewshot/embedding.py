"""BC-ResNet as a few-shot embedding network.

The network is BC-ResNet-``width`` (:class:`speechkit.models.kws.BCResNet`) up to its pooled
layer: head, four stages, depthwise 5x5 + 1x1 conv to ``4c`` channels, BN, ReLU, mean over
frequency and time. Its ``4c``-dimensional output (32 for BC-ResNet-1, 256 for BC-ResNet-8) is
the embedding, optionally followed by a linear projection to ``embedding_dim``.
"""

from __future__ import annotations

from torch import Tensor, nn

from speechkit.models.kws.bcresnet import BCResNet


class BCResNetEmbedding(nn.Module):
    """Clip features -> one embedding vector per clip.

    Args:
        width: BC-ResNet width multiplier tau (1, 1.5, 2, 3, 6, 8).
        embedding_dim: size of a linear projection of the pooled ``4c`` features; ``None``: no
            projection (the embedding is the pooled layer itself).
        num_subbands, dropout_prob, resnorm, in_bins: as :class:`~speechkit.models.kws.BCResNet`.

    Shape:
        feats ``(B, T, F)`` with ``F == in_bins`` -> embeddings ``(B, D)``,
        ``D = embedding_dim or 4 * int(8 * width)``. Each clip's embedding depends on that clip
        only (eval mode), so a batch equals its items run one by one.

    Example:
        >>> import torch
        >>> net = BCResNetEmbedding(width=1).eval()
        >>> net(torch.randn(3, 101, 40)).shape
        torch.Size([3, 32])
        >>> BCResNetEmbedding(width=1, embedding_dim=16).embedding_dim
        16
    """

    def __init__(
        self,
        width: float = 1.0,
        embedding_dim: int | None = None,
        num_subbands: int = 5,
        dropout_prob: float = 0.1,
        resnorm: bool = True,
        in_bins: int = 40,
    ) -> None:
        super().__init__()
        net = BCResNet(num_classes=1, width=width, num_subbands=num_subbands, dropout_prob=dropout_prob,
                       resnorm=resnorm, in_bins=in_bins)
        net.classifier = net.classifier[:-1]  # drop the logit conv: (B, 4c, 1, 1) pooled features
        self.backbone = net
        pooled = 4 * int(8 * width)
        self.proj = nn.Linear(pooled, embedding_dim) if embedding_dim else None
        self.embedding_dim = int(embedding_dim or pooled)
        self.in_bins = in_bins
        self.width = width

    def forward(self, feats: Tensor) -> Tensor:
        """``(B, T, F)`` features -> ``(B, D)`` embeddings."""
        pooled = self.backbone.classifier(self.backbone.extract_features(feats).last).flatten(1)
        return self.proj(pooled) if self.proj is not None else pooled
