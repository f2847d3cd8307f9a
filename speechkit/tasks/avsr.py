"""Audio-visual speech recognition task: noisy audio + mouth ROIs -> CTC, with the cross-modal
losses of Kim, Jang et al. (SLT 2024; docs/methods/avsr.md).

Shapes: B batch, S samples (16 kHz), Ta = S / 160 filter-bank frames, T = S / 640 video frames,
V units (blank = 0).

It is the CTC task (:class:`speechkit.tasks.asr.AsrCtcTask`: tokenizer in the checkpoint, WER by
the one text rule, best checkpoint by ``val/wer``, CMVN from training audio) with an
:class:`speechkit.models.avsr.AvsrModel` as the encoder: the front-end (Kaldi fbank,
``snip_edges: false`` so that ``Ta = 4 T``) runs on the noisy and on the clean audio, the model
reads both and the video, and :class:`speechkit.losses.avsr.AvsrLoss` adds the temporal-dynamics
and V2A refinement losses to CTC. Validation decodes with both modalities, and with
``eval_modality`` set to ``audio`` or ``video``, with one only (the other's features zeroed, as
modality dropout trains it).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from speechkit.errors import SpeechkitError
from speechkit.losses.avsr import AvsrLoss
from speechkit.tasks.asr import AsrCtcTask
from speechkit.tasks.base import OptimConfig


class AvsrTask(AsrCtcTask):
    """Audio-visual CTC recogniser.

    Args:
        encoder: an :class:`speechkit.models.avsr.AvsrModel` built without a vocabulary (the CTC
            head is the task's, D -> V).
        frontend: ``(audio (B, S), lens) -> (feats (B, Ta, F), feat_lens)``; Fbank with
            ``snip_edges: false``.
        vocab_size, tokenizer_path, sample_rate: linked from the data module.
        loss: default :class:`AvsrLoss` with the paper's weights.
        eval_modality: ``av``, ``audio`` or ``video``: what validation/test decode from.
        cmvn_utterances, optim: as :class:`AsrCtcTask`.
    """

    task_name = "avsr"

    def __init__(self, encoder: nn.Module, frontend: nn.Module, vocab_size: int = 0, tokenizer_path: str = "",
                 sample_rate: int = 16000, loss: nn.Module | None = None, eval_modality: str = "av",
                 cmvn_utterances: int = 200, optim: OptimConfig | None = None) -> None:
        super().__init__(encoder, frontend, vocab_size=vocab_size, tokenizer_path=tokenizer_path,
                         sample_rate=sample_rate, loss=loss if loss is not None else AvsrLoss(), specaugment=None,
                         dynamic_chunk=None, decode_chunk_size=0, cmvn_utterances=cmvn_utterances,
                         optim=optim or OptimConfig(name="adamw", lr=1e-3, weight_decay=1e-3, warmup_epochs=1.0))
        if getattr(frontend, "snip_edges", False):
            raise SpeechkitError("the AVSR front-end needs Fbank(snip_edges=False): 4 fbank frames per video frame")
        if eval_modality not in ("av", "audio", "video"):
            raise SpeechkitError(f"eval_modality {eval_modality!r}; expected av, audio or video")
        self.eval_modality = eval_modality

    def features(self, audio: Tensor, audio_lens: Tensor) -> tuple[Tensor, Tensor]:
        """Audio (B, S) -> float32 filter-banks (B, Ta, F) and int64 (B,) lengths."""
        with torch.autocast(audio.device.type, enabled=False):
            return self.frontend(audio.float(), audio_lens)

    def forward_batch(self, batch: dict, modality: str = "av", with_clean: bool = False) -> dict:
        """The model's outputs for a batch (module docstring), ``log_probs`` from the CTC head."""
        feats, feat_lens = self.features(batch["audio"], batch["audio_lens"])
        clean = self.features(batch["clean_audio"], batch["audio_lens"])[0] if with_clean else None
        outputs = self.encoder(feats, feat_lens, batch.get("video"), batch.get("video_lens"), clean_feats=clean,
                               modality=modality)
        outputs["log_probs"] = self.ctc_head(outputs["encoder_out"])
        return outputs

    def log_probs(self, audio: Tensor, audio_lens: Tensor, video: Tensor | None = None,
                  video_lens: Tensor | None = None, modality: str = "av") -> tuple[Tensor, Tensor]:
        """Audio (B, S), int64 (B,), uint8 video (B, T, 88, 88), int64 (B,) -> (B, T, V), int64 (B,)."""
        outputs = self.forward_batch({"audio": audio, "audio_lens": audio_lens, "video": video,
                                      "video_lens": video_lens}, modality)
        return outputs["log_probs"], outputs["log_prob_lens"]

    forward = log_probs

    def step(self, batch: dict, stage: str) -> tuple[Tensor, dict[str, Tensor]]:
        train = stage == "train"
        with_clean = train and "clean_audio" in batch and getattr(self.encoder, "cross_modal", False)
        outputs = self.forward_batch(batch, "av" if train else self.eval_modality, with_clean)
        loss, stats = self.loss_fn(outputs, batch)
        if not train:
            self.wer_metrics[stage].update(batch["texts"], self.greedy_texts(outputs["log_probs"],
                                                                             outputs["log_prob_lens"]))
        return loss, stats
