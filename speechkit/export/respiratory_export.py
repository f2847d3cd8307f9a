"""The respiratory family's exporter: an AST cycle classifier as a clip-classifier artifact.

A :class:`~speechkit.tasks.respiratory.RespiratoryTask` exports to contract 6 unchanged (input
``audio`` float32 ``[batch, clip_samples]`` at 16 kHz, front-end inside the graph, output
``logits`` in the order of ``labels``; ``speechkit.task`` = ``respiratory``), checked for
parity by :func:`~speechkit.export.clip_classifier.export_clip_task`. What differs from the
generic clip classifier is the int8 gate: the **ICBHI Score** (mean of specificity and
sensitivity, percent) on the test cycles may drop by at most :data:`RESPIRATORY_GATE`'s
``max_delta`` points, measured with onnxruntime on both files through
:func:`~speechkit.export.int8.write_gated_int8`. Options shared with the clip classifier
(``--train-manifest``, ``--calibration-clips``, ``--test-manifest``) are read from the parsed
``speechkit export`` arguments; this exporter adds none of its own.

The runtime side (cycle policy, per-cycle labels for ``speechkit classify --annotations``) is
:mod:`speechkit.runtime.respiratory`.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from speechkit.errors import CorpusError, SpeechkitError
from speechkit.export.clip_classifier import (
    ClipExportOptions,
    export_clip_task,
    load_manifest_clips,
    quantize_clip_classifier,
    task_sample_rate,
    write_ort_files,
)
from speechkit.export.gate import QualityGate
from speechkit.export.int8 import write_gated_int8
from speechkit.export.registry import Exporter, register_exporter

#: int8 may lose at most 1 point of ICBHI Score (percent).
RESPIRATORY_GATE = QualityGate(metric="ICBHI score", higher_is_better=True, max_delta=1.0)


def onnx_icbhi_score(
    onnx_path: str | os.PathLike, audio: np.ndarray, targets: np.ndarray, labels: Sequence[str],
    normal_label: str = "normal", batch_size: int = 16,
) -> float:
    """ICBHI Score (percent) of an artifact on (N, S) cycle clips with (N,) class ids."""
    import onnxruntime as ort
    import torch

    from speechkit.metrics.icbhi import icbhi_scores

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    preds = np.concatenate([
        session.run(["logits"], {"audio": audio[i : i + batch_size]})[0].argmax(axis=1)
        for i in range(0, len(audio), batch_size)
    ])
    c = len(labels)
    confusion = np.bincount(targets * c + preds, minlength=c * c).reshape(c, c)
    return icbhi_scores(torch.from_numpy(confusion), list(labels).index(normal_label))["score"]


def export_respiratory(
    task, out: str | os.PathLike, options: ClipExportOptions | None = None, model_config: dict | None = None,
    log: Callable[[str], None] = print,
) -> dict:
    """fp32 artifact (parity-checked), then int8 gated on the ICBHI Score and ORT files as asked.

    Returns:
        ``{"onnx", "parity_max_diff", "int8", "int8_report", "ort"}``.

    Raises:
        ParityError, QualityGateError, CorpusError, SpeechkitError.
    """
    from speechkit.export.onnx_export import file_size_text

    options = options or ClipExportOptions()
    out = Path(out)
    manifests = _manifests(task, options) if options.int8 else None  # fail before the slow part
    worst = export_clip_task(task, out, batch_sizes=options.batch_sizes, atol=options.atol,
                             model_config=model_config).max_abs_diff
    log(f"wrote {out} ({file_size_text(out)}); parity with PyTorch: max |logit diff| {worst:.2g} "
        f"over batch sizes {', '.join(map(str, options.batch_sizes))} (limit {options.atol:g})")
    result = {"onnx": out, "parity_max_diff": worst, "int8": None, "int8_report": None, "ort": []}
    if manifests is not None:
        rate, train, test = task_sample_rate(task), *manifests
        calibration, _ = load_manifest_clips(train, task.labels, rate, task.clip_samples,
                                             max_clips=options.calibration_clips)
        log(f"calibrating int8 on {len(calibration)} cycles from {train}")
        measure = None
        if test is not None:
            audio, targets = load_manifest_clips(test, task.labels, rate, task.clip_samples)

            def measure(path: Path) -> tuple[float, int]:
                return onnx_icbhi_score(path, audio, targets, task.labels, task.normal_label), len(audio)

        result["int8"], result["int8_report"] = write_gated_int8(
            out, lambda src, dst: quantize_clip_classifier(src, dst, calibration),
            RESPIRATORY_GATE.with_max_delta(options.max_int8_drop_points), measure, force=options.force, log=log,
            unit="test cycles",
        )
    if options.ort:
        result["ort"], _ = write_ort_files([p for p in (out, result["int8"]) if p is not None], log)
    return result


def _manifests(task, options: ClipExportOptions) -> tuple[Path, Path | None]:
    from speechkit.data.manifests import cuts_path

    manifest_dir = (getattr(task, "datamodule_config", None) or {}).get("manifest_dir")
    train = options.train_manifest or (cuts_path(manifest_dir, "train") if manifest_dir else None)
    test = options.test_manifest or (cuts_path(manifest_dir, "test") if manifest_dir else None)
    if train is None:
        raise SpeechkitError("--int8 calibrates on training cycles: pass --train-manifest (the checkpoint records no manifest_dir)")
    if test is None and not options.force:
        raise SpeechkitError("--int8 checks the ICBHI score on test cycles: pass --test-manifest, or --force to skip it")
    for path in (train, test):
        if path is not None and not Path(path).is_file():
            raise CorpusError(f"{path}: no such manifest; expected cuts_<split>.jsonl.gz from `speechkit prepare icbhi`")
    return Path(train), Path(test) if test is not None else None


def export_command(task, args: argparse.Namespace, checkpoint: Path | None) -> int:
    """What ``speechkit export`` runs for a respiratory checkpoint."""
    from speechkit.export.onnx_export import checkpoint_model_config

    options = ClipExportOptions(
        int8=args.int8, ort=args.ort, force=args.force, train_manifest=getattr(args, "train_manifest", None),
        test_manifest=args.test_manifest, calibration_clips=getattr(args, "calibration_clips", 300),
        max_int8_drop_points=args.max_int8_drop, atol=args.atol,
    )
    model_config = checkpoint_model_config(checkpoint) if checkpoint is not None else None
    export_respiratory(task, args.output, options, model_config=model_config)
    return 0


register_exporter(Exporter(
    name="respiratory",
    task_class="speechkit.tasks.respiratory.RespiratoryTask",
    export=export_command,
    gate=RESPIRATORY_GATE,
    add_arguments=None,
))
