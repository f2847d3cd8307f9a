"""``speechkit prepare <corpus> CORPUS_DIR OUT_DIR``: raw corpus folder -> lhotse manifests.

The corpora are declared by the modules of :mod:`speechkit.data.corpora` (``PREPARE =``
:class:`speechkit.plugins.Subcommand`): today ``speech-commands`` (v1/v2, 12-class / all-word /
custom keywords), ``librispeech``, ``tau2020-mobile``. Every corpus takes ``CORPUS_DIR OUT_DIR
[--num-jobs N]`` (added here) and prints a one-paragraph summary (cuts per split and class) at
the end.
"""

from __future__ import annotations

import argparse

from speechkit.plugins import add_subparsers, declared

#: position of this command in ``speechkit --help`` (see :mod:`speechkit.cli.main`).
ORDER = 30


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "prepare",
        help="turn a raw corpus folder into lhotse manifests",
        description="Turn a raw corpus folder into lhotse CutSet manifests (cuts_<split>.jsonl.gz, "
        "labels.json) in OUT_DIR. See data_prep/README.md.",
    )
    sub = parser.add_subparsers(dest="corpus", metavar="CORPUS")
    add_subparsers(sub, declared("speechkit.data.corpora", "PREPARE"), before=_add_common)

    def no_corpus(args: argparse.Namespace) -> int:
        parser.print_help()
        return 2

    parser.set_defaults(func=no_corpus)


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("corpus_dir", metavar="CORPUS_DIR", help="the extracted corpus folder")
    p.add_argument("out_dir", metavar="OUT_DIR", help="where the manifests are written")
    p.add_argument("--num-jobs", type=int, default=4, help="threads for reading audio headers (default: 4)")
