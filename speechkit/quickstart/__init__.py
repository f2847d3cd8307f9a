"""``speechkit quickstart``: the main jobs, end to end on synthetic speech, with no downloads."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from speechkit.errors import SpeechkitError


def recipe_path(relative: str) -> Path:
    """Path of ``recipes/<relative>`` in the source checkout speechkit is installed from.

    The quickstarts run the same recipe YAML a user runs with ``speechkit fit``.
    """
    path = Path(__file__).resolve().parents[2] / "recipes" / relative
    if not path.is_file():
        raise SpeechkitError(
            f"recipe {relative} not found at {path}; the quickstart needs the source checkout "
            "(install with `pip install -e .` from the repository)"
        )
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
