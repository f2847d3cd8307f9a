"""Log-mel and MFCC front-ends, and the helpers that all feature front-ends share.

:class:`LogMel` is the BC-ResNet front-end (Kim et al. 2021, https://arxiv.org/abs/2106.04140):
``torchaudio.transforms.MelSpectrogram`` with its defaults (periodic Hann window, HTK mel
scale, no filter normalisation, power 2) followed by ``log(mel + 1e-6)``. :class:`MFCC` is
the orthonormal DCT-II of that log-mel, i.e. ``torchaudio.transforms.MFCC(log_mels=True)``.
Both are pure torch (librosa only builds the mel matrix once, in ``__init__``) and export to
ONNX with ``torch.onnx.export(..., dynamo=True)``; torchaudio is never imported.

Feature front-end contract (also :class:`speechkit.frontends.Fbank`)::

    forward(audio (B, S) float32, audio_lens (B,) int64 | None) -> (feats (B, T, F), feat_lens (B,))

Features are time-major (frames, bins) as in Kaldi/icefall. ``feat_lens = num_frames(audio_lens)``;
frames at or beyond ``feat_lens`` hold the features of digital silence, so a padded batch
gives, on each item's valid frames, the same features as running the item alone.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn


def full_lengths(audio: Tensor, audio_lens: Tensor | None) -> Tensor:
    """Lengths of a batch, ``audio.shape[1]`` for every item when ``audio_lens`` is None.

    Args:
        audio: (B, S) samples.
        audio_lens: (B,) int64 valid samples per item, or None.

    Returns:
        (B,) int64.
    """
    if audio_lens is not None:
        return audio_lens.to(torch.int64)
    return torch.full((audio.shape[0],), audio.shape[1], dtype=torch.int64, device=audio.device)


def mask_after(x: Tensor, lens: Tensor, value: float) -> Tensor:
    """Set positions at or beyond each item's length along dim 1 to ``value``.

    Args:
        x: (B, N) or (B, N, ...) tensor.
        lens: (B,) int64 valid positions per item.
        value: fill value.

    Returns:
        Tensor shaped like ``x``.
    """
    valid = torch.arange(x.shape[1], device=x.device)[None, :] < lens[:, None]  # (B, N)
    valid = valid.reshape(valid.shape + (1,) * (x.dim() - 2))
    return torch.where(valid, x, torch.full_like(x, value))


def frames_after_padding(num_samples: Tensor | int, frame_length: int, hop_length: int):
    """Number of whole frames, ``max(0, 1 + (num_samples - frame_length) // hop_length)``.

    Written as ``max(0, num_samples - frame_length + hop_length) // hop_length``, which is the
    same number but never divides a negative value: floor and truncating integer division (the
    latter is ONNX's) then agree.

    Args:
        num_samples: samples available to frame, an int or an int64 tensor (B,).
        frame_length: samples per frame.
        hop_length: samples between frame starts.

    Returns:
        Frames, of the type of ``num_samples``.
    """
    if isinstance(num_samples, Tensor):
        return torch.clamp(num_samples - frame_length + hop_length, min=0) // hop_length
    return max(0, num_samples - frame_length + hop_length) // hop_length


def hann_window(win_length: int, n_fft: int) -> Tensor:
    """Periodic Hann window of ``win_length`` zero-padded on both sides to ``n_fft``.

    This is the window ``torch.stft`` (and torchaudio) use when ``win_length < n_fft``.

    Returns:
        (n_fft,) float32.
    """
    window = torch.hann_window(win_length, periodic=True, dtype=torch.float32)
    left = (n_fft - win_length) // 2
    return nn.functional.pad(window, (left, n_fft - win_length - left))


def power_spectrogram(
    audio: Tensor, window: Tensor, hop_length: int, power: float, center: bool
) -> Tensor:
    """``|STFT|^power`` of zero-padded audio, time-major.

    Args:
        audio: (B, S) samples, already zero beyond each item's length.
        window: (n_fft,) analysis window; ``n_fft = window.shape[0]``.
        hop_length: samples between frames.
        power: exponent of the magnitude (2.0: power, 1.0: magnitude).
        center: pad ``n_fft // 2`` zeros on both sides so frame ``t`` is centred on sample
            ``t * hop_length``; otherwise frame ``t`` starts there.

    Returns:
        (B, T, n_fft // 2 + 1) with ``T = 1 + S // hop_length`` (center) or
        ``max(0, 1 + (S - n_fft) // hop_length)``.
    """
    n_fft = window.shape[0]
    num_samples = audio.shape[1]
    if center:
        # Zero padding, not torchaudio's reflect: see LogMel's docstring for why.
        audio = nn.functional.pad(audio, (n_fft // 2, n_fft // 2))
        num_frames = None
    else:
        # Pad n_fft zeros on the right so torch.stft always has a frame (it rejects inputs
        # shorter than n_fft), then keep only the frames that lie inside the audio.
        audio = nn.functional.pad(audio, (0, n_fft))
        num_frames = frames_after_padding(num_samples, n_fft, hop_length)
    spec = torch.stft(
        audio, n_fft, hop_length, win_length=n_fft, window=window, center=False,
        return_complex=True,
    )  # (B, n_fft // 2 + 1, T')
    spec = torch.view_as_real(spec).transpose(1, 2)  # (B, T', bins, 2)
    power_spec = spec.pow(2).sum(-1)  # |X|^2
    if power != 2.0:
        power_spec = power_spec.pow(power / 2.0)
    if num_frames is not None:
        power_spec = power_spec[:, :num_frames]
    return power_spec


def htk_mel_filterbank(
    sample_rate: int, n_fft: int, n_mels: int, f_min: float, f_max: float
) -> Tensor:
    """Triangular HTK-mel filters without normalisation (torchaudio ``melscale_fbanks`` defaults).

    Returns:
        (n_fft // 2 + 1, n_mels) float32; ``power_spec @ fb`` gives mel energies.
    """
    import librosa  # only here: the matrix is computed once and stored as a buffer

    fb = librosa.filters.mel(
        sr=sample_rate, n_fft=n_fft, n_mels=n_mels, fmin=f_min, fmax=f_max, htk=True, norm=None
    )  # (n_mels, n_fft // 2 + 1)
    return torch.from_numpy(fb.T.copy()).to(torch.float32)


def htk_mel_centers_hz(n_mels: int, f_min: float, f_max: float) -> list[float]:
    """Centre frequencies in Hz of the filters of :func:`htk_mel_filterbank`, low to high."""

    def hz_to_mel(f: float) -> float:
        return 2595.0 * math.log10(1.0 + f / 700.0)

    lo, hi = hz_to_mel(f_min), hz_to_mel(f_max)
    step = (hi - lo) / (n_mels + 1)
    return [700.0 * (10.0 ** ((lo + (i + 1) * step) / 2595.0) - 1.0) for i in range(n_mels)]


def dct_matrix(n_mfcc: int, n_mels: int) -> Tensor:
    """Orthonormal DCT-II basis (torchaudio ``create_dct(n_mfcc, n_mels, "ortho")``).

    Returns:
        (n_mels, n_mfcc) float32; ``log_mel @ dct`` gives the first ``n_mfcc`` coefficients.
    """
    n = torch.arange(n_mels, dtype=torch.float64)
    k = torch.arange(n_mfcc, dtype=torch.float64)
    dct = torch.cos(math.pi / n_mels * (n[:, None] + 0.5) * k[None, :])
    dct[:, 0] *= 1.0 / math.sqrt(2.0)
    return (dct * math.sqrt(2.0 / n_mels)).to(torch.float32)


class LogMel(nn.Module):
    """Log mel spectrogram: ``log(mel_power + log_floor)``, time-major.

    Matches ``torchaudio.transforms.MelSpectrogram(sample_rate, n_fft, win_length, hop_length,
    f_min, f_max, n_mels=n_mels, power=power)`` followed by ``log(x + 1e-6)`` (the BC-ResNet
    front-end), with one deliberate deviation: with ``center=True`` the signal is padded with
    ``n_fft // 2`` **zeros** on each side, where torchaudio reflects. Zero padding makes a
    padded batch equal to per-item runs (reflection at the end would depend on the item's
    length) and keeps streaming simple (the left context of the first chunk is silence).
    Only the first and last frame or two differ from torchaudio.

    Frames: ``T = 1 + S // hop_length`` with ``center=True`` (16000 samples -> 101 frames for
    the BC-ResNet preset), else ``max(0, 1 + (S - n_fft) // hop_length)``.

    Args:
        sample_rate: Hz.
        n_fft: FFT size in samples (even).
        win_length: Hann window length in samples (<= n_fft, centred in the FFT frame).
        hop_length: samples between frames.
        n_mels: mel bands (F).
        f_min: lowest filter edge in Hz.
        f_max: highest filter edge in Hz; None means ``sample_rate / 2``.
        log_floor: added before the log; digital silence gives ``log(log_floor)``.
        center: pad so that frame ``t`` is centred on sample ``t * hop_length``.
        power: exponent of the STFT magnitude (2.0: power spectrum).

    Example:
        >>> fe = LogMel.bcresnet()
        >>> feats, feat_lens = fe(torch.randn(2, 16000), torch.tensor([16000, 8000]))
        >>> tuple(feats.shape), feat_lens.tolist()
        ((2, 101, 40), [101, 51])
    """

    def __init__(
        self,
        sample_rate: int = 16000,
        n_fft: int = 512,
        win_length: int = 480,
        hop_length: int = 160,
        n_mels: int = 40,
        f_min: float = 0.0,
        f_max: float | None = None,
        log_floor: float = 1e-6,
        center: bool = True,
        power: float = 2.0,
    ) -> None:
        super().__init__()
        if n_fft % 2 or not 0 < win_length <= n_fft or hop_length <= 0:
            raise ValueError(
                f"LogMel needs an even n_fft >= win_length > 0 and hop_length > 0, got "
                f"n_fft={n_fft}, win_length={win_length}, hop_length={hop_length}"
            )
        if log_floor <= 0 or power <= 0:
            raise ValueError(f"log_floor and power must be > 0, got {log_floor}, {power}")
        top_hz = sample_rate / 2 if f_max is None else f_max
        if not 0 <= f_min < top_hz <= sample_rate / 2:
            raise ValueError(
                f"need 0 <= f_min < f_max <= sample_rate / 2, got f_min={f_min}, f_max={top_hz}"
            )
        self._config = dict(
            sample_rate=int(sample_rate), n_fft=int(n_fft), win_length=int(win_length),
            hop_length=int(hop_length), n_mels=int(n_mels), f_min=float(f_min),
            f_max=None if f_max is None else float(f_max), log_floor=float(log_floor),
            center=bool(center), power=float(power),
        )
        self.hop_length = hop_length
        self.n_fft = n_fft
        self.center = center
        self.power = power
        self.log_floor = log_floor
        self.feature_dim = n_mels
        # Non-persistent: derived from the config, so checkpoints stay free of them.
        self.register_buffer("window", hann_window(win_length, n_fft), persistent=False)
        self.register_buffer(
            "mel_fb", htk_mel_filterbank(sample_rate, n_fft, n_mels, f_min, top_hz),
            persistent=False,
        )

    @classmethod
    def bcresnet(cls, sample_rate: int = 16000) -> LogMel:
        """The BC-ResNet preset: 30 ms Hann window in a 512-point FFT, 10 ms hop, 40 mels."""
        return cls(sample_rate=sample_rate, n_fft=512, win_length=480, hop_length=160, n_mels=40)

    def config(self) -> dict[str, Any]:
        """Constructor arguments (JSON-serialisable): ``LogMel(**fe.config())`` rebuilds it."""
        return dict(self._config)

    def num_frames(self, num_samples: int) -> int:
        """Frames for ``num_samples`` samples (the formula in the class docstring)."""
        if num_samples < 0:
            raise ValueError(f"num_samples must be >= 0, got {num_samples}")
        return self._num_frames(num_samples)

    def _num_frames(self, num_samples):
        if self.center:
            return 1 + num_samples // self.hop_length
        return frames_after_padding(num_samples, self.n_fft, self.hop_length)

    def forward(self, audio: Tensor, audio_lens: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Compute log-mel features.

        Args:
            audio: (B, S) float32 samples; values beyond ``audio_lens`` are ignored.
            audio_lens: (B,) int64 valid samples per item; None means all S.

        Returns:
            feats: (B, T, n_mels) log mel energies; frames at or beyond ``feat_lens`` hold
                ``log(log_floor)``.
            feat_lens: (B,) int64, ``num_frames(audio_lens)``.
        """
        if audio.dim() != 2:
            raise ValueError(f"LogMel expects audio (batch, samples), got {tuple(audio.shape)}")
        # Without lengths every item is full length: skip the masks, which would otherwise bake
        # an index constant of the clip length into exported graphs.
        padded = audio_lens is not None
        audio_lens = full_lengths(audio, audio_lens)
        audio = audio.to(self.mel_fb.dtype)
        if padded:
            audio = mask_after(audio, audio_lens, 0.0)
        spec = power_spectrogram(audio, self.window, self.hop_length, self.power, self.center)
        feats = torch.log(torch.matmul(spec, self.mel_fb) + self.log_floor)  # (B, T, n_mels)
        feat_lens = self._num_frames(audio_lens)
        if padded:
            feats = mask_after(feats, feat_lens, math.log(self.log_floor))
        return feats, feat_lens


class MFCC(nn.Module):
    """MFCCs: orthonormal DCT-II of :class:`LogMel` features, time-major.

    Equals ``torchaudio.transforms.MFCC(n_mfcc, log_mels=True, melkwargs=...)`` up to LogMel's
    zero (not reflect) centre padding. Frames and lengths are those of the inner LogMel.

    Args:
        sample_rate, n_fft, win_length, hop_length, n_mels, f_min, f_max, log_floor, center,
            power: passed to :class:`LogMel`.
        n_mfcc: coefficients kept (F), <= n_mels.

    Example:
        >>> fe = MFCC(n_mfcc=13)
        >>> feats, feat_lens = fe(torch.randn(1, 4000))
        >>> tuple(feats.shape), feat_lens.tolist()
        ((1, 26, 13), [26])
    """

    def __init__(
        self,
        sample_rate: int = 16000,
        n_mfcc: int = 40,
        n_fft: int = 512,
        win_length: int = 480,
        hop_length: int = 160,
        n_mels: int = 40,
        f_min: float = 0.0,
        f_max: float | None = None,
        log_floor: float = 1e-6,
        center: bool = True,
        power: float = 2.0,
    ) -> None:
        super().__init__()
        if not 0 < n_mfcc <= n_mels:
            raise ValueError(f"need 0 < n_mfcc <= n_mels, got n_mfcc={n_mfcc}, n_mels={n_mels}")
        self.logmel = LogMel(
            sample_rate=sample_rate, n_fft=n_fft, win_length=win_length, hop_length=hop_length,
            n_mels=n_mels, f_min=f_min, f_max=f_max, log_floor=log_floor, center=center,
            power=power,
        )
        self.feature_dim = n_mfcc
        self.register_buffer("dct", dct_matrix(n_mfcc, n_mels), persistent=False)

    def config(self) -> dict[str, Any]:
        """Constructor arguments (JSON-serialisable): ``MFCC(**fe.config())`` rebuilds it."""
        return {"n_mfcc": self.feature_dim, **self.logmel.config()}

    def num_frames(self, num_samples: int) -> int:
        """Frames for ``num_samples`` samples (see :class:`LogMel`)."""
        return self.logmel.num_frames(num_samples)

    def forward(self, audio: Tensor, audio_lens: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Compute MFCCs.

        Args:
            audio: (B, S) float32 samples.
            audio_lens: (B,) int64 valid samples per item; None means all S.

        Returns:
            feats: (B, T, n_mfcc); frames at or beyond ``feat_lens`` hold the MFCCs of silence.
            feat_lens: (B,) int64.
        """
        log_mel, feat_lens = self.logmel(audio, audio_lens)
        return torch.matmul(log_mel, self.dct), feat_lens
