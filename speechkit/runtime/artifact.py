"""Open a speechkit ONNX artifact and validate it against its family's spec (no torch).

Every artifact ``speechkit export`` writes is an ONNX (or ORT) file whose ``metadata_props``
carry ``speechkit.task`` plus the keys its family needs. A family declares what it accepts as an
:class:`ArtifactSpec` (kind, accepted tasks, graph input/output names, required metadata keys)
and opens files with :func:`open_artifact`, the one place that checks a file: missing, a folder,
not loadable, no speechkit metadata, a task no spec accepts (``"is a 'scene' model, expected
'kws'"``), other input/output names, missing metadata keys -- each a one-line
:class:`~speechkit.errors.ModelFileError`.

Usage::

    CLIP_SPEC = ArtifactSpec("clip-classifier", tasks=("kws",), inputs=("audio",),
                             outputs=("logits",), metadata=("labels", "sample_rate"))
    artifact = open_artifact("kws.onnx", [CLIP_SPEC])
    labels = artifact.json("labels", list)
    rate = artifact.positive_int("sample_rate")
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from speechkit.errors import ModelFileError

#: metadata key naming the artifact's task (``kws``, ``scene``, ``asr-ctc-streaming``, ...).
TASK_KEY = "speechkit.task"


@dataclass(frozen=True)
class ArtifactSpec:
    """What a family's runtime accepts.

    Attributes:
        kind: artifact family, e.g. ``"clip-classifier"``, ``"asr-ctc-streaming"``, ``"asr-ctc"``.
        tasks: accepted ``speechkit.task`` values; ``()`` accepts any task.
        inputs: graph input names in order; a name ending in ``*`` is a prefix pattern that
            matches one or more consecutive inputs (``"cache_*"``).
        outputs: graph output names in order (same pattern rule).
        metadata: required ``metadata_props`` keys besides ``speechkit.task``.
    """

    kind: str
    tasks: tuple[str, ...]
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    metadata: tuple[str, ...] = ()

    def accepts_task(self, task: str) -> bool:
        """True if ``task`` is one of :attr:`tasks` (or :attr:`tasks` is empty)."""
        return not self.tasks or task in self.tasks

    def io_mismatch(self, inputs: Sequence[str], outputs: Sequence[str]) -> str | None:
        """``None`` if the graph's names match the spec, else a short description of the difference."""
        for what, pattern, names in (("inputs", self.inputs, inputs), ("outputs", self.outputs, outputs)):
            if not names_match(pattern, names):
                return f"{what} {list(names)}, expected {list(pattern)}"
        return None


def names_match(pattern: Sequence[str], names: Sequence[str]) -> bool:
    """Whether ``names`` follow ``pattern`` in order; ``"p*"`` matches one or more names starting with ``p``.

    Example:
        >>> names_match(("x", "cache_*", "y"), ["x", "cache_0", "cache_1", "y"])
        True
        >>> names_match(("audio",), ["audio", "lens"])
        False
    """
    i = 0
    names = list(names)
    for entry in pattern:
        if entry.endswith("*"):
            prefix = entry[:-1]
            start = i
            while i < len(names) and names[i].startswith(prefix):
                i += 1
            if i == start:
                return False
        else:
            if i >= len(names) or names[i] != entry:
                return False
            i += 1
    return i == len(names)


@dataclass
class Artifact:
    """An opened, validated artifact.

    Attributes:
        path: the file.
        session: its ``onnxruntime.InferenceSession`` (CPU execution provider).
        metadata: ``metadata_props`` as a dict of strings.
        spec: the spec it matched.
    """

    path: Path
    session: Any
    metadata: dict[str, str]
    spec: ArtifactSpec

    @property
    def task(self) -> str:
        """The ``speechkit.task`` value."""
        return self.metadata[TASK_KEY]

    @property
    def input_names(self) -> list[str]:
        return [i.name for i in self.session.get_inputs()]

    @property
    def output_names(self) -> list[str]:
        return [o.name for o in self.session.get_outputs()]

    def json(self, key: str, kind: type = list, nonempty: bool = True, item: type | None = None):
        """A metadata value parsed as JSON, checked to be a ``kind`` (``list`` or ``dict``).

        Args:
            key: metadata key.
            kind: expected JSON type (``list``, ``dict``, ``int``, ...).
            nonempty: refuse an empty list/dict.
            item: for a list, the type every element must have (e.g. ``str``).

        Raises:
            ModelFileError: key missing, not JSON, or of another shape.
        """
        text = self._value(key)
        try:
            value = json.loads(text)
        except ValueError:
            value = None
        ok = isinstance(value, kind) and not (nonempty and isinstance(value, (list, dict)) and not value)
        if ok and item is not None and isinstance(value, list):
            ok = all(isinstance(x, item) for x in value)
        if not ok:
            what = f"a JSON {kind.__name__}" + (f" of {item.__name__}" if item is not None else "")
            what += " (non-empty)" if nonempty and kind in (list, dict) else ""
            raise ModelFileError(f"{self.path}: metadata {key!r} is not {what}: {text[:80]!r}")
        return value

    def positive_int(self, key: str) -> int:
        """A metadata value that must be a positive integer.

        Raises:
            ModelFileError: key missing or not a positive integer.
        """
        text = self._value(key)
        try:
            value = int(text)
        except ValueError:
            value = 0
        if value <= 0:
            raise ModelFileError(f"{self.path}: metadata {key!r} is {text!r}, expected a positive integer")
        return value

    def _value(self, key: str) -> str:
        if key not in self.metadata:
            raise ModelFileError(f"{self.path}: metadata lacks {key!r}; re-export it with `speechkit export`")
        return self.metadata[key]


def _describe(specs: Sequence[ArtifactSpec]) -> str:
    tasks = [t for s in specs for t in s.tasks]
    if not tasks:
        return "a speechkit model"
    unique = list(dict.fromkeys(tasks))
    return " or ".join(repr(t) for t in unique)


def open_session(path: str | os.PathLike, num_threads: int = 1):
    """An onnxruntime CPU session of ``path``, with file errors as one-line :class:`ModelFileError`."""
    import onnxruntime as ort

    path = Path(path)
    if not path.exists():
        raise ModelFileError(f"{path}: no such model file")
    if path.is_dir():
        raise ModelFileError(f"{path}: is a folder, expected an .onnx model file")
    options = ort.SessionOptions()
    options.intra_op_num_threads = num_threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only: the runtime's users see our messages instead
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # InvalidProtobuf, Fail, InvalidGraph, NotImplemented, ...
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelFileError(f"{path}: not a loadable ONNX model ({reason[:200]})") from None


def open_artifact(path: str | os.PathLike, accepted: Sequence[ArtifactSpec], num_threads: int = 1) -> Artifact:
    """Open ``path`` in an onnxruntime CPU session and validate it against ``accepted``.

    The first spec whose tasks accept the file's ``speechkit.task`` and whose input/output names
    match the graph is chosen; then its required metadata keys must all be present.

    Args:
        path: ``.onnx`` (or ``.ort``) file made by ``speechkit export``.
        accepted: the specs the caller can run, in order of preference (at least one).
        num_threads: onnxruntime intra-op threads (1 is what a phone app gives a detector).

    Returns:
        The :class:`Artifact`.

    Raises:
        ModelFileError: missing file, folder, not loadable, no speechkit metadata, a task no spec
            accepts (``"x.onnx: is a 'scene' model, expected 'kws'"``), wrong input/output names,
            missing metadata keys.
    """
    accepted = list(accepted)
    if not accepted:
        raise ValueError("open_artifact needs at least one ArtifactSpec")
    path = Path(path)
    session = open_session(path, num_threads)
    metadata = dict(session.get_modelmeta().custom_metadata_map)
    task = metadata.get(TASK_KEY)
    if task is None:
        raise ModelFileError(
            f"{path}: ONNX model without speechkit metadata (no {TASK_KEY!r}); expected "
            f"{_describe(accepted)} model made by `speechkit export`"
        )
    by_task = [s for s in accepted if s.accepts_task(task)]
    if not by_task:
        raise ModelFileError(f"{path}: is a {task!r} model, expected {_describe(accepted)}")
    inputs = [i.name for i in session.get_inputs()]
    outputs = [o.name for o in session.get_outputs()]
    mismatches = []
    for spec in by_task:
        mismatch = spec.io_mismatch(inputs, outputs)
        if mismatch is None:
            missing = [k for k in spec.metadata if k not in metadata]
            if missing:
                raise ModelFileError(
                    f"{path}: {task!r} model metadata lacks {missing}; re-export it with `speechkit export`"
                )
            return Artifact(path, session, metadata, spec)
        mismatches.append(mismatch if len(by_task) == 1 else f"{mismatch} ({spec.kind})")
    raise ModelFileError(f"{path}: {task!r} model has graph {' or '.join(mismatches)}")
