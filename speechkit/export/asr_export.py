"""Export an ``AsrCtcTask`` to the ASR artifacts, parity-checked; the ``asr-ctc`` exporter.

The artifacts' layout is documented in :mod:`speechkit.export.asr_wrappers` (wrappers and
metadata); int8 files and their WER gate in :mod:`speechkit.export.asr_int8`. This module
checks the task, builds the parity inputs from the chunk schedule
(:class:`speechkit.runtime.chunking.ChunkSchedule`), writes each artifact through
:func:`speechkit.export.artifact.export_artifact`, and registers the family's exporter with
:func:`speechkit.export.registry.register_exporter` at import (``speechkit export`` finds it;
no CLI file names ASR).

**Gates.** The export fails unless ONNX Runtime matches PyTorch within ``atol`` (1e-4) on every
output: for the streaming artifact window by window over a stream longer than the left context
plus a short last window, for the full-context one over several lengths. ``--int8`` writes
``<stem>_int8.onnx`` by dynamic quantization and refuses it when the WER on a test manifest
rises by more than 1 point (absolute) over fp32, unless forced.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from speechkit.errors import ModelFileError, SpeechkitError
from speechkit.export.artifact import export_artifact
from speechkit.export.asr_int8 import ASR_GATE, write_int8
from speechkit.export.asr_wrappers import AsrOfflineOnnxModel, AsrStreamingOnnxModel, asr_metadata
from speechkit.export.onnx_export import check_mobile_usability, convert_to_ort, file_size_text
from speechkit.export.registry import Exporter, register_exporter
from speechkit.runtime.asr_model import OFFLINE_SPEC, STREAMING_SPEC, STREAMING_TASK
from speechkit.runtime.chunking import MIN_CHUNK_FRAMES, SUBSAMPLING, ChunkSchedule, chunk_size_from_ms

#: ``task_name`` of the checkpoints exported here (:class:`speechkit.tasks.asr.AsrCtcTask`).
TRAINING_TASK = "asr-ctc"
#: Default left context of the streaming artifact, in encoder frames (64 x 40 ms = 2.56 s, the
#: encoder's ``init_states`` default of 8 chunks of 8 frames).
DEFAULT_LEFT_CONTEXT_FRAMES = 64
#: ``dynamic_shapes`` of both artifacts: any number of feature frames in, as many encoder frames out.
_DYNAMIC = {"features": {1: "frames"}, "log_probs": {1: "out_frames"}}

__all__ = [
    "DEFAULT_LEFT_CONTEXT_FRAMES", "TRAINING_TASK", "add_asr_export_arguments", "chunk_size_from_ms",
    "export_asr", "export_asr_command", "export_asr_task", "export_offline", "export_streaming", "format_report",
]


def _random_features(encoder: nn.Module, frames: int, gen: np.random.Generator) -> np.ndarray:
    """(1, frames, F) features at the scale the encoder normalises to N(0, 1)."""
    mean = encoder.feat_mean.detach().cpu().numpy()
    std = 1.0 / encoder.feat_inv_std.detach().cpu().numpy()
    return (mean + std * gen.standard_normal((1, frames, len(mean)))).astype(np.float32)


def export_streaming(
    encoder: nn.Module,
    ctc_head: nn.Module,
    metadata: dict[str, str],
    path: str | os.PathLike,
    chunk_size: int,
    left_chunks: int,
    atol: float = 1e-4,
    seed: int = 0,
    ort: bool = False,
) -> float:
    """Export the streaming artifact and check it window by window against PyTorch.

    The parity stream has ``left_chunks + 3`` full windows (so the attention cache fills and
    slides) and a shorter last one (one encoder frame short), cut by the runtime's
    :class:`~speechkit.runtime.chunking.ChunkSchedule`; each window's inputs are the states
    PyTorch carried. A second stream is a single 7-frame window. The file appears at ``path``
    only if every output (log-probabilities and states) is within ``atol``.

    Returns:
        The largest absolute difference measured.

    Raises:
        ParityError: a difference above ``atol`` (the message gives it).
    """
    wrapper = AsrStreamingOnnxModel(encoder, ctc_head).to("cpu", torch.float32).eval()
    schedule = ChunkSchedule.for_chunk_size(chunk_size)
    states = encoder.init_states(1, chunk_size, left_chunks)
    num_states = len(states)
    gen = np.random.default_rng(seed)
    example = torch.from_numpy(_random_features(encoder, schedule.chunk_frames, gen))
    last = max(MIN_CHUNK_FRAMES, schedule.chunk_frames - SUBSAMPLING)
    stream = _random_features(encoder, schedule.shift_frames * (left_chunks + 3) + last, gen)
    inputs = []
    for window in schedule.windows(stream.shape[1]):
        feats = stream[:, window.start : window.end]
        inputs.append((feats, *[s.numpy() for s in states]))
        with torch.no_grad():
            states = list(wrapper(torch.from_numpy(feats), *states)[1:])
    fresh = [s.numpy() for s in encoder.init_states(1, chunk_size, left_chunks)]
    inputs.append((_random_features(encoder, MIN_CHUNK_FRAMES, gen), *fresh))
    result = export_artifact(
        wrapper, (example, *encoder.init_states(1, chunk_size, left_chunks)), path, STREAMING_SPEC, metadata,
        parity_inputs=inputs, dynamic_shapes=_DYNAMIC, atol=atol, ort=ort,
        input_names=["features"] + [f"cache_{i}" for i in range(num_states)],
        output_names=["log_probs"] + [f"next_cache_{i}" for i in range(num_states)],
    )
    return result.max_abs_diff


def export_offline(
    encoder: nn.Module,
    ctc_head: nn.Module,
    metadata: dict[str, str],
    path: str | os.PathLike,
    lengths: Sequence[int] = (MIN_CHUNK_FRAMES, 61, 250),
    atol: float = 1e-4,
    seed: int = 0,
    ort: bool = False,
) -> float:
    """Export the full-context artifact, checked against PyTorch on utterances of ``lengths`` frames.

    Returns:
        The largest absolute log-probability difference.

    Raises:
        ParityError: a difference above ``atol``.
    """
    wrapper = AsrOfflineOnnxModel(encoder, ctc_head).to("cpu", torch.float32).eval()
    gen = np.random.default_rng(seed)
    example = torch.from_numpy(_random_features(encoder, 100, gen))
    result = export_artifact(
        wrapper, (example,), path, OFFLINE_SPEC, metadata, dynamic_shapes=_DYNAMIC, atol=atol, ort=ort,
        parity_inputs=[(_random_features(encoder, n, gen),) for n in lengths],
    )
    return result.max_abs_diff


def _task_parts(task) -> tuple[nn.Module, nn.Module, nn.Module, list[str], int]:
    """(encoder, ctc_head, frontend, tokens, sample_rate) of an ``AsrCtcTask``."""
    encoder, head, frontend = task.encoder, task.ctc_head, task.frontend
    if not hasattr(encoder, "streaming_forward"):
        raise ModelFileError(f"the checkpoint's encoder ({type(encoder).__name__}) has no streaming_forward; cannot export it")
    if not hasattr(frontend, "kaldi_options"):
        raise ModelFileError(
            f"the checkpoint's front-end is {type(frontend).__name__}; the ASR artifact needs the Kaldi "
            "fbank (speechkit.frontends.Fbank), whose options the runtime gives kaldi-native-fbank"
        )
    return encoder, head, frontend, task.tokenizer.tokens(), int(task.sample_rate)


def export_asr_task(
    task,
    out_path: str | os.PathLike,
    streaming: bool = True,
    chunk_ms: int = 320,
    int8: bool = False,
    force: bool = False,
    ort: bool = False,
    test_manifest: str | os.PathLike | None = None,
    left_chunks: int | None = None,
    atol: float = 1e-4,
    max_wer_rise_points: float = ASR_GATE.max_delta,
) -> dict:
    """Export an ``AsrCtcTask`` to the streaming or full-context artifact (+ int8, + ORT).

    Args:
        task: the task (eval mode; moved to CPU float32).
        out_path: the ``.onnx`` file; int8 goes to ``<stem>_int8.onnx`` beside it.
        streaming: streaming artifact (else full context).
        chunk_ms: streaming chunk (a multiple of 40 ms).
        int8: also write the dynamically quantized model, gated on WER (:data:`ASR_GATE`).
        force: keep the int8 model even if it fails the gate (or with no test manifest).
        ort: also write the ORT mobile format of every written model.
        test_manifest: cuts (or a LibriSpeech folder) for the int8 gate; ``None``: the first
            test (else validation) manifest of the checkpoint's data module that exists.
        left_chunks: chunks of left context in the streaming cache; ``None``: 2.56 s
            (:data:`DEFAULT_LEFT_CONTEXT_FRAMES`).
        atol: parity tolerance on the outputs.
        max_wer_rise_points: int8 gate limit (WER points).

    Returns:
        A JSON-ready report: ``path``, ``task``, ``size_bytes``, ``parity_max_diff``, the
        chunking (streaming), ``int8`` (path, size, ``gate`` = ``GateReport.to_dict()``, or
        None) and ``ort`` (paths).

    Raises:
        ParityError, QualityGateError, SpeechkitError (bad options), ModelFileError (not exportable).
    """
    encoder, head, frontend, tokens, sample_rate = _task_parts(task)
    encoder, head = encoder.to("cpu", torch.float32).eval(), head.to("cpu", torch.float32).eval()
    feature_options = frontend.kaldi_options()
    out_path = Path(out_path)
    if out_path.suffix != ".onnx":
        raise SpeechkitError(f"{out_path}: the output file name must end in .onnx")
    manifest = test_manifest if test_manifest is not None else _default_test_manifest(task)
    if int8 and manifest is None and not force:  # before the export, which takes a while
        raise SpeechkitError("--int8 checks the WER on test audio: pass --test-manifest, or --force to skip the check")
    report: dict = {"path": str(out_path)}
    if streaming:
        chunk_size = chunk_size_from_ms(chunk_ms, float(feature_options["frame_opts"]["frame_shift_ms"]))
        if left_chunks is None:
            left_chunks = max(1, DEFAULT_LEFT_CONTEXT_FRAMES // chunk_size)
        if left_chunks < 1:
            raise SpeechkitError(f"left chunks {left_chunks}: expected 1 or more (the attention cache is bounded)")
        metadata = asr_metadata(encoder, head, tokens, feature_options, sample_rate, chunk_size, left_chunks)
        report["parity_max_diff"] = export_streaming(encoder, head, metadata, out_path, chunk_size, left_chunks, atol)
        report.update(chunk_ms=int(metadata["chunk_ms"]), left_chunks=left_chunks,
                      chunk_frames=int(metadata["chunk_frames"]), shift_frames=int(metadata["shift_frames"]))
    else:
        metadata = asr_metadata(encoder, head, tokens, feature_options, sample_rate)
        report["parity_max_diff"] = export_offline(encoder, head, metadata, out_path, atol=atol)
    report.update(task=metadata["speechkit.task"], size_bytes=out_path.stat().st_size, atol=atol, int8=None, ort=[])
    written = [out_path]
    if int8:
        report["int8"] = write_int8(out_path, manifest, force, ASR_GATE.with_max_delta(max_wer_rise_points))
        written.append(Path(report["int8"]["path"]))
    if ort:
        report["ort"] = [str(convert_to_ort(p)) for p in written]
        report["mobile_usability"] = check_mobile_usability(out_path).summary()
    return report


def _default_test_manifest(task) -> Path | None:
    """The first existing test (else validation) manifest the checkpoint's data module names."""
    from speechkit.data.manifests import cuts_path

    config = getattr(task, "datamodule_config", None) or {}
    candidates = [Path(m) for key in ("test_manifests", "valid_manifests") for m in (config.get(key) or [])]
    if config.get("manifest_dir"):
        candidates.append(cuts_path(config["manifest_dir"], "test"))
    return next((c for c in candidates if c.is_file()), None)


def export_asr(
    ckpt_path: str | os.PathLike,
    out_path: str | os.PathLike,
    streaming: bool = True,
    chunk_ms: int = 320,
    int8: bool = False,
    force: bool = False,
    ort: bool = False,
    test_manifest: str | os.PathLike | None = None,
    **kwargs,
) -> dict:
    """:func:`export_asr_task` for a ``speechkit fit`` checkpoint of an ``asr-ctc`` task."""
    from speechkit.tasks import load_task

    task = load_task(ckpt_path, expected=(TRAINING_TASK,))
    return export_asr_task(task, out_path, streaming, chunk_ms, int8, force, ort, test_manifest, **kwargs)


def format_report(report: dict) -> list[str]:
    """Human-readable lines of an :func:`export_asr_task` report."""
    from speechkit.export.gate import GateReport

    path = Path(report["path"])
    what = (f"streaming, {report['chunk_ms']} ms chunks ({report['chunk_frames']} feature frames every "
            f"{report['shift_frames']}), {report['left_chunks']} left chunks" if report["task"] == STREAMING_TASK
            else "full context")
    first = (f"wrote {path} ({file_size_text(path)}; {report['task']}: {what}); parity with PyTorch: "
             f"max |diff| {report['parity_max_diff']:.2g} (limit {report['atol']:g})")
    lines = [first]
    int8 = report.get("int8")
    if int8:
        gate = int8["gate"]
        if gate is None:
            lines.append("warning: int8 WER not checked (no test manifest; --force)")
        else:
            fields = {k: gate[k] for k in ("metric", "fp32", "int8", "max_delta", "higher_is_better", "forced", "num_items")}
            lines.append(f"int8 {GateReport(**fields).summary()}")
            if not gate["passed"]:
                lines.append("warning: int8 model fails the WER gate; kept because of --force")
        lines.append(f"wrote {int8['path']} ({file_size_text(int8['path'])}, "
                     f"{100 * int8['size_bytes'] / max(report['size_bytes'], 1):.0f}% of fp32)")
    for ort_path in report.get("ort", []):
        lines.append(f"wrote {ort_path} ({file_size_text(ort_path)})")
    if "mobile_usability" in report:
        lines.append(f"mobile usability ({path.name}): {report['mobile_usability']}")
    return lines


def add_asr_export_arguments(p: argparse.ArgumentParser) -> None:
    """The ASR options of ``speechkit export``: ``--streaming | --full-context``, ``--chunk-ms``, ``--left-chunks``."""
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--streaming", action="store_true",
                      help="ASR: streaming artifact (default): features + states per chunk")
    mode.add_argument("--full-context", action="store_true", help="ASR: offline artifact (whole utterances)")
    p.add_argument("--chunk-ms", type=int, default=320, help="ASR streaming chunk in ms, a multiple of 40 (default 320)")
    p.add_argument("--left-chunks", type=int, default=None,
                   help="ASR: chunks of left context kept in the cache (default: 2.56 s)")


def export_asr_command(task, args: argparse.Namespace, checkpoint: Path | None = None) -> int:
    """The ``asr-ctc`` exporter of ``speechkit export`` (``Exporter.export``: task, args, checkpoint)."""
    max_rise = getattr(args, "max_int8_drop", None)
    report = export_asr_task(
        task, args.output, streaming=not getattr(args, "full_context", False),
        chunk_ms=getattr(args, "chunk_ms", 320), int8=args.int8, force=args.force, ort=args.ort,
        test_manifest=getattr(args, "test_manifest", None), left_chunks=getattr(args, "left_chunks", None),
        atol=getattr(args, "atol", 1e-4), max_wer_rise_points=ASR_GATE.max_delta if max_rise is None else max_rise,
    )
    for line in format_report(report):
        print(line)
    return 0


register_exporter(Exporter(
    name="asr-ctc", task_class="speechkit.tasks.asr.AsrCtcTask", export=export_asr_command, gate=ASR_GATE,
    add_arguments=add_asr_export_arguments,
))
