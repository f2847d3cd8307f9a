"""KWS ONNX artifact: export with parity, int8 static quantization with an accuracy gate.

The artifact (ARCHITECTURE contract 6) takes raw PCM and returns logits, so a phone app needs
nothing but onnxruntime and the metadata:

==================  ==========================================================================
input ``audio``     float32 ``[batch, samples]``, mono, in [-1, 1], at ``sample_rate``,
                    ``samples == clip_samples``
output ``logits``   float32 ``[batch, num_classes]``, in the order of ``labels``
metadata            ``speechkit.task`` (``kws``), ``labels`` (JSON list), ``sample_rate``,
                    ``clip_samples``, ``frontend`` (JSON: ``class`` + its parameters),
                    ``model`` (JSON: ``class``, ``num_params`` + its parameters if known),
                    ``speechkit_version``; int8 files add ``quantization``
==================  ==========================================================================

Shapes: B batch, S samples, C classes.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from torch import Tensor, nn

import speechkit
from speechkit.errors import CorpusError, SpeechkitError
from speechkit.export.onnx_export import check_parity, export_onnx, quiet_output, write_metadata
from speechkit.fileio import atomic_path
from speechkit.runtime.model import KWS_METADATA, KWS_TASK

#: Largest allowed accuracy drop of the int8 model, in percentage points (absolute).
MAX_INT8_DROP_POINTS = 1.0


class KwsOnnxModel(nn.Module):
    """Export wrapper: raw audio in, logits out, front-end inside the graph.

    Args:
        frontend: ``forward(audio (B, S), audio_lens) -> (feats (B, T, F), feat_lens)``.
        model: ``forward(feats (B, T, F)) -> logits (B, C)``.

    Example:
        >>> import torch
        >>> from speechkit.frontends import LogMel
        >>> from speechkit.models.kws import BCResNet
        >>> wrapper = KwsOnnxModel(LogMel.bcresnet(), BCResNet(num_classes=3, width=1)).eval()
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


def kws_metadata(
    frontend: nn.Module,
    model: nn.Module,
    labels: Sequence[str],
    sample_rate: int,
    clip_samples: int,
    model_config: dict | None = None,
) -> dict[str, str]:
    """The contract's ``metadata_props`` for a KWS artifact (all values strings).

    Args:
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
    metadata = {
        "speechkit.task": KWS_TASK,
        "labels": json.dumps(list(labels)),
        "sample_rate": str(int(sample_rate)),
        "clip_samples": str(int(clip_samples)),
        "frontend": json.dumps({"class": type(frontend).__name__, **frontend_cfg}),
        "model": json.dumps(model_cfg),
        "speechkit_version": speechkit.__version__,
    }
    assert set(KWS_METADATA) <= set(metadata)  # the runtime's list of required keys
    return metadata


def export_kws(
    frontend: nn.Module,
    model: nn.Module,
    labels: Sequence[str],
    sample_rate: int,
    clip_samples: int,
    path: str | os.PathLike,
    batch_sizes: Sequence[int] = (1, 2, 5),
    atol: float = 1e-4,
    seed: int = 0,
    model_config: dict | None = None,
) -> float:
    """Export a KWS front-end + network to the contract's ONNX artifact, checked for parity.

    The file appears at ``path`` only after the parity check passed on every batch size.

    Args:
        frontend, model: the trained modules (moved to CPU float32 eval mode for export).
        labels: class names in logit order.
        sample_rate: Hz of ``audio``.
        clip_samples: samples per clip.
        path: destination ``.onnx``.
        batch_sizes: batch sizes of the parity check (random audio in [-1, 1]).
        atol: largest allowed absolute logit difference against PyTorch.
        seed: seed of the parity audio.
        model_config: the network's constructor arguments for the ``model`` metadata.

    Returns:
        The largest absolute logit difference measured.

    Raises:
        ParityError: the logits differ by more than ``atol`` (the file is not written).
    """
    import torch

    wrapper = KwsOnnxModel(frontend, model).to("cpu", torch.float32).eval()
    num_classes = int(wrapper(torch.zeros(1, clip_samples)).shape[1])
    if labels and len(labels) != num_classes:
        raise SpeechkitError(f"the model has {num_classes} outputs but {len(labels)} labels {list(labels)}")
    metadata = kws_metadata(frontend, model, labels, sample_rate, clip_samples, model_config)
    gen = np.random.default_rng(seed)
    example = torch.from_numpy(_random_audio(gen, 2, clip_samples))
    with atomic_path(path) as tmp:
        export_onnx(
            wrapper, (example,), tmp, ["audio"], ["logits"],
            dynamic_shapes={"audio": {0: "batch"}, "logits": {0: "batch"}}, metadata=metadata,
        )
        inputs = [(_random_audio(gen, b, clip_samples),) for b in batch_sizes]
        worst = check_parity(tmp, wrapper, inputs, atol=atol)
    return worst


def export_kws_task(task, path: str | os.PathLike, **kwargs) -> float:
    """:func:`export_kws` for a ``ClassificationTask`` (``.frontend``, ``.model``, ``.labels``, ...).

    Pass ``model_config`` (the network's constructor arguments, e.g. from the checkpoint's
    ``hyper_parameters["model"]["init_args"]``) to name e.g. BC-ResNet's width in the metadata.
    """
    return export_kws(task.frontend, task.model, task.labels, task.sample_rate, task.clip_samples, path, **kwargs)


def _random_audio(gen: np.random.Generator, batch: int, samples: int) -> np.ndarray:
    """(batch, samples) float32 noise in [-1, 1] with item-dependent loudness."""
    scale = np.geomspace(0.01, 0.5, batch, dtype=np.float32)[:, None] if batch > 1 else np.float32(0.1)
    return np.clip(gen.standard_normal((batch, samples)).astype(np.float32) * scale, -1.0, 1.0)


# -- int8 ------------------------------------------------------------------------------------


@dataclass
class Int8Report:
    """Accuracy of the fp32 and int8 artifacts on the same test clips (fractions in [0, 1])."""

    fp32_accuracy: float
    int8_accuracy: float
    num_clips: int
    max_drop_points: float

    @property
    def drop_points(self) -> float:
        """Accuracy lost by quantization, in percentage points (negative: int8 is better)."""
        return 100.0 * (self.fp32_accuracy - self.int8_accuracy)

    @property
    def passed(self) -> bool:
        # tolerance: 100 * (0.95 - 0.94) is 1.0000000000000009 in floating point
        return self.drop_points <= self.max_drop_points + 1e-9

    def summary(self) -> str:
        return (
            f"accuracy on {self.num_clips} test clips: fp32 {100 * self.fp32_accuracy:.2f}%, "
            f"int8 {100 * self.int8_accuracy:.2f}% (drop {self.drop_points:.2f} points, "
            f"limit {self.max_drop_points:.2f})"
        )


class Int8AccuracyError(SpeechkitError):
    """The int8 model loses more accuracy than allowed (and ``force`` was not given)."""


def quantize_kws(
    fp32_path: str | os.PathLike,
    int8_path: str | os.PathLike,
    calibration_audio: np.ndarray,
    batch_size: int = 32,
    keep_frontend_fp32: bool = True,
) -> Path:
    """Statically quantize a KWS artifact to int8 (QDQ, per-channel weights), atomically.

    Activation ranges come from running ``calibration_audio`` through the model (MinMax), which
    is why this needs real training clips: random noise gives the wrong ranges.

    Args:
        fp32_path: the exported fp32 artifact.
        int8_path: destination.
        calibration_audio: (N, S) float32 training clips, ``S == clip_samples``.
        batch_size: clips per calibration batch.
        keep_frontend_fp32: leave the front-end's nodes (STFT, mel matmul, log) unquantized.
            The log-mel dynamic range spans many decades, so an int8 mel projection destroys
            quiet frames; the front-end is a small share of the compute.

    Returns:
        ``Path(int8_path)``; its metadata is the fp32 file's plus ``quantization``.
    """
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from speechkit.export.onnx_export import read_metadata

    fp32_path, int8_path = Path(fp32_path), Path(int8_path)
    excluded = frontend_node_names(fp32_path) if keep_frontend_fp32 else []
    metadata = read_metadata(fp32_path)
    with tempfile.TemporaryDirectory() as scratch:
        source = Path(scratch) / "prepared.onnx"
        try:
            # Folds BatchNorm into Conv so the folded weights are quantized. Symbolic shape
            # inference is skipped: onnxruntime's chokes on the STFT branch (ReduceSum axes).
            quant_pre_process(str(fp32_path), str(source), skip_symbolic_shape=True)
        except Exception as exc:  # pre-processing is an optimisation; quantize the original
            logging.getLogger(__name__).warning("quant_pre_process failed (%s); quantizing as exported", exc)
            source = fp32_path
        with atomic_path(int8_path) as tmp, quiet_output():
            quantize_static(
                str(source), str(tmp), ClipCalibrationReader(calibration_audio, batch_size),
                quant_format=QuantFormat.QDQ, per_channel=True, activation_type=QuantType.QInt8,
                weight_type=QuantType.QInt8, nodes_to_exclude=excluded,
                # The convolutions and matmuls are the compute; the BatchNorms left inside
                # SubSpectralNorm (not foldable) stay float rather than being requantized.
                op_types_to_quantize=["Conv", "MatMul", "Gemm"],
            )
            write_metadata(tmp, {**metadata, "quantization": "int8 static QDQ, per-channel weights, MinMax calibration"})
    return int8_path


def frontend_node_names(onnx_path: str | os.PathLike) -> list[str]:
    """Names of the nodes exported from ``KwsOnnxModel.frontend`` (from their name scopes)."""
    import onnx

    names = []
    for node in onnx.load(str(onnx_path)).graph.node:
        for prop in node.metadata_props:
            if prop.key == "pkg.torch.onnx.name_scopes" and prop.value.startswith("['', 'frontend'"):
                names.append(node.name)
    return names


class ClipCalibrationReader:
    """onnxruntime ``CalibrationDataReader`` over an array of clips.

    Args:
        audio: (N, S) float32 clips.
        batch_size: clips per ``get_next`` batch.
    """

    def __init__(self, audio: np.ndarray, batch_size: int = 32, input_name: str = "audio") -> None:
        if audio.ndim != 2 or len(audio) == 0:
            raise SpeechkitError(f"calibration needs a non-empty (clips, samples) array, got shape {audio.shape}")
        self.audio = np.ascontiguousarray(audio, dtype=np.float32)
        self.batch_size = batch_size
        self.input_name = input_name
        self._pos = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._pos >= len(self.audio):
            return None
        batch = self.audio[self._pos : self._pos + self.batch_size]
        self._pos += self.batch_size
        return {self.input_name: batch}

    def rewind(self) -> None:
        self._pos = 0

    # The rest of onnxruntime's CalibrationDataReader interface (it checks by duck typing).
    def __iter__(self):
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        batch = self.get_next()
        if batch is None:
            raise StopIteration
        return batch

    def __len__(self) -> int:
        return -(-len(self.audio) // self.batch_size)


def onnx_accuracy(onnx_path: str | os.PathLike, audio: np.ndarray, targets: np.ndarray, batch_size: int = 64) -> float:
    """Top-1 accuracy of an artifact on (N, S) clips with (N,) int class ids (fraction)."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    correct = 0
    for i in range(0, len(audio), batch_size):
        logits = session.run(["logits"], {"audio": audio[i : i + batch_size]})[0]
        correct += int((logits.argmax(axis=1) == targets[i : i + batch_size]).sum())
    return correct / max(len(audio), 1)


def int8_gate(
    fp32_path: str | os.PathLike,
    int8_path: str | os.PathLike,
    test_audio: np.ndarray,
    test_targets: np.ndarray,
    max_drop_points: float = MAX_INT8_DROP_POINTS,
    force: bool = False,
    accuracy_fn: Callable[..., float] = onnx_accuracy,
) -> Int8Report:
    """Compare fp32 and int8 accuracy on the same test clips; refuse a large drop.

    Raises:
        Int8AccuracyError: the drop exceeds ``max_drop_points`` and ``force`` is False.
    """
    report = Int8Report(
        accuracy_fn(fp32_path, test_audio, test_targets), accuracy_fn(int8_path, test_audio, test_targets),
        len(test_audio), max_drop_points,
    )
    if not report.passed and not force:
        raise Int8AccuracyError(
            f"{int8_path}: int8 quantization loses too much: {report.summary()}; not written. "
            "Calibrate on more training clips, or pass --force to keep it anyway"
        )
    return report


# -- test / calibration clips from manifests --------------------------------------------------


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
class KwsExportOptions:
    """What :func:`export_kws_artifacts` writes besides the fp32 artifact.

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
    max_int8_drop_points: float = MAX_INT8_DROP_POINTS
    atol: float = 1e-4
    batch_sizes: tuple[int, ...] = (1, 2, 5)


def export_kws_artifacts(
    task,
    out: str | os.PathLike,
    options: KwsExportOptions | None = None,
    model_config: dict | None = None,
    log: Callable[[str], None] = print,
) -> dict:
    """Export a trained KWS task: fp32 (parity-checked), then int8 and ORT files as asked.

    Args:
        task: ``ClassificationTask`` (from :func:`speechkit.tasks.load_task`); its
            ``datamodule_config["manifest_dir"]`` provides the default manifests.
        out: the fp32 ``.onnx`` path; the others go beside it.
        options: see :class:`KwsExportOptions`.
        model_config: the network's constructor arguments for the metadata
            (:func:`speechkit.export.onnx_export.checkpoint_model_config`).
        log: receives one progress line at a time.

    Returns:
        ``{"onnx", "parity_max_diff", "int8", "int8_report", "ort", "mobile_usability",
        "sizes"}``: paths (or None / []), the measured parity, the :class:`Int8Report`, the
        :class:`~speechkit.export.onnx_export.MobileUsability`, and ``{file name: bytes}``.

    Raises:
        ParityError, Int8AccuracyError, CorpusError, SpeechkitError: see the steps.
    """
    from speechkit.export.onnx_export import file_size_text

    options = options or KwsExportOptions()
    out = Path(out)
    manifests = _int8_manifests(task, options) if options.int8 else None  # fail before the slow part
    worst = export_kws_task(task, out, batch_sizes=options.batch_sizes, atol=options.atol, model_config=model_config)
    log(f"wrote {out} ({file_size_text(out)}); parity with PyTorch: max |logit diff| {worst:.2g} "
        f"over batch sizes {', '.join(map(str, options.batch_sizes))} (limit {options.atol:g})")
    result = {"onnx": out, "parity_max_diff": worst, "int8": None, "int8_report": None, "ort": [], "mobile_usability": None}
    written = [out]
    if manifests is not None:
        result["int8"], result["int8_report"] = _write_int8(task, out, options, *manifests, log=log)
        written.append(result["int8"])
    if options.ort:
        result["ort"], result["mobile_usability"] = _write_ort(written, log)
        written += result["ort"]
    result["sizes"] = {p.name: p.stat().st_size for p in written}
    log("sizes: " + ", ".join(f"{p.name} {file_size_text(p)}" for p in written))
    return result


def _int8_manifests(task, options: KwsExportOptions) -> tuple[Path, Path | None]:
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
    task, out: Path, options: KwsExportOptions, train: Path, test: Path | None, log: Callable[[str], None]
) -> tuple[Path, Int8Report | None]:
    """Quantize in a scratch folder, gate on the test clips, then move the file into place."""
    import shutil

    from speechkit.export.onnx_export import file_size_text

    int8_path = out.with_name(f"{out.stem}_int8.onnx")
    calibration, _ = load_manifest_clips(
        train, task.labels, task.sample_rate, task.clip_samples, max_clips=options.calibration_clips
    )
    log(f"calibrating int8 on {len(calibration)} clips from {train}")
    report = None
    with tempfile.TemporaryDirectory(dir=out.parent) as scratch:
        candidate = quantize_kws(out, Path(scratch) / int8_path.name, calibration)
        if test is None:
            log("warning: int8 accuracy not checked (no test manifest; --force)")
        else:
            audio, targets = load_manifest_clips(test, task.labels, task.sample_rate, task.clip_samples)
            try:
                report = int8_gate(out, candidate, audio, targets, options.max_int8_drop_points, force=options.force)
            except Int8AccuracyError as exc:  # name the file the user asked for, not the scratch one
                raise Int8AccuracyError(str(exc).replace(str(candidate), str(int8_path))) from None
            log(f"int8 {report.summary()}")
            if not report.passed:
                log("warning: int8 model fails the accuracy gate; kept because of --force")
        with atomic_path(int8_path) as tmp:
            shutil.copyfile(candidate, tmp)
    log(f"wrote {int8_path} ({file_size_text(int8_path)})")
    return int8_path, report


def _write_ort(paths: list[Path], log: Callable[[str], None]):
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
