"""Video files (mp4) with PyAV: read grayscale frames and the audio track, write them back.

Shapes: T video frames, H x W pixels (uint8 gray), S audio samples (float32 mono in [-1, 1]).

PyAV (the optional ``video`` extra, ``pip install av``) bundles its own ffmpeg, so nothing is
installed system-wide. :func:`write_video` encodes H.264 (libx264, ``crf`` quality, yuv420p;
the gray image is the luma plane) and 16-bit PCM audio in an mp4 container; :func:`read_video`
decodes any container/codec that ffmpeg reads. Audio and video share one clock: frame ``t``
covers ``[t / fps, (t + 1) / fps)`` seconds of the audio.

Errors are one line (:class:`speechkit.errors.AudioError`): a missing file, a file ffmpeg cannot
read, no video stream or no decodable frame.

Example:
    >>> import numpy as np, tempfile, os
    >>> frames = np.tile(np.arange(32, dtype=np.uint8)[None, None, :] * 8, (10, 32, 1))
    >>> audio = np.sin(np.arange(6400) / 10).astype(np.float32) * 0.5
    >>> path = os.path.join(tempfile.mkdtemp(), "clip.mp4")
    >>> write_video(path, frames, 25.0, audio, 16000)
    >>> clip = read_video(path)
    >>> clip.frames.shape, clip.fps, clip.sample_rate, clip.audio.shape
    ((10, 32, 32), 25.0, 16000, (6400,))
    >>> int(np.abs(clip.frames.astype(int) - frames).max()) < 8
    True
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from speechkit.errors import AudioError, SpeechkitError
from speechkit.fileio import atomic_path

_INSTALL_HINT = "install the video extra: pip install 'speechkit[video]' (PyAV)"


@dataclass
class VideoClip:
    """A decoded video file.

    Attributes:
        frames: uint8 (T, H, W) grayscale frames.
        fps: frames per second (float).
        audio: float32 (S,) mono audio in [-1, 1]; empty if the file has no audio track.
        sample_rate: audio rate (Hz); 0 without audio.
    """

    frames: np.ndarray
    fps: float
    audio: np.ndarray
    sample_rate: int


def _av():
    try:
        import av
    except ImportError:  # pragma: no cover - the extra is in dev
        raise SpeechkitError(f"reading or writing video needs PyAV; {_INSTALL_HINT}") from None
    return av


def read_video(path: str | os.PathLike, with_audio: bool = True) -> VideoClip:
    """Decode ``path``: grayscale frames, frame rate and the (mono-mixed) audio track.

    Raises:
        AudioError: missing file, unreadable container, no video stream or no frame.
    """
    av = _av()
    path = Path(path)
    if not path.is_file():
        raise AudioError(f"{path}: no such video file")
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise AudioError(f"{path}: the file has no video stream")
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate or Fraction(25)
            frames = [f.to_ndarray(format="gray") for f in container.decode(stream)]
    except AudioError:
        raise
    except Exception as exc:  # av.error.* and decoder errors
        raise AudioError(f"{path}: cannot decode the video ({_short(exc)})") from None
    if not frames:
        raise AudioError(f"{path}: the video has no frames")
    audio, sample_rate = (read_audio_track(path) if with_audio else (np.zeros(0, np.float32), 0))
    return VideoClip(np.stack(frames).astype(np.uint8), float(rate), audio, sample_rate)


def read_audio_track(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """The first audio stream of ``path`` as float32 mono (S,) and its rate; ``(empty, 0)`` if none."""
    av = _av()
    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                return np.zeros(0, np.float32), 0
            stream = container.streams.audio[0]
            rate = int(stream.rate or stream.sample_rate)
            resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
            chunks = []
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray().reshape(-1))
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray().reshape(-1))
    except Exception as exc:
        raise AudioError(f"{path}: cannot decode the audio track ({_short(exc)})") from None
    audio = np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)
    return audio, rate


def write_video(
    path: str | os.PathLike,
    frames: np.ndarray,
    fps: float,
    audio: np.ndarray | None = None,
    sample_rate: int = 16000,
    crf: int = 18,
) -> None:
    """Write uint8 gray frames (T, H, W) (H, W even) and optional mono audio (S,) as an mp4, atomically.

    Raises:
        SpeechkitError: no frames, wrong dtype/shape, or odd frame sizes (yuv420p needs even).
    """
    av = _av()
    frames = np.asarray(frames)
    if frames.ndim != 3 or frames.shape[0] == 0 or frames.dtype != np.uint8:
        raise SpeechkitError(f"write_video needs uint8 frames (T, H, W) with T > 0, got {frames.dtype} {frames.shape}")
    height, width = frames.shape[1:]
    if height % 2 or width % 2:
        raise SpeechkitError(f"frame size {height}x{width}: H.264 (yuv420p) needs even sizes")
    rate = Fraction(fps).limit_denominator(1001)
    with atomic_path(path, suffix=".mp4") as tmp:
        with av.open(str(tmp), mode="w", format="mp4") as container:
            video = container.add_stream("libx264", rate=rate)
            video.width, video.height, video.pix_fmt = width, height, "yuv420p"
            video.options = {"crf": str(crf), "preset": "veryfast", "tune": "zerolatency"}
            astream = None
            if audio is not None and len(audio):
                astream = container.add_stream("pcm_s16le", rate=int(sample_rate), layout="mono")
            for image in frames:
                frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="gray")
                container.mux(video.encode(frame.reformat(format="yuv420p")))
            container.mux(video.encode(None))
            if astream is not None:
                pcm = (np.clip(np.asarray(audio, np.float32), -1.0, 1.0) * 32767.0).astype(np.int16)
                block = 4096
                for start in range(0, len(pcm), block):
                    chunk = pcm[start : start + block][None, :]
                    aframe = av.AudioFrame.from_ndarray(chunk, format="s16", layout="mono")
                    aframe.sample_rate = int(sample_rate)
                    aframe.pts = start
                    aframe.time_base = Fraction(1, int(sample_rate))
                    container.mux(astream.encode(aframe))
                container.mux(astream.encode(None))


def _short(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:160] if text else type(exc).__name__

