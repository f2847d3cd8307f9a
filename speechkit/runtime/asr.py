"""Speech recognition with the ASR ONNX artifacts (contract 7): numpy, onnxruntime, kaldi-native-fbank.

No torch: this is the code a phone app mirrors. Features come from kaldi-native-fbank's
``OnlineFbank`` with the options stored in the model (``feature``), exactly as the model was
trained on them (:class:`speechkit.frontends.Fbank` matches knf).

* :class:`StreamingRecognizer` (``asr-ctc-streaming`` artifact): takes audio chunks of any
  size, sample rate and channel count; mixes to mono and resamples; computes features
  incrementally; runs the encoder on each chunk of ``chunk_frames`` feature frames (every
  ``shift_frames``) with its carried states; decodes CTC greedily or with a prefix beam; gives
  partial results; and finalises an utterance at an endpoint (:mod:`.endpoint`), after which
  decoder and encoder states start afresh, as for a new utterance in training.
* :class:`OfflineRecognizer` (``asr-ctc`` artifact): one call per utterance, full context.
* :func:`open_recognizer`: either, by the file's ``speechkit.task``.

Usage (sherpa-onnx verbs)::

    recognizer = StreamingRecognizer("asr.onnx", partials=True)
    for samples, rate in source:                   # any chunk size, rate, channel count
        for result in recognizer.accept_waveform(samples, rate):
            print(result.to_dict())                # {"time": 1.28, "text": "TURN ON", "final": false, ...}
    for result in recognizer.input_finished():
        print(result.to_dict())

Times are seconds from the start of the stream. Word times come from the encoder frame at which
CTC first emits each piece (``frame * frame_shift_s``, 40 ms frames); they lag the audio by up
to the subsampling's receptive field (about 70 ms).

Shapes: T feature frames, F bins, T' encoder frames, V units (blank = 0).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from speechkit.decoding import (
    CTCGreedyDecoder,
    CTCPrefixBeamDecoder,
    WordTime,
    word_times,
)
from speechkit.errors import ModelFileError, SpeechkitError
from speechkit.runtime.audio import StreamConverter, read_audio
from speechkit.runtime.endpoint import EndpointConfig, EndpointDetector
from speechkit.runtime.model import open_onnx

STREAMING_TASK = "asr-ctc-streaming"
OFFLINE_TASK = "asr-ctc"
#: Metadata keys of both ASR artifacts (contract 7).
ASR_METADATA = (
    "speechkit.task", "tokens", "sample_rate", "feature", "chunk_frames", "shift_frames", "subsampling",
    "state_shapes", "model", "speechkit_version",
)
#: Fewest feature frames that give one encoder frame (the subsampling's receptive field).
MIN_CHUNK_FRAMES = 7
#: Silence fed after the end of input (seconds). A streaming CTC model emits a word's last
#: pieces a few frames after its audio; a recording cut right after the last word would lose
#: them (sherpa-onnx users append such padding by hand). Measured on the quickstart model with
#: 40 tightly trimmed held-out utterances at 320 ms chunks: WER 31.0 % without, 20.6 % with
#: 0.2 s, no further gain from 0.4 or 0.6 s.
TAIL_PADDING_S = 0.3
DECODINGS = ("greedy", "beam")
#: sherpa-onnx's rules: 1.2 s of silence after speech, 2.4 s without speech, 20 s at most.
DEFAULT_ENDPOINT = EndpointConfig()


def open_asr_session(path: str | os.PathLike, tasks: Sequence[str], num_threads: int = 1):
    """:func:`~speechkit.runtime.model.open_onnx` accepting any of ``tasks``.

    Returns:
        ``(session, metadata)``.

    Raises:
        ModelFileError: missing/corrupt file, or a model of another task (the message names
            the task found and the ones accepted, with a hint for the other ASR artifact).
    """
    try:
        return open_onnx(path, tasks[0], num_threads)
    except ModelFileError as exc:
        # open_onnx takes one task; recognise its wrong-task message to try the others.
        # TODO: drop this once open_onnx accepts a tuple of tasks.
        wrong_task = re.fullmatch(
            re.escape(f"{Path(path)}: is a ") + r"'([^']*)'" + re.escape(f" model, expected a {tasks[0]!r} model"),
            str(exc),
        )
        if wrong_task is None:
            raise
        found = wrong_task.group(1)
    if found in tasks:
        return open_onnx(path, found, num_threads)
    hints = {
        OFFLINE_TASK: "; this is the full-context artifact: export a streaming one with `speechkit export CKPT M.onnx --streaming`",
        STREAMING_TASK: "; this is the streaming artifact: export a full-context one with `speechkit export CKPT M.onnx --full-context`",
    }
    expected = " or ".join(repr(t) for t in tasks)
    expected = f"an ASR model ({expected})" if len(tasks) > 1 else f"a {expected} model"
    raise ModelFileError(f"{Path(path)}: is a {found!r} model, expected {expected}{hints.get(found, '')}")


class AsrModel:
    """An ASR artifact in an onnxruntime session, with its metadata checked and parsed.

    Args:
        path: ``.onnx`` / ``.ort`` file made by ``speechkit export``.
        tasks: accepted ``speechkit.task`` values.
        num_threads: onnxruntime intra-op threads.

    Attributes:
        streaming: True for the ``asr-ctc-streaming`` artifact.
        tokens: units in id order, blank first.
        sample_rate: Hz the features are computed at.
        feature_options: the Kaldi fbank options (``knf.FbankOptions.as_dict()`` layout).
        num_bins: F.
        subsampling: feature frames per encoder frame.
        frame_shift_s: seconds per encoder frame.
        chunk_frames, shift_frames: feature frames per encoder call and between calls
            (streaming; 0 for the full-context artifact).
        state_shapes: shapes of ``cache_0 ...`` (streaming; empty otherwise).

    Raises:
        ModelFileError: see :func:`open_asr_session`; also missing or malformed metadata,
            or inputs/outputs that are not the contract's.
    """

    def __init__(
        self, path: str | os.PathLike, tasks: Sequence[str] = (STREAMING_TASK, OFFLINE_TASK), num_threads: int = 1
    ) -> None:
        self.path = Path(path)
        self.session, self.metadata = open_asr_session(self.path, tasks, num_threads)
        missing = [k for k in ASR_METADATA if k not in self.metadata]
        if missing:
            raise ModelFileError(f"{self.path}: ASR model metadata lacks {missing}; re-export it with `speechkit export`")
        self.task = self.metadata["speechkit.task"]
        self.streaming = self.task == STREAMING_TASK
        self.tokens = self._json(
            "tokens", lambda v: isinstance(v, list) and len(v) > 1 and all(isinstance(t, str) for t in v),
            "a JSON list of units, blank first",
        )
        self.sample_rate = self._int("sample_rate", minimum=1)
        self.feature_options = self._json("feature", lambda v: isinstance(v, dict), "a JSON object of Kaldi fbank options")
        self.subsampling = self._int("subsampling", minimum=1)
        self.chunk_frames = self._int("chunk_frames", minimum=MIN_CHUNK_FRAMES if self.streaming else 0)
        self.shift_frames = self._int("shift_frames", minimum=1 if self.streaming else 0)
        self.state_shapes = [tuple(s) for s in self._json(
            "state_shapes",
            lambda v: isinstance(v, list) and all(isinstance(s, list) and all(isinstance(d, int) and d >= 0 for d in s) for s in v),
            "a JSON list of shapes",
        )]
        frame_opts = self.feature_options.get("frame_opts", {})
        self.num_bins = int(self.feature_options.get("mel_opts", {}).get("num_bins", 0))
        frame_shift_ms = float(frame_opts.get("frame_shift_ms", 10.0))
        self.frame_shift_s = self.subsampling * frame_shift_ms / 1000.0
        if int(float(frame_opts.get("samp_freq", self.sample_rate))) != self.sample_rate:
            raise ModelFileError(
                f"{self.path}: feature samp_freq {frame_opts.get('samp_freq')} differs from sample_rate {self.sample_rate}"
            )
        self._knf_options()  # fail now, not at the first chunk
        self._check_io()

    def _json(self, key: str, valid, expected: str):
        try:
            value = json.loads(self.metadata[key])
        except ValueError:
            value = None
        if value is None or not valid(value):
            raise ModelFileError(f"{self.path}: metadata {key!r} is not {expected}: {self.metadata[key][:80]!r}")
        return value

    def _int(self, key: str, minimum: int) -> int:
        try:
            value = int(self.metadata[key])
        except ValueError:
            value = minimum - 1
        if value < minimum:
            raise ModelFileError(f"{self.path}: metadata {key!r} is {self.metadata[key]!r}, expected an integer >= {minimum}")
        return value

    def _knf_options(self):
        from speechkit.frontends.kaldi_options import knf_options_from_dict

        try:
            return knf_options_from_dict(self.feature_options)
        except (ValueError, TypeError) as exc:
            raise ModelFileError(f"{self.path}: metadata 'feature' holds invalid fbank options ({exc})") from None

    def _check_io(self) -> None:
        inputs = [i.name for i in self.session.get_inputs()]
        outputs = [o.name for o in self.session.get_outputs()]
        num_states = len(self.state_shapes) if self.streaming else 0
        want_in = ["features"] + [f"cache_{i}" for i in range(num_states)]
        want_out = ["log_probs"] + [f"next_cache_{i}" for i in range(num_states)]
        if inputs != want_in or outputs != want_out:
            raise ModelFileError(
                f"{self.path}: expected inputs {want_in} and outputs {want_out} (from its state_shapes), "
                f"found {inputs} and {outputs}"
            )
        bins = self.session.get_inputs()[0].shape[-1]
        if isinstance(bins, int) and bins != self.num_bins:
            raise ModelFileError(f"{self.path}: input 'features' has {bins} bins, the feature options {self.num_bins}")
        vocab = self.session.get_outputs()[0].shape[-1]
        if isinstance(vocab, int) and vocab != len(self.tokens):
            raise ModelFileError(f"{self.path}: {vocab} log-probabilities per frame but {len(self.tokens)} tokens")

    def new_fbank(self):
        """A fresh ``knf.OnlineFbank`` with the model's options."""
        import kaldi_native_fbank as knf

        return knf.OnlineFbank(self._knf_options())

    def init_states(self) -> list[np.ndarray]:
        """Zero states (contract 7: the initial states are zeros of ``state_shapes``)."""
        return [np.zeros(shape, np.float32) for shape in self.state_shapes]

    def run_chunk(self, feats: np.ndarray, states: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
        """Streaming: (T, F) features of one chunk (T <= chunk_frames, >= 7) -> (T', V), new states."""
        feeds = {"features": np.ascontiguousarray(feats[None], dtype=np.float32)}
        feeds.update({f"cache_{i}": s for i, s in enumerate(states)})
        outputs = self.session.run(None, feeds)
        return outputs[0][0], outputs[1:]

    def run_full(self, feats: np.ndarray) -> np.ndarray:
        """Full context: (T, F) features of a whole utterance (T >= 7) -> (T', V)."""
        return self.session.run(None, {"features": np.ascontiguousarray(feats[None], dtype=np.float32)})[0][0]


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

    def to_dict(self) -> dict:
        """The demo's JSON object: ``{"time", "text", "final", "end", "words"}`` (seconds)."""
        return {
            "time": round(self.start_s, 3), "text": self.text, "final": self.final, "end": round(self.end_s, 3),
            "words": [{"word": w.word, "start": round(w.start_s, 3), "end": round(w.end_s, 3)} for w in self.words],
        }


def _decoder(decoding: str, beam_size: int):
    if decoding == "greedy":
        return CTCGreedyDecoder(blank=0)
    if decoding == "beam":
        return CTCPrefixBeamDecoder(beam_size=beam_size, blank=0)
    raise SpeechkitError(f"decoding {decoding!r}: expected one of {', '.join(DECODINGS)}")


class StreamingRecognizer:
    """Streaming CTC recognition with a ``asr-ctc-streaming`` artifact.

    Args:
        model: the artifact's path, or an :class:`AsrModel` (shared between streams).
        decoding: ``greedy`` or ``beam`` (CTC prefix beam search).
        beam_size: prefixes kept by the beam search.
        endpoint: endpoint rules; ``None``: the whole input is one utterance.
        partials: also return partial results from :meth:`accept_waveform` whenever the
            text of the current utterance changes.
        num_threads: onnxruntime intra-op threads (when ``model`` is a path).

    Raises:
        ModelFileError: not a streaming ASR artifact (see :class:`AsrModel`).
    """

    def __init__(
        self,
        model: str | os.PathLike | AsrModel,
        decoding: str = "greedy",
        beam_size: int = 4,
        endpoint: EndpointConfig | None = DEFAULT_ENDPOINT,
        partials: bool = False,
        num_threads: int = 1,
    ) -> None:
        self.model = model if isinstance(model, AsrModel) else AsrModel(model, (STREAMING_TASK,), num_threads)
        if not self.model.streaming:
            raise ModelFileError(f"{self.model.path}: the full-context artifact cannot stream; use OfflineRecognizer")
        self.partials = partials
        self._decoder = _decoder(decoding, beam_size)
        self._endpoint = EndpointDetector(endpoint, self.model.frame_shift_s) if endpoint is not None else None
        self._converter = StreamConverter(self.model.sample_rate)
        self.reset()

    def reset(self) -> None:
        """Start a new stream (time 0)."""
        self._converter.reset()
        self._fbank = self.model.new_fbank()
        self._next_frame = 0  # feature frame where the next chunk starts
        self._released = 0  # feature frames popped from the fbank
        self._samples = 0  # samples at the model rate received
        self._frames_decoded = 0  # encoder frames decoded since the stream started
        self._start_utterance()

    def _start_utterance(self) -> None:
        self._states = self.model.init_states()
        self._decoder.reset()
        if self._endpoint is not None:
            self._endpoint.reset()
        self._utterance_start = self._frames_decoded
        self._partial_text = ""

    @property
    def time_s(self) -> float:
        """Seconds of audio received (at the model rate)."""
        return self._samples / self.model.sample_rate

    @property
    def decoded_s(self) -> float:
        """Seconds of audio decoded so far (behind :attr:`time_s` by up to a chunk)."""
        return self._frames_decoded * self.model.frame_shift_s

    def accept_waveform(self, samples: np.ndarray, sample_rate: int) -> list[RecognitionResult]:
        """Add audio; decode every chunk it completes.

        Args:
            samples: (n,) or (n, channels), float in [-1, 1] or int16/int32 PCM.
            sample_rate: Hz of ``samples``.

        Returns:
            Results in time order: finals at endpoints, and partials if ``partials``.
        """
        self._accept(self._converter(samples, sample_rate))
        return self._decode_ready()

    def input_finished(self) -> list[RecognitionResult]:
        """End of input: decode the rest (a last, shorter chunk), finalise, start a new stream.

        :data:`TAIL_PADDING_S` of silence is appended first, so the last word is not cut.
        """
        self._accept(self._converter.flush())
        self._accept(np.zeros(int(TAIL_PADDING_S * self.model.sample_rate), np.float32))
        self._fbank.input_finished()
        results = self._decode_ready()
        remaining = self._fbank.num_frames_ready - self._next_frame
        if remaining >= MIN_CHUNK_FRAMES:  # fewer frames give no encoder frame
            results += self._step(self._frames(self._next_frame, self._fbank.num_frames_ready))
        final = self._finalize()
        if final.text:
            results.append(final)
        self.reset()
        return results

    def transcribe(self, samples: np.ndarray, sample_rate: int) -> RecognitionResult:
        """A whole recording as one stream; its finals joined (one final if no endpoints)."""
        self.reset()
        finals = [r for r in self.accept_waveform(samples, sample_rate) + self.input_finished() if r.final]
        if not finals:
            return RecognitionResult("", True, 0.0, 0.0)
        words = [w for r in finals for w in r.words]
        return RecognitionResult(" ".join(r.text for r in finals), True, finals[0].start_s, finals[-1].end_s, words)

    def transcribe_file(self, path: str | os.PathLike) -> RecognitionResult:
        """:meth:`transcribe` an audio file (any rate and channel count).

        Raises:
            AudioError: missing, unreadable or corrupt file.
        """
        samples, rate = read_audio(path, self.model.sample_rate)
        return self.transcribe(samples, rate)

    def result(self) -> RecognitionResult:
        """The current utterance's partial result."""
        return self._result(final=False)

    def _accept(self, samples: np.ndarray) -> None:
        if len(samples):
            self._fbank.accept_waveform(self.model.sample_rate, np.ascontiguousarray(samples, dtype=np.float32))
            self._samples += len(samples)

    def _frames(self, start: int, end: int) -> np.ndarray:
        return np.stack([self._fbank.get_frame(i) for i in range(start, end)]).astype(np.float32, copy=False)

    def _decode_ready(self) -> list[RecognitionResult]:
        results: list[RecognitionResult] = []
        chunk, shift = self.model.chunk_frames, self.model.shift_frames
        while self._fbank.num_frames_ready - self._next_frame >= chunk:
            results += self._step(self._frames(self._next_frame, self._next_frame + chunk))
            self._next_frame += shift
        if self._next_frame > self._released:  # frames before the next chunk are not needed again
            self._fbank.pop(self._next_frame - self._released)
            self._released = self._next_frame
        return results

    def _step(self, feats: np.ndarray) -> list[RecognitionResult]:
        log_probs, self._states = self.model.run_chunk(feats, self._states)
        self._decoder.advance(log_probs)
        self._frames_decoded += len(log_probs)
        results = []
        if self.partials:
            partial = self.result()
            if partial.text and partial.text != self._partial_text:
                self._partial_text = partial.text
                results.append(partial)
        if self._endpoint is not None:
            self._endpoint.accept((log_probs.argmax(axis=1) == 0).tolist())
            if self._endpoint.detected():
                final = self._finalize()
                if final.text:
                    results.append(final)
        return results

    def _result(self, final: bool) -> RecognitionResult:
        hyp = self._decoder.result()
        shift = self.model.frame_shift_s
        offset = self._utterance_start * shift
        words = word_times(hyp, self.model.tokens, shift, offset)
        text = " ".join(w.word for w in words)
        start = words[0].start_s if words else offset
        end = words[-1].end_s if words else self._frames_decoded * shift
        return RecognitionResult(text, final, start, end, words)

    def _finalize(self) -> RecognitionResult:
        result = self._result(final=True)
        self._start_utterance()
        return result


class OfflineRecognizer:
    """Full-context CTC recognition of whole utterances with a ``asr-ctc`` artifact.

    Args:
        model: the artifact's path, or an :class:`AsrModel`.
        decoding: ``greedy`` or ``beam``.
        beam_size: prefixes kept by the beam search.
        num_threads: onnxruntime intra-op threads.
    """

    def __init__(
        self, model: str | os.PathLike | AsrModel, decoding: str = "greedy", beam_size: int = 4, num_threads: int = 1
    ) -> None:
        self.model = model if isinstance(model, AsrModel) else AsrModel(model, (OFFLINE_TASK,), num_threads)
        if self.model.streaming:
            raise ModelFileError(f"{self.model.path}: a streaming artifact; use StreamingRecognizer")
        self.decoding, self.beam_size = decoding, beam_size
        _decoder(decoding, beam_size)  # validate now

    def transcribe(self, samples: np.ndarray, sample_rate: int) -> RecognitionResult:
        """One utterance: (n,) or (n, channels) samples at ``sample_rate`` -> final result."""
        converter = StreamConverter(self.model.sample_rate)
        audio = np.concatenate([converter(samples, sample_rate), converter.flush()])
        feats = compute_fbank(self.model, audio)
        if len(feats) < MIN_CHUNK_FRAMES:
            return RecognitionResult("", True, 0.0, 0.0)
        decoder = _decoder(self.decoding, self.beam_size)
        decoder.advance(self.model.run_full(feats))
        hyp = decoder.result()
        words = word_times(hyp, self.model.tokens, self.model.frame_shift_s)
        text = " ".join(w.word for w in words)
        return RecognitionResult(text, True, words[0].start_s if words else 0.0, words[-1].end_s if words else 0.0, words)

    def transcribe_file(self, path: str | os.PathLike) -> RecognitionResult:
        """:meth:`transcribe` an audio file (any rate and channel count).

        Raises:
            AudioError: missing, unreadable or corrupt file.
        """
        samples, rate = read_audio(path, self.model.sample_rate)
        return self.transcribe(samples, rate)


def compute_fbank(model: AsrModel, audio: np.ndarray) -> np.ndarray:
    """(n,) float32 samples at the model's rate -> (T, F) knf features of the whole utterance."""
    fbank = model.new_fbank()
    fbank.accept_waveform(model.sample_rate, np.ascontiguousarray(audio, dtype=np.float32))
    fbank.input_finished()
    if fbank.num_frames_ready == 0:
        return np.zeros((0, model.num_bins), np.float32)
    return np.stack([fbank.get_frame(i) for i in range(fbank.num_frames_ready)]).astype(np.float32, copy=False)


def open_recognizer(
    path: str | os.PathLike,
    decoding: str = "greedy",
    beam_size: int = 4,
    endpoint: EndpointConfig | None = None,
    num_threads: int = 1,
) -> StreamingRecognizer | OfflineRecognizer:
    """The recognizer for either ASR artifact, by its ``speechkit.task``.

    Both have ``transcribe(samples, rate)`` and ``transcribe_file(path)`` returning a final
    :class:`RecognitionResult`; the streaming one decodes chunk by chunk, exactly as live.

    Args:
        endpoint: endpoint rules for the streaming artifact; ``None`` (default): each file is
            one utterance.
    """
    model = AsrModel(path, (STREAMING_TASK, OFFLINE_TASK), num_threads)
    if model.streaming:
        return StreamingRecognizer(model, decoding, beam_size, endpoint)
    return OfflineRecognizer(model, decoding, beam_size)


def streaming_log_probs(model: AsrModel, feats: np.ndarray) -> np.ndarray:
    """Run a streaming artifact over a whole utterance's (T, F) features chunk by chunk.

    The chunks, states and last short chunk are those of :class:`StreamingRecognizer` with no
    endpointing, so the result is what the live recognizer decodes.

    Returns:
        (T', V) log-probabilities.
    """
    states = model.init_states()
    outputs = [np.zeros((0, len(model.tokens)), np.float32)]
    for start in range(0, max(len(feats) - MIN_CHUNK_FRAMES + 1, 0), model.shift_frames):
        log_probs, states = model.run_chunk(feats[start : start + model.chunk_frames], states)
        outputs.append(log_probs)
        if start + model.chunk_frames >= len(feats):  # that chunk reached the end
            break
    return np.concatenate(outputs)


class AsrOnnxRecognizer:
    """Either ASR artifact behind the ``Recognizer`` interface of :mod:`speechkit.inference.asr`.

    That module's loader registry maps ``.onnx``/``.ort`` to this class, so ``speechkit
    transcribe`` and ``speechkit eval-asr`` take the artifacts: features from kaldi-native-fbank,
    the streaming artifact run chunk by chunk with its states (:func:`streaming_log_probs`), the
    full-context one in one call.

    Args:
        path: the artifact.
        num_threads: onnxruntime intra-op threads.

    Attributes:
        sample_rate, tokens: from the metadata; ``num_params`` from its ``model`` entry.
    """

    def __init__(self, path: str | os.PathLike, num_threads: int = 1) -> None:
        self.model = AsrModel(path, (STREAMING_TASK, OFFLINE_TASK), num_threads)
        self.sample_rate = self.model.sample_rate
        self.tokens = self.model.tokens
        try:
            self.num_params = json.loads(self.model.metadata["model"]).get("num_params")
        except (ValueError, AttributeError):
            self.num_params = None

    @property
    def chunk_ms(self) -> int:
        """The streaming artifact's chunk (ms); 0 for full context."""
        return round(self.model.shift_frames * self.model.frame_shift_s * 1000 / self.model.subsampling)

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
        results = []
        for audio in audios:
            feats = compute_fbank(self.model, np.asarray(audio, dtype=np.float32))
            if len(feats) < MIN_CHUNK_FRAMES:
                results.append(np.zeros((0, len(self.tokens)), np.float32))
            elif self.model.streaming:
                results.append(streaming_log_probs(self.model, feats))
            else:
                results.append(self.model.run_full(feats))
        return results


def is_asr_onnx(path: str | os.PathLike) -> bool:
    """Whether ``path`` names an ONNX/ORT file (by suffix), i.e. not a checkpoint."""
    return Path(path).suffix.lower() in (".onnx", ".ort")
