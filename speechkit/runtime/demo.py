"""Live demo input and output shared by every ``speechkit demo <mode>`` (no torch).

* Input: :func:`add_input_arguments` (``--input mic|FILE|-``, ``--rate``, ``--channels``,
  ``--device``), :func:`open_input` (blocks from that source) and :func:`pump_input` (feed every
  block to a streaming model, end quietly when the reader of stdout goes away).
* Output: :class:`StatusLine`, one JSON object per result on stdout and, when stderr is a
  terminal, one self-overwriting status line there (the KWS level meter, the ASR partial text).
* Modes: a runtime module declares its mode as a module-level ``DEMO_MODE =``
  :class:`speechkit.plugins.Subcommand`; :func:`demo_modes` finds them all (``speechkit demo``
  lists them), :func:`run_demo` runs one from Python as the command line would.

A new mode, e.g. in ``speechkit/runtime/my_family_demo.py``::

    from speechkit.plugins import Subcommand
    from speechkit.runtime.demo import StatusLine, add_input_arguments, pump_input

    def add_arguments(p):
        p.add_argument("--model", required=True)
        add_input_arguments(p)

    def run(args):
        model, out = MyStreamingModel(args.model), StatusLine()
        return pump_input(args, lambda block, rate: out.emit_all(model.accept_waveform(block, rate)),
                          lambda: out.emit_all(model.input_finished()), out)

    DEMO_MODE = Subcommand("mine", "one line of help", add_arguments, run)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence

import numpy as np

from speechkit.errors import AudioError, SpeechkitError
from speechkit.plugins import Subcommand, declared

#: the package whose modules declare ``DEMO_MODE``.
DEMO_PACKAGE = "speechkit.runtime"


def demo_modes() -> list[Subcommand]:
    """Every ``DEMO_MODE`` declared by a module of :mod:`speechkit.runtime`, in listing order."""
    return declared(DEMO_PACKAGE, "DEMO_MODE")


def run_demo(name: str, argv: Sequence[str]) -> int:
    """Run ``speechkit demo <name> argv...`` in this process (results on ``sys.stdout``).

    Raises:
        SpeechkitError: no such mode; whatever the mode raises (bad model file, unreadable input).
    """
    modes = {mode.name: mode for mode in demo_modes()}
    if name not in modes:
        raise SpeechkitError(f"no demo mode {name!r}; known: {', '.join(modes) or 'none'}")
    mode = modes[name]
    parser = argparse.ArgumentParser(prog=f"speechkit demo {name}", description=mode.description or mode.help)
    mode.add_arguments(parser)
    return int(mode.run(parser.parse_args(list(argv))) or 0)


# -- input ---------------------------------------------------------------------------------------


def add_input_arguments(p: argparse.ArgumentParser) -> None:
    """``--input mic|FILE|-`` with ``--rate``/``--channels`` (stdin) and ``--device`` (mic)."""
    p.add_argument("--input", required=True, metavar="mic|FILE|-",
                   help="`mic` (sounddevice), an audio file, or `-` for raw 16-bit little-endian PCM on stdin")
    p.add_argument("--rate", type=int, default=16000, help="sample rate of raw PCM on stdin (Hz, default 16000)")
    p.add_argument("--channels", type=int, default=1, help="channels of raw PCM on stdin (default 1)")
    p.add_argument("--device", default=None, help="microphone: sounddevice index or name (default: system input)")


def open_input(args: argparse.Namespace) -> Iterator[tuple[np.ndarray, int]]:
    """Blocks ``(samples (n, C) float32 in [-1, 1], rate in Hz)`` from the source ``--input`` names.

    Raises:
        AudioError: ``--rate``/``--channels`` not positive for stdin; the file cannot be read.
        SpeechkitError: no usable microphone (see :mod:`speechkit.runtime.mic`).
    """
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


def pump_input(
    args: argparse.Namespace,
    feed: Callable[[np.ndarray, int], None],
    finish: Callable[[], None],
    display: StatusLine | None = None,
) -> int:
    """Feed every input block to ``feed(block, rate)``, then call ``finish()``; close ``display``.

    A reader that goes away (``| head -1``) ends the demo quietly with status 0.

    Returns:
        0.
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


# -- output --------------------------------------------------------------------------------------


class StatusLine:
    """Results as JSON lines on stdout, and one self-overwriting status line on ``stream``.

    The status line is drawn only when ``live`` (default: ``stream`` is a terminal), so piped
    or redirected stderr stays empty; results are always printed. Before a result is printed
    the status line is wiped, so the two never mix on a terminal.

    Args:
        stream: where the status line goes (default ``sys.stderr``).
        live: draw the status line; ``None``: when ``stream.isatty()``.
    """

    def __init__(self, stream=None, live: bool | None = None) -> None:
        self.stream = sys.stderr if stream is None else stream
        self.live = self.stream.isatty() if live is None else live
        self._width = 0

    def update(self, line: str) -> None:
        """Replace the status line with ``line`` (one line, no newline)."""
        if not self.live:
            return
        self._width = max(self._width, len(line))
        self.stream.write("\r" + line.ljust(self._width))
        self.stream.flush()

    def clear(self) -> None:
        """Wipe the status line (the next :meth:`update` draws a new one)."""
        if self._width:
            self.stream.write("\r" + " " * self._width + "\r")
            self.stream.flush()
            self._width = 0

    def close(self) -> None:
        self.clear()

    def emit(self, record: dict) -> None:
        """Print ``record`` as one JSON line on stdout (flushed), below any status line."""
        self.clear()
        print(json.dumps(record), flush=True)

    def emit_all(self, records: Iterable[dict]) -> None:
        for record in records:
            self.emit(record)


def level_meter(level_db: float, scores: dict[str, float], keywords: Sequence[str], max_keywords: int = 8) -> str:
    """The KWS status text: input level as a 20-character bar over -60..0 dBFS, then each
    keyword's smoothed score (the first ``max_keywords``).

    >>> level_meter(-30.0, {"yes": 0.5}, ["yes", "no"])
    'level  -30.0 dB [##########          ]  yes 0.50  no 0.00'
    """
    filled = int(max(0.0, min(1.0, (level_db + 60.0) / 60.0)) * 20)
    return f"level {level_db:6.1f} dB [{'#' * filled:<20}]  " + "  ".join(
        f"{k} {scores.get(k, 0.0):.2f}" for k in keywords[:max_keywords]
    )
