"""Atomic file output: nothing a user made is half-written or lost.

Every output file of speechkit (manifests, audio, ONNX models, reports) is written to a temporary
file in the destination folder and renamed into place, so a crash or Ctrl-C never leaves a
truncated file where a good one was expected.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` if the block succeeds.

    Args:
        path: final destination. Parent folders are created.
        suffix: suffix of the temporary file (defaults to the destination's, so writers
            that pick a format from the extension, e.g. soundfile, still work).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        prefix=f".{path.name}.", suffix=suffix if suffix is not None else "".join(path.suffixes),
        dir=path.parent,
    )
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # mkstemp creates 0600 files; give the result the permissions a plain open() would.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_path, 0o666 & ~umask)
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically (UTF-8)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json_atomic(path: str | os.PathLike, obj) -> None:
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def unique_run_dir(root: str | os.PathLike, name: str) -> Path:
    """Return a new folder ``root/name`` (or ``name-2``, ``name-3`` ...) that did not exist.

    Used so that a run never writes over an earlier run's artifacts.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    k = 1
    while True:
        candidate = root / (name if k == 1 else f"{name}-{k}")
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            k += 1
