"""Speed of synthetic speech: each engine (espeak-ng, SVOX Pico, Piper), the cache, single clips, and a whole corpus.

    OMP_NUM_THREADS=1 python benchmarks/synth_speed.py [--speakers 20] [--jobs 1]

Prints words/s and x real time for each engine alone (and reading the same utterances back from
the content-hash cache), 1-s Speech Commands clips with noise
(babble and pink) and reverberation (no file I/O), and ``synth_speech_commands`` end to end (WAV
files included). (Formerly also printed by ``tests/unit/test_synth.py::test_synthesis_speed``,
a test that could not fail; the measurement lives here now.)
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from speechkit.data.synth import effects
from speechkit.data.synth.engines import engine_available, set_synth_cache
from speechkit.data.synth.engines import synthesize as synthesize_any
from speechkit.data.synth.espeak import get_engine, synthesize
from speechkit.data.synth.speech_commands import ALL_WORDS, render_clip, synth_speech_commands
from speechkit.data.synth.text import load_sentences
from speechkit.data.synth.voices import sample_speakers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--speakers", type=int, default=20, help="speakers of the corpus run")
    parser.add_argument("--jobs", type=int, default=1, help="worker processes of the corpus run")
    args = parser.parse_args()

    t0 = time.perf_counter()
    engine = get_engine()
    print(
        f"engine start-up: {1000 * (time.perf_counter() - t0):.0f} ms "
        f"(native {engine.native_rate} Hz, deterministic={engine.deterministic})"
    )
    voices = sample_speakers(50, seed=0)
    words, sentences = list(ALL_WORDS), load_sentences()

    def rate(label: str, n: int, fn) -> None:
        t0 = time.perf_counter()
        audio_s = sum(fn(i) for i in range(n))
        wall = time.perf_counter() - t0
        print(f"{label:<46} {n / wall:8.0f} /s {audio_s / wall:8.0f}x real time")

    rate(
        "engine, one word, 16 kHz",
        500,
        lambda i: synthesize(words[i % 35], voices[i % 50], 16000, seed=i).size / 16000,
    )
    rate(
        "engine, one sentence, 16 kHz",
        100,
        lambda i: synthesize(sentences[i], voices[i % 50], 16000, seed=i).size / 16000,
    )
    if engine_available("pico"):
        pico = sample_speakers(20, seed=0, engines="pico")
        rate("pico engine, one word, 16 kHz", 200,
             lambda i: synthesize_any(words[i % 35], pico[i % 20], 16000).size / 16000)  # fmt: skip
        rate("pico engine, one sentence, 16 kHz", 50,
             lambda i: synthesize_any(sentences[i], pico[i % 20], 16000).size / 16000)  # fmt: skip
    if engine_available("piper"):
        piper = sample_speakers(10, seed=0, engines="piper")
        synthesize_any("warm up", piper[0], 16000)  # loads the voice (~0.3 s) outside the timing
        rate("piper engine (neural), one sentence, 16 kHz", 10,
             lambda i: synthesize_any(sentences[i], piper[i % 10], 16000).size / 16000)  # fmt: skip
    with tempfile.TemporaryDirectory() as cache:
        set_synth_cache(cache)
        for i in range(100):  # fill
            synthesize_any(sentences[i], voices[i % 50], 16000, seed=i)
        rate("cache hit, one sentence (either engine)", 100,
             lambda i: synthesize_any(sentences[i], voices[i % 50], 16000, seed=i).size / 16000)  # fmt: skip
        set_synth_cache(None)
    rng = np.random.default_rng(0)
    for noise, snr_db in (("babble", 15.0), ("pink", 20.0)):
        env = effects.Environment(noise, snr_db, 0.5, -6.0)
        rate(
            f"1-s clip: word + offset + reverb + {noise} noise",
            500,
            lambda i, env=env: render_clip(words[i % 35], voices[i % 50], env, rng).size / 16000,
        )

    with tempfile.TemporaryDirectory() as tmp:
        summary = synth_speech_commands(
            Path(tmp) / "sc", num_speakers=args.speakers, background_seconds=0, jobs=args.jobs
        )
    print(
        f"synth_speech_commands: {summary['num_clips']} clips (WAV) in {summary['seconds']:.1f} s"
        f" = {summary['clips_per_second']:.0f} clips/s, jobs={args.jobs}"
    )


if __name__ == "__main__":
    main()
