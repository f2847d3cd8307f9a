"""``speechkit export CHECKPOINT OUT.onnx [--int8] [--force] [--ort] [family options]``.

Loads the checkpoint and hands it to the exporter registered for its task class
(:func:`speechkit.export.registry.exporter_for`). The options common to every family live here;
each family adds its own through ``Exporter.add_arguments`` (found by
:func:`~speechkit.export.registry.all_exporters`, which imports every module of
:mod:`speechkit.export`). This file names no family: a new one registers itself in its own
export module.

Usage::

    speechkit export runs/kws/checkpoints/best.ckpt kws.onnx --int8 --ort
"""

from __future__ import annotations

import argparse
from pathlib import Path

#: place in ``speechkit --help`` (see :func:`speechkit.cli.main.command_modules`).
ORDER = 40

HELP = "export a checkpoint to ONNX (parity-checked), optionally int8 and ORT format"


def register(sub: argparse._SubParsersAction) -> None:
    # The real parser needs every family's options, i.e. importing the export package (torch):
    # it is built only when `speechkit export` runs, so other commands and --help stay fast.
    p = sub.add_parser("export", help=HELP, add_help=False, prefix_chars="\x00")
    p.add_argument("argv", nargs=argparse.REMAINDER)
    p.set_defaults(func=lambda args: run_export(build_parser().parse_args(args.argv)))


def build_parser() -> argparse.ArgumentParser:
    """The ``speechkit export`` parser: common options plus every registered family's."""
    from speechkit.export.registry import all_exporters

    exporters = all_exporters()
    gates = "; ".join(
        f"{e.name}: {e.gate.metric} {'drop' if e.gate.higher_is_better else 'rise'}, default {e.gate.max_delta:g}"
        for e in exporters if e.gate is not None
    )
    p = argparse.ArgumentParser(
        prog="speechkit export",
        description="Export a trained checkpoint to its ONNX artifact (the exporter is chosen by the "
        "checkpoint's task), check it against PyTorch (max |output diff| <= --atol), and optionally "
        "write an int8 model (refused if its test metric loses more than --max-int8-drop points) "
        "and the ORT mobile format.",
    )
    p.add_argument("checkpoint", type=Path, help="Lightning checkpoint from `speechkit fit` / quickstart")
    p.add_argument("output", type=Path, help="output .onnx file (int8: <stem>_int8.onnx beside it)")
    p.add_argument("--int8", action="store_true", help="also write an int8 model, checked by the family's quality gate")
    p.add_argument("--force", action="store_true", help="keep the int8 model even if it fails the quality gate")
    p.add_argument("--ort", action="store_true", help="also write the ORT mobile format (.ort) and check mobile usability")
    p.add_argument("--test-manifest", type=Path, default=None,
                   help="test data of the int8 quality gate (default: cuts_test.jsonl.gz of the checkpoint's manifest_dir)")
    p.add_argument("--max-int8-drop", type=float, default=None,
                   help=f"largest allowed int8 loss of the gate's metric, in percentage points ({gates or 'per family'})")
    p.add_argument("--atol", type=float, default=1e-4, help="parity tolerance on the outputs (default 1e-4)")
    for exporter in exporters:
        if exporter.add_arguments is not None:
            exporter.add_arguments(p)
    return p


def run_export(args: argparse.Namespace) -> int | None:
    from speechkit.errors import ModelFileError, SpeechkitError
    from speechkit.export.registry import exporter_for
    from speechkit.tasks import load_task

    if args.output.suffix != ".onnx":
        raise SpeechkitError(f"{args.output}: the output file name must end in .onnx")
    task = load_task(args.checkpoint)
    try:
        exporter = exporter_for(task)
    except ModelFileError as exc:
        raise ModelFileError(f"{args.checkpoint}: {exc}") from None
    if args.max_int8_drop is None:
        args.max_int8_drop = exporter.gate.max_delta if exporter.gate is not None else 1.0
    if args.int8 and exporter.gate is None:
        raise SpeechkitError(f"{args.checkpoint}: the {exporter.name!r} exporter has no int8 export")
    return exporter.export(task, args, args.checkpoint)
