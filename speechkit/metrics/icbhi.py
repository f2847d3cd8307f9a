"""The ICBHI 2017 challenge score: specificity, sensitivity and their mean, 4-class and 2-class.

Definitions (official Patch-Mix CL code, ``get_score``; the ICBHI challenge):

* **Sp** = normal cycles predicted ``normal`` / normal cycles;
* **Se** (4-class) = abnormal cycles predicted as their *exact* class / abnormal cycles;
* **Se** (2-class) = abnormal cycles predicted as *any* abnormal class / abnormal cycles;
* **Score** = (Sp + Se) / 2. All in percent.

:class:`IcbhiMetrics` keeps a confusion matrix overall and per group (recording device) as
torchmetrics states, summed over DDP processes, and :meth:`IcbhiMetrics.compute` returns an
:class:`IcbhiReport` with both scores, per-class recall and per-device scores;
:meth:`IcbhiReport.table` formats them as text.

Shapes: B batch, C classes, G groups.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor
from torchmetrics import Metric

from speechkit.errors import SpeechkitError


def icbhi_scores(confusion: Tensor, normal_index: int = 0) -> dict[str, float]:
    """Sp, Se, Score (4-class) and Se_2cls, Score_2cls from a (C, C) confusion (rows = true), in %.

    NaN where the denominator is 0 (no normal / no abnormal cycle).

    Example:
        >>> conf = torch.tensor([[8, 1, 1, 0], [2, 3, 1, 0], [1, 0, 2, 1], [0, 1, 0, 1]])
        >>> {k: round(v, 2) for k, v in icbhi_scores(conf).items()}
        {'sp': 80.0, 'se': 50.0, 'score': 65.0, 'se_2cls': 75.0, 'score_2cls': 77.5}
    """
    conf = confusion.double()
    abnormal = [i for i in range(conf.shape[0]) if i != normal_index]
    normal_total = conf[normal_index].sum()
    abnormal_total = conf[abnormal].sum()
    nan = float("nan")
    sp = float(100 * conf[normal_index, normal_index] / normal_total) if normal_total > 0 else nan
    exact = sum(conf[i, i] for i in abnormal)
    any_abnormal = conf[abnormal][:, abnormal].sum()
    se = float(100 * exact / abnormal_total) if abnormal_total > 0 else nan
    se2 = float(100 * any_abnormal / abnormal_total) if abnormal_total > 0 else nan
    return {"sp": sp, "se": se, "score": (sp + se) / 2, "se_2cls": se2, "score_2cls": (sp + se2) / 2}


@dataclass
class IcbhiReport:
    """Scores of one evaluation (percent).

    Attributes:
        scores: :func:`icbhi_scores` of all cycles.
        class_recall: label -> share of its cycles predicted correctly (%).
        groups: group (device) -> :func:`icbhi_scores` of its cycles, plus ``n``.
        confusion: (C, C) int64, rows = true class.
    """

    scores: dict[str, float]
    class_recall: dict[str, float]
    confusion: Tensor
    labels: list[str]
    groups: dict[str, dict[str, float]] = field(default_factory=dict)

    @property
    def num_examples(self) -> int:
        return int(self.confusion.sum())

    def table(self) -> str:
        """Scores, per-class recall, per-device scores and the confusion matrix as text."""
        s = self.scores
        lines = [f"ICBHI score on {self.num_examples} cycles (percent)",
                 f"  4-class: Sp {s['sp']:.2f}  Se {s['se']:.2f}  Score {s['score']:.2f}",
                 f"  2-class: Sp {s['sp']:.2f}  Se {s['se_2cls']:.2f}  Score {s['score_2cls']:.2f}",
                 "  per class (recall): " + ", ".join(f"{k} {v:.1f}" for k, v in self.class_recall.items())]
        if self.groups:
            lines.append(f"  {'device':<10} {'cycles':>6} {'Sp':>7} {'Se':>7} {'Score':>7} {'Score2':>7}")
            for name, g in self.groups.items():
                lines.append(f"  {name:<10} {int(g['n']):>6} {g['sp']:>7.2f} {g['se']:>7.2f} {g['score']:>7.2f} "
                             f"{g['score_2cls']:>7.2f}")
        width = max(len(x) for x in self.labels)
        lines.append("  confusion (rows true, columns predicted): " + " ".join(self.labels))
        for name, row in zip(self.labels, self.confusion.tolist()):
            lines.append(f"    {name:<{width}} " + " ".join(f"{v:>5}" for v in row))
        return "\n".join(lines)


class IcbhiMetrics(Metric):
    """Confusion counts overall and per group, synced across processes; ``compute()`` -> :class:`IcbhiReport`.

    Args:
        labels: class names in logit order.
        normal_index: the ``normal`` class (0 in ICBHI).
        groups: group names (devices); the ids passed to :meth:`update` index this list.

    Example:
        >>> m = IcbhiMetrics(["normal", "crackle", "wheeze", "both"], groups=["a", "b"])
        >>> m.update(torch.tensor([0, 1, 0, 3]), torch.tensor([0, 1, 2, 3]), torch.tensor([0, 0, 1, 1]))
        >>> report = m.compute()
        >>> round(report.scores["score"], 2), report.groups["b"]["se"]
        (83.33, 50.0)
    """

    full_state_update = False
    is_differentiable = False
    higher_is_better = True

    def __init__(self, labels: Sequence[str], normal_index: int = 0, groups: Sequence[str] = (), **kwargs) -> None:
        super().__init__(**kwargs)
        if len(labels) < 2 or not 0 <= normal_index < len(labels):
            raise SpeechkitError(f"IcbhiMetrics needs >= 2 labels and a normal class among them, got {list(labels)}")
        self.labels, self.normal_index, self.groups = list(labels), normal_index, list(groups)
        c, g = len(labels), max(len(groups), 1)
        self.add_state("confusion", torch.zeros(c, c, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("group_confusion", torch.zeros(g, c, c, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, preds: Tensor, targets: Tensor, groups: Tensor | None = None) -> None:
        """preds, targets (B,) int64 class ids; groups (B,) int64 ids into ``groups`` (optional)."""
        c = len(self.labels)
        flat = targets.long() * c + preds.long()
        self.confusion += torch.bincount(flat, minlength=c * c).reshape(c, c)
        if groups is not None and self.groups:
            groups = groups.long()
            if groups.numel() and (int(groups.min()) < 0 or int(groups.max()) >= len(self.groups)):
                raise SpeechkitError(f"IcbhiMetrics: group ids must be in [0, {len(self.groups)})")
            counts = torch.bincount(groups * c * c + flat, minlength=len(self.groups) * c * c)
            self.group_confusion += counts.reshape(len(self.groups), c, c)

    def compute(self) -> IcbhiReport:
        conf = self.confusion.cpu()
        totals = conf.sum(1).double()
        recall = {name: float(100 * conf[i, i] / totals[i]) for i, name in enumerate(self.labels) if totals[i] > 0}
        per_group = {}
        for name, gconf in zip(self.groups, self.group_confusion.cpu()):
            if gconf.sum() > 0:
                per_group[name] = {**icbhi_scores(gconf, self.normal_index), "n": float(gconf.sum())}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            scores = icbhi_scores(conf, self.normal_index)
        return IcbhiReport(scores, recall, conf, self.labels, per_group)
