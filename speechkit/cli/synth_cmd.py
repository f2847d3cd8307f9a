"""``speechkit synth``: synthetic corpora in the layouts of real ones (espeak-ng and SVOX Pico voices).

    speechkit synth speech-commands OUT [--words yes,no,...] [--speakers N] [--seed S] ...
    speechkit synth librispeech OUT [--subsets train-clean-100,dev-clean,test-clean] ...

The layouts are declared by the modules of :mod:`speechkit.data.synth` (``SYNTH =``
:class:`speechkit.plugins.Subcommand`); every one takes ``OUT``, ``--seed`` and ``--jobs``
(added here), ``--engines`` (``espeak``, ``pico`` or a weighted mix such as ``espeak:3,pico:1``:
:mod:`speechkit.data.synth.engines`) and ``--cache DIR`` / ``--no-cache`` (utterances cached by
content hash, default ``~/.cache/speechkit/synth``, so a second run reuses them). The output folders can be read by ``speechkit prepare speech-commands|librispeech``
exactly as the real corpora are. Same arguments, same bytes.
"""

from __future__ import annotations

import argparse

from speechkit.plugins import add_subparsers, declared

#: position of this command in ``speechkit --help`` (see :mod:`speechkit.cli.main`).
ORDER = 20


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "synth",
        help="synthesize a corpus with espeak-ng / SVOX Pico voices (Speech Commands or LibriSpeech layout)",
        description="Synthesize a speech corpus with pip-installed speech engines (espeak-ng, SVOX Pico), "
        "laid out like a real one.",
    )
    corpora = parser.add_subparsers(dest="corpus", metavar="CORPUS", required=True)
    add_subparsers(corpora, declared("speechkit.data.synth", "SYNTH"), before=_add_out, after=_add_seed_and_jobs)


def _add_out(p: argparse.ArgumentParser) -> None:
    p.add_argument("out", metavar="OUT", help="output folder (must not exist, or be empty)")


def _add_seed_and_jobs(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seed", type=int, default=0, help="random seed; same seed, same files (default: %(default)s)")
    p.add_argument(
        "--jobs", type=int, default=1, help="worker processes; does not change the output (default: %(default)s)"
    )
    p.add_argument(
        "--engines", default="espeak",
        help="speech engines the speakers are dealt from: espeak, pico, or a weighted mix such as "
        "'espeak:3,pico:1' (default: %(default)s)",
    )  # fmt: skip
    p.add_argument(
        "--cache", default=None, metavar="DIR",
        help="cache synthesized utterances by content hash here (default: ~/.cache/speechkit/synth)",
    )  # fmt: skip
    p.add_argument("--no-cache", action="store_true", help="synthesize everything, cache nothing")

