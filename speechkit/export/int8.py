"""int8 quantization shared by the families: static QDQ with calibration arrays, and the gated write.

* :func:`quantize_static_qdq`: onnxruntime static quantization (QDQ, per-channel weights, MinMax
  calibration) of chosen op types, optionally leaving the front-end's nodes in float.
* :class:`ArrayCalibrationReader`: onnxruntime ``CalibrationDataReader`` over numpy arrays.
* :func:`write_gated_int8`: quantize into a scratch file, measure the family's metric on the fp32
  and the int8 model, judge with its :class:`~speechkit.export.gate.QualityGate`, and only then
  move ``<stem>_int8.onnx`` into place. A family supplies ``quantize`` and ``measure``.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from speechkit.errors import SpeechkitError
from speechkit.export.gate import GateReport, QualityGate
from speechkit.export.onnx_export import file_size_text, quiet_output, read_metadata, write_metadata
from speechkit.fileio import atomic_path

#: ``quantization`` metadata of statically quantized artifacts.
STATIC_QDQ_NOTE = "int8 static QDQ, per-channel weights, MinMax calibration"


class ArrayCalibrationReader:
    """onnxruntime ``CalibrationDataReader`` over an array of inputs (e.g. clips).

    Args:
        audio: (N, ...) float32 array; batches are slices along the first axis.
        batch_size: items per ``get_next`` batch.
        input_name: the graph input fed.
    """

    def __init__(self, audio: np.ndarray, batch_size: int = 32, input_name: str = "audio") -> None:
        if audio.ndim < 2 or len(audio) == 0:
            raise SpeechkitError(f"calibration needs a non-empty (items, ...) array, got shape {audio.shape}")
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


def frontend_node_names(onnx_path: str | os.PathLike, scope: str = "frontend") -> list[str]:
    """Names of the nodes exported from the wrapper's ``scope`` submodule (from their name scopes)."""
    import onnx

    names = []
    for node in onnx.load(str(onnx_path)).graph.node:
        for prop in node.metadata_props:
            if prop.key == "pkg.torch.onnx.name_scopes" and prop.value.startswith(f"['', '{scope}'"):
                names.append(node.name)
    return names


def quantize_static_qdq(
    fp32_path: str | os.PathLike,
    int8_path: str | os.PathLike,
    reader,
    nodes_to_exclude: Sequence[str] = (),
    op_types_to_quantize: Sequence[str] = ("Conv", "MatMul", "Gemm"),
) -> Path:
    """Static int8 quantization (QDQ, per-channel int8 weights, int8 activations), atomically.

    Activation ranges come from running ``reader``'s batches through the model (MinMax), which
    is why this needs real training data: random noise gives the wrong ranges.

    Args:
        fp32_path: the exported fp32 artifact.
        int8_path: destination.
        reader: a calibration data reader (e.g. :class:`ArrayCalibrationReader`).
        nodes_to_exclude: nodes left in float (e.g. :func:`frontend_node_names`).
        op_types_to_quantize: the op types quantized (the compute); others stay float.

    Returns:
        ``Path(int8_path)``; its metadata is the fp32 file's plus ``quantization``.
    """
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    fp32_path, int8_path = Path(fp32_path), Path(int8_path)
    metadata = read_metadata(fp32_path)
    with tempfile.TemporaryDirectory() as scratch:
        source = Path(scratch) / "prepared.onnx"
        try:
            # Folds BatchNorm into Conv so the folded weights are quantized. Symbolic shape
            # inference is skipped: onnxruntime's chokes on an STFT branch (ReduceSum axes).
            quant_pre_process(str(fp32_path), str(source), skip_symbolic_shape=True)
        except Exception as exc:  # pre-processing is an optimisation; quantize the original
            logging.getLogger(__name__).warning("quant_pre_process failed (%s); quantizing as exported", exc)
            source = fp32_path
        with atomic_path(int8_path) as tmp, quiet_output():
            quantize_static(
                str(source), str(tmp), reader, quant_format=QuantFormat.QDQ, per_channel=True,
                activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                nodes_to_exclude=list(nodes_to_exclude), op_types_to_quantize=list(op_types_to_quantize),
            )
            write_metadata(tmp, {**metadata, "quantization": STATIC_QDQ_NOTE})
    return int8_path


def int8_path_of(fp32_path: str | os.PathLike) -> Path:
    """``kws.onnx`` -> ``kws_int8.onnx``."""
    fp32_path = Path(fp32_path)
    return fp32_path.with_name(f"{fp32_path.stem}_int8.onnx")


def write_gated_int8(
    fp32_path: str | os.PathLike,
    quantize: Callable[[Path, Path], object],
    gate: QualityGate,
    measure: Callable[[Path], tuple[float, int]] | None,
    force: bool = False,
    log: Callable[[str], None] = print,
    unit: str = "items",
) -> tuple[Path, GateReport | None]:
    """Quantize ``fp32_path``, judge the int8 model with ``gate``, then write ``<stem>_int8.onnx``.

    Args:
        fp32_path: the written fp32 artifact.
        quantize: ``fn(fp32_path, int8_path)`` writing the int8 model.
        gate: the family's gate (its ``max_delta`` already set from the options).
        measure: ``fn(onnx_path) -> (metric in percent, items measured)`` on the test data;
            ``None``: no test data, the model is kept unchecked (callers require ``force``).
        force: keep an int8 model that fails the gate.
        log: receives progress lines.
        unit: what ``measure`` counts (``test clips``), for the summary.

    Returns:
        The int8 path and the :class:`GateReport` (``None`` if not measured).

    Raises:
        speechkit.export.gate.QualityGateError: the gate fails and ``force`` is False (nothing is written; the message
            names the final file).
    """
    fp32_path = Path(fp32_path)
    int8_path = int8_path_of(fp32_path)
    report = None
    with tempfile.TemporaryDirectory(dir=fp32_path.parent) as scratch:
        candidate = Path(scratch) / int8_path.name
        quantize(fp32_path, candidate)
        if measure is None:
            log(f"warning: int8 {gate.metric} not checked (no test data; --force)")
        else:
            fp32, num_items = measure(fp32_path)
            int8, _ = measure(candidate)
            report = gate.judge(fp32, int8, force=force, num_items=num_items, what=str(int8_path), unit=unit)
            log(f"int8 {report.summary()}")
            if not report.passed:
                log(f"warning: int8 model fails the {gate.metric} gate; kept because of --force")
        with atomic_path(int8_path) as tmp:
            shutil.copyfile(candidate, tmp)
    log(f"wrote {int8_path} ({file_size_text(int8_path)})")
    return int8_path, report
