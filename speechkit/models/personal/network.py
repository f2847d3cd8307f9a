"""PK-MTL: personalized keyword spotting through multi-task learning, and its baselines.

Yang, Kim, Chung, Chang, "Personalized Keyword Spotting through Multi-task Learning",
Interspeech 2022, arXiv 2206.13708 (no official code; re-implemented from the paper's text,
see docs/methods/personal_kws.md).

A BC-ResNet (any width) is split after its fourth stage: the **shared encoder** is the
backbone without its last two convolution layers (:class:`BCResNetEncoder`); each **branch** is
those two layers (:func:`~speechkit.models.kws.bcresnet.bcresnet_top_layers`) plus one fully
connected layer, giving an embedding; each task has a **cosine classifier**
``logits = w * cos(z, W) + b`` with a learnable scale ``w`` and bias ``b`` (the rows of ``W``
are the class prototypes used at test time). Systems built from the same code:

============ ========================================================================
``pk-mtl``   shared encoder, a keyword branch and a speaker branch (the paper's model)
``naive-mtl`` shared encoder and one shared branch/embedding, two cosine heads
``vanilla``  encoder + keyword branch + keyword head only (plain KWS, with the extra FC
             and the cosine classifier, as the paper's fair baseline)
``speaker``  encoder + speaker branch + speaker head only (the separate SV model of the
             "vanilla + SV" two-model system)
============ ========================================================================

Shapes: B batch, T frames, F mel bins, D embedding dim, C keyword classes, S training speakers.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from speechkit.errors import SpeechkitError
from speechkit.models.kws.bcresnet import BCResNet, bcresnet_top_layers

#: The systems :class:`PersonalKwsNet` builds.
SYSTEMS = ("pk-mtl", "naive-mtl", "vanilla", "speaker")


class BCResNetEncoder(BCResNet):
    """BC-ResNet without its classifier: features ``(B, T, F)`` -> last stage map ``(B, C4, F4, T)``.

    Args:
        width, num_subbands, dropout_prob, resnorm, in_bins: as :class:`BCResNet`.

    Example:
        >>> import torch
        >>> enc = BCResNetEncoder(width=1)
        >>> enc(torch.randn(2, 101, 40)).shape
        torch.Size([2, 20, 5, 101])
    """

    def __init__(self, width: float = 1.0, num_subbands: int = 5, dropout_prob: float = 0.1,
                 resnorm: bool = False, in_bins: int = 40) -> None:
        super().__init__(num_classes=1, width=width, num_subbands=num_subbands, dropout_prob=dropout_prob,
                         resnorm=resnorm, in_bins=in_bins)
        del self.classifier  # the split point: the branches own the last two conv layers
        self.base_width = int(8 * width)

    def forward(self, feats: Tensor) -> Tensor:
        """``(B, T, F)`` -> ``(B, encoder_channels, F4, T)`` (the fourth stage's output)."""
        return self.extract_features(feats).last


class Branch(nn.Module):
    """One task branch: the backbone's last two conv layers (pooled) + one FC layer.

    Shape:
        ``(B, in_channels, F4, T)`` -> embedding ``(B, embedding_dim)``.

    Example:
        >>> import torch
        >>> Branch(20, 32, 16)(torch.randn(2, 20, 5, 101)).shape
        torch.Size([2, 16])
    """

    def __init__(self, in_channels: int, hidden_channels: int, embedding_dim: int) -> None:
        super().__init__()
        self.convs = nn.Sequential(*bcresnet_top_layers(in_channels, hidden_channels))
        self.fc = nn.Linear(hidden_channels, embedding_dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.convs(x).flatten(1))


class CosineClassifier(nn.Module):
    """``logits = scale * cos(z, W) + bias`` with learnable ``scale`` and ``bias`` (scalars).

    Args:
        embedding_dim: D.
        num_classes: rows of ``W`` (the class prototypes).
        init_scale: initial ``scale`` (a softmax over cosines in [-1, 1] needs a large one).

    Shape:
        z ``(B, D)`` -> logits ``(B, num_classes)``.

    Example:
        >>> import torch
        >>> head = CosineClassifier(4, 3)
        >>> z = head.weight[1:2].detach() * 2.0   # same direction as prototype 1
        >>> round(float(head.cosine(z)[0, 1]), 4)
        1.0
        >>> head(z).argmax(dim=1).tolist()
        [1]
    """

    def __init__(self, embedding_dim: int, num_classes: int, init_scale: float = 10.0) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(num_classes, embedding_dim) / embedding_dim**0.5)
        self.scale = nn.Parameter(torch.tensor(float(init_scale)))
        self.bias = nn.Parameter(torch.tensor(0.0))

    def cosine(self, z: Tensor) -> Tensor:
        """``(B, D)`` -> ``(B, num_classes)`` cosines to the prototypes."""
        return nn.functional.normalize(z, dim=-1) @ self.prototypes().T

    def prototypes(self) -> Tensor:
        """``(num_classes, D)`` unit-norm class prototypes."""
        return nn.functional.normalize(self.weight, dim=-1)

    def forward(self, z: Tensor) -> Tensor:
        return self.scale * self.cosine(z) + self.bias


@dataclass
class PersonalOutputs:
    """What :meth:`PersonalKwsNet.outputs` returns (``None`` where the system has no such part).

    Attributes:
        keyword_logits: ``(B, C)`` cosine-classifier logits.
        speaker_logits: ``(B, S)`` over the training speakers (training only).
        keyword_embedding: ``(B, D)`` ``z^k`` (not normalized).
        speaker_embedding: ``(B, D)`` ``z^s`` (naive MTL: the shared embedding).
    """

    keyword_logits: Tensor | None
    speaker_logits: Tensor | None
    keyword_embedding: Tensor | None
    speaker_embedding: Tensor | None


class PersonalKwsNet(nn.Module):
    """PK-MTL and its baselines on a BC-ResNet-``width`` backbone (see the module docstring).

    Args:
        num_classes: keyword classes C (linked from the data module).
        num_speakers: training speakers S of the speaker head (linked from the data module).
        system: one of :data:`SYSTEMS`.
        width: BC-ResNet width multiplier tau.
        embedding_dim: D; default ``4 * int(8 * width)`` (the classifier's hidden width, which
            reproduces the paper's vanilla BC-ResNet-3 parameter count, 63.5k).
        num_subbands, dropout_prob, resnorm, in_bins: as :class:`BCResNet`.

    Shape:
        feats ``(B, T, F)`` -> ``forward``: keyword logits ``(B, C)`` (speaker logits ``(B, S)``
        for the ``speaker`` system, which has no keyword head).

    Example:
        >>> import torch
        >>> net = PersonalKwsNet(num_classes=4, num_speakers=10, system="pk-mtl", width=1).eval()
        >>> out = net.outputs(torch.randn(2, 101, 40))
        >>> out.keyword_logits.shape, out.speaker_logits.shape, out.speaker_embedding.shape
        (torch.Size([2, 4]), torch.Size([2, 10]), torch.Size([2, 32]))
        >>> net.inference_parameters() - PersonalKwsNet(4, 10, "vanilla", 1).inference_parameters()
        2260
    """

    def __init__(
        self,
        num_classes: int = 12,
        num_speakers: int = 1,
        system: str = "pk-mtl",
        width: float = 1.0,
        embedding_dim: int | None = None,
        num_subbands: int = 5,
        dropout_prob: float = 0.1,
        resnorm: bool = False,
        in_bins: int = 40,
    ) -> None:
        super().__init__()
        if system not in SYSTEMS:
            raise SpeechkitError(f"PersonalKwsNet: unknown system {system!r}; expected one of {list(SYSTEMS)}")
        if num_speakers < 1 and system != "vanilla":
            raise SpeechkitError(f"PersonalKwsNet: the {system!r} system needs training speakers, got num_speakers={num_speakers}")
        self.system = system
        self.num_classes = num_classes
        self.num_speakers = num_speakers
        self.in_bins = in_bins
        self.encoder = BCResNetEncoder(width, num_subbands, dropout_prob, resnorm, in_bins)
        hidden = 4 * self.encoder.base_width
        self.embedding_dim = int(embedding_dim or hidden)
        channels = self.encoder.encoder_channels
        d = self.embedding_dim
        has_kw, has_spk = system != "speaker", system != "vanilla"
        self.keyword_branch = Branch(channels, hidden, d) if has_kw else None
        # naive MTL: one branch feeds both heads; PK-MTL and the SV model: a speaker branch of its own.
        self.speaker_branch = Branch(channels, hidden, d) if system in ("pk-mtl", "speaker") else None
        self.keyword_head = CosineClassifier(d, num_classes) if has_kw else None
        self.speaker_head = CosineClassifier(d, num_speakers) if has_spk else None

    @property
    def has_speaker_embedding(self) -> bool:
        """Whether the system was trained with speaker labels (all but ``vanilla``)."""
        return self.speaker_head is not None

    def embeddings(self, feats: Tensor) -> tuple[Tensor | None, Tensor | None]:
        """``(z^k, z^s)`` each ``(B, D)``; ``None`` for a part the system lacks."""
        x = self.encoder(feats)
        z_k = self.keyword_branch(x) if self.keyword_branch is not None else None
        if self.speaker_branch is not None:
            z_s = self.speaker_branch(x)
        else:
            z_s = z_k if self.system == "naive-mtl" else None
        return z_k, z_s

    def outputs(self, feats: Tensor) -> PersonalOutputs:
        """Embeddings and both heads' logits for ``(B, T, F)`` features."""
        z_k, z_s = self.embeddings(feats)
        return PersonalOutputs(
            keyword_logits=self.keyword_head(z_k) if self.keyword_head is not None else None,
            speaker_logits=self.speaker_head(z_s) if self.speaker_head is not None else None,
            keyword_embedding=z_k,
            speaker_embedding=z_s,
        )

    def forward(self, feats: Tensor) -> Tensor:
        """Keyword logits ``(B, C)`` (the ``speaker`` system: speaker logits ``(B, S)``)."""
        out = self.outputs(feats)
        return out.keyword_logits if out.keyword_logits is not None else out.speaker_logits

    def inference_parameters(self) -> int:
        """Parameters used at test time: all but the training speakers' classifier."""
        skip = set(self.speaker_head.parameters()) if self.speaker_head is not None else set()
        return sum(p.numel() for p in self.parameters() if p not in skip)
