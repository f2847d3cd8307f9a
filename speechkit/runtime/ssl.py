"""The SSL feature-extractor artifact and its torch-free loader (issue 16).

Contract (``speechkit export`` on an SSL checkpoint; :mod:`speechkit.export.ssl_export`):

* input ``audio`` float32 ``[batch, samples]``, mono, in [-1, 1], at the metadata's
  ``sample_rate``; items of one batch have the same length (no padding input: run unequal
  utterances one at a time);
* output ``hidden_states`` float32 ``[layers, batch, frames, hidden_dim]``: the encoder
  representations listed in ``layers`` (0 = the Transformer input after the positional
  convolution, l = output of layer l; s3prl's ``hidden_states`` indexing), ``frames`` =
  the CNN's output length (``frame_rate`` frames per second);
* metadata: ``speechkit.task`` (``ssl-pretrain`` or ``ssl-distill``), ``sample_rate``,
  ``frame_rate`` (Hz, e.g. 50), ``hop_samples``, ``min_samples`` (the shortest input, the CNN's
  receptive field), ``layers`` (JSON list), ``hidden_dim``,
  ``model`` (JSON config), ``speechkit_version``; int8 files add ``quantization``.

Usage::

    extractor = SslFeatureExtractor("star_student.onnx")
    hidden = extractor(audio)            # (S,) -> (layers, frames, D); (B, S) -> (layers, B, frames, D)
"""

from __future__ import annotations

import os

import numpy as np

from speechkit.errors import AudioError
from speechkit.runtime.artifact import ArtifactSpec, open_artifact

SSL_TASKS = ("ssl-pretrain", "ssl-distill")
SSL_FEATURES_SPEC = ArtifactSpec(
    "ssl-features", tasks=SSL_TASKS, inputs=("audio",), outputs=("hidden_states",),
    metadata=("sample_rate", "frame_rate", "hop_samples", "min_samples", "layers", "hidden_dim"),
)


class SslFeatureExtractor:
    """Run an exported SSL encoder with onnxruntime (no torch).

    Args:
        path: the ``.onnx`` artifact.
        num_threads: onnxruntime intra-op threads.

    Raises:
        ModelFileError: not an SSL feature-extractor artifact (one line, from ``open_artifact``).
    """

    def __init__(self, path: str | os.PathLike, num_threads: int = 1) -> None:
        self.artifact = open_artifact(path, [SSL_FEATURES_SPEC], num_threads=num_threads)
        self.sample_rate = self.artifact.positive_int("sample_rate")
        self.frame_rate = float(self.artifact.metadata["frame_rate"])
        self.hop_samples = self.artifact.positive_int("hop_samples")
        self.min_samples = self.artifact.positive_int("min_samples")
        self.layers = self.artifact.json("layers", list, item=int)
        self.hidden_dim = self.artifact.positive_int("hidden_dim")

    def __call__(self, audio: np.ndarray) -> np.ndarray:
        """(S,) -> (layers, frames, D) or (B, S) -> (layers, B, frames, D) float32.

        Raises:
            AudioError: not 1-D/2-D, empty, too short for one frame, or not finite.
        """
        audio = np.asarray(audio, dtype=np.float32)
        single = audio.ndim == 1
        batch = audio[None] if single else audio
        if batch.ndim != 2 or batch.shape[1] == 0:
            raise AudioError(f"expected mono audio (samples,) or (batch, samples), got shape {audio.shape}")
        if not np.isfinite(batch).all():
            raise AudioError("audio contains NaN or infinite samples")
        if batch.shape[1] < self.min_samples:
            raise AudioError(f"audio of {batch.shape[1]} samples is shorter than one frame ({self.min_samples})")
        (hidden,) = self.artifact.session.run(None, {"audio": np.ascontiguousarray(batch)})
        return hidden[:, 0] if single else hidden
