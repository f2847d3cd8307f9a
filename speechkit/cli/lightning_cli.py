"""``speechkit fit|validate|test|predict``: LightningCLI over the recipe YAMLs.

A thin front over :mod:`speechkit.tasks.training`, which builds the CLI (the task's
``data_links``, its checkpoint callbacks) for this command and for the quickstarts alike.
"""

from __future__ import annotations

from collections.abc import Sequence

from speechkit.tasks.training import lightning_cli, task_checkpoint_callbacks

__all__ = ["run_lightning_cli", "task_checkpoint_callbacks"]


def run_lightning_cli(argv: Sequence[str], run: bool = True):
    """Run LightningCLI with ``argv`` (e.g. ``["fit", "--config", "recipe.yaml"]``).

    With ``run=False`` the subcommand is left out of ``argv`` and the instantiated CLI is
    returned without fitting (used by the recipe tests). See
    :func:`speechkit.tasks.training.lightning_cli`.
    """
    return lightning_cli(argv, run=run)
