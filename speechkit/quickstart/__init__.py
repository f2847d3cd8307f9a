"""``speechkit quickstart``: the main jobs, end to end on synthetic speech, with no downloads.

Each module of this package is one variant and declares it as a module-level ``QUICKSTART =``
:class:`speechkit.plugins.Subcommand` (``speechkit quickstart kws|asr``); the lowest ``order``
runs when none is named. Quickstarts train through :func:`speechkit.tasks.training.lightning_cli`
and run demos through :func:`speechkit.runtime.demo.run_demo`, never through ``speechkit.cli``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from speechkit.errors import SpeechkitError
from speechkit.tasks.training import RECIPES_DIR


def recipe_path(relative: str) -> Path:
    """Path of the shipped recipe ``recipes/<relative>`` (e.g. ``synthetic/kws/config.yaml``).

    Recipes are package data (``speechkit/recipes``; the checkout's top-level ``recipes`` is a
    link to it), so the quickstarts find the same YAML a user runs with ``speechkit fit``
    after a plain ``pip install``, with no source checkout.
    """
    path = RECIPES_DIR / relative
    if not path.is_file():
        raise SpeechkitError(f"recipe {relative} not found at {path}; this speechkit installation is incomplete")
    return path


def new_run_dir(out: str | Path | None, name: str) -> Path:
    """The absolute folder of a new quickstart run: ``out`` if given (it must be empty or new),
    else a new ``runs/<name>[-N]``. Never an earlier run's folder.

    Absolute, because the manifests and the checkpoint's data config name files by these paths.

    Raises:
        SpeechkitError: ``out`` holds files.
    """
    from speechkit.fileio import unique_run_dir

    if out is None:
        return unique_run_dir("runs", name).resolve()
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    if any(out.iterdir()):
        raise SpeechkitError(f"{out}: folder is not empty; the quickstart never writes over an earlier run")
    return out


@contextmanager
def timed(timings: dict, name: str) -> Iterator[None]:
    """Record the wall time of the ``with`` block in ``timings[name]`` (seconds, 0.1 s)."""
    start = time.time()
    try:
        yield
    finally:
        timings[name] = round(time.time() - start, 1)
