"""``speechkit quickstart [kws|asr]``: the main jobs on synthetic speech, with no downloads."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "quickstart",
        help="synthesize speech, train, test, export and stream a keyword spotter (or `quickstart asr`)",
        description="Synthesize a Speech Commands-style corpus with espeak-ng, train BC-ResNet-1, "
        "test it on held-out voices, export it to ONNX and run the streaming detector over a "
        "synthesized stream. `speechkit quickstart asr` does the same for streaming ASR.",
    )
    p.add_argument("job", nargs="?", default="kws", choices=["kws", "asr"], help="which quickstart (default kws)")
    p.add_argument("--keywords", default=None, help="comma-separated keywords (default: the 10 Speech Commands words)")
    p.add_argument("--out", type=Path, default=None, help="run folder (default: a new runs/quickstart[-N])")
    p.add_argument("--speakers", type=int, default=None, help="number of synthetic speakers")
    p.add_argument("--epochs", type=int, default=None, help="training epochs")
    p.add_argument("--stream-keywords", type=int, default=None, help="keyword occurrences in the test stream (default 40)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from speechkit.errors import SpeechkitError

    if args.job == "asr":
        try:
            from speechkit.quickstart import asr
        except ModuleNotFoundError as exc:
            raise SpeechkitError("the ASR quickstart is not available in this version") from exc
        return asr.main(args)
    from speechkit.quickstart import kws

    opts = kws.QuickstartOptions(seed=args.seed, out=args.out)
    if args.keywords:
        words = tuple(w.strip().lower() for w in args.keywords.split(",") if w.strip())
        if not words:
            raise SpeechkitError("--keywords: give at least one keyword")
        opts.keywords = words
    if args.speakers is not None:
        opts.speakers = args.speakers
    if args.epochs is not None:
        opts.epochs = args.epochs
    if args.stream_keywords is not None:
        opts.stream_keywords = args.stream_keywords
    kws.run(opts)
    return 0
