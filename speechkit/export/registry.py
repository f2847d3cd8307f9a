"""Which exporter serves which task: families register themselves, the CLI only looks up.

A family's export module calls :func:`register_exporter` at import time with an
:class:`Exporter` naming the task class it serves (by class path, matched along the task's MRO,
so subclasses are served too). :func:`all_exporters` imports every module of
:mod:`speechkit.export`, so a new family's module is found without editing a central file;
``speechkit export`` adds each exporter's options and dispatches with :func:`exporter_for`.

Usage (in a family's export module)::

    register_exporter(Exporter(
        name="clip-classifier", task_class="speechkit.tasks.classification.ClassificationTask",
        export=export_command, gate=QualityGate("accuracy", True, 1.0), add_arguments=None,
    ))
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from speechkit.errors import ModelFileError
from speechkit.export.gate import QualityGate
from speechkit.plugins import import_submodules

_EXPORTERS: dict[str, Exporter] = {}
_discovered = False


@dataclass
class Exporter:
    """How a family exports a checkpoint.

    Attributes:
        name: exporter name (``"clip-classifier"``, ``"asr-ctc"``); one registration per name.
        task_class: ``"package.module.Class"`` of the task base class it serves.
        export: ``fn(task, args, checkpoint) -> exit status | None``: ``task`` is the loaded
            LightningModule (eval, CPU), ``args`` the parsed ``speechkit export`` namespace
            (``output``, ``int8``, ``force``, ``ort``, ``atol``, ... and the family's own
            options), ``checkpoint`` the checkpoint path (``None`` if the task was not loaded
            from a file).
        gate: the family's int8 quality gate (``None``: no int8 export).
        add_arguments: adds the family's options to the ``speechkit export`` parser. Options
            must not clash with other families' (prefix them if in doubt).
    """

    name: str
    task_class: str
    export: Callable[[Any, argparse.Namespace, Path | None], int | None]
    gate: QualityGate | None
    add_arguments: Callable[[argparse.ArgumentParser], None] | None = None

    def serves(self, task: object) -> bool:
        """Whether ``task``'s class or one of its bases is :attr:`task_class`."""
        return any(f"{c.__module__}.{c.__qualname__}" == self.task_class for c in type(task).__mro__)


def register_exporter(exporter: Exporter) -> None:
    """Add (or replace, by name) an exporter.

    Raises:
        ValueError: another exporter already serves the same task class.
    """
    for other in _EXPORTERS.values():
        if other.name != exporter.name and other.task_class == exporter.task_class:
            raise ValueError(
                f"exporters {other.name!r} and {exporter.name!r} both serve {exporter.task_class}"
            )
    _EXPORTERS[exporter.name] = exporter


def all_exporters() -> list[Exporter]:
    """Every registered exporter, after importing every module of :mod:`speechkit.export`
    (:func:`speechkit.plugins.import_submodules`: private ``_name`` modules are skipped)."""
    global _discovered
    if not _discovered:
        import_submodules("speechkit.export")
        _discovered = True
    return list(_EXPORTERS.values())


def exporter_for(task: object) -> Exporter:
    """The exporter serving ``task``; the nearest class along the MRO wins.

    Raises:
        ModelFileError: no exporter serves the task (the message lists the known ones).
    """
    exporters = all_exporters()
    for cls in type(task).__mro__:
        path = f"{cls.__module__}.{cls.__qualname__}"
        for exporter in exporters:
            if exporter.task_class == path:
                return exporter
    name = getattr(task, "task_name", "") or type(task).__name__
    known = ", ".join(f"{e.name} ({e.task_class.rsplit('.', 1)[-1]})" for e in exporters) or "none"
    raise ModelFileError(f"no ONNX exporter for {name!r} checkpoints ({type(task).__name__}); known exporters: {known}")
