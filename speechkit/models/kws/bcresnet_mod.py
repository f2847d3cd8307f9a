"""BC-ResNet-Mod: BC-ResNet with Residual Normalization for acoustic scene classification.

Kim, Yang, Kim, Chang, "QTI Submission to DCASE 2021: Residual Normalization for
Device-Imbalanced Acoustic Scene Classification with Efficient Design" (arXiv 2206.13909) and
the workshop version "Domain Generalization on Efficient Acoustic Scene Classification using
Residual Normalization" (arXiv 2111.06531, where it is called BC-ResNet-ASC). No official code
was released; the layout follows the public reimplementations (see docs/methods/kws.md,
section 4), with FreqNorm inside ResNorm as in the workshop paper. The blocks are the KWS
:class:`~speechkit.models.kws.bcresnet.BCResBlock`.

Assumed front-end (the front-end module is separate; this model only needs ``in_bins``):
log-mel with 256 bins from 44.1 kHz audio, 40 ms Hann window (n_fft 2048), 20 ms hop, so a
10 s DCASE 2021 Task 1A clip gives 501 frames. These settings are our choice; the paper's were
not verified.

Like BC-ResNet it is a fixed-clip classifier: non-causal convs, max pools over time, and a
mean over all remaining frames.
"""

import math

from torch import Tensor, nn

from speechkit.errors import SpeechkitError
from speechkit.models.kws.bcresnet import BCResBlock, ClassifierFeatures, check_subband_sizes, features_to_map
from speechkit.models.nn.norm import ResNorm


class BCResNetMod(nn.Module):
    """BC-ResNet-Mod (a.k.a. BC-ResNet-ASC) scene classifier with ResNorm.

    Layout with base width ``c`` and stage widths ``(c, int(1.5c), 2c, int(2.5c))``;
    ``ResNorm`` at the input and after each stage when ``resnorm`` is on:

    ========== ====================================================== ================
    head       Conv 5x5, stride 2 in freq and time, 1 -> 2c; BN; ReLU 2c x F/2 x T/2
    stage 1    transition + 1 block, width c                          c x F/2 x T/2
    pool       MaxPool 2x2                                            c x F/4 x T/4
    stage 2    transition + 1 block, width 1.5c                       1.5c x F/4 x T/4
    pool       MaxPool 2x2                                            1.5c x F/8 x T/8
    stage 3    transition + 1 block, width 2c                         2c x F/8 x T/8
    stage 4    transition + 2 blocks, width 2.5c                      2.5c x F/8 x T/8
    classifier 1x1 conv with bias -> num_classes; mean over F, T      num_classes
    ========== ====================================================== ================

    Choices where the sources are silent (documented, not verified against the paper): the
    head is Conv + BN + ReLU as in BC-ResNet; all temporal dilations are 1 (the max pools
    widen the receptive field instead, as in the reimplementations); SSN uses 4 sub-bands so
    that the frequency sizes 128, 64, 32 of a 256-bin input divide evenly.

    Parameter counts (10 classes, 4 sub-bands): 85,890 at ``base_width=40`` and 314,970 at
    ``base_width=80`` (the paper's system had 315k).

    Args:
        num_classes: number of scene classes (10 for DCASE 2021 Task 1A).
        base_width: c, the width of stage 1.
        num_subbands: SubSpectralNorm sub-bands.
        resnorm: apply ResNorm at the input and after every stage (the point of the model).
        resnorm_lambda: identity weight of ResNorm.
        dropout_prob: Dropout2d probability at the end of each block's 1D branch.
        in_bins: number of mel bins F the front-end produces.

    Shape:
        feats: ``(B, T, F)`` float front-end features with ``F == in_bins`` and ``T >= 7``
        (the head and two pools divide T by 8); output: logits ``(B, num_classes)``.

    Raises:
        SpeechkitError: when ``in_bins`` and ``num_subbands`` do not fit together.

    Example:
        >>> import torch
        >>> model = BCResNetMod(num_classes=10, base_width=40).eval()
        >>> feats = torch.randn(2, 501, 256)
        >>> model(feats).shape
        torch.Size([2, 10])
        >>> sum(p.numel() for p in model.parameters())
        85890
        >>> [tuple(x.shape) for x in model.extract_features(feats).stages]
        [(2, 40, 64, 125), (2, 60, 32, 62), (2, 80, 32, 62), (2, 100, 32, 62)]
    """

    def __init__(
        self,
        num_classes: int = 10,
        base_width: int = 40,
        num_subbands: int = 4,
        resnorm: bool = True,
        resnorm_lambda: float = 0.1,
        dropout_prob: float = 0.1,
        in_bins: int = 256,
    ) -> None:
        super().__init__()
        c = base_width
        if c < 1 or num_classes < 1:
            raise SpeechkitError(
                f"BCResNetMod: base_width={c} and num_classes={num_classes} must be at least 1"
            )
        self.num_classes = num_classes
        self.in_bins = in_bins
        widths = [c, int(1.5 * c), 2 * c, int(2.5 * c)]
        blocks_per_stage = (2, 2, 2, 3)
        pool_after = (True, True, False, False)
        f_head = math.ceil(in_bins / 2)
        freq_bins = [f_head, f_head // 2, f_head // 4, f_head // 4]
        check_subband_sizes("BCResNetMod", freq_bins, num_subbands, in_bins)

        def norm() -> nn.Module:
            return ResNorm(resnorm_lambda) if resnorm else nn.Identity()

        self.input_norm = norm()
        self.head = nn.Sequential(
            nn.Conv2d(1, 2 * c, 5, stride=2, padding=2, bias=False),
            nn.BatchNorm2d(2 * c),
            nn.ReLU(),
        )
        self.stages = nn.ModuleList()
        self.stage_norms = nn.ModuleList()
        self.pools = nn.ModuleList()
        in_ch = 2 * c
        for n, out_ch, pool in zip(blocks_per_stage, widths, pool_after):
            self.stages.append(
                nn.Sequential(
                    *(
                        BCResBlock(
                            in_ch if j == 0 else out_ch, out_ch,
                            num_subbands=num_subbands, dropout_prob=dropout_prob,
                        )
                        for j in range(n)
                    )
                )
            )
            self.stage_norms.append(norm())
            self.pools.append(nn.MaxPool2d(2) if pool else nn.Identity())
            in_ch = out_ch
        self.classifier = nn.Sequential(
            nn.Conv2d(in_ch, num_classes, 1),
            nn.AdaptiveAvgPool2d(1),
        )

    def forward(self, feats: Tensor) -> Tensor:
        """Classify a batch of clips.

        Args:
            feats: ``(B, T, F)`` front-end features, ``F == in_bins``.

        Returns:
            ``(B, num_classes)`` logits.
        """
        return self.classifier(self.extract_features(feats).last).flatten(1)

    def extract_features(self, feats: Tensor) -> ClassifierFeatures:
        """The four stages' outputs (after ResNorm and pool) for ``(B, T, F)`` features."""
        x = features_to_map(feats, self.in_bins, "BCResNetMod")
        x = self.head(self.input_norm(x))
        stages = []
        for stage, norm, pool in zip(self.stages, self.stage_norms, self.pools):
            x = pool(norm(stage(x)))
            stages.append(x)
        return ClassifierFeatures(stages)
