"""Audio-visual speech recognition model: front-ends, cross-modal streams, fusion, Conformer, CTC.

Shape legend: B batch, T video frames (25 Hz), Ta = 4 T filter-bank frames, F bins,
H x W mouth ROI (88 x 88), D width, V units (blank = 0).

Data flow (Kim, Jang et al., SLT 2024, methods.md section 6.3, on a CTC Conformer instead of
AV-HuBERT + a seq2seq decoder)::

    a = AudioFrontend(noisy fbank)          (B, T, D)      v = VisualFrontend(ROIs)   (B, T, D)
    a' = a + V2A(query a, keys/values v)     (regressed to AudioFrontend(clean fbank): L_ref)
    v' = v + A2V(query v, keys/values a')    (stop-gradient on a': no A2V loss reaches V2A)
    temporal heads on A2V(...) and a'         (order, direction, speed: BCE)
    fused = Linear(LayerNorm([a' ; v']))     -> Conformer layers -> CTC head

``cross_modal=False`` skips both streams and the heads (plain audio-visual concatenation);
``use_video=False`` is the audio-only baseline (no visual front-end at all). Modality dropout
(training): with probability ``modality_dropout`` an utterance loses one modality (its
front-end features zeroed): the audio with probability ``audio_drop_share``, else the video, so the
model also decodes video-only and audio-only (:meth:`AvsrModel.forward` ``modality``).

Example:
    >>> import torch
    >>> model = AvsrModel(vocab_size=30, dim=48, num_layers=2, num_heads=4, visual_channels=8,
    ...                   visual_blocks=(1, 1, 1, 1)).eval()
    >>> feats, video = torch.randn(2, 40, 80), torch.randint(0, 255, (2, 10, 88, 88), dtype=torch.uint8)
    >>> out = model(feats, torch.tensor([40, 24]), video, torch.tensor([10, 6]))
    >>> tuple(out["log_probs"].shape), out["log_prob_lens"].tolist()
    ((2, 10, 30), [10, 6])
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from speechkit.models.asr.conformer import ConformerLayer
from speechkit.models.asr.ctc import CTCHead
from speechkit.models.asr.masks import attention_mask
from speechkit.models.avsr.frontends import AudioFrontend, VisualFrontend
from speechkit.models.avsr.temporal import TemporalDynamicsHeads
from speechkit.models.avsr.xmodal import XmodalStream

MODALITIES = ("av", "audio", "video")


class AvsrModel(nn.Module):
    """Audio-visual CTC recogniser (module docstring).

    Args:
        vocab_size: V for a CTC head of its own; 0 (as in :class:`speechkit.tasks.avsr.AvsrTask`,
            whose CTC head it is): outputs without ``log_probs``.
        input_dim: filter-bank bins F.
        dim: D; num_layers, num_heads, ffn_dim, conv_kernel_size: the Conformer layers.
        visual_channels, visual_blocks: the ResNet trunk (64, (2, 2, 2, 2) is ResNet-18).
        use_video: False for the audio-only baseline.
        cross_modal: the V2A/A2V streams and the temporal-dynamics heads.
        xmodal_heads: attention heads of the streams.
        modality_dropout, audio_drop_share: modality dropout in training (module docstring).
        dropout: dropout in the Conformer and streams.
    """

    def __init__(self, vocab_size: int = 0, input_dim: int = 80, dim: int = 144, num_layers: int = 4,
                 num_heads: int = 4, ffn_dim: int | None = None, conv_kernel_size: int = 15,
                 visual_channels: int = 16, visual_blocks: tuple[int, ...] = (1, 1, 1, 1), use_video: bool = True,
                 cross_modal: bool = True, xmodal_heads: int = 4, modality_dropout: float = 0.0,
                 audio_drop_share: float = 0.5, dropout: float = 0.1) -> None:
        super().__init__()
        self.dim, self.use_video, self.cross_modal = dim, use_video, cross_modal and use_video
        self.modality_dropout, self.audio_drop_share = modality_dropout, audio_drop_share
        self.audio_frontend = AudioFrontend(input_dim, dim)
        self.visual_frontend = VisualFrontend(dim, visual_channels, tuple(visual_blocks)) if use_video else None
        if self.cross_modal:
            self.v2a = XmodalStream(dim, xmodal_heads, dropout=dropout)
            self.a2v = XmodalStream(dim, xmodal_heads, dropout=dropout)
            self.dynamics = TemporalDynamicsHeads(dim)
        width = 2 * dim if use_video else dim
        self.fusion = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, dim))
        self.layers = nn.ModuleList(ConformerLayer(dim, num_heads, ffn_dim or 4 * dim, conv_kernel_size, dropout)
                                    for _ in range(num_layers))
        self.ctc_head = CTCHead(dim, vocab_size) if vocab_size > 1 else None

    @property
    def output_dim(self) -> int:
        return self.dim

    def set_vocab_size(self, vocab_size: int) -> None:
        """Create the CTC head (D -> V) if the model was built without a vocabulary."""
        if self.ctc_head is None or self.ctc_head.vocab_size != vocab_size:
            self.ctc_head = CTCHead(self.dim, vocab_size)

    def set_feature_stats(self, mean: Tensor, std: Tensor) -> None:
        """Global CMVN (F,) of the audio front-end (:meth:`AudioFrontend.set_feature_stats`)."""
        self.audio_frontend.set_feature_stats(mean, std)

    @property
    def feat_mean(self) -> Tensor:
        return self.audio_frontend.feat_mean

    @property
    def feat_inv_std(self) -> Tensor:
        return self.audio_frontend.feat_inv_std

    def forward(self, audio_feats: Tensor, audio_lens: Tensor, video: Tensor | None = None,
                video_lens: Tensor | None = None, clean_feats: Tensor | None = None, modality: str = "av",
                generator: torch.Generator | None = None) -> dict:
        """Encode a padded batch.

        Args:
            audio_feats: (B, Ta, F) noisy filter-banks; audio_lens: int64 (B,) valid frames.
            video: uint8/float (B, T, H, W) mouth ROIs (None for an audio-only model);
                video_lens: int64 (B,).
            clean_feats: (B, Ta, F) clean filter-banks of the same utterances (training target of
                V2A); None: no L_ref.
            modality: ``"av"``, or ``"audio"``/``"video"`` to zero the other modality's features.
            generator: draws the order-task pairs.

        Returns:
            dict with ``log_probs`` (B, T, V) float32, ``log_prob_lens`` int64 (B,), ``encoder_out``
            (B, T, D) (``log_probs`` only with a CTC head: a model built with ``vocab_size``), and
            with the cross-modal streams ``v2a`` (B, T, D), ``clean`` (B, T, D) or
            None, ``dynamics`` (:class:`TemporalDynamicsHeads` output, training only).
        """
        if modality not in MODALITIES:
            raise ValueError(f"modality {modality!r}; expected one of {MODALITIES}")
        out: dict = {}
        if self.use_video:
            if video is None or video_lens is None:
                raise ValueError("this model reads video: pass video and video_lens")
            num_frames = video.shape[1]
            a, _ = self.audio_frontend(audio_feats, audio_lens, num_frames)
            lens = video_lens
            v = self.visual_frontend(video, video_lens)
            a, v = self._drop_modalities(a, v, modality)
            if self.cross_modal:
                refined = self.v2a(a, v, lens)
                # L_ref's prediction: the same value as the residual sum, but its gradient reaches only
                # the V2A stream. With the front-end in the path (the paper's, whose front-end is frozen
                # for most of training) our from-scratch front-end's scale drifted and L_ref grew without
                # bound (recipes/synthetic/avsr/README.md).
                out["v2a"] = a.detach() + refined
                a = a + refined
                a2v = self.a2v(v, a, lens)  # the stream detaches a (stop-gradient)
                v = v + a2v
                if clean_feats is not None:
                    with torch.no_grad():
                        out["clean"] = self.audio_frontend(clean_feats, audio_lens, num_frames)[0]
                if self.training:
                    out["dynamics"] = self.dynamics(a2v, a.detach(), lens, generator)
            x = self.fusion(torch.cat([a, v], dim=-1))
        else:
            a, lens = self.audio_frontend(audio_feats, audio_lens)
            x = self.fusion(a)
        mask = attention_mask(lens, x.shape[1])
        for layer in self.layers:
            x = layer(x, mask)
        out.update(log_prob_lens=lens, encoder_out=x)
        if self.ctc_head is not None:
            out["log_probs"] = self.ctc_head(x)
        return out

    def _drop_modalities(self, a: Tensor, v: Tensor, modality: str) -> tuple[Tensor, Tensor]:
        if modality == "audio":
            return a, torch.zeros_like(v)
        if modality == "video":
            return torch.zeros_like(a), v
        if self.training and self.modality_dropout > 0:
            drop = torch.rand(a.shape[0], device=a.device) < self.modality_dropout
            audio = torch.rand(a.shape[0], device=a.device) < self.audio_drop_share
            a = a * ~(drop & audio)[:, None, None]
            v = v * ~(drop & ~audio)[:, None, None]
        return a, v
