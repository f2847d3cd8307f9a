"""``speechkit quickstart [kws|asr|...]``: the main jobs on synthetic speech, with no downloads.

The variants are declared by the modules of :mod:`speechkit.quickstart` (``QUICKSTART =``
:class:`speechkit.plugins.Subcommand`); the one with the lowest ``order`` (``kws``) runs when
none is named. Every variant reads the options added here (``--out``, ``--speakers``,
``--epochs``, ``--seed``) and adds its own to the same parser (``quickstart [NAME] [options]``
keeps the name optional), so a variant's options must not be required, and two variants must
not add the same option.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from speechkit.plugins import Subcommand, declared

#: position of this command in ``speechkit --help`` (see :mod:`speechkit.cli.main`).
ORDER = 10


def register(sub: argparse._SubParsersAction) -> None:
    variants = declared("speechkit.quickstart", "QUICKSTART")
    if not variants:
        return
    default = variants[0]
    p = sub.add_parser(
        "quickstart",
        help=f"{default.help} (or `quickstart {'|'.join(v.name for v in variants[1:])}`)"
        if len(variants) > 1 else default.help,
        description=" ".join(_describe(v, v is default) for v in variants),
    )
    p.add_argument("job", nargs="?", default=default.name, choices=[v.name for v in variants],
                   help=f"which quickstart (default {default.name})")
    p.add_argument("--out", type=Path, default=None, help="run folder (default: a new runs/quickstart[-N])")
    p.add_argument("--speakers", type=int, default=None, help="number of synthetic speakers")
    p.add_argument("--epochs", type=int, default=None, help="training epochs")
    p.add_argument("--seed", type=int, default=0)
    for variant in variants:
        variant.add_arguments(p)
    runners = {v.name: v.run for v in variants}
    p.set_defaults(func=lambda args: runners[args.job](args))


def _describe(variant: Subcommand, is_default: bool) -> str:
    text = variant.description or variant.help
    return f"`speechkit quickstart {variant.name}`{' (the default)' if is_default else ''}: {text}"
