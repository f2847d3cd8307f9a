"""``speechkit synth``: synthetic corpora in the layouts of real ones (espeak-ng voices).

    speechkit synth speech-commands OUT [--words yes,no,...] [--speakers N] [--seed S] ...
    speechkit synth librispeech OUT [--subsets train-clean-100,dev-clean,test-clean] ...

The output folders can be read by ``speechkit prepare speech-commands|librispeech`` exactly as
the real corpora are. Same arguments, same bytes.
"""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "synth",
        help="synthesize a corpus with espeak-ng voices (Speech Commands or LibriSpeech layout)",
        description="Synthesize a speech corpus with espeak-ng voices, laid out like a real one.",
    )
    corpora = parser.add_subparsers(dest="corpus", metavar="CORPUS", required=True)
    _register_speech_commands(corpora)
    _register_librispeech(corpora)


def _csv(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def _register_speech_commands(corpora) -> None:
    p = corpora.add_parser(
        "speech-commands",
        help="Google Speech Commands layout: one folder of 1-s clips per word",
        description=(
            "Write a synthetic Google Speech Commands corpus: <word>/<speaker>_nohash_<k>.wav "
            "(16 kHz, 16-bit mono, 16000 samples), validation_list.txt and testing_list.txt "
            "(split by speaker), and _background_noise_/. A multi-word keyword such as "
            "'hey speechkit' is stored in the folder hey_speechkit/."
        ),
    )
    p.add_argument("out", metavar="OUT", help="output folder (must not exist, or be empty)")
    p.add_argument(
        "--words", type=_csv, default=None,
        help="comma-separated keywords; a multi-word keyword is stored with '_' between its "
        "words, and '_' in a keyword counts as a space (default: yes,no,up,down,left,right,on,"
        "off,stop,go)",
    )  # fmt: skip
    p.add_argument(
        "--unknown-words", type=_csv, default=None,
        help="comma-separated other words spoken as 'unknown' material; '' for none "
        "(default: the real corpus's 35 words minus --words)",
    )  # fmt: skip
    p.add_argument(
        "--speakers",
        type=int,
        default=50,
        help="number of synthetic speakers (default: %(default)s)",
    )
    p.add_argument(
        "--clips-per-word",
        type=int,
        default=2,
        help="takes of each keyword per speaker (default: %(default)s)",
    )
    p.add_argument(
        "--unknown-clips-per-word",
        type=int,
        default=1,
        help="takes of each unknown word per speaker (default: %(default)s)",
    )
    p.add_argument(
        "--validation-percent",
        type=float,
        default=10.0,
        help="percent of speakers held out for validation (default: %(default)s)",
    )
    p.add_argument(
        "--testing-percent",
        type=float,
        default=10.0,
        help="percent of speakers held out for testing (default: %(default)s)",
    )
    p.add_argument(
        "--background-seconds", type=float, default=45.0,
        help="seconds of each _background_noise_ file, 0 for none (default: %(default)s)",
    )  # fmt: skip
    _add_seed_and_jobs(p)
    p.set_defaults(func=_run_speech_commands)


def _add_seed_and_jobs(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seed", type=int, default=0, help="random seed; same seed, same files (default: %(default)s)")
    p.add_argument(
        "--jobs", type=int, default=1, help="worker processes; does not change the output (default: %(default)s)"
    )


def _run_speech_commands(args) -> int:
    from speechkit.data.synth.speech_commands import synth_speech_commands

    summary = synth_speech_commands(
        args.out,
        words=args.words,
        num_speakers=args.speakers,
        seed=args.seed,
        unknown_words=args.unknown_words,
        clips_per_word=args.clips_per_word,
        unknown_clips_per_word=args.unknown_clips_per_word,
        validation_percent=args.validation_percent,
        testing_percent=args.testing_percent,
        background_seconds=args.background_seconds,
        jobs=args.jobs,
        progress=True,
    )
    words = ", ".join(summary["words"].values())
    splits = summary["splits"]
    print(f"wrote {summary['num_clips']} clips to {summary['out_dir']}")
    print(f"  keywords: {words}; unknown words: {len(summary['unknown_words'])}")
    print(
        f"  speakers: {summary['num_speakers']} (train {len(summary['speakers']['train'])}, "
        f"validation {len(summary['speakers']['validation'])}, "
        f"testing {len(summary['speakers']['testing'])}); clips: train {splits['train']}, "
        f"validation {splits['validation']}, testing {splits['testing']}"
    )
    print(f"  background noise: {', '.join(summary['background_noise']) or 'none'}")
    print(
        f"  {summary['seconds']:.1f} s, {summary['clips_per_second']} clips/s, "
        f"{summary['realtime_factor']}x real time"
        + (
            ""
            if summary["deterministic"]
            else "; warning: espeak-ng output is not reproducible here"
        )
    )
    return 0


def _register_librispeech(corpora) -> None:
    p = corpora.add_parser(
        "librispeech",
        help="LibriSpeech layout: <subset>/<speaker>/<chapter>/*.flac + .trans.txt",
        description=(
            "Write a synthetic LibriSpeech corpus: <subset>/<speaker>/<chapter>/"
            "<speaker>-<chapter>-<utt>.flac with <speaker>-<chapter>.trans.txt transcripts "
            "(upper case, numbers as words), SPEAKERS.TXT and CHAPTERS.TXT. Each subset gets its "
            "own speakers."
        ),
    )
    p.add_argument("out", metavar="OUT", help="output folder (must not exist, or be empty)")
    group = p.add_mutually_exclusive_group()
    group.add_argument(
        "--subsets", type=_csv, default=None,
        help="comma-separated subsets, e.g. train-clean-100,dev-clean,test-clean "
        "(default: train-clean-100)",
    )  # fmt: skip
    group.add_argument("--subset", default=None, help="a single subset (same as --subsets NAME)")
    p.add_argument(
        "--speakers", type=int, default=10, help="speakers per subset (default: %(default)s)"
    )
    p.add_argument(
        "--utterances-per-speaker",
        type=int,
        default=20,
        help="utterances per speaker (default: %(default)s)",
    )
    p.add_argument(
        "--chapters-per-speaker",
        type=int,
        default=1,
        help="chapters per speaker (default: %(default)s)",
    )
    p.add_argument(
        "--text", choices=("sentences", "commands", "general"), default="sentences",
        help="text source: the package's sentences, the command grammar, or wordfreq's common "
        "words mixed with the sentences (default: %(default)s)",
    )  # fmt: skip
    _add_seed_and_jobs(p)
    p.set_defaults(func=_run_librispeech)


def _run_librispeech(args) -> int:
    from speechkit.data.synth.librispeech import synth_librispeech

    subsets = args.subsets or ([args.subset] if args.subset else ["train-clean-100"])
    summary = synth_librispeech(
        args.out,
        subsets=subsets,
        num_speakers=args.speakers,
        utterances_per_speaker=args.utterances_per_speaker,
        text=args.text,
        seed=args.seed,
        chapters_per_speaker=args.chapters_per_speaker,
        jobs=args.jobs,
        progress=True,
    )
    print(
        f"wrote {summary['num_utterances']} utterances ({summary['audio_seconds'] / 60:.1f} min) "
        f"to {summary['out_dir']}"
    )
    for name, sub in summary["subsets"].items():
        print(
            f"  {name}: {sub['speakers']} speakers, {sub['utterances']} utterances, "
            f"{sub['seconds_audio'] / 60:.1f} min"
        )
    print(
        f"  {summary['seconds']:.1f} s, {summary['realtime_factor']}x real time"
        + (
            ""
            if summary["deterministic"]
            else "; warning: espeak-ng output is not reproducible here"
        )
    )
    return 0
