"""CTC speech recognition task: Fbank -> (SpecAugment) -> chunk-masked Conformer -> CTC.

Shapes: B batch, S samples, T feature frames (10 ms), F bins, T' encoder frames (40 ms),
V units (blank = 0).

Training draws an attention chunk size per batch (dynamic chunk training, WeNet U2, Zhang et
al. 2020, arXiv 2012.05481), so one model decodes at full context and at several latencies.
Validation reports the word error rate twice, decoding as ``speechkit eval-asr`` does
(:func:`speechkit.decoding.ctc_text`): ``val/wer`` at full context (it picks the best
checkpoint) and ``val/wer_chunk<C>`` with chunks of ``decode_chunk_size`` encoder frames
(8 frames = 320 ms), the streaming setting. The optimizer, warm-up/decay schedule,
checkpointing and logging come from :class:`speechkit.tasks.base.SpeechTask`; gradient
clipping and bf16 are Trainer settings (``gradient_clip_val``, ``precision: bf16-mixed``).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from speechkit.data.asr_datamodule import pad_waveforms
from speechkit.decoding import ctc_text
from speechkit.errors import SpeechkitError
from speechkit.losses.ctc import CTCLoss
from speechkit.metrics.wer import WordErrorRate
from speechkit.models.asr import CTCHead, DynamicChunk
from speechkit.tasks.base import OptimConfig, SpeechTask


class AsrCtcTask(SpeechTask):
    """A streaming-capable CTC recogniser.

    Args:
        encoder: ``forward(feats (B, T, F), feat_lens, chunk_size, left_chunks) -> (enc (B, T', D),
            enc_lens)`` with ``output_dim`` D and ``set_feature_stats(mean, std)`` (e.g.
            :class:`speechkit.models.asr.ConformerEncoder`).
        frontend: ``forward(audio (B, S), audio_lens) -> (feats (B, T, F), feat_lens)``; runs in
            float32 even under mixed precision (log energies need the range).
        vocab_size: V, units including the blank (linked from ``data.vocab_size``); the CTC
            head is a linear layer D -> V.
        tokenizer_path: the sentencepiece model (linked from the data module). Its bytes are
            stored in every checkpoint, so a checkpoint transcribes on its own.
        sample_rate: audio rate (Hz) the model expects (linked from the data module).
        loss: ``loss(outputs, batch) -> (loss, stats)``; default :class:`CTCLoss`.
        specaugment: applied to the features in training only (``None``: off).
        dynamic_chunk: chunk-size draw per training batch; ``None`` trains at full context only.
        decode_chunk_size: chunk (encoder frames) of the second validation WER; 0 skips it.
        cmvn_utterances: training utterances whose features give the encoder's global mean and
            variance normalisation at the start of training (0: leave the encoder's stats).
        optim: optimizer and schedule (AdamW with warm-up is the usual ASR choice).
    """

    task_name = "asr-ctc"
    monitor = "val/wer"
    monitor_mode = "min"
    data_links = (
        ("data.vocab_size", "model.init_args.vocab_size"),
        ("data.tokenizer_path", "model.init_args.tokenizer_path"),
        ("data.sample_rate", "model.init_args.sample_rate"),
    )

    def __init__(
        self,
        encoder: nn.Module,
        frontend: nn.Module,
        vocab_size: int = 0,
        tokenizer_path: str = "",
        sample_rate: int = 16000,
        loss: nn.Module | None = None,
        specaugment: nn.Module | None = None,
        dynamic_chunk: DynamicChunk | None = None,
        decode_chunk_size: int = 8,
        cmvn_utterances: int = 500,
        optim: OptimConfig | None = None,
    ) -> None:
        super().__init__(optim or OptimConfig(name="adamw", lr=1e-3, weight_decay=1e-3, warmup_epochs=1.0))
        self.save_config(["encoder", "frontend", "loss", "specaugment"])
        if vocab_size < 2:
            raise SpeechkitError(
                f"vocab_size is {vocab_size}: give the tokenizer's size (speechkit fit links it from "
                "data.vocab_size)"
            )
        self.encoder = encoder
        self.frontend = frontend
        self.ctc_head = CTCHead(encoder.output_dim, vocab_size)
        self.loss_fn = loss if loss is not None else CTCLoss()
        self.specaugment = specaugment
        self.dynamic_chunk = dynamic_chunk
        self.decode_chunk_size = int(decode_chunk_size)
        self.cmvn_utterances = int(cmvn_utterances)
        self.sample_rate = int(sample_rate)
        self.tokenizer_path = tokenizer_path
        self._tokenizer = None
        self.wer_metrics = nn.ModuleDict({key: WordErrorRate() for key in self._wer_keys()})

    # -- model -------------------------------------------------------------------------------
    @property
    def tokenizer(self):
        """The :class:`speechkit.text.Tokenizer` (from the checkpoint, else ``tokenizer_path``)."""
        if self._tokenizer is None:
            from speechkit.text import Tokenizer

            self._tokenizer = Tokenizer(self.tokenizer_path)
        return self._tokenizer

    def log_probs(
        self, audio: Tensor, audio_lens: Tensor, chunk_size: int = -1, left_chunks: int = -1
    ) -> tuple[Tensor, Tensor]:
        """Audio (B, S) in [-1, 1], int64 (B,) -> float32 log-probabilities (B, T', V), int64 (B,).

        ``chunk_size`` encoder frames per attention chunk (-1: full context) with
        ``left_chunks`` chunks of left context (-1: all).
        """
        with torch.autocast(audio.device.type, enabled=False):
            feats, feat_lens = self.frontend(audio.float(), audio_lens)
        if self.training and self.specaugment is not None:
            feats = self.specaugment(feats, feat_lens)
        enc_out, enc_lens = self.encoder(feats, feat_lens, chunk_size, left_chunks)
        return self.ctc_head(enc_out), enc_lens

    forward = log_probs

    # -- training and evaluation ---------------------------------------------------------------
    def step(self, batch: dict, stage: str) -> tuple[Tensor, dict[str, Tensor]]:
        chunk_size, left_chunks = -1, -1
        if stage == "train" and self.dynamic_chunk is not None:
            chunk_size, left_chunks = self.dynamic_chunk.sample()
        log_probs, lens = self.log_probs(batch["audio"], batch["audio_lens"], chunk_size, left_chunks)
        loss, stats = self.loss_fn({"log_probs": log_probs, "log_prob_lens": lens}, batch)
        if stage != "train":
            self.wer_metrics[stage].update(batch["texts"], self.greedy_texts(log_probs, lens))
            if self.decode_chunk_size > 0:
                chunk_lp, chunk_lens = self.log_probs(batch["audio"], batch["audio_lens"], self.decode_chunk_size)
                self.wer_metrics[f"{stage}_chunk"].update(batch["texts"], self.greedy_texts(chunk_lp, chunk_lens))
        return loss, stats

    def greedy_texts(self, log_probs: Tensor, lens: Tensor) -> list[str]:
        """(B, T', V) log-probabilities, int64 (B,) -> texts, by the one text rule of every
        reported WER (:func:`speechkit.decoding.ctc_text`: greedy search, word marks and the
        0.8 s pause rule), so ``val/wer`` equals ``speechkit eval-asr`` on the same audio."""
        tokens = self.tokenizer.tokens()
        log_probs = log_probs.detach().float().cpu().numpy()
        return [ctc_text(lp[: int(n)], tokens) for lp, n in zip(log_probs, lens.tolist())]

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        super().validation_step(batch, batch_idx)
        self._log_wer("val", len(batch["ids"]))

    def test_step(self, batch: dict, batch_idx: int) -> None:
        super().test_step(batch, batch_idx)
        self._log_wer("test", len(batch["ids"]))

    def _wer_keys(self) -> list[str]:
        chunked = ["val_chunk", "test_chunk"] if self.decode_chunk_size > 0 else []
        return ["val", "test"] + chunked

    def _log_wer(self, stage: str, batch_size: int) -> None:
        # Logging the Metric object: Lightning computes it over the epoch (all ranks) and resets it.
        self.log(f"{stage}/wer", self.wer_metrics[stage], on_step=False, on_epoch=True, prog_bar=True,
                 batch_size=batch_size)
        if self.decode_chunk_size > 0:
            self.log(f"{stage}/wer_chunk{self.decode_chunk_size}", self.wer_metrics[f"{stage}_chunk"],
                     on_step=False, on_epoch=True, prog_bar=True, batch_size=batch_size)

    def configure_optimizers(self):
        config = super().configure_optimizers()
        use_fused_step(config["optimizer"])
        return config

    # -- feature statistics and checkpoints ----------------------------------------------------
    def on_fit_start(self) -> None:
        """Set the encoder's global CMVN from training audio, unless it already has statistics
        (a resumed or fine-tuned model keeps its own)."""
        datamodule = getattr(self.trainer, "datamodule", None)
        has_stats = bool((self.encoder.feat_mean != 0).any() or (self.encoder.feat_inv_std != 1).any())
        if self.cmvn_utterances <= 0 or has_stats or not hasattr(datamodule, "stats_audio"):
            return
        mean, std = self.feature_stats(datamodule.stats_audio(self.cmvn_utterances))
        self.encoder.set_feature_stats(mean.to(self.device), std.to(self.device))

    @torch.no_grad()
    def feature_stats(self, audios: list, batch_size: int = 16) -> tuple[Tensor, Tensor]:
        """Mean and std (F,) of the front-end's features over the waveforms' valid frames."""
        was_training = self.frontend.training
        self.frontend.eval()  # no dither
        total = count = total_sq = 0
        for i in range(0, len(audios), batch_size):
            audio, lens = pad_waveforms(audios[i : i + batch_size])
            feats, feat_lens = self.frontend(audio.to(self.device), lens.to(self.device))
            valid = (torch.arange(feats.shape[1], device=feats.device)[None, :] < feat_lens[:, None])[..., None]
            feats = feats.double() * valid
            total = total + feats.sum(dim=(0, 1))
            total_sq = total_sq + feats.square().sum(dim=(0, 1))
            count += int(feat_lens.sum())
        self.frontend.train(was_training)
        if count == 0:
            raise SpeechkitError("no feature frames to compute the normalisation statistics from")
        mean = total / count
        std = (total_sq / count - mean.square()).clamp(min=1e-10).sqrt()
        return mean.float(), std.float()

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["tokenizer_model"] = self.tokenizer.model_bytes

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        if "tokenizer_model" in checkpoint:
            from speechkit.text import Tokenizer

            self._tokenizer = Tokenizer.from_bytes(checkpoint["tokenizer_model"], "checkpoint tokenizer")


def use_fused_step(optimizer: torch.optim.Optimizer) -> None:
    """Switch Adam/AdamW/SGD to their fused (one-kernel) step where every parameter allows it.

    On the CPU the default per-tensor loop of AdamW costs about 1.4 s per step for the 2.5 M
    parameters of the xs Conformer (torch 2.13, 2 cores), as much as a third of a training step;
    the fused step takes about 20 ms and gives the same weights up to float rounding.
    TODO: pass ``fused=True`` in ``SpeechTask.configure_optimizers`` and drop this.
    """
    if not isinstance(optimizer, (torch.optim.Adam, torch.optim.AdamW, torch.optim.SGD)):
        return
    params = [p for group in optimizer.param_groups for p in group["params"]]
    supported = all(p.device.type in ("cpu", "cuda") and p.dtype in (torch.float32, torch.bfloat16, torch.float16)
                    for p in params)
    if supported and not any(group.get("foreach") for group in optimizer.param_groups):
        for group in optimizer.param_groups:
            group["fused"] = True
