"""A synthetic Google Speech Commands corpus, in the real corpus's layout.

Layout of ``out_dir`` (as in ``speech_commands_v0.02``, so the same preparation code reads
both)::

    yes/0a7c2a8d_nohash_0.wav          one folder per word; 16 kHz, 16-bit mono, 16000 samples
    hey_speechkit/5f1e09b2_nohash_1.wav  a multi-word keyword: its words joined by "_"
    marvin/...                         other words ("unknown" material for a KWS model)
    _background_noise_/white_noise.wav, pink_noise.wav, running_tap.wav, babble.wav, README.md
    validation_list.txt, testing_list.txt   ``word/file.wav`` lines; split by speaker
    README.md, synth_info.json          what was generated, and the voices and rooms used

File names follow the real corpus: ``<speaker>_nohash_<k>.wav``, the speaker an 8-hex-digit
ID and ``k`` the speaker's k-th take of that word. Every clip is exactly one second, the speech
at a random offset; each speaker has their own voice (accent, variant, pitch, rate) and their
own "room" (noise kind and level, reverberation, recording level). Speakers, not clips, are
split into train/validation/testing, so held-out speakers are unseen voices.

Same arguments, same bytes: every clip draws its randomness from the seed, the speaker and the
word, so the corpus does not depend on ``jobs`` or on the order of generation.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import re
import shutil
import tempfile
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from speechkit.audio import save_audio
from speechkit.data.synth import effects
from speechkit.data.synth.engines import synthesize
from speechkit.data.synth.espeak import get_engine, reproducibility_note
from speechkit.data.synth.voices import Voice, sample_speakers
from speechkit.errors import SpeechkitError
from speechkit.fileio import write_json_atomic, write_text_atomic
from speechkit.plugins import Subcommand

SAMPLE_RATE = 16000
CLIP_SAMPLES = 16000
#: The ten command words of the Speech Commands KWS benchmark.
DEFAULT_COMMANDS: tuple[str, ...] = (
    "yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go",
)  # fmt: skip
#: The other 25 words of the 35-word v0.02 set.
AUXILIARY_WORDS: tuple[str, ...] = (
    "bed", "bird", "cat", "dog", "eight", "five", "four", "happy", "house", "marvin", "nine",
    "one", "seven", "sheila", "six", "three", "tree", "two", "wow", "zero", "backward",
    "forward", "follow", "learn", "visual",
)  # fmt: skip
ALL_WORDS: tuple[str, ...] = DEFAULT_COMMANDS + AUXILIARY_WORDS
BACKGROUND_FOLDER = "_background_noise_"
BACKGROUND_FILES: tuple[str, ...] = (
    "white_noise.wav", "pink_noise.wav", "running_tap.wav", "babble.wav",
)  # fmt: skip

#: Longest speech placed in a clip (samples): leaves room for the random offset.
_MAX_SPEECH = int(0.96 * CLIP_SAMPLES)


def keyword_folder(keyword: str) -> str:
    """Folder name of a keyword: lower case, words joined by ``_`` ("Hey Speechkit" ->
    ``hey_speechkit``).

    Raises:
        SpeechkitError: the keyword is empty or has characters other than letters, digits,
            apostrophes and spaces (folder names must be portable, and ``_``-prefixed folders
            are reserved for ``_background_noise_``).
    """
    words = keyword.strip().lower().replace("_", " ").split()
    if not words or not all(re.fullmatch(r"[a-z0-9']+", w) for w in words):
        raise SpeechkitError(
            f"keyword {keyword!r}: expected one or more words of letters, digits and "
            "apostrophes separated by spaces, e.g. 'marvin' or 'hey speechkit'"
        )
    return "_".join(words)


def synth_speech_commands(
    out_dir: str | os.PathLike,
    words: Sequence[str] | None = None,
    num_speakers: int = 50,
    seed: int = 0,
    unknown_words: Sequence[str] | None = None,
    clips_per_word: int = 2,
    unknown_clips_per_word: int = 1,
    unknown_words_per_speaker: int | None = None,
    validation_percent: float = 10.0,
    testing_percent: float = 10.0,
    background_seconds: float = 45.0,
    jobs: int = 1,
    progress: bool = False,
    voice_pool: str = "all",
    room_pool: str = "all",
    engines: str | Sequence[str] | None = None,
) -> dict:
    """Write a synthetic Speech Commands corpus to ``out_dir`` (layout in the module docstring).

    Args:
        out_dir: new folder (or an empty one) for the corpus; written to a temporary folder
            beside it and renamed at the end, so it is complete or absent.
        words: keywords, one folder each; multi-word keywords are allowed ("hey speechkit"
            goes to ``hey_speechkit/``). Default: :data:`DEFAULT_COMMANDS`.
        num_speakers: synthetic speakers; each says every word.
        seed: random seed; the same arguments give byte-identical files.
        unknown_words: other words, spoken as "unknown" material. Default: the 35 words of
            the real corpus (:data:`ALL_WORDS`) minus ``words``. Pass ``[]`` for none.
        clips_per_word: takes of each keyword per speaker (``_nohash_0``, ``_nohash_1``, ...).
        unknown_clips_per_word: takes of each unknown word per speaker.
        unknown_words_per_speaker: each speaker says only this many of the unknown words, drawn
            per speaker from the seed (``None``: all of them). Many unknown words (near misses of
            every keyword) then cost no more synthesis than a few, and each word still gets
            many voices.
        validation_percent, testing_percent: share of speakers held out for each list (at
            least one speaker each when there are 3 or more speakers and the share is > 0).
        background_seconds: length of each ``_background_noise_`` file (s); 0 for none.
        jobs: worker processes (1: all in this process). Does not change the output.
        progress: show a progress bar on stderr.
        voice_pool: espeak-ng voices to draw speakers from: ``"all"``, ``"train"`` or
            ``"heldout"`` (:func:`speechkit.data.synth.voices.voice_pool`).
        room_pool: rooms and microphones: ``"all"``, ``"train"`` or ``"heldout"``
            (:func:`speechkit.data.synth.effects.sample_environment`).
        engines: speech engines the speakers are dealt from (``"espeak"``, ``"espeak:3,pico:1"``;
            :func:`speechkit.data.synth.voices.sample_speakers`). Default espeak-ng only.

    Returns:
        summary: ``out_dir``, ``words`` (keyword -> folder), ``unknown_words``,
        ``num_speakers``, ``num_clips``, ``splits`` (train/validation/testing -> number of
        clips), ``speakers`` (split -> speaker IDs), ``background_noise`` (file names),
        ``deterministic`` (espeak-ng passed its reproducibility self-check), ``seconds``
        (wall time), ``clips_per_second``, ``realtime_factor`` (audio seconds per second).

    Raises:
        SpeechkitError: bad keywords or arguments, or ``out_dir`` exists and is not empty.
    """
    start_time = time.perf_counter()
    keywords = list(DEFAULT_COMMANDS if words is None else words)
    if not keywords:
        raise SpeechkitError("no keywords given; pass at least one word")
    folders = {w: keyword_folder(w) for w in keywords}
    if unknown_words is None:
        taken = set(folders.values())
        unknown = [w for w in ALL_WORDS if w not in taken]
    else:
        unknown = list(unknown_words)
    unknown_folders = {w: keyword_folder(w) for w in unknown}
    all_folders = list(folders.values()) + list(unknown_folders.values())
    if len(set(all_folders)) != len(all_folders):
        raise SpeechkitError(f"words repeat (after lower-casing and joining): {all_folders}")
    for name, value in (("speakers", num_speakers), ("clips per word", clips_per_word)):
        if value < 1:
            raise SpeechkitError(f"number of {name} must be >= 1, got {value}")
    if unknown_words_per_speaker is not None and unknown_words_per_speaker < 0:
        raise SpeechkitError(f"unknown words per speaker must be >= 0, got {unknown_words_per_speaker}")
    if unknown_clips_per_word < 0 or background_seconds < 0:
        raise SpeechkitError("unknown clips per word and background seconds must be >= 0")
    if not (
        0 <= validation_percent
        and 0 <= testing_percent
        and validation_percent + testing_percent < 100
    ):
        raise SpeechkitError("validation and testing percentages must be >= 0 and sum below 100")

    effects.sample_environment(np.random.default_rng(0), pool=room_pool)  # checks the name early
    from speechkit.data.synth.engines import parse_engine_mix, require_engines

    require_engines(parse_engine_mix(engines))
    voices = sample_speakers(num_speakers, seed, pool=voice_pool, engines=engines)
    speaker_ids = [v.speaker_id for v in voices]
    split_of = _split_speakers(speaker_ids, seed, validation_percent, testing_percent)
    # (folder, spoken text, takes); the text is the folder's words, lower case
    plan = [(f, f.replace("_", " "), clips_per_word) for f in folders.values()]
    plan += [(f, f.replace("_", " "), unknown_clips_per_word) for f in unknown_folders.values()]
    plan = [p for p in plan if p[2] > 0]

    with staged_output_dir(out_dir) as staging:
        for folder, _, _ in plan:
            (staging / folder).mkdir()
        render_jobs = [
            _SpeakerJob(str(staging), seed, index, voices[index],
                        _speaker_plan(plan, len(folders), seed, index, unknown_words_per_speaker), room_pool)
            for index in range(num_speakers)
        ]
        per_speaker = run_jobs(_render_speaker, render_jobs, jobs, "speakers" if progress else None)
        if unknown_words_per_speaker is not None:  # a word no speaker drew has no folder
            said = {path.split("/", 1)[0] for paths in per_speaker for path in paths}
            for word, folder in list(unknown_folders.items()):
                if folder not in said:
                    (staging / folder).rmdir()
                    del unknown_folders[word]
        background = []
        if background_seconds > 0:
            background = write_background_noise(
                staging / BACKGROUND_FOLDER, seed, background_seconds, voice_pool
            )
        lists = {"validation": [], "testing": []}
        for index, paths in enumerate(per_speaker):
            split = split_of[speaker_ids[index]]
            if split in lists:
                lists[split].extend(paths)
        write_text_atomic(staging / "validation_list.txt", _lines(sorted(lists["validation"])))
        write_text_atomic(staging / "testing_list.txt", _lines(sorted(lists["testing"])))
        environments = [_speaker_environment(seed, i, room_pool) for i in range(num_speakers)]
        info = {
            "generator": "speechkit synth speech-commands",
            "seed": seed,
            "sample_rate": SAMPLE_RATE,
            "clip_samples": CLIP_SAMPLES,
            "words": folders,
            "unknown_words": unknown_folders,
            "clips_per_word": clips_per_word,
            "unknown_clips_per_word": unknown_clips_per_word,
            "unknown_words_per_speaker": unknown_words_per_speaker,
            "voice_pool": voice_pool,
            "room_pool": room_pool,
            "engines": sorted(set(parse_engine_mix(engines))),
            "speakers": [
                {
                    "id": speaker_ids[i],
                    "split": split_of[speaker_ids[i]],
                    "voice": voices[i].to_dict(),
                    "environment": dataclasses.asdict(environments[i]),
                }
                for i in range(num_speakers)
            ],
        }
        write_json_atomic(staging / "synth_info.json", info)
        write_text_atomic(staging / "README.md", _readme(info, background))

    num_clips = sum(len(p) for p in per_speaker)
    seconds = time.perf_counter() - start_time
    split_counts = {"train": 0, "validation": 0, "testing": 0}
    for index, paths in enumerate(per_speaker):
        split_counts[split_of[speaker_ids[index]]] += len(paths)
    return {
        "out_dir": str(out_dir),
        "words": folders,
        "unknown_words": unknown_folders,
        "num_speakers": num_speakers,
        "num_clips": num_clips,
        "splits": split_counts,
        "speakers": {
            split: [s for s in speaker_ids if split_of[s] == split]
            for split in ("train", "validation", "testing")
        },
        "background_noise": background,
        "deterministic": get_engine().deterministic,
        "seconds": round(seconds, 3),
        "clips_per_second": round(num_clips / seconds, 1) if seconds > 0 else None,
        "realtime_factor": round(num_clips * CLIP_SAMPLES / SAMPLE_RATE / seconds, 1)
        if seconds > 0
        else None,
    }


# -- one clip ------------------------------------------------------------------------------
def render_clip(
    text: str,
    voice: Voice,
    environment: effects.Environment,
    rng: np.random.Generator,
    sample_rate: int = SAMPLE_RATE,
    clip_samples: int = CLIP_SAMPLES,
) -> np.ndarray:
    """One Speech Commands style clip: ``text`` spoken once at a random offset, in a room.

    The speaker's rate and pitch vary a little from take to take. Speech longer than 0.96 of
    the clip is re-synthesized faster, and if still too long, compressed in time.

    Args:
        text: what is said (a word or a short phrase).
        voice: the speaker.
        environment: the speaker's recording conditions; SNR and level vary per take.
        rng: the take's random generator.
        sample_rate: Hz. clip_samples: output length.

    Returns:
        float32 (clip_samples,) in [-1, 1].

    Raises:
        SpeechkitError: espeak-ng produced no sound for ``text``.
    """
    from speechkit.audio import resample

    max_speech = int(0.96 * clip_samples)
    take = voice.with_jitter(rng)
    espeak_seed = int(rng.integers(2**31))
    speech = _trimmed(synthesize(text, take, sample_rate, espeak_seed), sample_rate)
    if speech.size > max_speech:
        faster_wpm = take.rate_wpm * speech.size / max_speech * 1.1
        take = dataclasses.replace(take, rate_wpm=int(min(450, faster_wpm)))
        speech = _trimmed(synthesize(text, take, sample_rate, espeak_seed), sample_rate)
    if speech.size > max_speech:
        speech = resample(speech, speech.size, max_speech)[:max_speech]
    if speech.size == 0:
        raise SpeechkitError(f"espeak-ng produced no sound for {text!r}")
    speech_rms = float(np.sqrt(np.mean(np.square(speech, dtype=np.float64))))
    clip = np.zeros(clip_samples, dtype=np.float32)
    offset = int(rng.integers(0, clip_samples - speech.size + 1))
    clip[offset : offset + speech.size] = speech
    # A microphone never records digital silence: a faint noise floor under everything.
    floor = effects.colored_noise(clip_samples, rng, 1.0)
    clip = effects.add_noise(clip, floor, float(rng.uniform(50.0, 65.0)), signal_rms=speech_rms)
    take_env = dataclasses.replace(
        environment,
        snr_db=environment.snr_db + float(rng.uniform(-3.0, 3.0)),
        peak_dbfs=min(-0.5, environment.peak_dbfs + float(rng.uniform(-2.0, 2.0))),
    )
    return effects.apply_environment(clip, take_env, rng, sample_rate, speech_rms=speech_rms)


def _trimmed(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    start, end = effects.speech_bounds(audio, sample_rate, threshold_db=-45.0)
    return audio[start:end]


@dataclasses.dataclass
class _SpeakerJob:
    root: str
    seed: int
    index: int
    voice: Voice
    plan: list  # (folder, text, takes)
    room_pool: str = "all"


def _render_speaker(job: _SpeakerJob) -> list[str]:
    """Write all clips of one speaker; return their paths relative to the corpus root."""
    environment = _speaker_environment(job.seed, job.index, job.room_pool)
    speaker = job.voice.speaker_id
    paths = []
    for folder, text, takes in job.plan:
        for k in range(takes):
            rng = clip_rng(job.seed, "clip", job.index, folder, k)
            clip = render_clip(text, job.voice, environment, rng)
            rel = f"{folder}/{speaker}_nohash_{k}.wav"
            write_audio_file(Path(job.root) / rel, clip, SAMPLE_RATE)
            paths.append(rel)
    return paths


def _speaker_plan(plan: list, num_keywords: int, seed: int, index: int, unknown_per_speaker: int | None) -> list:
    """The keywords of ``plan`` (its first ``num_keywords`` entries) plus, for speaker ``index``,
    ``unknown_per_speaker`` of its unknown words drawn from the seed (all when ``None``)."""
    unknown = plan[num_keywords:]
    if unknown_per_speaker is None or unknown_per_speaker >= len(unknown):
        return plan
    rng = clip_rng(seed, "unknown-words", index)
    keep = sorted(rng.choice(len(unknown), size=unknown_per_speaker, replace=False).tolist())
    return plan[:num_keywords] + [unknown[i] for i in keep]


def _speaker_environment(seed: int, index: int, room_pool: str = "all") -> effects.Environment:
    return effects.sample_environment(clip_rng(seed, "room", index), "mixed", pool=room_pool)


def _split_speakers(
    speaker_ids: list[str], seed: int, validation_percent: float, testing_percent: float
) -> dict[str, str]:
    """Speaker -> "train" | "validation" | "testing", in an order set by a hash of the seed."""
    n = len(speaker_ids)
    order = sorted(speaker_ids, key=lambda s: hashlib.sha1(f"{seed}:{s}".encode()).hexdigest())

    def count(percent: float) -> int:
        k = round(n * percent / 100.0)
        return max(k, 1) if percent > 0 and n >= 3 else k

    n_val, n_test = count(validation_percent), count(testing_percent)
    while n_val + n_test >= n and (n_val or n_test):  # keep at least one training speaker
        if n_val >= n_test:
            n_val -= 1
        else:
            n_test -= 1
    split = {s: "train" for s in speaker_ids}
    for s in order[:n_val]:
        split[s] = "validation"
    for s in order[n_val : n_val + n_test]:
        split[s] = "testing"
    return split


# -- background noise ----------------------------------------------------------------------
def write_background_noise(folder: Path, seed: int, seconds: float, voice_pool: str = "all") -> list[str]:
    """Write the ``_background_noise_`` files and README; return the file names.

    ``voice_pool``: the voices of the babble talkers (as the corpus's speakers: no held-out
    voice may talk in a training corpus's babble)."""
    num = round(seconds * SAMPLE_RATE)
    makers: dict[str, Callable[[np.random.Generator], np.ndarray]] = {
        "white_noise.wav": lambda rng: effects.colored_noise(num, rng, 0.0),
        "pink_noise.wav": lambda rng: effects.colored_noise(num, rng, 1.0),
        "running_tap.wav": lambda rng: running_tap_noise(num, rng, SAMPLE_RATE),
        "babble.wav": lambda rng: speech_babble(num, rng, SAMPLE_RATE, voice_pool=voice_pool),
    }
    folder.mkdir(parents=True, exist_ok=True)
    for name, make in makers.items():
        audio = make(clip_rng(seed, "background", name))
        write_audio_file(folder / name, effects.normalize_peak(audio, -3.0), SAMPLE_RATE)
    write_text_atomic(folder / "README.md", _BACKGROUND_README.format(seconds=seconds))
    return list(makers)


def running_tap_noise(
    num_samples: int, rng: np.random.Generator, sample_rate: int = SAMPLE_RATE
) -> np.ndarray:
    """Water running from a tap: a hiss of band-limited noise plus many small bubble "plinks".

    Each bubble is a short decaying sine whose pitch rises as it decays (Minnaert resonance of a
    bubble near the surface), 200-3000 Hz, about 150 per second.

    Returns:
        float32 (T,), unit RMS.
    """
    freqs = np.fft.rfftfreq(num_samples, 1.0 / sample_rate)
    spectrum = np.fft.rfft(rng.standard_normal(num_samples))
    spectrum *= np.exp(-0.5 * ((freqs - 2500.0) / 1800.0) ** 2)  # hiss centred near 2.5 kHz
    hiss = np.fft.irfft(spectrum, n=num_samples)
    hiss /= hiss.std() + 1e-12
    # slow flow fluctuations
    hiss *= 1.0 + 0.2 * np.sin(
        2 * np.pi * rng.uniform(0.2, 0.6) * np.arange(num_samples) / sample_rate
    )
    bubbles = np.zeros(num_samples)
    count = int(150 * num_samples / sample_rate)
    starts = rng.integers(0, num_samples, size=count)
    for start, f0, decay_s, amp in zip(
        starts,
        np.exp(rng.uniform(np.log(200.0), np.log(3000.0), size=count)),
        rng.uniform(0.003, 0.02, size=count),
        rng.uniform(0.5, 3.0, size=count),
    ):
        length = min(int(5 * decay_s * sample_rate), num_samples - int(start))
        t = np.arange(length) / sample_rate
        chirp = f0 * (1.0 + 0.1 * t / decay_s)  # pitch rises as the bubble rises
        bubbles[start : start + length] += (
            amp * np.exp(-t / decay_s) * np.sin(2 * np.pi * np.cumsum(chirp) / sample_rate)
        )
    total = 0.6 * hiss + bubbles / (bubbles.std() + 1e-12)
    return (total / (total.std() + 1e-12)).astype(np.float32)


def speech_babble(
    num_samples: int, rng: np.random.Generator, sample_rate: int = SAMPLE_RATE, talkers: int = 7,
    voice_pool: str = "all",
) -> np.ndarray:
    """Several synthetic talkers reading sentences at once, in a mildly reverberant room.

    ``voice_pool``: the talkers' voices (:func:`speechkit.data.synth.voices.voice_pool`).

    Returns:
        float32 (T,), unit RMS.
    """
    from speechkit.data.synth.text import load_sentences

    sentences = load_sentences()
    voices = sample_speakers(talkers, seed=int(rng.integers(2**31)), pool=voice_pool)
    mix = np.zeros(num_samples)
    for voice in voices:
        stream = np.zeros(num_samples)
        pos = int(rng.integers(0, sample_rate))
        while pos < num_samples:
            text = sentences[int(rng.integers(len(sentences)))]
            speech = synthesize(text, voice, sample_rate, seed=int(rng.integers(2**31)))
            end = min(num_samples, pos + speech.size)
            stream[pos:end] = speech[: end - pos]
            pos = end + int(rng.uniform(0.1, 0.8) * sample_rate)
        level = rng.uniform(0.5, 1.0)
        mix += level * stream / (np.sqrt(np.mean(stream**2)) + 1e-12)
    mix = effects.reverberate(mix.astype(np.float32), effects.synthetic_rir(0.5, sample_rate, rng))
    return (mix / (mix.std() + 1e-12)).astype(np.float32)


# -- shared helpers (also used by the LibriSpeech writer) ---------------------------------
@contextlib.contextmanager
def staged_output_dir(out_dir: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder beside ``out_dir``; rename it to ``out_dir`` on success.

    A corpus is either complete or absent: an interrupted run leaves nothing at ``out_dir``.
    ``out_dir`` may be an empty folder; a non-empty one is refused, never overwritten.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise SpeechkitError(
            f"{out_dir}: already exists and is not an empty folder; choose a new output folder"
        )
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.partial-", dir=out_dir.parent))
    try:
        yield staging
        if out_dir.exists():
            out_dir.rmdir()  # empty (checked above)
        os.replace(staging, out_dir)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def run_jobs(
    fn: Callable, jobs: Sequence, num_workers: int = 1, progress: str | None = None
) -> list:
    """``[fn(job) for job in jobs]``, in worker processes when ``num_workers > 1``.

    Workers are started with "spawn": each builds its own espeak-ng engine and inherits no
    threads or locks from the caller. Results keep the jobs' order, and each job seeds its own
    randomness, so the output does not depend on ``num_workers``.

    Args:
        fn: a module-level (picklable) function.
        jobs: its arguments, one per call.
        num_workers: processes; 1 runs everything in this process.
        progress: description of a tqdm bar on stderr; ``None`` for no bar.
    """
    bar = None
    if progress is not None:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(jobs), desc=progress, unit="job")
    results = []
    try:
        if num_workers <= 1 or len(jobs) <= 1:
            for job in jobs:
                results.append(fn(job))
                if bar is not None:
                    bar.update(1)
        else:
            import multiprocessing

            context = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(max_workers=num_workers, mp_context=context) as pool:
                for result in pool.map(fn, jobs):
                    results.append(result)
                    if bar is not None:
                        bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    return results


def write_audio_file(path: Path, audio: np.ndarray, sample_rate: int) -> None:
    """Write a corpus file: 16-bit WAV or FLAC (from the suffix), not atomic by itself.

    Corpus files are written inside the staging folder of :func:`staged_output_dir`, so the
    corpus as a whole is still atomic.
    """
    save_audio(path, audio, sample_rate, atomic=False)


def clip_rng(seed: int, *keys: int | str) -> np.random.Generator:
    """A random generator for one item, from the corpus seed and the item's keys.

    Strings are hashed with CRC-32 (stable across runs and machines, unlike ``hash()``), so
    adding a word or a speaker leaves the audio of the others unchanged.
    """
    entropy = [int(seed) & 0xFFFFFFFF]
    for key in keys:
        entropy.append(zlib.crc32(key.encode("utf-8")) if isinstance(key, str) else int(key))
    return np.random.default_rng(entropy)


def _lines(items: list[str]) -> str:
    return "".join(f"{item}\n" for item in items)


def _readme(info: dict, background: list[str]) -> str:
    words = ", ".join(f"{w} ({f}/)" if w != f else w for w, f in info["words"].items())
    unknown = ", ".join(info["unknown_words"].values()) or "none"
    return f"""# Synthetic Speech Commands corpus

Generated by `speechkit synth speech-commands` (seed {info["seed"]}) with espeak-ng voices;
laid out like Google's Speech Commands v0.02 so the same preparation code reads both.

- Keywords: {words}; {info["clips_per_word"]} take(s) per speaker each.
- Other words ("unknown"): {unknown}; {info["unknown_clips_per_word"]} take(s) per speaker each.
- Speakers: {len(info["speakers"])} synthetic voices; file names are
  `<speaker>_nohash_<take>.wav`. Multi-word keywords are stored with their words joined by `_`.
- Audio: {info["sample_rate"]} Hz, 16-bit mono WAV, exactly {info["clip_samples"]} samples per clip.
- Splits: `validation_list.txt` and `testing_list.txt` list held-out speakers' clips
  (`word/file.wav`); every other clip is training data.
- `{BACKGROUND_FOLDER}/`: {", ".join(background) or "none"} (generated noise).
- `synth_info.json`: each speaker's voice settings, recording conditions and split.

The audio is synthetic (espeak-ng, GPL-3.0 voice data); use it for tests, demos and
pre-training, not as a substitute for recordings of real speakers.
"""


_BACKGROUND_README = """# Background noise

Longer noise recordings ({seconds:g} s each, 16 kHz, 16-bit mono) to mix into the clips
during training, as in the real corpus's `_background_noise_` folder. All are generated:

- `white_noise.wav`: Gaussian white noise.
- `pink_noise.wav`: noise with a 1/f power spectrum (-3 dB per octave).
- `running_tap.wav`: a tap running into a sink: band-limited hiss plus thousands of
  small bubble "plinks".
- `babble.wav`: seven synthetic talkers reading sentences at once in a reverberant room.
"""


# -- ``speechkit synth speech-commands`` --------------------------------------------------------


def comma_separated(text: str) -> list[str]:
    """``"yes, no,,up"`` -> ``["yes", "no", "up"]`` (an option type for ``argparse``)."""
    return [item.strip() for item in text.split(",") if item.strip()]


def _add_synth_arguments(p) -> None:
    p.add_argument(
        "--words", type=comma_separated, default=None,
        help="comma-separated keywords; a multi-word keyword is stored with '_' between its "
        "words, and '_' in a keyword counts as a space (default: yes,no,up,down,left,right,on,"
        "off,stop,go)",
    )  # fmt: skip
    p.add_argument(
        "--unknown-words", type=comma_separated, default=None,
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
    p.add_argument(
        "--voice-pool", choices=("all", "train", "heldout"), default="all",
        help="espeak-ng voices: all, the training families, or the held-out accents and variant "
        "families (default: %(default)s)",
    )  # fmt: skip
    p.add_argument(
        "--room-pool", choices=("all", "train", "heldout"), default="all",
        help="rooms and microphones: all/train (synthetic decays), or held-out shoebox rooms and "
        "microphones (default: %(default)s)",
    )  # fmt: skip


def _synth_from_args(args) -> int:
    from speechkit.data.synth.engines import apply_synth_options

    apply_synth_options(args)
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
        voice_pool=args.voice_pool,
        room_pool=args.room_pool,
        engines=args.engines,
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
        + reproducibility_note(summary["deterministic"])
    )
    return 0


SYNTH = Subcommand(
    "speech-commands", "Google Speech Commands layout: one folder of 1-s clips per word",
    _add_synth_arguments, _synth_from_args,
    description=(
        "Write a synthetic Google Speech Commands corpus: <word>/<speaker>_nohash_<k>.wav "
        "(16 kHz, 16-bit mono, 16000 samples), validation_list.txt and testing_list.txt "
        "(split by speaker), and _background_noise_/. A multi-word keyword such as "
        "'hey speechkit' is stored in the folder hey_speechkit/."
    ),
    order=10,
)
