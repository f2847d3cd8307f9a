"""BC-ResNet: broadcasted residual learning for keyword spotting.

Kim, Chang, Lee, Sung, "Broadcasted Residual Learning for Efficient Keyword Spotting",
Interspeech 2021, arXiv 2106.04140. Re-implemented from the paper and the layout of the
official code (Qualcomm-AI-research/bcresnet, ``bcresnet.py``); parameter counts match it
exactly (9,232 for BC-ResNet-1 ... 321,068 for BC-ResNet-8 at 12 classes).

Each block runs a cheap frequency-wise depthwise conv on the 2D map (f2), averages over
frequency, runs a dilated temporal depthwise + pointwise conv on the resulting 1D sequence
(f1), and broadcasts that back over all frequency bins:
``y = ReLU(x + f2(x) + broadcast(f1(avgpool_F(f2(x)))))`` (no ``x`` term in transition blocks).

The network is a **fixed-clip classifier**: temporal convs are centred (padding = dilation,
so they look into the future) and the head averages over all frames, so a logit depends on
the whole clip and on its length. Streaming detection runs it on a sliding window of
``clip`` frames (see ``speechkit.runtime``); it has no ``streaming_forward``.

Tensor axes inside: ``(B, C, F, T)`` = batch, channels, mel bins, frames.

``forward`` always returns logits; per-stage activations (for distillation or embeddings) come
from ``extract_features``, a :class:`ClassifierFeatures`.
"""

import math
from dataclasses import dataclass

from torch import Tensor, nn

from speechkit.errors import SpeechkitError
from speechkit.models.nn.norm import ResNorm, SubSpectralNorm

#: Width multipliers tau of the published BC-ResNet-tau models (base width c = int(8 * tau)).
BCRESNET_WIDTHS = (1, 1.5, 2, 3, 6, 8)


class BCResBlock(nn.Module):
    """One broadcasted residual block.

    A block is a *transition* block when the channel count or the frequency resolution
    changes (the first block of a stage); it then starts with 1x1 conv + BN + ReLU and drops
    the identity shortcut, as in the official code.

    Args:
        in_channels: channels of the input map.
        out_channels: channels of the output map.
        freq_stride: stride of the frequency depthwise conv (2 halves F, rounding up).
        dilation: dilation of the temporal depthwise conv (its padding equals it, so T is kept).
        num_subbands: SubSpectralNorm sub-bands; the output F must be divisible by it.
        dropout_prob: channel dropout (Dropout2d) after the 1D branch.

    Shape:
        x: ``(B, in_channels, F, T)``; output: ``(B, out_channels, ceil(F / freq_stride), T)``.

    Example:
        >>> import torch
        >>> block = BCResBlock(16, 8, freq_stride=2, dilation=2)
        >>> block(torch.randn(2, 16, 20, 101)).shape
        torch.Size([2, 8, 10, 101])
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        freq_stride: int = 1,
        dilation: int = 1,
        num_subbands: int = 5,
        dropout_prob: float = 0.1,
    ) -> None:
        super().__init__()
        self.transition = in_channels != out_channels or freq_stride != 1
        f2: list[nn.Module] = []
        if self.transition:
            f2 += [
                nn.Conv2d(in_channels, out_channels, 1, bias=False),
                nn.BatchNorm2d(out_channels),
                nn.ReLU(),
            ]
        # 2D part: depthwise 3x1 over frequency, SSN, no activation (kept as the 2D residual).
        f2 += [
            nn.Conv2d(
                out_channels, out_channels, (3, 1), stride=(freq_stride, 1), padding=(1, 0),
                groups=out_channels, bias=False,
            ),
            SubSpectralNorm(out_channels, num_subbands),
        ]
        self.f2 = nn.Sequential(*f2)
        # 1D part on the frequency-averaged (C, 1, T) map: dilated temporal depthwise 1x3.
        self.f1 = nn.Sequential(
            nn.Conv2d(
                out_channels, out_channels, (1, 3), padding=(0, dilation), dilation=(1, dilation),
                groups=out_channels, bias=False,
            ),
            nn.BatchNorm2d(out_channels),
            nn.SiLU(),
            nn.Conv2d(out_channels, out_channels, 1, bias=False),
            nn.Dropout2d(dropout_prob),
        )

    def forward(self, x: Tensor) -> Tensor:
        """Map ``(B, C_in, F, T)`` to ``(B, C_out, F', T)``."""
        aux_2d = self.f2(x)
        y = self.f1(aux_2d.mean(dim=2, keepdim=True)) + aux_2d  # (B, C, 1, T) broadcast over F
        if not self.transition:
            y = y + x
        return nn.functional.relu(y)


@dataclass
class ClassifierFeatures:
    """Per-stage activations of a BC-ResNet classifier (``extract_features``).

    Attributes:
        stages: one map per stage, ``(B, C_i, F_i, T_i)``, after the stage's ResNorm (and,
            in BC-ResNet-Mod, its pool); ``stages[-1]`` is what the classifier head turns into
            logits: ``model.classifier(stages[-1]).flatten(1) == model(feats)``.
    """

    stages: list[Tensor]

    @property
    def last(self) -> Tensor:
        """The last stage's map, the classifier head's input."""
        return self.stages[-1]


def check_subband_sizes(
    model: str, freq_bins: list[int], num_subbands: int, in_bins: int
) -> None:
    """Raise SpeechkitError unless every SSN input frequency size divides into sub-bands."""
    bad = [f for f in freq_bins if f % num_subbands != 0]
    if bad:
        raise SpeechkitError(
            f"{model}: in_bins={in_bins} gives frequency sizes {freq_bins} inside the network, "
            f"and {bad} cannot be split into num_subbands={num_subbands} equal sub-bands; "
            f"choose in_bins/num_subbands so that every size is divisible"
        )


class BCResNet(nn.Module):
    """BC-ResNet-tau keyword-spotting classifier (the official KWS architecture).

    Layout with base width ``c = int(8 * width)`` and stage widths
    ``(c, int(1.5c), 2c, int(2.5c))``, as in the official code:

    ========== ================================================================= ==============
    head       Conv 5x5, stride (2 freq, 1 time), 1 -> 2c; BN; ReLU              2c x F/2 x T
    stage 1    2 BC-ResBlocks, width c, dilation 1                               c x F/2 x T
    stage 2    2 blocks, width 1.5c, freq stride 2 in the first, dilation 2      1.5c x F/4 x T
    stage 3    4 blocks, width 2c, freq stride 2 in the first, dilation 4        2c x F/8 x T
    stage 4    4 blocks, width 2.5c, dilation 8                                  2.5c x F/8 x T
    classifier depthwise 5x5 (no freq pad); 1x1 -> 4c; BN; ReLU; mean over F, T; num_classes
               1x1 conv with bias
    ========== ================================================================= ==============

    With the default 40 mel bins the frequency sizes are 20, 10, 5, 5 and the classifier's
    unpadded 5-bin conv collapses frequency to 1.

    **ResNorm option** (``resnorm=True``): parameter-free ``lambda * x + FreqNorm(x)`` applied
    at the network input (on the 1-channel log-mel, where it amounts to per-utterance,
    per-bin mean/variance normalization plus a scaled identity) and after each of the 4
    stages: the placement of BC-ResNet-Mod (DCASE 2021), carried over to KWS. It does not
    change the parameter count. Off by default, as in the KWS paper.

    The model is a fixed-clip classifier (non-causal temporal convs, mean over all frames);
    feed it clips of the length it was trained on (101 frames = 1 s at a 10 ms hop).

    Args:
        num_classes: number of output logits (12 for Speech Commands).
        width: width multiplier tau; base width ``c = int(8 * width)``.
        num_subbands: SubSpectralNorm sub-bands (5 in the paper).
        dropout_prob: Dropout2d probability at the end of each block's 1D branch.
        resnorm: apply ResNorm at the input and after every stage.
        resnorm_lambda: identity weight of ResNorm.
        in_bins: number of mel bins F the front-end produces (40 in the paper: 30 ms window,
            10 ms hop, 16 kHz, log(mel + 1e-6)).

    Shape:
        feats: ``(B, T, F)`` float front-end features, time-major as every speechkit front-end
        outputs, with ``F == in_bins``; output: logits ``(B, num_classes)``.

    Raises:
        SpeechkitError: when ``in_bins`` and ``num_subbands`` do not fit together.

    Example:
        >>> import torch
        >>> model = BCResNet(num_classes=12, width=1).eval()
        >>> feats = torch.randn(2, 101, 40)
        >>> model(feats).shape
        torch.Size([2, 12])
        >>> sum(p.numel() for p in model.parameters())
        9232
        >>> [tuple(x.shape) for x in model.extract_features(feats).stages]
        [(2, 8, 20, 101), (2, 12, 10, 101), (2, 16, 5, 101), (2, 20, 5, 101)]
    """

    def __init__(
        self,
        num_classes: int = 12,
        width: float = 1.0,
        num_subbands: int = 5,
        dropout_prob: float = 0.1,
        resnorm: bool = False,
        resnorm_lambda: float = 0.1,
        in_bins: int = 40,
    ) -> None:
        super().__init__()
        c, widths, blocks_per_stage, freq_strides = bcresnet_layout("BCResNet", width, num_classes, num_subbands, in_bins)
        self.num_classes = num_classes
        self.in_bins = in_bins

        self.input_norm = ResNorm(resnorm_lambda) if resnorm else nn.Identity()
        self.head = nn.Sequential(
            nn.Conv2d(1, 2 * c, 5, stride=(2, 1), padding=2, bias=False),
            nn.BatchNorm2d(2 * c),
            nn.ReLU(),
        )
        self.stages = nn.ModuleList()
        self.stage_norms = nn.ModuleList()
        in_ch = 2 * c
        for i, (n, out_ch, stride) in enumerate(zip(blocks_per_stage, widths, freq_strides)):
            blocks = [
                BCResBlock(
                    in_ch if j == 0 else out_ch, out_ch,
                    freq_stride=stride if j == 0 else 1,
                    dilation=2**i,  # temporal dilation 1, 2, 4, 8 by stage (official code)
                    num_subbands=num_subbands, dropout_prob=dropout_prob,
                )
                for j in range(n)
            ]
            self.stages.append(nn.Sequential(*blocks))
            self.stage_norms.append(ResNorm(resnorm_lambda) if resnorm else nn.Identity())
            in_ch = out_ch
        #: Channels of the last stage's map (the input of the classifier's two convolutions).
        self.encoder_channels = in_ch
        self.classifier = nn.Sequential(*bcresnet_top_layers(in_ch, 4 * c), nn.Conv2d(4 * c, num_classes, 1))

    def forward(self, feats: Tensor) -> Tensor:
        """Classify a batch of clips.

        Args:
            feats: ``(B, T, F)`` front-end features, ``F == in_bins``.

        Returns:
            ``(B, num_classes)`` logits.
        """
        return self.classifier(self.extract_features(feats).last).flatten(1)

    def extract_features(self, feats: Tensor) -> ClassifierFeatures:
        """The four stages' outputs for ``(B, T, F)`` features (see :class:`ClassifierFeatures`)."""
        x = features_to_map(feats, self.in_bins, "BCResNet")
        x = self.head(self.input_norm(x))
        stages = []
        for stage, norm in zip(self.stages, self.stage_norms):
            x = norm(stage(x))
            stages.append(x)
        return ClassifierFeatures(stages)


def bcresnet_top_layers(in_channels: int, out_channels: int) -> list[nn.Module]:
    """The classifier's last two convolution layers, pooled: depthwise 5x5 (no frequency padding),
    1x1 to ``out_channels``, BN, ReLU, mean over (F, T).

    ``BCResNet.classifier`` is these plus the final 1x1 logit conv. Split models (personalized
    KWS: a shared encoder = ``extract_features(...).last``, then one copy of these per task
    branch) build their branches from it.

    Shape:
        ``(B, in_channels, 5, T)`` -> ``(B, out_channels, 1, 1)``.
    """
    return [
        nn.Conv2d(in_channels, in_channels, 5, padding=(0, 2), groups=in_channels, bias=False),
        nn.Conv2d(in_channels, out_channels, 1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
    ]


def bcresnet_layout(
    model: str, width: float, num_classes: int, num_subbands: int, in_bins: int
) -> tuple[int, list[int], tuple[int, ...], tuple[int, ...]]:
    """The stage plan of a BC-ResNet-``width`` (shared by the fixed-clip and streaming networks).

    Returns:
        ``(c, widths, blocks_per_stage, freq_strides)``: base width ``int(8 * width)``, the four
        stage widths, blocks per stage and the first block's frequency stride per stage.

    Raises:
        SpeechkitError: the width or class count gives no channels, or ``in_bins`` and
            ``num_subbands`` do not fit the network's frequency sizes.
    """
    c = int(8 * width)
    if c < 1 or num_classes < 1:
        raise SpeechkitError(
            f"{model}: width={width} gives base width int(8 * width)={c} and "
            f"num_classes={num_classes}; both must be at least 1"
        )
    # int() truncation as in the official code: width 1.5 -> c=12 -> (12, 18, 24, 30).
    widths = [c, int(1.5 * c), 2 * c, int(2.5 * c)]
    blocks_per_stage = (2, 2, 4, 4)
    freq_strides = (1, 2, 2, 1)
    freq_bins = _bcresnet_freq_sizes(in_bins, freq_strides)
    check_subband_sizes(model, freq_bins, num_subbands, in_bins)
    if freq_bins[-1] < 5:
        raise SpeechkitError(
            f"{model}: in_bins={in_bins} leaves {freq_bins[-1]} frequency bins before the "
            f"classifier's 5x5 conv (no frequency padding); at least 5 are needed"
        )
    return c, widths, blocks_per_stage, freq_strides


def _bcresnet_freq_sizes(in_bins: int, freq_strides: tuple[int, ...]) -> list[int]:
    """Frequency size at each stage's SSNs: head halves F (k5, p2, s2), strides halve again."""
    f = math.ceil(in_bins / 2)
    sizes = []
    for s in freq_strides:
        f = math.ceil(f / s)  # k3, p1, stride s: floor((f - 1) / s) + 1
        sizes.append(f)
    return sizes


def features_to_map(feats: Tensor, in_bins: int, model: str) -> Tensor:
    """``(B, T, F)`` features -> ``(B, 1, F, T)`` map, checking F against the model config."""
    if feats.dim() != 3 or feats.shape[-1] != in_bins:
        raise SpeechkitError(
            f"{model}: expected features (batch, frames, {in_bins} bins), got shape "
            f"{tuple(feats.shape)}; the front-end's bin count must equal the model's in_bins"
        )
    return feats.transpose(1, 2).unsqueeze(1)


def bcresnet_preset(width: float, num_classes: int = 12, **kwargs) -> BCResNet:
    """Build BC-ResNet-``width``; the published widths are :data:`BCRESNET_WIDTHS`.

    Args:
        width: width multiplier tau (base width ``int(8 * tau)``).
        num_classes: number of logits.
        **kwargs: other :class:`BCResNet` arguments (``resnorm``, ``dropout_prob``, ...).

    Example:
        >>> sum(p.numel() for p in bcresnet_preset(8).parameters())
        321068
    """
    return BCResNet(num_classes=num_classes, width=width, **kwargs)
