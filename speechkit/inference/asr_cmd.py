"""Speech recognition subcommands.

    speechkit tokenizer train MANIFEST... --vocab-size 500 --out bpe.model
    speechkit transcribe MODEL FILE... [--chunk-ms N] [--beam N]
    speechkit eval-asr --model MODEL --data LIBRISPEECH_SUBSET_DIR|MANIFEST [--chunk-ms N] [--beam N]
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
    p.add_argument("files", nargs="+", metavar="FILE", help="wav, flac or ogg files (any rate; mixed to mono)")
    _add_decoding_args(p)
    p.set_defaults(func=_run_transcribe)


def _register_eval(subparsers) -> None:
    p = subparsers.add_parser("eval-asr", help="word error rate and real-time factor of an ASR model",
                              description="Decode a test set and print JSON: wer, substitutions, deletions, "
                              "insertions, rtf, num_utterances and the worst utterances.")
    p.add_argument("--model", required=True, help="ASR checkpoint")
    p.add_argument("--data", required=True,
                   help="a LibriSpeech subset folder (e.g. LibriSpeech/test-clean) or a lhotse cuts manifest")
    _add_decoding_args(p)
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


def _decode_options(args: argparse.Namespace):
    from speechkit.inference.asr import DecodeOptions

    return DecodeOptions(chunk_ms=args.chunk_ms, left_chunks=args.left_chunks, beam_size=args.beam)


def _run_tokenizer_train(args: argparse.Namespace) -> int:
    from speechkit.text import train_tokenizer_from_manifests

    tokenizer = train_tokenizer_from_manifests(args.manifests, args.out, args.vocab_size, args.model_type)
    print(f"Wrote {args.out}: {tokenizer.vocab_size} units ({args.model_type}; id 0 = blank) "
          f"from {len(args.manifests)} manifest(s).")
    return 0


def _run_transcribe(args: argparse.Namespace) -> int:
    from speechkit.inference.asr import load_for_transcription, load_recognizer, transcribe

    options = _decode_options(args)
    recognizer = load_recognizer(args.model)
    audios = [load_for_transcription(path, recognizer.sample_rate) for path in args.files]
    texts, _ = transcribe(recognizer, audios, options)
    for text in texts:
        print(text)
    return 0


def _run_eval(args: argparse.Namespace) -> int:
    from speechkit.errors import SpeechkitError
    from speechkit.fileio import write_json_atomic
    from speechkit.inference.asr import evaluate, load_recognizer, read_eval_set

    options = _decode_options(args)
    if args.threads is not None:
        if args.threads < 1:
            raise SpeechkitError(f"--threads {args.threads}: expected 1 or more")
        import torch

        torch.set_num_threads(args.threads)
    utterances = read_eval_set(args.data)
    result = evaluate(load_recognizer(args.model), utterances, options, num_worst=args.worst)
    result = {"model": str(args.model), "data": str(args.data), **result}
    json.dump(result, sys.stdout, indent=2)
    print()
    if args.out is not None:
        write_json_atomic(args.out, result)
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
