"""Distilling a frozen SSL teacher into a small student, audio only (issue 16; methods.md section 5).

Three methods on the same student, data and schedule, chosen by ``distill.method``:

* ``star`` (STaR, ICASSP 2024): ``layer_weight * L_layerTGM + intra_weight * L_intraTGM`` over
  the mapped layers (:mod:`speechkit.losses.star`); no projection heads, widths may differ.
  Representations are indexed 0 = post-CNN features, l = output of Transformer layer l (the
  reimplementation includes the post-CNN features as layer 0). The intra-layer term pairs each
  mapped layer l >= 1 with its own input l - 1 on both sides.
* ``distilhubert`` (DistilHuBERT-style layer prediction, Chang et al. 2022): one Linear head per
  mapped pair predicts the teacher layer from the student layer, with
  :class:`speechkit.losses.asr_kd.FeatureLoss` (L1 - log sigmoid cos), summed over pairs.
* ``armhubert`` (masking distillation, Jang et al. 2023): spans masked as the teacher's
  pre-training (``mask_prob``, ``mask_length``); the teacher runs on the clean and on the masked
  audio, the student on the masked one (its own mask embedding); per mapped pair a head and
  :class:`speechkit.losses.star.MaskedLayerMseLoss`; the last pair weighs 1, the others
  ``lower_weight`` (0.1 in the paper). Attention-map reuse (the "AR" of ARMHuBERT) is a student
  architecture change and is not implemented here.

The teacher (``teacher_path``: an :class:`~speechkit.tasks.ssl.SslPretrainTask` checkpoint, a
fairseq ``.pt`` or a Hugging Face folder, :func:`~speechkit.tasks.ssl.load_upstream`) is loaded
when training starts, kept frozen in eval mode, and is not part of the state dict; its width
and depth are recorded in the hyperparameters so that a checkpoint reloads without it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor, nn

from speechkit.errors import SpeechkitError
from speechkit.losses.asr_kd import FeatureLoss
from speechkit.losses.star import IntraTgmLoss, LayerTgmLoss, MaskedLayerMseLoss
from speechkit.models.ssl.hubert import HubertModel, SslFeatures
from speechkit.models.ssl.masking import span_mask
from speechkit.tasks.base import OptimConfig
from speechkit.tasks.ssl import SslEncoderTask, load_upstream


@dataclass
class SslDistillConfig:
    """Which distillation, with which weights.

    Attributes:
        method: ``star`` | ``distilhubert`` | ``armhubert``.
        layer_map: ``[[student, teacher], ...]`` representation indices (0 = post-CNN); empty:
            every student layer l -> teacher layer ``round(l * L_t / L_s)``, plus 0 -> 0 for STaR.
        normalize: TGM frame scaling (``frame``, ``dim``, ``none``).
        layer_weight, intra_weight: STaR's two terms.
        lower_weight: ARMHuBERT's weight of every pair but the last.
        mask_prob, mask_length: ARMHuBERT masking (fairseq convention, frames).
    """

    method: Literal["star", "distilhubert", "armhubert"] = "star"
    layer_map: list[list[int]] = field(default_factory=list)
    normalize: Literal["frame", "dim", "none"] = "frame"
    layer_weight: float = 1.0
    intra_weight: float = 1.0
    lower_weight: float = 0.1
    mask_prob: float = 0.8
    mask_length: int = 10


def default_layer_map(student_layers: int, teacher_layers: int, with_cnn: bool) -> list[tuple[int, int]]:
    """Student layer l -> teacher layer at the same relative depth (``[(0, 0)]`` first if ``with_cnn``).

    Example:
        >>> default_layer_map(2, 4, with_cnn=True)
        [(0, 0), (1, 2), (2, 4)]
    """
    pairs = [(s, round(s * teacher_layers / student_layers)) for s in range(1, student_layers + 1)]
    return ([(0, 0)] if with_cnn else []) + pairs


def representations(features: SslFeatures) -> list[Tensor]:
    """[post-CNN, layer 1 output, ..., layer L output], each (B, T, D)."""
    return [features.post_cnn, *features.hidden[1:]]


class SslDistillTask(SslEncoderTask):
    """A small HuBERT-style student distilled from a frozen teacher (module docstring).

    Args:
        student: the :class:`HubertModel` trained (no pre-training head needed).
        teacher_path: teacher checkpoint/folder (see module docstring).
        distill: :class:`SslDistillConfig`.
        teacher_dim, teacher_layers: filled in from the teacher when 0 (recorded so a checkpoint
            reloads without the teacher file).
        sample_rate: audio rate (Hz; linked from the data module).
        optim: optimizer and schedule.
    """

    task_name = "ssl-distill"
    monitor = "val/loss"
    monitor_mode = "min"
    upstream_attr = "student"
    data_links = (("data.sample_rate", "model.init_args.sample_rate"),)

    def __init__(self, student: nn.Module, teacher_path: str = "", distill: SslDistillConfig | None = None,
                 teacher_dim: int = 0, teacher_layers: int = 0, sample_rate: int = 16000,
                 optim: OptimConfig | None = None) -> None:
        super().__init__(optim)
        if not isinstance(student, HubertModel):
            raise SpeechkitError("SslDistillTask needs a speechkit.models.ssl.HubertModel student")
        self.save_config(["student"])
        self.student = student
        self.distill = distill or SslDistillConfig()
        self.teacher_path, self.sample_rate = teacher_path, sample_rate
        self._teacher: tuple[HubertModel] | None = None  # a tuple: not registered, saved or trained
        if teacher_dim <= 0 or teacher_layers <= 0:
            if not teacher_path:
                raise SpeechkitError("distillation needs model.init_args.teacher_path (an SSL checkpoint or folder)")
            teacher = self._load_teacher()
            teacher_dim, teacher_layers = teacher.dim, teacher.num_layers
            self.hparams["teacher_dim"], self.hparams["teacher_layers"] = teacher_dim, teacher_layers
        self.teacher_dim, self.teacher_layers = int(teacher_dim), int(teacher_layers)
        method = self.distill.method
        pairs = [tuple(p) for p in self.distill.layer_map] or default_layer_map(
            student.num_layers, self.teacher_layers, with_cnn=method == "star")
        bad = [p for p in pairs if not (0 <= p[0] <= student.num_layers and 0 <= p[1] <= self.teacher_layers)]
        if bad:
            raise SpeechkitError(f"layer_map pairs {bad} name representations the student (0..{student.num_layers}) "
                                 f"or teacher (0..{self.teacher_layers}) does not have")
        self.layer_map = pairs
        heads = method in ("distilhubert", "armhubert")
        self.heads = nn.ModuleList(nn.Linear(student.dim, self.teacher_dim) for _ in pairs) if heads else None
        self.layer_tgm, self.intra_tgm = LayerTgmLoss(self.distill.normalize), IntraTgmLoss(self.distill.normalize)
        self.feature_loss, self.masked_mse = FeatureLoss(), MaskedLayerMseLoss()

    def _load_teacher(self) -> HubertModel:
        if self._teacher is None:
            teacher = load_upstream(self.teacher_path).eval()
            for p in teacher.parameters():
                p.requires_grad_(False)
            self._teacher = (teacher,)
        return self._teacher[0]

    def teacher(self) -> HubertModel:
        """The frozen teacher on this task's device (loaded on first use)."""
        teacher = self._load_teacher()
        if next(teacher.parameters()).device != self.device:
            teacher.to(self.device)
        if teacher.config.hop_samples != self.student.config.hop_samples:
            raise SpeechkitError(f"{self.teacher_path}: teacher frames are {teacher.config.hop_samples} samples, the "
                                 f"student's {self.student.config.hop_samples}: the frame-by-frame losses need the same")
        if teacher.dim != self.teacher_dim or teacher.num_layers != self.teacher_layers:
            raise SpeechkitError(f"{self.teacher_path}: teacher has width {teacher.dim} and {teacher.num_layers} "
                                 f"layers, the task was built for {self.teacher_dim} and {self.teacher_layers}")
        return teacher

    def train(self, mode: bool = True):
        super().train(mode)
        if self._teacher is not None:
            self._teacher[0].eval()
        return self

    def on_fit_start(self) -> None:
        self.teacher()

    def step(self, batch: dict, stage: str) -> tuple[Tensor, dict[str, Tensor]]:
        audio, audio_lens = batch["audio"], batch["audio_lens"]
        teacher, method = self.teacher(), self.distill.method
        mask = None
        if method == "armhubert":
            lens = self.student.output_lengths(audio_lens)
            generator = None if stage == "train" else torch.Generator().manual_seed(0)
            mask = span_mask(lens, int(lens.max()), self.distill.mask_prob, self.distill.mask_length,
                             generator).to(audio.device)
        student = self.student.extract_features(audio, audio_lens, mask=mask)
        with torch.no_grad():
            clean = teacher.extract_features(audio, audio_lens)
            masked = teacher.extract_features(audio, audio_lens, mask=mask) if mask is not None else None
        s_rep, t_rep = representations(student), representations(clean)
        frames = min(s_rep[0].shape[1], t_rep[0].shape[1])  # same CNN strides: equal unless kernels differ
        lens = torch.minimum(student.lens, clean.lens)
        s_rep, t_rep = [x[:, :frames] for x in s_rep], [x[:, :frames] for x in t_rep]
        terms: dict[str, Tensor] = {}
        if method == "star":
            terms["layer_tgm"] = self.layer_tgm([s_rep[s] for s, _ in self.layer_map],
                                                [t_rep[t] for _, t in self.layer_map], lens)
            intra = [(s, t) for s, t in self.layer_map if s >= 1 and t >= 1]
            terms["intra_tgm"] = self.intra_tgm([(s_rep[s - 1], s_rep[s]) for s, _ in intra],
                                                [(t_rep[t - 1], t_rep[t]) for _, t in intra], lens)
            loss = self.distill.layer_weight * terms["layer_tgm"] + self.distill.intra_weight * terms["intra_tgm"]
        elif method == "distilhubert":
            terms["feat"] = sum(self.feature_loss(head(s_rep[s]), t_rep[t], lens)
                                for head, (s, t) in zip(self.heads, self.layer_map))
            loss = terms["feat"]
        else:
            m_rep = [x[:, :frames] for x in representations(masked)]
            per_pair = [self.masked_mse(head(s_rep[s]), t_rep[t], m_rep[t], mask[:, :frames], lens)
                        for head, (s, t) in zip(self.heads, self.layer_map)]
            terms["masked_mse"] = per_pair[-1] + self.distill.lower_weight * sum(per_pair[:-1], per_pair[-1].new_zeros(()))
            loss = terms["masked_mse"]
        return loss, {"loss": loss.detach(), **{f"{k}_loss": v.detach() for k, v in terms.items() if k != "loss"}}
