"""Microphone input through sounddevice (PortAudio), at the device's own rate (no torch).

The stream is opened at the input device's default sample rate with one or two channels, as
the device offers; :class:`speechkit.runtime.kws.KeywordDetector` mixes and resamples. Every
way this can fail on a user's machine -- sounddevice not installed, PortAudio missing, no input
device -- is a one-line :class:`~speechkit.errors.SpeechkitError` that says what to install.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np

from speechkit.errors import SpeechkitError

INSTALL_SOUNDDEVICE = "pip install 'speechkit[demo]' (or: pip install sounddevice)"
INSTALL_PORTAUDIO = "sudo apt-get install libportaudio2 (Debian/Ubuntu), brew install portaudio (macOS)"


def import_sounddevice():
    """Import sounddevice or raise a SpeechkitError that says what to install."""
    try:
        import sounddevice
    except ModuleNotFoundError:
        raise SpeechkitError(f"microphone input needs the sounddevice package: {INSTALL_SOUNDDEVICE}") from None
    except OSError as exc:  # sounddevice raises OSError("PortAudio library not found")
        raise SpeechkitError(f"microphone input needs the PortAudio library ({exc}): {INSTALL_PORTAUDIO}") from None
    return sounddevice


def input_device(sd, device: int | str | None = None) -> dict:
    """The input device's description (``name``, ``max_input_channels``, ``default_samplerate``).

    Raises:
        SpeechkitError: no such device or no input device at all.
    """
    try:
        info = sd.query_devices(device, kind="input")
    except Exception as exc:  # ValueError / sd.PortAudioError: no default input device
        raise SpeechkitError(
            f"no usable microphone ({str(exc).strip() or type(exc).__name__}); list devices with "
            "`python -m sounddevice` and pick one with --device"
        ) from None
    if int(info.get("max_input_channels", 0)) < 1:
        raise SpeechkitError(f"device {info.get('name', device)!r} has no input channels; pick another with --device")
    return info


def iter_microphone(
    device: int | str | None = None, block_seconds: float = 0.1, channels: int | None = None
) -> Iterator[tuple[np.ndarray, int]]:
    """Blocks from the microphone until the caller stops iterating (e.g. Ctrl-C).

    Args:
        device: sounddevice device index or name substring; ``None``: the default input.
        block_seconds: block length.
        channels: 1 or 2; ``None``: stereo if the device has it, else mono.

    Yields:
        ``(block (n, channels) float32 in [-1, 1], device sample rate)``.

    Raises:
        SpeechkitError: sounddevice/PortAudio missing, no input device, or the stream fails.
    """
    sd = import_sounddevice()
    info = input_device(sd, device)
    rate = int(info["default_samplerate"])
    channels = channels or min(2, int(info["max_input_channels"]))
    block = max(1, int(round(block_seconds * rate)))
    try:
        stream = sd.InputStream(device=device, samplerate=rate, channels=channels, dtype="float32", blocksize=block)
    except Exception as exc:
        raise SpeechkitError(f"cannot open microphone {info.get('name', device)!r} at {rate} Hz, {channels} ch ({exc})") from None
    with stream:
        while True:
            data, _overflowed = stream.read(block)
            yield np.array(data, dtype=np.float32, copy=True), rate
