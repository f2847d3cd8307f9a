"""Load a speechkit ONNX artifact with onnxruntime and validate its metadata (no torch).

:class:`KwsModel` reads the KWS artifact of ARCHITECTURE contract 6: input ``audio``
float32 ``[batch, clip_samples]`` at ``sample_rate``, output ``logits`` ``[batch, classes]``,
and ``metadata_props`` with ``speechkit.task == "kws"``, ``labels``, ``sample_rate``,
``clip_samples``, ``frontend``, ``model``, ``speechkit_version``. :func:`open_onnx` is the
generic part other families (streaming ASR) reuse.

Shapes: B batch, S samples, C classes.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from speechkit.errors import ModelFileError

KWS_TASK = "kws"
KWS_METADATA = ("speechkit.task", "labels", "sample_rate", "clip_samples", "frontend", "model", "speechkit_version")


def open_onnx(path: str | os.PathLike, expected_task: str, num_threads: int = 1):
    """Open an ONNX file in an onnxruntime CPU session and check its ``speechkit.task``.

    Args:
        path: the ``.onnx`` (or ``.ort``) file.
        expected_task: required ``speechkit.task`` metadata value.
        num_threads: intra-op threads (1 is what a phone app gives a detector).

    Returns:
        ``(session, metadata)``; metadata is the file's ``metadata_props`` as a dict.

    Raises:
        ModelFileError: missing file, not an ONNX model, no speechkit metadata, other task.
    """
    import onnxruntime as ort

    path = Path(path)
    if not path.exists():
        raise ModelFileError(f"{path}: no such model file")
    if path.is_dir():
        raise ModelFileError(f"{path}: is a folder, expected an .onnx model file")
    options = ort.SessionOptions()
    options.intra_op_num_threads = num_threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only: the runtime's users see our messages instead
    try:
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # InvalidProtobuf, Fail, InvalidGraph, NotImplemented, ...
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelFileError(f"{path}: not a loadable ONNX model ({reason[:200]})") from None
    metadata = dict(session.get_modelmeta().custom_metadata_map)
    task = metadata.get("speechkit.task")
    if task is None:
        raise ModelFileError(
            f"{path}: ONNX model without speechkit metadata (no 'speechkit.task'); expected a "
            f"{expected_task!r} model made by `speechkit export`"
        )
    if task != expected_task:
        raise ModelFileError(f"{path}: is a {task!r} model, expected a {expected_task!r} model")
    return session, metadata


class KwsModel:
    """A KWS artifact in an onnxruntime session, with its metadata parsed.

    Args:
        path: ``.onnx`` file made by ``speechkit export``.
        num_threads: onnxruntime intra-op threads.

    Attributes:
        path: the file.
        labels: class names in logit order.
        sample_rate: Hz of the ``audio`` input.
        clip_samples: samples per clip (the detector's window).
        metadata: all ``metadata_props``.

    Raises:
        ModelFileError: see :func:`open_onnx`; also missing/malformed contract metadata or
            wrong input/output names.

    Example:
        >>> model = KwsModel("kws.onnx")  # doctest: +SKIP
        >>> model.probabilities(np.zeros((1, model.clip_samples), np.float32)).shape  # doctest: +SKIP
        (1, 12)
    """

    def __init__(self, path: str | os.PathLike, num_threads: int = 1) -> None:
        self.path = Path(path)
        self.session, self.metadata = open_onnx(self.path, KWS_TASK, num_threads)
        missing = [k for k in KWS_METADATA if k not in self.metadata]
        if missing:
            raise ModelFileError(f"{self.path}: KWS model metadata lacks {missing}; re-export it with `speechkit export`")
        self.labels = _json_list(self.path, self.metadata["labels"])
        self.sample_rate = _positive_int(self.path, self.metadata, "sample_rate")
        self.clip_samples = _positive_int(self.path, self.metadata, "clip_samples")
        self._check_io()

    def _check_io(self) -> None:
        inputs = self.session.get_inputs()
        outputs = self.session.get_outputs()
        if [i.name for i in inputs] != ["audio"] or "logits" not in [o.name for o in outputs]:
            raise ModelFileError(
                f"{self.path}: expected input 'audio' and output 'logits', found inputs "
                f"{[i.name for i in inputs]} and outputs {[o.name for o in outputs]}"
            )
        shape = inputs[0].shape
        if len(shape) != 2 or (isinstance(shape[1], int) and shape[1] != self.clip_samples):
            raise ModelFileError(
                f"{self.path}: input 'audio' has shape {shape}, expected [batch, {self.clip_samples}]"
            )
        num_classes = outputs[[o.name for o in outputs].index("logits")].shape[-1]
        if isinstance(num_classes, int) and num_classes != len(self.labels):
            raise ModelFileError(f"{self.path}: {num_classes} logits but {len(self.labels)} labels in the metadata")

    @property
    def clip_seconds(self) -> float:
        return self.clip_samples / self.sample_rate

    def logits(self, audio: np.ndarray) -> np.ndarray:
        """audio (B, clip_samples) float32 in [-1, 1] -> logits (B, C) float32."""
        return self.session.run(["logits"], {"audio": np.ascontiguousarray(audio, dtype=np.float32)})[0]

    def probabilities(self, audio: np.ndarray) -> np.ndarray:
        """audio (B, clip_samples) -> softmax posteriors (B, C) float32."""
        return softmax(self.logits(audio))


def softmax(logits: np.ndarray) -> np.ndarray:
    """Softmax over the last axis, float32, stable for large logits."""
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z, dtype=np.float32)
    return e / e.sum(axis=-1, keepdims=True)


def _json_list(path: Path, text: str) -> list[str]:
    try:
        labels = json.loads(text)
    except ValueError:
        labels = None
    if not isinstance(labels, list) or not labels or not all(isinstance(x, str) for x in labels):
        raise ModelFileError(f"{path}: metadata 'labels' is not a JSON list of class names: {text[:80]!r}")
    return labels


def _positive_int(path: Path, metadata: dict[str, str], key: str) -> int:
    try:
        value = int(metadata[key])
    except ValueError:
        value = 0
    if value <= 0:
        raise ModelFileError(f"{path}: metadata {key!r} is {metadata[key]!r}, expected a positive integer")
    return value
