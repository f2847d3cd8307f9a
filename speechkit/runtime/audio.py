"""Streaming audio input for the runtime (numpy, soundfile, soxr; no torch).

Sources yield blocks ``(samples (n, C) float32 in [-1, 1], sample_rate)`` at whatever rate and
channel count they have; :class:`StreamConverter` mixes them to mono and resamples them to the
model's rate chunk by chunk, carrying the resampler's state so chunk borders leave no clicks.
Whole-file reading goes through :func:`speechkit.audio.load_audio_with_rate` (also torch-free).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO, Iterator

import numpy as np

from speechkit.audio import load_audio_with_rate, to_mono
from speechkit.errors import AudioError

#: Default block length of the file and stdin sources (seconds).
BLOCK_SECONDS = 0.1


def read_audio(path: str | os.PathLike, sample_rate: int | None = None) -> tuple[np.ndarray, int]:
    """Whole file as mono float32 (T,) at ``sample_rate`` (``None``: the file's rate)."""
    return load_audio_with_rate(path, sample_rate, mono=True)


def iter_audio_file(path: str | os.PathLike, block_seconds: float = BLOCK_SECONDS) -> Iterator[tuple[np.ndarray, int]]:
    """Read an audio file block by block (any length; memory stays at one block).

    Yields:
        ``(block (n, C) float32, sample_rate)``.

    Raises:
        AudioError: missing, empty, unreadable or corrupt file, or NaN/inf samples.
    """
    import soundfile as sf

    path = Path(path)
    if not path.is_file():
        raise AudioError(f"{path}: no such audio file" if not path.is_dir() else f"{path}: is a folder, expected an audio file")
    if path.stat().st_size == 0:
        raise AudioError(f"{path}: file is empty (0 bytes)")
    try:
        info = sf.info(str(path))
    except Exception as exc:  # LibsndfileError / RuntimeError
        raise AudioError(f"{path}: cannot read audio ({_last_line(exc)}); expected wav, flac or ogg") from None
    if info.frames == 0 or info.channels == 0:
        raise AudioError(f"{path}: audio has 0 samples")
    rate = int(info.samplerate)
    block = max(1, int(round(block_seconds * rate)))
    try:
        for data in sf.blocks(str(path), blocksize=block, dtype="float32", always_2d=True):
            if not np.isfinite(data).all():
                raise AudioError(f"{path}: audio contains NaN or infinite samples")
            yield data, rate
    except AudioError:
        raise
    except Exception as exc:
        raise AudioError(f"{path}: audio data is corrupt ({_last_line(exc)})") from None


def pcm16_to_float(data: bytes, channels: int = 1) -> np.ndarray:
    """Little-endian signed 16-bit PCM bytes -> (n, channels) float32 in [-1, 1)."""
    usable = len(data) - len(data) % (2 * channels)
    samples = np.frombuffer(data[:usable], dtype="<i2").astype(np.float32) / 32768.0
    return samples.reshape(-1, channels)


def iter_pcm16(
    stream: BinaryIO, sample_rate: int, channels: int = 1, block_seconds: float = BLOCK_SECONDS
) -> Iterator[tuple[np.ndarray, int]]:
    """Raw s16le PCM from a binary stream (e.g. ``sys.stdin.buffer``) in blocks.

    A trailing partial frame (odd byte, or fewer bytes than one sample of every channel) is
    carried over to the next read and dropped at end of stream.

    Yields:
        ``(block (n, channels) float32, sample_rate)``.
    """
    frame_bytes = 2 * channels
    block_bytes = max(1, int(round(block_seconds * sample_rate))) * frame_bytes
    pending = b""
    while True:
        data = stream.read(block_bytes)
        if not data:
            return
        pending += data
        usable = len(pending) - len(pending) % frame_bytes
        if usable:
            yield pcm16_to_float(pending[:usable], channels), sample_rate
            pending = pending[usable:]


def as_float_mono(samples: np.ndarray) -> np.ndarray:
    """Any (n,) or (n, C) int16/int32/float array -> (n,) float32 mono in [-1, 1]."""
    samples = np.asarray(samples)
    if samples.dtype == np.int16:
        samples = samples.astype(np.float32) / 32768.0
    elif samples.dtype == np.int32:
        samples = samples.astype(np.float32) / 2147483648.0
    else:
        samples = samples.astype(np.float32, copy=False)
    if samples.ndim == 2:
        samples = to_mono(samples)
    elif samples.ndim != 1:
        raise AudioError(f"expected audio of shape (samples,) or (samples, channels), got {samples.shape}")
    return samples


class StreamConverter:
    """Mix chunks to mono and resample them to ``target_rate``, keeping state across chunks.

    Args:
        target_rate: the model's rate (Hz).

    Example:
        >>> conv = StreamConverter(16000)
        >>> out = conv(np.zeros((4800, 2), np.float32), 48000)  # 100 ms of 48 kHz stereo
        >>> out.dtype, out.ndim
        (dtype('float32'), 1)
    """

    def __init__(self, target_rate: int) -> None:
        self.target_rate = int(target_rate)
        self._rate: int | None = None
        self._resampler = None

    def __call__(self, samples: np.ndarray, sample_rate: int) -> np.ndarray:
        """Convert one chunk; (n,) or (n, C) at ``sample_rate`` -> (m,) float32 at the target rate."""
        if sample_rate <= 0:
            raise AudioError(f"sample rate must be positive, got {sample_rate}")
        mono = as_float_mono(samples)
        if sample_rate == self.target_rate:
            return mono
        if sample_rate != self._rate:
            import soxr

            # A new input rate starts a new stream; its first output lags by the filter delay.
            self._rate = int(sample_rate)
            self._resampler = soxr.ResampleStream(self._rate, self.target_rate, 1, dtype="float32", quality="HQ")
        return self._resampler.resample_chunk(mono, last=False)

    def flush(self) -> np.ndarray:
        """The resampler's buffered tail at end of input ((m,) float32, maybe empty)."""
        if self._resampler is None:
            return np.zeros(0, np.float32)
        tail = self._resampler.resample_chunk(np.zeros(0, np.float32), last=True)
        self._resampler, self._rate = None, None
        return tail

    def reset(self) -> None:
        self._resampler, self._rate = None, None


def _last_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[-1] if text else type(exc).__name__
