"""LightningModules ("systems"): training logic, losses wiring, metrics, logging."""

from __future__ import annotations

from pathlib import Path

from speechkit.errors import ModelFileError


def __getattr__(name: str):
    # Lazy so that ``import speechkit.tasks`` stays cheap for the CLI.
    if name == "ClassificationTask":
        from speechkit.tasks.classification import ClassificationTask

        return ClassificationTask
    if name in ("SpeechTask", "OptimConfig"):
        from speechkit.tasks import base

        return getattr(base, name)
    raise AttributeError(name)


def read_checkpoint(path: str | Path, mmap: bool = False) -> dict:
    """Load a Lightning checkpoint's dict on the CPU (``mmap``: tensors read on demand).

    Raises:
        ModelFileError: missing or unreadable file, or not a Lightning checkpoint.
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: no such checkpoint file")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False, mmap=mmap)
    except Exception as exc:
        raise ModelFileError(f"{path}: not a readable PyTorch checkpoint ({type(exc).__name__})") from None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise ModelFileError(f"{path}: not a Lightning checkpoint (no state_dict)")
    return ckpt


def load_task(ckpt_path: str | Path, expected: tuple[str, ...] | None = None):
    """Rebuild a task from a ``speechkit fit`` checkpoint, in eval mode on the CPU.

    Args:
        ckpt_path: Lightning checkpoint written by ``speechkit fit`` / the quickstart.
        expected: accepted ``task_name`` values (e.g. ``("kws",)``); ``None`` accepts any.

    Returns:
        The task; ``task.datamodule_config`` holds the data module's init args (dict, maybe
        empty) so tools can find the manifests the model was trained on.

    Raises:
        ModelFileError: missing, unreadable or foreign checkpoint, or a task of another kind.
    """
    from speechkit.tasks.base import SpeechTask

    path = Path(ckpt_path)
    ckpt = read_checkpoint(path)
    hparams = ckpt.get("hyper_parameters") or {}
    class_path = hparams.get("_class_path")
    if not class_path or not class_path.startswith("speechkit."):
        raise ModelFileError(
            f"{path}: not a speechkit checkpoint (no speechkit task config inside); "
            "train with `speechkit fit` or `speechkit quickstart`"
        )
    module_name, _, cls_name = class_path.rpartition(".")
    import importlib

    try:
        cls = getattr(importlib.import_module(module_name), cls_name)
    except (ImportError, AttributeError):
        raise ModelFileError(f"{path}: task class {class_path} is not part of this speechkit") from None
    task_name = hparams.get("task_name", getattr(cls, "task_name", ""))
    if expected is not None and task_name not in expected:
        raise ModelFileError(
            f"{path}: is a {task_name or cls_name} checkpoint, expected {' or '.join(expected)}"
        )
    try:
        task = cls.load_from_checkpoint(path, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise ModelFileError(f"{path}: cannot rebuild {cls_name} from it ({exc})") from None
    if not isinstance(task, SpeechTask):
        raise ModelFileError(f"{path}: {class_path} is not a speechkit task")
    task.eval()
    task.datamodule_config = dict(ckpt.get("datamodule_hyper_parameters") or {})
    task.datamodule_config.pop("_instantiator", None)
    return task
