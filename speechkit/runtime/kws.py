"""Streaming keyword detection with a fixed-clip KWS artifact (numpy + onnxruntime, no torch).

The model classifies one clip (e.g. 1 s). To spot keywords in an endless stream the detector
keeps a ring buffer of the last clip, runs the model every *hop* (default 100 ms) on it, averages
each class's posterior over the last *N* evaluations (posterior smoothing, as in Chen, Parada
& Heigold, "Small-footprint keyword spotting using deep neural networks", ICASSP 2014), and fires
a keyword when its smoothed posterior **rises through** its threshold. Two rules make one
utterance fire once: a keyword re-arms only after its score fell below the threshold again,
and after any detection all keywords are silent for a refractory period (default: one clip).
Optionally webrtcvad gates the model: windows without speech are not evaluated (score 0),
which saves CPU and false alarms on noise.

Times: an evaluation's time is the stream time of the window's end. A detection reports
``time`` = that end minus half a clip minus the smoothing lag ((N - 1) / 2 hops), i.e. the
estimated centre of the keyword, in seconds from the start of the stream.

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
from speechkit.runtime.audio import StreamConverter
from speechkit.runtime.classifier import ClipClassifier

DEFAULT_THRESHOLD = 0.5
DEFAULT_HOP_MS = 100.0
DEFAULT_SMOOTHING = 3
#: Class names that are not keywords, besides names in underscores (``_unknown_``, ``_silence_``).
FILLER_NAMES = frozenset({"silence", "unknown", "background", "noise", "filler", "other", "none", "negative"})
#: webrtcvad frame length (ms); it accepts 10, 20 or 30.
VAD_FRAME_MS = 30
VAD_RATES = (8000, 16000, 32000, 48000)


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
    """

    def __init__(
        self,
        model: KwsModel,
        keywords: Sequence[str],
        hop_ms: float = DEFAULT_HOP_MS,
        smoothing: int = DEFAULT_SMOOTHING,
        vad: int | None = None,
        max_batch: int = 32,
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
        last_hop = new[-self.hop :]
        self.level_db = float(10.0 * np.log10(np.mean(last_hop.astype(np.float64) ** 2) + 1e-12))
        probs = self._posteriors(windows, end_samples)
        return end_samples / self.rate, self._smooth(probs)[:, self.columns]

    def _posteriors(self, windows: np.ndarray, end_samples: np.ndarray) -> np.ndarray:
        """(N, clip) windows -> (N, C) posteriors; windows the VAD rejects get all zeros."""
        probs = np.zeros((len(windows), len(self.model.labels)), np.float32)
        active = np.flatnonzero(self._speech_in(end_samples)) if self._vad is not None else np.arange(len(windows))
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
        model: ``.onnx`` path (opened as a :class:`KwsModel`: task ``kws``) or a loaded
            :class:`~speechkit.runtime.classifier.ClipClassifier`.
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

    Raises:
        ModelFileError: bad model or thresholds file.
        SpeechkitError: unknown keyword, bad settings, VAD at an unsupported sample rate.
    """

    def __init__(
        self,
        model: str | os.PathLike | ClipClassifier,
        thresholds: float | Mapping[str, float] | None = None,
        hop_ms: float | None = None,
        smoothing: int | None = None,
        refractory_s: float | None = None,
        vad: int | None = None,
        keywords: Sequence[str] | None = None,
        num_threads: int = 1,
        thresholds_file: bool = True,
    ) -> None:
        self.model = model if isinstance(model, ClipClassifier) else KwsModel(model, num_threads)
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
        self.scorer = StreamScorer(self.model, self.keywords, self.settings.hop_ms, self.settings.smoothing, vad)
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
