"""Negatives for KWS: near-miss words, non-speech generators, running speech, hard-negative mining."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from speechkit.data.synth import negatives
from speechkit.data.synth.espeak import phonemes
from speechkit.errors import SpeechkitError

RATE = 16000


def test_phonemes_are_espeak_ipa():
    assert phonemes("left") == "l_ˈɛ_f_t"
    assert phonemes("hey jarvis").count(" ") == 1  # words separated by a space
    assert negatives.phoneme_tokens("stop, go") == ("s", "t", "ɑː", "p", "ɡ", "oʊ")
    with pytest.raises(SpeechkitError, match="no voice 'xx-nope'"):
        phonemes("left", voice="xx-nope")


def test_phonemes_leave_synthesis_unchanged():
    from speechkit.data.synth.espeak import synthesize
    from speechkit.data.synth.voices import Voice

    voice = Voice("en-us", "f2")
    before = synthesize("turn the lights on", voice, seed=4)
    for text in ("left", "hey jarvis", "stop, go. up"):
        phonemes(text, voice="en-gb-scotland")
    assert np.array_equal(before, synthesize("turn the lights on", voice, seed=4))


def test_near_misses_share_sounds_and_are_never_a_keyword():
    vocabulary = ["lift", "loft", "lest", "left", "banana", "elephant", "table", "write", "right", "orange",
                  "yesterday", "chess", "lifted", "ocean"]
    found = negatives.near_miss_words(["left", "right"], vocabulary=vocabulary, per_keyword=4)
    assert set(found["left"]) >= {"lift", "loft", "lest"}
    assert not {"left", "right", "write"} & set(found["left"] + found["right"])  # keywords and a homophone
    assert "banana" not in found["left"] and "ocean" not in found["left"]


def test_near_misses_of_a_phrase_include_its_words_and_swapped_phrases():
    found = negatives.near_miss_words(["hey jarvis"], per_keyword=12)["hey jarvis"]
    assert len(found) == 12 and "hey jarvis" not in found
    assert "jarvis" in found or any(f.startswith("hey ") or f.endswith(" jarvis") for f in found)
    with pytest.raises(SpeechkitError, match="per_keyword"):
        negatives.near_miss_words(["left"], per_keyword=0)


def test_phoneme_similarity_prefers_shared_onset_and_rhyme():
    left = negatives.phoneme_tokens("left")
    assert negatives.phoneme_similarity(left, negatives.phoneme_tokens("lift")) > negatives.phoneme_similarity(
        left, negatives.phoneme_tokens("felt")
    )
    assert negatives.phoneme_similarity(left, ()) == 0.0


@pytest.mark.parametrize("kind", negatives.NONSPEECH_KINDS)
def test_nonspeech_kinds_are_seeded_float32_in_range(kind):
    a = negatives.nonspeech(kind, RATE, np.random.default_rng(5))
    b = negatives.nonspeech(kind, RATE, np.random.default_rng(5))
    assert a.dtype == np.float32 and a.shape == (RATE,) and np.abs(a).max() <= 1.0
    assert np.array_equal(a, b)
    rms_db = 10 * np.log10(np.mean(a.astype(np.float64) ** 2) + 1e-20)
    if kind == "digital_silence":
        assert not a.any()
    elif kind == "near_silence":
        assert -75 < rms_db < -45
    else:
        assert rms_db > -80  # audible, from very quiet up


def test_nonspeech_levels_reach_clipping_and_tone_kinds_differ():
    loud = negatives.nonspeech("music", RATE, np.random.default_rng(0), peak_dbfs=6.0)
    assert np.abs(loud).max() == 1.0 and np.mean(np.abs(loud) == 1.0) > 0.001  # driven into clipping
    spectra = {}
    for kind in negatives.TONE_KINDS:
        x = negatives.tones(RATE, np.random.default_rng(1), kind=kind)
        assert x.shape == (RATE,) and np.abs(x).max() == pytest.approx(1.0)
        spectra[kind] = np.abs(np.fft.rfft(x))
    assert np.argmax(spectra["dtmf"][600:1000]) + 600 in range(690, 945)  # a DTMF row tone
    assert (spectra["sweep"] > 0.05 * spectra["sweep"].max()).sum() > 20 * (spectra["sine"] > 0.05 * spectra["sine"].max()).sum()
    with pytest.raises(SpeechkitError, match="unknown tone kind"):
        negatives.tones(10, np.random.default_rng(0), kind="siren")
    with pytest.raises(SpeechkitError, match="unknown non-speech kind"):
        negatives.nonspeech("speech", 10, np.random.default_rng(0))


def test_running_speech_files_are_resumable_and_keyword_free(tmp_path):
    from speechkit.data.synth.voices import sample_speakers

    voices = sample_speakers(2, seed=1)
    out = tmp_path / "speech"
    files = negatives.synth_running_speech(out, ["yes", "no"], voices, minutes=0.2, seed=3, file_seconds=(4.0, 6.0))
    lengths = [sf.info(str(f)).frames / RATE for f in files]
    assert 11.5 <= sum(lengths) <= 12.5 and all(1.0 <= x <= 6.0 for x in lengths)
    first = files[0].read_bytes()
    files[0].unlink()
    again = negatives.synth_running_speech(out, ["yes", "no"], voices, minutes=0.2, seed=3, file_seconds=(4.0, 6.0))
    assert again == files and files[0].read_bytes() == first  # rewritten identically
    with pytest.raises(SpeechkitError, match="no voices"):
        negatives.synth_running_speech(out, ["yes"], [], minutes=1)


@pytest.fixture(scope="module")
def tone_kws(tmp_path_factory):
    """The runtime tests' stand-in artifact: 0.5 s clips, a 500 Hz tone is "yes", 1000 Hz "no"."""
    from test_runtime import tone_model

    return tone_model(tmp_path_factory.mktemp("model") / "tone.onnx")


def test_mining_writes_the_peaks_highest_first(tone_kws, tmp_path):
    from test_runtime import tone_stream

    from speechkit.data.hard_negatives import SUMMARY_FILE, mine_hard_negatives

    # "keyword-free" speech that the detector nevertheless fires on: tones at known times
    stream = tone_stream([("yes", 2.0, 2.4), ("no", 5.0, 5.4), ("yes", 8.0, 8.4)], seconds=10.0, seed=1)
    stream[int(5.0 * RATE) : int(5.4 * RATE)] *= 0.8  # the "no" scores lower
    quiet = tone_stream([], seconds=4.0, seed=2)
    sf.write(tmp_path / "a.wav", stream, RATE)
    sf.write(tmp_path / "quiet.wav", quiet, RATE)
    summary = mine_hard_negatives(tone_kws, [tmp_path / "a.wav", tmp_path / "quiet.wav"], tmp_path / "mined",
                                  max_windows=2, min_score=0.5, context_ms=250.0)
    assert summary["peaks_found"] == 3 and summary["count"] == 2
    assert summary["window_samples"] == 8000 + 4000
    ends = sorted(w["end_s"] for w in summary["windows"])
    assert [w["keyword"] for w in summary["windows"]] == ["yes", "yes"]
    assert 2.4 <= ends[0] <= 2.9 and 8.4 <= ends[1] <= 8.9  # windows end after the tone, within a clip
    assert json.loads((tmp_path / "mined" / SUMMARY_FILE).read_text())["per_keyword"] == {"yes": 2}
    for w in summary["windows"]:
        audio, rate = sf.read(tmp_path / "mined" / w["file"])
        assert rate == RATE and audio.shape == (12000,)
        end = round(w["end_s"] * RATE)
        assert np.allclose(audio, stream[end - 12000 : end], atol=1e-4)
    with pytest.raises(SpeechkitError, match="not an empty folder"):
        mine_hard_negatives(tone_kws, [tmp_path / "a.wav"], tmp_path / "mined")
    none = mine_hard_negatives(tone_kws, [tmp_path / "quiet.wav"], tmp_path / "none", min_score=0.5)
    assert none["count"] == 0 and none["peaks_per_hour"] == 0.0


def test_find_peaks_keeps_one_peak_per_event():
    from speechkit.data.hard_negatives import find_peaks

    t = np.arange(20) * 0.1
    s = np.zeros((20, 2))
    s[3:8, 0] = [0.4, 0.6, 0.9, 0.7, 0.5]
    s[15, 1] = 0.95
    assert [(n, k) for n, k, _ in find_peaks(t, s, 0.5, 1.0)] == [(15, 1), (5, 0)]
    assert find_peaks(t, s, 0.99, 1.0) == []
