"""``speechkit prepare <corpus> CORPUS_DIR OUT_DIR``: raw corpus folder -> lhotse manifests.

Corpora: ``speech-commands`` (v1/v2, 12-class / all-word / custom keywords), ``librispeech``,
``tau2020-mobile``. Each prints a one-paragraph summary (cuts per split and class) at the end.
"""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "prepare",
        help="turn a raw corpus folder into lhotse manifests",
        description="Turn a raw corpus folder into lhotse CutSet manifests (cuts_<split>.jsonl.gz, "
        "labels.json) in OUT_DIR. See data_prep/README.md.",
    )
    sub = parser.add_subparsers(dest="corpus", metavar="CORPUS")
    _add_speech_commands(sub)
    _add_librispeech(sub)
    _add_tau(sub)

    def no_corpus(args: argparse.Namespace) -> int:
        parser.print_help()
        return 2

    parser.set_defaults(func=no_corpus)


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("corpus_dir", metavar="CORPUS_DIR", help="the extracted corpus folder")
    p.add_argument("out_dir", metavar="OUT_DIR", help="where the manifests are written")
    p.add_argument("--num-jobs", type=int, default=4, help="threads for reading audio headers (default: 4)")


def _add_speech_commands(sub) -> None:
    p = sub.add_parser(
        "speech-commands",
        help="Google Speech Commands v1/v2",
        description="Google Speech Commands: CORPUS_DIR/<word>/<speaker>_nohash_<k>.wav, "
        "validation_list.txt, testing_list.txt, _background_noise_/. Writes cuts_train/valid/test/"
        "noise.jsonl.gz and labels.json (_silence_, _unknown_, keywords...).",
    )
    _add_common(p)
    p.add_argument("--version", type=int, choices=(1, 2), default=None,
                   help="check that CORPUS_DIR is v1 (30 words) or v2 (35 words)")
    p.add_argument("--classes", default="12", choices=("12", "30", "35", "all"),
                   help="12: 10 keywords + _unknown_ + _silence_; 30/35/all: every word is a class (default: 12)")
    p.add_argument("--keywords", type=_word_list, default=None, metavar="W1,W2,...",
                   help="custom keywords: classes = keywords + _unknown_ + _silence_ (overrides --classes)")
    p.add_argument("--test-dir", default=None, metavar="DIR",
                   help="the official test archive folder (speech_commands_test_set_v0.0x), used as "
                   "the test split instead of testing_list.txt (as the BC-ResNet paper evaluates)")
    p.add_argument("--silence-ratio", type=_non_negative, default=1.0,
                   help="_silence_ clips per split = ratio x mean keyword count (default: 1.0; 0: no _silence_)")
    p.add_argument("--unknown-ratio", type=_non_negative, default=None,
                   help="keep at most ratio x mean keyword count _unknown_ clips per split (default: keep all)")
    p.add_argument("--seed", type=int, default=0, help="seed of silence offsets / unknown subsampling (default: 0)")
    p.set_defaults(func=_run_speech_commands)


def _add_librispeech(sub) -> None:
    p = sub.add_parser(
        "librispeech",
        help="LibriSpeech (through lhotse's recipe)",
        description="LibriSpeech: CORPUS_DIR/<subset>/<speaker>/<chapter>/*.flac + *.trans.txt. "
        "Writes cuts_<subset>.jsonl.gz per subset.",
    )
    _add_common(p)
    p.add_argument("--subsets", nargs="+", default=None, metavar="SUBSET",
                   help="subset folders, e.g. train-clean-100 dev-clean (default: every one present)")
    p.set_defaults(func=_run_librispeech)


def _add_tau(sub) -> None:
    p = sub.add_parser(
        "tau2020-mobile",
        help="TAU Urban Acoustic Scenes 2020 Mobile (development set)",
        description="TAU Urban Acoustic Scenes 2020 Mobile development set: meta.csv, audio/*.wav, "
        "evaluation_setup/fold1_{train,evaluate,test}.csv. Writes cuts_train/valid/test.jsonl.gz "
        "and labels.json (10 scenes); each cut keeps its recording device.",
    )
    _add_common(p)
    p.set_defaults(func=_run_tau)


def _run_speech_commands(args: argparse.Namespace) -> int:
    from speechkit.data.corpora.speech_commands import prepare_speech_commands

    print(prepare_speech_commands(
        args.corpus_dir, args.out_dir, version=args.version, classes=args.classes,
        keywords=args.keywords, test_dir=args.test_dir, silence_ratio=args.silence_ratio,
        unknown_ratio=args.unknown_ratio, seed=args.seed, num_jobs=args.num_jobs,
    ))
    return 0


def _run_librispeech(args: argparse.Namespace) -> int:
    from speechkit.data.corpora.librispeech import prepare_librispeech

    print(prepare_librispeech(args.corpus_dir, args.out_dir, subsets=args.subsets, num_jobs=args.num_jobs))
    return 0


def _run_tau(args: argparse.Namespace) -> int:
    from speechkit.data.corpora.tau2020 import prepare_tau2020_mobile

    print(prepare_tau2020_mobile(args.corpus_dir, args.out_dir, num_jobs=args.num_jobs))
    return 0


def _word_list(text: str) -> list[str]:
    words = [w.strip() for w in text.split(",") if w.strip()]
    if not words:
        raise argparse.ArgumentTypeError("expected comma-separated words, e.g. yes,no")
    return words


def _non_negative(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text}")
    return value

