"""``speechkit`` console entry point.

``fit|validate|test|predict`` go to LightningCLI (``speechkit.cli.lightning_cli``); every other
subcommand lives in a module ``<package>/<name>_cmd.py`` of :data:`COMMAND_PACKAGES` (the CLI's
own commands in ``speechkit/cli/``; a family's tools for trained models, such as ASR's
``transcribe`` and ``eval-asr``, in ``speechkit/inference/``), found by scanning (no list to
edit), that defines ``register(subparsers)`` and may set ``ORDER`` (its place in
``--help``, lowest first, default 100; ties by module name). The parser it adds sets ``func`` to
a callable taking the parsed ``argparse.Namespace`` and returning an exit status (or None).
Modules import heavy libraries inside those functions so ``speechkit --help`` stays fast.

Families do not add files here: the subcommands of ``demo``, ``quickstart``, ``prepare`` and
``synth`` are declared in the family's own package (:mod:`speechkit.plugins`), exporters in
:mod:`speechkit.export.registry`.

Errors a user can cause (:class:`speechkit.errors.SpeechkitError`) are printed as one line,
``speechkit: error: ...``, with exit status 2.
"""

from __future__ import annotations

import argparse
import os
import sys
from types import ModuleType

from speechkit import __version__
from speechkit.errors import SpeechkitError
from speechkit.plugins import import_submodules

LIGHTNING_COMMANDS = ("fit", "validate", "test", "predict")

#: modules of these packages named ``*<COMMAND_SUFFIX>`` define subcommands.
COMMAND_PACKAGES = ("speechkit.cli", "speechkit.inference")
COMMAND_SUFFIX = "_cmd"


def command_modules() -> list[ModuleType]:
    """Every ``*_cmd.py`` module of :data:`COMMAND_PACKAGES`, in ``--help`` order (``ORDER``, then name)."""
    modules = [m for package in COMMAND_PACKAGES for m in import_submodules(package, suffix=COMMAND_SUFFIX)]
    return sorted(modules, key=lambda m: (getattr(m, "ORDER", 100), m.__name__))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="speechkit",
        description="Train, compress and ship on-device speech models.",
        epilog="Training: speechkit fit|validate|test|predict --config recipes/<dataset>/<task>/config.yaml "
        "(LightningCLI; add --help for its options).",
    )
    parser.add_argument("--version", action="version", version=f"speechkit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in LIGHTNING_COMMANDS:
        sub.add_parser(name, help=f"LightningCLI {name} with a recipe config", add_help=False)
    for module in command_modules():
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # OpenMP threads that spin while waiting for each other make CPU training many times slower
    # when other programs share the cores (measured on 2 cores: 0.15-0.4 ASR training steps/s
    # instead of 2-3). It must be set before torch is imported; a user's own setting wins.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        if argv and argv[0] in LIGHTNING_COMMANDS:
            from speechkit.cli.lightning_cli import run_lightning_cli

            run_lightning_cli(argv)
            return 0
        parser = build_parser()
        args = parser.parse_args(argv)
        if not getattr(args, "func", None):
            parser.print_help()
            return 0 if not argv else 2
        status = args.func(args)
        return int(status or 0)
    except SpeechkitError as exc:
        print(f"speechkit: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("speechkit: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
