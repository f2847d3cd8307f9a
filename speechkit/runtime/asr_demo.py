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

The input options (``--input``, ``--rate``, ``--channels``, ``--device``) and the live line are
every demo's (:mod:`speechkit.runtime.demo`); ``DEMO_MODE`` below makes this ``speechkit demo asr``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from speechkit.plugins import Subcommand
from speechkit.runtime.demo import StatusLine, add_input_arguments, pump_input


def add_demo_asr_args(p: argparse.ArgumentParser) -> None:
    """The ``demo asr`` options: model, decoding, endpoint rules, partials, and the input."""
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
    from speechkit.errors import SpeechkitError
    from speechkit.runtime.asr import StreamingRecognizer
    from speechkit.runtime.endpoint import EndpointConfig

    if args.beam_size < 1 or args.threads < 1:
        raise SpeechkitError(f"--beam-size and --threads must be at least 1, got {args.beam_size} and {args.threads}")
    endpoint = EndpointConfig.from_seconds(args.trailing_silence, args.no_speech_silence, args.max_utterance)
    out = StatusLine()
    recognizer = StreamingRecognizer(
        args.model, args.decoding, args.beam_size, endpoint, partials=args.partials or out.live,
        num_threads=args.threads,
    )
    return pump_input(
        args,
        lambda block, rate: _emit(recognizer.accept_waveform(block, rate), args.partials, out),
        lambda: _emit(recognizer.input_finished(), args.partials, out),
        out,
    )


def _emit(results, partials: bool, out: StatusLine) -> None:
    """Final results (and partials when asked) as JSON lines; the partial text on the live line."""
    for result in results:
        if result.final or partials:
            out.emit(result.to_dict())
        if not result.final:
            out.update("... " + result.text[-100:])


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


DEMO_MODE = Subcommand(
    "asr", "streaming speech recognition with an ASR .onnx: one JSON line per final result",
    add_demo_asr_args, run_demo_asr, order=20,
)


if __name__ == "__main__":
    sys.exit(main())
