"""A synthetic LibriSpeech corpus, in the real corpus's layout.

Layout of ``out_dir`` (like the ``LibriSpeech/`` folder of the real archives, so the same
preparation code, e.g. lhotse's ``prepare_librispeech``, reads both)::

    train-clean-100/<speaker>/<chapter>/<speaker>-<chapter>-<utt:04d>.flac
    train-clean-100/<speaker>/<chapter>/<speaker>-<chapter>.trans.txt
    dev-clean/...   test-clean/...       one folder per subset; speakers never shared
    SPEAKERS.TXT  CHAPTERS.TXT  README.TXT   metadata in LibriSpeech's formats
    synth_info.json                        voices, rooms and settings used
    alignments/<subset>/<speaker>/<chapter>/<utt>.TextGrid   with ``word_times``: the true word
                                           times (espeak-ng's word events), MFA layout

Speaker and chapter IDs are integers, as in LibriSpeech. A ``.trans.txt`` line is
``<utterance id> <TRANSCRIPT>``, the transcript in upper case with apostrophes, numbers as
words. Audio is 16 kHz 16-bit mono FLAC. Subsets named ``*-other`` get noisier, more
reverberant rooms than ``*-clean`` ones, as in the real corpus.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from speechkit.data.synth import effects
from speechkit.data.synth.engines import synthesize
from speechkit.data.synth.espeak import get_engine, reproducibility_note
from speechkit.data.synth.speech_commands import (
    clip_rng,
    comma_separated,
    run_jobs,
    staged_output_dir,
    write_audio_file,
)
from speechkit.data.synth.text import TEXT_SOURCES, get_text_source
from speechkit.data.synth.voices import Voice, sample_speakers
from speechkit.data.word_alignments import textgrid_path, write_textgrid
from speechkit.decoding import WordTime
from speechkit.errors import SpeechkitError
from speechkit.fileio import write_json_atomic, write_text_atomic
from speechkit.plugins import Subcommand

SAMPLE_RATE = 16000
#: Folder (in the corpus root) of the TextGrids ``word_times`` writes.
ALIGNMENTS_DIR = "alignments"
#: Subset names of LibriSpeech and Mini LibriSpeech (what lhotse looks for).
LIBRISPEECH_SUBSETS: tuple[str, ...] = (
    "train-clean-100", "train-clean-360", "train-other-500", "dev-clean", "dev-other",
    "test-clean", "test-other", "train-clean-5", "dev-clean-2",
)  # fmt: skip


def synth_librispeech(
    out_dir: str | os.PathLike,
    subsets: Sequence[str] = ("train-clean-100",),
    num_speakers: int = 10,
    utterances_per_speaker: int = 20,
    text: str = "sentences",
    seed: int = 0,
    chapters_per_speaker: int = 1,
    jobs: int = 1,
    progress: bool = False,
    voice_pool: str = "all",
    engines: str | Sequence[str] | None = None,
    word_times: bool = False,
) -> dict:
    """Write a synthetic LibriSpeech corpus to ``out_dir`` (layout in the module docstring).

    Args:
        out_dir: new folder (or an empty one); written beside it and renamed at the end.
        subsets: LibriSpeech subset names (:data:`LIBRISPEECH_SUBSETS`); each gets its own
            ``num_speakers`` speakers, disjoint from the other subsets' (held-out speakers).
        num_speakers: speakers per subset.
        utterances_per_speaker: utterances per speaker, spread over the chapters.
        text: ``"sentences"`` (the package's sentence list), ``"commands"`` (the command
            grammar) or ``"general"`` (wordfreq's common words mixed with the sentences).
        seed: random seed; the same arguments give byte-identical files.
        chapters_per_speaker: chapters (folders) per speaker.
        jobs: worker processes (does not change the output).
        progress: show a progress bar on stderr.
        voice_pool: espeak-ng voices: ``"all"``, ``"train"`` or ``"heldout"``
            (:func:`speechkit.data.synth.voices.voice_pool`).
        engines: speech engines the speakers are dealt from (``"espeak"``, ``"pico"``,
            ``"espeak:3,pico:1"``; :func:`speechkit.data.synth.voices.sample_speakers`).
        word_times: also write each utterance's true word times (espeak-ng's word events,
            shifted by the leading silence the utterance gets) as ``alignments/<subset>/
            <speaker>/<chapter>/<utt>.TextGrid`` (MFA layout). Only espeak-ng reports word
            events: utterances of pico and piper speakers get no TextGrid. The audio is the same.

    Returns:
        summary: ``out_dir``, ``subsets`` (name -> {"speakers", "utterances", "seconds_audio"}),
        ``num_utterances``, ``audio_seconds``, ``text``, ``deterministic``, ``seconds`` (wall
        time), ``realtime_factor`` (audio seconds per second), ``word_time_utterances``
        (utterances with a TextGrid; 0 without ``word_times``).

    Raises:
        SpeechkitError: unknown subset or text source, bad counts, or ``out_dir`` not empty.
    """
    start_time = time.perf_counter()
    subsets = list(subsets)
    unknown = [s for s in subsets if s not in LIBRISPEECH_SUBSETS]
    if unknown or not subsets or len(set(subsets)) != len(subsets):
        raise SpeechkitError(
            f"subsets {subsets}: expected distinct names from {', '.join(LIBRISPEECH_SUBSETS)}"
        )
    if text not in TEXT_SOURCES:
        raise SpeechkitError(f"unknown text source {text!r}; expected one of {TEXT_SOURCES}")
    for name, value in (
        ("speakers", num_speakers),
        ("utterances per speaker", utterances_per_speaker),
        ("chapters per speaker", chapters_per_speaker),
    ):
        if value < 1:
            raise SpeechkitError(f"number of {name} must be >= 1, got {value}")
    if chapters_per_speaker > utterances_per_speaker:
        raise SpeechkitError("chapters per speaker must not exceed utterances per speaker")

    total = num_speakers * len(subsets)
    from speechkit.data.synth.engines import parse_engine_mix, require_engines

    require_engines(parse_engine_mix(engines))
    voices = sample_speakers(total, seed, pool=voice_pool, engines=engines)
    if word_times and not any(v.engine == "espeak" for v in voices):
        raise SpeechkitError("word times come from espeak-ng's word events; pico and piper report none, and no "
                             "speaker here is an espeak-ng voice")
    ids_rng = clip_rng(seed, "ids")
    # Integer IDs like LibriSpeech's (speakers 19..9026, chapters up to 6 digits), all distinct.
    speaker_numbers = ids_rng.choice(np.arange(10, 10000), size=total, replace=False)
    chapter_numbers = ids_rng.choice(
        np.arange(1000, 1000000), size=total * chapters_per_speaker, replace=False
    )
    speakers = []
    for index, voice in enumerate(voices):
        subset = subsets[index // num_speakers]
        chapters = chapter_numbers[
            index * chapters_per_speaker : (index + 1) * chapters_per_speaker
        ]
        speakers.append(
            _Speaker(index, int(speaker_numbers[index]), [int(c) for c in chapters], subset, voice)
        )

    with staged_output_dir(out_dir) as staging:
        render_jobs = [
            _SpeakerJob(str(staging), seed, text, utterances_per_speaker, speaker, word_times)
            for speaker in speakers
        ]
        durations = run_jobs(_render_speaker, render_jobs, jobs, "speakers" if progress else None)
        write_text_atomic(staging / "SPEAKERS.TXT", _speakers_txt(speakers, durations))
        write_text_atomic(staging / "CHAPTERS.TXT", _chapters_txt(speakers, durations))
        write_text_atomic(staging / "README.TXT", _README.format(seed=seed, text=text))
        info = {
            "generator": "speechkit synth librispeech",
            "seed": seed,
            "sample_rate": SAMPLE_RATE,
            "text": text,
            "subsets": subsets,
            "speakers": [
                {
                    "id": s.number,
                    "subset": s.subset,
                    "chapters": s.chapters,
                    "voice": s.voice.to_dict(),
                    "environment": dataclasses.asdict(_environment(seed, s)),
                }
                for s in speakers
            ],
        }
        write_json_atomic(staging / "synth_info.json", info)

    seconds = time.perf_counter() - start_time
    audio_seconds = float(sum(sum(d.values()) for d in durations))
    per_subset = {
        name: {
            "speakers": sum(s.subset == name for s in speakers),
            "utterances": sum(len(d) for s, d in zip(speakers, durations) if s.subset == name),
            "seconds_audio": round(
                float(
                    sum(sum(d.values()) for s, d in zip(speakers, durations) if s.subset == name)
                ),
                2,
            ),
        }
        for name in subsets
    }
    return {
        "out_dir": str(out_dir),
        "subsets": per_subset,
        "num_utterances": sum(len(d) for d in durations),
        "audio_seconds": round(audio_seconds, 2),
        "text": text,
        "deterministic": get_engine().deterministic,
        "seconds": round(seconds, 3),
        "realtime_factor": round(audio_seconds / seconds, 1) if seconds > 0 else None,
        "word_time_utterances": sum(len(d) for s, d in zip(speakers, durations) if word_times and s.voice.engine == "espeak"),
    }


@dataclasses.dataclass
class _Speaker:
    index: int
    number: int
    chapters: list[int]
    subset: str
    voice: Voice


@dataclasses.dataclass
class _SpeakerJob:
    root: str
    seed: int
    text: str
    utterances: int
    speaker: _Speaker
    word_times: bool = False


def _environment(seed: int, speaker: _Speaker) -> effects.Environment:
    difficulty = "other" if "-other" in speaker.subset else "clean"
    return effects.sample_environment(clip_rng(seed, "room", speaker.index), difficulty)


def render_utterance(
    text: str, voice: Voice, environment: effects.Environment, rng: np.random.Generator, word_times: bool = False
) -> np.ndarray | tuple[np.ndarray, list[WordTime]]:
    """One read utterance: ``text`` with 0.1-0.4 s of room tone before and after.

    Args:
        text: transcript (LibriSpeech style); spoken in lower case so that espeak-ng reads
            words, not upper-case abbreviations.
        voice: the reader. environment: the reader's room. rng: the utterance's generator.
        word_times: also return the true word times (espeak-ng voices only); the audio is the same.

    Returns:
        float32 (T,) in [-1, 1] at 16 kHz; with ``word_times``, ``(audio, words)``, the words'
        times in seconds of that audio (the trimmed leading silence and the added room tone
        accounted for; the room's impulse response starts with its direct path, so it adds no delay).
    """
    take = voice.with_jitter(rng, amount=0.5)
    seed = int(rng.integers(2**31))
    speech = synthesize(text.lower(), take, SAMPLE_RATE, seed=seed)
    start, end = effects.speech_bounds(speech, SAMPLE_RATE, threshold_db=-45.0)
    speech = speech[start:end]
    if speech.size == 0:
        raise SpeechkitError(f"espeak-ng produced no sound for {text!r}")
    speech_rms = float(np.sqrt(np.mean(np.square(speech, dtype=np.float64))))
    before, after = (int(rng.uniform(0.1, 0.4) * SAMPLE_RATE) for _ in range(2))
    audio = np.concatenate([np.zeros(before, np.float32), speech, np.zeros(after, np.float32)])
    floor = effects.colored_noise(audio.size, rng, 1.0)
    audio = effects.add_noise(audio, floor, float(rng.uniform(50.0, 65.0)), signal_rms=speech_rms)
    audio = effects.apply_environment(audio, environment, rng, SAMPLE_RATE, speech_rms=speech_rms)
    if not word_times:
        return audio
    return audio, _true_word_times(text, take, seed, (before - start) / SAMPLE_RATE, before, before + end - start)


def _true_word_times(text: str, take: Voice, seed: int, shift_s: float, first: int, last: int) -> list[WordTime]:
    """espeak-ng's word times of ``text`` moved by ``shift_s`` and clipped to samples ``[first, last)``."""
    from speechkit.data.synth.espeak import synthesize_with_words

    if take.engine != "espeak":
        raise SpeechkitError(f"word times come from espeak-ng's word events; {take.engine} reports none")
    _, words = synthesize_with_words(text.lower(), take, SAMPLE_RATE, seed)  # same (text, voice, seed): same audio
    lo, hi = first / SAMPLE_RATE, last / SAMPLE_RATE
    moved = [WordTime(w.word, min(max(w.start_s + shift_s, lo), hi), min(max(w.end_s + shift_s, lo), hi)) for w in words]
    return [w for w in moved if w.end_s > w.start_s]


def _render_speaker(job: _SpeakerJob) -> dict[str, float]:
    """Write one speaker's chapters; return utterance ID -> duration (s)."""
    speaker = job.speaker
    source = get_text_source(job.text)
    environment = _environment(job.seed, speaker)
    durations: dict[str, float] = {}
    # Utterances are dealt to chapters in turn, so every chapter gets some.
    per_chapter = np.array_split(np.arange(job.utterances), len(speaker.chapters))
    for chapter, utterance_indices in zip(speaker.chapters, per_chapter):
        folder = Path(job.root) / speaker.subset / str(speaker.number) / str(chapter)
        folder.mkdir(parents=True, exist_ok=True)
        lines = []
        for utt in range(len(utterance_indices)):
            utt_id = f"{speaker.number}-{chapter}-{utt:04d}"
            rng = clip_rng(job.seed, "utt", speaker.index, chapter, utt)
            sentences = (
                1 if job.text == "commands" else int(rng.choice([1, 2, 3], p=[0.6, 0.3, 0.1]))
            )
            transcript = " ".join(source.sample(rng) for _ in range(sentences))
            if job.word_times and speaker.voice.engine == "espeak":
                audio, words = render_utterance(transcript, speaker.voice, environment, rng, word_times=True)
                grid = textgrid_path(Path(job.root) / ALIGNMENTS_DIR, utt_id, speaker.subset)
                write_textgrid(grid, words, audio.size / SAMPLE_RATE)
            else:
                audio = render_utterance(transcript, speaker.voice, environment, rng)
            write_audio_file(folder / f"{utt_id}.flac", audio, SAMPLE_RATE)
            lines.append(f"{utt_id} {transcript}\n")
            durations[utt_id] = audio.size / SAMPLE_RATE
        write_text_atomic(folder / f"{speaker.number}-{chapter}.trans.txt", "".join(lines))
    return durations


def _speakers_txt(speakers: list[_Speaker], durations: list[dict[str, float]]) -> str:
    lines = [
        "; Synthetic speakers (espeak-ng voices) generated by speechkit; see synth_info.json.\n",
        ";ID  |SEX| SUBSET           |MINUTES| NAME\n",
    ]
    for speaker, d in sorted(zip(speakers, durations), key=lambda x: x[0].number):
        minutes = sum(d.values()) / 60.0
        name = f"espeak {speaker.voice.espeak_name}" if speaker.voice.engine == "espeak" else f"{speaker.voice.engine} {speaker.voice.language}"
        lines.append(
            f"{speaker.number:<5}| {speaker.voice.gender} | {speaker.subset:<16} | {minutes:5.2f} | {name}\n"
        )
    return "".join(lines)


def _chapters_txt(speakers: list[_Speaker], durations: list[dict[str, float]]) -> str:
    lines = [
        "; Synthetic chapters generated by speechkit.\n",
        ";ID    |READER|MINUTES| SUBSET           | PROJ.|BOOK ID| CH. TITLE | PROJECT TITLE\n",
    ]
    rows = []
    for speaker, d in zip(speakers, durations):
        for chapter in speaker.chapters:
            prefix = f"{speaker.number}-{chapter}-"
            minutes = sum(v for k, v in d.items() if k.startswith(prefix)) / 60.0
            row = (
                f"{chapter:<7}| {speaker.number:<5}| {minutes:5.2f} | {speaker.subset:<16} |"
                f" {0:<5}| {0:<6}| synthetic | synthetic speech\n"
            )
            rows.append((chapter, row))
    lines.extend(row for _, row in sorted(rows))
    return "".join(lines)


_README = """Synthetic LibriSpeech-style corpus

Generated by `speechkit synth librispeech` (seed {seed}, text source "{text}") with espeak-ng
voices. The layout and transcript format follow LibriSpeech ASR corpus (openslr.org/12):
<subset>/<speaker>/<chapter>/<speaker>-<chapter>-<utterance>.flac plus one
<speaker>-<chapter>.trans.txt per chapter, whose lines are "<utterance id> <TRANSCRIPT>".
Speakers in different subsets are different voices. Audio: 16 kHz, 16-bit mono FLAC.

The audio is synthetic; use it for tests, demos and pre-training, not as a substitute for
recordings of real speakers.
"""


# -- ``speechkit synth librispeech`` ------------------------------------------------------------


def _add_synth_arguments(p) -> None:
    group = p.add_mutually_exclusive_group()
    group.add_argument(
        "--subsets", type=comma_separated, default=None,
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
    p.add_argument(
        "--voice-pool", choices=("all", "train", "heldout"), default="all",
        help="espeak-ng voices: all, the training families, or the held-out accents and variant "
        "families (default: %(default)s)",
    )  # fmt: skip
    p.add_argument(
        "--word-times", action="store_true",
        help="also write the true word times (espeak-ng's word events) as alignments/<subset>/<speaker>/"
        "<chapter>/<utt>.TextGrid (Montreal Forced Aligner layout); espeak-ng voices only: pico and piper "
        "report no word events, so their utterances get none",
    )  # fmt: skip


def _synth_from_args(args) -> int:
    from speechkit.data.synth.engines import apply_synth_options

    apply_synth_options(args)
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
        voice_pool=args.voice_pool,
        engines=args.engines,
        word_times=args.word_times,
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
        + reproducibility_note(summary["deterministic"])
    )
    if args.word_times:
        skipped = summary["num_utterances"] - summary["word_time_utterances"]
        note = f"; {skipped} utterances of pico/piper speakers have none (no word events)" if skipped else ""
        print(f"  true word times: {summary['word_time_utterances']} TextGrids in "
              f"{Path(summary['out_dir']) / ALIGNMENTS_DIR}{note}")
    return 0


SYNTH = Subcommand(
    "librispeech", "LibriSpeech layout: <subset>/<speaker>/<chapter>/*.flac + .trans.txt",
    _add_synth_arguments, _synth_from_args,
    description=(
        "Write a synthetic LibriSpeech corpus: <subset>/<speaker>/<chapter>/"
        "<speaker>-<chapter>-<utt>.flac with <speaker>-<chapter>.trans.txt transcripts "
        "(upper case, numbers as words), SPEAKERS.TXT and CHAPTERS.TXT. Each subset gets its "
        "own speakers."
    ),
    order=20,
)
