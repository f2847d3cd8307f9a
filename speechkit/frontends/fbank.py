"""Kaldi-compatible log mel filter-bank features in pure torch.

Matches ``compute-fbank-feats`` of Kaldi (``feature-fbank.cc``, ``feature-window.cc``,
``mel-computations.cc``) as implemented by kaldi-native-fbank (``knf.OnlineFbank``), the
library the streaming runtime and phone apps use: with the options of
:meth:`Fbank.kaldi_options`, knf fed the same float samples gives the same log energies
(max abs difference ~1e-4, float32 rounding; tested). Training on these features and running
knf on the phone therefore agree.

Scale: samples go in as given, with no int16 scaling, exactly as they go into knf. speechkit
feeds audio in [-1, 1] on both sides, as sherpa-onnx does with knf and lhotse/icefall do.

Per frame (Kaldi ``ProcessWindow``): [dither] -> remove DC offset -> pre-emphasis
(``x[i] -= c * x[i-1]``, ``x[0] -= c * x[0]``) -> window -> zero-pad to a power of two ->
power spectrum -> triangular filters on Kaldi's mel scale ``1127 ln(1 + f / 700)`` ->
``log(max(energy, float32 eps))``.

:func:`knf_options_from_dict` (defined in the torch-free :mod:`speechkit.frontends.kaldi_options`,
re-exported here) turns :meth:`Fbank.kaldi_options` into ``knf.FbankOptions``.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from speechkit.frontends.kaldi_options import (  # knf_options_from_dict: re-exported
    KALDI_WINDOW_TYPES,
    fbank_options_dict,
    knf_options_from_dict,
)
from speechkit.frontends.spectral import frames_after_padding, full_lengths, mask_after

__all__ = ["Fbank", "kaldi_mel", "kaldi_mel_banks", "kaldi_window", "knf_options_from_dict"]

# Kaldi's log floor (std::numeric_limits<float>::epsilon()); silence gives log(EPS) = -15.94.
FLOAT32_EPS = 1.1920928955078125e-07
# Kaldi's default; only the "blackman" window uses it, and this module does not expose it.
BLACKMAN_COEFF = 0.42


def kaldi_mel(freq_hz: Tensor) -> Tensor:
    """Kaldi's mel scale, ``1127 ln(1 + f / 700)`` (``MelBanks::MelScale``)."""
    return 1127.0 * torch.log1p(freq_hz / 700.0)


def kaldi_mel_banks(
    num_bins: int, padded_window: int, sample_rate: float, low_freq: float, high_freq: float,
    allow_empty: bool = False,
) -> Tensor:
    """Kaldi's triangular mel filters (``MelBanks``, no VTLN), applied to a power spectrum.

    Filters are equally spaced in mel between ``low_freq`` and ``high_freq`` and triangular in
    the mel domain. As in Kaldi, the Nyquist bin gets no weight.

    Args:
        num_bins: number of filters.
        padded_window: FFT size in samples.
        sample_rate: Hz.
        low_freq: lower edge in Hz.
        high_freq: upper edge in Hz; <= 0 means ``sample_rate / 2 + high_freq``.
        allow_empty: keep filters with no FFT bin (all-zero; torchaudio's ``kaldi.fbank``
            allows them, e.g. AST's 128 bins on a 512-point FFT) instead of raising.

    Returns:
        (padded_window // 2 + 1, num_bins) float64.

    Raises:
        ValueError: edges out of order or a filter with no FFT bin (too many bins).
    """
    nyquist = 0.5 * sample_rate
    top = high_freq if high_freq > 0 else nyquist + high_freq
    if num_bins < 3 or not 0.0 <= low_freq < top <= nyquist:
        raise ValueError(
            f"Kaldi mel banks need num_mel_bins >= 3 and 0 <= low_freq < high_freq <= "
            f"{nyquist} Hz, got num_mel_bins={num_bins}, low_freq={low_freq}, "
            f"high_freq={high_freq} (effective {top})"
        )
    lo, hi = kaldi_mel(torch.tensor(low_freq, dtype=torch.float64)), kaldi_mel(
        torch.tensor(top, dtype=torch.float64)
    )
    step = (hi - lo) / (num_bins + 1)
    left = lo + step * torch.arange(num_bins, dtype=torch.float64)  # (num_bins,)
    center, right = left + step, left + 2 * step
    num_fft_bins = padded_window // 2  # Kaldi leaves out the Nyquist bin
    fft_hz = torch.arange(num_fft_bins, dtype=torch.float64) * sample_rate / padded_window
    fft_mel = kaldi_mel(fft_hz)[:, None]  # (num_fft_bins, 1)
    rising = (fft_mel - left) / (center - left)
    falling = (right - fft_mel) / (right - center)
    inside = (fft_mel > left) & (fft_mel < right)
    weights = torch.where(inside, torch.where(fft_mel <= center, rising, falling), 0.0)
    if not allow_empty and bool((weights.sum(0) == 0).any()):
        raise ValueError(
            f"a mel filter has no FFT bin: num_mel_bins={num_bins} is too large for a "
            f"{padded_window}-point FFT between {low_freq} and {top} Hz"
        )
    return nn.functional.pad(weights, (0, 0, 0, 1))  # zero row for the Nyquist bin


def kaldi_window(window_type: str, length: int) -> Tensor:
    """Kaldi's analysis window (``FeatureWindowFunction``); "povey" is Hann to the 0.85.

    Returns:
        (length,) float64.
    """
    a = 2 * math.pi / (length - 1)
    i = torch.arange(length, dtype=torch.float64)
    if window_type == "hanning":
        return 0.5 - 0.5 * torch.cos(a * i)
    if window_type == "sine":
        return torch.sin(0.5 * a * i)
    if window_type == "hamming":
        return 0.54 - 0.46 * torch.cos(a * i)
    if window_type == "povey":  # like Hann but goes to zero at the edges
        return (0.5 - 0.5 * torch.cos(a * i)).pow(0.85)
    if window_type == "rectangular":
        return torch.ones(length, dtype=torch.float64)
    if window_type == "blackman":
        return (
            BLACKMAN_COEFF - 0.5 * torch.cos(a * i)
            + (0.5 - BLACKMAN_COEFF) * torch.cos(2 * a * i)
        )
    raise ValueError(f"window_type must be one of {KALDI_WINDOW_TYPES}, got {window_type!r}")


class Fbank(nn.Module):
    """Kaldi-compatible log mel filter-bank features (kaldi-native-fbank's ``OnlineFbank``).

    Argument names and defaults are Kaldi's (``--num-mel-bins`` etc.), except ``dither``
    (0, deterministic). Log energies of the power spectrum, no energy coefficient
    (``use_energy=False``, ``use_log_fbank=True``, ``use_power=True``).

    Frames (win = ``int(sample_rate * frame_length_ms / 1000)`` samples,
    shift = ``int(sample_rate * frame_shift_ms / 1000)``):

    * ``snip_edges=True``: ``T = 1 + (S - win) // shift`` if ``S >= win`` else 0; frame ``t``
      covers samples ``[t * shift, t * shift + win)``.
    * ``snip_edges=False``: ``T = (S + shift // 2) // shift``; frame ``t`` is centred on
      ``t * shift + shift // 2`` and samples outside ``[0, S)`` are mirrored into it, as Kaldi
      does (``s < 0 -> -s - 1``, ``s >= S -> 2S - 1 - s``, repeated).

    Args:
        sample_rate: Hz (``frame_opts.samp_freq``).
        num_mel_bins: filters (F) (``mel_opts.num_bins``).
        frame_length_ms: window length in ms.
        frame_shift_ms: hop in ms.
        preemph_coeff: pre-emphasis coefficient (0 disables).
        remove_dc_offset: subtract each frame's mean before pre-emphasis.
        window_type: one of "povey", "hanning", "hamming", "sine", "rectangular", "blackman".
        snip_edges: only whole frames inside the signal (True) or Kaldi's mirrored edges.
        dither: std of Gaussian noise added to each frame's samples, **in training mode
            only** (Kaldi dithers always). Eval and exported graphs are deterministic, and
            :meth:`kaldi_options` reports ``dither=0`` for the runtime.
        low_freq: lower edge of the first filter in Hz.
        high_freq: upper edge of the last filter in Hz; <= 0 means ``nyquist + high_freq``.
        energy_floor: Kaldi's floor on the energy coefficient; recorded in
            :meth:`kaldi_options` but without effect here, as no energy is computed.
        round_to_power_of_two: zero-pad each frame to the next power of two for the FFT.

    Example:
        >>> fe = Fbank(num_mel_bins=80)
        >>> feats, feat_lens = fe(0.1 * torch.randn(2, 16000), torch.tensor([16000, 399]))
        >>> tuple(feats.shape), feat_lens.tolist()
        ((2, 98, 80), [98, 0])
    """

    #: Keep mel filters that cover no FFT bin (see :func:`kaldi_mel_banks`); :class:`AstFbank` does.
    allow_empty_filters = False

    def __init__(
        self,
        sample_rate: int = 16000,
        num_mel_bins: int = 80,
        frame_length_ms: float = 25.0,
        frame_shift_ms: float = 10.0,
        preemph_coeff: float = 0.97,
        remove_dc_offset: bool = True,
        window_type: str = "povey",
        snip_edges: bool = True,
        dither: float = 0.0,
        low_freq: float = 20.0,
        high_freq: float = 0.0,
        energy_floor: float = 0.0,
        round_to_power_of_two: bool = True,
    ) -> None:
        super().__init__()
        self._config = dict(
            sample_rate=int(sample_rate), num_mel_bins=int(num_mel_bins),
            frame_length_ms=float(frame_length_ms), frame_shift_ms=float(frame_shift_ms),
            preemph_coeff=float(preemph_coeff), remove_dc_offset=bool(remove_dc_offset),
            window_type=str(window_type), snip_edges=bool(snip_edges), dither=float(dither),
            low_freq=float(low_freq), high_freq=float(high_freq),
            energy_floor=float(energy_floor), round_to_power_of_two=bool(round_to_power_of_two),
        )
        # Same arithmetic as Kaldi's FrameExtractionOptions::WindowSize()/WindowShift().
        self.win_length = int(sample_rate * 0.001 * frame_length_ms)
        self.hop_length = int(sample_rate * 0.001 * frame_shift_ms)
        if self.win_length < 2 or self.hop_length < 1:
            raise ValueError(
                f"frame_length_ms={frame_length_ms} and frame_shift_ms={frame_shift_ms} give "
                f"{self.win_length}-sample windows every {self.hop_length} samples at "
                f"{sample_rate} Hz; need at least 2 and 1"
            )
        self.fft_length = (
            1 << (self.win_length - 1).bit_length() if round_to_power_of_two else self.win_length
        )
        self.snip_edges = snip_edges
        self.preemph_coeff = preemph_coeff
        self.remove_dc_offset = remove_dc_offset
        self.dither = dither
        self.feature_dim = num_mel_bins
        # float32 buffers: float32 arithmetic already matches knf (itself float32) to ~1e-4.
        self.register_buffer(
            "window", kaldi_window(window_type, self.win_length).float(), persistent=False
        )
        banks = kaldi_mel_banks(num_mel_bins, self.fft_length, sample_rate, low_freq, high_freq,
                                allow_empty=self.allow_empty_filters)
        self.register_buffer("mel_banks", banks.float(), persistent=False)

    def config(self) -> dict[str, Any]:
        """Constructor arguments (JSON-serialisable): ``Fbank(**fe.config())`` rebuilds it."""
        return dict(self._config)

    def kaldi_options(self) -> dict[str, Any]:
        """The equivalent kaldi-native-fbank options, as JSON-serialisable nested dicts.

        Layout of ``knf.FbankOptions.as_dict()``; build the knf object with
        :func:`speechkit.frontends.kaldi_options.knf_options_from_dict`. ``dither`` is 0: the
        features a trained model expects are undithered (dither is a training augmentation
        here, see the class docstring).
        """
        options = {k: v for k, v in self._config.items() if k != "dither"}
        return fbank_options_dict(dither=0.0, blackman_coeff=BLACKMAN_COEFF, **options)

    def num_frames(self, num_samples: int) -> int:
        """Frames for ``num_samples`` samples (the formulas in the class docstring)."""
        if num_samples < 0:
            raise ValueError(f"num_samples must be >= 0, got {num_samples}")
        return self._num_frames(num_samples)

    def _num_frames(self, num_samples):
        if self.snip_edges:
            return frames_after_padding(num_samples, self.win_length, self.hop_length)
        return (num_samples + self.hop_length // 2) // self.hop_length

    def _frames(self, audio: Tensor, audio_lens: Tensor) -> Tensor:
        """Cut (B, S) audio into (B, T, win) frames (Kaldi ``ExtractWindow``)."""
        num_frames = self._num_frames(audio.shape[1])
        starts = torch.arange(num_frames, device=audio.device) * self.hop_length
        offsets = torch.arange(self.win_length, device=audio.device)
        if self.snip_edges:
            return audio[:, starts[:, None] + offsets[None, :]]  # indices < S by construction
        # Centred frames; mirror indices outside [0, len) per item. Iterated reflection about
        # -0.5 and len - 0.5 is periodic with period 2 * len, hence remainder + one fold.
        index = starts[:, None] + (self.hop_length // 2 - self.win_length // 2) + offsets
        lens = torch.clamp(audio_lens, min=1)[:, None, None]  # (B, 1, 1); 0 would divide by 0
        folded = torch.remainder(index[None], 2 * lens)  # (B, T, win)
        index = torch.where(folded >= lens, 2 * lens - 1 - folded, folded)
        frames = torch.gather(audio, 1, index.reshape(audio.shape[0], -1))
        return frames.reshape(audio.shape[0], num_frames, self.win_length)

    def forward(self, audio: Tensor, audio_lens: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Compute log mel filter-bank energies.

        Args:
            audio: (B, S) float32 samples, in the scale the runtime gives knf ([-1, 1]).
            audio_lens: (B,) int64 valid samples per item; None means all S.

        Returns:
            feats: (B, T, num_mel_bins) natural-log energies; frames at or beyond
                ``feat_lens`` hold ``log(FLOAT32_EPS)`` (Kaldi's value for silence).
            feat_lens: (B,) int64, ``num_frames(audio_lens)``.
        """
        if audio.dim() != 2:
            raise ValueError(f"Fbank expects audio (batch, samples), got {tuple(audio.shape)}")
        audio_lens = full_lengths(audio, audio_lens)
        frames = self._frames(audio.to(self.window.dtype), audio_lens)  # (B, T, win)
        num_frames = frames.shape[1]
        if self.training and self.dither != 0.0:
            frames = frames + self.dither * torch.randn_like(frames)
        if self.remove_dc_offset:
            frames = frames - frames.mean(dim=-1, keepdim=True)
        if self.preemph_coeff != 0.0:
            c = self.preemph_coeff  # Kaldi: x[i] -= c * x[i-1] for i > 0, x[0] -= c * x[0]
            first, rest = frames[..., :1] * (1 - c), frames[..., 1:] - c * frames[..., :-1]
            frames = torch.cat([first, rest], dim=-1)
        frames = frames * self.window
        # Zero-pad to the FFT length, plus one all-zero frame: an FFT over zero frames (S < win)
        # fails in MKL, and the extra frame keeps the graph free of shape branches.
        frames = nn.functional.pad(frames, (0, self.fft_length - self.win_length, 0, 1))
        spec = torch.view_as_real(torch.fft.rfft(frames, dim=-1))[:, :num_frames]
        power = spec.pow(2).sum(-1)  # (B, T, fft_length // 2 + 1)
        feats = torch.log(torch.clamp(torch.matmul(power, self.mel_banks), min=FLOAT32_EPS))
        feat_lens = self._num_frames(audio_lens)
        return mask_after(feats, feat_lens, math.log(FLOAT32_EPS)), feat_lens


class AstFbank(Fbank):
    """Kaldi fbank with the Audio Spectrogram Transformer's normalisation (Gong et al. 2021).

    AST (and Patch-Mix CL, Bae et al. 2023) feed torchaudio's ``kaldi.fbank`` with a Hanning
    window, no dither, no energy, 25 ms / 10 ms frames, then ``(x - norm_mean) / (2 * norm_std)``
    with the AudioSet statistics (-4.2677393, 4.5689974). Frames beyond ``feat_lens`` hold the
    normalised silence floor. :meth:`kaldi_options` is :class:`Fbank`'s (a runtime computing
    features with kaldi-native-fbank applies the normalisation itself).

    Args:
        sample_rate: Hz.
        num_mel_bins: F (128 for AST).
        frame_length_ms, frame_shift_ms: window and hop.
        window_type: ``hanning`` for AST.
        norm_mean, norm_std: the dataset statistics of the log energies.

    Example:
        >>> fe = AstFbank()
        >>> feats, feat_lens = fe(0.1 * torch.randn(1, 128000))
        >>> tuple(feats.shape), feat_lens.tolist()
        ((1, 798, 128), [798])
    """

    allow_empty_filters = True

    def __init__(
        self,
        sample_rate: int = 16000,
        num_mel_bins: int = 128,
        frame_length_ms: float = 25.0,
        frame_shift_ms: float = 10.0,
        window_type: str = "hanning",
        norm_mean: float = -4.2677393,
        norm_std: float = 4.5689974,
    ) -> None:
        # torchaudio's kaldi.fbank leaves AST's lowest filters empty (log floor), so must we.
        super().__init__(sample_rate=sample_rate, num_mel_bins=num_mel_bins, frame_length_ms=frame_length_ms,
                         frame_shift_ms=frame_shift_ms, window_type=window_type)
        self.norm_mean, self.norm_std = float(norm_mean), float(norm_std)

    def config(self) -> dict[str, Any]:
        """Constructor arguments: ``AstFbank(**fe.config())`` rebuilds it."""
        keys = ("sample_rate", "num_mel_bins", "frame_length_ms", "frame_shift_ms", "window_type")
        return {**{k: self._config[k] for k in keys}, "norm_mean": self.norm_mean, "norm_std": self.norm_std}

    def forward(self, audio: Tensor, audio_lens: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """audio (B, S) in [-1, 1] -> normalised log fbank (B, T, F), feat_lens (B,)."""
        feats, feat_lens = super().forward(audio, audio_lens)
        return (feats - self.norm_mean) / (2.0 * self.norm_std), feat_lens
