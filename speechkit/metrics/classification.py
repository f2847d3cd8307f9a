"""Clip-classification test metrics, summed over the whole test set across DDP processes.

Each metric is a torchmetrics :class:`~torchmetrics.Metric`: ``update`` adds one batch's counts
to the process's states and ``compute`` first sums the states of all processes (``all_reduce``
when a process group is initialised), so that with 2+ processes the figures describe the whole
test set, not one shard.

* :class:`GroupAccuracy`: accuracy per group of examples (recording device, speaker group, ...).
* :class:`ClassificationMetrics`: overall accuracy, the confusion matrix and per-group accuracy
  of one evaluation, as used by :class:`speechkit.tasks.ClassificationTask`.

Shapes: B batch, C classes, G groups.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn
from torchmetrics import Metric
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix

from speechkit.errors import SpeechkitError


class GroupAccuracy(Metric):
    """Accuracy within each of ``num_groups`` groups (correct and total counts, summed).

    Args:
        num_groups: G; group ids passed to :meth:`update` are in ``[0, G)``.

    ``compute()`` returns float32 (G,) accuracies, NaN for a group with no example.

    Example:
        >>> metric = GroupAccuracy(num_groups=2)
        >>> metric.update(torch.tensor([1, 0, 2]), torch.tensor([1, 1, 2]), torch.tensor([0, 0, 1]))
        >>> metric.compute().tolist()
        [0.5, 1.0]
    """

    full_state_update = False
    is_differentiable = False
    higher_is_better = True

    def __init__(self, num_groups: int, **kwargs) -> None:
        super().__init__(**kwargs)
        if num_groups < 1:
            raise SpeechkitError(f"GroupAccuracy needs at least one group, got num_groups={num_groups}")
        self.num_groups = num_groups
        self.add_state("correct", torch.zeros(num_groups, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("total", torch.zeros(num_groups, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, preds: Tensor, targets: Tensor, groups: Tensor) -> None:
        """Count one batch: predicted and true class ids (B,) and group ids (B,), all int64."""
        if not preds.shape == targets.shape == groups.shape:
            raise SpeechkitError(
                f"GroupAccuracy: preds, targets and groups must have one shape, got "
                f"{tuple(preds.shape)}, {tuple(targets.shape)}, {tuple(groups.shape)}"
            )
        if groups.numel() and (int(groups.min()) < 0 or int(groups.max()) >= self.num_groups):
            raise SpeechkitError(
                f"GroupAccuracy: group ids must be in [0, {self.num_groups}), got "
                f"{int(groups.min())}..{int(groups.max())}"
            )
        groups = groups.long()
        self.total += torch.bincount(groups, minlength=self.num_groups)
        self.correct += torch.bincount(groups[preds == targets], minlength=self.num_groups)

    def compute(self) -> Tensor:
        """(G,) float32 accuracies over everything seen (all processes); NaN for empty groups."""
        return self.correct.float() / self.total.float()


@dataclass
class ClassificationReport:
    """What :meth:`ClassificationMetrics.compute` returns.

    Attributes:
        accuracy: fraction of correct clips (micro average), NaN when nothing was counted.
        confusion: int64 (C, C) counts, rows = true class, columns = predicted class.
        group_accuracy: accuracy per group name, for the groups that had examples.
        num_examples: clips counted (all processes).
    """

    accuracy: float
    confusion: Tensor
    group_accuracy: dict[str, float] = field(default_factory=dict)

    @property
    def num_examples(self) -> int:
        return int(self.confusion.sum())


class ClassificationMetrics(nn.Module):
    """Accuracy, confusion matrix and per-group accuracy of one evaluation, synced across processes.

    Args:
        num_classes: C.
        groups: group names; the ids passed to :meth:`update` index this list. Empty: no
            per-group accuracy.

    Example:
        >>> metrics = ClassificationMetrics(num_classes=3, groups=["a", "b"])
        >>> metrics.update(torch.tensor([0, 2, 1, 1]), torch.tensor([0, 1, 1, 1]), torch.tensor([0, 0, 1, 1]))
        >>> report = metrics.compute()
        >>> report.accuracy, report.group_accuracy
        (0.75, {'a': 0.5, 'b': 1.0})
        >>> report.confusion.tolist()
        [[1, 0, 0], [0, 2, 1], [0, 0, 0]]
    """

    def __init__(self, num_classes: int, groups: Sequence[str] = ()) -> None:
        super().__init__()
        if num_classes < 1:
            raise SpeechkitError(f"ClassificationMetrics needs at least one class, got num_classes={num_classes}")
        self.num_classes = num_classes
        self.groups = list(groups)
        self.accuracy = MulticlassAccuracy(num_classes, average="micro")
        self.confusion = MulticlassConfusionMatrix(num_classes)
        self.group_accuracy = GroupAccuracy(len(self.groups)) if self.groups else None

    def group_ids(self, groups: Tensor | Sequence[str]) -> Tensor:
        """Group ids (B,) int64 from ids or from names (each must be one of ``groups``)."""
        if isinstance(groups, Tensor):
            return groups.long()
        index = {name: i for i, name in enumerate(self.groups)}
        unknown = sorted({g for g in groups if g not in index})
        if unknown:
            raise SpeechkitError(f"batch groups {unknown} are not among the task's groups {self.groups}")
        return torch.tensor([index[g] for g in groups], dtype=torch.long)

    def update(self, preds: Tensor, targets: Tensor, groups: Tensor | Sequence[str] | None = None) -> None:
        """Count one batch.

        Args:
            preds: (B,) int64 predicted class ids.
            targets: (B,) int64 true class ids.
            groups: (B,) int64 group ids or B group names; ignored when the metrics have no groups.
        """
        self.accuracy.update(preds, targets)
        self.confusion.update(preds, targets)
        if self.group_accuracy is not None and groups is not None:
            self.group_accuracy.update(preds, targets, self.group_ids(groups).to(preds.device))

    def compute(self) -> ClassificationReport:
        """Sum every process's counts and return the report (call on every process)."""
        with warnings.catch_warnings():
            # A process whose shard had no test batch still has to join the sync.
            warnings.filterwarnings("ignore", message=".*was called before the ``update`` method")
            confusion = self.confusion.compute().long().cpu()
            accuracy = float(self.accuracy.compute()) if confusion.sum() > 0 else float("nan")
            per_group = {}
            if self.group_accuracy is not None:
                # NaN marks a group without examples (the states are synced inside compute only).
                values = self.group_accuracy.compute().cpu()
                per_group = {name: float(v) for name, v in zip(self.groups, values) if not v.isnan()}
        return ClassificationReport(accuracy, confusion, per_group)

    def reset(self) -> None:
        """Forget every count (start of an evaluation)."""
        for metric in (self.accuracy, self.confusion, self.group_accuracy):
            if metric is not None:
                metric.reset()
