"""Runtime commands on exported models (torch-free): ``demo``, ``calibrate``, ``eval-stream``.

``speechkit demo <mode>`` has one sub-command per model family. The modes are not listed here:
each is declared by a runtime module as ``DEMO_MODE`` (a :class:`speechkit.plugins.Subcommand`;
:func:`speechkit.runtime.demo.demo_modes` finds them), e.g. ``kws`` in
:mod:`speechkit.runtime.kws_demo` and ``asr`` in :mod:`speechkit.runtime.asr_demo`. Each prints
one JSON object per result on stdout and a live line on stderr when stderr is a terminal.

Usage::

    speechkit demo kws --model kws.onnx --input mic
    sox in.wav -t raw -r 16000 -e signed -b 16 -c 1 - | speechkit demo kws --model kws.onnx --input -
    speechkit calibrate --model kws.onnx --negatives noise/ --fa-per-hour 0.5
    speechkit eval-stream --model kws.onnx --audio stream.wav --events events.json --det-png det.png
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from speechkit.plugins import add_subparsers
from speechkit.runtime.demo import demo_modes
from speechkit.runtime.kws_demo import add_detector_arguments, parse_thresholds

#: position of these commands in ``speechkit --help`` (see :mod:`speechkit.cli.main`).
ORDER = 50


def register(sub: argparse._SubParsersAction) -> None:
    demo = sub.add_parser(
        "demo", help="run an exported model live on the microphone, a file or raw PCM on stdin",
        description="Run an exported model live. One JSON object per result on stdout.",
    )
    modes = demo.add_subparsers(dest="demo_mode", metavar="MODE")
    add_subparsers(modes, demo_modes())
    demo.set_defaults(func=lambda args: _missing_mode(demo))
    _add_calibrate_parser(sub)
    _add_eval_stream_parser(sub)


def _missing_mode(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return 2


# -- calibrate, eval-stream --------------------------------------------------------------------


def _add_calibrate_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "calibrate", help="pick per-keyword thresholds that meet a false-alarm budget on negative audio",
        description="Stream keyword-free audio through the detector and pick, per keyword, the lowest "
        "threshold that stays within --fa-per-hour. Writes <model>.thresholds.json next to the model "
        "(the detector loads it by default) and prints it as JSON.",
    )
    p.add_argument("--model", required=True, type=Path, help="KWS .onnx from `speechkit export`")
    p.add_argument("--negatives", required=True, type=Path, help="folder of wav/flac/ogg files, or one file, without keywords")
    p.add_argument("--fa-per-hour", type=float, default=0.5, help="false-alarm budget per keyword (default 0.5)")
    p.add_argument("--hop-ms", type=float, default=None, help="time between evaluations (default 100)")
    p.add_argument("--smoothing", type=int, default=None, help="posterior moving average in evaluations (default 3)")
    p.add_argument("--refractory", type=float, default=None, help="seconds without detections after one (default: one clip)")
    p.add_argument("--vad", type=int, default=None, choices=[0, 1, 2, 3], help="gate with webrtcvad")
    p.add_argument("--min-threshold", type=float, default=0.5, help="lowest threshold to return (default 0.5)")
    p.add_argument("--out", type=Path, default=None, help="output JSON (default <model>.thresholds.json)")
    p.set_defaults(func=_run_calibrate)


def _run_calibrate(args: argparse.Namespace) -> int:
    from speechkit.runtime.calibrate import calibrate

    result = calibrate(
        args.model, args.negatives, args.fa_per_hour, hop_ms=args.hop_ms, smoothing=args.smoothing,
        refractory_s=args.refractory, vad=args.vad, min_threshold=args.min_threshold, out=args.out,
    )
    print(json.dumps(result, indent=2))
    if result["never_fire"]:
        print(f"warning: {', '.join(result['never_fire'])} scored 1.0 on the negatives; they can never fire "
              "at this budget (check the negatives really hold no keywords)", file=sys.stderr)
    return 0


def _add_eval_stream_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval-stream", help="recall and false alarms per hour of the streaming detector on labelled audio",
        description="Run the streaming detector over --audio and match its detections to the labelled "
        "--events (JSON list of {keyword, start, end} in seconds). Prints JSON with recall and "
        "false_alarms_per_hour; --det-png plots miss rate vs false alarms per hour over thresholds.",
    )
    add_detector_arguments(p)
    p.add_argument("--audio", required=True, type=Path, help="the stream (wav/flac/ogg, any rate and channels)")
    p.add_argument("--events", required=True, type=Path, help="JSON list of {keyword, start, end} (seconds)")
    p.add_argument("--tolerance", type=float, default=0.5, help="slack around each event in seconds (default 0.5)")
    p.add_argument("--det-png", type=Path, default=None, help="write the DET curve to this PNG")
    p.set_defaults(func=_run_eval_stream)


def _run_eval_stream(args: argparse.Namespace) -> int:
    from speechkit.runtime.eval_stream import evaluate_stream

    result = evaluate_stream(
        args.model, args.audio, args.events, parse_thresholds(args.threshold), args.tolerance, args.det_png,
        hop_ms=args.hop_ms, smoothing=args.smoothing, refractory_s=args.refractory, vad=args.vad,
    )
    result.pop("det")  # the sweep is in the PNG; keep stdout readable
    print(json.dumps(result, indent=2))
    return 0
