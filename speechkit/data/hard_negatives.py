"""Hard-negative mining: where does a detector fire on audio that holds no keyword?

:func:`mine_hard_negatives` runs the runtime detector's scorer
(:class:`speechkit.runtime.kws.KeywordDetector`, fixed-window or stateful artifact alike) over
long keyword-free recordings, finds the score **peaks** above ``min_score`` (one per event, not
every hop), keeps the highest ``max_windows`` of them, and writes each as a wav of
``context + clip`` samples ending where the peak's window ends. Those files are what
:class:`speechkit.data.kws_stream.KWSStreamDataModule` draws as ``hard_negative`` items
(``hard_negative_dirs``), labelled ``_unknown_``: the false alarms are trained away instead of
thresholded away. ``mined.json`` beside them says what was found.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from speechkit.errors import SpeechkitError

SUMMARY_FILE = "mined.json"
#: Audio fed to the scorer per call (seconds): bounded memory on hour-long files.
_BLOCK_S = 30.0


def find_peaks(
    end_times: np.ndarray, scores: np.ndarray, min_score: float, min_gap_s: float
) -> list[tuple[int, int, float]]:
    """Score peaks of one stream: at most one per ``min_gap_s``, highest first.

    A candidate is an evaluation whose best keyword score is >= ``min_score``; candidates are
    taken highest first and each suppresses every other within ``min_gap_s`` of it (any keyword),
    so one utterance that scores over several hops yields one peak.

    Args:
        end_times: (N,) window end times (s).
        scores: (N, K) smoothed keyword scores.
        min_score: lowest score kept.
        min_gap_s: least time between two peaks (s).

    Returns:
        ``[(evaluation index, keyword index, score)]``, highest score first.

    Example:
        >>> t = np.arange(6) * 0.1
        >>> s = np.array([[0.1, 0], [0.7, 0], [0.9, 0], [0.6, 0], [0.2, 0], [0, 0.8]])
        >>> [(n, k, round(v, 2)) for n, k, v in find_peaks(t, s, 0.5, 0.25)]
        [(2, 0, 0.9), (5, 1, 0.8)]
    """
    if not len(end_times):
        return []
    best_k = np.argmax(scores, axis=1)
    best = scores[np.arange(len(scores)), best_k]
    order = [int(n) for n in np.argsort(-best, kind="stable") if best[n] >= min_score]
    taken: list[int] = []
    for n in order:
        if all(abs(end_times[n] - end_times[m]) >= min_gap_s for m in taken):
            taken.append(n)
    return [(n, int(best_k[n]), float(best[n])) for n in taken]


def mine_hard_negatives(
    model_path: str | os.PathLike,
    audio_files: Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    max_windows: int = 500,
    min_score: float = 0.3,
    seed: int = 0,
    context_ms: float = 500.0,
    min_gap_s: float | None = None,
    hop_ms: float | None = None,
    smoothing: int | None = None,
    num_threads: int = 1,
) -> dict:
    """Write the windows where a detector scores a keyword on keyword-free audio.

    Args:
        model_path: KWS artifact (anything :class:`~speechkit.runtime.kws.KeywordDetector` opens).
        audio_files: long recordings with **no** keyword in them (wav/flac/ogg, any rate).
        out_dir: new or empty folder for ``hn_<rank>.wav`` files and ``mined.json``.
        max_windows: most windows written, highest scores first.
        min_score: lowest keyword score (smoothed posterior) that counts as a peak.
        seed: breaks ties among equal scores (the order of equal peaks).
        context_ms: audio kept before each window (ms); match the data module's ``context_ms``.
        min_gap_s: least time between two peaks of one file; default one clip.
        hop_ms, smoothing: detector settings; ``None``: the model's thresholds file, else defaults.
        num_threads: onnxruntime threads.

    Returns:
        The summary also written to ``mined.json``: ``count``, ``per_keyword`` (keyword ->
        count), ``peaks_found`` (before ``max_windows``), ``peaks_per_hour``, ``audio_seconds``,
        ``min_score``, ``window_samples``, ``sample_rate``, and ``windows``: one
        ``{"file", "source", "end_s", "keyword", "score"}`` per written file, highest first.

    Raises:
        SpeechkitError: no audio files, bad arguments, or ``out_dir`` is not empty.
        ModelFileError: the model cannot be opened.
        AudioError: an audio file cannot be read.
    """
    from speechkit.audio import load_audio, save_audio
    from speechkit.fileio import write_json_atomic
    from speechkit.runtime.kws import KeywordDetector

    if not audio_files:
        raise SpeechkitError("mine_hard_negatives: no audio files given")
    if max_windows < 0 or context_ms < 0 or not 0.0 < min_score <= 1.0:
        raise SpeechkitError(
            f"mine_hard_negatives: max_windows and context_ms must be >= 0 and min_score in (0, 1], got "
            f"{max_windows}, {context_ms}, {min_score}"
        )
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise SpeechkitError(f"{out}: already exists and is not an empty folder; choose a new folder for each round")
    detector = KeywordDetector(model_path, hop_ms=hop_ms, smoothing=smoothing, num_threads=num_threads)
    scorer, keywords = detector.scorer, detector.keywords
    rate = int(detector.model.sample_rate)
    clip = int(getattr(detector.model, "clip_samples", 0) or getattr(scorer, "clip", rate))
    window = clip + round(context_ms * rate / 1000)
    gap = clip / rate if min_gap_s is None else float(min_gap_s)
    rng = np.random.default_rng(seed)

    peaks = []  # (score, tiebreak, file index, end sample, keyword index, window audio or None)
    seconds = 0.0
    for index, path in enumerate(audio_files):
        audio = load_audio(path, rate)
        seconds += audio.size / rate
        times, scores = _score(scorer, audio, rate)
        for rank, (n, k, score) in enumerate(find_peaks(times, scores, min_score, gap)):
            end = min(int(round(times[n] * rate)), audio.size)
            # Only a file's own top max_windows can make the global top: copy just those.
            piece = np.pad(audio[max(0, end - window) : end], (max(0, window - end), 0)) if rank < max_windows else None
            peaks.append((score, float(rng.random()), index, end, k, piece))
    peaks.sort(key=lambda p: (-p[0], p[1]))
    kept = peaks[:max_windows]

    out.mkdir(parents=True, exist_ok=True)
    windows = []
    for rank, (score, _, index, end, k, piece) in enumerate(kept):
        name = f"hn_{rank:05d}_{_slug(keywords[k])}.wav"
        save_audio(out / name, piece, rate)
        windows.append({
            "file": name, "source": str(audio_files[index]), "end_s": round(end / rate, 3),
            "keyword": keywords[k], "score": round(score, 4),
        })  # fmt: skip
    summary = {
        "count": len(windows),
        "per_keyword": dict(Counter(w["keyword"] for w in windows)),
        "peaks_found": len(peaks),
        "peaks_per_hour": round(len(peaks) / seconds * 3600.0, 2) if seconds > 0 else 0.0,
        "audio_seconds": round(seconds, 2),
        "min_score": min_score,
        "window_samples": window,
        "sample_rate": rate,
        "model": str(model_path),
        "windows": windows,
    }
    write_json_atomic(out / SUMMARY_FILE, summary)
    return summary


def _score(scorer, audio: np.ndarray, rate: int) -> tuple[np.ndarray, np.ndarray]:
    """Run a fresh stream through ``scorer``: (N,) window end times (s), (N, K) scores."""
    scorer.reset()
    block = int(_BLOCK_S * rate)
    times, scores = [], []
    for start in range(0, audio.size, block):
        t, s = scorer.accept(audio[start : start + block], rate)
        times.append(t)
        scores.append(s)
    t, s = scorer.finish()
    times.append(t)
    scores.append(s)
    return np.concatenate(times), np.concatenate(scores)


def _slug(keyword: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", keyword.lower()).strip("_") or "kw"


__all__ = ["SUMMARY_FILE", "find_peaks", "mine_hard_negatives"]
