"""Speech engines behind one synthesize(): determinism per engine, engine mixes, the content-hash cache."""

from __future__ import annotations

import json

import numpy as np
import pytest

from speechkit.data.synth.engines import (
    cache_key,
    parse_engine_mix,
    pico_settings,
    set_synth_cache,
    synthesize,
)
from speechkit.data.synth.voices import Voice, sample_speakers
from speechkit.errors import SpeechkitError


@pytest.fixture(autouse=True)
def _no_cache():
    set_synth_cache(None)
    yield
    set_synth_cache(None)


def test_espeak_speaker_ids_and_draws_are_unchanged_by_engines():
    # espeak-only lists (the default) must not change: corpora, splits and IDs depend on them
    assert [v.speaker_id for v in sample_speakers(4, seed=0)] == ["5c678839", "c2d745a0", "766ae85a", "f1293f01"]
    assert sample_speakers(6, seed=3) == sample_speakers(6, seed=3, engines="espeak")


def test_engine_mix_deals_pico_speakers_with_their_own_settings():
    voices = sample_speakers(40, seed=1, engines="espeak:1,pico:1")
    pico = [v for v in voices if v.engine == "pico"]
    assert len(pico) == 20 and {v.language for v in pico} == {"en-US", "en-GB"}
    assert all(v.variant is None and 0.8 <= v.speed_factor <= 1.15 for v in pico)
    assert len({v.speaker_id for v in voices}) == 40
    assert sample_speakers(40, seed=1, engines="espeak:1,pico:1") == voices  # same seed, same list
    assert {v.engine for v in sample_speakers(10, seed=1, engines="espeak:3,pico:1")} == {"espeak", "pico"}


def test_engine_mix_errors():
    assert parse_engine_mix("espeak:2,pico") == ["espeak", "espeak", "pico"]
    for bad, match in (("flite", "reserved"), ("festival:2", "reserved"), ("sam", "unknown speech engine"),
                       ("espeak:0", "positive integer"), ("espeak:x", "positive integer"), (",", "no speech engine")):
        with pytest.raises(SpeechkitError, match=match):
            parse_engine_mix(bad)
    with pytest.raises(SpeechkitError, match="held-out voice pool"):
        sample_speakers(3, pool="heldout", engines="espeak,pico")


def test_pico_is_deterministic_whatever_was_said_before():
    voice = sample_speakers(1, seed=5, engines="pico")[0]
    first = synthesize("turn the lights on", voice)
    synthesize("something else entirely, and longer than the first", voice)
    again = synthesize("turn the lights on", voice)
    assert first.dtype == np.float32 and first.size > 8000
    np.testing.assert_array_equal(first, again)
    assert np.abs(first).max() < 0.999  # pico at volume 50 does not clip
    # the speed factor resamples: a slower voice is longer
    slow = synthesize("turn the lights on", Voice(**{**voice.to_dict(), "speed_factor": 0.8}))
    assert slow.size > first.size * 1.15


def test_pico_settings_map_the_voice():
    voice = Voice(language="en-GB", rate_wpm=350, pitch=0, engine="pico", volume=50)
    assert pico_settings(voice) == {"language": "en-GB", "rate": 200, "pitch": 55, "volume": 50}
    with pytest.raises(SpeechkitError, match="pico speaks"):
        pico_settings(Voice(language="en-us", engine="pico"))


def test_espeak_is_deterministic_for_a_seed():
    voice = sample_speakers(1, seed=2)[0]
    np.testing.assert_array_equal(synthesize("go left", voice, seed=4), synthesize("go left", voice, seed=4))


def test_cache_reuses_audio_and_keys_on_content(tmp_path):
    voice = sample_speakers(1, seed=2, engines="pico")[0]
    set_synth_cache(tmp_path)
    first = synthesize("stop", voice)
    files = list(tmp_path.rglob("*.npy"))
    assert len(files) == 1 and files[0].stem == cache_key("stop", voice, 16000, 0)
    # a second call reads the file: overwrite it to prove it is what comes back
    np.save(files[0], np.full(100, 1000, np.int16))
    np.testing.assert_allclose(synthesize("stop", voice), np.full(100, 1000 / 32768, np.float32))
    # pico ignores the seed, espeak does not
    assert cache_key("stop", voice, 16000, 0) == cache_key("stop", voice, 16000, 9)
    espeak = sample_speakers(1, seed=2)[0]
    assert cache_key("stop", espeak, 16000, 0) != cache_key("stop", espeak, 16000, 9)
    # a damaged entry is synthesized again
    files[0].write_bytes(b"not numpy")
    np.testing.assert_allclose(synthesize("stop", voice), first, atol=1 / 32768)


def test_synth_cli_mixes_engines(tmp_path, capsys):
    from speechkit.cli.main import main

    out = tmp_path / "sc"
    rc = main(["synth", "speech-commands", str(out), "--words", "yes,no", "--speakers", "4", "--unknown-words", "",
               "--background-seconds", "0", "--engines", "espeak,pico", "--cache", str(tmp_path / "cache")])
    assert rc == 0
    info = json.loads((out / "synth_info.json").read_text())
    assert info["engines"] == ["espeak", "pico"]
    assert {s["voice"]["engine"] for s in info["speakers"]} == {"espeak", "pico"}
    assert len(list((out / "yes").glob("*.wav"))) == 8
    assert any((tmp_path / "cache").rglob("*.npy"))
    capsys.readouterr()
    assert main(["synth", "speech-commands", str(tmp_path / "x"), "--engines", "flite", "--no-cache"]) != 0
    assert "flite is reserved for evaluation" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_warm_cache_writes_the_same_corpus_as_a_cold_one(tmp_path):
    from speechkit.data.synth.speech_commands import synth_speech_commands

    set_synth_cache(tmp_path / "cache")
    kwargs = dict(words=["up"], num_speakers=3, unknown_words=[], background_seconds=0, engines="espeak,pico")
    synth_speech_commands(tmp_path / "cold", **kwargs)
    synth_speech_commands(tmp_path / "warm", **kwargs)
    cold = sorted((tmp_path / "cold" / "up").glob("*.wav"))
    assert len(cold) == 6
    for path in cold:
        assert path.read_bytes() == (tmp_path / "warm" / "up" / path.name).read_bytes()


def test_piper_neural_voice_is_deterministic_and_follows_the_rate():
    voices = sample_speakers(3, seed=4, engines="piper")
    assert {v.language for v in voices} == {"en_US-joe-medium"} and all(v.engine == "piper" for v in voices)
    voice = voices[0]
    first = synthesize("go left", voice)
    synthesize("a different sentence first", voice)
    np.testing.assert_array_equal(first, synthesize("go left", voice))
    assert first.size > 4000 and 0.01 < np.abs(first).max() < 1.0
    fast = synthesize("go left", Voice(**{**voice.to_dict(), "rate_wpm": voice.rate_wpm * 2}))
    assert fast.size < 0.75 * first.size
    # espeak-ng in the same process is unaffected (piper loads its own phonemizer library)
    espeak = sample_speakers(1, seed=2)[0]
    np.testing.assert_array_equal(synthesize("go left", espeak, seed=4), synthesize("go left", espeak, seed=4))
