"""Streaming keyword detection with either KWS artifact (numpy + onnxruntime, no torch).

**Fixed-window artifact** (a clip classifier, e.g. 1 s): the detector keeps a ring buffer of
the last clip and runs the model every *hop* (default 100 ms) on it (:class:`StreamScorer`).
**Stateful artifact** (``*_stream.onnx``, :mod:`speechkit.runtime.kws_streaming`): the model
computes only the new frames of each call and carries its caches; the detector reads its pooled
score at every hop boundary (:class:`StatefulStreamScorer`). Both give one evaluation per hop,
so everything below (smoothing, thresholds, calibration files, eval-stream) is the same.

Each class's posterior is averaged over the last *N* evaluations (posterior smoothing, as in
Chen, Parada & Heigold, "Small-footprint keyword spotting using deep neural networks", ICASSP
2014), and a keyword fires when its smoothed posterior **rises through** its threshold. Two
rules make one utterance fire once: a keyword re-arms only after its score fell below the
threshold again, and after any detection all keywords are silent for a refractory period
(default: one clip).

Gates (an evaluation they reject scores 0 for every class):

* **level**: the audio of the evaluated window (the last clip before the evaluation, rounded
  to whole hops) has an RMS below :data:`SILENCE_DBFS` (-60 dBFS): digital silence and
  near-silence never fire, whatever the model would say about them (the windowed model is not
  even run; the stateful one runs, to keep its state, but is not read);
* **VAD** (optional): webrtcvad found no speech frame in the window.

Times: an evaluation's time is the stream time of the window's end (the hop boundary). A
detection reports ``time`` = that end minus half a clip minus the smoothing lag ((N - 1) / 2
hops), i.e. the estimated centre of the keyword, in seconds from the start of the stream.

Usage (sherpa-onnx style verbs)::

    detector = KeywordDetector("kws.onnx")          # loads kws.thresholds.json if present
    for samples, rate in source:                     # any chunk size, rate, channel count
        for det in detector.accept_waveform(samples, rate):
            print(det)                               # {"time": 2.31, "keyword": "yes", "score": 0.93}
    detector.input_finished()

Shapes: N evaluations, K keywords, C classes.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from speechkit.errors import ModelFileError, SpeechkitError
from speechkit.runtime.artifact import open_artifact
from speechkit.runtime.audio import StreamConverter
from speechkit.runtime.classifier import ClipClassifier, clip_classifier_spec, softmax
from speechkit.runtime.kws_streaming import STREAMING_KWS_SPEC, StreamingKwsModel, is_streaming_artifact

DEFAULT_THRESHOLD = 0.5
DEFAULT_HOP_MS = 100.0
DEFAULT_SMOOTHING = 3
#: Audio per model call of the stateful artifact (:class:`StatefulStreamScorer`): five 100 ms
#: hops. The graph's fixed cost per call dominates at 100 ms (0.003 CPU s per audio s for
#: BC-ResNet-1 at one thread); at 500 ms the detector is at 0.001 (benchmarks/kws_onnx.py), for
#: up to 400 ms more latency than calling every hop. Detections do not depend on it.
DEFAULT_CALL_MS = 500.0
#: Class names that are not keywords, besides names in underscores (``_unknown_``, ``_silence_``).
FILLER_NAMES = frozenset({"silence", "unknown", "background", "noise", "filler", "other", "none", "negative"})
#: webrtcvad frame length (ms); it accepts 10, 20 or 30.
VAD_FRAME_MS = 30
VAD_RATES = (8000, 16000, 32000, 48000)
#: Level gate: an evaluation whose window has an RMS below this (dB re full scale) scores 0.
SILENCE_DBFS = -60.0


#: ``speechkit.task`` of keyword-spotting artifacts (a clip classifier).
KWS_TASK = "kws"


class KwsModel(ClipClassifier):
    """A clip-classifier artifact whose task is ``kws`` (another task, e.g. a scene model, is refused).

    Args:
        path: ``.onnx`` file made by ``speechkit export``.
        num_threads: onnxruntime intra-op threads.

    Raises:
        ModelFileError: see :class:`~speechkit.runtime.classifier.ClipClassifier`; a model of
            another task gives ``"is a 'scene' model, expected 'kws'"``.
    """

    def __init__(self, path: str | os.PathLike, num_threads: int = 1) -> None:
        super().__init__(path, tasks=(KWS_TASK,), num_threads=num_threads)


def open_kws_model(path: str | os.PathLike, num_threads: int = 1) -> KwsModel | StreamingKwsModel:
    """Open either KWS artifact: a :class:`KwsModel` (fixed window) or a :class:`StreamingKwsModel`.

    Raises:
        ModelFileError: see :func:`~speechkit.runtime.artifact.open_artifact` (a model of
            another task gives ``"is a 'scene' model, expected 'kws'"``).
    """
    artifact = open_artifact(path, [clip_classifier_spec((KWS_TASK,)), STREAMING_KWS_SPEC], num_threads)
    if is_streaming_artifact(artifact):
        return StreamingKwsModel(path, num_threads, artifact=artifact)
    return KwsModel(path, num_threads)


def keyword_labels(labels: Sequence[str]) -> list[str]:
    """The labels that are keywords: not ``_like_this_`` and not a filler name (``silence``...)."""
    return [
        label for label in labels
        if not (label.startswith("_") and label.endswith("_")) and label.lower() not in FILLER_NAMES
    ]


def thresholds_path(model_path: str | os.PathLike) -> Path:
    """Where calibrated thresholds of a model live: ``kws.onnx`` -> ``kws.thresholds.json``."""
    return Path(model_path).with_suffix(".thresholds.json")


def load_thresholds_file(path: str | os.PathLike) -> dict:
    """Read a thresholds file written by :func:`speechkit.runtime.calibrate.calibrate`.

    Returns:
        The JSON object; ``["thresholds"]`` maps keyword -> threshold, and ``hop_ms``,
        ``smoothing``, ``refractory_s`` give the detector settings it was calibrated with.

    Raises:
        ModelFileError: unreadable or malformed file.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelFileError(f"{path}: unreadable thresholds file ({exc})") from None
    table = data.get("thresholds") if isinstance(data, dict) else None
    if not isinstance(table, dict) or not all(
        isinstance(k, str) and isinstance(v, (int, float)) and not isinstance(v, bool) for k, v in table.items()
    ):
        raise ModelFileError(f"{path}: expected a JSON object with 'thresholds': {{keyword: number}}")
    return data


@dataclass(frozen=True)
class DetectorSettings:
    """How the stream is scored; calibrated thresholds are only valid for the same settings.

    Attributes:
        hop_ms: time between evaluations (ms).
        smoothing: evaluations averaged by the posterior smoothing (N).
        refractory_s: after a detection, no keyword fires for this long (seconds).
        vad: webrtcvad aggressiveness 0-3, or ``None`` for no gating.
    """

    hop_ms: float = DEFAULT_HOP_MS
    smoothing: int = DEFAULT_SMOOTHING
    refractory_s: float | None = None
    vad: int | None = None


class StreamScorer:
    """Ring buffer, evaluation every hop, VAD gate and posterior smoothing.

    Args:
        model: the loaded artifact.
        keywords: the scored labels (columns of the output, in this order).
        hop_ms: time between evaluations (ms); rounded to whole samples.
        smoothing: moving-average length N in evaluations (1: no smoothing).
        vad: webrtcvad aggressiveness (0-3) or ``None``.
        max_batch: windows per onnxruntime call when a long chunk arrives.
        silence_db: level gate (see the module doc); ``None``: off.
    """

    def __init__(
        self,
        model: KwsModel,
        keywords: Sequence[str],
        hop_ms: float = DEFAULT_HOP_MS,
        smoothing: int = DEFAULT_SMOOTHING,
        vad: int | None = None,
        max_batch: int = 32,
        silence_db: float | None = SILENCE_DBFS,
    ) -> None:
        self.model = model
        self.keywords = list(keywords)
        self.columns = np.array([model.labels.index(k) for k in self.keywords], dtype=np.int64)
        self.rate = model.sample_rate
        self.clip = model.clip_samples
        self.hop = int(round(hop_ms * self.rate / 1000.0))
        if not 0 < self.hop <= self.clip:
            raise SpeechkitError(f"hop of {hop_ms} ms must be positive and at most the clip ({1000 * self.clip / self.rate:g} ms)")
        if smoothing < 1:
            raise SpeechkitError(f"smoothing must be at least 1 evaluation, got {smoothing}")
        self.smoothing = int(smoothing)
        self.max_batch = max_batch
        self.silence_power = None if silence_db is None else 10.0 ** (silence_db / 10.0)
        self._gate_hops = max(1, int(round(self.clip / self.hop)))
        self._vad = _make_vad(vad, self.rate)
        self._vad_frame = self.rate * VAD_FRAME_MS // 1000
        self._converter = StreamConverter(self.rate)
        self.reset()

    @property
    def hop_seconds(self) -> float:
        return self.hop / self.rate

    def reset(self) -> None:
        """Forget the stream: empty (silent) ring buffer, time 0, smoothing history cleared."""
        self._converter.reset()
        self._ring = np.zeros(self.clip, np.float32)  # the last clip of audio
        self._hop_power = np.zeros(self._gate_hops)  # mean power of the last hops (level gate)
        self._pending = np.zeros(0, np.float32)  # received samples short of a full hop
        self._consumed = 0  # samples pushed into the ring buffer since the start
        self._history = np.zeros((self.smoothing - 1, len(self.model.labels)), np.float32)
        self._vad_pending = np.zeros(0, np.float32)
        self._vad_seen = 0
        self._speech_ends = np.zeros(0, np.int64)  # end sample of recent speech frames
        self.level_db = -120.0

    def accept(self, samples: np.ndarray, sample_rate: int) -> tuple[np.ndarray, np.ndarray]:
        """Add a chunk; return the evaluations it completed.

        Args:
            samples: (n,) or (n, channels), float in [-1, 1] or int16, at ``sample_rate``.
            sample_rate: Hz of ``samples``.

        Returns:
            end_times (N,) seconds of each evaluated window's end, and smoothed keyword
            posteriors (N, K).
        """
        return self._process(self._converter(samples, sample_rate))

    def finish(self) -> tuple[np.ndarray, np.ndarray]:
        """End of input: flush the resampler and evaluate a last, zero-padded hop."""
        tail = self._converter.flush()
        total = len(self._pending) + len(tail)
        pad = (-total) % self.hop if total else 0
        return self._process(np.concatenate([tail, np.zeros(pad, np.float32)]))

    def _process(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self._vad is not None:
            self._feed_vad(x)
        pending = np.concatenate([self._pending, x]) if len(self._pending) else x
        num_hops = len(pending) // self.hop
        if num_hops == 0:
            self._pending = pending.copy()
            return np.zeros(0), np.zeros((0, len(self.keywords)), np.float32)
        new = pending[: num_hops * self.hop]
        self._pending = pending[num_hops * self.hop :].copy()
        buf = np.concatenate([self._ring, new])
        # Window i (0-based) ends (i + 1) hops into `new`: it starts (i + 1) * hop into `buf`.
        windows = np.lib.stride_tricks.sliding_window_view(buf, self.clip)[self.hop :: self.hop]
        self._ring = buf[-self.clip :].copy()
        end_samples = self._consumed + self.hop * np.arange(1, num_hops + 1)
        self._consumed += num_hops * self.hop
        probs = self._posteriors(windows, end_samples, self._loud(new, num_hops))
        return end_samples / self.rate, self._smooth(probs)[:, self.columns]

    def _loud(self, new: np.ndarray, num_hops: int) -> np.ndarray:
        """(N,) bool per new hop: the last clip of audio up to its end (rounded to whole hops) is
        at least :attr:`silence_power` on average. Also updates :attr:`level_db` (the last hop)."""
        hops = new.reshape(num_hops, self.hop)
        hop_power = np.einsum("ij,ij->i", hops, hops).astype(np.float64) / self.hop
        self.level_db = float(10.0 * np.log10(hop_power[-1] + 1e-12))
        powers = np.concatenate([self._hop_power, hop_power])
        self._hop_power = powers[-self._gate_hops :]
        if self.silence_power is None:
            return np.ones(num_hops, bool)
        csum = np.concatenate([[0.0], np.cumsum(powers)])
        window = csum[self._gate_hops :] - csum[: -self._gate_hops]  # (N,) sums over gate_hops hops
        return window[1:] >= self.silence_power * self._gate_hops

    def _active(self, end_samples: np.ndarray, loud: np.ndarray) -> np.ndarray:
        """Indices of the evaluations both gates let through."""
        keep = loud & self._speech_in(end_samples) if self._vad is not None else loud
        return np.flatnonzero(keep)

    def _posteriors(self, windows: np.ndarray, end_samples: np.ndarray, loud: np.ndarray) -> np.ndarray:
        """(N, clip) windows -> (N, C) posteriors; windows a gate rejects get all zeros (and no model run)."""
        probs = np.zeros((len(windows), len(self.model.labels)), np.float32)
        active = self._active(end_samples, loud)
        for start in range(0, len(active), self.max_batch):
            rows = active[start : start + self.max_batch]
            probs[rows] = self.model.probabilities(windows[rows])
        return probs

    def _smooth(self, probs: np.ndarray) -> np.ndarray:
        """Moving average over the last N evaluations (earlier ones count as 0 at the start)."""
        if self.smoothing == 1:
            return probs
        stacked = np.concatenate([self._history, probs])
        csum = np.cumsum(np.concatenate([np.zeros((1, stacked.shape[1]), np.float64), stacked]), axis=0)
        smoothed = (csum[self.smoothing :] - csum[: -self.smoothing]) / self.smoothing
        self._history = stacked[-(self.smoothing - 1) :]
        return smoothed.astype(np.float32)

    def _feed_vad(self, x: np.ndarray) -> None:
        """Run webrtcvad over complete 30 ms frames; remember where speech frames end."""
        buf = np.concatenate([self._vad_pending, x])
        n = len(buf) // self._vad_frame
        pcm = (np.clip(buf[: n * self._vad_frame], -1.0, 1.0) * 32767.0).astype("<i2")
        ends = []
        for i in range(n):
            frame = pcm[i * self._vad_frame : (i + 1) * self._vad_frame].tobytes()
            if self._vad.is_speech(frame, self.rate):
                ends.append(self._vad_seen + (i + 1) * self._vad_frame)
        self._vad_seen += n * self._vad_frame
        self._vad_pending = buf[n * self._vad_frame :].copy()
        keep = self._speech_ends[self._speech_ends > self._consumed - self.clip]
        self._speech_ends = np.concatenate([keep, np.asarray(ends, np.int64)])

    def _speech_in(self, end_samples: np.ndarray) -> np.ndarray:
        """(N,) bool: a speech frame overlaps the window [end - clip, end)."""
        if not len(self._speech_ends):
            return np.zeros(len(end_samples), bool)
        # frame [e - f, e) overlaps the window iff end - clip < e < end + f
        lo = np.searchsorted(self._speech_ends, end_samples - self.clip, side="right")
        hi = np.searchsorted(self._speech_ends, end_samples + self._vad_frame, side="left")
        return hi > lo


class StatefulStreamScorer(StreamScorer):
    """:class:`StreamScorer` over the stateful artifact: the model runs once per call on the new audio.

    New audio is fed to the model with its caches once at least ``call_ms`` of it is pending
    (whole hops; a hop is a whole number of the model's frames); the evaluation at a hop
    boundary is the model's pooled posterior of the frame that ends there (the frames in
    between advance the model's state only). So ``hop_ms`` sets what is scored (as for the
    windowed model) and ``call_ms`` only how often onnxruntime runs: a longer call costs less
    CPU per audio second (the graph's fixed cost per call is paid less often) and adds up to
    ``call_ms - hop_ms`` of latency; the evaluations do not change. Gates and smoothing are the
    parent's; the level gate looks at the last clip of audio before each boundary, as for the
    windowed model.

    Args:
        model: the stateful artifact.
        keywords, hop_ms, smoothing, vad, silence_db: as :class:`StreamScorer`; ``hop_ms`` is
            rounded to whole frames of the model (10 ms for BC-ResNet front-ends).
        call_ms: least audio per model call, rounded up to whole hops; ``None``:
            :data:`DEFAULT_CALL_MS`.

    Raises:
        SpeechkitError: a hop shorter than one frame.
    """

    def __init__(
        self,
        model: StreamingKwsModel,
        keywords: Sequence[str],
        hop_ms: float = DEFAULT_HOP_MS,
        smoothing: int = DEFAULT_SMOOTHING,
        vad: int | None = None,
        silence_db: float | None = SILENCE_DBFS,
        call_ms: float | None = None,
    ) -> None:
        frame = model.hop_length
        frames_per_hop = int(round(hop_ms * model.sample_rate / 1000.0 / frame))
        if frames_per_hop < 1:
            raise SpeechkitError(f"hop of {hop_ms} ms is shorter than the model's {1000 * frame / model.sample_rate:g} ms frame")
        super().__init__(model, keywords, 1000.0 * frames_per_hop * frame / model.sample_rate, smoothing, vad,
                         silence_db=silence_db)
        self.hop = frames_per_hop * frame  # exact, whatever the rounding of the ms value above
        self.frames_per_hop = frames_per_hop
        call = (DEFAULT_CALL_MS if call_ms is None else call_ms) * model.sample_rate / 1000.0
        self.call = max(1, math.ceil(call / self.hop - 1e-9)) * self.hop

    def reset(self) -> None:
        """Forget the stream, including the model's caches."""
        super().reset()
        self.model.reset()
        self._flushing = False

    def finish(self) -> tuple[np.ndarray, np.ndarray]:
        """End of input: score everything pending (the last hop zero-padded)."""
        self._flushing = True
        try:
            return super().finish()
        finally:
            self._flushing = False

    def _process(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self._vad is not None:
            self._feed_vad(x)
        pending = np.concatenate([self._pending, x]) if len(self._pending) else x
        num_hops = len(pending) // self.hop if len(pending) >= self.call or self._flushing else 0
        if num_hops == 0:
            self._pending = pending.copy()
            return np.zeros(0), np.zeros((0, len(self.keywords)), np.float32)
        new = pending[: num_hops * self.hop]
        self._pending = pending[num_hops * self.hop :].copy()
        logits = self.model.logits(new)[self.frames_per_hop - 1 :: self.frames_per_hop]  # (N, C) at hop ends
        end_samples = self._consumed + self.hop * np.arange(1, num_hops + 1)
        self._consumed += num_hops * self.hop
        probs = np.zeros(logits.shape, np.float32)
        active = self._active(end_samples, self._loud(new, num_hops))
        probs[active] = softmax(logits[active])
        return end_samples / self.rate, self._smooth(probs)[:, self.columns]


def make_scorer(model: ClipClassifier | StreamingKwsModel, keywords: Sequence[str], settings: DetectorSettings,
                silence_db: float | None = SILENCE_DBFS, call_ms: float | None = None) -> StreamScorer:
    """The scorer of a loaded KWS model: :class:`StatefulStreamScorer` or :class:`StreamScorer`.

    ``call_ms`` applies to the stateful model only (the windowed one runs every hop).
    """
    if isinstance(model, StreamingKwsModel):
        return StatefulStreamScorer(model, keywords, settings.hop_ms, settings.smoothing, settings.vad,
                                    silence_db=silence_db, call_ms=call_ms)
    return StreamScorer(model, keywords, settings.hop_ms, settings.smoothing, settings.vad, silence_db=silence_db)


class Trigger:
    """Rising-edge thresholding with re-arming and a global refractory period.

    A keyword fires at an evaluation where its score is >= its threshold and was below it at the
    previous evaluation, unless any keyword fired less than ``refractory_s`` earlier. If several
    keywords rise at once, the highest score wins. The same rule serves the live detector
    (called chunk by chunk; state carries over) and the offline calibration / DET sweeps.

    Args:
        thresholds: (K,) per-keyword thresholds.
        refractory_s: silence after any detection (seconds).
    """

    def __init__(self, thresholds: Sequence[float], refractory_s: float) -> None:
        self.thresholds = np.asarray(thresholds, np.float32)
        self.refractory_s = float(refractory_s)
        self.reset()

    def reset(self) -> None:
        self._above = np.zeros(len(self.thresholds), bool)
        self._last_fire_s = -math.inf

    def __call__(self, times_s: np.ndarray, scores: np.ndarray) -> list[tuple[int, int]]:
        """Process (N,) times and (N, K) scores; return ``(evaluation index, keyword index)`` fires."""
        if not len(times_s):
            return []
        above = scores >= self.thresholds
        rising = above & ~np.vstack([self._above[None], above[:-1]])
        self._above = above[-1].copy()
        fires = []
        for n in np.flatnonzero(rising.any(axis=1)):
            if times_s[n] - self._last_fire_s < self.refractory_s:
                continue
            candidates = np.flatnonzero(rising[n])
            k = int(candidates[np.argmax(scores[n, candidates])])
            fires.append((int(n), k))
            self._last_fire_s = float(times_s[n])
        return fires


class KeywordDetector:
    """Streaming keyword detector over any chunk size, sample rate and channel count.

    Args:
        model: ``.onnx`` path of either KWS artifact (:func:`open_kws_model`: the fixed-window
            clip classifier or the stateful ``*_stream.onnx``), or a loaded
            :class:`~speechkit.runtime.classifier.ClipClassifier` /
            :class:`~speechkit.runtime.kws_streaming.StreamingKwsModel`.
        thresholds: one number for every keyword, ``{keyword: number}`` for some, or ``None``.
            Keywords not given here take the calibrated value from ``<model>.thresholds.json``
            when it exists (see :func:`thresholds_path`), else :data:`DEFAULT_THRESHOLD`.
        hop_ms: time between evaluations; ``None``: the thresholds file's, else 100 ms.
        smoothing: posterior moving-average length in evaluations; ``None``: file's, else 3.
        refractory_s: silence after a detection; ``None``: the file's, else one clip length.
        vad: webrtcvad aggressiveness (0-3) to skip windows without speech; ``None``: off.
        keywords: labels to spot; default all labels except fillers (:func:`keyword_labels`).
        num_threads: onnxruntime threads when ``model`` is a path.
        thresholds_file: read ``<model>.thresholds.json`` (thresholds and settings) if it
            exists; calibration itself turns this off.
        silence_db: level gate in dBFS (:data:`SILENCE_DBFS`); ``None``: off.
        call_ms: stateful artifact only: least audio per model call (see
            :class:`StatefulStreamScorer`; detections do not depend on it); ``None``:
            :data:`DEFAULT_CALL_MS` (500 ms).

    Raises:
        ModelFileError: bad model or thresholds file.
        SpeechkitError: unknown keyword, bad settings, VAD at an unsupported sample rate.
    """

    def __init__(
        self,
        model: str | os.PathLike | ClipClassifier | StreamingKwsModel,
        thresholds: float | Mapping[str, float] | None = None,
        hop_ms: float | None = None,
        smoothing: int | None = None,
        refractory_s: float | None = None,
        vad: int | None = None,
        keywords: Sequence[str] | None = None,
        num_threads: int = 1,
        thresholds_file: bool = True,
        silence_db: float | None = SILENCE_DBFS,
        call_ms: float | None = None,
    ) -> None:
        loaded = isinstance(model, (ClipClassifier, StreamingKwsModel))
        self.model = model if loaded else open_kws_model(model, num_threads)
        self.keywords = list(keywords) if keywords is not None else keyword_labels(self.model.labels)
        unknown = [k for k in self.keywords if k not in self.model.labels]
        if unknown or not self.keywords:
            raise SpeechkitError(
                f"{self.model.path}: keywords {unknown or '[]'} not among the model's labels {self.model.labels}"
            )
        calibrated = _calibration_of(self.model.path) if thresholds_file else {}
        settings = calibrated.get("settings", {})
        self.settings = DetectorSettings(
            hop_ms=float(hop_ms if hop_ms is not None else settings.get("hop_ms", DEFAULT_HOP_MS)),
            smoothing=int(smoothing if smoothing is not None else settings.get("smoothing", DEFAULT_SMOOTHING)),
            refractory_s=float(
                refractory_s if refractory_s is not None else settings.get("refractory_s") or self.model.clip_seconds
            ),
            vad=vad,
        )
        self.thresholds = resolve_thresholds(self.model, self.keywords, thresholds, calibrated.get("thresholds", {}))
        self.scorer = make_scorer(self.model, self.keywords, self.settings, silence_db, call_ms)
        self.trigger = Trigger([self.thresholds[k] for k in self.keywords], self.settings.refractory_s)
        self.last_scores: dict[str, float] = {k: 0.0 for k in self.keywords}

    @property
    def level_db(self) -> float:
        """Power of the last hop in dB relative to full scale (for a level meter)."""
        return self.scorer.level_db

    def accept_waveform(self, samples: np.ndarray, sample_rate: int | None = None) -> list[dict]:
        """Feed a chunk; return the detections it completed.

        Args:
            samples: (n,) or (n, channels) float32 in [-1, 1] (or int16) -- any length.
            sample_rate: Hz of ``samples``; ``None`` means the model's rate.

        Returns:
            ``[{"time": seconds, "keyword": str, "score": float}, ...]`` in time order.
        """
        rate = self.model.sample_rate if sample_rate is None else int(sample_rate)
        return self._detect(*self.scorer.accept(samples, rate))

    def input_finished(self) -> list[dict]:
        """Signal end of input: evaluates the buffered tail and returns its detections."""
        return self._detect(*self.scorer.finish())

    def reset(self) -> None:
        """Start a new stream (time 0, empty buffers, trigger re-armed)."""
        self.scorer.reset()
        self.trigger.reset()
        self.last_scores = {k: 0.0 for k in self.keywords}

    def detect_trace(
        self, end_times: np.ndarray, scores: np.ndarray, thresholds: float | Mapping[str, float] | None = None
    ) -> list[dict]:
        """Offline: detections of a whole score trace (from ``self.scorer``) with a fresh trigger.

        Gives what :meth:`accept_waveform` would have returned over the same stream; used by
        eval-stream and the DET sweep to try thresholds without re-running the model.

        Args:
            end_times: (N,) window end times (seconds).
            scores: (N, K) smoothed posteriors of ``self.keywords``.
            thresholds: as in the constructor; ``None``: the detector's own.
        """
        table = self.thresholds if thresholds is None else resolve_thresholds(self.model, self.keywords, thresholds, self.thresholds)
        trigger = Trigger([table[k] for k in self.keywords], self.settings.refractory_s)
        return self._as_detections(end_times, scores, trigger(end_times, scores))

    def _detect(self, end_times: np.ndarray, scores: np.ndarray) -> list[dict]:
        if len(end_times):
            self.last_scores = {k: float(s) for k, s in zip(self.keywords, scores[-1])}
        return self._as_detections(end_times, scores, self.trigger(end_times, scores))

    def _as_detections(self, end_times: np.ndarray, scores: np.ndarray, fires: list[tuple[int, int]]) -> list[dict]:
        lag_s = self.model.clip_seconds / 2 + (self.settings.smoothing - 1) / 2 * self.scorer.hop_seconds
        return [
            {"time": round(max(0.0, float(end_times[n]) - lag_s), 3), "keyword": self.keywords[k], "score": round(float(scores[n, k]), 4)}
            for n, k in fires
        ]


def resolve_thresholds(
    model: KwsModel, keywords: Sequence[str], given: float | Mapping[str, float] | None, calibrated: Mapping[str, float]
) -> dict[str, float]:
    """Per-keyword thresholds: given > calibrated (thresholds file) > :data:`DEFAULT_THRESHOLD`."""
    table = {k: float(calibrated.get(k, DEFAULT_THRESHOLD)) for k in keywords}
    if isinstance(given, Mapping):
        unknown = sorted(set(given) - set(keywords))
        if unknown:
            raise SpeechkitError(f"thresholds for {unknown}, which are not keywords of {model.path} ({list(keywords)})")
        table.update({k: float(v) for k, v in given.items()})
    elif given is not None:
        table = {k: float(given) for k in keywords}
    bad = {k: v for k, v in table.items() if not 0.0 < v <= 1.5}
    if bad:
        raise SpeechkitError(f"thresholds must be posteriors in (0, 1] (above 1: never fire), got {bad}")
    return table


def _calibration_of(model_path: Path) -> dict:
    """The thresholds file next to the model as ``{"thresholds": ..., "settings": ...}``, or {}."""
    path = thresholds_path(model_path)
    if not path.is_file():
        return {}
    data = load_thresholds_file(path)
    settings = {k: data[k] for k in ("hop_ms", "smoothing", "refractory_s") if isinstance(data.get(k), (int, float))}
    return {"thresholds": data["thresholds"], "settings": settings}


def _make_vad(aggressiveness: int | None, sample_rate: int):
    if aggressiveness is None:
        return None
    if aggressiveness not in (0, 1, 2, 3):
        raise SpeechkitError(f"VAD aggressiveness must be 0, 1, 2 or 3, got {aggressiveness}")
    if sample_rate not in VAD_RATES:
        raise SpeechkitError(f"webrtcvad works at {VAD_RATES} Hz, not at the model's {sample_rate} Hz; run without VAD")
    import webrtcvad

    return webrtcvad.Vad(aggressiveness)
