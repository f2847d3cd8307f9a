"""Declared subcommands, found by scanning a package: how families plug into the CLI.

A family adds a ``speechkit demo <mode>``, ``speechkit quickstart <name>``, ``speechkit prepare
<corpus>`` or ``speechkit synth <corpus>`` by defining, in a module of its own package, one
module-level :class:`Subcommand` under the attribute that package's command reads:

=================================  ===========================  ==============================
command                            package scanned              module attribute
=================================  ===========================  ==============================
``speechkit demo <mode>``          ``speechkit.runtime``        ``DEMO_MODE``
``speechkit quickstart <name>``    ``speechkit.quickstart``     ``QUICKSTART``
``speechkit prepare <corpus>``     ``speechkit.data.corpora``   ``PREPARE``
``speechkit synth <corpus>``       ``speechkit.data.synth``     ``SYNTH``
=================================  ===========================  ==============================

For example, at the end of ``speechkit/runtime/asr_demo.py``::

    DEMO_MODE = Subcommand("asr", "streaming speech recognition ...", add_demo_asr_args, run_demo_asr)

No file under ``speechkit/cli/`` names the modes: :func:`declared` imports every module of the
package (:func:`import_submodules`) and collects the attribute. Modules keep heavy imports
(torch, lhotse) inside functions so that building the parser stays fast.

This module is at the bottom layer (stdlib only), so the torch-free runtime may use it.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import ModuleType

from speechkit.errors import SpeechkitError


@dataclass(frozen=True)
class Subcommand:
    """One declared subcommand.

    Attributes:
        name: the word on the command line (``kws``, ``speech-commands``).
        help: one line for the parent's ``--help`` listing.
        add_arguments: adds the subcommand's own options to its parser.
        run: ``fn(args) -> exit status | None`` on the parsed arguments.
        description: the subcommand's ``--help`` text; ``None``: ``help``.
        order: position in listings, lowest first (ties by name); the lowest is the default where
            the command has one (``speechkit quickstart`` runs ``kws``).
    """

    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int | None]
    description: str | None = None
    order: int = 100


def import_submodules(package_name: str, suffix: str = "") -> list[ModuleType]:
    """Import every direct submodule of ``package_name`` whose name ends with ``suffix``.

    Private modules (``_name``) and ``__main__`` are skipped. Sub-packages are imported but not
    descended into. Sorted by module name.

    Raises:
        SpeechkitError: ``package_name`` is not a package.
    """
    package = importlib.import_module(package_name)
    if not hasattr(package, "__path__"):
        raise SpeechkitError(f"{package_name} is a module, expected a package")
    names = sorted(
        info.name
        for info in pkgutil.iter_modules(package.__path__)
        if info.name.endswith(suffix) and not info.name.startswith("_")
    )
    return [importlib.import_module(f"{package_name}.{name}") for name in names]


def declared(package_name: str, attribute: str) -> list[Subcommand]:
    """The :class:`Subcommand` objects the modules of ``package_name`` define as ``attribute``.

    The attribute may hold one ``Subcommand`` or a sequence of them. Sorted by ``(order, name)``.

    Raises:
        SpeechkitError: two modules declare the same name, or the attribute holds something else.
    """
    found: dict[str, tuple[Subcommand, str]] = {}
    for module in import_submodules(package_name):
        value = getattr(module, attribute, None)
        if value is None:
            continue
        items = value if isinstance(value, Sequence) else (value,)
        for item in items:
            if not isinstance(item, Subcommand):
                raise SpeechkitError(f"{module.__name__}.{attribute} is a {type(item).__name__}, expected a Subcommand")
            if item.name in found:
                raise SpeechkitError(
                    f"{attribute} {item.name!r} is declared twice: in {found[item.name][1]} and {module.__name__}"
                )
            found[item.name] = (item, module.__name__)
    return sorted((item for item, _ in found.values()), key=lambda c: (c.order, c.name))


def add_subparsers(
    subparsers: argparse._SubParsersAction,
    commands: Sequence[Subcommand],
    before: Callable[[argparse.ArgumentParser], None] | None = None,
    after: Callable[[argparse.ArgumentParser], None] | None = None,
) -> None:
    """One parser per command under ``subparsers``; ``func`` is set to the command's ``run``.

    ``before``/``after`` add options every command of the parent shares (e.g. ``CORPUS_DIR
    OUT_DIR``), before and after the command's own.
    """
    for command in commands:
        parser = subparsers.add_parser(command.name, help=command.help, description=command.description or command.help)
        if before is not None:
            before(parser)
        command.add_arguments(parser)
        if after is not None:
            after(parser)
        parser.set_defaults(func=command.run)
