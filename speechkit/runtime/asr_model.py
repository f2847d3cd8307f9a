"""The ASR artifacts (contract 7) opened for the torch-free runtime: specs, model, features, results.

* :data:`STREAMING_SPEC` / :data:`OFFLINE_SPEC`: what the runtime accepts of the
  ``asr-ctc-streaming`` and ``asr-ctc`` artifacts (task, graph names, metadata keys), checked by
  :func:`speechkit.runtime.artifact.open_artifact`, the one place that opens artifacts.
* :class:`AsrModel`: an opened artifact with its metadata parsed (tokens, fbank options, chunk
  schedule, state shapes) and one-call helpers for the encoder.
* :func:`compute_fbank`, :func:`streaming_log_probs`: features of an utterance, and the
  streaming artifact run over them with the chunk schedule of :mod:`speechkit.runtime.chunking`
  (the live recognizer's chunks).
* :class:`RecognitionResult` and :func:`make_decoder`: what both recognizers return and how they
  decode.

Shapes: T feature frames, F bins, T' encoder frames, V units (blank = 0).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from speechkit.decoding import CTCGreedyDecoder, CTCPrefixBeamDecoder, WordTime
from speechkit.errors import ModelFileError, SpeechkitError
from speechkit.runtime.artifact import ArtifactSpec, open_artifact
from speechkit.runtime.audio import read_audio
from speechkit.runtime.chunking import MIN_CHUNK_FRAMES, SUBSAMPLING, ChunkSchedule

STREAMING_TASK = "asr-ctc-streaming"
OFFLINE_TASK = "asr-ctc"
#: Metadata keys of both ASR artifacts besides ``speechkit.task`` (contract 7).
ASR_METADATA = (
    "tokens", "sample_rate", "feature", "chunk_frames", "shift_frames", "subsampling", "state_shapes", "model",
    "speechkit_version",
)
#: The streaming artifact: one chunk of features and the encoder states in, log-probs and states out.
STREAMING_SPEC = ArtifactSpec(
    kind=STREAMING_TASK, tasks=(STREAMING_TASK,), inputs=("features", "cache_*"),
    outputs=("log_probs", "next_cache_*"), metadata=ASR_METADATA,
)
#: The full-context artifact: the features of a whole utterance in, log-probs out.
OFFLINE_SPEC = ArtifactSpec(
    kind=OFFLINE_TASK, tasks=(OFFLINE_TASK,), inputs=("features",), outputs=("log_probs",), metadata=ASR_METADATA,
)
ASR_SPECS = (STREAMING_SPEC, OFFLINE_SPEC)
DECODINGS = ("greedy", "beam")


class AsrModel:
    """An ASR artifact in an onnxruntime session, with its metadata checked and parsed.

    Args:
        path: ``.onnx`` / ``.ort`` file made by ``speechkit export`` (either ASR artifact).
        num_threads: onnxruntime intra-op threads.

    Attributes:
        artifact: the :class:`~speechkit.runtime.artifact.Artifact` (``session``, ``metadata``).
        streaming: True for the ``asr-ctc-streaming`` artifact.
        tokens: units in id order, blank first.
        sample_rate: Hz the features are computed at.
        feature_options: the Kaldi fbank options (``knf.FbankOptions.as_dict()`` layout).
        num_bins: F.
        subsampling: feature frames per encoder frame.
        frame_shift_s: seconds per encoder frame.
        schedule: the :class:`~speechkit.runtime.chunking.ChunkSchedule` of its ``chunk_frames``
            and ``shift_frames`` (streaming; ``None`` for the full-context artifact).
        state_shapes: shapes of ``cache_0 ...`` (streaming; empty otherwise).

    Raises:
        ModelFileError: missing/corrupt file, not an ASR artifact, missing or malformed
            metadata, or inputs/outputs that are not the contract's.
    """

    def __init__(self, path: str | os.PathLike, num_threads: int = 1) -> None:
        self.artifact = open_artifact(path, ASR_SPECS, num_threads)
        self.path, self.session, self.metadata = self.artifact.path, self.artifact.session, self.artifact.metadata
        self.task = self.artifact.task
        self.streaming = self.artifact.spec is STREAMING_SPEC
        self.tokens = self.artifact.json("tokens", list, item=str)
        if len(self.tokens) < 2:
            raise ModelFileError(f"{self.path}: metadata 'tokens' holds {len(self.tokens)} unit(s), expected blank + units")
        self.sample_rate = self.artifact.positive_int("sample_rate")
        self.feature_options = self.artifact.json("feature", dict)
        self.subsampling = self.artifact.positive_int("subsampling")
        if self.subsampling != SUBSAMPLING:
            raise ModelFileError(f"{self.path}: metadata 'subsampling' is {self.subsampling}, this runtime runs {SUBSAMPLING}")
        self.schedule = self._schedule() if self.streaming else None
        self.state_shapes = [tuple(s) for s in self.artifact.json("state_shapes", list, nonempty=self.streaming)]
        if not all(all(isinstance(d, int) and d >= 0 for d in s) for s in self.state_shapes):
            raise ModelFileError(f"{self.path}: metadata 'state_shapes' is not a JSON list of shapes")
        frame_opts = self.feature_options.get("frame_opts", {})
        self.num_bins = int(self.feature_options.get("mel_opts", {}).get("num_bins", 0))
        self.frame_shift_s = self.subsampling * float(frame_opts.get("frame_shift_ms", 10.0)) / 1000.0
        if int(float(frame_opts.get("samp_freq", self.sample_rate))) != self.sample_rate:
            raise ModelFileError(
                f"{self.path}: feature samp_freq {frame_opts.get('samp_freq')} differs from sample_rate {self.sample_rate}"
            )
        self._knf_options()  # fail now, not at the first chunk
        self._check_io()

    @property
    def chunk_frames(self) -> int:
        """Feature frames per encoder call (streaming; 0 for full context)."""
        return self.schedule.chunk_frames if self.schedule else 0

    @property
    def shift_frames(self) -> int:
        """Feature frames between encoder calls (streaming; 0 for full context)."""
        return self.schedule.shift_frames if self.schedule else 0

    def _schedule(self) -> ChunkSchedule:
        try:
            return ChunkSchedule(int(self.metadata["chunk_frames"]), int(self.metadata["shift_frames"]))
        except (ValueError, SpeechkitError) as exc:
            raise ModelFileError(f"{self.path}: metadata chunk_frames/shift_frames: {exc}") from None

    def _knf_options(self):
        from speechkit.runtime.fbank_options import knf_options_from_dict

        try:
            return knf_options_from_dict(self.feature_options)
        except (ValueError, TypeError) as exc:
            raise ModelFileError(f"{self.path}: metadata 'feature' holds invalid fbank options ({exc})") from None

    def _check_io(self) -> None:
        """What the spec's name patterns cannot say: state count, bins and vocabulary."""
        num_states = len(self.artifact.input_names) - 1
        if self.streaming and not (num_states == len(self.state_shapes) == len(self.artifact.output_names) - 1):
            raise ModelFileError(
                f"{self.path}: {num_states} state inputs and {len(self.artifact.output_names) - 1} state outputs, "
                f"but {len(self.state_shapes)} state_shapes"
            )
        bins = self.session.get_inputs()[0].shape[-1]
        if isinstance(bins, int) and bins != self.num_bins:
            raise ModelFileError(f"{self.path}: input 'features' has {bins} bins, the feature options {self.num_bins}")
        vocab = self.session.get_outputs()[0].shape[-1]
        if isinstance(vocab, int) and vocab != len(self.tokens):
            raise ModelFileError(f"{self.path}: {vocab} log-probabilities per frame but {len(self.tokens)} tokens")

    @property
    def chunk_ms(self) -> int:
        """The streaming artifact's chunk (ms); 0 for full context."""
        return round(self.shift_frames * self.frame_shift_s * 1000 / self.subsampling)

    def new_fbank(self):
        """A fresh ``knf.OnlineFbank`` with the model's options."""
        import kaldi_native_fbank as knf

        return knf.OnlineFbank(self._knf_options())

    def init_states(self) -> list[np.ndarray]:
        """Zero states (contract 7: the initial states are zeros of ``state_shapes``)."""
        return [np.zeros(shape, np.float32) for shape in self.state_shapes]

    def run_chunk(self, feats: np.ndarray, states: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
        """Streaming: (T, F) features of one window (7 <= T <= chunk_frames) -> (T', V), new states."""
        feeds = {"features": np.ascontiguousarray(feats[None], dtype=np.float32)}
        feeds.update({f"cache_{i}": s for i, s in enumerate(states)})
        outputs = self.session.run(None, feeds)
        return outputs[0][0], outputs[1:]

    def run_full(self, feats: np.ndarray) -> np.ndarray:
        """Full context: (T, F) features of a whole utterance (T >= 7) -> (T', V)."""
        return self.session.run(None, {"features": np.ascontiguousarray(feats[None], dtype=np.float32)})[0][0]


def compute_fbank(model: AsrModel, audio: np.ndarray) -> np.ndarray:
    """(n,) float32 samples at the model's rate -> (T, F) knf features of the whole utterance."""
    fbank = model.new_fbank()
    fbank.accept_waveform(model.sample_rate, np.ascontiguousarray(audio, dtype=np.float32))
    fbank.input_finished()
    if fbank.num_frames_ready == 0:
        return np.zeros((0, model.num_bins), np.float32)
    return np.stack([fbank.get_frame(i) for i in range(fbank.num_frames_ready)]).astype(np.float32, copy=False)


def streaming_log_probs(model: AsrModel, feats: np.ndarray) -> np.ndarray:
    """Run a streaming artifact over a whole utterance's (T, F) features, window by window.

    The windows are ``model.schedule.windows(T)`` with states carried, as in
    :class:`~speechkit.runtime.asr_streaming.StreamingRecognizer` without endpointing, so the
    result is what the live recognizer decodes.

    Returns:
        (T', V) log-probabilities, ``T' = encoder_frames(T)``.
    """
    if model.schedule is None:
        raise SpeechkitError(f"{model.path}: a full-context artifact; use run_full")
    states = model.init_states()
    outputs = [np.zeros((0, len(model.tokens)), np.float32)]
    for window in model.schedule.windows(len(feats)):
        log_probs, states = model.run_chunk(feats[window.start : window.end], states)
        outputs.append(log_probs)
    return np.concatenate(outputs)


def full_log_probs(model: AsrModel, feats: np.ndarray) -> np.ndarray:
    """(T, F) features of an utterance -> (T', V) log-probabilities with either artifact."""
    if len(feats) < MIN_CHUNK_FRAMES:
        return np.zeros((0, len(model.tokens)), np.float32)
    return streaming_log_probs(model, feats) if model.streaming else model.run_full(feats)


@dataclass
class RecognitionResult:
    """A partial or final result.

    Attributes:
        text: the words, in the tokenizer's normal form (upper case).
        final: True once the utterance ended (endpoint or end of input).
        start_s: stream time of the first word (of the utterance start if no words).
        end_s: stream time of the end of the last word.
        words: each word with its times.
    """

    text: str
    final: bool
    start_s: float
    end_s: float
    words: list[WordTime] = field(default_factory=list)

    @classmethod
    def from_words(cls, words: list[WordTime], final: bool, start_s: float, end_s: float) -> RecognitionResult:
        """The result of ``words`` (joined by spaces); ``start_s``/``end_s`` are used when there are none."""
        text = " ".join(w.word for w in words)
        return cls(text, final, words[0].start_s if words else start_s, words[-1].end_s if words else end_s, words)

    def to_dict(self) -> dict:
        """The demo's JSON object: ``{"time", "text", "final", "end", "words"}`` (seconds)."""
        return {
            "time": round(self.start_s, 3), "text": self.text, "final": self.final, "end": round(self.end_s, 3),
            "words": [{"word": w.word, "start": round(w.start_s, 3), "end": round(w.end_s, 3)} for w in self.words],
        }


class FileTranscriber:
    """``transcribe_file`` for a recognizer with ``model`` and ``transcribe(samples, rate)``."""

    model: AsrModel

    def transcribe(self, samples: np.ndarray, sample_rate: int) -> RecognitionResult:
        raise NotImplementedError

    def transcribe_file(self, path: str | os.PathLike) -> RecognitionResult:
        """:meth:`transcribe` an audio file (any rate and channel count).

        Raises:
            AudioError: missing, unreadable or corrupt file.
        """
        samples, rate = read_audio(path, self.model.sample_rate)
        return self.transcribe(samples, rate)


def make_decoder(decoding: str, beam_size: int):
    """A fresh incremental CTC decoder: ``greedy`` or ``beam`` (prefix beam search, ``beam_size``)."""
    if decoding == "greedy":
        return CTCGreedyDecoder(blank=0)
    if decoding == "beam":
        return CTCPrefixBeamDecoder(beam_size=beam_size, blank=0)
    raise SpeechkitError(f"decoding {decoding!r}: expected one of {', '.join(DECODINGS)}")


def num_params(model: AsrModel) -> int | None:
    """Parameter count from the ``model`` metadata, if it says."""
    try:
        return json.loads(model.metadata["model"]).get("num_params")
    except (ValueError, AttributeError):
        return None


def is_asr_onnx(path: str | os.PathLike) -> bool:
    """Whether ``path`` names an ONNX/ORT file (by suffix), i.e. not a checkpoint."""
    return Path(path).suffix.lower() in (".onnx", ".ort")
