"""The one int8 quality gate: compare a metric of the fp32 and the int8 artifact, refuse a large loss.

Each family declares its gate (``QualityGate(metric="accuracy", higher_is_better=True,
max_delta=1.0)`` for clip classifiers, ``QualityGate(metric="wer", higher_is_better=False,
max_delta=1.0)`` for ASR) and measures the metric its own way; the rule and the report are
shared. Metric values are in percent (points), e.g. accuracy 95.0, WER 12.5.

Usage::

    gate = QualityGate("accuracy", higher_is_better=True, max_delta=1.0)
    report = gate.judge(fp32=95.0, int8=94.2)          # passes: 0.8 points lost
    print(report.summary())
    gate.judge(95.0, 93.5)                             # raises QualityGateError
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

from speechkit.errors import SpeechkitError

#: Slack for floating-point noise in the delta: 100 * (0.95 - 0.94) is 1.0000000000000009.
_EPS = 1e-9


class QualityGateError(SpeechkitError):
    """The int8 model loses more of the metric than allowed (and ``force`` was not given)."""


@dataclass
class GateReport:
    """Metric of the fp32 and the int8 model on the same test data.

    Attributes:
        metric: metric name (``accuracy``, ``wer``).
        fp32, int8: metric values in percent.
        max_delta: largest allowed loss in points.
        higher_is_better: direction of the metric.
        forced: the judge was told to keep a failing model.
        num_items: test items the metric was measured on; 0 if unknown.
        unit: what the items are, for the summary (``test clips``, ``test utterances``).
    """

    metric: str
    fp32: float
    int8: float
    max_delta: float
    higher_is_better: bool
    forced: bool = False
    num_items: int = 0
    unit: str = "items"

    @property
    def delta(self) -> float:
        """Points lost by quantization (> 0: int8 is worse, < 0: int8 is better)."""
        return (self.fp32 - self.int8) if self.higher_is_better else (self.int8 - self.fp32)

    @property
    def passed(self) -> bool:
        return self.delta <= self.max_delta + _EPS

    def summary(self) -> str:
        """One line, e.g. ``accuracy on 300 test clips: fp32 95.00%, int8 94.20% (drop 0.80 points, limit 1.00)``."""
        where = f" on {self.num_items} {self.unit}" if self.num_items else ""
        word = "drop" if self.higher_is_better else "rise"
        return (
            f"{self.metric}{where}: fp32 {self.fp32:.2f}%, int8 {self.int8:.2f}% "
            f"({word} {self.delta:.2f} points, limit {self.max_delta:.2f})"
        )

    def to_dict(self) -> dict:
        """JSON-ready dict with the fields plus ``delta`` and ``passed``."""
        return {**asdict(self), "delta": self.delta, "passed": self.passed}


@dataclass(frozen=True)
class QualityGate:
    """A family's int8 rule.

    Attributes:
        metric: name of the metric (``accuracy``, ``wer``).
        higher_is_better: True for accuracy, False for error rates.
        max_delta: largest allowed loss, in the metric's points (percent).
    """

    metric: str
    higher_is_better: bool
    max_delta: float = 1.0

    def with_max_delta(self, max_delta: float) -> QualityGate:
        """The same gate with another limit (e.g. from ``--max-int8-drop``)."""
        return replace(self, max_delta=float(max_delta))

    def judge(
        self, fp32: float, int8: float, force: bool = False, num_items: int = 0, what: str = "int8 model",
        unit: str = "items",
    ) -> GateReport:
        """Report on a measured pair; raise unless it passes or ``force``.

        Args:
            fp32, int8: the metric of each model in percent.
            force: keep a failing model (the report says ``forced``).
            num_items: test items measured (for the summary).
            unit: what the items are (``test clips``).
            what: names the model in the error (e.g. its file).

        Raises:
            QualityGateError: the loss exceeds :attr:`max_delta` and ``force`` is False.
        """
        report = GateReport(self.metric, float(fp32), float(int8), float(self.max_delta), self.higher_is_better,
                            forced=False, num_items=int(num_items), unit=unit)
        if not report.passed:
            if not force:
                raise QualityGateError(
                    f"{what}: int8 quantization loses too much: {report.summary()}; not written. "
                    "Calibrate on more training data, or pass --force to keep it anyway"
                )
            report.forced = True
        return report
