"""Runtime commands on exported models (torch-free): ``demo``, ``calibrate``, ``eval-stream``.

``speechkit demo kws --model M.onnx --input mic|FILE|-`` prints one JSON line per detection on
stdout, ``{"time": s, "keyword": str, "score": p}``, and a live level/score line on stderr when
stderr is a terminal. ``demo`` has one sub-command per model family; families add theirs with
:func:`register_demo_mode` (safe before or after :func:`register` built the parser), and reuse
:func:`add_input_arguments` / :func:`open_input` for the same ``--input`` handling::

    from speechkit.cli.runtime_cmd import register_demo_mode
    register_demo_mode("asr", "live streaming ASR", add_asr_demo_args, run_asr_demo)

Usage::

    speechkit demo kws --model kws.onnx --input mic
    sox in.wav -t raw -r 16000 -e signed -b 16 -c 1 - | speechkit demo kws --model kws.onnx --input -
    speechkit calibrate --model kws.onnx --negatives noise/ --fa-per-hour 0.5
    speechkit eval-stream --model kws.onnx --audio stream.wav --events events.json --det-png det.png
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator


@dataclass
class DemoMode:
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int | None]


#: demo sub-command name -> its parser setup and runner.
DEMO_MODES: dict[str, DemoMode] = {}
_demo_subparsers: argparse._SubParsersAction | None = None
_demo_added: set[str] = set()


def register_demo_mode(
    name: str,
    help: str,
    add_arguments: Callable[[argparse.ArgumentParser], None],
    run: Callable[[argparse.Namespace], int | None],
) -> None:
    """Add ``speechkit demo <name>``.

    Args:
        name: sub-command name (``kws``, ``asr``).
        help: one-line help.
        add_arguments: adds the mode's options (call :func:`add_input_arguments` for ``--input``).
        run: ``fn(args) -> exit status | None``.
    """
    DEMO_MODES[name] = DemoMode(help, add_arguments, run)
    if _demo_subparsers is not None and name not in _demo_added:
        _add_demo_parser(name)


def _add_demo_parser(name: str) -> None:
    mode = DEMO_MODES[name]
    p = _demo_subparsers.add_parser(name, help=mode.help, description=mode.help)
    mode.add_arguments(p)
    p.set_defaults(func=mode.run)
    _demo_added.add(name)


def register(sub: argparse._SubParsersAction) -> None:
    global _demo_subparsers
    demo = sub.add_parser(
        "demo", help="run an exported model live on the microphone, a file or raw PCM on stdin",
        description="Run an exported model live. One JSON object per result on stdout.",
    )
    _demo_subparsers = demo.add_subparsers(dest="demo_mode", metavar="MODE")
    _demo_added.clear()
    demo.set_defaults(func=lambda args: _missing_mode(demo))
    for name in DEMO_MODES:
        _add_demo_parser(name)
    _add_calibrate_parser(sub)
    _add_eval_stream_parser(sub)


def _missing_mode(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return 2


# -- shared options ----------------------------------------------------------------------------


def add_input_arguments(p: argparse.ArgumentParser) -> None:
    """``--input mic|FILE|-`` with ``--rate``/``--channels`` (stdin) and ``--device`` (mic)."""
    p.add_argument("--input", required=True, metavar="mic|FILE|-",
                   help="`mic` (sounddevice), an audio file, or `-` for raw 16-bit little-endian PCM on stdin")
    p.add_argument("--rate", type=int, default=16000, help="sample rate of raw PCM on stdin (Hz, default 16000)")
    p.add_argument("--channels", type=int, default=1, help="channels of raw PCM on stdin (default 1)")
    p.add_argument("--device", default=None, help="microphone: sounddevice index or name (default: system input)")


def open_input(args: argparse.Namespace) -> Iterator:
    """Blocks ``(samples (n, C) float32, rate)`` from the source ``--input`` names."""
    from speechkit.errors import AudioError
    from speechkit.runtime.audio import iter_audio_file, iter_pcm16

    if args.input == "mic":
        from speechkit.runtime.mic import iter_microphone

        device = int(args.device) if args.device is not None and str(args.device).isdigit() else args.device
        return iter_microphone(device)
    if args.input == "-":
        if args.rate <= 0 or args.channels <= 0:
            raise AudioError(f"--rate and --channels must be positive, got {args.rate} and {args.channels}")
        return iter_pcm16(sys.stdin.buffer, args.rate, args.channels)
    return iter_audio_file(args.input)


def add_detector_arguments(p: argparse.ArgumentParser) -> None:
    """Options of :class:`speechkit.runtime.kws.KeywordDetector`."""
    p.add_argument("--model", required=True, type=Path, help="KWS .onnx from `speechkit export`")
    p.add_argument("--threshold", default=None,
                   help="one threshold for every keyword (e.g. 0.8) or per keyword (yes=0.8,no=0.7); "
                   "default: <model>.thresholds.json if present, else 0.5")
    p.add_argument("--hop-ms", type=float, default=None, help="time between evaluations (default 100, or the calibrated value)")
    p.add_argument("--smoothing", type=int, default=None, help="posterior moving average in evaluations (default 3)")
    p.add_argument("--refractory", type=float, default=None, help="seconds without detections after one (default: one clip)")
    p.add_argument("--vad", type=int, default=None, choices=[0, 1, 2, 3], help="gate with webrtcvad at this aggressiveness")


def parse_thresholds(text: str | None) -> float | dict[str, float] | None:
    """``"0.8"`` -> 0.8; ``"yes=0.8,no=0.7"`` -> dict; ``None`` -> None."""
    from speechkit.errors import SpeechkitError

    if text is None:
        return None
    try:
        if "=" not in text:
            return float(text)
        pairs = [item.split("=", 1) for item in text.split(",") if item.strip()]
        return {k.strip(): float(v) for k, v in pairs}
    except ValueError:
        raise SpeechkitError(f"--threshold {text!r}: expected a number or keyword=number,keyword=number") from None


def _detector(args: argparse.Namespace):
    from speechkit.runtime.kws import KeywordDetector

    return KeywordDetector(
        args.model, parse_thresholds(args.threshold), hop_ms=args.hop_ms, smoothing=args.smoothing,
        refractory_s=args.refractory, vad=args.vad,
    )


# -- demo kws ----------------------------------------------------------------------------------


def _add_kws_demo_arguments(p: argparse.ArgumentParser) -> None:
    add_detector_arguments(p)
    add_input_arguments(p)


def run_kws_demo(args: argparse.Namespace) -> int:
    """Stream the input through the detector; JSON lines on stdout, live meter on a TTY stderr."""
    detector = _detector(args)
    display = LiveDisplay(sys.stderr, detector.keywords) if sys.stderr.isatty() else None

    def feed(block, rate) -> None:
        _emit(detector.accept_waveform(block, rate), display)
        if display is not None:
            display.update(detector.level_db, detector.last_scores)

    return pump_input(args, feed, lambda: _emit(detector.input_finished(), display), display)


def pump_input(args: argparse.Namespace, feed: Callable, finish: Callable[[], None], display=None) -> int:
    """Feed every input block to ``feed(block, rate)``, then call ``finish()``; close ``display``.

    A reader that goes away (``| head -1``) ends the demo quietly with status 0.
    """
    try:
        for block, rate in open_input(args):
            feed(block, rate)
        finish()
    except BrokenPipeError:
        # Point stdout at /dev/null so the interpreter's final flush does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    finally:
        if display is not None:
            display.close()
    return 0


def _emit(detections: list[dict], display: LiveDisplay | None) -> None:
    for det in detections:
        if display is not None:
            display.clear()
        print(json.dumps(det), flush=True)


class LiveDisplay:
    """One self-overwriting stderr line: input level and each keyword's smoothed score."""

    def __init__(self, stream, keywords: list[str]) -> None:
        self.stream = stream
        self.keywords = keywords
        self._width = 0

    def update(self, level_db: float, scores: dict[str, float]) -> None:
        filled = int(max(0.0, min(1.0, (level_db + 60.0) / 60.0)) * 20)
        line = f"level {level_db:6.1f} dB [{'#' * filled:<20}]  " + "  ".join(
            f"{k} {scores.get(k, 0.0):.2f}" for k in self.keywords[:8]
        )
        self._width = max(self._width, len(line))
        self.stream.write("\r" + line.ljust(self._width))
        self.stream.flush()

    def clear(self) -> None:
        if self._width:
            self.stream.write("\r" + " " * self._width + "\r")
            self.stream.flush()

    def close(self) -> None:
        self.clear()


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


register_demo_mode("kws", "keyword spotting with a KWS .onnx: one JSON line per detection", _add_kws_demo_arguments, run_kws_demo)


def _add_asr_demo_arguments(p: argparse.ArgumentParser) -> None:
    from speechkit.runtime.asr_demo import add_demo_asr_args

    add_demo_asr_args(p)


def _run_asr_demo(args: argparse.Namespace) -> int | None:
    from speechkit.runtime.asr_demo import run_demo_asr

    return run_demo_asr(args)


register_demo_mode(
    "asr", "streaming speech recognition with an ASR .onnx: one JSON line per final result",
    _add_asr_demo_arguments, _run_asr_demo,
)
