"""Respiratory-cycle classification (ICBHI 4-class) with an AST and Patch-Mix (contrastive) training.

Bae et al., Interspeech 2023 (arXiv 2305.14032); see docs/methods/respiratory.md. The task is a
:class:`~speechkit.tasks.classification.ClassificationTask` (so clip-classifier tooling and the
recipe checks apply) whose training step can mix patch tokens:

* ``mix.mode = "none"``: cross-entropy (optionally weighted by inverse class frequency);
* ``"patchmix"``: Patch-Mix CE on the mixed tokens (:class:`~speechkit.losses.patchmix.PatchMixCrossEntropy`);
* ``"patchmix_cl"``: CE on the clean clip + ``alpha`` x the Patch-Mix contrastive loss between the
  projected feature of the mixed clip and the detached clean features (``grad_block``).

``ma_beta > 0`` replaces the weights (and float buffers) after every optimizer step by
``ma_beta * before + (1 - ma_beta) * after`` (the official ``--ma_update --ma_beta 0.5``).

Validation and test report the ICBHI Sp / Se / Score (:mod:`speechkit.metrics.icbhi`), logged as
``val/score`` (the checkpoint monitor), ``test/sp``, ``test/se``, ``test/score``,
``test/score_2cls`` and ``test/score_<device>``; ``speechkit test`` prints the full table.

Shapes: B batch, S samples, T frames, F bins, P patches, D width, C classes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from speechkit.errors import SpeechkitError
from speechkit.losses.patchmix import PatchMixContrastiveLoss, PatchMixCrossEntropy, Projector, patch_mix
from speechkit.metrics.icbhi import IcbhiMetrics, IcbhiReport
from speechkit.tasks.base import OptimConfig, SpeechTask
from speechkit.tasks.classification import ClassificationTask


@dataclass
class PatchMixConfig:
    """Patch-Mix settings (the paper's: beta 1, temperature 0.06, alpha 1, projector width 768).

    Attributes:
        mode: ``none``, ``patchmix`` (Patch-Mix CE) or ``patchmix_cl`` (Patch-Mix CL).
        beta: lambda ~ Beta(beta, beta).
        time_only: swap whole time columns of the patch grid.
        temperature: contrastive temperature.
        alpha: weight of the contrastive loss.
        proj_dim: projector output width; 0 means the model's feature width.
    """

    mode: Literal["none", "patchmix", "patchmix_cl"] = "none"
    beta: float = 1.0
    time_only: bool = False
    temperature: float = 0.06
    alpha: float = 1.0
    proj_dim: int = 0


class RespiratoryTask(ClassificationTask):
    """AST on fixed-length respiratory cycles, trained with CE, Patch-Mix CE or Patch-Mix CL.

    Args:
        model: an :class:`~speechkit.models.respiratory.AST` (``embed`` / ``encode`` / ``head``).
        frontend: audio (B, S) -> feats (B, T, F), e.g. :class:`~speechkit.frontends.fbank.AstFbank`.
        specaugment: training-only feature masking.
        labels: class names (linked from the data module); ``normal_label`` must be one.
        sample_rate, clip_samples: the audio the model takes (linked from the data module).
        mix: :class:`PatchMixConfig`.
        ma_beta: moving-average weight update (0: off; the paper 0.5).
        weighted_ce: weight CE by inverse training-class frequency (the paper's plain-CE run).
        optim: optimizer and schedule.
        groups: test groups (devices); default: the data module's.
        normal_label: the class counted for specificity.
    """

    task_name = "respiratory"
    monitor = "val/score"
    monitor_mode = "max"

    def __init__(
        self,
        model: nn.Module,
        frontend: nn.Module,
        specaugment: nn.Module | None = None,
        labels: list[str] | None = None,
        sample_rate: int = 16000,
        clip_samples: int = 128000,
        mix: PatchMixConfig | None = None,
        ma_beta: float = 0.0,
        weighted_ce: bool = False,
        optim: OptimConfig | None = None,
        groups: list[str] | None = None,
        normal_label: str = "normal",
    ) -> None:
        SpeechTask.__init__(self, optim)  # not ClassificationTask's: its arguments differ
        self.save_config(["model", "frontend", "specaugment"])
        self.model, self.frontend, self.specaugment = model, frontend, specaugment
        self.labels = list(labels) if labels is not None else []
        self.sample_rate, self.clip_samples = int(sample_rate), int(clip_samples)
        self.mix = mix or PatchMixConfig()
        if self.mix.mode not in ("none", "patchmix", "patchmix_cl"):
            raise SpeechkitError(f"mix.mode must be none, patchmix or patchmix_cl, got {self.mix.mode!r}")
        if not 0.0 <= ma_beta < 1.0:
            raise SpeechkitError(f"ma_beta must be in [0, 1), got {ma_beta}")
        self.ma_beta, self.weighted_ce = float(ma_beta), bool(weighted_ce)
        self.groups = list(groups) if groups is not None else None
        self.normal_label = normal_label
        self.projector = None
        if self.mix.mode == "patchmix_cl":
            self.projector = Projector(model.feature_dim, self.mix.proj_dim or model.feature_dim)
        self.contrastive = PatchMixContrastiveLoss(self.mix.temperature)
        self.register_buffer("class_weight", None, persistent=False)
        self.metrics: dict[str, IcbhiMetrics] = {}
        self.test_report: IcbhiReport | None = None

    # -- training ---------------------------------------------------------------------------
    def features(self, batch: dict) -> Tensor:
        """audio -> patch tokens (B, P, D), SpecAugment in training."""
        feats, feat_lens = self.frontend(batch["audio"], batch.get("audio_lens"))
        if self.training and self.specaugment is not None:
            feats = self.specaugment(feats, feat_lens)
        return self.model.embed(feats)

    def step(self, batch: dict, stage: str) -> tuple[Tensor, dict[str, Tensor]]:
        tokens, targets = self.features(batch), batch["labels"]
        ce = PatchMixCrossEntropy(self.class_weight)
        stats: dict[str, Tensor] = {}
        # A batch of one has no partner to mix with (and BatchNorm in the projector needs two).
        if stage == "train" and self.mix.mode != "none" and len(targets) > 1:
            mixed = patch_mix(tokens, self.mix.beta, self.model.grid, self.mix.time_only)
            if self.mix.mode == "patchmix":
                logits = self.model.head(self.model.encode(mixed.tokens))
                loss = ce(logits, targets, mixed.lam, mixed.perm)
            else:
                feature = self.model.encode(tokens)
                logits = self.model.head(feature)
                projected = self.projector(self.model.encode(mixed.tokens))
                stats["ce"] = ce(logits, targets, 1.0, mixed.perm)
                stats["cl"] = self.contrastive(projected, feature.detach(), mixed.lam, mixed.perm)
                loss = stats["ce"] + self.mix.alpha * stats["cl"]
        else:
            logits = self.model.head(self.model.encode(tokens))
            loss = ce(logits, targets, 1.0, torch.arange(len(targets), device=targets.device))
        preds = logits.argmax(dim=-1)
        if stage in ("val", "test"):
            self._metrics(stage).update(preds, targets, batch.get("groups"))
        stats["loss"] = loss.detach()
        stats["acc"] = (preds == targets).float().mean()
        return loss, stats

    def on_fit_start(self) -> None:
        if not self.weighted_ce:
            return
        datasets = getattr(getattr(self.trainer, "datamodule", None), "datasets", {}) or {}
        if "train" not in datasets:
            raise SpeechkitError("weighted_ce needs the data module's training dataset (ClassificationDataModule)")
        counts = torch.bincount(torch.tensor(datasets["train"].targets), minlength=len(self.labels)).float()
        weight = 1.0 / (counts.clamp(min=1) / counts.sum())  # inverse frequency, as the official code
        self.class_weight = (weight / weight.sum()).to(self.device)

    def optimizer_step(self, epoch, batch_idx, optimizer, optimizer_closure=None) -> None:
        if self.ma_beta <= 0:
            return super().optimizer_step(epoch, batch_idx, optimizer, optimizer_closure)
        before = {k: v.detach().clone() for k, v in self.state_dict().items() if v.is_floating_point()}
        super().optimizer_step(epoch, batch_idx, optimizer, optimizer_closure)
        with torch.no_grad():
            for key, value in self.state_dict().items():
                if key in before:
                    value.mul_(1 - self.ma_beta).add_(before[key], alpha=self.ma_beta)

    # -- ICBHI metrics ------------------------------------------------------------------------
    def _metrics(self, stage: str) -> IcbhiMetrics:
        if stage not in self.metrics:
            if self.normal_label not in self.labels:
                raise SpeechkitError(f"RespiratoryTask: normal_label {self.normal_label!r} is not among labels {self.labels}")
            groups = self.groups
            if groups is None and stage == "test" and self._trainer is not None:
                groups = list(getattr(self.trainer.datamodule, "groups", None) or [])
            self.metrics[stage] = IcbhiMetrics(self.labels, self.labels.index(self.normal_label),
                                               groups or []).to(self.device)
        return self.metrics[stage]

    def on_validation_epoch_start(self) -> None:
        self.metrics.pop("val", None)

    def on_test_epoch_start(self) -> None:
        self.metrics.pop("test", None)
        self._metrics("test")  # on every process, so each joins the sync

    def on_validation_epoch_end(self) -> None:
        if "val" in self.metrics:
            report = self.metrics.pop("val").compute()
            for key in ("sp", "se", "score"):
                self.log(f"val/{key}", report.scores[key], prog_bar=key == "score", sync_dist=True, reduce_fx="max")

    def on_test_epoch_end(self) -> None:
        report = self.test_report = self.metrics.pop("test").compute()
        if report.num_examples == 0:
            return
        for key in ("sp", "se", "score", "se_2cls", "score_2cls"):
            self.log(f"test/{key}", report.scores[key], prog_bar=key == "score", sync_dist=True, reduce_fx="max")
        for group, scores in report.groups.items():
            self.log(f"test/score_{group}", scores["score"], sync_dist=True, reduce_fx="max")
        if self._trainer is None or self.trainer.is_global_zero:
            print(report.table(), flush=True)
