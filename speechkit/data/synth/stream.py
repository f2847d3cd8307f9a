"""Synthetic keyword streams: long recordings with labelled keyword times.

A stream alternates ordinary sentences (negative speech, from the package's sentence list,
filtered so no sentence contains a keyword) with keywords spoken on their own, as a user talks
to a device, by voices that can be held out of training. Background noise runs under the whole
stream. The events list is what ``speechkit eval-stream`` scores against.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from speechkit.data.synth.effects import (
    HELDOUT_MICS,
    apply_mic,
    check_room_pool,
    make_noise,
    reverberate,
    sample_heldout_room,
    shoebox_rir,
    synthetic_rir,
)
from speechkit.data.synth.engines import synthesize
from speechkit.data.synth.text import load_sentences
from speechkit.data.synth.voices import Voice


@dataclass
class KeywordStream:
    """A synthesized stream.

    Attributes:
        audio: float32 (T,) in [-1, 1] at ``sample_rate``.
        sample_rate: Hz.
        events: ``[{"keyword", "start", "end"}]`` in seconds, one per spoken keyword.
    """

    audio: np.ndarray
    sample_rate: int
    events: list[dict]

    @property
    def duration_s(self) -> float:
        return self.audio.size / self.sample_rate


def negative_sentences(keywords: Sequence[str]) -> list[str]:
    """Package sentences that contain none of ``keywords`` (as whole words)."""
    words = [k.lower() for k in keywords]
    pattern = re.compile(r"\b(" + "|".join(re.escape(w) for w in words) + r")\b", re.IGNORECASE)
    return [s for s in load_sentences() if not pattern.search(s)]


def synth_keyword_stream(
    keywords: Sequence[str],
    voices: Sequence[Voice],
    num_keywords: int = 40,
    sentences_between: tuple[int, int] = (0, 2),
    snr_db: tuple[float, float] = (10.0, 30.0),
    sample_rate: int = 16000,
    seed: int = 0,
    room_pool: str = "all",
) -> KeywordStream:
    """Synthesize a stream with ``num_keywords`` keyword occurrences among sentences.

    Args:
        keywords: words to place (each occurrence draws one uniformly).
        voices: speakers; each segment draws one (use voices held out of training).
        num_keywords: keyword occurrences.
        sentences_between: range (inclusive) of sentences spoken before each keyword.
        snr_db: range of the stream's background-noise SNR, drawn per segment.
        sample_rate: Hz.
        seed: same seed, same stream.
        room_pool: ``"all"``/``"train"``: a light synthetic-decay room; ``"heldout"``: a
            held-out shoebox room and microphone (:mod:`speechkit.data.synth.effects`).

    Returns:
        The stream and its events.
    """
    check_room_pool(room_pool)
    rng = np.random.default_rng([seed, 0x57EA])
    sentences = negative_sentences(keywords)
    pieces: list[np.ndarray] = []
    events: list[dict] = []
    cursor = 0

    def add(audio: np.ndarray) -> tuple[float, float]:
        nonlocal cursor
        start = cursor
        pieces.append(audio)
        cursor += audio.size
        return start / sample_rate, cursor / sample_rate

    def pause(lo: float, hi: float) -> None:
        add(np.zeros(int(rng.uniform(lo, hi) * sample_rate), dtype=np.float32))

    add(np.zeros(int(0.5 * sample_rate), dtype=np.float32))
    for _ in range(num_keywords):
        for _ in range(int(rng.integers(sentences_between[0], sentences_between[1] + 1))):
            voice = voices[int(rng.integers(len(voices)))]
            add(_level(synthesize(str(rng.choice(sentences)), voice, sample_rate, seed=int(rng.integers(1 << 30))), rng))
            pause(0.3, 1.0)
        keyword = str(rng.choice(list(keywords)))
        voice = voices[int(rng.integers(len(voices)))]
        clip = _trim(_level(synthesize(keyword, voice, sample_rate, seed=int(rng.integers(1 << 30))), rng))
        start, end = add(clip)
        events.append({"keyword": keyword, "start": round(start, 3), "end": round(end, 3)})
        pause(0.8, 1.6)
    audio = np.concatenate(pieces) if pieces else np.zeros(0, np.float32)
    audio = _add_background(audio, rng, snr_db, sample_rate, room_pool)
    return KeywordStream(audio=audio, sample_rate=sample_rate, events=events)


def synth_negative_stream(
    keywords: Sequence[str], voices: Sequence[Voice], num_sentences: int = 60,
    snr_db: tuple[float, float] = (10.0, 30.0), sample_rate: int = 16000, seed: int = 0,
    room_pool: str = "all",
) -> np.ndarray:
    """Speech with no keyword in it (for threshold calibration and false-alarm rates).

    ``room_pool`` as in :func:`synth_keyword_stream`.

    Returns:
        float32 (T,) in [-1, 1] at ``sample_rate``.
    """
    check_room_pool(room_pool)
    rng = np.random.default_rng([seed, 0x0E6])
    sentences = negative_sentences(keywords)
    pieces = []
    for _ in range(num_sentences):
        voice = voices[int(rng.integers(len(voices)))]
        pieces.append(_level(synthesize(str(rng.choice(sentences)), voice, sample_rate, seed=int(rng.integers(1 << 30))), rng))
        pieces.append(np.zeros(int(rng.uniform(0.2, 0.8) * sample_rate), np.float32))
    return _add_background(np.concatenate(pieces), rng, snr_db, sample_rate, room_pool)


def write_stream(stream: KeywordStream, wav_path: str | Path, events_path: str | Path) -> None:
    """Write the audio (16-bit wav) and the events JSON, atomically."""
    from speechkit.audio import save_audio
    from speechkit.fileio import write_json_atomic

    save_audio(wav_path, stream.audio, stream.sample_rate)
    write_json_atomic(events_path, stream.events)


def _level(audio: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Scale to a peak between -20 and -3 dBFS: people speak at different distances."""
    peak = float(np.abs(audio).max()) if audio.size else 0.0
    if peak <= 0:
        return audio.astype(np.float32)
    return (audio * (10 ** (rng.uniform(-20, -3) / 20) / peak)).astype(np.float32)


def _trim(audio: np.ndarray, threshold: float = 0.02) -> np.ndarray:
    """Cut leading/trailing near-silence so event times bound the spoken word."""
    if audio.size == 0:
        return audio
    loud = np.flatnonzero(np.abs(audio) > threshold * np.abs(audio).max())
    return audio[loud[0] : loud[-1] + 1] if loud.size else audio


def _add_background(
    audio: np.ndarray, rng: np.random.Generator, snr_db: tuple[float, float], sample_rate: int,
    room_pool: str = "all",
) -> np.ndarray:
    """Reverberation plus noise whose kind and level change every few seconds.

    ``"all"``/``"train"``: a light synthetic-decay room; ``"heldout"``: a held-out shoebox room,
    and the whole stream (speech and noise) through a held-out microphone.
    """
    if audio.size == 0:
        return audio
    mic = None
    if room_pool == "heldout":
        dims, rt60 = sample_heldout_room(rng)
        rir = shoebox_rir(dims, rt60, sample_rate, rng)
        mic = str(rng.choice(HELDOUT_MICS))
    else:
        rir = synthetic_rir(float(rng.uniform(0.15, 0.5)), sample_rate, rng)
    out = reverberate(audio, rir)[: audio.size]
    speech_rms = float(np.sqrt(np.mean(audio[np.abs(audio) > 1e-4] ** 2))) if np.any(np.abs(audio) > 1e-4) else 0.01
    block = 5 * sample_rate
    for start in range(0, out.size, block):
        stop = min(start + block, out.size)
        kind = str(rng.choice(["white", "pink", "brown", "babble"]))
        noise = make_noise(kind, stop - start, rng, sample_rate)
        level = speech_rms / 10 ** (rng.uniform(*snr_db) / 20)
        out[start:stop] += level * noise
    if mic is not None:
        peak = float(np.abs(out).max())
        out = apply_mic(out, mic, sample_rate)
        out *= peak / max(float(np.abs(out).max()), 1e-10)  # the microphone colours, not levels
    return np.clip(out, -1.0, 1.0).astype(np.float32)
