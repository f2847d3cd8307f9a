"""Clip classification task: keyword spotting (BC-ResNet) and acoustic scenes (BC-ResNet-Mod).

Shapes: B batch, S samples, T frames, F feature bins, C classes.
"""

from __future__ import annotations

from pathlib import Path

from torch import Tensor, nn

from speechkit.errors import SpeechkitError
from speechkit.losses.classification import CrossEntropyLoss
from speechkit.metrics.classification import ClassificationMetrics
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
        groups: names of the example groups (e.g. recording devices) that per-group test
            accuracy is reported for (``test/acc_<group>``); ``None``: the data module's
            ``groups`` at test time, if it has any.

    Batches are dicts with ``audio`` (B, S) float32, ``audio_lens`` (B,) int64 and ``labels``
    (B,) int64; optional ``groups`` ((B,) int64 indices into ``groups``, or B group names)
    gives per-group test accuracy.

    Test metrics (``test/acc``, ``test/acc_<group>``, the confusion matrix in
    ``test_confusion`` and ``<log_dir>/confusion_matrix.png``) are torchmetrics counts summed
    over all processes, so under DDP they describe the whole test set.
    """

    monitor = "val/acc"
    monitor_mode = "max"
    data_links = (
        ("data.labels", "model.init_args.labels"),
        ("data.num_classes", "model.init_args.model.init_args.num_classes"),
        ("data.sample_rate", "model.init_args.sample_rate"),
        ("data.clip_samples", "model.init_args.clip_samples"),
    )

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
        groups: list[str] | None = None,
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
        self.groups = list(groups) if groups is not None else None
        self.test_metrics: ClassificationMetrics | None = None
        self.test_confusion: Tensor | None = None

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
        if stage == "test":  # test/acc comes from the synced counts at the epoch end
            if self.test_metrics is None:  # a test step outside Lightning's test loop
                self.on_test_epoch_start()
            self.test_metrics.update(preds, batch["labels"], batch.get("groups"))
        else:
            stats["acc"] = (preds == batch["labels"]).float().mean()
        return loss, stats

    def on_test_epoch_start(self) -> None:
        # Built here, on every process, so that each one takes part in the sync at the end
        # even with no test batch of its own.
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        num_classes = (len(self.labels) or getattr(self.model, "num_classes", 0)
                       or getattr(datamodule, "num_classes", 0))
        if not num_classes:
            raise SpeechkitError(
                "ClassificationTask: cannot tell the number of classes for the test metrics; "
                "pass labels (linked from the data module by `speechkit fit`) or use a model "
                "with a num_classes attribute"
            )
        groups = self.groups
        if groups is None:
            groups = list(getattr(datamodule, "groups", None) or [])
        self.test_metrics = ClassificationMetrics(num_classes, groups).to(self.device)

    def on_test_epoch_end(self) -> None:
        report = self.test_metrics.compute()  # sums the counts of all processes
        self.test_confusion = report.confusion
        if report.num_examples == 0:
            return
        # Every process holds the same (already summed) figures; "max" over processes keeps them
        # exact and tells Lightning they are synced.
        self.log("test/acc", report.accuracy, prog_bar=True, sync_dist=True, reduce_fx="max")
        for group, acc in report.group_accuracy.items():
            self.log(f"test/acc_{group}", acc, sync_dist=True, reduce_fx="max")
        if self._trainer is None:
            return
        log_dir = self.trainer.log_dir  # a collective under DDP: every process must ask
        if self.trainer.is_global_zero and log_dir:
            names = self.labels or [str(i) for i in range(report.confusion.shape[0])]
            save_confusion_png(report.confusion, names, Path(log_dir) / "confusion_matrix.png")


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
