"""Clip classifiers (keyword spotting, acoustic scenes, ...) from their ONNX artifact (no torch).

The clip-classifier artifact is family-neutral: whatever the task (``kws``, ``scene``), it takes
raw PCM and returns logits, so a phone app needs only onnxruntime and the metadata:

==================  ==========================================================================
input ``audio``     float32 ``[batch, clip_samples]``, mono, in [-1, 1], at ``sample_rate``
output ``logits``   float32 ``[batch, num_classes]``, in the order of ``labels``
metadata            ``speechkit.task`` (the checkpoint's task name), ``labels`` (JSON list),
                    ``sample_rate``, ``clip_samples``, ``frontend`` (JSON), ``model`` (JSON),
                    ``speechkit_version``; int8 files add ``quantization``
==================  ==========================================================================

:class:`ClipClassifier` classifies whole files: a file longer than a clip is cut into
clip-length windows (the last one aligned to the file's end) whose posteriors are averaged;
a shorter file is zero-padded at the end.

Usage::

    classifier = ClipClassifier("scene.onnx")
    print(classifier.classify_file("street.wav"))   # {"label": "street_traffic", "score": 0.81, ...}

Shapes: B batch, S samples, C classes, W windows.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from speechkit.errors import AudioError, ModelFileError
from speechkit.runtime.artifact import ArtifactSpec, open_artifact

#: Metadata keys every clip-classifier artifact carries (besides ``speechkit.task``).
CLIP_METADATA = ("labels", "sample_rate", "clip_samples", "frontend", "model", "speechkit_version")


def clip_classifier_spec(tasks: Sequence[str] = ()) -> ArtifactSpec:
    """The clip-classifier spec accepting ``tasks`` (``()``: any task)."""
    return ArtifactSpec("clip-classifier", tuple(tasks), ("audio",), ("logits",), CLIP_METADATA)


#: The spec of every clip classifier, whatever its task.
CLIP_CLASSIFIER_SPEC = clip_classifier_spec()


class ClipClassifier:
    """A clip-classifier artifact in an onnxruntime session, with its metadata checked and parsed.

    Args:
        path: ``.onnx`` / ``.ort`` file made by ``speechkit export``.
        tasks: accepted ``speechkit.task`` values (e.g. ``("kws",)``); ``None``: any task.
        num_threads: onnxruntime intra-op threads.

    Attributes:
        path: the file.
        task: its ``speechkit.task`` (``kws``, ``scene``, ...).
        labels: class names in logit order.
        sample_rate: Hz of the ``audio`` input.
        clip_samples: samples per clip.
        metadata: all ``metadata_props``.
        session: the onnxruntime session.

    Raises:
        ModelFileError: see :func:`~speechkit.runtime.artifact.open_artifact`; also malformed
            metadata, an input shape other than ``[batch, clip_samples]`` or a logit count
            other than the number of labels.

    Example:
        >>> model = ClipClassifier("scene.onnx")  # doctest: +SKIP
        >>> model.probabilities(np.zeros((1, model.clip_samples), np.float32)).shape  # doctest: +SKIP
        (1, 10)
    """

    def __init__(self, path: str | os.PathLike, tasks: Sequence[str] | None = None, num_threads: int = 1) -> None:
        artifact = open_artifact(path, [clip_classifier_spec(tasks or ())], num_threads)
        self.artifact = artifact
        self.path = artifact.path
        self.session = artifact.session
        self.metadata = artifact.metadata
        self.task = artifact.task
        self.labels: list[str] = artifact.json("labels", list, item=str)
        self.sample_rate = artifact.positive_int("sample_rate")
        self.clip_samples = artifact.positive_int("clip_samples")
        self._check_shapes()

    def _check_shapes(self) -> None:
        shape = self.session.get_inputs()[0].shape
        if len(shape) != 2 or (isinstance(shape[1], int) and shape[1] != self.clip_samples):
            raise ModelFileError(f"{self.path}: input 'audio' has shape {shape}, expected [batch, {self.clip_samples}]")
        num_classes = self.session.get_outputs()[0].shape[-1]
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

    def windows(self, audio: np.ndarray) -> np.ndarray:
        """(S,) mono audio at :attr:`sample_rate` -> (W, clip_samples) windows covering it.

        Windows are consecutive clips; when the length is not a multiple of the clip, the last
        window is the file's final clip (it overlaps the one before). A file shorter than a clip
        (or empty) is one window, zero-padded at the end.
        """
        audio = np.asarray(audio, dtype=np.float32).reshape(-1)
        clip = self.clip_samples
        if len(audio) <= clip:
            return np.pad(audio, (0, clip - len(audio)))[None]
        starts = list(range(0, len(audio) - clip + 1, clip))
        if starts[-1] + clip < len(audio):
            starts.append(len(audio) - clip)
        return np.stack([audio[s : s + clip] for s in starts])

    def classify(self, audio: np.ndarray, max_batch: int = 32) -> dict:
        """Classify a whole recording: posteriors averaged over its clip windows.

        Args:
            audio: (S,) mono float32 in [-1, 1] at :attr:`sample_rate`.
            max_batch: windows per onnxruntime call.

        Returns:
            ``{"label": str, "score": mean posterior of that label, "windows": W,
            "probabilities": {label: mean posterior}}``.
        """
        windows = self.windows(audio)
        probs = np.concatenate([self.probabilities(windows[i : i + max_batch]) for i in range(0, len(windows), max_batch)])
        mean = probs.mean(axis=0)
        best = int(np.argmax(mean))
        return {
            "label": self.labels[best],
            "score": round(float(mean[best]), 4),
            "windows": len(windows),
            "probabilities": {label: round(float(p), 4) for label, p in zip(self.labels, mean)},
        }

    def classify_file(self, path: str | os.PathLike) -> dict:
        """:meth:`classify` of an audio file (any format soundfile reads; mixed to mono, resampled).

        Raises:
            AudioError: missing, unreadable, empty or corrupt file.
        """
        from speechkit.runtime.audio import read_audio

        audio, _ = read_audio(path, self.sample_rate)
        if audio.size == 0:
            raise AudioError(f"{Path(path)}: no audio samples")
        return self.classify(audio)


def softmax(logits: np.ndarray) -> np.ndarray:
    """Softmax over the last axis, float32, stable for large logits."""
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z, dtype=np.float32)
    return e / e.sum(axis=-1, keepdims=True)
