"""``speechkit demo asr``: live transcription with a streaming ASR artifact (no torch).

One JSON object per final result on stdout, ``{"time": s, "text": str, "final": true, "end": s,
"words": [{"word", "start", "end"}]}`` (``time`` is the start of the utterance's first word, in
seconds from the start of the input); with ``--partials`` also the partial results, with
``"final": false``. When stderr is a terminal, a self-overwriting line there shows the current
partial text.

Usage::

    speechkit demo asr --model asr.onnx --input mic
    speechkit demo asr --model asr.onnx --input recording.wav --partials
    sox in.wav -t raw -r 16000 -e signed -b 16 -c 1 - | speechkit demo asr --model asr.onnx --input -

The input options (``--input``, ``--rate``, ``--channels``, ``--device``) are the KWS demo's
(:func:`speechkit.cli.runtime_cmd.add_input_arguments`).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def add_demo_asr_args(p: argparse.ArgumentParser) -> None:
    """The ``demo asr`` options: model, decoding, endpoint rules, partials, and the input."""
    from speechkit.cli.runtime_cmd import add_input_arguments

    p.add_argument("--model", required=True, type=Path, help="streaming ASR .onnx from `speechkit export --streaming`")
    p.add_argument("--partials", action="store_true", help="also print partial results ({\"final\": false})")
    p.add_argument("--decoding", choices=("greedy", "beam"), default="greedy", help="CTC search (default greedy)")
    p.add_argument("--beam-size", type=int, default=4, help="prefixes kept by --decoding beam (default 4)")
    p.add_argument("--trailing-silence", type=float, default=1.2,
                   help="seconds of silence after speech that end an utterance (default 1.2)")
    p.add_argument("--no-speech-silence", type=float, default=2.4,
                   help="seconds of silence without speech after which the stream is reset (default 2.4)")
    p.add_argument("--max-utterance", type=float, default=20.0, help="longest utterance in seconds (default 20)")
    p.add_argument("--threads", type=int, default=1, help="onnxruntime threads (default 1)")
    add_input_arguments(p)


def run_demo_asr(args: argparse.Namespace) -> int:
    """Stream the input through :class:`~speechkit.runtime.asr.StreamingRecognizer`; JSON lines out."""
    from speechkit.cli.runtime_cmd import pump_input
    from speechkit.errors import SpeechkitError
    from speechkit.runtime.asr import StreamingRecognizer
    from speechkit.runtime.endpoint import EndpointConfig

    if args.beam_size < 1 or args.threads < 1:
        raise SpeechkitError(f"--beam-size and --threads must be at least 1, got {args.beam_size} and {args.threads}")
    endpoint = EndpointConfig.from_seconds(args.trailing_silence, args.no_speech_silence, args.max_utterance)
    live = sys.stderr.isatty()
    recognizer = StreamingRecognizer(
        args.model, args.decoding, args.beam_size, endpoint, partials=args.partials or live, num_threads=args.threads,
    )
    display = LiveLine(sys.stderr) if live else None
    return pump_input(
        args,
        lambda block, rate: _emit(recognizer.accept_waveform(block, rate), args.partials, display),
        lambda: _emit(recognizer.input_finished(), args.partials, display),
        display,
    )


def _emit(results, partials: bool, display: LiveLine | None) -> None:
    for result in results:
        if result.final or partials:
            if display is not None:
                display.clear()
            print(json.dumps(result.to_dict()), flush=True)
        if display is not None and not result.final:
            display.update(result.text)


class LiveLine:
    """One self-overwriting stderr line with the current partial text (its last 100 characters)."""

    def __init__(self, stream) -> None:
        self.stream = stream
        self._width = 0

    def update(self, text: str) -> None:
        line = "... " + text[-100:]
        self._width = max(self._width, len(line))
        self.stream.write("\r" + line.ljust(self._width))
        self.stream.flush()

    def clear(self) -> None:
        if self._width:
            self.stream.write("\r" + " " * self._width + "\r")
            self.stream.flush()
            self._width = 0

    def close(self) -> None:
        self.clear()


def main(argv: list[str] | None = None) -> int:
    """Run the demo as a script (``python -m speechkit.runtime.asr_demo ...``); one-line errors."""
    from speechkit.errors import SpeechkitError

    parser = argparse.ArgumentParser(prog="asr_demo", description=__doc__.split("\n\n")[0])
    add_demo_asr_args(parser)
    try:
        return run_demo_asr(parser.parse_args(argv))
    except SpeechkitError as exc:
        print(f"asr_demo: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
