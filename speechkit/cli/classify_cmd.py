"""``speechkit classify --model M.onnx FILE...``: classify audio files with any clip classifier (torch-free).

Prints one JSON line per file on stdout, ``{"file": ..., "label": ..., "score": ...}``, where
``score`` is the label's posterior averaged over the file's clip windows
(:class:`speechkit.runtime.classifier.ClipClassifier`). Works for every clip-classifier
artifact whatever its task (``scene``, ``kws``, ...); ``--task`` insists on one.

With ``--annotations FILE`` (lines ``start end ...`` in seconds, e.g. an ICBHI cycle file) or
``--windows`` (consecutive clip-length windows, ``--hop-seconds`` apart, the last one ending at
the file's end), one JSON line per segment instead: ``{"file", "start", "end", "label",
"score"}``. A segment becomes a clip the way the artifact's family prepares its training data:
a runtime module may declare ``SEGMENT_CLIPS = {task: fn(audio, segments, sample_rate,
clip_samples) -> (N, clip_samples)}`` (found by scanning :mod:`speechkit.runtime`); otherwise the
segment is cut out and zero-padded or cropped to the clip.

Usage::

    speechkit classify --model scene.onnx street.wav park.wav
    speechkit classify --model scene.onnx --all-scores street.wav
    speechkit classify --model model.onnx --audio rec.wav --annotations rec.txt
    speechkit classify --model model.onnx --audio rec.wav --windows
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

#: place in ``speechkit --help`` (see :func:`speechkit.cli.main.command_modules`).
ORDER = 45


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "classify", help="classify audio files with an exported clip classifier (scene, kws, ...)",
        description="Classify whole audio files with a clip-classifier ONNX model: files longer than the "
        "model's clip are cut into clip-length windows whose posteriors are averaged, shorter ones are "
        "zero-padded. One JSON line per file on stdout.",
    )
    p.add_argument("--model", type=Path, required=True, help="clip-classifier .onnx/.ort file from `speechkit export`")
    p.add_argument("files", type=Path, nargs="*", metavar="FILE", help="audio files (any rate and channel count)")
    p.add_argument("--audio", type=Path, action="append", default=[], help="an audio file (repeatable; same as FILE)")
    p.add_argument("--annotations", type=Path, default=None,
                   help="segments of the (one) audio file, 'start end ...' lines in seconds: one label per segment")
    p.add_argument("--windows", action="store_true", help="one label per clip-length window instead of one per file")
    p.add_argument("--hop-seconds", type=float, default=None, help="window hop with --windows (default: the clip length)")
    p.add_argument("--task", action="append", default=None,
                   help="accept only models of this speechkit.task (repeatable; default: any)")
    p.add_argument("--all-scores", action="store_true", help="add every label's averaged posterior as \"scores\"")
    p.add_argument("--threads", type=int, default=1, help="onnxruntime threads (default 1)")
    p.set_defaults(func=run_classify)


def run_classify(args: argparse.Namespace) -> int:
    from speechkit.errors import SpeechkitError
    from speechkit.runtime.classifier import ClipClassifier

    files = list(args.files) + list(args.audio)
    if not files:
        raise SpeechkitError("classify: give at least one audio file (FILE or --audio FILE)")
    if args.annotations is not None and len(files) != 1:
        raise SpeechkitError(f"classify: --annotations describes one recording, got {len(files)} audio files")
    classifier = ClipClassifier(args.model, tasks=args.task, num_threads=args.threads)
    if args.annotations is not None or args.windows:
        for path in files:
            for line in classify_segments(classifier, path, args.annotations, args.hop_seconds):
                print(json.dumps(line), flush=True)
        return 0
    for path in files:
        result = classifier.classify_file(path)
        line = {"file": str(path), "label": result["label"], "score": result["score"]}
        if args.all_scores:
            line["scores"] = result["probabilities"]
        print(json.dumps(line), flush=True)
    return 0


def read_segments(path: Path) -> list[tuple[float, float]]:
    """``start end ...`` lines (seconds; further fields ignored, blank lines skipped).

    Raises:
        SpeechkitError: missing file or a malformed line (file:line in the message).
    """
    from speechkit.errors import SpeechkitError

    if not path.is_file():
        raise SpeechkitError(f"{path}: no such annotation file")
    segments = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        try:
            start, end = float(fields[0]), float(fields[1])
        except (ValueError, IndexError):
            raise SpeechkitError(f"{path}:{lineno}: expected '<start s> <end s> ...', got {line.strip()!r}") from None
        if not 0 <= start < end < float("inf"):
            raise SpeechkitError(f"{path}:{lineno}: segment {start}..{end} s is empty or negative")
        segments.append((start, end))
    return segments


def window_segments(seconds: float, window: float, hop: float | None) -> list[tuple[float, float]]:
    """Windows ``[k hop, k hop + window)``; the last one ends at ``seconds`` (one window if shorter)."""
    hop = hop or window
    if seconds <= window:
        return [(0.0, seconds)]
    starts = list(np.arange(0.0, seconds - window + 1e-9, hop))
    if starts[-1] + window < seconds - 1e-9:
        starts.append(seconds - window)
    return [(float(s), float(s) + window) for s in starts]


def segment_policy(task: str):
    """The ``SEGMENT_CLIPS`` function a runtime module declares for ``task``, or the default cut."""
    from speechkit.plugins import import_submodules

    for module in import_submodules("speechkit.runtime"):
        policy = (getattr(module, "SEGMENT_CLIPS", None) or {}).get(task)
        if policy is not None:
            return policy
    return cut_segments


def cut_segments(audio: np.ndarray, segments, sample_rate: int, clip_samples: int) -> np.ndarray:
    """Default: each segment cut out, zero-padded at the end or cropped to ``clip_samples``."""
    clips = np.zeros((len(segments), clip_samples), dtype=np.float32)
    for i, (start, end) in enumerate(segments):
        piece = audio[int(start * sample_rate) : int(end * sample_rate)][:clip_samples]
        clips[i, : len(piece)] = piece
    return clips


def classify_segments(classifier, path: Path, annotations: Path | None, hop: float | None) -> list[dict]:
    """One ``{"file", "start", "end", "label", "score"}`` per annotated segment or window of ``path``."""
    from speechkit.errors import AudioError
    from speechkit.runtime.audio import read_audio

    audio, _ = read_audio(path, classifier.sample_rate)
    if audio.size == 0:
        raise AudioError(f"{path}: no audio samples")
    rate, clip = classifier.sample_rate, classifier.clip_samples
    segments = read_segments(annotations) if annotations is not None else window_segments(len(audio) / rate, clip / rate, hop)
    clips = segment_policy(classifier.task)(audio, segments, rate, clip)
    lines = []
    for i in range(0, len(clips), 16):
        for (start, end), probs in zip(segments[i : i + 16], classifier.probabilities(clips[i : i + 16])):
            best = int(np.argmax(probs))
            lines.append({"file": str(path), "start": round(start, 3), "end": round(end, 3),
                          "label": classifier.labels[best], "score": round(float(probs[best]), 4)})
    return lines
