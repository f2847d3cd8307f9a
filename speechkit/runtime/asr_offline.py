"""Full-context CTC recognition with the ``asr-ctc`` artifact, and either artifact for eval (no torch).

* :class:`OfflineRecognizer`: one call per utterance, full context.
* :class:`AsrOnnxRecognizer`: either ASR artifact behind the ``Recognizer`` interface of
  :mod:`speechkit.inference.asr` (log-probabilities per waveform), so ``speechkit transcribe``,
  ``speechkit eval-asr`` and the int8 gate decode artifacts through the same text rule as
  checkpoints.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from speechkit.decoding import word_times
from speechkit.errors import ModelFileError, SpeechkitError
from speechkit.runtime.asr_model import (
    AsrModel,
    FileTranscriber,
    RecognitionResult,
    compute_fbank,
    full_log_probs,
    make_decoder,
    num_params,
)
from speechkit.runtime.audio import StreamConverter


class OfflineRecognizer(FileTranscriber):
    """Full-context CTC recognition of whole utterances with a ``asr-ctc`` artifact.

    Args:
        model: the artifact's path, or an :class:`~speechkit.runtime.asr_model.AsrModel`.
        decoding: ``greedy`` or ``beam``.
        beam_size: prefixes kept by the beam search.
        num_threads: onnxruntime intra-op threads.

    Raises:
        ModelFileError: not a full-context ASR artifact.
    """

    def __init__(
        self, model: str | os.PathLike | AsrModel, decoding: str = "greedy", beam_size: int = 4, num_threads: int = 1
    ) -> None:
        self.model = model if isinstance(model, AsrModel) else AsrModel(model, num_threads)
        if self.model.streaming:
            raise ModelFileError(f"{self.model.path}: a streaming artifact; use StreamingRecognizer")
        self.decoding, self.beam_size = decoding, beam_size
        make_decoder(decoding, beam_size)  # validate now

    def transcribe(self, samples: np.ndarray, sample_rate: int) -> RecognitionResult:
        """One utterance: (n,) or (n, channels) samples at ``sample_rate`` -> final result."""
        converter = StreamConverter(self.model.sample_rate)
        audio = np.concatenate([converter(samples, sample_rate), converter.flush()])
        log_probs = full_log_probs(self.model, compute_fbank(self.model, audio))
        if not len(log_probs):
            return RecognitionResult("", True, 0.0, 0.0)
        decoder = make_decoder(self.decoding, self.beam_size)
        decoder.advance(log_probs)
        words = word_times(decoder.result(), self.model.tokens, self.model.frame_shift_s)
        return RecognitionResult.from_words(words, True, 0.0, 0.0)


class AsrOnnxRecognizer:
    """Either ASR artifact behind the ``Recognizer`` interface of :mod:`speechkit.inference.asr`.

    That module's loader registry maps ``.onnx``/``.ort`` to this class: features from
    kaldi-native-fbank, the streaming artifact run window by window with its states
    (:func:`~speechkit.runtime.asr_model.streaming_log_probs`), the full-context one in one call.

    Args:
        path: the artifact.
        num_threads: onnxruntime intra-op threads.

    Attributes:
        sample_rate, tokens: from the metadata; ``num_params`` from its ``model`` entry.
    """

    def __init__(self, path: str | os.PathLike, num_threads: int = 1) -> None:
        self.model = AsrModel(path, num_threads)
        self.sample_rate = self.model.sample_rate
        self.tokens = self.model.tokens
        self.num_params = num_params(self.model)

    @property
    def chunk_ms(self) -> int:
        """The streaming artifact's chunk (ms); 0 for full context."""
        return self.model.chunk_ms

    def log_probs(self, audios: Sequence[np.ndarray], options=None) -> list[np.ndarray]:
        """Per waveform (S_i,) float32 at :attr:`sample_rate`, the (T'_i, V) log-probabilities.

        Args:
            options: ``DecodeOptions``; its ``chunk_ms`` must be 0 (use the artifact's own
                chunking) or equal the artifact's chunk, and its ``left_chunks`` -1 or the
                artifact's, since the chunking is fixed at export.

        Raises:
            SpeechkitError: a chunk size the artifact was not exported with.
        """
        chunk_ms = int(getattr(options, "chunk_ms", 0) or 0)
        if chunk_ms and chunk_ms != self.chunk_ms:
            built = f"{self.chunk_ms} ms chunks" if self.chunk_ms else "full context"
            raise SpeechkitError(
                f"{self.model.path}: exported for {built}, cannot decode with --chunk-ms {chunk_ms}; "
                "leave --chunk-ms out or export another artifact"
            )
        left_chunks = getattr(options, "left_chunks", -1)
        built_left = self.model.metadata.get("left_chunks")
        if left_chunks is not None and left_chunks >= 0 and built_left is not None and str(left_chunks) != built_left:
            raise SpeechkitError(
                f"{self.model.path}: exported with {built_left} chunks of left context, cannot decode with "
                f"--left-chunks {left_chunks}; leave --left-chunks out or export another artifact"
            )
        return [full_log_probs(self.model, compute_fbank(self.model, np.asarray(a, dtype=np.float32))) for a in audios]
