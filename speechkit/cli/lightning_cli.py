"""``speechkit fit|validate|test|predict``: LightningCLI over the recipe YAMLs.

The task (``model:``) and data module (``data:``) are given by ``class_path`` in the recipe, so one
CLI serves every family. Values the data module knows are linked into the task at instantiation
(STYLE.md "links instead of repetition"); which links apply depends on the task family, read
from the config before the parser is built.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import yaml

from speechkit.errors import SpeechkitError

#: (source on the data module, target in the task) for classification tasks.
CLASSIFICATION_LINKS = (
    ("data.labels", "model.init_args.labels"),
    ("data.num_classes", "model.init_args.model.init_args.num_classes"),
    ("data.sample_rate", "model.init_args.sample_rate"),
    ("data.clip_samples", "model.init_args.clip_samples"),
)

#: Extra link sets per task class, registered by other families (e.g. ASR: vocabulary size).
TASK_LINKS: dict[str, tuple[tuple[str, str], ...]] = {
    "speechkit.tasks.classification.ClassificationTask": CLASSIFICATION_LINKS,
    "speechkit.tasks.asr.AsrCtcTask": (
        ("data.vocab_size", "model.init_args.vocab_size"),
        ("data.tokenizer_path", "model.init_args.tokenizer_path"),
        ("data.sample_rate", "model.init_args.sample_rate"),
    ),
}


def _task_class_path(argv: list[str]) -> str | None:
    """The ``model.class_path`` the given ``--config`` files (last wins) ask for."""
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


def _links_for(class_path: str | None) -> tuple[tuple[str, str], ...]:
    if not class_path:
        return ()
    if class_path in TASK_LINKS:
        return TASK_LINKS[class_path]
    module_name, _, name = class_path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError, ValueError):
        return ()
    for base in cls.__mro__:
        key = f"{base.__module__}.{base.__qualname__}"
        if key in TASK_LINKS:
            return TASK_LINKS[key]
    return ()


def make_cli_class(links: tuple[tuple[str, str], ...]):
    from lightning.pytorch.cli import LightningCLI

    class SpeechkitCLI(LightningCLI):
        def add_arguments_to_parser(self, parser) -> None:
            for source, target in links:
                parser.link_arguments(source, target, apply_on="instantiate")

        def instantiate_trainer(self, **kwargs):
            """Add the task's checkpoint callback unless the config brings its own."""
            from lightning.pytorch.callbacks import ModelCheckpoint

            config = self._get(self.config_init, "trainer", default={})
            callbacks = list(config.get("callbacks") or [])
            if not any(isinstance(c, ModelCheckpoint) for c in callbacks):
                root = config.get("default_root_dir") or "."
                callbacks.extend(task_checkpoint_callbacks(self.model, root))
                kwargs["callbacks"] = callbacks
            return super().instantiate_trainer(**kwargs)

    return SpeechkitCLI


def task_checkpoint_callbacks(task, root_dir: str | Path) -> list:
    """Best checkpoint on the task's own metric, plus ``last.ckpt`` for ``--ckpt_path last``.

    Two callbacks, the best one first (it is ``trainer.checkpoint_callback``): since Lightning
    2.6 ``save_last=True`` refreshes ``last.ckpt`` only when a best checkpoint is written, so a
    run killed after epochs without improvement would resume from an old epoch. The second
    callback rewrites ``last.ckpt`` after every validation instead.

    The folder is fixed (``<default_root_dir>/checkpoints``) rather than per logger version, so
    a resumed run finds the ``last.ckpt`` of the run it continues.
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


def run_lightning_cli(argv: list[str], run: bool = True):
    """Run LightningCLI with ``argv`` (e.g. ``["fit", "--config", "recipe.yaml"]``).

    With ``run=False`` the subcommand is left out of ``argv`` and the instantiated CLI is
    returned without fitting (used by the recipe tests).
    """
    import lightning as L

    from speechkit.tasks.base import SpeechTask

    links = _links_for(_task_class_path(argv))
    cli_class = make_cli_class(links)
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
