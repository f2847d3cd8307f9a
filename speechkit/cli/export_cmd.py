"""``speechkit export CHECKPOINT OUT.onnx [--int8] [--force] [--ort]``.

Loads the checkpoint, looks up the exporter of its task (``task.task_name``) in
:data:`EXPORTERS` and runs it. Families add theirs with :func:`register_exporter`, which may
also add options to this parser (e.g. ASR's ``--streaming --chunk-ms N | --full-context``)::

    from speechkit.cli.export_cmd import register_exporter
    register_exporter("asr-ctc", export_asr_command, add_arguments=add_asr_export_options)

Usage::

    speechkit export runs/kws/checkpoints/best.ckpt kws.onnx --int8 --ort
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Callable

#: task_name -> exporter ``fn(task, args) -> exit status | None``.
EXPORTERS: dict[str, Callable] = {}
#: option adders registered by families; applied to every export parser built.
_OPTION_ADDERS: list[Callable[[argparse.ArgumentParser], None]] = []
_parser: argparse.ArgumentParser | None = None


def register_exporter(
    task_name: str, exporter: Callable, add_arguments: Callable[[argparse.ArgumentParser], None] | None = None
) -> None:
    """Make ``speechkit export`` handle checkpoints whose ``task_name`` is ``task_name``.

    Args:
        task_name: the task's ``task_name`` (``kws``, ``asr-ctc``, ...).
        exporter: ``fn(task, args)``: ``task`` is the loaded LightningModule (eval, CPU);
            ``args`` the parsed namespace with ``checkpoint``, ``output`` and every option.
        add_arguments: adds the family's options to the export parser (optional). Safe to call
            before or after :func:`register` built the parser.
    """
    EXPORTERS[task_name] = exporter
    if add_arguments is not None and add_arguments not in _OPTION_ADDERS:
        _OPTION_ADDERS.append(add_arguments)
        if _parser is not None:
            add_arguments(_parser)


def register(sub: argparse._SubParsersAction) -> None:
    global _parser
    p = sub.add_parser(
        "export",
        help="export a checkpoint to ONNX (parity-checked), optionally int8 and ORT format",
        description="Export a trained checkpoint to its ONNX artifact with the front-end inside, "
        "check it against PyTorch (max |logit diff| <= --atol on several batch sizes), and "
        "optionally write a statically quantized int8 model (refused if it loses more than "
        "--max-int8-drop points of test accuracy) and the ORT mobile format.",
    )
    p.add_argument("checkpoint", type=Path, help="Lightning checkpoint from `speechkit fit` / quickstart")
    p.add_argument("output", type=Path, help="output .onnx file (int8: <stem>_int8.onnx beside it)")
    p.add_argument("--int8", action="store_true", help="also write a statically quantized int8 model")
    p.add_argument("--force", action="store_true", help="keep the int8 model even if it fails the accuracy gate")
    p.add_argument("--ort", action="store_true", help="also write the ORT mobile format (.ort) and check mobile usability")
    p.add_argument("--train-manifest", type=Path, default=None,
                   help="cuts for int8 calibration (default: cuts_train.jsonl.gz of the checkpoint's manifest_dir)")
    p.add_argument("--test-manifest", type=Path, default=None,
                   help="cuts for the int8 accuracy gate (default: cuts_test.jsonl.gz of the checkpoint's manifest_dir)")
    p.add_argument("--calibration-clips", type=int, default=300, help="training clips used for int8 calibration (default 300)")
    p.add_argument("--max-int8-drop", type=float, default=1.0,
                   help="largest allowed int8 accuracy drop (KWS) or WER rise (ASR) in percentage points (default 1.0)")
    p.add_argument("--atol", type=float, default=1e-4, help="parity tolerance on the logits (default 1e-4)")
    for add_arguments in _OPTION_ADDERS:
        add_arguments(p)
    p.set_defaults(func=run_export)
    _parser = p


def run_export(args: argparse.Namespace) -> int | None:
    from speechkit.errors import ModelFileError, SpeechkitError
    from speechkit.tasks import load_task

    if args.output.suffix != ".onnx":
        raise SpeechkitError(f"{args.output}: the output file name must end in .onnx")
    task = load_task(args.checkpoint)
    task_name = getattr(task, "task_name", "")
    exporter = EXPORTERS.get(task_name)
    if exporter is None:
        raise ModelFileError(
            f"{args.checkpoint}: no ONNX exporter for {task_name or type(task).__name__!r} checkpoints "
            f"(available: {', '.join(sorted(EXPORTERS))})"
        )
    return exporter(task, args)


def export_kws_command(task, args: argparse.Namespace) -> int:
    """The ``kws`` exporter: fp32 artifact, then optional int8 (gated) and ORT files."""
    from speechkit.export.kws_export import KwsExportOptions, export_kws_artifacts
    from speechkit.export.onnx_export import checkpoint_model_config

    options = KwsExportOptions(
        int8=args.int8, ort=args.ort, force=args.force, train_manifest=args.train_manifest,
        test_manifest=args.test_manifest, calibration_clips=args.calibration_clips,
        max_int8_drop_points=args.max_int8_drop, atol=args.atol,
    )
    export_kws_artifacts(task, args.output, options, model_config=checkpoint_model_config(args.checkpoint))
    return 0


register_exporter("kws", export_kws_command)


def _add_asr_export_options(p: argparse.ArgumentParser) -> None:
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--streaming", action="store_true",
                      help="ASR: streaming artifact (default): features + states per chunk")
    mode.add_argument("--full-context", action="store_true", help="ASR: offline artifact (whole utterances)")
    p.add_argument("--chunk-ms", type=int, default=320, help="ASR streaming chunk in ms, a multiple of 40 (default 320)")
    p.add_argument("--left-chunks", type=int, default=None,
                   help="ASR: chunks of left context kept in the cache (default: 2.56 s)")


def _export_asr(task, args: argparse.Namespace) -> int:
    from speechkit.export.asr_export import export_asr_command

    return export_asr_command(task, args)


register_exporter("asr-ctc", _export_asr, add_arguments=_add_asr_export_options)
