"""Write one artifact of a family: metadata checked against its spec, export, parity, atomic file, ORT.

Every family's exporter ends in :func:`export_artifact`: it checks the metadata against the
family's :class:`~speechkit.runtime.artifact.ArtifactSpec` (so the runtime's
:func:`~speechkit.runtime.artifact.open_artifact` will accept the file), adds
``speechkit_version``, exports with :func:`~speechkit.export.onnx_export.export_onnx`, checks
parity against PyTorch, and only then moves the file into place (an existing file survives a
failed export); ``ort=True`` also writes the ORT mobile format beside it.

Usage::

    result = export_artifact(wrapper, (torch.randn(2, 16000),), "scene.onnx", CLIP_CLASSIFIER_SPEC,
                             metadata={"speechkit.task": "scene", "labels": '["a", "b"]', ...},
                             parity_inputs=[(audio_b1,), (audio_b5,)],
                             dynamic_shapes={"audio": {0: "batch"}, "logits": {0: "batch"}})
    print(result.max_abs_diff)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np

import speechkit
from speechkit.errors import SpeechkitError
from speechkit.export.onnx_export import check_parity, convert_to_ort, export_onnx
from speechkit.fileio import atomic_path
from speechkit.runtime.artifact import TASK_KEY, ArtifactSpec, names_match


@dataclass
class ExportResult:
    """What :func:`export_artifact` wrote.

    Attributes:
        path: the ``.onnx`` file.
        max_abs_diff: largest absolute output difference against PyTorch over the parity inputs.
        ort_path: the ``.ort`` file, or ``None`` if not asked for.
    """

    path: Path
    max_abs_diff: float
    ort_path: Path | None = None


def artifact_metadata(spec: ArtifactSpec, metadata: Mapping[str, object]) -> dict[str, str]:
    """``metadata`` as strings plus ``speechkit_version``, checked against ``spec``.

    Raises:
        SpeechkitError: ``speechkit.task`` missing or not accepted by ``spec``, or a key the
            spec requires is missing.
    """
    out = {str(k): str(v) for k, v in metadata.items()}
    out.setdefault("speechkit_version", speechkit.__version__)
    task = out.get(TASK_KEY)
    if task is None:
        raise SpeechkitError(f"{spec.kind} artifact metadata lacks {TASK_KEY!r}")
    if not spec.accepts_task(task):
        raise SpeechkitError(f"{spec.kind} artifact for task {task!r}, but the spec accepts {list(spec.tasks)}")
    missing = [k for k in spec.metadata if k not in out]
    if missing:
        raise SpeechkitError(f"{spec.kind} artifact metadata lacks {missing}")
    return out


def export_artifact(
    wrapper,
    example_inputs: tuple,
    path: str | os.PathLike,
    spec: ArtifactSpec,
    metadata: Mapping[str, object],
    parity_inputs: Sequence[Sequence[np.ndarray]] | None = None,
    parity_fn: Callable | None = None,
    dynamic_shapes: Mapping[str, Mapping[int, str]] | None = None,
    atol: float = 1e-4,
    ort: bool = False,
    input_names: Sequence[str] | None = None,
    output_names: Sequence[str] | None = None,
) -> ExportResult:
    """Export ``wrapper`` as an artifact of ``spec``; the file appears only after parity passed.

    Args:
        wrapper: ``torch.nn.Module`` (CPU, float32, eval) whose ``forward`` takes the artifact's
            inputs in order and returns its outputs.
        example_inputs: tensors to trace with (dynamic axes of size >= 2).
        path: destination ``.onnx``.
        spec: the family's artifact spec; ``metadata`` and the graph names are checked against it.
        metadata: ``metadata_props`` (values converted with ``str``); must hold ``speechkit.task``
            and every key of ``spec.metadata``; ``speechkit_version`` is added if absent.
        parity_inputs: input sets (float32 numpy arrays in input order) to compare ONNX and
            PyTorch on; default: ``example_inputs``.
        parity_fn: the PyTorch reference ``fn(*tensors)``; default ``wrapper``.
        dynamic_shapes: ``{tensor name: {axis: symbolic name}}`` (see ``export_onnx``).
        atol: largest allowed absolute output difference.
        ort: also write ``<stem>.ort`` (ORT mobile format).
        input_names, output_names: graph names; default the spec's (which must then contain no
            ``*`` pattern). Given names must match the spec's patterns.

    Returns:
        :class:`ExportResult`.

    Raises:
        SpeechkitError: metadata or names that do not fit ``spec``.
        ParityError: outputs differ by more than ``atol`` (nothing is written).
    """
    meta = artifact_metadata(spec, metadata)
    input_names = list(input_names if input_names is not None else spec.inputs)
    output_names = list(output_names if output_names is not None else spec.outputs)
    for what, names, pattern in (("inputs", input_names, spec.inputs), ("outputs", output_names, spec.outputs)):
        if any(n.endswith("*") for n in names) or not names_match(pattern, names):
            raise SpeechkitError(f"{spec.kind} artifact {what} {names} do not fit the spec's {list(pattern)}")
    if parity_inputs is None:
        parity_inputs = [tuple(x.detach().cpu().numpy() for x in example_inputs)]
    path = Path(path)
    with atomic_path(path) as tmp:
        export_onnx(wrapper, tuple(example_inputs), tmp, input_names, output_names,
                    dynamic_shapes=dynamic_shapes, metadata=meta)
        worst = check_parity(tmp, parity_fn if parity_fn is not None else wrapper, parity_inputs, atol=atol)
    ort_path = convert_to_ort(path) if ort else None
    return ExportResult(path, worst, ort_path)
