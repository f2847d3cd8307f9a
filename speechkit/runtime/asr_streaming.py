"""Streaming CTC recognition with the ``asr-ctc-streaming`` artifact (no torch).

:class:`StreamingRecognizer` takes audio chunks of any size, sample rate and channel count;
mixes to mono and resamples; computes features incrementally (kaldi-native-fbank
``OnlineFbank``); runs the encoder on each window of the chunk schedule
(:class:`speechkit.runtime.chunking.ChunkSchedule`) with its carried states; decodes CTC
greedily or with a prefix beam; gives partial results; and finalises an utterance at an
endpoint (:mod:`.endpoint`), after which decoder and encoder states start afresh, as for a new
utterance in training.

Times are seconds from the start of the stream. Word times come from the encoder frame at which
CTC first emits each piece (``frame * frame_shift_s``, 40 ms frames); they lag the audio by up
to the subsampling's receptive field (about 70 ms).
"""

from __future__ import annotations

import os

import numpy as np

from speechkit.decoding import word_times
from speechkit.errors import ModelFileError
from speechkit.runtime.asr_model import AsrModel, FileTranscriber, RecognitionResult, make_decoder
from speechkit.runtime.audio import StreamConverter
from speechkit.runtime.endpoint import EndpointConfig, EndpointDetector

#: Silence fed after the end of input (seconds). A streaming CTC model emits a word's last
#: pieces a few frames after its audio; a recording cut right after the last word would lose
#: them (sherpa-onnx users append such padding by hand). Measured on the quickstart model with
#: 40 tightly trimmed held-out utterances at 320 ms chunks: WER 31.0 % without, 20.6 % with
#: 0.2 s, no further gain from 0.4 or 0.6 s.
TAIL_PADDING_S = 0.3
#: sherpa-onnx's rules: 1.2 s of silence after speech, 2.4 s without speech, 20 s at most.
DEFAULT_ENDPOINT = EndpointConfig()


class StreamingRecognizer(FileTranscriber):
    """Streaming CTC recognition with a ``asr-ctc-streaming`` artifact.

    Args:
        model: the artifact's path, or an :class:`~speechkit.runtime.asr_model.AsrModel`
            (shared between streams).
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
        self.model = model if isinstance(model, AsrModel) else AsrModel(model, num_threads)
        if not self.model.streaming:
            raise ModelFileError(
                f"{self.model.path}: this is the full-context artifact: export a streaming one with "
                "`speechkit export CKPT M.onnx --streaming`, or use OfflineRecognizer"
            )
        self.schedule = self.model.schedule
        self.partials = partials
        self._decoder = make_decoder(decoding, beam_size)
        self._endpoint = EndpointDetector(endpoint, self.model.frame_shift_s) if endpoint is not None else None
        self._converter = StreamConverter(self.model.sample_rate)
        self.reset()

    def reset(self) -> None:
        """Start a new stream (time 0)."""
        self._converter.reset()
        self._fbank = self.model.new_fbank()
        self._next_frame = 0  # feature frame where the next window starts
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
        """Add audio; decode every window it completes.

        Args:
            samples: (n,) or (n, channels), float in [-1, 1] or int16/int32 PCM.
            sample_rate: Hz of ``samples``.

        Returns:
            Results in time order: finals at endpoints, and partials if ``partials``.
        """
        self._accept(self._converter(samples, sample_rate))
        return self._decode_ready(finished=False)

    def input_finished(self) -> list[RecognitionResult]:
        """End of input: decode the rest (a last, shorter window), finalise, start a new stream.

        :data:`TAIL_PADDING_S` of silence is appended first, so the last word is not cut.
        """
        self._accept(self._converter.flush())
        self._accept(np.zeros(int(TAIL_PADDING_S * self.model.sample_rate), np.float32))
        self._fbank.input_finished()
        results = self._decode_ready(finished=True)
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

    def result(self) -> RecognitionResult:
        """The current utterance's partial result."""
        return self._result(final=False)

    def _accept(self, samples: np.ndarray) -> None:
        if len(samples):
            self._fbank.accept_waveform(self.model.sample_rate, np.ascontiguousarray(samples, dtype=np.float32))
            self._samples += len(samples)

    def _frames(self, start: int, end: int) -> np.ndarray:
        return np.stack([self._fbank.get_frame(i) for i in range(start, end)]).astype(np.float32, copy=False)

    def _decode_ready(self, finished: bool) -> list[RecognitionResult]:
        """Run every window the schedule allows now (the last, shorter one only when ``finished``)."""
        results: list[RecognitionResult] = []
        ready = self._fbank.num_frames_ready
        while (window := self.schedule.next_window(self._next_frame, ready, finished)) is not None:
            results += self._step(self._frames(window.start, window.end))
            self._next_frame += self.schedule.shift_frames
        keep_from = min(self._next_frame, ready)
        if keep_from > self._released:  # frames before the next window are not needed again
            self._fbank.pop(keep_from - self._released)
            self._released = keep_from
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
        return RecognitionResult.from_words(words, final, offset, self._frames_decoded * shift)

    def _finalize(self) -> RecognitionResult:
        result = self._result(final=True)
        self._start_utterance()
        return result
