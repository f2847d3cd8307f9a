"""``speechkit demo kws``: live keyword spotting with a KWS artifact (no torch).

One JSON object per detection on stdout, ``{"time": s, "keyword": str, "score": p}`` (``time``
in seconds from the start of the input), and, when stderr is a terminal, a self-overwriting
line there with the input level and each keyword's smoothed score.

Usage::

    speechkit demo kws --model kws.onnx --input mic
    speechkit demo kws --model kws_stream.onnx --input recording.wav   # the stateful artifact
    sox in.wav -t raw -r 16000 -e signed -b 16 -c 1 - | speechkit demo kws --model kws.onnx --input -

The detector options (:func:`add_detector_arguments`, :func:`parse_thresholds`) are shared with
``speechkit calibrate`` and ``speechkit eval-stream``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from speechkit.errors import SpeechkitError
from speechkit.plugins import Subcommand
from speechkit.runtime.demo import StatusLine, add_input_arguments, level_meter, pump_input


def add_detector_arguments(p: argparse.ArgumentParser, user_models: bool = False) -> None:
    """Options of :class:`speechkit.runtime.kws.KeywordDetector` (``--model``, ``--threshold``, ...);
    ``user_models``: also the options of detectors built from a user's enrolment: ``--enroll``
    (few-shot words, :mod:`speechkit.runtime.fewshot`) and ``--profile/--mode/--verbose``
    (personal KWS, :mod:`speechkit.runtime.personal`). Only ``demo kws`` takes them."""
    p.add_argument("--model", required=True, type=Path,
                   help="KWS .onnx from `speechkit export`: the fixed-window kws.onnx or the stateful kws_stream.onnx")
    p.add_argument("--threshold", default=None,
                   help="one threshold for every keyword (e.g. 0.8) or per keyword (yes=0.8,no=0.7); "
                   "default: <model>.thresholds.json if present, else 0.5")
    p.add_argument("--hop-ms", type=float, default=None, help="time between evaluations (default 100, or the calibrated value)")
    p.add_argument("--smoothing", type=int, default=None, help="posterior moving average in evaluations (default 3)")
    p.add_argument("--refractory", type=float, default=None, help="seconds without detections after one (default: one clip)")
    p.add_argument("--vad", type=int, default=None, choices=[0, 1, 2, 3], help="gate with webrtcvad at this aggressiveness")
    if not user_models:
        return
    p.add_argument("--enroll", type=Path, nargs="+", default=None, metavar="FILE",
                   help="few-shot KWS: prototype files of `speechkit enroll-keyword` (one word each); --model is "
                   "then the embedding .onnx they were enrolled with")
    p.add_argument("--profile", type=Path, default=None,
                   help="personal KWS: the user's profile from `speechkit enroll` (--model: its personal-kws .onnx)")
    p.add_argument("--mode", choices=["tb", "to"], default="to",
                   help="personal KWS: 'to' fires for the enrolled voice only, 'tb' for anyone (default to)")
    p.add_argument("--verbose", action="store_true",
                   help="personal KWS: also print detections suppressed by --mode to (\"suppressed\": true)")


def parse_thresholds(text: str | None) -> float | dict[str, float] | None:
    """``--threshold`` text to the detector's ``thresholds`` argument.

    >>> parse_thresholds("0.8"), parse_thresholds("yes=0.8,no=0.7"), parse_thresholds(None)
    (0.8, {'yes': 0.8, 'no': 0.7}, None)

    Raises:
        SpeechkitError: neither a number nor ``keyword=number,...``.
    """
    if text is None:
        return None
    try:
        if "=" not in text:
            return float(text)
        pairs = [item.split("=", 1) for item in text.split(",") if item.strip()]
        return {k.strip(): float(v) for k, v in pairs}
    except ValueError:
        raise SpeechkitError(f"--threshold {text!r}: expected a number or keyword=number,keyword=number") from None


def detector_from_args(args: argparse.Namespace):
    """A :class:`~speechkit.runtime.kws.KeywordDetector` from the :func:`add_detector_arguments` options."""
    from speechkit.runtime.kws import KeywordDetector

    if getattr(args, "enroll", None) and getattr(args, "profile", None) is not None:
        raise SpeechkitError("--enroll and --profile need different models (a few-shot embedding, a personal KWS): give one")
    if getattr(args, "enroll", None):  # few-shot: enrolled words over an embedding model
        from speechkit.runtime.fewshot import enrolled_detector

        return enrolled_detector(args.model, args.enroll, parse_thresholds(args.threshold), hop_ms=args.hop_ms,
                                 smoothing=args.smoothing, refractory_s=args.refractory, vad=args.vad)
    if getattr(args, "profile", None) is not None:  # personal KWS: the profile's keyword, speaker-checked
        from speechkit.runtime.personal import PersonalKeywordDetector

        return PersonalKeywordDetector(args.model, args.profile, mode=args.mode, verbose=args.verbose,
                                       thresholds=parse_thresholds(args.threshold), hop_ms=args.hop_ms,
                                       smoothing=args.smoothing, refractory_s=args.refractory, vad=args.vad)
    return KeywordDetector(
        args.model, parse_thresholds(args.threshold), hop_ms=args.hop_ms, smoothing=args.smoothing,
        refractory_s=args.refractory, vad=args.vad, call_ms=getattr(args, "call_ms", None),
    )


def add_kws_demo_arguments(p: argparse.ArgumentParser) -> None:
    """The ``demo kws`` options: the detector's, then the input's."""
    add_detector_arguments(p, user_models=True)
    p.add_argument("--call-ms", type=float, default=None,
                   help="stateful *_stream.onnx only: least audio per model call (default 500); longer calls "
                   "cost less CPU and add latency, detections stay the same")
    add_input_arguments(p)


def run_kws_demo(args: argparse.Namespace) -> int:
    """Stream the input through the detector; JSON lines on stdout, live meter on a TTY stderr."""
    detector = detector_from_args(args)
    out = StatusLine()

    def feed(block, rate) -> None:
        out.emit_all(detector.accept_waveform(block, rate))
        out.update(level_meter(detector.level_db, detector.last_scores, detector.keywords))

    return pump_input(args, feed, lambda: out.emit_all(detector.input_finished()), out)


DEMO_MODE = Subcommand(
    "kws", "keyword spotting with a KWS .onnx: one JSON line per detection",
    add_kws_demo_arguments, run_kws_demo, order=10,
)
