"""Checkpoint averaging: the mean of the weights of several checkpoints (icefall's ``--avg N``).

Averaging the last few epochs of a run usually lowers the WER a little at no cost (icefall,
WeNet and ESPnet all decode averaged models). The result is a checkpoint for decoding and
export: it keeps the newest input's config, hyper-parameters and tokenizer, and drops the
optimizer and loop state, which would not match the averaged weights.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from speechkit.errors import ModelFileError, SpeechkitError
from speechkit.tasks import read_checkpoint

#: Training state that does not belong with averaged weights.
_TRAINING_STATE = ("optimizer_states", "lr_schedulers", "loops", "callbacks")


def latest_checkpoints(folder: str | os.PathLike, count: int) -> list[Path]:
    """The ``count`` latest distinct checkpoints in ``folder``, oldest first.

    Checkpoints are ordered by their saved ``(epoch, global_step)``; files with the same
    position (``last.ckpt`` beside ``epoch-009.ckpt``) count once.

    Raises:
        SpeechkitError: no such folder, or fewer than ``count`` distinct checkpoints in it.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise SpeechkitError(f"{folder}: no such folder of checkpoints")
    by_position: dict[tuple[int, int], Path] = {}
    for path in sorted(folder.glob("*.ckpt")):
        ckpt = read_checkpoint(path, mmap=True)
        position = (int(ckpt.get("epoch", -1)), int(ckpt.get("global_step", -1)))
        if position not in by_position or by_position[position].name.startswith("last"):
            by_position[position] = path
    if len(by_position) < count:
        raise SpeechkitError(
            f"{folder}: {len(by_position)} distinct checkpoint(s), fewer than the {count} asked for; "
            "save one per epoch (a ModelCheckpoint with save_top_k: -1, as the LibriSpeech recipe does)"
        )
    return [by_position[key] for key in sorted(by_position)[-count:]]


def average_checkpoints(paths: Sequence[str | os.PathLike], out_path: str | os.PathLike) -> dict:
    """Write the mean of the checkpoints' weights to ``out_path``; return the checkpoint dict.

    Floating-point tensors are averaged (accumulated in float64); integer tensors (step
    counters) are taken from the last checkpoint.

    Raises:
        ModelFileError: a file is not a checkpoint, or the checkpoints hold different models.
        SpeechkitError: no checkpoints.
    """
    import torch

    from speechkit.fileio import atomic_path

    paths = [Path(p) for p in paths]
    if not paths:
        raise SpeechkitError("no checkpoints to average")
    sums: dict[str, torch.Tensor] = {}
    reference = None
    for path in paths:
        ckpt = read_checkpoint(path, mmap=True)
        state = ckpt["state_dict"]
        if reference is None:
            reference = {k: (v.shape, v.dtype) for k, v in state.items()}
        elif {k: (v.shape, v.dtype) for k, v in state.items()} != reference:
            raise ModelFileError(f"{path}: holds a different model than {paths[0]} (other weights or shapes)")
        for key, value in state.items():
            if value.is_floating_point():
                sums[key] = sums[key] + value.double() if key in sums else value.double().clone()
        last = ckpt
    averaged = {
        key: (sums[key] / len(paths)).to(value.dtype) if key in sums else value.clone()
        for key, value in last["state_dict"].items()
    }
    result = {k: v for k, v in last.items() if k not in _TRAINING_STATE and k != "state_dict"}
    result["state_dict"] = averaged
    result["averaged_from"] = [str(p) for p in paths]
    with atomic_path(out_path) as tmp:
        torch.save(result, tmp)
    return result
