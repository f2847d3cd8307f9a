"""LibriWord: espeak-ng's true word times, TextGrids, the word-form reducer and the builder.

The builder runs on a tiny synthetic LibriSpeech corpus written with ``word_times=True`` (true
word times from espeak-ng's word events, as TextGrids in the MFA layout), so clip centring can be
checked against the times the audio was made with.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from speechkit.data.corpora.libriword import (
    Utterance,
    librispeech_utterances,
    prepare_libriword,
    read_alignments,
    reduce_word_forms,
    split_speakers,
)
from speechkit.data.manifests import read_cuts, read_labels
from speechkit.data.synth.espeak import synthesize, synthesize_with_words
from speechkit.data.synth.librispeech import synth_librispeech
from speechkit.data.synth.voices import Voice
from speechkit.data.word_alignments import find_textgrids, read_textgrid, write_textgrid
from speechkit.decoding import WordTime
from speechkit.errors import CorpusError, SpeechkitError

SR = 16000


# -- espeak-ng word times --------------------------------------------------------------------------


def test_espeak_word_times_leave_the_audio_unchanged_and_fall_in_order_inside_it():
    voice = Voice("en-us", speed_factor=1.1, rate_wpm=160)
    text = "turn the lights on, then play some music"
    audio, words = synthesize_with_words(text, voice, SR, seed=5)
    assert np.array_equal(audio, synthesize(text, voice, SR, seed=5))
    assert [w.word for w in words] == text.split()
    # espeak-ng reads "for the" as one word group: both are left out, the words around them stay
    _, grouped = synthesize_with_words("set an alarm for the morning", voice, SR, seed=5)
    assert [w.word for w in grouped] == ["set", "an", "alarm", "morning"]
    starts = np.array([w.start_s for w in words])
    ends = np.array([w.end_s for w in words])
    assert (np.diff(starts) > 0).all() and (ends > starts).all() and (starts[1:] >= ends[:-1] - 1e-9).all()
    assert starts[0] >= 0 and ends[-1] <= audio.size / SR + 1e-3
    # the pause at the comma lies between "on," and "then": silence, not inside either word
    on, then = words[3], words[4]
    assert then.start_s - on.end_s > 0.05
    gap = audio[int(on.end_s * SR) + 80 : int(then.start_s * SR) - 80]
    assert np.abs(gap).max() < 1e-3


def test_espeak_word_onsets_are_speech():
    audio, words = synthesize_with_words("my name is mary and we love london", Voice("en-us"), SR, seed=1)
    frame = SR // 100
    energy = np.array([np.mean(audio[i : i + frame] ** 2) for i in range(0, audio.size - frame, frame)])
    loud = energy > energy.max() * 10 ** (-30 / 10)  # within 30 dB of the loudest 10 ms
    for w in words:  # 10 ms frames in the word's first 80 ms: at least one is speech
        first = int(w.start_s * 100)
        assert loud[first : first + 8].any(), w
    # and before the first word there is no speech
    assert not loud[: max(0, int(words[0].start_s * 100) - 1)].any()


def test_synth_librispeech_word_times_write_textgrids_and_keep_the_audio(tmp_path):
    kwargs = dict(subsets=["dev-clean"], num_speakers=1, utterances_per_speaker=2, text="commands", seed=4)
    plain = synth_librispeech(tmp_path / "plain", **kwargs)
    timed = synth_librispeech(tmp_path / "timed", **kwargs, word_times=True)
    assert plain["word_time_utterances"] == 0 and timed["word_time_utterances"] == 2
    flacs = sorted((tmp_path / "plain").rglob("*.flac"))
    assert len(flacs) == 2
    for flac in flacs:
        assert flac.read_bytes() == (tmp_path / "timed" / flac.relative_to(tmp_path / "plain")).read_bytes()
    grids = find_textgrids(tmp_path / "timed" / "alignments")
    assert len(grids) == 2 and not (tmp_path / "plain" / "alignments").exists()
    for utt_id, path in grids.items():
        speaker, chapter, _ = utt_id.split("-")
        assert path.parent == tmp_path / "timed" / "alignments" / "dev-clean" / speaker / chapter
        transcript = dict(
            line.split(" ", 1)
            for line in (tmp_path / "timed" / "dev-clean" / speaker / chapter / f"{speaker}-{chapter}.trans.txt")
            .read_text().splitlines()
        )[utt_id]
        words = read_textgrid(path)
        said = iter(transcript.split())  # a subsequence: words espeak-ng reads as one ("for the") are left out
        assert all(w.word in said for w in words) and len(words) >= 0.6 * len(transcript.split())
        assert words[0].start_s >= 0.1 - 0.02  # after the 0.1-0.4 s of room tone the utterance starts with


def test_word_times_need_an_espeak_voice(tmp_path):
    with pytest.raises(SpeechkitError, match="pico and piper report none"):
        synth_librispeech(tmp_path / "x", subsets=["dev-clean"], num_speakers=1, utterances_per_speaker=1,
                          engines="pico", word_times=True)


# -- word forms ------------------------------------------------------------------------------------


def test_word_form_reducer_rules_and_exceptions():
    vocabulary = ["cat", "cats", "walk", "walked", "run", "running", "man", "man's", "boys'", "boy", "study",
                  "studies", "use", "used", "us", "stop", "stopped", "make", "making", "go", "goes", "new", "news",
                  "even", "evening", "it", "it's", "always", "pass", "passed", "call", "called", "carry", "carried",
                  "she", "shed"]
    forms = reduce_word_forms(vocabulary)
    expected = {
        "cats": "cat", "walked": "walk", "running": "run", "man's": "man", "boys'": "boy", "studies": "study",
        "used": "use", "stopped": "stop", "making": "make", "goes": "go", "passed": "pass", "called": "call",
        "carried": "carry",
        # exceptions: not the same word, or no base in the corpus
        "news": "news", "evening": "evening", "it's": "it's", "always": "always", "shed": "shed",
    }  # fmt: skip
    assert {w: forms[w] for w in expected} == expected
    assert all(forms[w] == w for w in ("cat", "walk", "run", "man"))
    # a suffix rule needs the base in the corpus
    assert reduce_word_forms(["walked"])["walked"] == "walked"


def test_split_speakers_is_seeded_and_leaves_train_speakers():
    speakers = [str(i) for i in range(20)]
    dev = split_speakers(speakers, 0.1, seed=3)
    assert len(dev) == 2 and dev == split_speakers(reversed(speakers), 0.1, seed=3)
    assert split_speakers(["1"], 0.5, seed=0) == set() and len(split_speakers(["1", "2"], 0.9, seed=0)) == 1


# -- TextGrids ---------------------------------------------------------------------------------------

MFA_TEXTGRID = '''File type = "ooTextFile"
Object class = "TextGrid"

xmin = 0
xmax = 2.5
tiers? <exists>
size = 2
item []:
    item [1]:
        class = "IntervalTier"
        name = "words"
        xmin = 0
        xmax = 2.5
        intervals: size = 4
        intervals [1]:
            xmin = 0
            xmax = 0.4
            text = ""
        intervals [2]:
            xmin = 0.4
            xmax = 0.9
            text = "chapter"
        intervals [3]:
            xmin = 0.9
            xmax = 1.3
            text = "one"
        intervals [4]:
            xmin = 1.3
            xmax = 2.5
            text = "spn"
    item [2]:
        class = "IntervalTier"
        name = "phones"
        xmin = 0
        xmax = 2.5
        intervals: size = 1
        intervals [1]:
            xmin = 0
            xmax = 2.5
            text = ""
'''


def test_textgrid_reading_counts_malformed_and_missing_files(tmp_path):
    root = tmp_path / "mfa"
    good = root / "19" / "198" / "19-198-0001.TextGrid"
    good.parent.mkdir(parents=True)
    good.write_text(MFA_TEXTGRID)
    bad = root / "19" / "198" / "19-198-0002.TextGrid"
    bad.write_text("this is not a TextGrid\n")
    no_tier = root / "19" / "198" / "19-198-0003.TextGrid"
    no_tier.write_text(MFA_TEXTGRID.replace('name = "words"', 'name = "other"'))
    assert read_textgrid(good) == [WordTime("CHAPTER", 0.4, 0.9), WordTime("ONE", 0.9, 1.3)]
    for path in (bad, no_tier):
        with pytest.raises(CorpusError) as info:
            read_textgrid(path)
        assert str(path) in str(info.value) and "\n" not in str(info.value)
    utterances = [Utterance(f"19-198-000{i}", "19", "dev-clean", "CHAPTER ONE", None) for i in range(1, 5)]
    words, problems = read_alignments(utterances, root)
    assert list(words) == ["19-198-0001"] and problems == {"malformed": 2, "missing": 1}
    with pytest.raises(CorpusError, match="no usable TextGrid for the 1 utterances"):
        read_alignments(utterances[1:2], root)
    with pytest.raises(CorpusError, match="no <speaker>-<chapter>-<utt>.TextGrid files"):
        read_alignments(utterances, _empty(tmp_path))
    with pytest.raises(CorpusError, match="no such alignments folder"):
        read_alignments(utterances, tmp_path / "nowhere")
    # what we write, we read back (gaps become empty intervals; words in upper case)
    write_textgrid(tmp_path / "w" / "1-2-3.TextGrid", [WordTime("hi", 0.2, 0.5), WordTime("you", 0.45, 0.8)], 1.0)
    assert read_textgrid(tmp_path / "w" / "1-2-3.TextGrid") == [WordTime("HI", 0.2, 0.5), WordTime("YOU", 0.5, 0.8)]


def _empty(tmp_path: Path) -> Path:
    (tmp_path / "empty").mkdir()
    return tmp_path / "empty"


# -- the builder -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """6 espeak-ng speakers x 8 spoken commands with their true word times."""
    root = tmp_path_factory.mktemp("libriword") / "LibriSpeech"
    synth_librispeech(root, subsets=["dev-clean"], num_speakers=6, utterances_per_speaker=8, text="commands",
                      seed=11, word_times=True)
    return root


def window_start(cut) -> float:
    """Where the cut's 1 s window starts in its source recording (s); negative if padded on the left."""
    if type(cut).__name__ == "MonoCut":
        return cut.start
    [track] = [t for t in cut.tracks if type(t.cut).__name__ == "MonoCut"]
    return track.cut.start - track.offset


def test_libriword_builder_on_a_synthetic_corpus(corpus, tmp_path):
    out = tmp_path / "lw"
    summary = prepare_libriword(corpus, out, alignments=corpus / "alignments", num_words=6, clips_per_word=5,
                                min_clips=3, dev_fraction=0.2, seed=1, num_jobs=1)
    assert summary.startswith(f"Wrote LibriWord to {out}: 6 words")
    labels = (out / "labels.txt").read_text().splitlines()
    assert labels == read_labels(out) and len(labels) == 6
    train, dev = read_cuts(out / "cuts_train.jsonl.gz"), read_cuts(out / "cuts_dev.jsonl.gz")
    cuts = list(train) + list(dev)
    per_label = {label: [c for c in cuts if c.supervisions[0].custom["label"] == label] for label in labels}
    assert all(3 <= len(v) <= 5 for v in per_label.values())
    # the kept words are the ones with most clips, in that order (counted from the true word times)
    counts = [len(v) for v in per_label.values()]
    assert counts == sorted(counts, reverse=True)
    assert all(len(label) >= 3 for label in labels)
    # speakers of dev are not in train; within a word, speakers are dealt in turn
    train_speakers = {c.supervisions[0].speaker for c in train}
    dev_speakers = {c.supervisions[0].speaker for c in dev}
    assert dev_speakers and train_speakers and not train_speakers & dev_speakers
    truth, _ = read_alignments(librispeech_utterances(corpus, num_jobs=1), corpus / "alignments")
    forms = reduce_word_forms({w.word.lower() for words in truth.values() for w in words})
    for label, clips in per_label.items():
        sayers = {u.split("-")[0] for u, words in truth.items() if any(forms[w.word.lower()] == label for w in words)}
        assert len({c.supervisions[0].speaker for c in clips}) == min(len(clips), len(sayers)), label
    for cut in cuts:
        sup = cut.supervisions[0]
        assert cut.duration == pytest.approx(1.0) and cut.load_audio().shape == (1, SR)
        centre = (sup.custom["word_start"] + sup.custom["word_end"]) / 2
        assert centre - window_start(cut) == pytest.approx(0.5, abs=1 / SR)  # the word's midpoint at 0.5 s
        assert sup.text and sup.custom["source"] in cut.id
    # the true times say where each word is: the clip's middle 100 ms is speech
    loud = [np.abs(c.load_audio()[0][7200:8800]).max() for c in cuts]
    assert min(loud) > 0.01


def test_libriword_from_an_aligner_equals_libriword_from_its_textgrids(corpus, tmp_path):
    """The --aligner path (a stand-in aligner that returns the true times) writes TextGrids and the same manifests."""
    truth, _ = read_alignments(librispeech_utterances(corpus, num_jobs=1), corpus / "alignments")
    by_key = {}
    for utt in librispeech_utterances(corpus, num_jobs=1):
        by_key[(utt.recording.num_samples, utt.text)] = truth[utt.id]

    class TrueTimes:
        sample_rate = SR

        def align(self, audio, text):
            return by_key[(audio.size, text)]

    options = dict(num_words=4, clips_per_word=3, min_clips=2, seed=2, num_jobs=1)
    prepare_libriword(corpus, tmp_path / "a", aligner=TrueTimes(), **options)
    prepare_libriword(corpus, tmp_path / "b", alignments=tmp_path / "a" / "alignments", **options)
    assert len(find_textgrids(tmp_path / "a" / "alignments")) == 48
    for name in ("cuts_train.jsonl.gz", "cuts_dev.jsonl.gz"):
        a, b = read_cuts(tmp_path / "a" / name), read_cuts(tmp_path / "b" / name)
        assert [c.id for c in a] == [c.id for c in b]
        assert [c.supervisions[0].custom["word_start"] for c in a] == [c.supervisions[0].custom["word_start"] for c in b]


def test_bad_corpus_and_options_give_one_line_errors(corpus, tmp_path, capsys):
    from speechkit.cli.main import main

    cases = [
        ([str(tmp_path / "missing"), str(tmp_path / "o"), "--alignments", str(corpus / "alignments")], "no such folder"),
        ([str(tmp_path), str(tmp_path / "o"), "--alignments", str(corpus / "alignments")], "no LibriSpeech subset"),
        ([str(corpus), str(tmp_path / "o"), "--alignments", str(tmp_path / "none")], "no such alignments folder"),
        ([str(corpus), str(tmp_path / "o"), "--alignments", str(corpus / "alignments"), "--min-clips", "1000"],
         "no word has 1000 clips or more"),
        ([str(corpus), str(tmp_path / "o"), "--aligner", str(tmp_path / "none.onnx")], "no such model file"),
    ]
    for argv, message in cases:
        assert main(["prepare", "libriword", *argv]) == 2, argv
        err = capsys.readouterr().err.strip()  # lhotse's progress bars may come first
        assert message in err.splitlines()[-1] and "Traceback" not in err, err
    broken = tmp_path / "broken" / "dev-clean" / "1" / "2"
    broken.mkdir(parents=True)
    (broken / "1-2.trans.txt").write_text("1-2-0000 HELLO\n")
    assert main(["prepare", "libriword", str(tmp_path / "broken"), str(tmp_path / "o"),
                 "--alignments", str(corpus / "alignments")]) == 2
    err = capsys.readouterr().err.strip()
    assert "does not exist" in err.splitlines()[-1] and "Traceback" not in err
    with pytest.raises(SpeechkitError, match="exactly one source"):
        prepare_libriword(corpus, tmp_path / "o")
