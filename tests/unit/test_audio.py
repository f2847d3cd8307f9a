"""The one audio loader: formats, mono mix-down, resampling, and one-line errors for bad files."""

from __future__ import annotations

import os

import numpy as np
import pytest
import soundfile as sf

from speechkit.audio import load_audio, load_audio_with_rate, save_audio
from speechkit.errors import AudioError


def _tone(freq_hz: float, seconds: float, rate: int) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.5 * np.sin(2 * np.pi * freq_hz * t)).astype(np.float32)


@pytest.mark.parametrize("suffix", [".wav", ".flac", ".ogg"])
def test_formats_round_trip(tmp_path, suffix):
    path = tmp_path / f"tone{suffix}"
    save_audio(path, _tone(440, 0.5, 16000), 16000)
    audio = load_audio(path, sample_rate=16000)
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert abs(audio.size - 8000) <= 64  # ogg/vorbis may pad a little
    assert np.abs(audio).max() <= 1.0
    spectrum = np.abs(np.fft.rfft(audio[:8000] if audio.size >= 8000 else audio))
    assert abs(np.argmax(spectrum) * 16000 / (2 * (spectrum.size - 1)) - 440) < 5


def test_48k_stereo_is_mixed_down_and_resampled(tmp_path):
    left, right = _tone(1000, 1.0, 48000), _tone(1000, 1.0, 48000) * 0.0
    path = tmp_path / "stereo48k.wav"
    sf.write(path, np.stack([left, right], axis=1), 48000, subtype="FLOAT")
    audio, rate = load_audio_with_rate(path, sample_rate=16000)
    assert rate == 16000 and audio.shape == (16000,)
    # the mean of the channels: half the left channel's amplitude
    assert np.isclose(np.abs(audio[1000:-1000]).max(), 0.25, atol=0.01)
    both = load_audio(path, sample_rate=None, mono=False)
    assert both.shape == (48000, 2)


def test_float_file_beyond_full_scale_is_clipped(tmp_path):
    path = tmp_path / "loud.wav"
    sf.write(path, np.full(1600, 3.0, np.float32), 16000, subtype="FLOAT")
    assert load_audio(path).max() == 1.0


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: None, "no such audio file"),
        (lambda p: p.write_bytes(b""), "file is empty"),
        (lambda p: p.write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt garbage" * 3), "cannot read audio"),
        (lambda p: sf.write(p, np.zeros(0, np.float32), 16000), "0 samples"),
        (lambda p: sf.write(p, np.array([0.1, np.nan, 0.2], np.float32), 16000, subtype="FLOAT"), "NaN or infinite"),
        (lambda p: p.mkdir(), "is a folder"),
    ],
    ids=["missing", "empty", "corrupt", "zero-samples", "nan", "folder"],
)
def test_bad_files_raise_one_line_errors_naming_the_file(tmp_path, make, message):
    path = tmp_path / "bad.wav"
    make(path)
    with pytest.raises(AudioError, match=message) as info:
        load_audio(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_too_long_is_refused(tmp_path):
    path = tmp_path / "long.wav"
    sf.write(path, np.zeros(16000 * 3, np.float32), 16000)
    with pytest.raises(AudioError, match="more than the 2 s limit"):
        load_audio(path, max_seconds=2)


def test_save_audio_is_atomic_and_readable_by_others(tmp_path):
    path = tmp_path / "out.wav"
    save_audio(path, _tone(300, 0.1, 16000), 16000)
    assert [p.name for p in tmp_path.iterdir()] == ["out.wav"]  # no temporary left behind
    assert os.stat(path).st_mode & 0o044  # group/other can read, like a plain open()
