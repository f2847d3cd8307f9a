"""espeak-ng speech synthesis through ctypes, deterministic and fast.

The espeak-ng library and its voice data come from the ``espeakng-loader`` wheel
(``get_library_path()``, ``get_data_path()``), so nothing is installed system-wide. One engine
per process is initialised lazily in synchronous mode (``AUDIO_OUTPUT_SYNCHRONOUS``: synthesis
runs in the calling thread and hands 22050 Hz int16 blocks to a callback); a lock serialises
callers because espeak-ng keeps its state in globals.

Determinism. espeak-ng output depends on more than the text and the voice:

* a random generator adds breath noise and jitter: reseeded before every utterance with
  ``espeak_ng_SetRandSeed``;
* ``static`` variables carry state from one utterance to the next: pitch-flutter phases
  (``Flutter_ix`` in wavegen.c, ``time_count`` in klatt.c), amplitude-modulation counters,
  voice settings that a voice change does not always reset (``flutter_amp``, ...), and the
  Klatt synthesizer's filter memories. They are not part of the API, so on Linux they are found
  by name in the library's ELF symbol table and reset to their start-up values before every
  utterance: each utterance starts as the first one of a fresh process would.

With both, the same ``(text, voice, seed)`` gives the same samples whatever was synthesized
before, so clips can be generated in any order and in any process. The exception is the
"klatt 6" engine (speechPlayer, used by variants such as ``klatt6`` and ``Reed``), which keeps its
state on the heap; :mod:`speechkit.data.synth.voices` leaves those variants out.
:attr:`EspeakEngine.deterministic` reports whether a self-check at start-up confirmed
reproducibility (False where the symbols cannot be found, e.g. a stripped library or another
OS; outputs then vary slightly from run to run).
"""

from __future__ import annotations

import ctypes
import re
import struct
import threading
from pathlib import Path

import numpy as np

from speechkit.data.synth.voices import Voice
from speechkit.decoding import WordTime
from speechkit.errors import SpeechkitError

# speak_lib.h constants
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_DONT_EXIT = 0x8000  # return an error instead of calling exit() (!) on bad data
_CHARS_UTF8 = 1
_POS_CHARACTER = 1
_RATE, _VOLUME, _PITCH, _RANGE = 1, 2, 3, 4
_EE_OK = 0
_BUFFER_MS = 200  # size of the blocks handed to the callback
_EVENT_LIST_TERMINATED, _EVENT_WORD, _EVENT_PHONEME = 0, 1, 7  # espeak_EVENT_TYPE
_INITIALIZE_PHONEME_EVENTS = 0x0001  # report phoneme events (mnemonics); the audio is unchanged

#: Static variables of wavegen.c and klatt.c that carry state from one utterance to the next
#: (see module docstring), restored to their start-up values before each utterance so that
#: every utterance starts as the first one of a fresh process would. Plain data only (no
#: pointers to memory that may be freed). A name matches ``NAME`` or, for function-level statics,
#: ``NAME.<digits>`` as GCC writes them.
_WAVEGEN_FILE_STATICS = (
    "flutter_amp", "general_amplitude", "consonant_amp", "option_harmonic1", "voicing",
    "echo_buf", "echo_head", "echo_tail", "echo_amp", "echo_length", "rbreath", "peaks",
    "peak_harmonic", "peak_height", "harm_inc", "hswitch", "hspect", "modulation_type",
    "glottal_flag", "glottal_reduce", "wdata", "wavephase", "phaseinc", "cycle_samples",
    "hf_factor", "amp_ix", "amp_inc", "cbytes",
)  # fmt: skip
_STATE_VARIABLES: dict[str, str] = {
    # wavegen.c: pitch flutter phase and amplitude-modulation counters (function statics)
    "Flutter_ix": r"Flutter_ix(\.\d+)?",
    "cycle_count": r"cycle_count(\.\d+)?",
    "amplitude2": r"amplitude2(\.\d+)?",
    "agc": r"agc(\.\d+)?",
    "h_switch_sign": r"h_switch_sign(\.\d+)?",
    "maxh": r"maxh(\.\d+)?",
    "maxh2": r"maxh2(\.\d+)?",
    "wave_flag": r"wave_flag(\.\d+)?",
    # wavegen.c: file statics that a voice change does not always reset
    **{name: name for name in _WAVEGEN_FILE_STATICS},
    # klatt.c: flutter phase, noise and source filter memories, synthesizer state
    "time_count": r"time_count(\.\d+)?",
    "nlast": r"nlast\.\d+",
    "noise": r"noise\.\d+",
    "voice": r"voice\.\d+",  # the parwave() local, not the global `voice` pointer
    "vlast": r"vlast\.\d+",
    "glotlast": r"glotlast\.\d+",
    "sourc": r"sourc\.\d+",
    "kt_globals": r"kt_globals",
    "kt_frame": r"kt_frame",
}
_REQUIRED_STATE = ("Flutter_ix", "cycle_count", "time_count")

_CALLBACK_TYPE = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
)


class _Event(ctypes.Structure):
    """``espeak_EVENT`` of speak_lib.h (the ``id`` union is 8 bytes: int, pointer or char[8])."""

    _fields_ = [
        ("type", ctypes.c_int), ("unique_identifier", ctypes.c_uint), ("text_position", ctypes.c_int),
        ("length", ctypes.c_int), ("audio_position", ctypes.c_int), ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p), ("id", ctypes.c_char * 8),
    ]  # fmt: skip


class EspeakEngine:
    """The process-wide espeak-ng instance. Use :func:`get_engine`, not the constructor."""

    def __init__(self) -> None:
        import espeakng_loader

        self._lock = threading.RLock()
        self._chunks: list[np.ndarray] = []
        self._words: list[tuple[int, int]] = []
        self._phonemes: list[tuple[str, int]] = []
        self.library_path = espeakng_loader.get_library_path()
        self.data_path = espeakng_loader.get_data_path()
        try:
            lib = ctypes.CDLL(self.library_path)
        except OSError as exc:
            raise SpeechkitError(
                f"{self.library_path}: cannot load the espeak-ng library ({exc}); "
                "reinstall the espeakng-loader package"
            ) from None
        _declare(lib)
        self._lib = lib
        rate = lib.espeak_Initialize(
            _AUDIO_OUTPUT_SYNCHRONOUS, _BUFFER_MS, self.data_path.encode(),
            _INITIALIZE_DONT_EXIT | _INITIALIZE_PHONEME_EVENTS,
        )
        if rate <= 0:
            raise SpeechkitError(
                f"{self.data_path}: espeak-ng failed to initialise with this voice data "
                f"(status {rate}); reinstall the espeakng-loader package"
            )
        #: native output rate of espeak-ng (Hz), 22050
        self.native_rate = int(rate)
        self._callback = _CALLBACK_TYPE(self._on_audio)  # kept referenced: C holds the pointer
        lib.espeak_SetSynthCallback(self._callback)
        self._has_rand_seed = hasattr(lib, "espeak_ng_SetRandSeed")
        self._state = _StaticState.locate(lib, self.library_path)
        #: True if a start-up self-check found repeated synthesis bit-identical
        self.deterministic = self._self_check()

    # -- synthesis ------------------------------------------------------------------------
    def synthesize_native(
        self,
        text: str,
        voice_name: str,
        rate_wpm: int = 175,
        pitch: int = 50,
        pitch_range: int = 50,
        volume: int = 100,
        seed: int = 0,
        return_words: bool = False,
        return_phonemes: bool = False,
    ) -> np.ndarray | tuple:
        """Synthesize ``text`` at the native rate.

        Args:
            text: UTF-8 text (plain, not SSML).
            voice_name: espeak-ng voice, optionally with a variant (``"en-us+f3"``).
            rate_wpm: words per minute, clipped to espeak-ng's 80-450.
            pitch: base pitch 0-99. pitch_range: 0-99. volume: 0-200.
            seed: seed of espeak-ng's random generator (breath noise, jitter).
            return_words: also return espeak-ng's word events (the audio is the same).

        Returns:
            int16 array (T,) at :attr:`native_rate`; empty or a few ms of silence for text with
            nothing to say. With ``return_words``, ``(audio, events)``: for each word event
            ``(text position, sample)``, the 0-based character offset in ``text`` espeak-ng
            reports for the word and the native-rate sample where its sound starts.
            With ``return_phonemes`` (after the word events if both are asked for), a list of
            ``(phoneme mnemonic, sample)``: espeak-ng's phoneme events (its ASCII phoneme names,
            e.g. ``"l"``, ``"E"``, ``"_:"`` for a pause) and the native-rate sample where each
            phoneme starts.

        Raises:
            SpeechkitError: espeak-ng has no voice ``voice_name``.
        """
        encoded = text.encode("utf-8") + b"\0"
        with self._lock:
            # Back to the state of a fresh process first, then set voice and parameters, as a
            # fresh process would.
            self._state.restore()
            status = self._lib.espeak_SetVoiceByName(voice_name.encode("utf-8"))
            if status != _EE_OK:
                raise SpeechkitError(
                    f"espeak-ng has no voice {voice_name!r} (status {status}); expected an accent "
                    "like 'en-us' optionally with a variant from espeak-ng-data/voices/!v, "
                    "e.g. 'en-us+f3'"
                )
            lib = self._lib
            lib.espeak_SetParameter(_RATE, int(np.clip(rate_wpm, 80, 450)), 0)
            lib.espeak_SetParameter(_PITCH, int(np.clip(pitch, 0, 99)), 0)
            lib.espeak_SetParameter(_RANGE, int(np.clip(pitch_range, 0, 99)), 0)
            lib.espeak_SetParameter(_VOLUME, int(np.clip(volume, 0, 200)), 0)
            if self._has_rand_seed:
                lib.espeak_ng_SetRandSeed(ctypes.c_long(int(seed) & 0x7FFFFFFF))
            self._chunks, self._words, self._phonemes = [], [], []
            status = lib.espeak_Synth(
                encoded, len(encoded), 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None
            )
            lib.espeak_Synchronize()
            chunks, self._chunks = self._chunks, []
            words, self._words = self._words, []
            phones, self._phonemes = self._phonemes, []
        if status != _EE_OK:
            raise RuntimeError(f"espeak_Synth failed with status {status} for {text!r}")
        audio = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int16)
        extras = ([words] if return_words else []) + ([phones] if return_phonemes else [])
        return (audio, *extras) if extras else audio

    def _on_audio(self, wav, num_samples, events) -> int:
        # Called by espeak-ng, inside espeak_Synth, with blocks of int16 samples.
        if num_samples > 0 and wav:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(num_samples,)).copy())
        if events:  # an array ended by a LIST_TERMINATED event; text_position is 1-based
            event = ctypes.cast(events, ctypes.POINTER(_Event))
            i = 0
            while event[i].type != _EVENT_LIST_TERMINATED:
                if event[i].type == _EVENT_WORD:
                    self._words.append((event[i].text_position - 1, event[i].sample))
                elif event[i].type == _EVENT_PHONEME:
                    name = event[i].id.split(b"\0", 1)[0].decode("ascii", "replace")
                    self._phonemes.append((name, event[i].sample))
                i += 1
        return 0  # 0: continue synthesis

    def _self_check(self) -> bool:
        """Synthesize a phrase, other voices, then the phrase again: are the two identical?"""
        if not self._has_rand_seed:
            return False
        installed = _variants(self.data_path)
        probe = "en-us+klatt2" if "klatt2" in installed else "en-us"
        # Voices that leave different state behind: another Klatt source, no pitch flutter,
        # echo and breath.
        others = [f"en+{v}" for v in ("klatt4", "Alex", "f2", "whisper") if v in installed]
        first = self.synthesize_native("one two", probe, seed=1)
        for name in others or ["en"]:
            self.synthesize_native("something else", name, rate_wpm=300, pitch=90, seed=2)
        again = self.synthesize_native("one two", probe, seed=1)
        return bool(first.size > 0 and np.array_equal(first, again))


def _declare(lib: ctypes.CDLL) -> None:
    """ctypes signatures of the espeak-ng functions used (speak_lib.h, espeak_ng.h)."""
    lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
    lib.espeak_Initialize.restype = ctypes.c_int
    lib.espeak_SetSynthCallback.argtypes = [_CALLBACK_TYPE]
    lib.espeak_SetSynthCallback.restype = None
    lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
    lib.espeak_SetVoiceByName.restype = ctypes.c_int
    lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
    lib.espeak_SetParameter.restype = ctypes.c_int
    lib.espeak_Synth.argtypes = [
        ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
        ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p,
    ]  # fmt: skip
    lib.espeak_Synth.restype = ctypes.c_int
    lib.espeak_Synchronize.argtypes = []
    lib.espeak_Synchronize.restype = ctypes.c_int
    if hasattr(lib, "espeak_ng_SetRandSeed"):
        lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
        lib.espeak_ng_SetRandSeed.restype = None
    lib.espeak_TextToPhonemes.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_int, ctypes.c_int]
    lib.espeak_TextToPhonemes.restype = ctypes.c_char_p


def _variants(data_path: str) -> set[str]:
    folder = Path(data_path) / "voices" / "!v"
    return {p.name for p in folder.iterdir()} if folder.is_dir() else set()


class _StaticState:
    """Snapshot and restore of espeak-ng's inter-utterance static variables (Linux, ELF64)."""

    def __init__(self, regions: list[tuple[int, bytes]]) -> None:
        self._regions = regions  # (address, start-up bytes)

    @classmethod
    def locate(cls, lib: ctypes.CDLL, library_path: str) -> _StaticState:
        try:
            symbols = _elf_symbols(Path(library_path))
        except (OSError, ValueError, struct.error):
            return cls([])  # not ELF64 (macOS, Windows) or unreadable: no reset
        anchor = symbols.get("espeak_Synth")
        if anchor is None:
            return cls([])
        base = ctypes.cast(lib.espeak_Synth, ctypes.c_void_p).value - anchor[0]
        regions = []
        for key, pattern in _STATE_VARIABLES.items():
            matches = [v for name, v in symbols.items() if re.fullmatch(pattern, name)]
            if len(matches) != 1 or matches[0][1] == 0:  # unambiguous, sized
                if key in _REQUIRED_STATE:
                    return cls([])
                continue
            value, size = matches[0]
            regions.append((base + value, ctypes.string_at(base + value, size)))
        return cls(regions)

    def restore(self) -> None:
        for address, data in self._regions:
            ctypes.memmove(address, data, len(data))


def _elf_symbols(path: Path) -> dict[str, tuple[int, int]]:
    """Data-object and function symbols of an ELF64 little-endian file: name -> (value, size).

    Reads ``.symtab`` (which holds file- and function-level statics) and ``.dynsym``. Names
    defined more than once with different addresses are left out.
    """
    blob = path.read_bytes()
    if blob[:4] != b"\x7fELF" or blob[4] != 2 or blob[5] != 1:
        raise ValueError(f"{path}: not an ELF64 little-endian file")
    (shoff,) = struct.unpack_from("<Q", blob, 0x28)
    shentsize, shnum = struct.unpack_from("<HH", blob, 0x3A)
    sections = [
        struct.unpack_from("<IIQQQQIIQQ", blob, shoff + i * shentsize) for i in range(shnum)
    ]
    symbols: dict[str, tuple[int, int]] = {}
    ambiguous: set[str] = set()
    for _, sh_type, _, _, offset, size, link, _, _, entsize in sections:
        if sh_type not in (2, 11) or entsize != 24:  # SHT_SYMTAB, SHT_DYNSYM
            continue
        str_offset = sections[link][4]
        for pos in range(offset, offset + size, 24):
            name_off, info, _, shndx, value, sym_size = struct.unpack_from("<IBBHQQ", blob, pos)
            if shndx == 0 or (info & 0xF) not in (1, 2):  # undefined; not OBJECT/FUNC
                continue
            end = blob.index(b"\0", str_offset + name_off)
            name = blob[str_offset + name_off : end].decode("ascii", "replace")
            if symbols.get(name, (value, sym_size)) != (value, sym_size):
                ambiguous.add(name)  # e.g. two files each with a static `peaks`
            symbols[name] = (value, sym_size)
    return {name: v for name, v in symbols.items() if name not in ambiguous}


_ENGINE: EspeakEngine | None = None
_ENGINE_LOCK = threading.Lock()


def get_engine() -> EspeakEngine:
    """The process-wide espeak-ng engine, initialised on first use (thread-safe)."""
    global _ENGINE
    if _ENGINE is None:
        with _ENGINE_LOCK:
            if _ENGINE is None:
                _ENGINE = EspeakEngine()
    return _ENGINE


def synthesize(text: str, voice: Voice, sample_rate: int = 16000, seed: int = 0) -> np.ndarray:
    """Speak ``text`` with ``voice``.

    Args:
        text: what to say (plain text; numbers are read by espeak-ng's own rules).
        voice: the speaker; its ``speed_factor`` resamples the native 22050 Hz output as if it
            had been recorded at ``22050 * speed_factor`` Hz, shifting pitch, formants and tempo
            together.
        sample_rate: output rate (Hz).
        seed: seed of espeak-ng's random generator (breath noise); same inputs, same samples.

    Returns:
        float32 array (T,) in [-1, 1] at ``sample_rate``; at most a few ms of silence if
        there is nothing to say.
    """
    from speechkit.audio import resample

    engine = get_engine()
    native = engine.synthesize_native(
        text, voice.espeak_name, voice.rate_wpm, voice.pitch, voice.pitch_range, voice.volume, seed
    )
    audio = native.astype(np.float32) / 32768.0
    if audio.size == 0:
        return audio
    source_rate = round(engine.native_rate * voice.speed_factor)
    return np.clip(resample(audio, source_rate, sample_rate), -1.0, 1.0)


def synthesize_with_words(
    text: str, voice: Voice, sample_rate: int = 16000, seed: int = 0
) -> tuple[np.ndarray, list[WordTime]]:
    """:func:`synthesize`, plus when each word of ``text`` is spoken (espeak-ng's word events).

    The audio is the same samples :func:`synthesize` returns. A word starts at the sample where
    espeak-ng reports its word event (the start of its first phoneme, after any pause before it)
    and ends where the next word starts, or, when silence comes first (a pause at a comma, the
    end of the text), at the end of its last 10 ms of sound (louder than 60 dB below the
    loudest 10 ms). Words are the whitespace-separated tokens of ``text``; a token espeak-ng
    does not speak (punctuation alone) is left out. espeak-ng reads some short function words
    together with the word before them and reports one event for both ("for the", "the the"):
    such groups are left out too (their joint span is known, where one word ends is not), so
    ``words`` is the subsequence of the tokens whose times are exact. Times are in seconds of the returned audio (the
    ``speed_factor`` resampling included). Only espeak-ng reports word events: pico and piper
    voices have none.

    Returns:
        ``(audio, words)``: float32 (T,) at ``sample_rate`` and one
        :class:`~speechkit.decoding.WordTime` per spoken token of ``text``, in order.

    Example:
        >>> from speechkit.data.synth.voices import Voice
        >>> audio, words = synthesize_with_words("left right", Voice("en-us"), seed=1)
        >>> [w.word for w in words], 0 <= words[0].start_s < words[1].start_s < audio.size / 16000
        (['left', 'right'], True)
    """
    from speechkit.audio import resample

    engine = get_engine()
    native, events = engine.synthesize_native(
        text, voice.espeak_name, voice.rate_wpm, voice.pitch, voice.pitch_range, voice.volume, seed, return_words=True
    )
    source_rate = round(engine.native_rate * voice.speed_factor)
    words = [
        WordTime(w, start / source_rate, end / source_rate) for w, start, end in _word_samples(text, events, native)
    ]
    audio = native.astype(np.float32) / 32768.0
    if audio.size == 0:
        return audio, words
    return np.clip(resample(audio, source_rate, sample_rate), -1.0, 1.0), words


def synthesize_with_phonemes(
    text: str, voice: Voice, sample_rate: int = 16000, seed: int = 0
) -> tuple[np.ndarray, list[tuple[str, float]]]:
    """:func:`synthesize`, plus when each phoneme starts (espeak-ng's phoneme events).

    The audio is the same samples :func:`synthesize` returns. Phonemes are espeak-ng's ASCII
    mnemonics (``"l"``, ``"'E"`` with its stress mark, ``"_:"`` a pause); times are seconds of
    the returned audio (``speed_factor`` included). Visemes of the synthetic audio-visual corpus
    follow them (:mod:`speechkit.data.synth.avsr`).

    Example:
        >>> from speechkit.data.synth.voices import Voice
        >>> audio, phones = synthesize_with_phonemes("left", Voice("en-us"), seed=1)
        >>> [p for p, _ in phones][:4], phones[1][1] > phones[0][1]
        (['l', "'E", 'f', 't'], True)
    """
    from speechkit.audio import resample

    engine = get_engine()
    native, events = engine.synthesize_native(
        text, voice.espeak_name, voice.rate_wpm, voice.pitch, voice.pitch_range, voice.volume, seed,
        return_phonemes=True,
    )
    source_rate = round(engine.native_rate * voice.speed_factor)
    phones = [(name, sample / source_rate) for name, sample in events if name]
    audio = native.astype(np.float32) / 32768.0
    if audio.size == 0:
        return audio, phones
    return np.clip(resample(audio, source_rate, sample_rate), -1.0, 1.0), phones


def _word_samples(text: str, events: list[tuple[int, int]], native: np.ndarray) -> list[tuple[str, int, int]]:
    """``(token, start sample, end sample)`` per token of ``text`` with a word event (module rate)."""
    tokens = [(m.start(), m.end(), m.group()) for m in re.finditer(r"\S+", text)]
    starts: dict[int, int] = {}
    for position, sample in events:
        # espeak-ng's position can land on the space before a word (after a sentence end):
        # the event belongs to the first token that ends after it.
        k = next((i for i, (_, end, _) in enumerate(tokens) if end > position), None)
        if k is not None and k not in starts:
            starts[k] = sample
    ordered = sorted(starts.items())
    frame = max(1, round(get_engine().native_rate / 100))
    pcm = native.astype(np.float64)
    num_frames = -(-pcm.size // frame)
    energy = np.array([np.mean(pcm[i * frame : (i + 1) * frame] ** 2) for i in range(num_frames)])
    loud = energy > (energy.max(initial=0.0) * 1e-6)  # -60 dB
    out = []
    for i, (k, start) in enumerate(ordered):
        next_token = ordered[i + 1][0] if i + 1 < len(ordered) else len(tokens)
        if any(re.search(r"\w", tokens[j][2]) for j in range(k + 1, next_token)):
            continue  # a word spoken with this one under one event ("for the"): their split is unknown
        limit = ordered[i + 1][1] if i + 1 < len(ordered) else pcm.size
        frames = np.nonzero(loud[start // frame : -(-limit // frame)])[0]
        end = min(limit, (start // frame + int(frames[-1]) + 1) * frame) if frames.size else limit
        out.append((tokens[k][2], start, max(end, start + 1)))
    return out


def phonemes(text: str, voice: str = "en-us") -> str:
    """espeak-ng's IPA transcription of ``text``: phonemes joined by ``_``, words by spaces.

    Stress marks (``ˈ``, ``ˌ``) stay attached to the vowel they precede, as espeak-ng writes
    them; clauses (split at punctuation) are joined by a space. Uses ``espeak_TextToPhonemes``
    (IPA output, ``_`` as the phoneme separator), which reads one clause per call.

    Args:
        text: UTF-8 text.
        voice: espeak-ng voice whose pronunciation rules are used (accent: ``en-us``, ``en``...).

    Returns:
        e.g. ``"l_ˈɛ_f_t"`` for ``"left"``; ``""`` for text with nothing to say.

    Raises:
        SpeechkitError: espeak-ng has no voice ``voice``.

    Example:
        >>> phonemes("left")
        'l_ˈɛ_f_t'
    """
    engine = get_engine()
    lib = engine._lib
    buffer = ctypes.create_string_buffer(text.encode("utf-8") + b"\0")
    cursor = ctypes.c_void_p(ctypes.addressof(buffer))
    mode = 0x02 | (ord("_") << 8)  # bit 1: IPA; bits 8-23: separator between phonemes
    clauses = []
    with engine._lock:
        status = lib.espeak_SetVoiceByName(voice.encode("utf-8"))
        if status != _EE_OK:
            raise SpeechkitError(f"espeak-ng has no voice {voice!r} (status {status}); expected e.g. 'en-us'")
        while cursor.value:  # espeak-ng advances the cursor clause by clause; NULL at the end
            clause = lib.espeak_TextToPhonemes(ctypes.byref(cursor), _CHARS_UTF8, mode)
            if clause:
                clauses.append(clause.decode("utf-8", "replace").strip())
    return " ".join(c for c in clauses if c)


def reproducibility_note(deterministic: bool) -> str:
    """The warning a corpus summary line carries when espeak-ng failed its reproducibility check.

    Example:
        >>> reproducibility_note(True), reproducibility_note(False)
        ('', '; warning: espeak-ng output is not reproducible here')
    """
    return "" if deterministic else "; warning: espeak-ng output is not reproducible here"
