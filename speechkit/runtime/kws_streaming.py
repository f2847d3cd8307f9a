"""The stateful streaming KWS artifact, opened for the torch-free runtime (numpy + onnxruntime).

A streaming keyword model (``speechkit.models.kws.StreamingBCResNet``, exported by
``speechkit.export.kws_streaming``) computes only the new frames of each call: audio and the
caches in, the pooled logits of every new frame and the next caches out.

==================  ==========================================================================
input ``audio``     float32 ``[1, N * hop_length]``, N >= 1 new frames of mono audio in [-1, 1]
                    at ``sample_rate``
inputs ``cache_i``  float32, shapes ``state_shapes[i]``; zeros at the start of a stream, then
                    the previous call's ``next_cache_i``. ``cache_0`` is the audio carried
                    over (the last ``frame_length - hop_length`` samples), so N hops of new
                    audio give exactly N new frames.
output ``logits``   float32 ``[1, N, num_classes]``: frame ``i`` of the call ends at sample
                    ``(i + 1) * hop_length`` after the audio fed before it; its logits are the
                    mean of the per-frame logits over the last ``window_frames`` frames
                    (fewer at the start of a stream). Apply softmax for posteriors.
outputs             ``next_cache_i``, the caches for the next call
metadata            ``speechkit.task`` = ``kws``, ``speechkit.streaming`` = ``1``, ``labels``,
                    ``sample_rate``, ``hop_length``, ``frame_length``, ``window_frames``,
                    ``clip_samples`` (the training clip), ``state_shapes``, ``state_names``,
                    ``frontend``, ``model``, ``speechkit_version``
==================  ==========================================================================

:class:`StreamingKwsModel` buffers partial hops, carries the caches and returns per-frame
posteriors with their end times. :class:`speechkit.runtime.kws.KeywordDetector` opens either
KWS artifact (this one or the fixed-window clip classifier) and scores the stream the same way.

Usage::

    model = StreamingKwsModel("kws_stream.onnx")
    for block in blocks:                      # mono float32 at model.sample_rate, any length
        end_times, probs = model.accept(block)

Shapes: N frames, C classes.
"""

from __future__ import annotations

import os

import numpy as np

from speechkit.errors import AudioError, ModelFileError
from speechkit.runtime.artifact import Artifact, ArtifactSpec, open_artifact
from speechkit.runtime.classifier import softmax

STREAMING_KEY = "speechkit.streaming"
#: Metadata keys of the stateful artifact besides ``speechkit.task``.
STREAMING_KWS_METADATA = (
    STREAMING_KEY, "labels", "sample_rate", "hop_length", "frame_length", "window_frames", "clip_samples",
    "state_shapes", "state_names", "frontend", "model", "speechkit_version",
)
#: The stateful artifact: one chunk of audio and the caches in, per-frame logits and caches out.
STREAMING_KWS_SPEC = ArtifactSpec(
    kind="kws-streaming", tasks=("kws",), inputs=("audio", "cache_*"), outputs=("logits", "next_cache_*"),
    metadata=STREAMING_KWS_METADATA,
)
#: Frames per onnxruntime call when a long chunk arrives (bounds memory, not results).
MAX_CALL_FRAMES = 1000


class StreamingKwsModel:
    """A stateful streaming KWS artifact in an onnxruntime session, with its caches.

    Args:
        path: ``.onnx`` / ``.ort`` file (``<stem>_stream.onnx`` from ``speechkit export``).
        num_threads: onnxruntime intra-op threads.
        artifact: an already opened :class:`~speechkit.runtime.artifact.Artifact` of this
            file (skips reopening it).

    Attributes:
        labels: class names in logit order.
        sample_rate: Hz.
        hop_length: samples per frame.
        frame_length: samples a frame spans (the front-end's ``n_fft``).
        window_frames: frames the pooled logits average.
        clip_samples: the clip length the model was trained on (what the fixed-window artifact
            of the same checkpoint takes).
        state_shapes: shapes of ``cache_0 ...``.

    Raises:
        ModelFileError: see :func:`~speechkit.runtime.artifact.open_artifact`; also malformed
            metadata (state shapes, hop) or an output count other than the number of labels.
    """

    def __init__(self, path: str | os.PathLike, num_threads: int = 1, artifact: Artifact | None = None) -> None:
        artifact = artifact or open_artifact(path, [STREAMING_KWS_SPEC], num_threads)
        self.artifact = artifact
        self.path, self.session, self.metadata = artifact.path, artifact.session, artifact.metadata
        self.task = artifact.task
        self.labels: list[str] = artifact.json("labels", list, item=str)
        self.sample_rate = artifact.positive_int("sample_rate")
        self.hop_length = artifact.positive_int("hop_length")
        self.frame_length = artifact.positive_int("frame_length")
        self.window_frames = artifact.positive_int("window_frames")
        self.clip_samples = artifact.positive_int("clip_samples")
        shapes = artifact.json("state_shapes", list)
        if not all(isinstance(s, list) and all(isinstance(d, int) and d >= 0 for d in s) for s in shapes):
            raise ModelFileError(f"{self.path}: metadata 'state_shapes' is not a JSON list of shapes")
        self.state_shapes = [tuple(s) for s in shapes]
        self._cache_names = artifact.input_names[1:]
        if len(self._cache_names) != len(self.state_shapes):
            raise ModelFileError(
                f"{self.path}: {len(self._cache_names)} cache inputs but {len(self.state_shapes)} state shapes in the metadata"
            )
        if self.state_shapes[0] != (1, self.frame_length - self.hop_length):
            raise ModelFileError(
                f"{self.path}: cache_0 has shape {list(self.state_shapes[0])}, expected the audio carried over "
                f"[1, frame_length - hop_length] = [1, {self.frame_length - self.hop_length}]"
            )
        num_classes = self.session.get_outputs()[0].shape[-1]
        if isinstance(num_classes, int) and num_classes != len(self.labels):
            raise ModelFileError(f"{self.path}: {num_classes} logits but {len(self.labels)} labels in the metadata")
        self._output_names = artifact.output_names
        self.reset()

    @property
    def clip_seconds(self) -> float:
        """The training clip in seconds (what the pooled score covers, about)."""
        return self.clip_samples / self.sample_rate

    @property
    def frame_seconds(self) -> float:
        return self.hop_length / self.sample_rate

    def reset(self) -> None:
        """Start a new stream: zero caches, nothing pending, time 0."""
        self._caches = {n: np.zeros(s, np.float32) for n, s in zip(self._cache_names, self.state_shapes)}
        self._pending = np.zeros(0, np.float32)
        self._frames = 0  # frames computed since the start

    def logits(self, audio: np.ndarray) -> np.ndarray:
        """Run whole frames: ``audio`` (N * hop_length,) float32 -> logits (N, C); caches advance.

        Raises:
            AudioError: a length that is not a whole number of hops.
        """
        audio = np.asarray(audio, dtype=np.float32).reshape(-1)
        if len(audio) % self.hop_length:
            raise AudioError(f"{len(audio)} samples are not a whole number of {self.hop_length}-sample hops")
        out = []
        step = MAX_CALL_FRAMES * self.hop_length
        for start in range(0, len(audio), step):
            feeds = dict(self._caches)
            feeds["audio"] = audio[None, start : start + step]
            result = self.session.run(self._output_names, feeds)
            self._caches = dict(zip(self._cache_names, result[1:]))
            out.append(result[0][0])
        self._frames += len(audio) // self.hop_length
        return np.concatenate(out) if out else np.zeros((0, len(self.labels)), np.float32)

    def accept(self, samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Add mono samples at :attr:`sample_rate` (any length); score the whole frames they complete.

        Returns:
            end_times (N,) seconds from the start of the stream of each new frame's end, and
            posteriors (N, C).
        """
        samples = np.asarray(samples, dtype=np.float32).reshape(-1)
        pending = np.concatenate([self._pending, samples]) if len(self._pending) else samples
        whole = len(pending) // self.hop_length * self.hop_length
        self._pending = pending[whole:].copy()
        first = self._frames
        probs = softmax(self.logits(pending[:whole]))
        end_times = (first + np.arange(1, len(probs) + 1)) * self.frame_seconds
        return end_times, probs


def is_streaming_artifact(artifact: Artifact) -> bool:
    """Whether an opened artifact is the stateful streaming KWS kind."""
    return artifact.spec is STREAMING_KWS_SPEC


__all__ = ["STREAMING_KWS_SPEC", "StreamingKwsModel", "is_streaming_artifact"]
