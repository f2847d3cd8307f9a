"""The clip-classifier family's exporter: any ``ClassificationTask`` (KWS, acoustic scenes, ...).

Writes the family-neutral artifact of :mod:`speechkit.runtime.classifier` (input ``audio``
float32 ``[batch, clip_samples]``, output ``logits`` ``[batch, classes]``, metadata
``speechkit.task`` = the checkpoint's ``task_name``, ``labels``, ``sample_rate``,
``clip_samples``, ``frontend``, ``model``, ``speechkit_version``) through
:func:`~speechkit.export.artifact.export_artifact`, optionally a statically quantized int8
model judged by :data:`CLIP_GATE` (test accuracy may drop at most 1 point), and ORT files.
It registers itself with :mod:`speechkit.export.registry` for
``speechkit.tasks.classification.ClassificationTask``, so ``speechkit export`` serves every
classification checkpoint; its own options are ``--train-manifest`` and ``--calibration-clips``.

Shapes: B batch, S samples, C classes, T frames, F bins.
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from torch import Tensor, nn

import speechkit
from speechkit.errors import CorpusError, SpeechkitError
from speechkit.export.artifact import ExportResult, export_artifact
from speechkit.export.gate import GateReport, QualityGate
from speechkit.export.int8 import ArrayCalibrationReader, frontend_node_names, quantize_static_qdq, write_gated_int8
from speechkit.export.registry import Exporter, register_exporter
from speechkit.runtime.classifier import CLIP_CLASSIFIER_SPEC

#: The family's int8 rule: test accuracy (percent) may drop by at most 1 point.
CLIP_GATE = QualityGate(metric="accuracy", higher_is_better=True, max_delta=1.0)


class ClipClassifierOnnxModel(nn.Module):
    """Export wrapper: raw audio in, logits out, front-end inside the graph.

    Args:
        frontend: ``forward(audio (B, S), audio_lens) -> (feats (B, T, F), feat_lens)``.
        model: ``forward(feats (B, T, F)) -> logits (B, C)``.

    Example:
        >>> import torch
        >>> from speechkit.frontends import LogMel
        >>> from speechkit.models.kws import BCResNet
        >>> wrapper = ClipClassifierOnnxModel(LogMel.bcresnet(), BCResNet(num_classes=3, width=1)).eval()
        >>> wrapper(torch.zeros(2, 16000)).shape
        torch.Size([2, 3])
    """

    def __init__(self, frontend: nn.Module, model: nn.Module) -> None:
        super().__init__()
        self.frontend = frontend
        self.model = model

    def forward(self, audio: Tensor) -> Tensor:
        """audio (B, S) float32 -> logits (B, C); every item is a full clip (no lengths)."""
        feats, _ = self.frontend(audio)
        return self.model(feats)


def clip_metadata(
    task_name: str,
    frontend: nn.Module,
    model: nn.Module,
    labels: Sequence[str],
    sample_rate: int,
    clip_samples: int,
    model_config: dict | None = None,
) -> dict[str, str]:
    """The artifact's ``metadata_props`` (all values strings, in the contract's key order).

    Args:
        task_name: ``speechkit.task`` (``kws``, ``scene``, ...).
        model_config: the network's constructor arguments if known (a checkpoint records them);
            otherwise ``model.config()`` if it has one, else the attributes ``num_classes`` /
            ``in_bins`` it exposes.
    """
    frontend_cfg = frontend.config() if hasattr(frontend, "config") else {}
    model_cfg = {"class": type(model).__name__, "num_params": sum(p.numel() for p in model.parameters())}
    if model_config is not None:
        model_cfg.update(model_config)
    elif hasattr(model, "config"):
        model_cfg.update(model.config())
    for attr in ("num_classes", "in_bins"):
        if attr not in model_cfg and isinstance(getattr(model, attr, None), (int, float)):
            model_cfg[attr] = getattr(model, attr)
    return {
        "speechkit.task": task_name,
        "labels": json.dumps(list(labels)),
        "sample_rate": str(int(sample_rate)),
        "clip_samples": str(int(clip_samples)),
        "frontend": json.dumps({"class": type(frontend).__name__, **frontend_cfg}),
        "model": json.dumps(model_cfg),
        "speechkit_version": speechkit.__version__,
    }


def export_clip_classifier(
    frontend: nn.Module,
    model: nn.Module,
    labels: Sequence[str],
    sample_rate: int,
    clip_samples: int,
    path: str | os.PathLike,
    task_name: str = "kws",
    batch_sizes: Sequence[int] = (1, 2, 5),
    atol: float = 1e-4,
    seed: int = 0,
    model_config: dict | None = None,
    ort: bool = False,
) -> ExportResult:
    """Export a front-end + network to the clip-classifier artifact, checked for parity.

    The file appears at ``path`` only after the parity check passed on every batch size.

    Args:
        frontend, model: the trained modules (moved to CPU float32 eval mode for export).
        labels: class names in logit order.
        sample_rate: Hz of ``audio``.
        clip_samples: samples per clip.
        path: destination ``.onnx``.
        task_name: ``speechkit.task`` of the artifact.
        batch_sizes: batch sizes of the parity check (random audio in [-1, 1]).
        atol: largest allowed absolute logit difference against PyTorch.
        seed: seed of the parity audio.
        model_config: the network's constructor arguments for the ``model`` metadata.
        ort: also write the ``.ort`` file.

    Raises:
        ParityError: the logits differ by more than ``atol`` (the file is not written).
        SpeechkitError: the model's output count differs from the number of labels.
    """
    import torch

    rate = frontend_sample_rate(frontend)
    if rate is not None and rate != int(sample_rate):
        raise SpeechkitError(
            f"the front-end ({type(frontend).__name__}) computes features at {rate} Hz, but the artifact "
            f"would declare sample_rate {sample_rate}: the runtime would feed it audio at the wrong rate"
        )
    wrapper = ClipClassifierOnnxModel(frontend, model).to("cpu", torch.float32).eval()
    with torch.no_grad():
        num_classes = int(wrapper(torch.zeros(1, clip_samples)).shape[1])
    if labels and len(labels) != num_classes:
        raise SpeechkitError(f"the model has {num_classes} outputs but {len(labels)} labels {list(labels)}")
    metadata = clip_metadata(task_name, frontend, model, labels, sample_rate, clip_samples, model_config)
    gen = np.random.default_rng(seed)
    example = torch.from_numpy(random_audio(gen, 2, clip_samples))
    return export_artifact(
        wrapper, (example,), path, CLIP_CLASSIFIER_SPEC, metadata,
        parity_inputs=[(random_audio(gen, b, clip_samples),) for b in batch_sizes],
        dynamic_shapes={"audio": {0: "batch"}, "logits": {0: "batch"}}, atol=atol, ort=ort,
    )


def export_clip_task(task, path: str | os.PathLike, **kwargs) -> ExportResult:
    """:func:`export_clip_classifier` of a ``ClassificationTask`` (``.frontend``, ``.model``,
    ``.labels``, ``.sample_rate``, ``.clip_samples``, ``.task_name``).

    The artifact's ``sample_rate`` is the front-end's when it declares one (the rate its features
    assume), else the task's: a checkpoint whose ``sample_rate`` never reached the task (it kept
    the default 16000 while the front-end ran at 44.1 kHz) still exports a correct artifact.
    """
    return export_clip_classifier(
        task.frontend, task.model, task.labels, task_sample_rate(task), task.clip_samples, path,
        task_name=task.task_name, **kwargs,
    )


def task_sample_rate(task) -> int:
    """The rate the task's artifact takes: its front-end's if declared, else ``task.sample_rate``."""
    return frontend_sample_rate(task.frontend) or int(task.sample_rate)


def frontend_sample_rate(frontend: nn.Module) -> int | None:
    """The ``sample_rate`` in the front-end's ``config()``, if it has one."""
    config = frontend.config() if hasattr(frontend, "config") else {}
    rate = config.get("sample_rate")
    return int(rate) if isinstance(rate, (int, float)) and rate > 0 else None


def random_audio(gen: np.random.Generator, batch: int, samples: int) -> np.ndarray:
    """(batch, samples) float32 noise in [-1, 1] with item-dependent loudness."""
    scale = np.geomspace(0.01, 0.5, batch, dtype=np.float32)[:, None] if batch > 1 else np.float32(0.1)
    return np.clip(gen.standard_normal((batch, samples)).astype(np.float32) * scale, -1.0, 1.0)


# -- int8 ------------------------------------------------------------------------------------


def quantize_clip_classifier(
    fp32_path: str | os.PathLike,
    int8_path: str | os.PathLike,
    calibration_audio: np.ndarray,
    batch_size: int = 32,
    keep_frontend_fp32: bool = True,
) -> Path:
    """Statically quantize a clip-classifier artifact to int8, calibrated on training clips.

    Args:
        calibration_audio: (N, S) float32 training clips, ``S == clip_samples``.
        keep_frontend_fp32: leave the front-end's nodes (STFT, mel matmul, log) unquantized.
            The log-mel dynamic range spans many decades, so an int8 mel projection destroys
            quiet frames; the front-end is a small share of the compute.

    Returns:
        ``Path(int8_path)``; its metadata is the fp32 file's plus ``quantization``.
    """
    excluded = frontend_node_names(fp32_path) if keep_frontend_fp32 else []
    # Convolutions and matmuls are the compute; the BatchNorms left inside SubSpectralNorm
    # (not foldable) stay float rather than being requantized.
    return quantize_static_qdq(fp32_path, int8_path, ArrayCalibrationReader(calibration_audio, batch_size),
                               nodes_to_exclude=excluded, op_types_to_quantize=("Conv", "MatMul", "Gemm"))


def onnx_accuracy(onnx_path: str | os.PathLike, audio: np.ndarray, targets: np.ndarray, batch_size: int = 64) -> float:
    """Top-1 accuracy of an artifact on (N, S) clips with (N,) int class ids, in percent."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    correct = 0
    for i in range(0, len(audio), batch_size):
        logits = session.run(["logits"], {"audio": audio[i : i + batch_size]})[0]
        correct += int((logits.argmax(axis=1) == targets[i : i + batch_size]).sum())
    return 100.0 * correct / max(len(audio), 1)


def load_manifest_clips(
    manifest: str | os.PathLike,
    labels: Sequence[str],
    sample_rate: int,
    clip_samples: int,
    max_clips: int | None = None,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Read classification cuts as fixed-length clips at the model's rate.

    Args:
        manifest: lhotse cut manifest (``cuts_<split>.jsonl.gz``) of a prepared folder.
        labels: the model's class names; every cut's ``custom["label"]`` must be one of them.
        sample_rate: model rate (Hz); cuts at other rates are resampled.
        clip_samples: clip length; longer cuts are centre-cropped, shorter ones zero-padded
            at the end.
        max_clips: take this many cuts, chosen at random with ``seed`` (``None``: all).
        seed: seed of that choice.

    Returns:
        audio (N, clip_samples) float32 and targets (N,) int64.

    Raises:
        CorpusError: missing/unreadable manifest, no cuts, or a label the model lacks.
    """
    from speechkit.data.datamodules import fit_length, load_cut_audio
    from speechkit.data.manifests import cut_label, read_cuts

    cuts = list(read_cuts(manifest, hint="pass the manifest of a folder made by `speechkit prepare`"))
    if not cuts:
        raise CorpusError(f"{manifest}: manifest has no cuts")
    if max_clips is not None and len(cuts) > max_clips:
        keep = np.random.default_rng(seed).choice(len(cuts), size=max_clips, replace=False)
        cuts = [cuts[i] for i in sorted(keep)]
    index = {label: i for i, label in enumerate(labels)}
    audio = np.zeros((len(cuts), clip_samples), dtype=np.float32)
    targets = np.zeros(len(cuts), dtype=np.int64)
    for row, cut in enumerate(cuts):
        label = cut_label(cut)
        if label not in index:
            raise CorpusError(f"{manifest}: cut {cut.id!r} has label {label!r}, which the model does not know ({list(labels)})")
        targets[row] = index[label]
        # The evaluation path of the training data module: centre crop or zero-pad at the end.
        audio[row] = fit_length(load_cut_audio(cut, sample_rate), clip_samples)
    return audio, targets


# -- checkpoint -> every artifact (what `speechkit export` and the quickstart run) -------------


@dataclass
class ClipExportOptions:
    """What :func:`export_clip_artifacts` writes besides the fp32 artifact.

    Attributes:
        int8: also write ``<stem>_int8.onnx`` (static quantization + accuracy gate).
        ort: also write ``<stem>.ort`` (and ``<stem>_int8.ort``) and run the usability check.
        force: keep an int8 model that fails the gate, or that could not be checked.
        train_manifest: calibration cuts; default ``cuts_train`` of the task's ``manifest_dir``.
        test_manifest: gate cuts; default ``cuts_test`` of the task's ``manifest_dir``.
        calibration_clips: training clips used for calibration.
        max_int8_drop_points: largest allowed accuracy drop (percentage points).
        atol: parity tolerance on the logits.
        batch_sizes: batch sizes of the parity check.
    """

    int8: bool = False
    ort: bool = False
    force: bool = False
    train_manifest: Path | None = None
    test_manifest: Path | None = None
    calibration_clips: int = 300
    max_int8_drop_points: float = CLIP_GATE.max_delta
    atol: float = 1e-4
    batch_sizes: tuple[int, ...] = (1, 2, 5)


def export_clip_artifacts(
    task,
    out: str | os.PathLike,
    options: ClipExportOptions | None = None,
    model_config: dict | None = None,
    log: Callable[[str], None] = print,
) -> dict:
    """Export a trained classification task: fp32 (parity-checked), then int8 and ORT files as asked.

    Args:
        task: ``ClassificationTask`` (from :func:`speechkit.tasks.load_task`); its
            ``datamodule_config["manifest_dir"]`` provides the default manifests.
        out: the fp32 ``.onnx`` path; the others go beside it.
        options: see :class:`ClipExportOptions`.
        model_config: the network's constructor arguments for the metadata
            (:func:`speechkit.export.onnx_export.checkpoint_model_config`).
        log: receives one progress line at a time.

    Returns:
        ``{"onnx", "parity_max_diff", "int8", "int8_report", "ort", "mobile_usability",
        "sizes"}``: paths (or None / []), the measured parity, the
        :class:`~speechkit.export.gate.GateReport`, the
        :class:`~speechkit.export.onnx_export.MobileUsability`, and ``{file name: bytes}``.

    Raises:
        ParityError, QualityGateError, CorpusError, SpeechkitError: see the steps.
    """
    from speechkit.export.onnx_export import file_size_text

    options = options or ClipExportOptions()
    out = Path(out)
    manifests = _int8_manifests(task, options) if options.int8 else None  # fail before the slow part
    worst = export_clip_task(task, out, batch_sizes=options.batch_sizes, atol=options.atol,
                             model_config=model_config).max_abs_diff
    log(f"wrote {out} ({file_size_text(out)}); parity with PyTorch: max |logit diff| {worst:.2g} "
        f"over batch sizes {', '.join(map(str, options.batch_sizes))} (limit {options.atol:g})")
    result = {"onnx": out, "parity_max_diff": worst, "int8": None, "int8_report": None, "ort": [], "mobile_usability": None}
    written = [out]
    if manifests is not None:
        result["int8"], result["int8_report"] = _write_int8(task, out, options, *manifests, log=log)
        written.append(result["int8"])
    if options.ort:
        result["ort"], result["mobile_usability"] = write_ort_files(written, log)
        written += result["ort"]
    result["sizes"] = {p.name: p.stat().st_size for p in written}
    log("sizes: " + ", ".join(f"{p.name} {file_size_text(p)}" for p in written))
    return result


def _int8_manifests(task, options: ClipExportOptions) -> tuple[Path, Path | None]:
    """The calibration and test manifests the int8 step will use, checked to exist."""
    from speechkit.data.manifests import cuts_path

    manifest_dir = (getattr(task, "datamodule_config", None) or {}).get("manifest_dir")

    def pick(given: Path | None, split: str) -> Path | None:
        if given is not None:
            return Path(given)
        if manifest_dir and cuts_path(manifest_dir, split).is_file():
            return cuts_path(manifest_dir, split)
        return None

    train, test = pick(options.train_manifest, "train"), pick(options.test_manifest, "test")
    if train is None:
        raise SpeechkitError("--int8 calibrates on training audio: pass --train-manifest (the checkpoint records no manifest_dir)")
    if test is None and not options.force:
        raise SpeechkitError("--int8 checks accuracy on test audio: pass --test-manifest, or --force to skip the check")
    for path in (train, test):
        if path is not None and not path.is_file():
            raise CorpusError(f"{path}: no such manifest; expected cuts_<split>.jsonl.gz from `speechkit prepare`")
    return train, test


def _write_int8(
    task, out: Path, options: ClipExportOptions, train: Path, test: Path | None, log: Callable[[str], None]
) -> tuple[Path, GateReport | None]:
    """Calibrate on training clips, quantize, gate on the test clips (shared gated write)."""
    rate = task_sample_rate(task)
    calibration, _ = load_manifest_clips(train, task.labels, rate, task.clip_samples, max_clips=options.calibration_clips)
    log(f"calibrating int8 on {len(calibration)} clips from {train}")
    measure = None
    if test is not None:
        audio, targets = load_manifest_clips(test, task.labels, rate, task.clip_samples)

        def measure(path: Path) -> tuple[float, int]:
            return onnx_accuracy(path, audio, targets), len(audio)

    return write_gated_int8(
        out, lambda src, dst: quantize_clip_classifier(src, dst, calibration),
        CLIP_GATE.with_max_delta(options.max_int8_drop_points), measure, force=options.force, log=log,
        unit="test clips",
    )


def write_ort_files(paths: list[Path], log: Callable[[str], None]):
    """ORT mobile files of ``paths`` and the mobile-usability verdict of the first."""
    from speechkit.export.onnx_export import check_mobile_usability, convert_to_ort, file_size_text

    written = []
    for path in paths:
        written.append(convert_to_ort(path))
        log(f"wrote {written[-1]} ({file_size_text(written[-1])})")
    usability = check_mobile_usability(paths[0])
    log(f"mobile usability ({paths[0].name}): {usability.summary()}")
    for line in usability.messages:  # the checker's verdict per execution provider
        if line.startswith("Model should perform well"):
            log(f"  {line.strip()}")
    return written, usability


# -- `speechkit export` ------------------------------------------------------------------------


def add_export_arguments(p: argparse.ArgumentParser) -> None:
    """The clip-classifier options of ``speechkit export`` (int8 calibration data)."""
    p.add_argument("--train-manifest", type=Path, default=None,
                   help="clip classifiers: cuts for int8 calibration (default: cuts_train.jsonl.gz of the "
                   "checkpoint's manifest_dir)")
    p.add_argument("--calibration-clips", type=int, default=300,
                   help="clip classifiers: training clips used for int8 calibration (default 300)")


def export_options(args: argparse.Namespace, checkpoint: Path | None) -> tuple[ClipExportOptions, dict | None]:
    """The ``speechkit export`` arguments as :class:`ClipExportOptions`, plus the checkpoint's model config."""
    from speechkit.export.onnx_export import checkpoint_model_config

    options = ClipExportOptions(
        int8=args.int8, ort=args.ort, force=args.force, train_manifest=args.train_manifest,
        test_manifest=args.test_manifest, calibration_clips=args.calibration_clips,
        max_int8_drop_points=args.max_int8_drop, atol=args.atol,
    )
    return options, checkpoint_model_config(checkpoint) if checkpoint is not None else None


def export_command(task, args: argparse.Namespace, checkpoint: Path | None) -> int:
    """The exporter ``speechkit export`` runs for classification checkpoints."""
    options, model_config = export_options(args, checkpoint)
    export_clip_artifacts(task, args.output, options, model_config=model_config)
    return 0


register_exporter(Exporter(
    name="clip-classifier",
    task_class="speechkit.tasks.classification.ClassificationTask",
    export=export_command,
    gate=CLIP_GATE,
    add_arguments=add_export_arguments,
))
