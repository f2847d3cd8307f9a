"""Negatives for keyword spotting: running speech, near-miss words, and sounds that are not speech.

A detector listens to everything, and almost everything is not a keyword. This module makes the
material it must learn to ignore:

* :func:`synth_running_speech` writes keyword-free sentences spoken by given voices as
  10-30 s wav files (rooms, noise and level varied per file), the "running speech" that
  :class:`speechkit.data.kws_stream.KWSStreamDataModule` cuts training windows from and that
  :func:`speechkit.data.hard_negatives.mine_hard_negatives` runs the detector over.
* :func:`near_miss_words` picks words that *sound like* a keyword ("lift", "loft" for "left"),
  by a pronunciation-similarity rule over espeak-ng phonemes (normalized phoneme edit distance
  plus shared onset and rhyme), so the ``_unknown_`` class covers a keyword's neighbours and not
  just unrelated words.
* Non-speech generators (:func:`tones`, :func:`music_like`, :func:`clicks`, :func:`nonspeech`):
  numpy, seeded by an explicit ``np.random.Generator``, float32 in [-1, 1]; the data module
  labels them ``_silence_`` and the detector tests expect nothing to fire on them.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import re
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from speechkit.data.synth import effects
from speechkit.errors import SpeechkitError

SAMPLE_RATE = 16000

# -- non-speech ------------------------------------------------------------------------------
#: Kinds of :func:`nonspeech` audio.
NONSPEECH_KINDS: tuple[str, ...] = (
    "digital_silence", "near_silence", "white", "pink", "brown", "babble", "tones", "music", "clicks",
)  # fmt: skip
#: Kinds of :func:`tones`.
TONE_KINDS: tuple[str, ...] = ("sine", "chord", "sweep", "beeps", "dtmf")
#: DTMF row and column frequencies (Hz): a key is one of each, sounding together.
_DTMF_ROWS = (697.0, 770.0, 852.0, 941.0)
_DTMF_COLS = (1209.0, 1336.0, 1477.0, 1633.0)


def tones(
    num_samples: int, rng: np.random.Generator, sample_rate: int = SAMPLE_RATE, kind: str | None = None
) -> np.ndarray:
    """Tonal sounds: steady sines, chords, sweeps, beeps, DTMF key pairs; peak 1.

    Args:
        num_samples: length T.
        rng: random generator.
        sample_rate: Hz.
        kind: one of :data:`TONE_KINDS`; ``None`` draws one.

    Returns:
        float32 (T,), peak amplitude 1 (0 for T = 0).

    Raises:
        SpeechkitError: unknown ``kind``.

    Example:
        >>> x = tones(1600, np.random.default_rng(0), kind="dtmf")
        >>> x.shape, x.dtype, float(np.abs(x).max())
        ((1600,), dtype('float32'), 1.0)
    """
    kind = str(rng.choice(TONE_KINDS)) if kind is None else kind
    t = np.arange(num_samples) / sample_rate
    nyquist = sample_rate / 2
    if kind == "sine":
        out = np.sin(2 * np.pi * rng.uniform(80.0, min(4000.0, 0.9 * nyquist)) * t + rng.uniform(0, 2 * np.pi))
    elif kind == "chord":
        root = rng.uniform(110.0, 880.0)
        out = sum(np.sin(2 * np.pi * root * 2 ** (s / 12) * t) for s in (0, 4, 7, int(rng.choice([10, 11, 12]))))
    elif kind == "sweep":
        f0, f1 = np.exp(rng.uniform(np.log(100.0), np.log(0.9 * nyquist), size=2))
        duration = max(t[-1], 1e-3) if num_samples else 1.0
        freq = f0 * (f1 / f0) ** (t / duration)  # exponential sweep
        out = np.sin(2 * np.pi * np.cumsum(freq) / sample_rate)
    elif kind == "beeps":
        freq = rng.uniform(400.0, min(3000.0, 0.9 * nyquist))
        period = rng.uniform(0.1, 0.6)
        duty = rng.uniform(0.2, 0.7)
        gate = ((t / period) % 1.0) < duty
        out = np.sin(2 * np.pi * freq * t) * _smooth_gate(gate, sample_rate)
    elif kind == "dtmf":
        key_s = rng.uniform(0.06, 0.2)
        out = np.zeros(num_samples)
        pos = 0
        while pos < num_samples:
            length = min(int(key_s * sample_rate), num_samples - pos)
            tk = np.arange(length) / sample_rate
            out[pos : pos + length] = np.sin(2 * np.pi * rng.choice(_DTMF_ROWS) * tk) + np.sin(
                2 * np.pi * rng.choice(_DTMF_COLS) * tk
            )
            pos += length + int(rng.uniform(0.04, 0.15) * sample_rate)
    else:
        raise SpeechkitError(f"unknown tone kind {kind!r}; expected one of {TONE_KINDS}")
    return _unit_peak(np.asarray(out, np.float64))


def music_like(num_samples: int, rng: np.random.Generator, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Music-like audio: harmonic chords changing on a beat, plucked notes, drum-like onsets; peak 1.

    A tempo of 70-160 beats per minute; each beat starts a chord (3-4 notes of a major or minor
    triad, each note with 6 decaying harmonics) with a plucked envelope, a noise-burst "hi-hat"
    on some off-beats and a low decaying sine "kick" on some beats.

    Returns:
        float32 (T,), peak 1 (0 for T = 0).

    Example:
        >>> x = music_like(8000, np.random.default_rng(0))
        >>> x.shape, bool(np.abs(x).max() == 1.0)
        ((8000,), True)
    """
    out = np.zeros(num_samples)
    beat = int(60.0 / rng.uniform(70.0, 160.0) * sample_rate)
    root = rng.uniform(110.0, 330.0)
    minor = rng.random() < 0.5
    for start in range(0, num_samples, max(beat, 1)):
        length = min(2 * beat, num_samples - start)
        t = np.arange(length) / sample_rate
        degree = int(rng.choice([0, 3, 5, 7, 8, 10]))
        base = root * 2 ** (degree / 12)
        notes = [0, 3 if minor else 4, 7] + ([12] if rng.random() < 0.5 else [])
        envelope = np.exp(-t / rng.uniform(0.15, 0.6)) * np.minimum(1.0, t / 0.005)
        chord = sum(
            np.sin(2 * np.pi * base * 2 ** (n / 12) * h * t) / h**1.5 for n in notes for h in range(1, 7)
        )
        out[start : start + length] += envelope * chord
        if rng.random() < 0.6:  # kick: a falling low sine
            kl = min(int(0.15 * sample_rate), num_samples - start)
            tk = np.arange(kl) / sample_rate
            out[start : start + kl] += 3.0 * np.sin(2 * np.pi * (50 + 80 * np.exp(-tk / 0.03)) * tk) * np.exp(-tk / 0.05)
        hat = start + beat // 2
        if hat < num_samples and rng.random() < 0.7:  # hi-hat: a short noise burst
            hl = min(int(0.04 * sample_rate), num_samples - hat)
            out[hat : hat + hl] += rng.standard_normal(hl) * np.exp(-np.arange(hl) / (0.008 * sample_rate))
    return _unit_peak(out)


def clicks(num_samples: int, rng: np.random.Generator, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Clicks and knocks: sparse impulses (1-20 per second), each a short decaying resonance; peak 1.

    Returns:
        float32 (T,), peak 1 (0 for T = 0 or no click drawn).

    Example:
        >>> clicks(16000, np.random.default_rng(1)).dtype
        dtype('float32')
    """
    out = np.zeros(num_samples)
    count = rng.poisson(rng.uniform(1.0, 20.0) * num_samples / sample_rate)
    for start in rng.integers(0, max(num_samples, 1), size=count):
        decay = rng.uniform(0.0005, 0.01)
        length = min(int(6 * decay * sample_rate) + 1, num_samples - int(start))
        t = np.arange(length) / sample_rate
        ring = np.sin(2 * np.pi * rng.uniform(300.0, 0.45 * sample_rate) * t + rng.uniform(0, 2 * np.pi))
        out[start : start + length] += rng.uniform(0.2, 1.0) * rng.choice([-1, 1]) * ring * np.exp(-t / decay)
    return _unit_peak(out)


def nonspeech(
    kind: str, num_samples: int, rng: np.random.Generator, sample_rate: int = SAMPLE_RATE,
    peak_dbfs: float | None = None,
) -> np.ndarray:
    """Audio of one of :data:`NONSPEECH_KINDS` at a level from very quiet to clipped loud.

    ``digital_silence`` is all zeros; ``near_silence`` is pink or white noise at -70..-50 dBFS
    RMS; every other kind is scaled to a peak of ``peak_dbfs`` (default: drawn from -50..0 dBFS,
    and in one draw in six driven 0-12 dB past full scale and clipped).

    Args:
        kind: what to make.
        num_samples: length T.
        rng: random generator.
        sample_rate: Hz.
        peak_dbfs: level of the peak (before clipping); ``None`` draws one as above.

    Returns:
        float32 (T,) in [-1, 1].

    Raises:
        SpeechkitError: unknown ``kind``.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> float(np.abs(nonspeech("digital_silence", 100, rng)).max())
        0.0
        >>> x = nonspeech("white", 16000, rng, peak_dbfs=0.0)
        >>> bool(np.abs(x).max() <= 1.0)
        True
    """
    if kind == "digital_silence":
        return np.zeros(num_samples, np.float32)
    if kind == "near_silence":
        noise = effects.colored_noise(num_samples, rng, float(rng.choice([0.0, 1.0])))
        return (noise * np.float32(10 ** (rng.uniform(-70.0, -50.0) / 20))).astype(np.float32)
    if kind in effects.NOISE_KINDS:
        audio = effects.make_noise(kind, num_samples, rng, sample_rate)
    elif kind == "tones":
        audio = tones(num_samples, rng, sample_rate)
    elif kind == "music":
        audio = music_like(num_samples, rng, sample_rate)
    elif kind == "clicks":
        audio = clicks(num_samples, rng, sample_rate)
    else:
        raise SpeechkitError(f"unknown non-speech kind {kind!r}; expected one of {NONSPEECH_KINDS}")
    if peak_dbfs is None:
        peak_dbfs = float(rng.uniform(0.0, 12.0)) if rng.random() < 1 / 6 else float(rng.uniform(-50.0, 0.0))
    return np.clip(effects.normalize_peak(audio, peak_dbfs), -1.0, 1.0).astype(np.float32)


def _unit_peak(x: np.ndarray) -> np.ndarray:
    peak = float(np.abs(x).max(initial=0.0))
    return (x / peak if peak > 0 else x).astype(np.float32)


def _smooth_gate(gate: np.ndarray, sample_rate: int, ramp_s: float = 0.003) -> np.ndarray:
    """On/off gate (T,) bool -> float with short linear ramps (no click at every edge)."""
    width = max(1, int(ramp_s * sample_rate))
    kernel = np.ones(width) / width
    return np.convolve(gate.astype(np.float64), kernel, mode="same")


# -- near-miss words -------------------------------------------------------------------------
#: First characters of IPA vowel phonemes as espeak-ng writes them (diphthongs start with one).
_VOWELS = frozenset("aeiouyæɑɐɒɔəɘɚɛɜɝɞɨɪʊʌʏøœɶɯɤɵ")
_STRESS = str.maketrans("", "", "ˈˌ")


@functools.lru_cache(maxsize=65536)
def phoneme_tokens(text: str, voice: str = "en-us") -> tuple[str, ...]:
    """espeak-ng phonemes of ``text`` as a tuple, stress marks and word boundaries dropped.

    Example:
        >>> phoneme_tokens("left")
        ('l', 'ɛ', 'f', 't')
    """
    from speechkit.data.synth.espeak import phonemes

    return tuple(p for p in re.split(r"[_\s]+", phonemes(text, voice).translate(_STRESS)) if p)


def phoneme_similarity(a: Sequence[str], b: Sequence[str]) -> float:
    """How alike two phoneme sequences sound, in [0, 1.5].

    ``1 - edit_distance / max(len)`` (Levenshtein over phonemes: 1 means identical) plus 0.25
    if the onsets match (consonants before the first vowel) and 0.25 if the rhymes match (the
    last vowel and what follows): "lift" (one phoneme changed, onset kept) scores above "felt"
    (same phonemes reordered, onset changed).

    Example:
        >>> round(phoneme_similarity(("l", "ɛ", "f", "t"), ("l", "ɪ", "f", "t")), 3)
        1.0
        >>> phoneme_similarity(("l", "ɛ", "f", "t"), ("l", "ɛ", "f", "t"))
        1.5
    """
    if not a or not b:
        return 0.0
    score = 1.0 - _edit_distance(a, b) / max(len(a), len(b))
    score += 0.25 * (_onset(a) == _onset(b)) + 0.25 * (_rhyme(a) == _rhyme(b))
    return float(score)


def _edit_distance(a: Sequence[str], b: Sequence[str]) -> int:
    previous = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        current = [i]
        for j, y in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (x != y)))
        previous = current
    return previous[-1]


def _is_vowel(phoneme: str) -> bool:
    return phoneme[:1] in _VOWELS


def _onset(p: Sequence[str]) -> tuple[str, ...]:
    for i, x in enumerate(p):
        if _is_vowel(x):
            return tuple(p[:i])
    return tuple(p)


def _rhyme(p: Sequence[str]) -> tuple[str, ...]:
    for i in range(len(p) - 1, -1, -1):
        if _is_vowel(p[i]):
            return tuple(p[i:])
    return ()


def default_vocabulary() -> list[str]:
    """Candidate near-miss words: the words of the package's sentences, the Speech Commands words,
    and wordfreq's common English words that read as words (:func:`~speechkit.data.synth.text.general_vocabulary`).
    """
    from speechkit.data.synth.speech_commands import ALL_WORDS
    from speechkit.data.synth.text import general_vocabulary, load_sentences

    words = {w.strip("'") for s in load_sentences() for w in re.findall(r"[a-z']+", s.lower())}
    words.update(ALL_WORDS)
    words.update(general_vocabulary()[0])
    return sorted(w for w in words if re.fullmatch(r"[a-z]+('[a-z]+)?", w))


def near_miss_words(
    keywords: Sequence[str], vocabulary: Sequence[str] | None = None, per_keyword: int = 8, seed: int = 0,
    voice: str = "en-us",
) -> dict[str, list[str]]:
    """Words (or phrases) that share sounds with each keyword, most similar first.

    Candidates are the vocabulary's words; for a multi-word keyword also its single words and
    the phrases made by swapping one of its words for one of that word's nearest neighbours
    ("hey travis" for "hey jarvis"). Each is scored by :func:`phoneme_similarity` against the
    keyword's espeak-ng phonemes. Left out: every keyword, words that sound exactly like any
    keyword (homophones), and phrases containing a keyword as a whole word, so a near miss is
    never a keyword by another spelling. Ties are broken by ``seed``.

    Args:
        keywords: keywords, e.g. ``["left", "hey jarvis"]`` (``_`` counts as a space).
        vocabulary: candidate words; default :func:`default_vocabulary`.
        per_keyword: near misses returned per keyword.
        seed: tie-breaking among equally similar candidates.
        voice: espeak-ng voice whose pronunciation rules are used.

    Returns:
        keyword -> up to ``per_keyword`` near misses (lower case).

    Raises:
        SpeechkitError: no keywords, ``per_keyword`` < 1, or a keyword espeak-ng cannot pronounce.
    """
    if not keywords:
        raise SpeechkitError("near_miss_words: no keywords given")
    if per_keyword < 1:
        raise SpeechkitError(f"near_miss_words: per_keyword must be >= 1, got {per_keyword}")
    phrases = [" ".join(k.lower().replace("_", " ").split()) for k in keywords]
    kw_phones = {}
    for phrase in phrases:
        kw_phones[phrase] = phoneme_tokens(phrase, voice)
        if not kw_phones[phrase]:
            raise SpeechkitError(f"near_miss_words: espeak-ng has no pronunciation for keyword {phrase!r}")
    forbidden_sounds = set(kw_phones.values())
    kw_words = set(phrases)
    vocab = sorted({w.lower() for w in (default_vocabulary() if vocabulary is None else vocabulary) if w.strip()})
    vocab_phones = {w: phoneme_tokens(w, voice) for w in vocab}

    def allowed(candidate: str, phones: tuple[str, ...]) -> bool:
        if not phones or candidate in kw_words or phones in forbidden_sounds:
            return False
        padded = f" {candidate} "
        return not any(f" {k} " in padded for k in kw_words)

    result: dict[str, list[str]] = {}
    for index, (keyword, phrase) in enumerate(zip(keywords, phrases)):
        target = kw_phones[phrase]
        candidates = dict(vocab_phones)
        words = phrase.split()
        if len(words) > 1:
            for word in words:
                candidates.setdefault(word, phoneme_tokens(word, voice))
            for i, word in enumerate(words):
                neighbours = _nearest(phoneme_tokens(word, voice), word, vocab_phones, 3)
                for other in neighbours:
                    swapped = " ".join(words[:i] + [other] + words[i + 1 :])
                    candidates.setdefault(swapped, phoneme_tokens(swapped, voice))
        rng = np.random.default_rng([seed, index, zlib.crc32(phrase.encode("utf-8"))])
        scored = [
            (-phoneme_similarity(target, phones), float(rng.random()), cand)
            for cand, phones in candidates.items()
            if allowed(cand, phones)
        ]
        scored.sort()
        result[keyword] = [cand for _, _, cand in scored[:per_keyword]]
    return result


def _nearest(target: tuple[str, ...], word: str, vocab_phones: dict, count: int) -> list[str]:
    scored = sorted(
        (-phoneme_similarity(target, phones), cand) for cand, phones in vocab_phones.items()
        if cand != word and phones and phones != target
    )
    return [cand for _, cand in scored[:count]]


# -- running speech --------------------------------------------------------------------------
def synth_running_speech(
    out_dir: str | os.PathLike,
    keywords: Sequence[str],
    voices: Sequence,
    minutes: float,
    seed: int = 0,
    jobs: int = 1,
    file_seconds: tuple[float, float] = (10.0, 30.0),
    sample_rate: int = SAMPLE_RATE,
    room_pool: str = "train",
    progress: bool = False,
) -> list[Path]:
    """Write ``minutes`` of keyword-free running speech as ``speech_<k>.wav`` files of 10-30 s.

    Each file is one voice at a time, drawn per sentence from ``voices``, saying sentences of
    :func:`speechkit.data.synth.stream.negative_sentences` (none contains a keyword) with
    natural pauses (0.15-0.9 s), in its own room: reverberation, noise kind and SNR, and level
    drawn per file (:func:`speechkit.data.synth.effects.sample_environment`, ``"mixed"``, from
    the room pool ``room_pool``).

    Resumable: every file is written atomically and depends only on ``(seed, k)``, so a rerun
    into the same folder keeps the files already there and writes the missing ones; the file
    list is fixed by ``minutes`` and ``seed`` (each file's length is drawn from ``(seed, k)``).

    Args:
        out_dir: folder for the files (created).
        keywords: words no sentence may contain.
        voices: :class:`~speechkit.data.synth.voices.Voice` speakers (e.g. training voices only).
        minutes: total length to write.
        seed: random seed.
        jobs: worker processes; the files do not depend on it.
        file_seconds: range of a file's length (s).
        sample_rate: Hz.
        room_pool: rooms and microphones (:data:`speechkit.data.synth.effects.ROOM_POOLS`);
            ``"train"`` for training material, keeping the held-out ones for evaluation.
        progress: show a progress bar on stderr.

    Returns:
        paths of all files (existing and new), in order.

    Raises:
        SpeechkitError: no voices, ``minutes`` <= 0, or every package sentence contains a keyword.
    """
    from speechkit.data.synth.speech_commands import run_jobs
    from speechkit.data.synth.stream import negative_sentences

    if not voices:
        raise SpeechkitError("synth_running_speech: no voices given")
    if minutes <= 0:
        raise SpeechkitError(f"synth_running_speech: minutes must be > 0, got {minutes}")
    effects.check_room_pool(room_pool)
    if not negative_sentences(keywords):
        raise SpeechkitError(f"synth_running_speech: every package sentence contains one of {list(keywords)}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    lo, hi = file_seconds
    total = minutes * 60.0
    plan: list[_SpeechFile] = []
    while sum(p.seconds for p in plan) < total:
        k = len(plan)
        seconds = float(_rng(seed, "length", k).uniform(lo, hi))
        seconds = min(seconds, max(total - sum(p.seconds for p in plan), 1.0))
        plan.append(
            _SpeechFile(str(out / f"speech_{k:04d}.wav"), seed, k, seconds, tuple(keywords), tuple(voices), sample_rate, room_pool)
        )
    todo = [p for p in plan if not Path(p.path).is_file()]
    run_jobs(_write_speech_file, todo, jobs, "running speech" if progress else None)
    return [Path(p.path) for p in plan]


@dataclasses.dataclass(frozen=True)
class _SpeechFile:
    path: str
    seed: int
    index: int
    seconds: float
    keywords: tuple
    voices: tuple
    sample_rate: int
    room_pool: str


def _write_speech_file(job: _SpeechFile) -> str:
    from speechkit.audio import save_audio
    from speechkit.data.synth.engines import synthesize
    from speechkit.data.synth.stream import negative_sentences

    rng = _rng(job.seed, "file", job.index)
    sentences = negative_sentences(job.keywords)
    target = int(job.seconds * job.sample_rate)
    pieces, length = [np.zeros(int(rng.uniform(0.0, 0.5) * job.sample_rate), np.float32)], 0
    while length < target:
        voice = job.voices[int(rng.integers(len(job.voices)))].with_jitter(rng)
        speech = synthesize(str(rng.choice(sentences)), voice, job.sample_rate, seed=int(rng.integers(2**31)))
        speech = speech * np.float32(10 ** (rng.uniform(-6.0, 0.0) / 20))  # nearer and farther
        pause = np.zeros(int(rng.uniform(0.15, 0.9) * job.sample_rate), np.float32)
        pieces += [speech.astype(np.float32), pause]
        length = sum(p.size for p in pieces)
    audio = np.concatenate(pieces)[:target]
    env = effects.sample_environment(rng, "mixed", pool=job.room_pool)
    audio = effects.apply_environment(audio, env, rng, job.sample_rate)
    save_audio(job.path, audio, job.sample_rate)  # atomic: complete or absent
    return job.path


def _rng(seed: int, *keys: int | str) -> np.random.Generator:
    entropy = [int(seed) & 0xFFFFFFFF, 0x4E6]
    entropy += [zlib.crc32(k.encode("utf-8")) if isinstance(k, str) else int(k) for k in keys]
    return np.random.default_rng(entropy)


__all__ = [
    "NONSPEECH_KINDS",
    "TONE_KINDS",
    "clicks",
    "default_vocabulary",
    "music_like",
    "near_miss_words",
    "nonspeech",
    "phoneme_similarity",
    "phoneme_tokens",
    "synth_running_speech",
    "tones",
]
