"""Voices never heard (issue 11): held-out voice/room pools and the voice/room/channel augmentations."""

from __future__ import annotations

import numpy as np
import pytest

from speechkit.data import augment as aug
from speechkit.data.augment import AUGMENTATIONS, WaveformAugment
from speechkit.data.synth import effects
from speechkit.data.synth.voices import (
    ENGLISH_ACCENTS,
    HELDOUT_ACCENTS,
    HELDOUT_VARIANTS,
    sample_speakers,
    voice_pool,
)
from speechkit.errors import SpeechkitError

SR = 16000


def _harmonic(f0: float = 150.0, formant_hz: float | None = None, seconds: float = 1.0) -> np.ndarray:
    """A harmonic tone at ``f0`` (T,), optionally shaped by one resonance at ``formant_hz``."""
    t = np.arange(int(seconds * SR)) / SR
    out = np.zeros_like(t)
    for k in range(1, int(7000 / f0)):
        gain = 1.0 / k if formant_hz is None else np.exp(-0.5 * ((k * f0 - formant_hz) / 150.0) ** 2)
        out += gain * np.sin(2 * np.pi * k * f0 * t)
    return (0.3 * out / np.abs(out).max()).astype(np.float32)


def _f0(audio: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(audio * np.hanning(audio.size)))
    freqs = np.fft.rfftfreq(audio.size, 1 / SR)
    band = (freqs > 60) & (freqs < 400)
    return float(freqs[band][np.argmax(spectrum[band])])


def _band_energy(audio: np.ndarray, lo: float, hi: float) -> float:
    spectrum = np.abs(np.fft.rfft(audio)) ** 2
    freqs = np.fft.rfftfreq(audio.size, 1 / SR)
    return float(spectrum[(freqs >= lo) & (freqs < hi)].sum())


def _centroid(audio: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(audio)) ** 2
    freqs = np.fft.rfftfreq(audio.size, 1 / SR)
    return float((spectrum * freqs).sum() / spectrum.sum())


def _noise(seed: int = 1) -> np.ndarray:
    return (0.1 * np.random.default_rng(seed).standard_normal(SR)).astype(np.float32)


# -- pools -----------------------------------------------------------------------------------
def test_voice_pools_are_disjoint_and_all_is_unchanged():
    train_accents, train_variants = voice_pool("train")
    held_accents, held_variants = voice_pool("heldout")
    all_accents, all_variants = voice_pool("all")
    assert not set(train_accents) & set(held_accents)
    assert not set(train_variants) & set(held_variants)
    assert set(held_accents) == set(HELDOUT_ACCENTS) and None not in held_variants
    assert set(train_accents) | set(held_accents) == set(all_accents) == set(ENGLISH_ACCENTS)
    assert set(train_variants) | set(held_variants) == set(all_variants)
    # whole families: no training variant starts like a held-out family name
    assert not [v for v in train_variants if v and v.rstrip("0123456789") in {"klatt", "iven", "steph", "whisper"}]
    # pool "all" draws exactly the speakers of the default call
    assert sample_speakers(20, seed=3, pool="all") == sample_speakers(20, seed=3)
    held = sample_speakers(30, seed=3, pool="heldout")
    assert {v.language for v in held} == set(HELDOUT_ACCENTS)
    assert all(v.variant in HELDOUT_VARIANTS for v in held)
    train = sample_speakers(60, seed=3, pool="train")
    assert not {v.language for v in train} & set(HELDOUT_ACCENTS)
    assert not {v.variant for v in train} & set(HELDOUT_VARIANTS)
    with pytest.raises(SpeechkitError, match="voice pool"):
        voice_pool("test")


def test_heldout_rooms_and_mics():
    rng = np.random.default_rng(0)
    assert effects.sample_environment(np.random.default_rng(5), "mixed", pool="all") == effects.sample_environment(
        np.random.default_rng(5), "mixed"
    )
    envs = [effects.sample_environment(rng, "mixed", pool="heldout") for _ in range(30)]
    assert all(e.room_dims is not None and e.rt60_s is not None for e in envs)
    assert {e.mic for e in envs} >= set(effects.HELDOUT_MICS)
    train_max = [r[1] for r in effects.TRAIN_SHOEBOX["dims"]]
    for e in envs:  # every held-out room has a dimension outside the training shoeboxes
        assert any(d > m for d, m in zip(e.room_dims, train_max)) or e.room_dims[1] < effects.TRAIN_SHOEBOX["dims"][1][0]
    rir = effects.shoebox_rir((14.0, 1.8, 2.6), 0.8, SR, np.random.default_rng(1))
    assert rir[0] == 1.0 and np.abs(rir).argmax() == 0
    tail = rir[int(0.05 * SR) :]
    assert np.sum(tail[: int(0.1 * SR)] ** 2) > 10 * np.sum(tail[int(0.5 * SR) : int(0.6 * SR)] ** 2)  # it decays
    muffled = effects.apply_mic(_noise(), "muffled", SR)
    assert _band_energy(muffled, 4000, 8000) < 1e-3 * _band_energy(_noise(), 4000, 8000)
    with pytest.raises(SpeechkitError, match="room pool"):
        effects.sample_environment(rng, "mixed", pool="nope")


# -- augmentations ---------------------------------------------------------------------------
def test_pitch_shift_moves_f0_keeps_length():
    tone = _harmonic(150.0)
    up = aug.pitch_shift(tone, 3.0, SR)
    down = aug.pitch_shift(tone, -3.0, SR)
    assert up.shape == down.shape == tone.shape
    assert _f0(up) == pytest.approx(150.0 * 2 ** (3 / 12), abs=3.0)
    assert _f0(down) == pytest.approx(150.0 * 2 ** (-3 / 12), abs=3.0)


def test_formant_warp_moves_the_envelope_not_f0():
    vowel = _harmonic(125.0, formant_hz=1000.0)
    warped = aug.formant_warp(vowel, 1.2)
    assert warped.shape == vowel.shape
    spectrum = np.abs(np.fft.rfft(warped))
    freqs = np.fft.rfftfreq(warped.size, 1 / SR)
    on_harmonics = np.abs(freqs - 125.0 * np.round(freqs / 125.0)) <= 8.0
    assert np.sum(spectrum[on_harmonics] ** 2) > 0.95 * np.sum(spectrum**2)  # still the 125 Hz harmonics
    assert freqs[np.argmax(spectrum)] == pytest.approx(1200.0, abs=130.0)  # the resonance moved up 20 %
    assert _centroid(aug.formant_warp(vowel, 0.85)) < _centroid(vowel) < _centroid(warped)


def test_bandlimit_removes_energy_beyond_the_cutoff():
    noise = _noise()
    low = aug.band_limit(noise, "lowpass", 3000.0, SR)
    assert _band_energy(low, 4500, 8000) < 1e-2 * _band_energy(noise, 4500, 8000)
    assert _band_energy(low, 200, 2000) > 0.5 * _band_energy(noise, 200, 2000)
    phone = aug.band_limit(noise, "bandpass", (300.0, 3400.0), SR)
    assert _band_energy(phone, 5000, 8000) < 1e-2 * _band_energy(noise, 5000, 8000)
    assert _band_energy(phone, 0, 120) < 1e-2 * _band_energy(noise, 0, 120)
    with pytest.raises(SpeechkitError):
        aug.band_limit(noise, "notch", 1000.0, SR)


def test_codec_quantizes_and_g711_is_narrowband():
    tone = _harmonic(200.0)
    coded = aug.mu_law(tone)
    assert len(np.unique(coded)) <= 256 and np.max(np.abs(coded - tone)) < 0.02
    # choice 0 of random_codec is the 8 kHz G.711 round trip: nothing left above 4 kHz
    rng = next(np.random.default_rng(s) for s in range(100) if int(np.random.default_rng(s).integers(3)) == 0)
    g711 = aug.random_codec(_noise(), rng, SR)
    assert g711.shape == (SR,)
    assert _band_energy(g711, 4200, 8000) < 1e-2 * _band_energy(_noise(), 4200, 8000)


def test_reverb_lengthens_the_decay():
    burst = np.zeros(SR, np.float32)
    burst[1000:1800] = _noise()[:800]
    wet = aug.random_reverb(burst, np.random.default_rng(0), SR)
    assert wet.shape == burst.shape
    after = slice(1800 + int(0.02 * SR), 1800 + int(0.12 * SR))
    assert np.sum(burst[after] ** 2) == 0 and np.sum(wet[after] ** 2) > 1e-4 * np.sum(wet**2)


def test_eq_changes_the_spectrum_not_the_length():
    noise = _noise()
    out = aug.random_eq(noise, np.random.default_rng(4), SR)
    assert out.shape == noise.shape and not np.allclose(out, noise)
    bands = [(100, 400), (400, 1500), (1500, 4000), (4000, 7000)]
    ratios = [10 * np.log10(_band_energy(out, *b) / _band_energy(noise, *b)) for b in bands]
    assert max(ratios) - min(ratios) > 1.0  # coloured, not just a gain


def test_waveform_augment_each_name_deterministic_length_preserved():
    clips = [_harmonic(140.0), _harmonic(220.0, formant_hz=800.0)]
    speech = _harmonic(180.0, formant_hz=1500.0)
    for name in AUGMENTATIONS:
        wa = WaveformAugment(augmentations=[name], augment_p=1.0, babble_source=lambda rng, n: clips[:n])
        a = wa.perturb(speech, np.random.default_rng(7))
        b = wa.perturb(speech, np.random.default_rng(7))
        assert a.shape == speech.shape and a.dtype == np.float32, name
        np.testing.assert_array_equal(a, b, err_msg=name)
        assert not np.allclose(a, speech, atol=1e-4), name
        assert np.abs(a).max() <= 1.0
        # silence clips are left alone
        np.testing.assert_array_equal(wa.perturb(speech, np.random.default_rng(7), is_silence=True), speech)
    none = WaveformAugment()
    assert none.perturb(speech, np.random.default_rng(0)) is speech
    with pytest.raises(SpeechkitError, match="unknown augmentation"):
        WaveformAugment(augmentations=["chorus"])
    with pytest.raises(SpeechkitError, match="babble_source"):
        WaveformAugment(augmentations=["babble"])


def test_babble_hits_the_snr():
    speech = _harmonic(150.0)
    talkers = [_noise(3), _noise(4), _noise(5)]
    mixed = aug.babble(speech, talkers, 10.0, np.random.default_rng(0))
    residue = mixed - speech
    snr = 10 * np.log10(np.mean(speech.astype(np.float64) ** 2) / np.mean(residue.astype(np.float64) ** 2))
    assert snr == pytest.approx(10.0, abs=0.1)


def test_kws_datamodule_passes_augmentations(tiny_kws_manifests):
    from speechkit.data.datamodules import KWSDataModule
    from speechkit.errors import CorpusError

    base = dict(noise_prob=0.0, time_shift_ms=0.0, seed=0)
    plain = KWSDataModule(str(tiny_kws_manifests), **base)._dataset("train")
    dm = KWSDataModule(str(tiny_kws_manifests), augmentations=["babble", "bandlimit"], augment_p=1.0, **base)
    train = dm._dataset("train")
    assert tuple(train.augment.augmentations) == ("babble", "bandlimit") and train.augment.augment_p == 1.0
    assert train.augment.babble_source is not None and len(train.augment.babble_source.cuts) > 0
    i = next(k for k, c in enumerate(train.cuts) if c.id.startswith("yes/"))
    item = train[i]
    assert item["audio"].shape == plain[i]["audio"].shape
    assert not np.allclose(item["audio"], plain[i]["audio"], atol=1e-4)
    assert plain.augment.augmentations == ()  # default: today's behaviour
    with pytest.raises(CorpusError, match="unknown augmentation"):
        KWSDataModule(str(tiny_kws_manifests), augmentations=["chorus"])
