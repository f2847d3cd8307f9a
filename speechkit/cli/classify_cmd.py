"""``speechkit classify --model M.onnx FILE...``: classify audio files with any clip classifier (torch-free).

Prints one JSON line per file on stdout, ``{"file": ..., "label": ..., "score": ...}``, where
``score`` is the label's posterior averaged over the file's clip windows
(:class:`speechkit.runtime.classifier.ClipClassifier`). Works for every clip-classifier
artifact whatever its task (``scene``, ``kws``, ...); ``--task`` insists on one.

Usage::

    speechkit classify --model scene.onnx street.wav park.wav
    speechkit classify --model scene.onnx --all-scores street.wav
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

#: place in ``speechkit --help`` (see :func:`speechkit.cli.main.command_modules`).
ORDER = 45


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "classify", help="classify audio files with an exported clip classifier (scene, kws, ...)",
        description="Classify whole audio files with a clip-classifier ONNX model: files longer than the "
        "model's clip are cut into clip-length windows whose posteriors are averaged, shorter ones are "
        "zero-padded. One JSON line per file on stdout.",
    )
    p.add_argument("--model", type=Path, required=True, help="clip-classifier .onnx/.ort file from `speechkit export`")
    p.add_argument("files", type=Path, nargs="+", metavar="FILE", help="audio files (any rate and channel count)")
    p.add_argument("--task", action="append", default=None,
                   help="accept only models of this speechkit.task (repeatable; default: any)")
    p.add_argument("--all-scores", action="store_true", help="add every label's averaged posterior as \"scores\"")
    p.add_argument("--threads", type=int, default=1, help="onnxruntime threads (default 1)")
    p.set_defaults(func=run_classify)


def run_classify(args: argparse.Namespace) -> int:
    from speechkit.runtime.classifier import ClipClassifier

    classifier = ClipClassifier(args.model, tasks=args.task, num_threads=args.threads)
    for path in args.files:
        result = classifier.classify_file(path)
        line = {"file": str(path), "label": result["label"], "score": result["score"]}
        if args.all_scores:
            line["scores"] = result["probabilities"]
        print(json.dumps(line), flush=True)
    return 0
