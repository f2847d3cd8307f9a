"""``speechkit quickstart``: the main jobs, end to end on synthetic speech, with no downloads."""

from __future__ import annotations

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
