"""int8 ASR artifacts: dynamic quantization of the weight matrices, gated on WER.

``--int8`` writes ``<stem>_int8.onnx`` only if its WER on a test set rises by at most
:data:`ASR_GATE` ``.max_delta`` points (absolute) over the fp32 artifact's, unless forced. The rule
and the report are the shared :class:`~speechkit.export.gate.QualityGate`; the WER is measured
as ``speechkit eval-asr`` measures it (:func:`onnx_wer`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

from speechkit.errors import SpeechkitError
from speechkit.export.gate import GateReport, QualityGate
from speechkit.export.int8 import write_gated_int8
from speechkit.export.onnx_export import read_metadata, write_metadata
from speechkit.fileio import atomic_path

#: The ASR family's int8 gate: WER (percent) may rise by at most 1 point.
ASR_GATE = QualityGate(metric="wer", higher_is_better=False, max_delta=1.0)


def quantize_asr(fp32_path: str | os.PathLike, int8_path: str | os.PathLike) -> Path:
    """Dynamic int8 quantization of the weight matrices (MatMul), atomically.

    Weights become int8 (per tensor); activations are quantized on the fly per call, so no
    calibration data is needed (the usual choice for Transformer/Conformer encoders on CPU).
    Convolutions, LayerNorms and the softmax stay float.

    Returns:
        ``Path(int8_path)``; its metadata is the fp32 file's plus ``quantization``.
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    fp32_path, int8_path = Path(fp32_path), Path(int8_path)
    metadata = read_metadata(fp32_path)
    root = logging.getLogger()
    level = root.level
    # onnxruntime logs a root-logger warning recommending its pre-processing (shape inference and
    # graph optimisation), which matters for static QDQ quantization, not for MatMul weights.
    root.setLevel(logging.ERROR)
    try:
        with atomic_path(int8_path) as tmp:
            quantize_dynamic(
                str(fp32_path), str(tmp), op_types_to_quantize=["MatMul"], weight_type=QuantType.QInt8,
                per_channel=False, extra_options={"MatMulConstBOnly": True},
            )
            write_metadata(tmp, {**metadata, "quantization": "int8 dynamic, MatMul weights per tensor"})
    finally:
        root.setLevel(level)
    return int8_path


def onnx_wer(onnx_path: str | os.PathLike, test_manifest: str | os.PathLike) -> tuple[float, int]:
    """Corpus WER (fraction) of an ASR artifact on a test set, decoded as ``speechkit eval-asr`` does.

    Args:
        onnx_path: streaming (decoded window by window with its states) or full-context artifact.
        test_manifest: lhotse cuts with transcripts, or a LibriSpeech subset folder.

    Returns:
        ``(wer, num_utterances)``.
    """
    from speechkit.inference.asr import evaluate, read_eval_set
    from speechkit.runtime.asr import AsrOnnxRecognizer

    result = evaluate(AsrOnnxRecognizer(onnx_path), read_eval_set(test_manifest), num_worst=0)
    return result["wer"], result["num_utterances"]


def int8_gate(
    fp32_path: str | os.PathLike,
    int8_path: str | os.PathLike,
    test_manifest: str | os.PathLike,
    gate: QualityGate = ASR_GATE,
    force: bool = False,
    wer_fn: Callable[[str | os.PathLike, str | os.PathLike], tuple[float, int]] | None = None,
) -> GateReport:
    """Judge the int8 artifact's WER against the fp32 one's on the same test set.

    Args:
        gate: the rule (default :data:`ASR_GATE`; ``gate.with_max_delta(...)`` for another limit).
        force: keep a failing model (the report says ``forced``).
        wer_fn: ``(model, test set) -> (wer fraction, utterances)``; default :func:`onnx_wer`.

    Returns:
        The :class:`~speechkit.export.gate.GateReport` (WERs in percent).

    Raises:
        QualityGateError: the WER rises more than ``gate.max_delta`` points and ``force`` is False.
    """
    wer_fn = wer_fn or onnx_wer
    fp32_wer, count = wer_fn(fp32_path, test_manifest)
    int8_wer, _ = wer_fn(int8_path, test_manifest)
    return gate.judge(100.0 * fp32_wer, 100.0 * int8_wer, force=force, num_items=count, what=str(int8_path))


def write_int8(
    out_path: str | os.PathLike, test_manifest: str | os.PathLike | None, force: bool = False,
    gate: QualityGate = ASR_GATE,
) -> dict:
    """Quantize ``out_path`` to ``<stem>_int8.onnx`` if it passes :func:`int8_gate` (or ``force``).

    Returns:
        ``{"path", "size_bytes", "gate": GateReport.to_dict() | None, "forced"}``.

    Raises:
        QualityGateError: the gate failed (nothing written); SpeechkitError: no test set, no force.
    """
    if test_manifest is None and not force:
        raise SpeechkitError("--int8 checks the WER on test audio: pass --test-manifest, or --force to skip the check")

    def measure(path: Path) -> tuple[float, int]:
        wer, count = onnx_wer(path, test_manifest)
        return 100.0 * wer, count

    # The shared quantize -> measure both -> judge -> move-into-place sequence; silent here (the
    # callers print the returned report).
    int8_path, report = write_gated_int8(
        out_path, quantize_asr, gate, measure if test_manifest is not None else None, force=force,
        log=lambda line: None,
    )
    return {"path": str(int8_path), "size_bytes": int8_path.stat().st_size,
            "gate": report.to_dict() if report is not None else None,
            "forced": bool(force and (report is None or not report.passed))}
