"""``speechkit`` console entry point.

``fit|validate|test|predict`` go to LightningCLI (``speechkit.cli.lightning_cli``); every other
subcommand lives in its own module under ``speechkit.cli`` that defines
``register(subparsers)``; the parser it adds sets ``func`` to a callable taking the parsed
``argparse.Namespace`` and returning an exit status (or None). Modules import heavy libraries
inside those functions so ``speechkit --help`` stays fast.

Errors a user can cause (:class:`speechkit.errors.SpeechkitError`) are printed as one line,
``speechkit: error: ...``, with exit status 2.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from speechkit import __version__
from speechkit.errors import SpeechkitError

LIGHTNING_COMMANDS = ("fit", "validate", "test", "predict")

#: Subcommand modules, in the order they appear in ``--help``.
COMMAND_MODULES = (
    "speechkit.cli.quickstart_cmd",
    "speechkit.cli.synth_cmd",
    "speechkit.cli.prepare_cmd",
    "speechkit.cli.export_cmd",
    "speechkit.cli.runtime_cmd",
    "speechkit.cli.asr_cmd",
)


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
    for module_name in COMMAND_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:  # not written yet: leave it out of the menu
                continue
            raise
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
