"""Evaluation metrics shared by tasks, inference and benchmarks (torchmetrics-based where synced).

* :mod:`speechkit.metrics.wer`: word errors and the ``WordErrorRate`` torchmetrics metric.
"""
