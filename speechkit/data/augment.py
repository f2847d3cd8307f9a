"""Waveform augmentation for 1-D clips (numpy, float32, in [-1, 1]).

Each transform is a plain function of a clip (T,) and, where random, a ``np.random.Generator``
so results are reproducible. :class:`WaveformAugment` chains them the way the training
DataModule uses them. The recipes they follow:

* **Background noise at a random gain** and **time shift**: BC-ResNet (Kim et al., Interspeech
  2021; ``Preprocess`` in github.com/Qualcomm-AI-research/bcresnet): a non-silence training clip
  gets, with probability 0.8, a random 1 s slice of a random ``_background_noise_`` recording
  scaled by ``U(0, 0.1)``; ``_silence_`` clips always get noise scaled by ``U(0, 1)``. The same
  clips are shifted by ``U(-100, 100)`` ms with zero fill (in the reference code clips without
  noise are not shifted; we keep that). Then the clip is clamped to [-1, 1].
* **Background noise at a random SNR**: the usual alternative (e.g. TensorFlow's
  ``speech_commands`` and most ASR recipes): noise scaled so that the clip-to-noise power ratio
  is ``U(snr_low, snr_high)`` dB.
* **Speed perturbation**: Ko et al., "Audio augmentation for speech recognition" (Interspeech
  2015), Kaldi/icefall's 0.9/1.0/1.1: resampling changes tempo and pitch together.
* **Volume perturbation**: a random gain of ``U(-volume_db, +volume_db)`` dB (Kaldi's
  ``--volume`` perturbation, in dB here).

Voices, rooms and microphones never heard (issue 11; ``WaveformAugment(augmentations=[...])``,
each applied to a speech clip with probability ``augment_p``, in the order of
:data:`AUGMENTATIONS`; parameters are drawn from the caller's generator, so a seed repeats them):

* ``formant``: vocal-tract-length warp: the spectral envelope (cepstrally smoothed log
  spectrum) is stretched by ``U(0.85, 1.18)`` along frequency while the harmonics (f0) stay.
* ``pitch``: f0 moved by ``U(-4, 4)`` semitones with the tempo and the formants kept:
  audiomentations ``PitchShift`` (Signalsmith Stretch) then the envelope warped back.
* ``babble``: 3-6 other training utterances summed at random offsets, mixed at 0-20 dB SNR.
* ``reverb``: a pyroomacoustics shoebox RIR from a bank of ordinary rooms
  (:data:`speechkit.data.synth.effects.TRAIN_SHOEBOX`), computed once per process.
* ``eq``: random parametric EQ: 1-3 peaking bands (100 Hz-6 kHz, +-9 dB, Q 0.5-2) and a
  low- or high-shelf tilt of +-6 dB (audiomentations ``PeakingFilter``/shelf filters).
* ``bandlimit``: a low-pass (3.4-7 kHz), a high-pass (80-400 Hz) or the telephone band
  (300-3400 Hz) (audiomentations ``LowPassFilter``/``HighPassFilter``/``BandPassFilter``).
* ``codec``: G.711-like (8 kHz round trip + 8-bit mu-law), 8-bit mu-law at 16 kHz, or a bit
  crusher (6-10 bits; audiomentations ``BitCrush``).

The held-out proxy's rooms and microphones (:mod:`speechkit.data.synth.effects`) lie outside
these ranges on purpose.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from speechkit.audio import resample
from speechkit.errors import SpeechkitError

#: Names accepted by ``WaveformAugment(augmentations=...)``, in the order they are applied:
#: the voice first, then other talkers, the room, the microphone and the channel.
AUGMENTATIONS: tuple[str, ...] = ("formant", "pitch", "babble", "reverb", "eq", "bandlimit", "codec")


def shift(audio: np.ndarray, shift_samples: int) -> np.ndarray:
    """Shift a clip in time with zero fill, keeping its length.

    Args:
        audio: (T,) samples.
        shift_samples: positive moves the content later (zeros at the start), negative earlier.

    Returns:
        (T,) shifted copy.
    """
    out = np.zeros_like(audio)
    n = len(audio)
    if shift_samples >= 0:
        out[shift_samples:] = audio[: max(n - shift_samples, 0)]
    else:
        out[: max(n + shift_samples, 0)] = audio[-shift_samples:]
    return out


def random_time_shift(
    audio: np.ndarray, max_shift_ms: float, sample_rate: int, rng: np.random.Generator, prob: float = 1.0
) -> np.ndarray:
    """With probability ``prob``, shift by ``U(-max_shift_ms, max_shift_ms)`` (zero fill)."""
    if max_shift_ms <= 0 or rng.random() >= prob:
        return audio
    max_shift = round(max_shift_ms * sample_rate / 1000)
    return shift(audio, int(rng.integers(-max_shift, max_shift + 1)))


def noise_segment(noises: Sequence[np.ndarray], num_samples: int, rng: np.random.Generator) -> np.ndarray:
    """A random ``num_samples`` slice of a random noise recording (tiled if too short).

    Args:
        noises: noise recordings, each (N_i,) at the clip's sample rate.
        num_samples: wanted length.

    Returns:
        (num_samples,) float32.
    """
    noise = noises[int(rng.integers(len(noises)))]
    if len(noise) < num_samples:
        noise = np.tile(noise, -(-num_samples // len(noise)))
    start = int(rng.integers(len(noise) - num_samples + 1))
    return noise[start : start + num_samples]


def mix_at_gain(audio: np.ndarray, noise: np.ndarray, gain: float) -> np.ndarray:
    """``audio + gain * noise`` (BC-ResNet's amplitude mixing). Shapes (T,)."""
    return (audio + np.float32(gain) * noise).astype(np.float32, copy=False)


def mix_at_snr(audio: np.ndarray, noise: np.ndarray, snr_db: float, eps: float = 1e-10) -> np.ndarray:
    """Add ``noise`` scaled so that power(audio) / power(scaled noise) = ``snr_db`` dB.

    Shapes (T,). A silent clip (power below ``eps``) is returned unchanged: an SNR relative to
    silence is undefined. Not clamped, so the SNR is exact; clamp afterwards.
    """
    p_audio = float(np.mean(np.square(audio, dtype=np.float64)))
    p_noise = float(np.mean(np.square(noise, dtype=np.float64)))
    if p_audio < eps or p_noise < eps:
        return audio
    scale = np.sqrt(p_audio / (p_noise * 10.0 ** (snr_db / 10.0)))
    return (audio + np.float32(scale) * noise).astype(np.float32, copy=False)


def speed_perturb(audio: np.ndarray, factor: float, sample_rate: int) -> np.ndarray:
    """Play ``factor`` times faster (tempo and pitch), as sox ``speed``: length becomes T / factor.

    Implemented as resampling from ``sample_rate * factor`` to ``sample_rate`` (soxr).
    """
    if factor == 1.0:
        return audio
    return resample(audio, round(sample_rate * factor), sample_rate)


def volume_perturb(audio: np.ndarray, gain_db: float) -> np.ndarray:
    """Scale by ``gain_db`` decibels (amplitude factor 10^(gain_db/20))."""
    return (audio * np.float32(10.0 ** (gain_db / 20.0))).astype(np.float32, copy=False)


def clamp(audio: np.ndarray) -> np.ndarray:
    """Clip to the valid range [-1, 1]."""
    return np.clip(audio, -1.0, 1.0)


# -- voices, rooms, microphones, codecs ------------------------------------------------------
_N_FFT, _HOP, _LIFTER = 512, 128, 30


def _stft(audio: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Hann-windowed STFT frames (N, 257) of ``audio`` padded by half a window each side."""
    window = np.hanning(_N_FFT + 1)[:-1].astype(np.float32)
    padded = np.pad(audio.astype(np.float32), (_N_FFT // 2, _N_FFT // 2 + _HOP))
    num = 1 + (padded.size - _N_FFT) // _HOP
    frames = np.lib.stride_tricks.sliding_window_view(padded, _N_FFT)[::_HOP][:num]
    return np.fft.rfft(frames * window, axis=1), window, padded.size


def _istft(spec: np.ndarray, window: np.ndarray, padded_size: int, length: int) -> np.ndarray:
    """Weighted overlap-add inverse of :func:`_stft`; returns (length,) float32."""
    frames = np.fft.irfft(spec, n=_N_FFT, axis=1).astype(np.float32) * window
    out = np.zeros(padded_size, np.float32)
    norm = np.zeros(padded_size, np.float32)
    for i, frame in enumerate(frames):
        out[i * _HOP : i * _HOP + _N_FFT] += frame
        norm[i * _HOP : i * _HOP + _N_FFT] += window**2
    out /= np.maximum(norm, 1e-3)
    return out[_N_FFT // 2 : _N_FFT // 2 + length]


def formant_warp(audio: np.ndarray, factor: float) -> np.ndarray:
    """Move the formants (the spectral envelope) by ``factor`` along frequency; keep f0 and length.

    Per 32 ms frame, the log magnitude spectrum is split into a smooth envelope (the first
    30 cepstral coefficients, i.e. detail slower than 1.9 ms: the vocal tract) and the rest
    (harmonics: the source); the envelope is resampled at ``f / factor`` and recombined with
    the untouched harmonics and phases. ``factor > 1`` is a shorter vocal tract (higher
    formants), as in vocal tract length perturbation (Jaitly & Hinton, 2013).

    Args:
        audio: (T,) float32.
        factor: formant frequency ratio, e.g. 0.85-1.18.

    Returns:
        (T,) float32.
    """
    if factor == 1.0 or audio.size == 0:
        return audio
    spec, window, padded = _stft(audio)
    log_mag = np.log(np.abs(spec) + 1e-7)
    cep = np.fft.irfft(log_mag, n=_N_FFT, axis=1)
    cep[:, _LIFTER : _N_FFT - _LIFTER + 1] = 0.0
    envelope = np.fft.rfft(cep, axis=1).real
    bins = np.arange(envelope.shape[1], dtype=np.float64)
    source = np.clip(bins / factor, 0, bins[-1])
    lo = np.floor(source).astype(int)
    hi = np.minimum(lo + 1, bins.size - 1)
    frac = (source - lo).astype(np.float32)
    warped = envelope[:, lo] * (1 - frac) + envelope[:, hi] * frac
    spec = spec * np.exp(warped - envelope).astype(np.float32)
    return _istft(spec, window, padded, audio.size)


def pitch_shift(audio: np.ndarray, semitones: float, sample_rate: int, keep_formants: bool = True) -> np.ndarray:
    """Shift f0 by ``semitones`` without changing the tempo or the length (audiomentations
    ``PitchShift``, Signalsmith Stretch). The transposition moves the formants too; with
    ``keep_formants`` they are warped back (:func:`formant_warp`), so only the pitch changes.

    Args:
        audio: (T,) float32.
        semitones: shift (positive: higher).
        sample_rate: Hz.

    Returns:
        (T,) float32.
    """
    import audiomentations

    if semitones == 0 or audio.size == 0:
        return audio
    shifter = audiomentations.PitchShift(min_semitones=semitones, max_semitones=semitones, p=1.0)
    out = shifter(samples=audio.astype(np.float32), sample_rate=sample_rate)
    out = _fit(out, audio.size)
    if keep_formants:
        out = formant_warp(out, 2.0 ** (-semitones / 12.0))
    return out.astype(np.float32)


def _fit(audio: np.ndarray, length: int) -> np.ndarray:
    return audio[:length] if audio.size >= length else np.pad(audio, (0, length - audio.size))


def random_eq(audio: np.ndarray, rng: np.random.Generator, sample_rate: int) -> np.ndarray:
    """1-3 peaking bands (100 Hz-6 kHz, +-9 dB, Q 0.5-2) plus a +-6 dB shelf (spectral tilt).

    audiomentations filters with every range collapsed to the value drawn from ``rng``.
    Returns (T,) float32.
    """
    import audiomentations as A

    out = audio.astype(np.float32)
    top = min(6000.0, 0.4 * sample_rate)
    for _ in range(int(rng.integers(1, 4))):
        fc = float(np.exp(rng.uniform(np.log(100.0), np.log(top))))
        gain, q = float(rng.uniform(-9.0, 9.0)), float(rng.uniform(0.5, 2.0))
        band = A.PeakingFilter(min_center_freq=fc, max_center_freq=fc, min_gain_db=gain, max_gain_db=gain,
                               min_q=q, max_q=q, p=1.0)  # fmt: skip
        out = band(samples=out, sample_rate=sample_rate)
    tilt = float(rng.uniform(-6.0, 6.0))
    if rng.random() < 0.5:
        fc = float(rng.uniform(2000.0, min(5000.0, 0.4 * sample_rate)))
        shelf = A.HighShelfFilter(min_center_freq=fc, max_center_freq=fc, min_gain_db=tilt, max_gain_db=tilt,
                                  min_q=0.7, max_q=0.7, p=1.0)  # fmt: skip
    else:
        fc = float(rng.uniform(150.0, 500.0))
        shelf = A.LowShelfFilter(min_center_freq=fc, max_center_freq=fc, min_gain_db=tilt, max_gain_db=tilt,
                                 min_q=0.7, max_q=0.7, p=1.0)  # fmt: skip
    return shelf(samples=out, sample_rate=sample_rate).astype(np.float32)


def band_limit(audio: np.ndarray, kind: str, cutoff_hz: float | tuple[float, float], sample_rate: int) -> np.ndarray:
    """A steep (36 dB/octave) low-pass, high-pass, or band-pass (``kind``) at ``cutoff_hz``
    (a pair for ``"bandpass"``), zero phase (audiomentations filters). Returns (T,) float32."""
    import audiomentations as A

    if kind == "lowpass":
        f = A.LowPassFilter(min_cutoff_freq=cutoff_hz, max_cutoff_freq=cutoff_hz, min_rolloff=36, max_rolloff=36,
                            zero_phase=True, p=1.0)  # fmt: skip
    elif kind == "highpass":
        f = A.HighPassFilter(min_cutoff_freq=cutoff_hz, max_cutoff_freq=cutoff_hz, min_rolloff=36, max_rolloff=36,
                             zero_phase=True, p=1.0)  # fmt: skip
    elif kind == "bandpass":
        lo, hi = cutoff_hz
        return band_limit(band_limit(audio, "highpass", lo, sample_rate), "lowpass", hi, sample_rate)
    else:
        raise SpeechkitError(f"unknown band limit {kind!r}; expected lowpass, highpass or bandpass")
    return f(samples=audio.astype(np.float32), sample_rate=sample_rate).astype(np.float32)


def random_band_limit(audio: np.ndarray, rng: np.random.Generator, sample_rate: int) -> np.ndarray:
    """Low-pass 3.4-7 kHz, high-pass 80-400 Hz, or the telephone band 300-3400 Hz (one in three)."""
    choice = int(rng.integers(3))
    if choice == 0:
        return band_limit(audio, "lowpass", float(rng.uniform(3400.0, min(7000.0, 0.45 * sample_rate))), sample_rate)
    if choice == 1:
        return band_limit(audio, "highpass", float(rng.uniform(80.0, 400.0)), sample_rate)
    return band_limit(audio, "bandpass", (300.0, 3400.0), sample_rate)


def mu_law(audio: np.ndarray, bits: int = 8) -> np.ndarray:
    """Encode to ``bits``-bit mu-law (mu = 2**bits - 1) and decode back (G.711's companding)."""
    mu = float(2**bits - 1)
    x = np.clip(audio, -1.0, 1.0)
    code = np.round((np.sign(x) * np.log1p(mu * np.abs(x)) / np.log1p(mu) + 1.0) / 2.0 * mu)
    y = 2.0 * code / mu - 1.0
    return (np.sign(y) * np.expm1(np.abs(y) * np.log1p(mu)) / mu).astype(np.float32)


def random_codec(audio: np.ndarray, rng: np.random.Generator, sample_rate: int) -> np.ndarray:
    """G.711-like (8 kHz round trip + 8-bit mu-law), 8-bit mu-law, or a 6-10 bit crusher."""
    choice = int(rng.integers(3))
    if choice == 0 and sample_rate > 8000:
        narrow = mu_law(resample(audio.astype(np.float32), sample_rate, 8000))
        return _fit(resample(narrow, 8000, sample_rate), audio.size).astype(np.float32)
    if choice <= 1:
        return mu_law(audio)
    import audiomentations as A

    bits = int(rng.integers(6, 11))
    crush = A.BitCrush(min_bit_depth=bits, max_bit_depth=bits, p=1.0)
    return crush(samples=np.clip(audio, -1.0, 1.0).astype(np.float32), sample_rate=sample_rate).astype(np.float32)


@functools.lru_cache(maxsize=4)
def rir_bank(sample_rate: int, size: int = 32, seed: int = 0) -> tuple[np.ndarray, ...]:
    """``size`` pyroomacoustics RIRs of ordinary training rooms, computed once per process.

    Rooms are drawn from :data:`speechkit.data.synth.effects.TRAIN_SHOEBOX` with ``seed``;
    about 20 ms per RIR. Returns float32 arrays (L_i,), direct path first.
    """
    from speechkit.data.synth.effects import TRAIN_SHOEBOX, shoebox_rir

    rng = np.random.default_rng([seed, 0x41B])
    bank = []
    for _ in range(size):
        dims = tuple(float(rng.uniform(*r)) for r in TRAIN_SHOEBOX["dims"])
        bank.append(shoebox_rir(dims, float(rng.uniform(*TRAIN_SHOEBOX["rt60"])), sample_rate, rng))
    return tuple(bank)


def random_reverb(audio: np.ndarray, rng: np.random.Generator, sample_rate: int) -> np.ndarray:
    """Convolve with a random RIR of :func:`rir_bank`; the peak level is kept. (T,) -> (T,)."""
    from speechkit.data.synth.effects import reverberate

    bank = rir_bank(sample_rate)
    return reverberate(audio, bank[int(rng.integers(len(bank)))])


def babble(
    audio: np.ndarray, talkers: Sequence[np.ndarray], snr_db: float, rng: np.random.Generator
) -> np.ndarray:
    """Mix the sum of ``talkers`` (each (N_i,), tiled or cut to T at a random offset) into
    ``audio`` (T,) at ``snr_db``. Returns (T,) float32 (not clamped)."""
    total = np.zeros(audio.size, np.float32)
    for talker in talkers:
        if talker.size == 0:
            continue
        piece = np.roll(_fit(np.tile(talker, -(-audio.size // talker.size)), audio.size), int(rng.integers(audio.size)))
        rms = float(np.sqrt(np.mean(np.square(piece, dtype=np.float64))))
        if rms > 1e-8:
            total += piece * np.float32(rng.uniform(0.5, 1.0) / rms)
    return mix_at_snr(audio.astype(np.float32), total, snr_db)


@dataclass
class WaveformAugment:
    """The training-time waveform augmentation of the classification DataModules.

    Use in two steps around cropping to the clip length: :meth:`perturb` (speed, volume; may
    change the length) then :meth:`add_noise_and_shift` (fixed length; clamps).

    Attributes:
        sample_rate: Hz of the clips and noises.
        noises: background-noise recordings (N_i,) at ``sample_rate``; empty disables noise.
        noise_prob: probability that a non-silence clip gets noise (BC-ResNet: 0.8).
        noise_max_gain: noise amplitude ``U(0, noise_max_gain)`` for non-silence clips (0.1).
        silence_max_gain: noise amplitude ``U(0, silence_max_gain)`` for silence clips,
            which always get noise (1.0).
        snr_db: ``(low, high)``: mix non-silence clips at ``U(low, high)`` dB SNR instead of
            a random gain.
        time_shift_ms: maximum shift (ms); applied to the clips picked for noise (with
            ``noise_prob``; every silence clip when there is noise), as in BC-ResNet. 0 disables.
        speed_factors: speed factors drawn uniformly ((1.0,) disables).
        volume_db: gain ``U(-volume_db, volume_db)`` dB; 0 disables.
        augmentations: names from :data:`AUGMENTATIONS` (module docstring); empty: none.
        augment_p: probability of each of ``augmentations`` per speech clip.
        babble_source: ``source(rng, n)`` -> ``n`` other training utterances (N_i,) at
            ``sample_rate``; needed by ``"babble"``.
    """

    sample_rate: int = 16000
    noises: Sequence[np.ndarray] = ()
    noise_prob: float = 0.8
    noise_max_gain: float = 0.1
    silence_max_gain: float = 1.0
    snr_db: tuple[float, float] | None = None
    time_shift_ms: float = 100.0
    speed_factors: Sequence[float] = (1.0,)
    volume_db: float = 0.0
    augmentations: Sequence[str] = ()
    augment_p: float = 0.5
    babble_source: Callable[[np.random.Generator, int], Sequence[np.ndarray]] | None = None

    def __post_init__(self) -> None:
        unknown = [name for name in self.augmentations if name not in AUGMENTATIONS]
        if unknown:
            raise SpeechkitError(f"unknown augmentation(s) {unknown}; expected names from {list(AUGMENTATIONS)}")
        if not 0.0 <= self.augment_p <= 1.0:
            raise SpeechkitError(f"augment_p must be in [0, 1], got {self.augment_p}")
        if "babble" in self.augmentations and self.babble_source is None:
            raise SpeechkitError("the 'babble' augmentation needs babble_source (other training utterances)")

    def perturb(self, audio: np.ndarray, rng: np.random.Generator, is_silence: bool = False) -> np.ndarray:
        """Speed, then the named :attr:`augmentations` (speech only: not on silence clips),
        then volume perturbation of a (T,) clip; returns (T',) float32."""
        if len(self.speed_factors) > 1 or self.speed_factors[0] != 1.0:
            factor = float(self.speed_factors[int(rng.integers(len(self.speed_factors)))])
            audio = speed_perturb(audio, factor, self.sample_rate)
        if self.augmentations and not is_silence:
            audio = self.voice_room_channel(audio, rng)
        if self.volume_db > 0:
            audio = volume_perturb(audio, float(rng.uniform(-self.volume_db, self.volume_db)))
        return audio

    def voice_room_channel(self, audio: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Apply each of :attr:`augmentations` with probability :attr:`augment_p`, in the order
        of :data:`AUGMENTATIONS`. (T,) -> (T,) float32, clamped to [-1, 1] when any applied."""
        sr = self.sample_rate
        applied = False
        for name in AUGMENTATIONS:
            if name not in self.augmentations or rng.random() >= self.augment_p:
                continue
            applied = True
            if name == "formant":
                audio = formant_warp(audio, float(np.exp(rng.uniform(np.log(0.85), np.log(1.18)))))
            elif name == "pitch":
                audio = pitch_shift(audio, float(rng.uniform(-4.0, 4.0)), sr)
            elif name == "babble":
                talkers = self.babble_source(rng, int(rng.integers(3, 7)))
                audio = babble(audio, talkers, float(rng.uniform(0.0, 20.0)), rng)
            elif name == "reverb":
                audio = random_reverb(audio, rng, sr)
            elif name == "eq":
                audio = random_eq(audio, rng, sr)
            elif name == "bandlimit":
                audio = random_band_limit(audio, rng, sr)
            elif name == "codec":
                audio = random_codec(audio, rng, sr)
        return clamp(audio).astype(np.float32, copy=False) if applied else audio

    def add_noise_and_shift(self, audio: np.ndarray, rng: np.random.Generator, is_silence: bool = False) -> np.ndarray:
        """BC-ResNet step: maybe shift + add noise, then clamp. (T,) -> (T,)."""
        has_noise = len(self.noises) > 0
        if is_silence:
            apply = has_noise
        else:
            apply = rng.random() < self.noise_prob and (has_noise or self.time_shift_ms > 0)
        if apply:
            audio = random_time_shift(audio, self.time_shift_ms, self.sample_rate, rng)
            if has_noise:
                noise = noise_segment(self.noises, len(audio), rng)
                if is_silence or self.snr_db is None:
                    max_gain = self.silence_max_gain if is_silence else self.noise_max_gain
                    audio = mix_at_gain(audio, noise, rng.uniform(0.0, max_gain))
                else:
                    audio = mix_at_snr(audio, noise, rng.uniform(*self.snr_db))
        return clamp(audio)
