"""Recording conditions for synthetic speech: noise, reverberation, microphones, gain.

Everything takes an explicit ``np.random.Generator`` so a corpus is reproducible from its seed.
Signals are float32 ``(T,)`` arrays in [-1, 1] at ``sample_rate`` Hz.

Rooms and microphones come in pools (:data:`ROOM_POOLS`), so that a proxy evaluation can
use recording conditions no training clip had:

* ``"train"`` (and ``"all"``, today's behaviour): rooms are :func:`synthetic_rir` decays
  (exponentially decaying noise, no geometry), and the augmentation's pyroomacoustics
  shoeboxes are ordinary rooms (:data:`TRAIN_SHOEBOX`: 3-8 m floors, 2.4-3.2 m ceilings);
  no microphone colouring beyond the augmentation's gentle EQ and band limits.
* ``"heldout"``: pyroomacoustics image-source shoeboxes of shapes outside those ranges
  (:data:`HELDOUT_ROOM_SHAPES`: long corridors, large halls, stairwells) and microphone
  responses outside the augmentation's ranges (:data:`HELDOUT_MICS`: narrower bands, lower
  cut-offs, high-Q resonances).
"""

from __future__ import annotations

import dataclasses

import numpy as np

#: Generated noise kinds: spectral slopes 0 (white), -3 dB/octave (pink), -6 dB/octave (brown),
#: and babble-like speech-shaped noise with syllable-rate amplitude modulation.
NOISE_KINDS: tuple[str, ...] = ("white", "pink", "brown", "babble")

_EPS = 1e-10


def colored_noise(num_samples: int, rng: np.random.Generator, exponent: float) -> np.ndarray:
    """Gaussian noise with power spectrum ~ 1 / f**exponent, unit RMS.

    Args:
        num_samples: length T.
        rng: random generator.
        exponent: 0 white, 1 pink, 2 brown (red).

    Returns:
        float32 (T,).
    """
    if exponent == 0 or num_samples < 4:
        return _unit_rms(rng.standard_normal(num_samples, dtype=np.float32))
    # White noise's spectrum is complex Gaussian: draw it directly and shape it (one FFT).
    bins = num_samples // 2 + 1
    spectrum = rng.standard_normal(bins, dtype=np.float32) + 1j * rng.standard_normal(
        bins, dtype=np.float32
    )
    freqs = np.arange(bins, dtype=np.float32)
    freqs[0] = 1.0  # no infinite DC gain
    spectrum *= freqs ** np.float32(-exponent / 2.0)  # amplitude ~ f^(-e/2): power ~ f^-e
    return _unit_rms(np.fft.irfft(spectrum, n=num_samples))


def babble_like_noise(
    num_samples: int, rng: np.random.Generator, sample_rate: int = 16000, talkers: int = 6
) -> np.ndarray:
    """Speech-shaped noise from several "talkers", each modulated at syllable rate; unit RMS.

    Each talker is white noise times an envelope that opens and closes 3-6 times a second;
    their sum is then shaped like the long-term speech spectrum (rising to ~500 Hz, falling
    about -9 dB/octave above). Shaping after the sum costs one FFT for all talkers, and the
    short shaping filter barely smears the slow envelopes. Cheaper than real babble, and with
    no intelligible words.

    Returns:
        float32 (T,).
    """
    total = np.zeros(num_samples, dtype=np.float32)
    # Talkers take windows of one white sequence at random offsets: shifted white noise is
    # uncorrelated with itself, and one draw costs far less than one per talker.
    white = rng.standard_normal(2 * num_samples, dtype=np.float32)
    for _ in range(max(1, talkers)):
        envelope = _syllable_envelope(num_samples, rng, sample_rate)
        offset = int(rng.integers(0, num_samples + 1))
        total += white[offset : offset + num_samples] * envelope
    size = _fast_fft_size(num_samples)
    freqs = np.fft.rfftfreq(size, 1.0 / sample_rate).astype(np.float32)
    shape = (freqs / 500.0) / (1.0 + (freqs / 500.0) ** 2.5)  # band-pass peaking near 500 Hz
    return _unit_rms(np.fft.irfft(np.fft.rfft(total, size) * shape, size)[:num_samples])


def _syllable_envelope(num_samples: int, rng: np.random.Generator, sample_rate: int) -> np.ndarray:
    """Positive envelope (T,), float32, unit RMS, with energy at 3-6 Hz like syllables."""
    rate_hz = rng.uniform(3.0, 6.0)
    hop = max(1, sample_rate // 100)  # one control value per 10 ms
    control = rng.standard_normal(num_samples // hop + 2)
    spectrum = np.fft.rfft(control)
    freqs = np.fft.rfftfreq(control.size, 0.01)
    spectrum *= np.exp(-0.5 * ((freqs - rate_hz) / 2.0) ** 2) + 0.3 * (freqs < 0.5)
    slow = np.fft.irfft(spectrum, n=control.size)
    slow = np.maximum(slow / (slow.std() + _EPS), 0.0)  # half-wave: silences between syllables
    envelope = np.interp(np.arange(num_samples) / hop, np.arange(control.size), slow)
    return _unit_rms(envelope)


def _fast_fft_size(n: int) -> int:
    """Smallest 2^a 3^b 5^c >= n: FFT sizes pocketfft handles fastest (often < next power of 2)."""
    best = 1 << max(0, (n - 1).bit_length())
    power5 = 1
    while power5 < best:
        power35 = power5
        while power35 < best:
            size = power35
            while size < n:
                size *= 2
            best = min(best, size)
            power35 *= 3
        power5 *= 5
    return best


def make_noise(
    kind: str, num_samples: int, rng: np.random.Generator, sample_rate: int = 16000
) -> np.ndarray:
    """Noise of one of :data:`NOISE_KINDS`, float32 (T,), unit RMS."""
    if kind == "white":
        return colored_noise(num_samples, rng, 0.0)
    if kind == "pink":
        return colored_noise(num_samples, rng, 1.0)
    if kind == "brown":
        return colored_noise(num_samples, rng, 2.0)
    if kind == "babble":
        return babble_like_noise(num_samples, rng, sample_rate)
    raise ValueError(f"unknown noise kind {kind!r}; expected one of {NOISE_KINDS}")


def add_noise(
    audio: np.ndarray, noise: np.ndarray, snr_db: float, signal_rms: float | None = None
) -> np.ndarray:
    """Mix ``noise`` into ``audio`` at a signal-to-noise ratio.

    Args:
        audio: (T,) signal.
        noise: (T,) noise (any level; it is rescaled).
        snr_db: wanted 10*log10(P_signal / P_noise).
        signal_rms: RMS to take as the signal's level; defaults to the RMS of ``audio``. Pass
            the RMS of the speech alone when ``audio`` is padded with silence, or the padding
            would dilute the level and the noise would come out too quiet.

    Returns:
        float32 (T,) = audio + scaled noise.
    """
    if noise.shape != audio.shape:
        raise ValueError(f"noise shape {noise.shape} != audio shape {audio.shape}")
    level = _rms(audio) if signal_rms is None else signal_rms
    noise_rms = _rms(noise)
    if level < _EPS or noise_rms < _EPS:
        return audio.astype(np.float32, copy=True)
    scale = level / (noise_rms * 10.0 ** (snr_db / 20.0))
    return (audio + scale * noise).astype(np.float32)


def synthetic_rir(
    rt60_s: float, sample_rate: int, rng: np.random.Generator, direct_to_reverb_db: float = 3.0
) -> np.ndarray:
    """A room impulse response: direct path plus exponentially decaying noise.

    The tail's energy falls by 60 dB in ``rt60_s`` (amplitude ~ exp(-6.91 t / rt60)); early
    reflections are not modelled separately. The response is 1.2 * rt60 long (max 1.5 s).

    Args:
        rt60_s: reverberation time (s), e.g. 0.2 (small room) to 1.0 (hall).
        sample_rate: Hz.
        rng: random generator.
        direct_to_reverb_db: energy of the direct path over that of the tail.

    Returns:
        float32 (L,), with h[0] = 1 (the direct path).
    """
    length = max(2, int(min(1.2 * rt60_s, 1.5) * sample_rate))
    t = np.arange(length) / sample_rate
    tail = rng.standard_normal(length) * np.exp(-6.908 * t / max(rt60_s, 1e-3))
    predelay = int(0.003 * sample_rate)  # first reflections arrive a few ms after the direct sound
    tail[:predelay] = 0.0
    tail_energy = float(np.sum(tail**2))
    if tail_energy > 0:
        tail *= np.sqrt(10.0 ** (-direct_to_reverb_db / 10.0) / tail_energy)
    tail[0] = 1.0
    return tail.astype(np.float32)


def reverberate(audio: np.ndarray, rir: np.ndarray) -> np.ndarray:
    """Convolve ``audio`` (T,) with ``rir`` (L,) through the FFT; keep the first T samples.

    The output is rescaled to the input's peak so that reverberation does not change the level.
    """
    size = _fast_fft_size(audio.size + rir.size - 1)
    audio32, rir32 = audio.astype(np.float32, copy=False), rir.astype(np.float32, copy=False)
    wet = np.fft.irfft(np.fft.rfft(audio32, size) * np.fft.rfft(rir32, size), size)[: audio.size]
    peak_in, peak_out = np.abs(audio).max(initial=0.0), np.abs(wet).max(initial=0.0)
    if peak_out > _EPS:
        wet *= peak_in / peak_out
    return wet.astype(np.float32)


def apply_gain_db(audio: np.ndarray, gain_db: float) -> np.ndarray:
    """Multiply by 10**(gain_db/20) and clip to [-1, 1]."""
    return np.clip(audio * np.float32(10.0 ** (gain_db / 20.0)), -1.0, 1.0).astype(np.float32)


def normalize_peak(audio: np.ndarray, peak_dbfs: float) -> np.ndarray:
    """Scale so that max |audio| = 10**(peak_dbfs/20); silence stays silence."""
    peak = float(np.abs(audio).max(initial=0.0))
    if peak < _EPS:
        return audio.astype(np.float32, copy=True)
    return (audio * (10.0 ** (peak_dbfs / 20.0) / peak)).astype(np.float32)


def speech_bounds(
    audio: np.ndarray, sample_rate: int = 16000, threshold_db: float = -40.0
) -> tuple[int, int]:
    """Start and end sample of the part louder than ``threshold_db`` below the loudest 10 ms.

    Returns:
        ``(start, end)`` with ``audio[start:end]`` the speech; ``(0, 0)`` for silence.
    """
    frame = max(1, sample_rate // 100)
    num_frames = audio.size // frame
    if num_frames == 0:
        return (0, audio.size) if np.abs(audio).max(initial=0.0) > 0 else (0, 0)
    energy = np.mean(audio[: num_frames * frame].reshape(num_frames, frame) ** 2, axis=1)
    top = float(energy.max())
    if top <= 0:
        return 0, 0
    active = np.nonzero(energy >= top * 10.0 ** (threshold_db / 10.0))[0]
    start = int(active[0]) * frame
    end = audio.size if active[-1] == num_frames - 1 else (int(active[-1]) + 1) * frame
    return start, end


#: Names of the room/microphone pools (module docstring).
ROOM_POOLS: tuple[str, ...] = ("all", "train", "heldout")
#: Ordinary rooms of the training pool's shoebox reverberation: (length, width, height) ranges
#: in metres and the RT60 range in seconds.
TRAIN_SHOEBOX: dict = {"dims": ((3.0, 8.0), (2.5, 6.0), (2.4, 3.2)), "rt60": (0.15, 0.7)}
#: Held-out room shapes, none inside :data:`TRAIN_SHOEBOX`: shape -> (L, W, H) ranges (m).
HELDOUT_ROOM_SHAPES: dict[str, tuple[tuple[float, float], ...]] = {
    "corridor": ((10.0, 16.0), (1.4, 2.2), (2.4, 3.0)),
    "hall": ((14.0, 22.0), (9.0, 15.0), (4.5, 7.0)),
    "stairwell": ((2.5, 3.5), (2.5, 3.5), (7.0, 10.0)),
}
HELDOUT_RT60: tuple[float, float] = (0.3, 1.0)
#: Held-out microphones (see :func:`mic_response`), each outside the training EQ/band-limit
#: ranges: "tinny" 600-2800 Hz band with a Q 5 peak, "muffled" low-pass at 1.9 kHz (training
#: low-passes stop at 3.4 kHz), "resonant" three Q 6-8 resonances (training EQ: Q <= 2).
HELDOUT_MICS: tuple[str, ...] = ("tinny", "muffled", "resonant")


def check_room_pool(pool: str) -> None:
    """Raise SpeechkitError unless ``pool`` is one of :data:`ROOM_POOLS`."""
    if pool not in ROOM_POOLS:
        from speechkit.errors import SpeechkitError

        raise SpeechkitError(f"unknown room pool {pool!r}; expected one of {', '.join(ROOM_POOLS)}")


def shoebox_rir(
    dims: tuple[float, float, float], rt60_s: float, sample_rate: int, rng: np.random.Generator,
    max_order: int = 40,
) -> np.ndarray:
    """A room impulse response of a shoebox room (pyroomacoustics image-source method).

    Source and microphone are placed at random (``rng``) at least 0.5 m from the walls,
    1.2-1.9 m and 0.7-1.5 m above the floor. Wall absorption comes from Sabine's formula for
    ``rt60_s``; the image order is capped at ``max_order`` (the late tail of very live rooms
    is then a little short). The leading delay before the direct sound is removed, so
    convolving does not move the speech in time.

    Args:
        dims: room (length, width, height) in metres.
        rt60_s: wanted reverberation time (s).
        sample_rate: Hz.
        rng: random generator (positions).
        max_order: largest image-source order.

    Returns:
        float32 (L,), L <= 1.5 s, with its largest sample (the direct path) at index 0 equal to 1.
    """
    import pyroomacoustics as pra

    dims = tuple(float(d) for d in dims)
    try:
        e_absorption, order = pra.inverse_sabine(float(rt60_s), dims)
    except ValueError:  # too long an RT60 for so small a room: the liveliest it can be
        e_absorption, order = 0.02, max_order
    room = pra.ShoeBox(
        dims, fs=sample_rate, materials=pra.Material(float(e_absorption)), max_order=int(min(order, max_order))
    )

    def position(height: tuple[float, float]) -> list[float]:
        return [
            float(rng.uniform(0.5, max(0.51, dims[0] - 0.5))),
            float(rng.uniform(0.5, max(0.51, dims[1] - 0.5))),
            float(min(rng.uniform(*height), dims[2] - 0.3)),
        ]

    room.add_source(position((1.2, 1.9)))
    room.add_microphone(position((0.7, 1.5)))
    room.compute_rir()
    rir = np.asarray(room.rir[0][0], dtype=np.float64)
    start = int(np.argmax(np.abs(rir)))
    rir = rir[start : start + int(1.5 * sample_rate)]
    return (rir / rir[0]).astype(np.float32)


def mic_response(name: str, freqs: np.ndarray) -> np.ndarray:
    """Amplitude response of a held-out microphone (:data:`HELDOUT_MICS`) at ``freqs`` (Hz).

    Returns:
        float (F,) linear gains.

    Raises:
        SpeechkitError: unknown microphone name.
    """
    f = np.maximum(np.asarray(freqs, dtype=np.float64), 1.0)

    def highpass(fc: float, order: int) -> np.ndarray:
        return 1.0 / np.sqrt(1.0 + (fc / f) ** (2 * order))

    def lowpass(fc: float, order: int) -> np.ndarray:
        return 1.0 / np.sqrt(1.0 + (f / fc) ** (2 * order))

    def peak(fc: float, gain_db: float, q: float) -> np.ndarray:
        # a resonance on a log-frequency axis: gain_db at fc, bandwidth fc / q
        return 10.0 ** (gain_db / 20.0 * np.exp(-0.5 * ((f - fc) / (fc / (2.0 * q))) ** 2))

    if name == "tinny":
        return highpass(600.0, 4) * lowpass(2800.0, 4) * peak(2200.0, 10.0, 5.0)
    if name == "muffled":
        return highpass(120.0, 2) * lowpass(1900.0, 4)
    if name == "resonant":
        return highpass(150.0, 2) * peak(1100.0, 12.0, 8.0) * peak(3700.0, 9.0, 8.0) * peak(2500.0, -10.0, 6.0)
    from speechkit.errors import SpeechkitError

    raise SpeechkitError(f"unknown microphone {name!r}; expected one of {', '.join(HELDOUT_MICS)}")


def apply_mic(audio: np.ndarray, name: str, sample_rate: int = 16000) -> np.ndarray:
    """Filter ``audio`` (T,) through microphone ``name``'s response (zero phase, one FFT).

    Returns:
        float32 (T,).
    """
    if audio.size == 0:
        return audio.astype(np.float32)
    size = _fast_fft_size(audio.size + 512)  # a little padding against circular wrap-around
    gains = mic_response(name, np.fft.rfftfreq(size, 1.0 / sample_rate)).astype(np.float32)
    return np.fft.irfft(np.fft.rfft(audio.astype(np.float32), size) * gains, size)[: audio.size].astype(np.float32)


def sample_heldout_room(rng: np.random.Generator) -> tuple[tuple[float, float, float], float]:
    """A held-out room: ``((length, width, height) m, rt60 s)`` of a :data:`HELDOUT_ROOM_SHAPES` shape."""
    shape = HELDOUT_ROOM_SHAPES[str(rng.choice(sorted(HELDOUT_ROOM_SHAPES)))]
    dims = tuple(round(float(rng.uniform(*r)), 2) for r in shape)
    return dims, round(float(rng.uniform(*HELDOUT_RT60)), 3)


@dataclasses.dataclass(frozen=True)
class Environment:
    """Where and how a synthetic speaker was recorded.

    Attributes:
        noise_kind: one of :data:`NOISE_KINDS`, or ``None`` for no added noise.
        snr_db: signal-to-noise ratio of the added noise (dB).
        rt60_s: reverberation time (s), or ``None`` for a dry recording.
        peak_dbfs: level of the loudest sample (dBFS, <= 0).
        room_dims: shoebox (length, width, height) in metres: the reverberation is a
            pyroomacoustics room of this size (:func:`shoebox_rir`); ``None``: a
            :func:`synthetic_rir` decay.
        mic: a :data:`HELDOUT_MICS` microphone the recording goes through, or ``None``.
    """

    noise_kind: str | None = None
    snr_db: float = 30.0
    rt60_s: float | None = None
    peak_dbfs: float = -3.0
    room_dims: tuple[float, float, float] | None = None
    mic: str | None = None


def sample_environment(rng: np.random.Generator, difficulty: str = "mixed", pool: str = "all") -> Environment:
    """Draw recording conditions.

    Args:
        rng: random generator.
        difficulty: ``"clean"`` (mostly quiet, dry rooms; like LibriSpeech *clean*), ``"other"``
            (noisier, more reverberant), or ``"mixed"`` (the spread of a crowd-sourced corpus
            such as Speech Commands, recorded on people's own laptops and phones).
        pool: ``"all"`` or ``"train"`` (synthetic-decay rooms, no microphone: the same draws
            as before pools existed) or ``"heldout"`` (noise and level as ``difficulty`` says,
            but always a held-out shoebox room, and a held-out microphone 4 times in 5).

    Raises:
        SpeechkitError: unknown pool.
    """
    check_room_pool(pool)
    settings = {
        # (P(noise), SNR range dB, P(reverb), RT60 range s, peak range dBFS)
        "clean": (0.3, (30.0, 50.0), 0.2, (0.1, 0.3), (-6.0, -1.0)),
        "mixed": (0.8, (10.0, 40.0), 0.5, (0.15, 0.8), (-24.0, -1.0)),
        "other": (0.9, (0.0, 25.0), 0.7, (0.3, 1.0), (-24.0, -1.0)),
    }
    if difficulty not in settings:
        raise ValueError(f"unknown difficulty {difficulty!r}; expected one of {sorted(settings)}")
    p_noise, snr_range, p_reverb, rt60_range, peak_range = settings[difficulty]
    has_noise = rng.random() < p_noise
    kind = str(rng.choice(NOISE_KINDS))
    snr = float(rng.uniform(*snr_range))
    has_reverb = rng.random() < p_reverb
    rt60 = float(rng.uniform(*rt60_range))
    peak = float(rng.uniform(*peak_range))
    env = Environment(
        noise_kind=kind if has_noise else None,
        snr_db=round(snr, 2),
        rt60_s=round(rt60, 3) if has_reverb else None,
        peak_dbfs=round(peak, 2),
    )
    if pool != "heldout":
        return env
    dims, rt60 = sample_heldout_room(rng)
    mic = str(rng.choice(HELDOUT_MICS)) if rng.random() < 0.8 else None
    return dataclasses.replace(env, rt60_s=rt60, room_dims=dims, mic=mic)


def apply_environment(
    audio: np.ndarray,
    env: Environment,
    rng: np.random.Generator,
    sample_rate: int = 16000,
    speech_rms: float | None = None,
) -> np.ndarray:
    """Reverberate, add noise, colour by the microphone, and set the level, as ``env`` says.

    Args:
        audio: (T,) clean speech, possibly padded with silence.
        env: recording conditions.
        rng: random generator (noise samples, impulse response).
        sample_rate: Hz.
        speech_rms: RMS of the speech alone (see :func:`add_noise`); default: measured on the
            part of ``audio`` found by :func:`speech_bounds`.

    Returns:
        float32 (T,) in [-1, 1].
    """
    out = audio.astype(np.float32, copy=True)
    if speech_rms is None:
        start, end = speech_bounds(out, sample_rate)
        speech_rms = _rms(out[start:end]) if end > start else 0.0
    if env.rt60_s is not None and env.room_dims is not None:
        out = reverberate(out, shoebox_rir(env.room_dims, env.rt60_s, sample_rate, rng))
    elif env.rt60_s is not None:
        out = reverberate(out, synthetic_rir(env.rt60_s, sample_rate, rng))
    if env.noise_kind is not None:
        noise = make_noise(env.noise_kind, out.size, rng, sample_rate)
        out = add_noise(out, noise, env.snr_db, signal_rms=speech_rms)
    if env.mic is not None:  # the microphone hears the room and its noise
        out = apply_mic(out, env.mic, sample_rate)
    return np.clip(normalize_peak(out, env.peak_dbfs), -1.0, 1.0)


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if x.size else 0.0


def _unit_rms(x: np.ndarray) -> np.ndarray:
    rms = _rms(x)
    return (x / rms if rms > _EPS else x).astype(np.float32)
