"""Keyword spotting's export names, kept for existing users: KWS is a clip classifier.

Everything lives in :mod:`speechkit.export.clip_classifier` (the family-neutral artifact of
:mod:`speechkit.runtime.classifier` with ``speechkit.task == "kws"``, byte-compatible with the
KWS artifact of earlier versions); this module only fixes the task name.
"""

from __future__ import annotations

import os
from typing import Sequence

from torch import nn

from speechkit.export.clip_classifier import ClipClassifierOnnxModel as KwsOnnxModel
from speechkit.export.clip_classifier import ClipExportOptions as KwsExportOptions
from speechkit.export.clip_classifier import export_clip_artifacts as export_kws_artifacts
from speechkit.export.clip_classifier import export_clip_classifier
from speechkit.export.clip_classifier import quantize_clip_classifier as quantize_kws
from speechkit.runtime.kws import KWS_TASK

__all__ = ["KWS_TASK", "KwsExportOptions", "KwsOnnxModel", "export_kws", "export_kws_artifacts", "quantize_kws"]


def export_kws(
    frontend: nn.Module,
    model: nn.Module,
    labels: Sequence[str],
    sample_rate: int,
    clip_samples: int,
    path: str | os.PathLike,
    **kwargs,
) -> float:
    """Export a KWS front-end + network (task ``kws``); returns the largest parity difference.

    See :func:`~speechkit.export.clip_classifier.export_clip_classifier` for the arguments.
    """
    return export_clip_classifier(
        frontend, model, labels, sample_rate, clip_samples, path, task_name=KWS_TASK, **kwargs
    ).max_abs_diff
