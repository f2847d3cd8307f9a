"""Streaming ASR distilled from a frozen full-context teacher (issue 13; Shim et al., Interspeech
2023, arXiv 2308.16415; methods.md section 4).

Shapes: B batch, S samples, T feature frames, T' encoder frames (40 ms), D widths, V units.

:class:`AsrKdTask` is :class:`speechkit.tasks.asr.AsrCtcTask` (data, SpecAugment, dynamic chunks,
WER at full context and at ``decode_chunk_size``, checkpoints, resume, export) with, in training
only, a frozen teacher and the auxiliary branches (:mod:`speechkit.models.asr.kd_branches`)::

    L = L_CTC + w_token L_token + sum over mapped layers (a L_feat + b L_attn + c L_APC)

``DistillConfig.layers`` picks the system: ``none`` (scratch or token KD), ``direct`` (student
layer -> projection -> teacher layer) or ``aux`` (through the auxiliary full-context layer).
Validation and test decode the student alone. The teacher is loaded from ``teacher_checkpoint``
(any ``asr-ctc`` checkpoint with the same front-end; eval mode, no gradient) and is *not* part of
the state dict; the branches are (so a run resumes), and :func:`write_student_checkpoint` drops
them: its output is a plain ``AsrCtcTask`` checkpoint with the same parameter names and outputs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor, nn

from speechkit.errors import SpeechkitError
from speechkit.losses.asr_kd import ApcLoss, AttentionRelationLoss, FeatureLoss, TokenKdLoss
from speechkit.models.asr import DynamicChunk
from speechkit.models.asr.kd_branches import KdBranches, default_layer_map
from speechkit.tasks.asr import AsrCtcTask
from speechkit.tasks.base import OptimConfig

#: State-dict prefix of the training-only branches (dropped by :func:`write_student_checkpoint`).
BRANCH_PREFIX = "kd_branches."


@dataclass
class DistillConfig:
    """Which distillation terms, with which weights (the recipe YAML sets them).

    Attributes:
        layers: ``none`` | ``direct`` (projected student layer vs teacher layer) | ``aux``
            (auxiliary full-context layer vs teacher layer).
        feat_weight: a, feature loss per mapped layer.
        attn_weight: b, Q-Q/K-K/V-V relation loss per mapped layer.
        apc_weight: c, APC loss per mapped layer (0: no LSTM head).
        apc_shift: N, encoder frames ahead the APC head predicts.
        token_weight: token-probability KD on the CTC posteriors (0: off).
        layer_map: ``[[student, teacher], ...]`` 0-based; empty: every second student layer ->
            the teacher layer at the same relative depth.
        relation_heads: heads of the relation loss (divides both widths).
        aux_heads: heads of the auxiliary attention; 0: the teacher's.
        aux_ffn_dim: feed-forward width of the auxiliary layer; 0: 4 x teacher width.
    """

    layers: Literal["none", "direct", "aux"] = "aux"
    feat_weight: float = 1.0
    attn_weight: float = 1.0
    apc_weight: float = 0.0
    apc_shift: int = 2
    token_weight: float = 0.0
    layer_map: list[list[int]] = field(default_factory=list)
    relation_heads: int = 4
    aux_heads: int = 0
    aux_ffn_dim: int = 0

    @property
    def needs_teacher(self) -> bool:
        return self.layers != "none" or self.token_weight > 0


class AsrKdTask(AsrCtcTask):
    """A streaming CTC student trained with distillation from a frozen full-context teacher.

    Args (besides :class:`AsrCtcTask`'s):
        teacher_checkpoint: ``speechkit fit`` checkpoint of an ``asr-ctc`` task ("" for no
            teacher: then ``distill`` must ask for nothing, which is plain CTC training).
        distill: the terms and weights (:class:`DistillConfig`).

    Training chunks come from ``dynamic_chunk`` as in :class:`AsrCtcTask` (the recipes draw
    320-640 ms chunks only); the teacher always sees the whole utterance.
    """

    def __init__(
        self,
        encoder: nn.Module,
        frontend: nn.Module,
        vocab_size: int = 0,
        tokenizer_path: str = "",
        sample_rate: int = 16000,
        teacher_checkpoint: str = "",
        distill: DistillConfig | None = None,
        specaugment: nn.Module | None = None,
        dynamic_chunk: DynamicChunk | None = None,
        decode_chunk_size: int = 8,
        cmvn_utterances: int = 500,
        optim: OptimConfig | None = None,
    ) -> None:
        super().__init__(encoder, frontend, vocab_size, tokenizer_path, sample_rate, None, specaugment,
                         dynamic_chunk, decode_chunk_size, cmvn_utterances, optim)
        self.distill = distill or DistillConfig(layers="none")
        self.teacher_checkpoint = teacher_checkpoint
        # A tuple, not attributes: nn.Module does not register the teacher, so it is neither
        # trained, nor saved, nor counted as the student's parameters.
        self._teacher: tuple[nn.Module, nn.Module] | None = None
        if self.distill.needs_teacher:
            if not teacher_checkpoint:
                raise SpeechkitError("distillation needs model.init_args.teacher_checkpoint (an asr-ctc checkpoint)")
            self._teacher = self._load_teacher(teacher_checkpoint, vocab_size)
        self.kd_branches = self._make_branches() if self.distill.layers != "none" else None
        self.feature_loss = FeatureLoss()
        self.relation_loss = AttentionRelationLoss(self.distill.relation_heads)
        self.apc_loss = ApcLoss(self.distill.apc_shift)
        self.token_loss = TokenKdLoss()

    @property
    def monitor(self) -> str:
        """The best student is the best *streaming* one: the WER at ``decode_chunk_size``."""
        return f"val/wer_chunk{self.decode_chunk_size}" if self.decode_chunk_size > 0 else "val/wer"

    # -- teacher and branches ------------------------------------------------------------------
    def _load_teacher(self, path: str, vocab_size: int) -> tuple[nn.Module, nn.Module]:
        from speechkit.tasks import load_task

        teacher = load_task(path, expected=("asr-ctc",))
        mine, theirs = (_feature_definition(f) for f in (self.frontend, teacher.frontend))
        if mine != theirs:
            raise SpeechkitError(f"{path}: the teacher's front-end {theirs} differs from the student's {mine}")
        if self.distill.token_weight > 0 and teacher.ctc_head.vocab_size != vocab_size:
            raise SpeechkitError(f"{path}: token KD needs the student's {vocab_size} units, the teacher has "
                                 f"{teacher.ctc_head.vocab_size}")
        encoder, head = teacher.encoder.eval(), teacher.ctc_head.eval()
        for p in [*encoder.parameters(), *head.parameters()]:
            p.requires_grad_(False)
        return encoder, head

    def _make_branches(self) -> KdBranches:
        teacher = self._teacher[0]
        layer_map = [tuple(p) for p in self.distill.layer_map] or default_layer_map(
            self.encoder.num_layers, teacher.num_layers)
        bad = [p for p in layer_map if not (0 <= p[0] < self.encoder.num_layers and 0 <= p[1] < teacher.num_layers)]
        if bad:
            raise SpeechkitError(f"layer_map pairs {bad} name layers the student ({self.encoder.num_layers}) "
                                 f"or teacher ({teacher.num_layers}) does not have")
        heads = self.distill.aux_heads or teacher.layers[0].attn.num_heads
        return KdBranches(self.encoder.dim, teacher.dim, layer_map, heads, self.distill.aux_ffn_dim,
                          aux=self.distill.layers == "aux", apc=self.distill.apc_weight > 0)

    def train(self, mode: bool = True):
        super().train(mode)
        if self._teacher is not None:  # frozen: no dropout, whatever the trainer asks
            for module in self._teacher:
                module.eval()
        return self

    @torch.no_grad()
    def teacher_outputs(self, feats: Tensor, feat_lens: Tensor):
        """The teacher at full context: (:class:`EncoderFeatures`, log-probabilities (B, T', V))."""
        encoder, head = self._teacher
        if encoder.feat_mean.device != feats.device:
            encoder.to(feats.device)
            head.to(feats.device)
        features = encoder.extract_features(feats, feat_lens)
        return features, head(features.last)

    # -- training ----------------------------------------------------------------------------
    def features(self, audio: Tensor, audio_lens: Tensor) -> tuple[Tensor, Tensor]:
        """Front-end (float32) and, in training, SpecAugment: (B, S) -> (B, T, F), int64 (B,)."""
        with torch.autocast(audio.device.type, enabled=False):
            feats, feat_lens = self.frontend(audio.float(), audio_lens)
        if self.training and self.specaugment is not None:
            feats = self.specaugment(feats, feat_lens)
        return feats, feat_lens

    def step(self, batch: dict, stage: str) -> tuple[Tensor, dict[str, Tensor]]:
        if stage != "train" or self._teacher is None:
            return super().step(batch, stage)
        chunk_size, left_chunks = self.dynamic_chunk.sample() if self.dynamic_chunk is not None else (-1, -1)
        feats, feat_lens = self.features(batch["audio"], batch["audio_lens"])
        student = self.encoder.extract_features(feats, feat_lens, chunk_size, left_chunks)
        log_probs = self.ctc_head(student.last)
        ctc, stats = self.loss_fn({"log_probs": log_probs, "log_prob_lens": student.lens}, batch)
        teacher, teacher_log_probs = self.teacher_outputs(feats, feat_lens)
        kd, kd_stats = self.distill_loss(student, teacher, log_probs, teacher_log_probs)
        stats = {**stats, **kd_stats, "ctc_loss": stats["loss"], "loss": (ctc + kd).detach()}
        return ctc + kd, stats

    def distill_loss(self, student, teacher, log_probs: Tensor, teacher_log_probs: Tensor):
        """The weighted KD terms (summed over mapped layers) and their unweighted values."""
        cfg, lens = self.distill, student.lens
        terms: dict[str, Tensor] = {}
        if cfg.token_weight > 0:
            terms["token_kd"] = self.token_loss(log_probs, teacher_log_probs, lens)
        if self.kd_branches is not None:
            outputs = self.kd_branches(student.hidden, lens)
            for (s, t), out in zip(self.kd_branches.layer_map, outputs):
                target, target_qkv = teacher.hidden[t], teacher.qkv[t]
                pred, pred_qkv = (out.aux, out.aux_qkv) if out.aux is not None else (out.proj, student.qkv[s])
                terms["feat"] = terms.get("feat", 0.0) + self.feature_loss(pred, target, lens)
                if cfg.attn_weight > 0:
                    terms["attn"] = terms.get("attn", 0.0) + self.relation_loss(pred_qkv, target_qkv, lens)
                if out.apc is not None:
                    terms["apc"] = terms.get("apc", 0.0) + self.apc_loss(out.apc, target, lens)
        weights = {"token_kd": cfg.token_weight, "feat": cfg.feat_weight, "attn": cfg.attn_weight,
                   "apc": cfg.apc_weight}
        total = sum((weights[k] * v for k, v in terms.items()), log_probs.new_zeros(()))
        return total, {f"{k}_loss": v.detach() for k, v in terms.items()}


def _feature_definition(frontend: nn.Module) -> dict | None:
    """The front-end's Kaldi options without ``dither`` (training noise, not what the features are)."""
    options = getattr(frontend, "kaldi_options", lambda: None)()
    if options is not None:
        options = {**options, "frame_opts": {k: v for k, v in options["frame_opts"].items() if k != "dither"}}
    return options


def write_student_checkpoint(kd_checkpoint: str | Path, out: str | Path) -> Path:
    """Write the plain streaming student of an :class:`AsrKdTask` checkpoint.

    The result is an ``AsrCtcTask`` checkpoint: the branches' weights and the distillation
    arguments are dropped, every other key (encoder, CTC head, front-end, tokenizer, data
    config) is kept, so it loads, transcribes and exports as any ``asr-ctc`` checkpoint, with no
    teacher file needed.

    Raises:
        ModelFileError: not a readable checkpoint; SpeechkitError: not an ``AsrKdTask`` one.
    """
    from speechkit.tasks import read_checkpoint

    ckpt = read_checkpoint(kd_checkpoint)
    hparams = dict(ckpt.get("hyper_parameters") or {})
    if not str(hparams.get("_class_path", "")).endswith(".AsrKdTask"):
        raise SpeechkitError(f"{kd_checkpoint}: not an AsrKdTask checkpoint (trained with `speechkit fit`)")
    for key in ("teacher_checkpoint", "distill"):
        hparams.pop(key, None)
    hparams["_class_path"] = f"{AsrCtcTask.__module__}.{AsrCtcTask.__qualname__}"
    student = {k: v for k, v in ckpt.items() if k not in ("optimizer_states", "lr_schedulers", "loops", "callbacks")}
    student["hyper_parameters"] = hparams
    student["state_dict"] = {k: v for k, v in ckpt["state_dict"].items() if not k.startswith(BRANCH_PREFIX)}
    from speechkit.fileio import atomic_path

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:  # a crash leaves no half-written checkpoint
        torch.save(student, tmp)
    return out
