"""Audio I/O: the one loader every part of speechkit uses.

``load_audio`` reads wav/flac/ogg through soundfile (libsndfile), mixes down to mono, resamples
with soxr, and returns float32 samples in [-1, 1]. Problems a user can cause are reported as
:class:`speechkit.errors.AudioError` naming the file.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from speechkit.errors import AudioError
from speechkit.fileio import atomic_path

#: Longest file ``load_audio`` reads unless told otherwise (seconds). An hour of 16 kHz float32
#: is 230 MB; longer inputs almost always mean a wrong file, and the streaming tools read in blocks.
DEFAULT_MAX_SECONDS = 4 * 3600.0


def resample(audio: np.ndarray, orig_rate: int, target_rate: int) -> np.ndarray:
    """Resample ``audio`` (T,) or (T, C) float32 from ``orig_rate`` to ``target_rate`` (Hz)."""
    if orig_rate == target_rate:
        return audio
    import soxr

    return soxr.resample(audio, orig_rate, target_rate, quality="HQ").astype(np.float32, copy=False)


def to_mono(audio: np.ndarray) -> np.ndarray:
    """Mix (T, C) down to (T,) by averaging channels; (T,) passes through."""
    if audio.ndim == 1:
        return audio
    return audio.mean(axis=1, dtype=np.float32)


def load_audio(
    path: str | os.PathLike,
    sample_rate: int | None = 16000,
    mono: bool = True,
    max_seconds: float | None = DEFAULT_MAX_SECONDS,
) -> np.ndarray:
    """Load an audio file as float32 samples in [-1, 1].

    Args:
        path: wav, flac or ogg file (anything libsndfile reads).
        sample_rate: resample to this rate (Hz); ``None`` keeps the file's rate.
        mono: mix all channels down to one (shape (T,)); else return (T, C).
        max_seconds: refuse files longer than this (``None``: no limit).

    Returns:
        float32 array of shape (T,) if ``mono`` else (T, C), at ``sample_rate``.

    Raises:
        AudioError: the file is missing, empty (0 samples or 0 channels), corrupt or of an
            unsupported format, too long, or holds NaN/inf samples.
    """
    data, _ = load_audio_with_rate(path, sample_rate, mono, max_seconds)
    return data


def load_audio_with_rate(
    path: str | os.PathLike,
    sample_rate: int | None = 16000,
    mono: bool = True,
    max_seconds: float | None = DEFAULT_MAX_SECONDS,
) -> tuple[np.ndarray, int]:
    """Like :func:`load_audio`, also returning the rate of the returned samples (Hz)."""
    import soundfile as sf

    path = Path(path)
    if not path.exists():
        raise AudioError(f"{path}: no such audio file")
    if path.is_dir():
        raise AudioError(f"{path}: is a folder, expected an audio file")
    if path.stat().st_size == 0:
        raise AudioError(f"{path}: file is empty (0 bytes)")
    try:
        info = sf.info(str(path))
    except Exception as exc:  # libsndfile raises RuntimeError/LibsndfileError subclasses
        raise AudioError(
            f"{path}: cannot read audio ({_short(exc)}); expected wav, flac or ogg"
        ) from None
    if info.channels < 1:
        raise AudioError(f"{path}: audio has 0 channels")
    if info.frames == 0:
        raise AudioError(f"{path}: audio has 0 samples")
    if max_seconds is not None and info.frames > max_seconds * info.samplerate:
        raise AudioError(
            f"{path}: audio is {info.frames / info.samplerate:.0f} s long, more than the "
            f"{max_seconds:.0f} s limit; split it or use the streaming tools"
        )
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as exc:
        raise AudioError(f"{path}: audio data is corrupt ({_short(exc)})") from None
    if data.shape[0] == 0:
        raise AudioError(f"{path}: audio has 0 samples")
    if not np.isfinite(data).all():
        raise AudioError(f"{path}: audio contains NaN or infinite samples")
    if mono:
        data = to_mono(data)
    if sample_rate is not None and rate != sample_rate:
        data = resample(data, rate, sample_rate)
        rate = sample_rate
    # Float files may exceed full scale; clip so callers can rely on [-1, 1].
    np.clip(data, -1.0, 1.0, out=data)
    return np.ascontiguousarray(data, dtype=np.float32), int(rate)


def save_audio(path: str | os.PathLike, audio: np.ndarray, sample_rate: int, atomic: bool = True) -> None:
    """Write ``audio`` (T,) or (T, C) float in [-1, 1]; the format comes from the suffix.

    wav and flac are written as 16-bit PCM, ogg as Vorbis. The file is encoded in memory and
    written at once: libsndfile writes in many small writes and seeks (the header is patched at
    the end), which costs ~5 ms a file on network and overlay filesystems, 20 times the encoding.

    Args:
        atomic: write to a temporary file and rename (False for files inside a folder that is
            itself staged and renamed as a whole, e.g. a synthetic corpus).
    """
    import io

    import soundfile as sf

    path = Path(path)
    subtype = {".wav": "PCM_16", ".flac": "PCM_16", ".ogg": "VORBIS"}.get(path.suffix.lower())
    audio = np.clip(np.asarray(audio, dtype=np.float32), -1.0, 1.0)
    buffer = io.BytesIO()
    sf.write(buffer, audio, sample_rate, subtype=subtype, format=_format(path))
    if not atomic:
        path.write_bytes(buffer.getvalue())
        return
    with atomic_path(path) as tmp:
        tmp.write_bytes(buffer.getvalue())


def _format(path: Path) -> str:
    fmt = {".wav": "WAV", ".flac": "FLAC", ".ogg": "OGG"}.get(path.suffix.lower())
    if fmt is None:
        raise ValueError(f"{path}: cannot write audio with suffix {path.suffix!r}; use .wav, .flac or .ogg")
    return fmt


def _short(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[-1] if text else type(exc).__name__
