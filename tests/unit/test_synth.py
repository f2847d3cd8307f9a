"""Synthetic corpora (espeak-ng): engine, voices, effects, text, and the two corpus layouts."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from speechkit.data.synth import effects
from speechkit.data.synth.espeak import get_engine, synthesize
from speechkit.data.synth.librispeech import synth_librispeech
from speechkit.data.synth.speech_commands import (
    BACKGROUND_FILES,
    BACKGROUND_FOLDER,
    DEFAULT_COMMANDS,
    keyword_folder,
    synth_speech_commands,
)
from speechkit.data.synth.text import (
    CommandGrammar,
    get_text_source,
    load_sentences,
    normalize_text,
)
from speechkit.data.synth.voices import ENGLISH_ACCENTS, Voice, default_variants, sample_speakers
from speechkit.errors import SpeechkitError

SR = 16000


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))


# -- engine ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "voice",
    [
        Voice("en-us"),
        Voice("en", "m2"),
        Voice("en-us", "f3", pitch=70),
        Voice("en-gb-scotland", "klatt2"),
        Voice("en-gb-x-rp", "whisper"),
        Voice("en-029", "croak", rate_wpm=140, speed_factor=0.9),
        Voice("en-us-nyc", "f5", rate_wpm=220, speed_factor=1.1),
    ],
    ids=lambda v: v.espeak_name,
)
def test_synthesize_is_audible_speech(voice):
    audio = synthesize("turn left", voice, sample_rate=SR)
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert 0.25 * SR < audio.size < 2.0 * SR  # two words take a fraction of a second to a second
    assert np.abs(audio).max() <= 1.0
    assert _rms(audio) > 0.01


def test_synthesize_rate_and_speed_factor():
    slow = synthesize("seven", Voice(speed_factor=0.9), SR)
    fast = synthesize("seven", Voice(speed_factor=1.1), SR)
    assert slow.size / fast.size == pytest.approx(1.1 / 0.9, rel=0.05)
    at_8k = synthesize("seven", Voice(), 8000)
    at_16k = synthesize("seven", Voice(), 16000)
    assert at_16k.size == pytest.approx(2 * at_8k.size, abs=4)
    silence = synthesize("   ", Voice(), SR)  # nothing to say: a few ms of silence at most
    assert silence.size < 0.02 * SR and np.abs(silence).max(initial=0.0) < 1e-3


def test_synthesize_is_reproducible_whatever_came_before():
    engine = get_engine()
    assert engine.native_rate == 22050
    assert engine.deterministic  # start-up self-check (Linux wheel: statics found by name)
    voices = [Voice("en-us", "klatt4"), Voice("en-gb-x-rp", "whisper"), Voice("en", "f2")]
    first = [synthesize("hello there", v, SR, seed=5) for v in voices]
    for text in ("something in between", "and another sentence"):
        synthesize(text, Voice("en-029", "m7", rate_wpm=300), SR, seed=1)
    again = [synthesize("hello there", v, SR, seed=5) for v in voices[::-1]][::-1]
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)


def test_unknown_voice_is_a_user_error():
    with pytest.raises(SpeechkitError, match="no voice"):
        synthesize("yes", Voice("xx-nonexistent"), SR)


# -- voices ------------------------------------------------------------------------------------
def test_sample_speakers_distinct_varied_and_reproducible():
    speakers = sample_speakers(40, seed=0)
    assert speakers == sample_speakers(40, seed=0)
    assert speakers != sample_speakers(40, seed=1)
    ids = [v.speaker_id for v in speakers]
    assert len(set(ids)) == 40 and all(re.fullmatch(r"[0-9a-f]{8}", i) for i in ids)
    assert {v.language for v in speakers} == set(ENGLISH_ACCENTS)  # every accent by 40 speakers
    assert len({v.variant for v in speakers}) >= 35  # variants dealt without repeats
    assert len({v.pitch for v in speakers}) > 20 and len({v.rate_wpm for v in speakers}) > 20
    assert speakers[:10] == sample_speakers(10, seed=0)  # growing n keeps the first speakers


def test_curated_variants_exist_and_exclude_unstable_ones():
    variants = default_variants()
    assert None in variants and {"m3", "f2", "klatt2", "whisper", "croak"} <= set(variants)
    assert not {"klatt6", "Reed", "robosoft", "Mr serious"} & set(variants)


# -- effects -----------------------------------------------------------------------------------
def _band_power(x: np.ndarray, low: float, high: float) -> float:
    spectrum = np.abs(np.fft.rfft(x)) ** 2
    freqs = np.fft.rfftfreq(x.size, 1 / SR)
    return float(spectrum[(freqs >= low) & (freqs < high)].sum())


@pytest.mark.parametrize("exponent, db_per_octave", [(0.0, 3.0), (1.0, 0.0), (2.0, -3.0)])
def test_colored_noise_slopes(exponent, db_per_octave):
    # Power in an octave band: white doubles (+3 dB) per octave up, pink stays, brown halves.
    x = effects.colored_noise(SR * 4, np.random.default_rng(0), exponent)
    assert _rms(x) == pytest.approx(1.0, rel=1e-3)
    ratio_db = 10 * np.log10(_band_power(x, 2000, 4000) / _band_power(x, 1000, 2000))
    assert ratio_db == pytest.approx(db_per_octave, abs=0.5)


def test_add_noise_hits_the_snr_and_is_deterministic():
    rng = np.random.default_rng(1)
    speech = np.sin(2 * np.pi * 440 * np.arange(SR) / SR).astype(np.float32) * 0.3
    for kind in effects.NOISE_KINDS:
        noise = effects.make_noise(kind, SR, np.random.default_rng(2))
        mixed = effects.add_noise(speech, noise, snr_db=10.0)
        snr = 20 * np.log10(_rms(speech) / _rms(mixed - speech))
        assert snr == pytest.approx(10.0, abs=0.01), kind
    a = effects.apply_environment(speech, effects.Environment("babble", 5.0, 0.5, -6.0), rng)
    b = effects.apply_environment(
        speech, effects.Environment("babble", 5.0, 0.5, -6.0), np.random.default_rng(1)
    )
    np.testing.assert_array_equal(a, b)
    assert np.abs(a).max() == pytest.approx(10 ** (-6 / 20), rel=1e-4)


def test_synthetic_rir_decays_at_rt60():
    rt60 = 0.5
    rir = effects.synthetic_rir(rt60, SR, np.random.default_rng(0))
    assert rir[0] == 1.0 and rir.size == int(1.2 * rt60 * SR)
    # Schroeder energy decay curve of the tail: slope -60 dB per rt60.
    tail = rir[int(0.01 * SR) :].astype(np.float64)
    edc = 10 * np.log10(np.cumsum(tail[::-1] ** 2)[::-1] / np.sum(tail**2))
    t = np.arange(edc.size) / SR
    fit = (edc > -25) & (edc < -5)
    slope_db_per_s = np.polyfit(t[fit], edc[fit], 1)[0]
    assert -60 / slope_db_per_s == pytest.approx(rt60, rel=0.1)
    dry = np.zeros(SR, np.float32)
    dry[100] = 0.5
    wet = effects.reverberate(dry, rir)
    assert wet.shape == dry.shape and np.abs(wet).max() == pytest.approx(0.5, rel=1e-5)
    assert np.count_nonzero(np.abs(wet[101:]) > 1e-4) > 1000  # the impulse rings on


def test_speech_bounds_finds_the_loud_part():
    x = np.zeros(SR, np.float32)
    x[4000:9000] = np.sin(np.arange(5000) * 0.3) * 0.5
    start, end = effects.speech_bounds(x, SR)
    assert abs(start - 4000) <= 160 and abs(end - 9000) <= 160
    assert effects.speech_bounds(np.zeros(SR, np.float32), SR) == (0, 0)


# -- text ----------------------------------------------------------------------------------------
def test_grammar_syntax():
    grammar = CommandGrammar(
        "$dev = lights | (ceiling | floor) fan  # comment\n"
        "$n = @range(1, 3)\n"
        "turn (on | off) the $dev [please]\n"
        "set $n timers\n"
    )
    assert grammar.count() == 2 * 3 * 2 + 3
    expanded = set(grammar.expand())
    assert len(expanded) == 15
    assert {"turn off the floor fan please", "set three timers", "turn on the lights"} <= expanded
    rng = np.random.default_rng(0)
    assert all(grammar.sample(rng) in expanded for _ in range(50))
    for bad, message in [
        ("turn on $missing", "never defined"),
        ("turn (on | off the lights", "missing"),
        ("turn (on | ) lights", "empty alternative"),
        ("# only a comment", "no templates"),
    ]:
        with pytest.raises(SpeechkitError, match=message):
            CommandGrammar(bad)


def test_packaged_text_resources():
    grammar = CommandGrammar.from_resource()
    assert grammar.count() > 100_000 and len(grammar.templates) > 50
    vocabulary = grammar.vocabulary()
    assert len(vocabulary) > 300
    for word in ("LIGHTS", "TIMER", "ALARM", "WEATHER", "PLAY", "CALL", "SHOPPING", "THIRTY"):
        assert word in vocabulary, word
    sentences = load_sentences()
    assert len(set(sentences)) >= 400
    words = {w for s in sentences for w in normalize_text(s).split()}
    assert len(words) > 1000
    rng = np.random.default_rng(0)
    for name in ("sentences", "commands", "general"):
        texts = [get_text_source(name).sample(rng) for _ in range(200)]
        assert all(re.fullmatch(r"[A-Z']+( [A-Z']+)*", t) for t in texts), name
        assert len(set(texts)) > 100, name


# -- Speech Commands layout ----------------------------------------------------------------------
SC_ARGS = {
    "words": ["yes", "Hey Speechkit"],
    "unknown_words": ["cat", "marvin"],
    "num_speakers": 6,
    "clips_per_word": 2,
    "seed": 7,
    "background_seconds": 2.0,
}


@pytest.fixture(scope="module")
def sc_corpus(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("sc") / "speech_commands"
    return out, synth_speech_commands(out, **SC_ARGS)


def _tree_digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_speech_commands_layout(sc_corpus):
    root, summary = sc_corpus
    assert summary["words"] == {"yes": "yes", "Hey Speechkit": "hey_speechkit"}
    assert summary["deterministic"] is True
    folders = sorted(p.name for p in root.iterdir() if p.is_dir())
    assert folders == [BACKGROUND_FOLDER, "cat", "hey_speechkit", "marvin", "yes"]
    clips = sorted(root.glob("*/*.wav"))
    clips = [c for c in clips if c.parent.name != BACKGROUND_FOLDER]
    assert len(clips) == summary["num_clips"] == 6 * (2 * 2 + 2 * 1)
    speakers = set()
    for clip in clips:
        match = re.fullmatch(r"([0-9a-f]{8})_nohash_(\d+)\.wav", clip.name)
        assert match, clip.name
        speakers.add(match.group(1))
        info = sf.info(str(clip))
        assert (info.samplerate, info.channels, info.frames, info.subtype) == (
            16000, 1, 16000, "PCM_16",
        )  # fmt: skip
    assert len(speakers) == 6
    assert {c.name for c in (root / "yes").iterdir()} == {
        f"{s}_nohash_{k}.wav" for s in speakers for k in (0, 1)
    }
    assert {c.name for c in (root / "cat").iterdir()} == {f"{s}_nohash_0.wav" for s in speakers}
    audio, _ = sf.read(str(clips[0]))
    assert _rms(audio) > 1e-3


def test_speech_commands_split_by_speaker(sc_corpus):
    root, summary = sc_corpus
    lists = {}
    for name in ("validation", "testing"):
        lines = (root / f"{name}_list.txt").read_text().splitlines()
        assert lines == sorted(lines) and lines
        for line in lines:
            assert (
                re.fullmatch(r"[a-z_]+/[0-9a-f]{8}_nohash_\d+\.wav", line)
                and (root / line).is_file()
            )
        lists[name] = {line.split("/")[1].split("_")[0] for line in lines}
        # a held-out speaker's every clip is listed
        assert len(lines) == len(lists[name]) * 6
    assert lists["validation"].isdisjoint(lists["testing"])
    assert lists["validation"] == set(summary["speakers"]["validation"])
    assert lists["testing"] == set(summary["speakers"]["testing"])
    assert len(summary["speakers"]["train"]) == 4
    assert summary["splits"] == {"train": 24, "validation": 6, "testing": 6}


def test_speech_commands_background_noise(sc_corpus):
    root, _summary = sc_corpus
    folder = root / BACKGROUND_FOLDER
    assert sorted(p.name for p in folder.iterdir()) == sorted([*BACKGROUND_FILES, "README.md"])
    for name in BACKGROUND_FILES:
        audio, rate = sf.read(str(folder / name))
        assert rate == 16000 and audio.ndim == 1 and audio.size == 2 * 16000
        assert 0.05 < _rms(audio) and np.abs(audio).max() <= 1.0
    assert "running_tap.wav" in (folder / "README.md").read_text()


def test_speech_commands_same_seed_same_bytes(sc_corpus, tmp_path):
    root, _ = sc_corpus
    again = tmp_path / "again"
    synth_speech_commands(again, **SC_ARGS)
    assert _tree_digest(again) == _tree_digest(root)
    other = tmp_path / "other_seed"
    synth_speech_commands(other, **{**SC_ARGS, "seed": 8, "background_seconds": 0})
    assert (other / "yes").is_dir() and not (other / BACKGROUND_FOLDER).exists()
    assert not set(_tree_digest(other).items()) & set(_tree_digest(root).items())


def test_speech_commands_jobs_do_not_change_output(sc_corpus, tmp_path):
    root, _ = sc_corpus
    synth_speech_commands(tmp_path / "parallel", **SC_ARGS, jobs=2)
    assert _tree_digest(tmp_path / "parallel") == _tree_digest(root)


def test_speech_commands_defaults_and_errors(tmp_path):
    assert keyword_folder(" Hey  SpeechKit ") == "hey_speechkit"
    assert keyword_folder("don't") == "don't"
    for bad in ("", "  ", "yes!", "héllo", "a/b"):
        with pytest.raises(SpeechkitError, match="keyword"):
            keyword_folder(bad)
    summary = synth_speech_commands(
        tmp_path / "default", num_speakers=1, clips_per_word=1, unknown_clips_per_word=0,
        background_seconds=0,
    )  # fmt: skip
    assert list(summary["words"]) == list(DEFAULT_COMMANDS)
    assert len(summary["unknown_words"]) == 25  # the rest of the real 35-word set
    assert summary["num_clips"] == 10
    with pytest.raises(SpeechkitError, match="not an empty folder"):
        synth_speech_commands(tmp_path / "default", num_speakers=1)
    with pytest.raises(SpeechkitError, match="repeat"):
        synth_speech_commands(tmp_path / "dup", words=["yes", "YES"])
    assert not (tmp_path / "dup").exists()
    (tmp_path / "empty").mkdir()  # an empty folder may be the output
    synth_speech_commands(
        tmp_path / "empty", words=["go"], unknown_words=[], num_speakers=1, background_seconds=0
    )
    assert sorted(p.name for p in (tmp_path / "empty" / "go").iterdir())
    assert not [p for p in tmp_path.iterdir() if ".partial-" in p.name]  # no staging left over


def test_cli_synth_speech_commands(tmp_path, capsys):
    from speechkit.cli.main import main

    out = tmp_path / "cli"
    argv = ["synth", "speech-commands", str(out), "--words", "up,down", "--unknown-words", "",
            "--speakers", "3", "--clips-per-word", "1", "--background-seconds", "0"]  # fmt: skip
    assert main(argv) == 0
    assert "wrote 6 clips" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["down", "up"]
    assert main(argv) == 2  # output exists: one-line error, no traceback
    assert "not an empty folder" in capsys.readouterr().err


# -- LibriSpeech layout --------------------------------------------------------------------------
LS_ARGS = {
    "subsets": ["train-clean-100", "dev-clean", "test-other"],
    "num_speakers": 2,
    "utterances_per_speaker": 3,
    "chapters_per_speaker": 2,
    "text": "commands",
    "seed": 3,
}


@pytest.fixture(scope="module")
def ls_corpus(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("ls") / "LibriSpeech"
    return out, synth_librispeech(out, **LS_ARGS)


def test_librispeech_layout(ls_corpus):
    root, summary = ls_corpus
    assert summary["num_utterances"] == 3 * 2 * 3
    speakers_by_subset = {}
    for subset in LS_ARGS["subsets"]:
        speakers = sorted(p.name for p in (root / subset).iterdir())
        assert len(speakers) == 2 and all(s.isdigit() for s in speakers)
        speakers_by_subset[subset] = set(speakers)
        utterances = 0
        for trans in sorted((root / subset).glob("*/*/*.trans.txt")):
            speaker, chapter = trans.parent.parent.name, trans.parent.name
            assert trans.name == f"{speaker}-{chapter}.trans.txt"
            lines = trans.read_text().splitlines()
            ids = [line.split(" ", 1)[0] for line in lines]
            for line in lines:
                assert re.fullmatch(rf"{speaker}-{chapter}-\d{{4}} [A-Z']+( [A-Z']+)*", line), line
            flacs = sorted(p.stem for p in trans.parent.glob("*.flac"))
            assert flacs == sorted(ids)
            for utt in ids:
                info = sf.info(str(trans.parent / f"{utt}.flac"))
                assert (info.samplerate, info.channels, info.format) == (16000, 1, "FLAC")
                assert info.frames > 0.5 * 16000
            utterances += len(ids)
        assert utterances == 6
        assert summary["subsets"][subset]["utterances"] == 6
    # held-out speakers: no speaker in two subsets
    all_speakers = [s for group in speakers_by_subset.values() for s in group]
    assert len(set(all_speakers)) == len(all_speakers)
    speakers_txt = (root / "SPEAKERS.TXT").read_text().splitlines()
    rows = [line.split("|") for line in speakers_txt if not line.startswith(";")]
    assert {r[0].strip() for r in rows} == set(all_speakers)
    assert all(r[1].strip() in ("M", "F") for r in rows)
    chapters_txt = [x for x in (root / "CHAPTERS.TXT").read_text().splitlines() if x[0] != ";"]
    assert len(chapters_txt) == 3 * 2 * 2


def test_librispeech_same_seed_same_bytes(ls_corpus, tmp_path):
    root, _ = ls_corpus
    synth_librispeech(tmp_path / "again", **LS_ARGS)
    assert _tree_digest(tmp_path / "again") == _tree_digest(root)


def test_librispeech_readable_by_lhotse(ls_corpus):
    from lhotse.recipes.librispeech import prepare_librispeech

    root, _ = ls_corpus
    manifests = prepare_librispeech(root)
    assert set(manifests) == set(LS_ARGS["subsets"])
    sup = next(iter(manifests["dev-clean"]["supervisions"]))
    assert sup.text and sup.text == sup.text.upper() and sup.speaker == sup.id.split("-")[0]


def test_librispeech_errors(tmp_path):
    with pytest.raises(SpeechkitError, match="expected distinct names"):
        synth_librispeech(tmp_path / "a", subsets=["train-clean-42"])
    with pytest.raises(SpeechkitError, match="text source"):
        synth_librispeech(tmp_path / "b", text="poetry")
    with pytest.raises(SpeechkitError, match="must not exceed"):
        synth_librispeech(tmp_path / "c", utterances_per_speaker=1, chapters_per_speaker=2)


# -- held-out voice families and rooms (issue 11) ------------------------------------------------
def test_speech_commands_heldout_pools(tmp_path):
    import json

    from speechkit.data.synth.voices import HELDOUT_ACCENTS, HELDOUT_VARIANTS

    out = tmp_path / "proxy"
    synth_speech_commands(
        out, words=["yes"], unknown_words=[], num_speakers=3, clips_per_word=1, seed=3,
        background_seconds=0.0, voice_pool="heldout", room_pool="heldout",
    )  # fmt: skip
    info = json.loads((out / "synth_info.json").read_text())
    assert info["voice_pool"] == info["room_pool"] == "heldout"
    for speaker in info["speakers"]:
        assert speaker["voice"]["language"] in HELDOUT_ACCENTS
        assert speaker["voice"]["variant"] in HELDOUT_VARIANTS
        assert speaker["environment"]["room_dims"] is not None  # a held-out shoebox room
    clips = sorted((out / "yes").glob("*.wav"))
    assert len(clips) == 3 and all(sf.info(c).frames == 16000 for c in clips)
    with pytest.raises(SpeechkitError, match="room pool"):
        synth_speech_commands(tmp_path / "bad", words=["yes"], num_speakers=3, room_pool="studio")


def test_streams_accept_room_pools():
    from speechkit.data.synth.stream import synth_keyword_stream, synth_negative_stream

    voices = sample_speakers(2, seed=5, pool="heldout")
    plain = synth_keyword_stream(["yes"], voices, num_keywords=2, sentences_between=(0, 0), seed=1)
    assert plain.audio.size == synth_keyword_stream(["yes"], voices, num_keywords=2, sentences_between=(0, 0),
                                                    seed=1, room_pool="all").audio.size  # fmt: skip
    held = synth_keyword_stream(["yes"], voices, num_keywords=2, sentences_between=(0, 0), seed=1, room_pool="heldout")
    assert held.events == plain.events and held.audio.size == plain.audio.size
    assert not np.allclose(held.audio, plain.audio)  # another room and microphone
    negative = synth_negative_stream(["yes"], voices, num_sentences=1, seed=1, room_pool="heldout")
    assert negative.dtype == np.float32 and np.abs(negative).max() <= 1.0
    with pytest.raises(SpeechkitError, match="room pool"):
        synth_negative_stream(["yes"], voices, num_sentences=1, room_pool="nope")
