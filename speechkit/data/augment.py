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
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from speechkit.audio import resample


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

    def perturb(self, audio: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Speed then volume perturbation of a (T,) clip; returns (T',)."""
        if len(self.speed_factors) > 1 or self.speed_factors[0] != 1.0:
            factor = float(self.speed_factors[int(rng.integers(len(self.speed_factors)))])
            audio = speed_perturb(audio, factor, self.sample_rate)
        if self.volume_db > 0:
            audio = volume_perturb(audio, float(rng.uniform(-self.volume_db, self.volume_db)))
        return audio

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
