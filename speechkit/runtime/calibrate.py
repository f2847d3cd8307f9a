"""Per-keyword thresholds that meet a false-alarm budget on negative audio (no torch).

Run the streaming scorer over audio that contains none of the keywords (a folder of wavs or one
long file: TV, office noise, other speech), then, for each keyword, pick the lowest threshold at
which the detector would fire at most ``fa_per_hour * hours`` times. Lower thresholds mean
higher recall, so the lowest threshold inside the budget is the best one the negatives allow.
The result goes next to the model as ``<model>.thresholds.json``, which
:class:`speechkit.runtime.kws.KeywordDetector` loads by default.

Counting is per keyword with the detector's own rule (:class:`~speechkit.runtime.kws.Trigger`:
rising edge, re-arm, refractory). Only thresholds at score peaks change the count upwards, so
the search walks the trace's peaks from the highest down and stops at the first that breaks
the budget.

Usage::

    speechkit calibrate --model kws.onnx --negatives noise_dir/ --fa-per-hour 0.5
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from speechkit.errors import AudioError
from speechkit.fileio import write_json_atomic
from speechkit.runtime.audio import iter_audio_file
from speechkit.runtime.kws import KeywordDetector, StreamScorer, Trigger, thresholds_path

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg")
#: Lowest threshold calibration returns: below 0.5 a keyword could fire while another class
#: is more likely, which negatives of finite length cannot rule out.
MIN_THRESHOLD = 0.5


def audio_files(path: str | os.PathLike) -> list[Path]:
    """One audio file, or every wav/flac/ogg under a folder (recursively, sorted).

    Raises:
        AudioError: the path does not exist, or the folder holds no audio files.
    """
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise AudioError(f"{path}: no such audio file or folder")
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES)
    if not files:
        raise AudioError(f"{path}: folder has no {'/'.join(AUDIO_SUFFIXES)} files")
    return files


def score_file(scorer: StreamScorer, path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray, float]:
    """Stream one file through a fresh scorer.

    Returns:
        end_times (N,) seconds, smoothed keyword scores (N, K), and the file's duration (s).
    """
    scorer.reset()
    times, scores, num_samples, rate = [], [], 0, 1
    for block, rate in iter_audio_file(path):
        num_samples += len(block)
        t, s = scorer.accept(block, rate)
        times.append(t)
        scores.append(s)
    t, s = scorer.finish()
    times.append(t)
    scores.append(s)
    return np.concatenate(times), np.concatenate(scores), num_samples / rate


def join_traces(traces: Sequence[tuple[np.ndarray, np.ndarray]], gap_s: float) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate per-file traces so one trigger pass treats each file as its own stream.

    A separator evaluation with score -1 re-arms every keyword, and each file is shifted to
    start ``gap_s`` (> refractory period) after the previous one ended.
    """
    times, scores, offset = [], [], 0.0
    for t, s in traces:
        if not len(t):
            continue
        times += [t + offset, np.array([t[-1] + offset + gap_s / 2])]
        scores += [s, -np.ones((1, s.shape[1]), s.dtype)]
        offset += t[-1] + gap_s
    if not times:
        return np.zeros(0), np.zeros((0, traces[0][1].shape[1] if traces else 0), np.float32)
    return np.concatenate(times), np.concatenate(scores)


def pick_threshold(
    times_s: np.ndarray, scores: np.ndarray, allowed: int, refractory_s: float, min_threshold: float = MIN_THRESHOLD
) -> tuple[float, int]:
    """Lowest threshold with at most ``allowed`` detections of one keyword's trace.

    Args:
        times_s: (N,) evaluation times.
        scores: (N,) smoothed scores of the keyword.
        allowed: false-alarm budget (count).
        refractory_s: the detector's refractory period.
        min_threshold: never return less.

    Returns:
        ``(threshold, detections at it)``.
    """
    col = scores[:, None]

    def count(threshold: float) -> int:
        return len(Trigger([threshold], refractory_s)(times_s, col))

    def just_above(value: float) -> float:
        return float(np.nextafter(np.float32(value), np.float32(np.inf)))

    peaks = _peak_values(scores)
    best = max(just_above(peaks[0]) if peaks else min_threshold, min_threshold)  # nothing fires
    for threshold in [p for p in peaks if p >= min_threshold] + [min_threshold]:
        if count(threshold) > allowed:
            # Between this peak and the previous one the count can only have fallen.
            if count(just_above(threshold)) <= allowed:
                best = min(best, just_above(threshold))
            break
        best = min(best, threshold)
    return best, count(best)


def _peak_values(scores: np.ndarray) -> list[float]:
    """Distinct local-maximum values of a 1-D trace, highest first."""
    if not len(scores):
        return []
    padded = np.concatenate([[-np.inf], scores, [-np.inf]])
    is_peak = (padded[1:-1] >= padded[:-2]) & (padded[1:-1] > padded[2:])
    return sorted({float(v) for v in scores[is_peak]}, reverse=True)


def calibrate(
    model: str | os.PathLike,
    negatives: str | os.PathLike,
    fa_per_hour: float = 0.5,
    hop_ms: float | None = None,
    smoothing: int | None = None,
    refractory_s: float | None = None,
    vad: int | None = None,
    min_threshold: float = MIN_THRESHOLD,
    out: str | os.PathLike | None = None,
) -> dict:
    """Pick per-keyword thresholds on negative audio and write them next to the model.

    Args:
        model: the KWS ``.onnx``.
        negatives: a folder of audio files or one file, free of the keywords.
        fa_per_hour: allowed false alarms per hour of audio, per keyword.
        hop_ms, smoothing, refractory_s, vad: detector settings (defaults as the detector's);
            they are stored with the thresholds and the detector reuses them.
        min_threshold: lowest threshold returned.
        out: output JSON (default :func:`~speechkit.runtime.kws.thresholds_path` of ``model``).

    Returns:
        The written JSON object: ``thresholds``, ``false_alarms`` (counts on the negatives at
        those thresholds), ``false_alarms_per_hour``, ``negative_hours``, the settings, and
        ``never_fire`` (keywords whose threshold had to exceed 1 because the negatives drove
        them to certainty).

    Raises:
        AudioError: no or unreadable negative audio.
        ModelFileError: bad model file.
    """
    if not fa_per_hour >= 0:
        raise AudioError(f"--fa-per-hour must be >= 0, got {fa_per_hour}")
    # The detector only scores here; an earlier thresholds file must not leak its settings in.
    detector = KeywordDetector(
        model, thresholds=0.5, hop_ms=hop_ms, smoothing=smoothing, refractory_s=refractory_s, vad=vad,
        thresholds_file=False,
    )
    files = audio_files(negatives)
    traces, seconds = [], 0.0
    for path in files:
        t, s, duration = score_file(detector.scorer, path)
        traces.append((t, s))
        seconds += duration
    refractory = detector.settings.refractory_s
    times, scores = join_traces(traces, gap_s=2 * refractory + 1.0)
    hours = seconds / 3600.0
    allowed = int(math.floor(fa_per_hour * hours + 1e-9))
    thresholds, counts = {}, {}
    for k, keyword in enumerate(detector.keywords):
        thresholds[keyword], counts[keyword] = pick_threshold(times, scores[:, k], allowed, refractory, min_threshold)
    result = {
        "model": Path(model).name,
        "negatives": str(negatives),
        "negative_files": len(files),
        "negative_hours": round(hours, 6),
        "fa_per_hour_budget": fa_per_hour,
        "allowed_false_alarms": allowed,
        "hop_ms": detector.settings.hop_ms,
        "smoothing": detector.settings.smoothing,
        "refractory_s": refractory,
        "vad": vad,
        # Rounded *up*, so a stored threshold never falls below the peak it must stay above.
        "thresholds": {k: math.ceil(v * 1e6) / 1e6 for k, v in thresholds.items()},
        "false_alarms": counts,
        "false_alarms_per_hour": {k: round(c / hours, 3) if hours else 0.0 for k, c in counts.items()},
        "never_fire": sorted(k for k, v in thresholds.items() if v > 1.0),
    }
    out_path = Path(out) if out is not None else thresholds_path(model)
    write_json_atomic(out_path, result)
    result["path"] = str(out_path)
    return result
