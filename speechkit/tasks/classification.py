"""Clip classification task: keyword spotting (BC-ResNet) and acoustic scenes (BC-ResNet-Mod).

Shapes: B batch, S samples, T frames, F feature bins, C classes.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from speechkit.losses.classification import CrossEntropyLoss
from speechkit.tasks.base import OptimConfig, SpeechTask


class ClassificationTask(SpeechTask):
    """Front-end -> network -> logits, trained with a classification loss.

    Args:
        model: network ``forward(feats (B, T, F)) -> logits (B, C)``.
        frontend: ``forward(audio (B, S), audio_lens) -> (feats (B, T, F), feat_lens)``.
        loss: ``loss(logits, batch) -> (loss, stats)``; default plain cross-entropy.
        specaugment: applied to features in training only (``None``: off).
        labels: class names in logit order (linked from the data module by ``speechkit fit``).
        sample_rate: audio rate the model expects (Hz).
        clip_samples: clip length the model expects (samples); exported into the ONNX metadata.
        task_name: ``kws`` or ``scene``; selects the ONNX artifact kind.
        optim: optimizer and schedule.

    Batches are dicts with ``audio`` (B, S) float32, ``audio_lens`` (B,) int64 and ``labels``
    (B,) int64; optional ``groups`` (list of str, e.g. the recording device) gives per-group
    test accuracy.
    """

    monitor = "val/acc"
    monitor_mode = "max"

    def __init__(
        self,
        model: nn.Module,
        frontend: nn.Module,
        loss: nn.Module | None = None,
        specaugment: nn.Module | None = None,
        labels: list[str] | None = None,
        sample_rate: int = 16000,
        clip_samples: int = 16000,
        task_name: str = "kws",
        optim: OptimConfig | None = None,
    ) -> None:
        super().__init__(optim)
        self.save_config(["model", "frontend", "loss", "specaugment"])
        self.model = model
        self.frontend = frontend
        self.loss_fn = loss if loss is not None else CrossEntropyLoss()
        self.specaugment = specaugment
        self.labels = list(labels) if labels is not None else []
        self.sample_rate = int(sample_rate)
        self.clip_samples = int(clip_samples)
        self.task_name = task_name
        self._test_preds: list[Tensor] = []
        self._test_targets: list[Tensor] = []
        self._test_groups: list[str] = []

    def forward(self, audio: Tensor, audio_lens: Tensor | None = None) -> Tensor:
        """Eval path: audio (B, S) float32 in [-1, 1] -> logits (B, C)."""
        feats, feat_lens = self.frontend(audio, audio_lens)
        if self.training and self.specaugment is not None:
            feats = self.specaugment(feats, feat_lens)
        return self.model(feats)

    def step(self, batch: dict, stage: str) -> tuple[Tensor, dict[str, Tensor]]:
        logits = self(batch["audio"], batch.get("audio_lens"))
        loss, stats = self.loss_fn(logits, batch)
        preds = logits.argmax(dim=-1)
        stats = dict(stats)
        stats["acc"] = (preds == batch["labels"]).float().mean()
        if stage == "test":
            self._test_preds.append(preds.detach().cpu())
            self._test_targets.append(batch["labels"].detach().cpu())
            self._test_groups.extend(batch.get("groups", []))
        return loss, stats

    def on_test_epoch_start(self) -> None:
        self._test_preds, self._test_targets, self._test_groups = [], [], []

    def on_test_epoch_end(self) -> None:
        if not self._test_preds:
            return
        preds = torch.cat(self._test_preds)
        targets = torch.cat(self._test_targets)
        num_classes = max(len(self.labels), int(targets.max()) + 1, int(preds.max()) + 1)
        confusion = torch.zeros(num_classes, num_classes, dtype=torch.long)
        confusion.index_put_((targets, preds), torch.ones_like(targets), accumulate=True)
        self.test_confusion = confusion
        if len(self._test_groups) == len(targets):
            for group in sorted(set(self._test_groups)):
                mask = torch.tensor([g == group for g in self._test_groups])
                acc = (preds[mask] == targets[mask]).float().mean()
                self.log(f"test/acc_{group}", acc, sync_dist=False)
        if self.trainer is not None and self.trainer.is_global_zero and self.trainer.log_dir:
            names = self.labels or [str(i) for i in range(num_classes)]
            save_confusion_png(confusion, names, Path(self.trainer.log_dir) / "confusion_matrix.png")


def save_confusion_png(confusion: Tensor, labels: list[str], path: Path) -> None:
    """Plot a (C, C) confusion matrix (rows: true, columns: predicted) to ``path`` atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from speechkit.fileio import atomic_path

    counts = confusion.numpy()
    size = max(4.0, 0.45 * len(labels) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(counts, cmap="Blues")
    ax.set_xticks(range(len(labels)), labels, rotation=90)
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    acc = counts.trace() / max(counts.sum(), 1)
    ax.set_title(f"test accuracy {acc:.2%} ({counts.sum()} clips)")
    if len(labels) <= 15:
        for i in range(counts.shape[0]):
            for j in range(counts.shape[1]):
                if counts[i, j]:
                    ax.text(j, i, str(counts[i, j]), ha="center", va="center", fontsize=7)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
