"""Scaffolding shared by every speechkit task (LightningModule).

A task receives its network parts as modules (dependency injection through LightningCLI,
docs/ARCHITECTURE.md contract 4) and adds what every family needs: the optimizer with a per-iteration
warm-up + decay schedule, best/last checkpointing on the task's own metric, and ``train/``,
``val/``, ``test/`` logging. Subclasses implement :meth:`SpeechTask.step`.

Checkpoints made through ``speechkit fit`` carry the whole resolved config, so
:func:`speechkit.tasks.load_task` rebuilds the task from the file alone.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass
from typing import ClassVar, Literal

import lightning as L
import torch
from torch import Tensor


@dataclass
class OptimConfig:
    """Optimizer and learning-rate schedule.

    Attributes:
        name: ``sgd`` (momentum, as BC-ResNet) or ``adamw`` (as most ASR recipes).
        lr: peak learning rate, reached at the end of warm-up.
        momentum: SGD momentum (ignored by AdamW).
        weight_decay: L2 (SGD) or decoupled (AdamW) weight decay.
        betas: AdamW betas.
        warmup_epochs: linear warm-up length in epochs (fractions allowed); applied per
            iteration, as the BC-ResNet code does.
        schedule: decay after warm-up: ``cosine`` to ``min_lr`` at the last step,
            ``inverse_sqrt`` (Noam-style), or ``constant``.
        min_lr: floor of the cosine schedule.
        grad_clip: handled by the Trainer (``gradient_clip_val``), listed here only for recipes
            that want it next to the optimizer; 0 disables.
    """

    name: Literal["sgd", "adamw"] = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.98)
    warmup_epochs: float = 5.0
    schedule: Literal["cosine", "inverse_sqrt", "constant"] = "cosine"
    min_lr: float = 0.0


def lr_factor(step: int, warmup_steps: int, total_steps: int, schedule: str, min_ratio: float) -> float:
    """Multiplier of the peak learning rate at optimizer ``step`` (0-based).

    Linear warm-up from 1/warmup_steps to 1 over ``warmup_steps``, then ``schedule``.
    """
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant":
        return 1.0
    if schedule == "inverse_sqrt":
        return math.sqrt(max(warmup_steps, 1) / max(step + 1, 1))
    decay_steps = max(total_steps - warmup_steps, 1)
    progress = min(max(step - warmup_steps, 0) / decay_steps, 1.0)
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


class SpeechTask(L.LightningModule):
    """Base LightningModule: optimizer, schedule, checkpointing and stage logging.

    Subclasses set ``task_name`` (written into exported artifacts), ``monitor`` / ``monitor_mode``
    (the metric that picks the best checkpoint) and implement :meth:`step`.
    """

    task_name: str = ""
    monitor: str = "val/loss"
    monitor_mode: str = "min"
    #: ``(source on the data module, target in the task)`` pairs that ``speechkit fit`` links at
    #: instantiation (jsonargparse ``link_arguments``), e.g. ``("data.labels",
    #: "model.init_args.labels")``: values the data module knows are not repeated in the recipe.
    #: Read along the MRO, so a subclass inherits its family's links or declares its own.
    data_links: ClassVar[tuple[tuple[str, str], ...]] = ()

    def __init__(self, optim: OptimConfig | None = None) -> None:
        super().__init__()
        self.optim = optim or OptimConfig()

    def save_config(self, module_args: list[str]) -> None:
        """Save the init args into checkpoints so :func:`speechkit.tasks.load_task` can rebuild.

        Under ``speechkit fit`` LightningCLI hands over the whole resolved config (injected
        modules included, as class_path/init_args), which is what we store. A task built
        directly in Python cannot serialise its module arguments, so they are left out there.
        """
        from lightning.pytorch.core.mixins.hparams_mixin import _given_hyperparameters

        ignore = None if _given_hyperparameters.get() is not None else module_args
        self.save_hyperparameters(ignore=ignore, frame=inspect.currentframe().f_back)

    # -- to implement ---------------------------------------------------------------------
    def step(self, batch: dict, stage: str) -> tuple[Tensor, dict[str, Tensor]]:
        """Compute the loss and stats for one batch in ``stage`` (train/val/test)."""
        raise NotImplementedError

    # -- Lightning hooks ------------------------------------------------------------------
    def training_step(self, batch: dict, batch_idx: int) -> Tensor:
        loss, stats = self.step(batch, "train")
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"training loss is {loss.item()} at step {self.global_step}; lower the learning "
                "rate or check the data (NaN audio is rejected at load time)"
            )
        self.log_stats("train", stats, batch_size=_batch_size(batch))
        return loss

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        _, stats = self.step(batch, "val")
        self.log_stats("val", stats, batch_size=_batch_size(batch))

    def test_step(self, batch: dict, batch_idx: int) -> None:
        _, stats = self.step(batch, "test")
        self.log_stats("test", stats, batch_size=_batch_size(batch))

    def log_stats(self, stage: str, stats: dict, batch_size: int) -> None:
        on_step = stage == "train"
        for key, value in stats.items():
            self.log(
                f"{stage}/{key}", value, on_step=on_step, on_epoch=True, prog_bar=key in ("loss", "acc", "wer"),
                batch_size=batch_size, sync_dist=stage != "train",
            )

    def configure_optimizers(self):
        cfg = self.optim
        params = [p for p in self.parameters() if p.requires_grad]
        if cfg.name == "sgd":
            optimizer = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
        else:
            optimizer = torch.optim.AdamW(params, lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay)
        total_steps = max(int(self.trainer.estimated_stepping_batches), 1)
        max_epochs = max(self.trainer.max_epochs or 1, 1)
        warmup_steps = int(round(total_steps * cfg.warmup_epochs / max_epochs))
        min_ratio = cfg.min_lr / cfg.lr if cfg.lr > 0 else 0.0
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda s: lr_factor(s, warmup_steps, total_steps, cfg.schedule, min_ratio)
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def _batch_size(batch: dict) -> int:
    for value in batch.values():
        if isinstance(value, Tensor) and value.ndim > 0:
            return int(value.shape[0])
    return 1
