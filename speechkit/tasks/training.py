"""Training from a recipe: LightningCLI over the recipe YAMLs, the task's checkpoint callbacks.

The task (``model:``) and data module (``data:``) are given by ``class_path`` in the recipe, so one
entry point serves every family. Values the data module knows are linked into the task at
instantiation (links instead of repetition: a value is written once); the links are the task class's
``data_links`` (:attr:`speechkit.tasks.base.SpeechTask.data_links`), read from the class the
config names before the parser is built.

``speechkit fit|validate|test|predict`` (:mod:`speechkit.cli.lightning_cli`) and the quickstarts
both come here; neither goes through the other::

    cli = lightning_cli(["--config", "recipe.yaml", "--trainer.max_epochs", "3"], run=False)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from pathlib import Path

import yaml

from speechkit.errors import SpeechkitError

#: The recipes shipped inside the package (the checkout's top-level ``recipes`` links here).
RECIPES_DIR = Path(__file__).resolve().parents[1] / "recipes"


def resolve_configs(argv: Sequence[str]) -> list[str]:
    """``argv`` with each ``--config`` that names no file but a shipped recipe replaced by its path.

    After a plain ``pip install`` there is no ``recipes/`` folder beside the user, so
    ``--config recipes/synthetic/kws/config.yaml`` (as the READMEs write it) or
    ``--config synthetic/kws/config.yaml`` finds the copy inside the package. A file that exists
    always wins.

    Example:
        >>> resolve_configs(["fit", "--config", "recipes/synthetic/kws/config.yaml"])[2].endswith(
        ...     "speechkit/recipes/synthetic/kws/config.yaml")
        True
    """
    out = list(argv)
    for i, arg in enumerate(out):
        prefix, value = None, None
        if arg in ("--config", "-c") and i + 1 < len(out):
            prefix, value, index = "", out[i + 1], i + 1
        elif arg.startswith("--config="):
            prefix, value, index = "--config=", arg.split("=", 1)[1], i
        if value is None or Path(value).is_file():
            continue
        relative = value[len("recipes/"):] if value.startswith("recipes/") else value
        shipped = RECIPES_DIR / relative
        if shipped.is_file():
            out[index] = prefix + str(shipped)
    return out


def task_class_path(argv: Sequence[str]) -> str | None:
    """The ``model.class_path`` the given ``--config`` files (last wins) or ``--model`` ask for.

    Raises:
        SpeechkitError: a ``--config`` file is missing or not valid YAML.
    """
    class_path = None
    for i, arg in enumerate(argv):
        value = None
        if arg in ("--config", "-c") and i + 1 < len(argv):
            value = argv[i + 1]
        elif arg.startswith("--config="):
            value = arg.split("=", 1)[1]
        if value is None:
            continue
        path = Path(value)
        if not path.is_file():
            raise SpeechkitError(f"{path}: no such config file")
        try:
            cfg = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise SpeechkitError(f"{path}: not valid YAML ({exc})") from None
        model = cfg.get("model") if isinstance(cfg, dict) else None
        if isinstance(model, dict) and model.get("class_path"):
            class_path = model["class_path"]
    for i, arg in enumerate(argv):
        if arg == "--model" and i + 1 < len(argv) and "." in argv[i + 1]:
            class_path = argv[i + 1]
    return class_path


def data_links(class_path: str | None) -> tuple[tuple[str, str], ...]:
    """The ``data_links`` of the task class at ``class_path`` (inherited along its MRO).

    ``()`` when no class is named or it cannot be imported: LightningCLI then reports the bad
    ``class_path`` itself, with its own message.
    """
    if not class_path:
        return ()
    module_name, _, name = class_path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError, ValueError):
        return ()
    return tuple(tuple(link) for link in getattr(cls, "data_links", ()))


def task_checkpoint_callbacks(task, root_dir: str | Path) -> list:
    """Best checkpoint on the task's own metric, plus ``last.ckpt`` for ``--ckpt_path last``.

    Two callbacks, the best one first (it is ``trainer.checkpoint_callback``): since Lightning
    2.6 ``save_last=True`` refreshes ``last.ckpt`` only when a best checkpoint is written, so a
    run killed after epochs without improvement would resume from an old epoch. The second
    callback rewrites ``last.ckpt`` after every validation instead.

    The folder is fixed (``<root_dir>/checkpoints``) rather than per logger version, so a resumed
    run finds the ``last.ckpt`` of the run it continues.
    """
    from lightning.pytorch.callbacks import ModelCheckpoint

    dirpath = Path(root_dir) / "checkpoints"
    best = ModelCheckpoint(
        dirpath=dirpath,
        filename="best-{epoch:03d}",
        monitor=getattr(task, "monitor", "val/loss"),
        mode=getattr(task, "monitor_mode", "min"),
        save_top_k=1,
        auto_insert_metric_name=False,
    )
    latest = ModelCheckpoint(dirpath=dirpath, filename=ModelCheckpoint.CHECKPOINT_NAME_LAST, monitor=None,
                             save_top_k=1, enable_version_counter=False)
    return [best, latest]


def make_cli_class(links: Sequence[tuple[str, str]]):
    """A LightningCLI subclass that applies ``links`` and adds :func:`task_checkpoint_callbacks`."""
    from lightning.pytorch.cli import LightningCLI

    class SpeechkitCLI(LightningCLI):
        def add_arguments_to_parser(self, parser) -> None:
            for source, target in links:
                parser.link_arguments(source, target, apply_on="instantiate")

        def instantiate_trainer(self, **kwargs):
            """Add the task's checkpoint callbacks unless the config brings its own."""
            from lightning.pytorch.callbacks import ModelCheckpoint

            config = self._get(self.config_init, "trainer", default={})
            callbacks = list(config.get("callbacks") or [])
            if not any(isinstance(c, ModelCheckpoint) for c in callbacks):
                root = config.get("default_root_dir") or "."
                callbacks.extend(task_checkpoint_callbacks(self.model, root))
                kwargs["callbacks"] = callbacks
            return super().instantiate_trainer(**kwargs)

    return SpeechkitCLI


def lightning_cli(argv: Sequence[str], run: bool = True):
    """LightningCLI with ``argv`` (e.g. ``["fit", "--config", "recipe.yaml"]``).

    With ``run=False`` the subcommand is left out of ``argv`` and the instantiated CLI (``.model``,
    ``.datamodule``, ``.trainer``) is returned without fitting (the quickstarts and recipe tests).

    Raises:
        SpeechkitError: a ``--config`` file is missing or not valid YAML.
    """
    import lightning as L

    from speechkit.tasks.base import SpeechTask

    argv = resolve_configs(argv)
    cli_class = make_cli_class(data_links(task_class_path(argv)))
    return cli_class(
        model_class=SpeechTask,
        datamodule_class=L.LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        args=argv,
        run=run,
        save_config_kwargs={"overwrite": True},
        parser_kwargs={"prog": "speechkit"},
    )
