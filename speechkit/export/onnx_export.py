"""Generic ONNX export: the dynamo exporter, named dynamic axes, metadata, parity, ORT format.

Family-specific wrappers (:mod:`speechkit.export.kws_export`, ...) build an export module whose
``forward`` has exactly the artifact's inputs and outputs, then call :func:`export_onnx` and
:func:`check_parity` here. The pattern follows icefall's ``export-onnx.py`` (wrapper modules plus
``add_meta_data``) and ``onnx_check.py`` (parity with a max-diff message), with two fixes we
want by construction: a dynamic axis that names no input or output is an error (sherpa-onnx's
3dspeaker export once declared an axis on a misspelt name and silently exported a static one),
and every file is written atomically.

Usage::

    export_onnx(wrapper, (torch.randn(2, 16000),), "kws.onnx", ["audio"], ["logits"],
                dynamic_shapes={"audio": {0: "batch"}, "logits": {0: "batch"}},
                metadata={"speechkit.task": "kws", ...})
    check_parity("kws.onnx", wrapper, [(np_audio_b1,), (np_audio_b5,)], atol=1e-4)
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import shutil
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Mapping, Sequence

import numpy as np

from speechkit.errors import ModelFileError, SpeechkitError
from speechkit.fileio import atomic_path

#: The only node metadata kept from the torch exporter: the module path of each node, which
#: quantization uses to find the front-end's nodes. The rest (stack traces with the exporting
#: machine's paths, FX dumps, class hierarchies) was a third of a BC-ResNet-1 file's bytes.
_KEPT_NODE_METADATA = ("pkg.torch.onnx.name_scopes",)


class ParityError(SpeechkitError):
    """The exported ONNX model's outputs differ from PyTorch's by more than the tolerance."""


def export_onnx(
    module,
    example_inputs: tuple,
    path: str | os.PathLike,
    input_names: Sequence[str],
    output_names: Sequence[str],
    dynamic_shapes: Mapping[str, Mapping[int, str]] | None = None,
    metadata: Mapping[str, object] | None = None,
    opset_version: int | None = None,
) -> Path:
    """Export ``module`` with ``torch.onnx.export(..., dynamo=True)`` and write it atomically.

    Args:
        module: ``torch.nn.Module`` in eval mode whose ``forward`` takes ``example_inputs`` in
            the order of ``input_names`` and returns a tensor or a tuple in the order of
            ``output_names``.
        example_inputs: tensors to trace with; a dynamic axis should have size >= 2 here
            (torch.export specialises sizes 0 and 1).
        path: destination ``.onnx`` file.
        input_names: graph input names, in ``forward`` argument order.
        output_names: graph output names, in return order.
        dynamic_shapes: ``{tensor name: {axis: symbolic name}}`` over inputs *and* outputs,
            e.g. ``{"audio": {0: "batch"}, "logits": {0: "batch"}}``. The same symbolic name
            on two tensors means the same size. Output axes are renamed to these names.
        metadata: ``metadata_props`` of the model; values are converted with ``str``.
        opset_version: ONNX opset; ``None`` lets the exporter choose.

    Returns:
        ``Path(path)``.

    Raises:
        ValueError: ``dynamic_shapes`` names a tensor that is neither an input nor an output,
            an axis beyond a tensor's rank, or the exporter fixed an axis declared dynamic.
    """
    import onnx
    import torch

    input_names, output_names = list(input_names), list(output_names)
    dynamic_shapes = {k: dict(v) for k, v in (dynamic_shapes or {}).items()}
    _check_dynamic_names(dynamic_shapes, input_names, output_names)
    if len(example_inputs) != len(input_names):
        raise ValueError(f"{len(example_inputs)} example inputs but {len(input_names)} input names")
    dims: dict[str, object] = {}
    torch_shapes = []
    for name, example in zip(input_names, example_inputs):
        axes = dynamic_shapes.get(name, {})
        _check_axes(name, axes, example.dim())
        torch_shapes.append({a: dims.setdefault(n, torch.export.Dim(n)) for a, n in axes.items()} or None)

    with _quiet_exporter():
        program = torch.onnx.export(
            module, tuple(example_inputs), dynamo=True, input_names=input_names,
            output_names=output_names, dynamic_shapes=tuple(torch_shapes),
            opset_version=opset_version, verbose=False, report=False,
        )
    model = program.model_proto
    _name_dynamic_axes(model, dynamic_shapes)
    _strip_node_metadata(model)
    if metadata:
        onnx.helper.set_model_props(model, {str(k): str(v) for k, v in metadata.items()})
    path = Path(path)
    with atomic_path(path) as tmp:
        onnx.save_model(model, str(tmp))
        onnx.checker.check_model(str(tmp))
    return path


def _check_dynamic_names(dynamic: Mapping, input_names: list[str], output_names: list[str]) -> None:
    unknown = sorted(set(dynamic) - set(input_names) - set(output_names))
    if unknown:
        raise ValueError(
            f"dynamic_shapes names {unknown}, which are neither inputs {input_names} nor "
            f"outputs {output_names}"
        )


def _check_axes(name: str, axes: Mapping[int, str], rank: int) -> None:
    for axis, dim_name in axes.items():
        if not 0 <= axis < rank:
            raise ValueError(f"dynamic axis {axis} ({dim_name!r}) of {name!r}, which has rank {rank}")
        if not str(dim_name).isidentifier():
            raise ValueError(f"dynamic axis name {dim_name!r} of {name!r} is not an identifier")


def _name_dynamic_axes(model, dynamic_shapes: Mapping[str, Mapping[int, str]]) -> None:
    """Give every declared dynamic axis its symbolic name; fail if the exporter fixed it."""
    values = {v.name: v for v in list(model.graph.input) + list(model.graph.output)}
    for name, axes in dynamic_shapes.items():
        dims = values[name].type.tensor_type.shape.dim
        for axis, dim_name in axes.items():
            if axis >= len(dims):
                raise ValueError(f"dynamic axis {axis} of {name!r}, which has rank {len(dims)}")
            if dims[axis].HasField("dim_value"):
                raise ValueError(
                    f"axis {axis} of {name!r} was declared dynamic ({dim_name!r}) but the "
                    f"exporter fixed it to {dims[axis].dim_value}"
                )
            dims[axis].dim_param = dim_name


def _strip_node_metadata(model) -> None:
    for node in model.graph.node:
        keep = [p for p in node.metadata_props if p.key in _KEPT_NODE_METADATA]
        del node.metadata_props[:]
        node.metadata_props.extend(keep)


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """Silence the exporter's chatter (missing-torchvision notices, deprecation warnings)."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    """``metadata_props`` of an ONNX file as a dict (reads only the model proto)."""
    import onnx

    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: no such ONNX file")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        raise ModelFileError(f"{path}: not a valid ONNX file ({type(exc).__name__})") from None
    return {p.key: p.value for p in model.metadata_props}


def write_metadata(path: str | os.PathLike, metadata: Mapping[str, object]) -> None:
    """Add or replace ``metadata_props`` entries of an ONNX file, atomically."""
    import onnx

    path = Path(path)
    model = onnx.load(str(path))
    props = {p.key: p.value for p in model.metadata_props}
    props.update({str(k): str(v) for k, v in metadata.items()})
    del model.metadata_props[:]
    onnx.helper.set_model_props(model, props)
    with atomic_path(path) as tmp:
        onnx.save_model(model, str(tmp))


def checkpoint_model_config(checkpoint: str | os.PathLike) -> dict | None:
    """The network's ``init_args`` as LightningCLI recorded them in a checkpoint, if it did.

    A task loaded from the checkpoint does not keep them (its ``hparams`` leave out injected
    modules), but they are what an artifact's ``model`` metadata should name (e.g. a width).
    """
    from speechkit.tasks import read_checkpoint

    model = (read_checkpoint(checkpoint).get("hyper_parameters") or {}).get("model")
    if isinstance(model, dict) and isinstance(model.get("init_args"), dict):
        return dict(model["init_args"])
    return None


def check_parity(
    onnx_path: str | os.PathLike,
    torch_fn: Callable,
    inputs_list: Sequence[Sequence[np.ndarray]],
    atol: float = 1e-4,
) -> float:
    """Run the ONNX model and ``torch_fn`` on each input set; fail if outputs differ.

    Args:
        onnx_path: exported model.
        torch_fn: the reference, called as ``torch_fn(*tensors)`` under ``torch.no_grad()``;
            returns a tensor or a tuple of tensors in the ONNX output order.
        inputs_list: input sets, each a sequence of float32 numpy arrays in the ONNX input
            order (e.g. several batch sizes).
        atol: largest allowed absolute difference of any output element.

    Returns:
        The largest absolute difference seen over all input sets and outputs.

    Raises:
        ParityError: some output differs by more than ``atol`` (the message gives the
            measured difference, the output and the input shapes).
    """
    import onnxruntime as ort
    import torch

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    out_names = [o.name for o in session.get_outputs()]
    worst = 0.0
    for inputs in inputs_list:
        got = session.run(None, dict(zip(names, inputs)))
        with torch.no_grad():
            expected = torch_fn(*(torch.from_numpy(np.asarray(x)) for x in inputs))
        if isinstance(expected, torch.Tensor):
            expected = (expected,)
        shapes = ", ".join(f"{n} {tuple(np.shape(x))}" for n, x in zip(names, inputs))
        for name, a, b in zip(out_names, got, expected):
            b = b.detach().cpu().numpy()
            if a.shape != b.shape:
                raise ParityError(
                    f"{onnx_path}: ONNX output {name!r} has shape {a.shape}, PyTorch {b.shape} (inputs {shapes})"
                )
            diff = float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64)))) if a.size else 0.0
            if not np.isfinite(diff) or diff > atol:
                raise ParityError(
                    f"{onnx_path}: ONNX output {name!r} differs from PyTorch by {diff:.3g} "
                    f"(max abs) on inputs {shapes}; allowed {atol:g}"
                )
            worst = max(worst, diff)
    return worst


def convert_to_ort(onnx_path: str | os.PathLike, ort_path: str | os.PathLike | None = None) -> Path:
    """Write the ORT mobile format of ``onnx_path`` with onnxruntime's converter.

    Runs ``onnxruntime.tools.convert_onnx_models_to_ort`` (fixed optimizations, the format
    ORT Mobile loads) in a scratch folder, so its side files (``required_operators.config``)
    do not litter the output folder, and moves the ``.ort`` file into place atomically.

    Returns:
        The ``.ort`` path (default: ``onnx_path`` with the suffix ``.ort``).
    """
    from onnxruntime.tools.convert_onnx_models_to_ort import OptimizationStyle, convert_onnx_models_to_ort

    onnx_path = Path(onnx_path)
    ort_path = Path(ort_path) if ort_path is not None else onnx_path.with_suffix(".ort")
    with tempfile.TemporaryDirectory() as scratch:
        src = Path(scratch) / onnx_path.name
        shutil.copyfile(onnx_path, src)
        out_dir = Path(scratch) / "out"
        with quiet_output("onnxruntime", "ort_format_model", "ort_format_model.utils"):
            convert_onnx_models_to_ort(src, output_dir=out_dir, optimization_styles=[OptimizationStyle.Fixed])
        produced = sorted(out_dir.rglob("*.ort"))
        if not produced:
            raise ModelFileError(f"{onnx_path}: onnxruntime's ORT converter produced no .ort file")
        with atomic_path(ort_path) as tmp:
            shutil.copyfile(produced[0], tmp)
    return ort_path


@dataclass
class MobileUsability:
    """Result of onnxruntime's ``check_onnx_model_mobile_usability``.

    Attributes:
        try_nnapi_or_coreml: the checker's verdict: True if the NNAPI (Android) or CoreML (iOS)
            execution provider may beat the CPU EP; False means use the CPU EP.
        messages: the checker's report lines (partitioning, unsupported ops, ...).
    """

    try_nnapi_or_coreml: bool
    messages: list[str] = field(default_factory=list)

    def summary(self) -> str:
        if self.try_nnapi_or_coreml:
            return "NNAPI/CoreML may help; compare them with the CPU execution provider on device"
        return "use the CPU execution provider (NNAPI/CoreML would not take enough of the graph)"


def check_mobile_usability(onnx_path: str | os.PathLike) -> MobileUsability:
    """Run onnxruntime's mobile-usability checker and collect its report."""
    from onnxruntime.tools.mobile_helpers import usability_checker

    records: list[str] = []

    class _Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record.getMessage())

    logger = logging.getLogger("speechkit.mobile_usability")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    handler = _Collect()
    logger.addHandler(handler)
    try:
        with quiet_output("onnxruntime"):
            verdict = usability_checker.analyze_model(Path(onnx_path), skip_optimize=False, logger=logger)
    finally:
        logger.removeHandler(handler)
    return MobileUsability(bool(verdict), [m for m in records if m.strip()])


@contextlib.contextmanager
def quiet_output(*logger_names: str) -> Iterator[None]:
    """Silence onnxruntime tools' chatter: prints to stdout and warnings on the root logger.

    Their progress lines ("Converting models ...") and per-tensor quantization warnings would
    bury the few lines ``speechkit export`` prints; real failures still raise.
    """
    loggers = [logging.getLogger(n) for n in ("", *logger_names)]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def file_size_text(path: str | os.PathLike) -> str:
    """Human-readable size of a file, e.g. ``"45.1 kB"`` (decimal units)."""
    size = Path(path).stat().st_size
    for unit, scale in (("MB", 1e6), ("kB", 1e3)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} B"
