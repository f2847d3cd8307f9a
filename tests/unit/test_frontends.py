"""Tests for speechkit.frontends: LogMel, MFCC, Fbank (vs kaldi-native-fbank), SpecAugment.

All inputs are synthesised here: pure tones, silence, white noise, and a speech-like signal
(glottal pulse train through three formant resonators, amplitude modulated, plus noise).
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import warnings

import kaldi_native_fbank as knf
import librosa
import numpy as np
import onnxruntime as ort
import pytest
import scipy.fft
import scipy.signal
import torch

from speechkit.frontends import MFCC, Fbank, LogMel, SpecAugment
from speechkit.frontends.fbank import FLOAT32_EPS, kaldi_mel
from speechkit.frontends.kaldi_options import knf_options_from_dict
from speechkit.frontends.spectral import htk_mel_centers_hz

SR = 16000


# ----------------------------------------------------------------------------- signals


def tone(freq_hz: float, num_samples: int, amplitude: float = 0.5) -> np.ndarray:
    """(num_samples,) float32 sine."""
    return (amplitude * np.sin(2 * np.pi * freq_hz * np.arange(num_samples) / SR)).astype(
        np.float32
    )


def speech_like(seconds: float, seed: int = 0) -> np.ndarray:
    """(seconds * SR,) float32 in [-1, 1]: a vowel-like harmonic signal with noise.

    A glottal pulse train with a wobbling 100-150 Hz pitch, shaped by a two-pole glottal
    filter and three formant resonators (700, 1220, 2600 Hz), amplitude modulated at 3 Hz
    (syllable-like pauses), plus white noise 45 dB below the peak.
    """
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    t = np.arange(n) / SR
    f0 = 125 + 25 * np.sin(2 * np.pi * 0.7 * t + rng.uniform(0, 2 * np.pi))
    cycles = np.cumsum(f0) / SR
    pulses = (np.diff(np.floor(cycles), prepend=0.0) > 0).astype(np.float64)
    y = scipy.signal.lfilter([1.0], [1.0, -1.9, 0.905], pulses)
    for fc, bw in [(700, 110), (1220, 120), (2600, 160)]:
        r, theta = math.exp(-math.pi * bw / SR), 2 * math.pi * fc / SR
        y = scipy.signal.lfilter([1 - r], [1, -2 * r * math.cos(theta), r * r], y)
    y *= 0.5 * (1 + np.sin(2 * np.pi * 3 * t))
    y = 0.5 * y / np.abs(y).max() + 0.003 * rng.standard_normal(n)
    return y.astype(np.float32)


def knf_fbank(audio: np.ndarray, options: dict) -> np.ndarray:
    """(T, F) features from kaldi-native-fbank's OnlineFbank on the whole signal."""
    extractor = knf.OnlineFbank(knf_options_from_dict(options))
    extractor.accept_waveform(SR, audio.tolist())
    extractor.input_finished()
    frames = [extractor.get_frame(i) for i in range(extractor.num_frames_ready)]
    dim = options["mel_opts"]["num_bins"]
    return np.stack(frames) if frames else np.zeros((0, dim), np.float32)


# ----------------------------------------------------------------------------- ONNX helper


def export_frontend_onnx(
    frontend: torch.nn.Module, path, *, with_lengths: bool = True, min_samples: int = 512
) -> ort.InferenceSession:
    """Export a feature front-end with the dynamo exporter; dynamic batch and length.

    Inputs ``audio`` (batch, samples) [and ``audio_lens`` (batch,)]; outputs ``feats``,
    ``feat_lens``. ``min_samples`` must cover one analysis window: shorter inputs give zero
    frames, a shape the exporter would otherwise have to branch on.

    Returns:
        An onnxruntime CPU session on the exported file.
    """
    frontend = frontend.eval()
    batch = torch.export.Dim("batch", min=1, max=1024)
    samples = torch.export.Dim("samples", min=min_samples, max=SR * 3600)
    audio = 0.1 * torch.randn(2, SR)
    if with_lengths:
        args = (audio, torch.tensor([SR, SR // 2]))
        dynamic_shapes = ({0: batch, 1: samples}, {0: batch})
        input_names = ["audio", "audio_lens"]
    else:
        args, dynamic_shapes, input_names = (audio,), ({0: batch, 1: samples},), ["audio"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            frontend, args, str(path), dynamo=True, dynamic_shapes=dynamic_shapes,
            input_names=input_names, output_names=["feats", "feat_lens"], verbose=False,
        )
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


# ----------------------------------------------------------------------------- all front-ends

FRONTENDS = {
    "logmel": lambda: LogMel.bcresnet(),
    "logmel_nocenter": lambda: LogMel(center=False, n_mels=32),
    "mfcc": lambda: MFCC(n_mfcc=13),
    "fbank": lambda: Fbank(),
    "fbank_nosnip": lambda: Fbank(snip_edges=False, num_mel_bins=40),
}


def expected_frames(name: str, num_samples: int) -> int:
    """The documented frame formulas, written out independently of the modules."""
    if name in ("logmel", "mfcc"):  # center=True, hop 160
        return 1 + num_samples // 160
    if name == "logmel_nocenter":  # n_fft 512, hop 160
        return 1 + (num_samples - 512) // 160 if num_samples >= 512 else 0
    if name == "fbank":  # snip_edges: win 400, shift 160
        return 1 + (num_samples - 400) // 160 if num_samples >= 400 else 0
    return (num_samples + 80) // 160  # fbank_nosnip


@pytest.mark.parametrize("name", FRONTENDS)
@pytest.mark.parametrize("num_samples", [0, 1, 159, 399, 400, 401, 511, 512, 673, 16000])
def test_frontend_lengths_follow_frame_formula(name, num_samples):
    frontend = FRONTENDS[name]().eval()
    feats, feat_lens = frontend(0.1 * torch.randn(2, num_samples))
    expected = expected_frames(name, num_samples)
    assert frontend.num_frames(num_samples) == expected
    assert feats.shape == (2, expected, frontend.feature_dim)
    assert feats.dtype == torch.float32
    assert feat_lens.dtype == torch.int64 and feat_lens.tolist() == [expected, expected]
    assert torch.isfinite(feats).all()


@pytest.mark.parametrize("name", FRONTENDS)
def test_frontend_padded_batch_matches_single(name):
    frontend = FRONTENDS[name]().eval()
    lengths = [16000, 9001, 3333, 450]
    items = [torch.from_numpy(speech_like(n / SR, seed=i)) for i, n in enumerate(lengths)]
    batch = torch.full((len(items), max(lengths)), 0.7)  # non-zero padding must not leak in
    for i, item in enumerate(items):
        batch[i, : len(item)] = item
    feats, feat_lens = frontend(batch, torch.tensor(lengths))
    for i, item in enumerate(items):
        single, single_lens = frontend(item[None])
        n = int(single_lens[0])
        assert int(feat_lens[i]) == n == frontend.num_frames(len(item))
        torch.testing.assert_close(feats[i, :n], single[0], atol=1e-5, rtol=0)
    # Padding frames hold the front-end's features of digital silence.
    silence, _ = frontend(torch.zeros(1, max(lengths)))
    torch.testing.assert_close(feats[3, int(feat_lens[3]) :], silence[0, int(feat_lens[3]) :])


@pytest.mark.parametrize("name", FRONTENDS)
def test_frontend_config_rebuilds_same_module(name):
    frontend = FRONTENDS[name]().eval()
    config = json.loads(json.dumps(frontend.config()))  # JSON round trip, as in ONNX metadata
    rebuilt = type(frontend)(**config).eval()
    audio = 0.1 * torch.randn(1, 4000)
    torch.testing.assert_close(rebuilt(audio)[0], frontend(audio)[0], atol=0, rtol=0)
    # Derived matrices are rebuilt from the config, not saved in checkpoints.
    assert len(frontend.state_dict()) == 0


# Max abs difference allowed between ORT and torch. Both compute in float32; the residue is FFT
# rounding (MKL/pocketfft in torch, ORT's DFT kernel), which the log magnifies where a cell is
# far below its frame's peak. LogMel's +1e-6 floor bounds that (~2e-5 seen). Fbank's float32-eps
# floor does not: about 1 cell in 60,000 of speech-like audio, some 60 dB below the frame peak,
# differs by 1e-4 to 1.5e-4 (ORT and torch are each within ~1.4e-4 of a float64 reference).
# Computing in float64 would fix it at a 2x CPU cost and put double kernels into mobile graphs.
ONNX_ATOL = {"logmel": 1e-4, "mfcc": 1e-4, "fbank": 3e-4, "fbank_nosnip": 3e-4}


@pytest.mark.parametrize("name", ONNX_ATOL)
def test_frontend_onnx_matches_torch(name, tmp_path):
    frontend = FRONTENDS[name]().eval()
    session = export_frontend_onnx(frontend, tmp_path / f"{name}.onnx")
    for lengths in ([SR], [12345, 12345 - 4000, 700], [2 * SR + 37, SR]):
        audio = torch.zeros(len(lengths), max(lengths))
        for i, n in enumerate(lengths):
            audio[i, :n] = torch.from_numpy(speech_like(n / SR, seed=i + 7))
        lens = torch.tensor(lengths)
        feats, feat_lens = frontend(audio, lens)
        inputs = {"audio": audio.numpy(), "audio_lens": lens.numpy()}
        onnx_feats, onnx_lens = session.run(None, inputs)
        np.testing.assert_array_equal(onnx_lens, feat_lens.numpy())
        np.testing.assert_allclose(onnx_feats, feats.numpy(), atol=ONNX_ATOL[name], rtol=0)


def test_logmel_onnx_audio_only_input_as_in_kws_artifact(tmp_path):
    frontend = LogMel.bcresnet()
    session = export_frontend_onnx(frontend, tmp_path / "logmel.onnx", with_lengths=False)
    for shape in [(1, SR), (3, 8000)]:
        audio = 0.1 * torch.randn(*shape)
        onnx_feats, onnx_lens = session.run(None, {"audio": audio.numpy()})
        feats, feat_lens = frontend(audio)
        np.testing.assert_allclose(onnx_feats, feats.numpy(), atol=1e-4, rtol=0)
        np.testing.assert_array_equal(onnx_lens, feat_lens.numpy())


def test_frontends_import_without_torch():
    # The numpy/onnxruntime runtime imports kaldi_options; that must not pull in torch.
    code = (
        "import sys, speechkit.frontends, speechkit.frontends.kaldi_options as k;"
        "assert 'torch' not in sys.modules, 'torch imported';"
        "assert callable(k.knf_options_from_dict)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# ----------------------------------------------------------------------------- LogMel / MFCC


def test_logmel_bcresnet_preset_one_second_gives_101_frames():
    frontend = LogMel.bcresnet()
    assert frontend.config() == LogMel().config()
    assert {k: frontend.config()[k] for k in ("n_fft", "win_length", "hop_length", "n_mels")} == {
        "n_fft": 512, "win_length": 480, "hop_length": 160, "n_mels": 40,
    }
    feats, feat_lens = frontend(torch.randn(1, SR))
    assert feats.shape == (1, 101, 40) and feat_lens.tolist() == [101]


def test_logmel_matches_librosa_reference():
    # librosa with the same settings: zero-padded centring, periodic Hann of 480 in a 512 FFT,
    # HTK mel without normalisation (= torchaudio MelSpectrogram defaults, zero-padded).
    audio = speech_like(1.0, seed=3)
    mel = librosa.feature.melspectrogram(
        y=audio.astype(np.float64), sr=SR, n_fft=512, hop_length=160, win_length=480,
        window="hann", center=True, pad_mode="constant", power=2.0, n_mels=40, htk=True,
        norm=None,
    )  # (40, T)
    reference = np.log(mel + 1e-6).T
    feats, _ = LogMel.bcresnet()(torch.from_numpy(audio)[None])
    np.testing.assert_allclose(feats[0].numpy(), reference, atol=1e-4, rtol=0)


@pytest.mark.parametrize("band", [4, 12, 20, 30, 38])
def test_logmel_tone_peaks_in_expected_bin(band):
    frontend = LogMel.bcresnet()
    freq_hz = htk_mel_centers_hz(40, 0.0, SR / 2)[band]  # centre of filter `band`
    feats, _ = frontend(torch.from_numpy(tone(freq_hz, SR))[None])
    peaks = feats[0, 5:-5].argmax(dim=-1)  # away from the zero-padded edges
    assert (peaks == band).all(), (freq_hz, peaks.unique())


def test_logmel_silence_gives_floor_value():
    frontend = LogMel(log_floor=1e-5)
    feats, _ = frontend(torch.zeros(2, 3000))
    torch.testing.assert_close(feats, torch.full_like(feats, math.log(1e-5)))


def test_mfcc_is_orthonormal_dct_of_logmel():
    audio = torch.from_numpy(speech_like(0.5, seed=1))[None]
    mfcc, mfcc_lens = MFCC(n_mfcc=20, n_mels=40)(audio)
    log_mel, mel_lens = LogMel(n_mels=40)(audio)
    reference = scipy.fft.dct(log_mel.double().numpy(), type=2, norm="ortho", axis=-1)[..., :20]
    np.testing.assert_allclose(mfcc.numpy(), reference, atol=1e-4, rtol=0)
    assert mfcc_lens.tolist() == mel_lens.tolist()


def test_mfcc_tone_peaks_in_expected_bin_after_inverse_dct():
    # With n_mfcc == n_mels the DCT is invertible: the tone's mel peak must come back.
    frontend = MFCC(n_mfcc=40, n_mels=40)
    band = 17
    freq_hz = htk_mel_centers_hz(40, 0.0, SR / 2)[band]
    mfcc, _ = frontend(torch.from_numpy(tone(freq_hz, SR))[None])
    log_mel = scipy.fft.idct(mfcc[0, 5:-5].double().numpy(), type=2, norm="ortho", axis=-1)
    assert (log_mel.argmax(axis=-1) == band).all()


def test_logmel_rejects_bad_arguments():
    with pytest.raises(ValueError, match="win_length"):
        LogMel(n_fft=256, win_length=400)
    with pytest.raises(ValueError, match="f_max"):
        LogMel(f_min=9000.0)
    with pytest.raises(ValueError, match="n_mfcc"):
        MFCC(n_mfcc=50, n_mels=40)
    with pytest.raises(ValueError, match="batch, samples"):
        LogMel()(torch.zeros(SR))


# ----------------------------------------------------------------------------- Fbank


@pytest.mark.parametrize(
    "kwargs",
    [
        {},  # 25 ms / 10 ms / 80 bins / povey / snip_edges
        {"snip_edges": False},
        {"window_type": "hamming", "num_mel_bins": 40, "high_freq": -400.0, "low_freq": 64.0},
        {"window_type": "hanning", "preemph_coeff": 0.0, "remove_dc_offset": False},
        {"round_to_power_of_two": False, "frame_length_ms": 32.0, "num_mel_bins": 23},
    ],
)
def test_fbank_matches_kaldi_native_fbank(kwargs):
    frontend = Fbank(**kwargs)
    audio = speech_like(3.0, seed=11)
    reference = knf_fbank(audio, frontend.kaldi_options())
    feats, feat_lens = frontend(torch.from_numpy(audio)[None])
    assert feats.shape[1] == feat_lens[0] == reference.shape[0]
    np.testing.assert_allclose(feats[0].numpy(), reference, atol=1e-3, rtol=0)


@pytest.mark.parametrize("snip_edges", [True, False])
def test_fbank_frame_count_matches_kaldi_native_fbank(snip_edges):
    frontend = Fbank(snip_edges=snip_edges, num_mel_bins=23)
    audio = speech_like(0.2, seed=2)
    for n in [0, 1, 79, 80, 239, 240, 399, 400, 401, 559, 560, 3200]:
        reference = knf_fbank(audio[:n], frontend.kaldi_options())
        feats, _ = frontend(torch.from_numpy(audio[:n])[None])
        assert frontend.num_frames(n) == reference.shape[0] == feats.shape[1], n
        np.testing.assert_allclose(feats[0].numpy(), reference, atol=1e-3, rtol=0)


@pytest.mark.parametrize("band", [20, 40, 60, 75])
def test_fbank_tone_peaks_in_expected_bin(band):
    frontend = Fbank(num_mel_bins=80)
    low, high = kaldi_mel(torch.tensor(20.0)), kaldi_mel(torch.tensor(SR / 2))
    centre_mel = low + (band + 1) * (high - low) / 81
    freq_hz = float(700.0 * torch.expm1(centre_mel / 1127.0))
    feats, _ = frontend(torch.from_numpy(tone(freq_hz, SR))[None])
    assert (feats[0].argmax(dim=-1) == band).all(), freq_hz


def test_fbank_silence_gives_kaldi_floor():
    feats, _ = Fbank()(torch.zeros(1, 4000))
    torch.testing.assert_close(feats, torch.full_like(feats, math.log(FLOAT32_EPS)))


def test_fbank_kaldi_options_build_matching_knf_options():
    frontend = Fbank(num_mel_bins=64, frame_shift_ms=12.5, snip_edges=False, dither=1e-4)
    options = json.loads(json.dumps(frontend.kaldi_options()))  # survives ONNX metadata
    knf_dict = knf_options_from_dict(options).as_dict()
    assert knf_dict["mel_opts"]["num_bins"] == 64
    assert knf_dict["frame_opts"]["frame_shift_ms"] == 12.5
    assert knf_dict["frame_opts"]["snip_edges"] is False
    assert knf_dict["frame_opts"]["dither"] == 0.0  # inference features are undithered
    assert knf_dict["use_energy"] is False and knf_dict["use_log_fbank"] is True
    assert knf_dict["use_power"] is True
    for section in ("frame_opts", "mel_opts"):
        for key, value in options[section].items():
            assert knf_dict[section][key] == pytest.approx(value), (section, key)
    with pytest.raises(ValueError, match="frame_opts.samp_rate"):
        knf_options_from_dict({"frame_opts": {"samp_rate": 16000}})


def test_fbank_dither_only_in_training():
    audio = torch.from_numpy(speech_like(0.5, seed=4))[None]
    dithered = Fbank(dither=0.01)
    plain, _ = Fbank()(audio)
    torch.testing.assert_close(dithered.eval()(audio)[0], plain, atol=0, rtol=0)
    assert not torch.allclose(dithered.train()(audio)[0], plain, atol=1e-3)


def test_fbank_rejects_bad_arguments():
    with pytest.raises(ValueError, match="window_type"):
        Fbank(window_type="hann")
    with pytest.raises(ValueError, match="no FFT bin"):
        Fbank(num_mel_bins=200)
    with pytest.raises(ValueError, match="high_freq"):
        Fbank(low_freq=9000.0)


# ----------------------------------------------------------------------------- SpecAugment


def test_specaugment_eval_is_identity():
    feats = torch.randn(3, 50, 40)
    assert SpecAugment().eval()(feats, torch.tensor([50, 20, 1])) is feats


def masked_cells(aug: SpecAugment, feats, lens, seed=0):
    """Boolean (B, T, F) of the cells a sentinel fill value marks."""
    out = aug.train()(feats, lens, generator=torch.Generator().manual_seed(seed))
    return out == aug.fill


def test_specaugment_masks_only_within_lengths():
    aug = SpecAugment(num_freq_masks=2, freq_mask_width=7, num_time_masks=2,
                      time_mask_width=20, fill=1234.5)
    lens = torch.tensor([100, 37, 5, 0])
    feats = torch.randn(4, 100, 40)
    for seed in range(20):
        mask = masked_cells(aug, feats, lens, seed)
        for i, n in enumerate(lens.tolist()):
            assert not mask[i, n:].any()  # padding untouched
            if n == 0:
                continue
            # Frequency masks hit at most 2 * 7 bins, so a frame masked in every bin is a
            # time-masked frame; every other valid frame shows exactly the frequency mask.
            time_rows = mask[i, :n].all(dim=1)
            assert int(time_rows.sum()) <= 2 * 20
            rest = mask[i, :n][~time_rows]
            if len(rest):
                freq_cols = rest[0]
                assert int(freq_cols.sum()) <= 2 * 7
                assert torch.equal(rest, freq_cols.expand_as(rest))


def test_specaugment_fill_values():
    feats = torch.randn(2, 60, 20) - 5.0
    lens = torch.tensor([60, 25])
    feats[1, 25:] = 100.0  # padding must not enter the mean
    generator = torch.Generator().manual_seed(1)
    out = SpecAugment(fill="mean").train()(feats, lens, generator=generator)
    for i, n in enumerate(lens.tolist()):
        changed = out[i] != feats[i]
        assert changed.any()
        torch.testing.assert_close(
            out[i][changed], torch.full_like(out[i][changed], float(feats[i, :n].mean()))
        )
    out = SpecAugment(fill="zero").train()(feats, lens, generator=generator)
    assert ((out == 0) == (out != feats)).all() and (out == 0).any()
    with pytest.raises(ValueError, match="fill"):
        SpecAugment(fill="silence")


def test_specaugment_widths_are_uniform_up_to_max():
    aug = SpecAugment(num_freq_masks=1, freq_mask_width=7, num_time_masks=0, fill=-1e9)
    mask = masked_cells(aug, torch.zeros(4000, 1, 40), torch.ones(4000, dtype=torch.int64))
    widths = mask[:, 0].sum(dim=-1)
    counts = torch.bincount(widths, minlength=9)
    assert counts[8] == 0  # never wider than freq_mask_width
    assert (counts[:8] > 4000 / 8 * 0.8).all() and (counts[:8] < 4000 / 8 * 1.2).all()


def test_specaugment_deterministic_under_seed_and_independent_per_item():
    aug = SpecAugment().train()
    feats = torch.randn(1, 80, 40).expand(8, 80, 40).clone()
    out_a = aug(feats, generator=torch.Generator().manual_seed(5))
    out_b = aug(feats, generator=torch.Generator().manual_seed(5))
    out_c = aug(feats, generator=torch.Generator().manual_seed(6))
    assert torch.equal(out_a, out_b) and not torch.equal(out_a, out_c)
    torch.manual_seed(3)
    out_d = aug(feats)
    torch.manual_seed(3)
    assert torch.equal(out_d, aug(feats))
    # identical items get different masks
    assert len({tuple((row != feats[0]).flatten().tolist()) for row in out_a}) > 1
