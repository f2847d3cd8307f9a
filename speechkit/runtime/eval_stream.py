"""Streaming evaluation: recall and false alarms per hour against labelled keyword times.

Events are a JSON list ``[{"keyword": "yes", "start": 2.0, "end": 2.6}, ...]`` (seconds). A
detection *hits* an event of the same keyword when its time lies in
``[start - tolerance, end + tolerance]``; each event is hit at most once, and every detection
that hits nothing (including a second detection of an already-hit event) is a false alarm.
The audio is scored once; the DET curve re-runs only the trigger over the stored scores with one
common threshold swept from 0 to 1 (miss rate vs false alarms per hour).

Usage::

    speechkit eval-stream --model kws.onnx --audio stream.wav --events events.json --det-png det.png
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from speechkit.errors import SpeechkitError
from speechkit.fileio import atomic_path
from speechkit.runtime.calibrate import score_file
from speechkit.runtime.kws import KeywordDetector

DEFAULT_TOLERANCE_S = 0.5
#: Common thresholds of the DET sweep.
DET_THRESHOLDS = tuple(np.round(np.concatenate([np.linspace(0.02, 0.9, 45), np.linspace(0.91, 0.999, 30)]), 4))


@dataclass(frozen=True)
class Event:
    """A labelled keyword occurrence (seconds from the start of the audio)."""

    keyword: str
    start: float
    end: float


def load_events(path: str | os.PathLike, keywords: Sequence[str] | None = None) -> list[Event]:
    """Read and validate an events JSON file.

    Args:
        path: JSON list of ``{"keyword", "start", "end"}`` objects.
        keywords: if given, every event's keyword must be one of them.

    Raises:
        SpeechkitError: missing/invalid file, malformed entry, or unknown keyword.
    """
    path = Path(path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SpeechkitError(f"{path}: no such events file") from None
    except (OSError, ValueError) as exc:
        raise SpeechkitError(f"{path}: not valid JSON ({exc})") from None
    expected = 'expected a JSON list of {"keyword": str, "start": seconds, "end": seconds}'
    if not isinstance(raw, list):
        raise SpeechkitError(f"{path}: {expected}")
    events = []
    for i, item in enumerate(raw):
        try:
            event = Event(str(item["keyword"]), float(item["start"]), float(item["end"]))
        except (TypeError, KeyError, ValueError):
            raise SpeechkitError(f"{path}: entry {i} is {item!r}; {expected}") from None
        if not 0 <= event.start <= event.end:
            raise SpeechkitError(f"{path}: entry {i} has start {event.start} and end {event.end}; need 0 <= start <= end")
        if keywords is not None and event.keyword not in keywords:
            raise SpeechkitError(f"{path}: entry {i} has keyword {event.keyword!r}, not one of the model's keywords {list(keywords)}")
        events.append(event)
    return events


def match_detections(
    detections: Sequence[Mapping], events: Sequence[Event], tolerance_s: float = DEFAULT_TOLERANCE_S
) -> tuple[list[bool], list[Mapping]]:
    """Match detections to events greedily in time order.

    Returns:
        ``(hit, false_alarms)``: per event whether a detection hit it, and the unmatched detections.
    """
    hit = [False] * len(events)
    false_alarms = []
    for det in sorted(detections, key=lambda d: d["time"]):
        match = next(
            (
                i for i, ev in sorted(enumerate(events), key=lambda e: e[1].start)
                if not hit[i] and ev.keyword == det["keyword"] and ev.start - tolerance_s <= det["time"] <= ev.end + tolerance_s
            ),
            None,
        )
        if match is None:
            false_alarms.append(det)
        else:
            hit[match] = True
    return hit, false_alarms


def stream_metrics(
    detections: Sequence[Mapping], events: Sequence[Event], hours: float, tolerance_s: float = DEFAULT_TOLERANCE_S
) -> dict:
    """Recall, false alarms and false alarms per hour of one detection list."""
    hit, false_alarms = match_detections(detections, events, tolerance_s)
    return {
        "recall": sum(hit) / len(events) if events else None,  # JSON has no NaN
        "hits": sum(hit),
        "events": len(events),
        "false_alarms": len(false_alarms),
        "false_alarms_per_hour": len(false_alarms) / hours if hours > 0 else 0.0,
        "missed": [vars(ev) for ev, h in zip(events, hit) if not h],
        "false_alarm_detections": list(false_alarms),
    }


def evaluate_stream(
    model: str | os.PathLike,
    audio: str | os.PathLike,
    events: str | os.PathLike,
    thresholds: float | Mapping[str, float] | None = None,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
    det_png: str | os.PathLike | None = None,
    hop_ms: float | None = None,
    smoothing: int | None = None,
    refractory_s: float | None = None,
    vad: int | None = None,
) -> dict:
    """Run the streaming detector over ``audio`` and score it against ``events``.

    Args:
        model: KWS ``.onnx``; its thresholds file is used unless ``thresholds`` is given.
        audio: the stream (any length, rate, channel count).
        events: events JSON (see module docstring).
        thresholds, hop_ms, smoothing, refractory_s, vad: as :class:`KeywordDetector`.
        tolerance_s: slack around each event (seconds).
        det_png: write the DET curve there (``None``: no plot).

    Returns:
        ``{"recall", "false_alarms_per_hour", "hits", "events", "false_alarms", "hours",
        "thresholds", "detections", "missed", "per_keyword", "det"}``; ``det`` lists
        ``{"threshold", "miss_rate", "false_alarms_per_hour"}`` points.
    """
    detector = KeywordDetector(model, thresholds, hop_ms=hop_ms, smoothing=smoothing, refractory_s=refractory_s, vad=vad)
    labelled = load_events(events, detector.keywords)
    end_times, scores, seconds = score_file(detector.scorer, audio)
    hours = seconds / 3600.0
    detections = detector.detect_trace(end_times, scores)
    result = {
        **stream_metrics(detections, labelled, hours, tolerance_s),
        "hours": round(hours, 6),
        "tolerance_s": tolerance_s,
        "thresholds": detector.thresholds,
        "detections": detections,
    }
    result["per_keyword"] = {
        k: {key: v for key, v in stream_metrics(
            [d for d in detections if d["keyword"] == k], [e for e in labelled if e.keyword == k], hours, tolerance_s
        ).items() if key in ("recall", "hits", "events", "false_alarms", "false_alarms_per_hour")}
        for k in detector.keywords
    }
    result["det"] = [
        {"threshold": float(t), "miss_rate": 1.0 - m["recall"] if labelled else None, "false_alarms_per_hour": m["false_alarms_per_hour"]}
        for t in DET_THRESHOLDS
        for m in [stream_metrics(detector.detect_trace(end_times, scores, float(t)), labelled, hours, tolerance_s)]
    ]
    if det_png is not None:
        operating = (1.0 - result["recall"], result["false_alarms_per_hour"]) if labelled else None
        save_det_png(result["det"], det_png, operating=operating)
        result["det_png"] = str(det_png)
    return result


def save_det_png(points: Sequence[Mapping], path: str | os.PathLike, operating: tuple[float, float] | None = None) -> None:
    """Plot miss rate against false alarms per hour (log x when positive) to a PNG, atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fa = np.array([p["false_alarms_per_hour"] for p in points], dtype=float)
    miss = np.array([np.nan if p["miss_rate"] is None else p["miss_rate"] for p in points], dtype=float)
    order = np.argsort(fa, kind="stable")
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.plot(fa[order], 100 * miss[order], marker=".", label="common threshold sweep")
    if operating is not None:
        ax.plot([operating[1]], [100 * operating[0]], "o", color="C3", label="operating point")
    if (fa > 0).any():
        ax.set_xscale("symlog", linthresh=max(float(fa[fa > 0].min()), 0.1))
    ax.set_xlabel("false alarms per hour")
    ax.set_ylabel("miss rate (%)")
    ax.set_title("DET curve (streaming)")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
