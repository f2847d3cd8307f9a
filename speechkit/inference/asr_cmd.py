"""Speech recognition subcommands.

    speechkit tokenizer train MANIFEST... --vocab-size 500 --out bpe.model
    speechkit transcribe MODEL FILE... [--chunk-ms N] [--beam N]
    speechkit transcribe AVSR_MODEL.onnx --video clip.mp4 [--landmarks clip.pkl]
    speechkit eval-asr --model MODEL --data LIBRISPEECH_SUBSET_DIR|MANIFEST [--chunk-ms N] [--beam N]
    speechkit eval-asr --model MODEL --set NAME=DIR|MANIFEST [--set ...] [--chunk-ms 0,640,320] [--out table.json]
    speechkit average-checkpoints CKPT... --out avg.ckpt  |  --last N DIR --out avg.ckpt

Models are loaded by :func:`speechkit.inference.asr.load_recognizer` (checkpoints now; ONNX
files through the same entry point).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

#: position of these commands in ``speechkit --help`` (see :mod:`speechkit.cli.main`).
ORDER = 60


def register(subparsers) -> None:
    _register_tokenizer(subparsers)
    _register_transcribe(subparsers)
    _register_eval(subparsers)
    _register_average(subparsers)


def _register_tokenizer(subparsers) -> None:
    parser = subparsers.add_parser("tokenizer", help="train the sentencepiece units of an ASR model",
                                   description="Sentencepiece units for CTC ASR (blank = id 0).")
    sub = parser.add_subparsers(dest="tokenizer_command", metavar="ACTION", required=True)
    p = sub.add_parser("train", help="train a sentencepiece model on manifest transcripts",
                       description="Train a sentencepiece model on the normalised transcripts of lhotse "
                       "manifests (speechkit.text.normalize_text). Id 0 is the CTC blank.")
    p.add_argument("manifests", nargs="+", metavar="MANIFEST", help="lhotse cuts files (cuts_*.jsonl.gz)")
    p.add_argument("--vocab-size", type=int, default=500, help="units including blank and <unk> (default: 500)")
    p.add_argument("--model-type", choices=("unigram", "bpe"), default="unigram",
                   help="sentencepiece algorithm (default: unigram, as icefall and WeNet)")
    p.add_argument("--out", type=Path, required=True, help="the .model file to write")
    p.set_defaults(func=_run_tokenizer_train)


def _register_transcribe(subparsers) -> None:
    p = subparsers.add_parser("transcribe", help="transcribe audio files with an ASR model",
                              description="Print one line of text per audio file, in order.")
    p.add_argument("model", metavar="MODEL", help="ASR checkpoint (from speechkit fit / quickstart asr)")
    p.add_argument("files", nargs="*", metavar="FILE", help="wav, flac or ogg files (any rate; mixed to mono)")
    p.add_argument("--video", action="append", default=[], metavar="MP4",
                   help="a video to transcribe; MODEL is then an audio-visual (avsr) .onnx from speechkit "
                   "export; repeatable")
    p.add_argument("--landmarks", default=None, help="with one --video: its 68-point landmark file (.pkl/.npz); "
                   "default: the centre crop is the mouth region (synthetic videos)")
    _add_decoding_args(p)
    p.set_defaults(func=_run_transcribe)


def _register_eval(subparsers) -> None:
    p = subparsers.add_parser("eval-asr", help="word error rate and real-time factor of an ASR model",
                              description="Decode a test set and print JSON: wer, substitutions, deletions, "
                              "insertions, rtf, num_utterances and the worst utterances. With --set (several "
                              "test sets) or several --chunk-ms values, print one table instead: test set x "
                              "decoding setting -> WER (all results as JSON with --out).")
    p.add_argument("--model", required=True, help="ASR checkpoint")
    data = p.add_mutually_exclusive_group(required=True)
    data.add_argument("--data",
                      help="a LibriSpeech subset folder (e.g. LibriSpeech/test-clean) or a lhotse cuts manifest")
    data.add_argument("--set", dest="sets", action="append", metavar="NAME=PATH[,NAME=PATH...]",
                      help="a named test set (folder or manifest as --data); repeat it, or separate sets by "
                      "commas, for one table over all of them")
    p.add_argument("--chunk-ms", type=_chunk_list, default=[0], metavar="MS[,MS...]",
                   help="attention chunk in ms, a multiple of 40 (e.g. 320, 640); 0 = full context (default); "
                   "several, comma-separated (0,640,320), make table columns")
    p.add_argument("--left-chunks", type=int, default=-1, help="chunks of left context with --chunk-ms (default: all)")
    p.add_argument("--beam", type=int, default=1, help="CTC prefix beam size; 1 = greedy (default)")
    p.add_argument("--worst", type=int, default=10, help="list this many worst utterances (default: 10)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--out", type=Path, default=None, help="also write the JSON to this file")
    p.set_defaults(func=_run_eval)


def _register_average(subparsers) -> None:
    p = subparsers.add_parser("average-checkpoints", help="average the weights of several checkpoints",
                              description="Mean of the weights of checkpoints (icefall's --avg): name them, or "
                              "take the last N epochs of a folder. The result is for decoding and export.")
    p.add_argument("checkpoints", nargs="*", metavar="CKPT", help="checkpoints to average")
    p.add_argument("--last", nargs=2, metavar=("N", "DIR"), default=None,
                   help="the N latest checkpoints (by epoch and step) in DIR")
    p.add_argument("--out", type=Path, required=True, help="the averaged checkpoint to write")
    p.set_defaults(func=_run_average)


def _add_decoding_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--chunk-ms", type=int, default=0,
                   help="attention chunk in ms, a multiple of 40 (e.g. 320, 640); 0 = full context (default)")
    p.add_argument("--left-chunks", type=int, default=-1, help="chunks of left context with --chunk-ms (default: all)")
    p.add_argument("--beam", type=int, default=1, help="CTC prefix beam size; 1 = greedy (default)")


def _decode_options(args: argparse.Namespace, chunk_ms: int | None = None):
    from speechkit.inference.asr import DecodeOptions

    chunk = args.chunk_ms if chunk_ms is None else chunk_ms
    return DecodeOptions(chunk_ms=chunk, left_chunks=args.left_chunks, beam_size=args.beam)


def _chunk_list(text: str) -> list[int]:
    """``"0,640,320"`` -> ``[0, 640, 320]`` (argparse type of eval-asr's ``--chunk-ms``)."""
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected chunk sizes in ms, e.g. 320 or 0,640,320") from None
    if not values:
        raise argparse.ArgumentTypeError("expected at least one chunk size in ms (0 = full context)")
    return values


def parse_test_sets(specs: list[str]) -> list[tuple[str, str]]:
    """``["a=x.jsonl.gz,b=dir", "c=y"]`` -> ``[("a", "x.jsonl.gz"), ("b", "dir"), ("c", "y")]``.

    Raises:
        SpeechkitError: an entry without ``NAME=PATH``, an empty name or path, or a name twice.
    """
    from speechkit.errors import SpeechkitError

    sets: list[tuple[str, str]] = []
    for spec in specs:
        for entry in (e.strip() for e in spec.split(",")):
            if not entry:
                continue
            name, sep, path = entry.partition("=")
            if not sep or not name.strip() or not path.strip():
                raise SpeechkitError(f"--set {entry!r}: expected NAME=PATH (a LibriSpeech subset folder or a cuts "
                                     "manifest), e.g. --set heldout=manifests/cuts_heldout.jsonl.gz")
            if any(name.strip() == n for n, _ in sets):
                raise SpeechkitError(f"--set: the name {name.strip()!r} is given twice; names label the table rows")
            sets.append((name.strip(), path.strip()))
    if not sets:
        raise SpeechkitError("--set: no test set given; expected NAME=PATH")
    return sets


def format_wer_table(table: dict) -> str:
    """The text table of :func:`_run_eval_table`'s result: one row per set, one column per setting."""
    labels = ["full context" if not c else f"{c} ms" for c in table["chunk_ms"]]
    width = max([len("test set")] + [len(r["set"]) for r in table["rows"]])
    lines = [f"{'test set':<{width}}  {'utts':>5}  " + "  ".join(f"{lab:>12}" for lab in labels),
             "-" * (width + 9 + 14 * len(labels))]
    for row in table["rows"]:
        wers = "  ".join(f"{r['wer']:>12.2%}" for r in row["results"])
        lines.append(f"{row['set']:<{width}}  {row['num_utterances']:>5}  {wers}")
    search = "greedy search" if table["beam_size"] == 1 else f"beam {table['beam_size']}"
    lines.append(f"WER by test set and decoding (chunk of attention), {search}; model {table['model']}")
    return "\n".join(lines)


def _run_tokenizer_train(args: argparse.Namespace) -> int:
    from speechkit.text import train_tokenizer_from_manifests

    tokenizer = train_tokenizer_from_manifests(args.manifests, args.out, args.vocab_size, args.model_type)
    print(f"Wrote {args.out}: {tokenizer.vocab_size} units ({args.model_type}; id 0 = blank) "
          f"from {len(args.manifests)} manifest(s).")
    return 0


def _run_transcribe(args: argparse.Namespace) -> int:
    from speechkit.inference.asr import load_for_transcription, load_recognizer, transcribe

    if args.video or not args.files:
        return _run_transcribe_video(args)
    options = _decode_options(args)
    recognizer = load_recognizer(args.model)
    audios = [load_for_transcription(path, recognizer.sample_rate) for path in args.files]
    texts, _ = transcribe(recognizer, audios, options)
    for text in texts:
        print(text)
    return 0


def _run_transcribe_video(args: argparse.Namespace) -> int:
    """``--video``: audio-visual models (speechkit.runtime.avsr); one line of text per video."""
    from speechkit.data.corpora.lrs import load_video_inputs
    from speechkit.errors import SpeechkitError
    from speechkit.runtime.avsr import AvsrRecognizer

    if not args.video or args.files:
        raise SpeechkitError("give audio FILEs, or --video MP4 (an audio-visual model), not both or neither")
    recognizer = AvsrRecognizer(args.model)
    for path in args.video:
        landmarks = args.landmarks if len(args.video) == 1 else None
        print(recognizer.transcribe(*load_video_inputs(path, landmarks, roi_size=recognizer.roi_size)))
    return 0


def _run_eval(args: argparse.Namespace) -> int:
    from speechkit.errors import SpeechkitError
    from speechkit.fileio import write_json_atomic
    from speechkit.inference.asr import evaluate, load_recognizer, read_eval_set

    if args.threads is not None:
        if args.threads < 1:
            raise SpeechkitError(f"--threads {args.threads}: expected 1 or more")
        import torch

        torch.set_num_threads(args.threads)
    if args.sets or len(args.chunk_ms) > 1:
        return _run_eval_table(args)
    args.chunk_ms = args.chunk_ms[0]
    options = _decode_options(args)
    utterances = read_eval_set(args.data)
    result = evaluate(load_recognizer(args.model), utterances, options, num_worst=args.worst)
    result = {"model": str(args.model), "data": str(args.data), **result}
    json.dump(result, sys.stdout, indent=2)
    print()
    if args.out is not None:
        write_json_atomic(args.out, result)
    return 0


def _run_eval_table(args: argparse.Namespace) -> int:
    """eval-asr over named test sets x chunk sizes: print the WER table; ``--out``: the JSON."""
    from speechkit.errors import SpeechkitError
    from speechkit.fileio import write_json_atomic
    from speechkit.inference.asr import evaluate, load_recognizer, read_eval_set

    sets = parse_test_sets(args.sets) if args.sets else [(Path(args.data).name, args.data)]
    options = [_decode_options(args, chunk) for chunk in args.chunk_ms]  # checks every chunk size first
    # Read every set before loading the model or decoding: a bad path fails at once, named.
    read = []
    for name, path in sets:
        try:
            read.append((name, path, read_eval_set(path)))
        except SpeechkitError as exc:
            raise type(exc)(f"test set {name!r}: {exc}") from None
    recognizer = load_recognizer(args.model)
    rows = []
    for name, path, utterances in read:
        audios = [u.load(recognizer.sample_rate) for u in utterances]
        results = [evaluate(recognizer, utterances, opt, num_worst=args.worst, audios=audios) for opt in options]
        rows.append({"set": name, "data": str(path), "num_utterances": len(utterances), "results": results})
    table = {"model": str(args.model), "chunk_ms": list(args.chunk_ms), "beam_size": args.beam, "rows": rows}
    print(format_wer_table(table))
    if args.out is not None:
        write_json_atomic(args.out, table)
        print(f"all results (JSON): {args.out}")
    return 0


def _run_average(args: argparse.Namespace) -> int:
    from speechkit.errors import SpeechkitError
    from speechkit.tasks.averaging import average_checkpoints, latest_checkpoints

    if bool(args.checkpoints) == bool(args.last):
        raise SpeechkitError("average-checkpoints: name checkpoints, or give --last N DIR (not both)")
    paths = [Path(p) for p in args.checkpoints]
    if args.last:
        count, folder = args.last
        if not count.isdigit() or int(count) < 1:
            raise SpeechkitError(f"--last {count}: expected a positive number of checkpoints")
        paths = latest_checkpoints(folder, int(count))
    average_checkpoints(paths, args.out)
    print(f"Wrote {args.out}: mean of {len(paths)} checkpoints ({', '.join(p.name for p in paths)}).")
    return 0
