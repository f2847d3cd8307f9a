"""Text normalisation and the sentencepiece tokenizer (blank at id 0)."""

from __future__ import annotations

import pickle

import pytest

from speechkit.decoding import tokens_to_text
from speechkit.errors import CorpusError, ModelFileError, SpeechkitError
from speechkit.text import Tokenizer, integer_to_words, normalize_text, train_tokenizer, train_tokenizer_from_manifests

GOLDEN = [
    ("Set a timer for 5 minutes, please!", "SET A TIMER FOR FIVE MINUTES PLEASE"),
    ("It\u2019s 7:30 on the 21st.", "IT'S SEVEN THIRTY ON THE TWENTY FIRST"),
    ("Wake me at 6:05, or 7:00", "WAKE ME AT SIX OH FIVE OR SEVEN O'CLOCK"),
    ("Add 1,250 items at $2.50 (50% off)",
     "ADD ONE THOUSAND TWO HUNDRED FIFTY ITEMS AT TWO DOLLARS FIFTY CENTS FIFTY PERCENT OFF"),
    ("pi is 3.14", "PI IS THREE POINT ONE FOUR"),
    ("Caf\u00e9 cr\u00e8me \u2014 na\u00efve Stra\u00dfe", "CAFE CREME NAIVE STRASSE"),
    ("rock-and-roll & jazz", "ROCK AND ROLL AND JAZZ"),
    ("  'Tis the dogs' \"bone\" ' ", "'TIS THE DOGS' BONE"),
    ("the 3rd, 12th and 40th", "THE THIRD TWELFTH AND FORTIETH"),
    ("", ""),
]


@pytest.mark.parametrize("text,expected", GOLDEN)
def test_normalize_text_golden_pairs(text, expected):
    assert normalize_text(text) == expected
    assert normalize_text(expected) == expected  # idempotent


def test_normalize_keeps_librispeech_transcripts():
    text = "HE HOPED THERE WOULD BE STEW FOR DINNER TURNIPS AND CARROTS AND BRUISED POTATOES O'ER 'TWAS"
    assert normalize_text(text) == text


def test_integer_to_words():
    assert integer_to_words(0) == "ZERO"
    assert integer_to_words(115) == "ONE HUNDRED FIFTEEN"
    assert integer_to_words(2_000_019) == "TWO MILLION NINETEEN"
    assert integer_to_words(1_000_000_000_001) == "ONE TRILLION ONE"


def test_normalize_rejects_unmappable_characters_naming_the_utterance():
    with pytest.raises(SpeechkitError, match=r"'utt-7'.*'\u4f60' \(U\+4F60\)"):
        normalize_text("say \u4f60\u597d now", utterance_id="utt-7")
    with pytest.raises(SpeechkitError, match=r"U\+007E"):
        normalize_text("a ~ b")


COMMANDS = [
    "turn on the kitchen lights", "turn off the bedroom lights", "set a timer for ten minutes",
    "what is the weather tomorrow", "play some jazz music", "call mom", "add milk to the shopping list",
    "set an alarm for seven thirty", "stop the music", "what time is it",
]


@pytest.mark.parametrize("model_type", ["unigram", "bpe"])
def test_tokenizer_round_trip_with_blank_at_zero(tmp_path, model_type):
    path = tmp_path / "bpe.model"
    tok = train_tokenizer(COMMANDS * 5, path, vocab_size=60, model_type=model_type)
    assert path.is_file()
    tokens = tok.tokens()
    assert tokens[0] == "<blk>" and tokens[1] == "<unk>" and tok.blank_id == 0
    assert len(tokens) == tok.vocab_size <= 60
    for text in COMMANDS + ["quiz jumps"]:  # unseen letters still encode (required_chars)
        ids = tok.encode(text)
        assert 0 not in ids and 1 not in ids
        assert tok.decode(ids) == normalize_text(text)
        assert tokens_to_text(ids, tokens) == normalize_text(text)
    assert tok.decode([0, *tok.encode("call mom"), 0]) == "CALL MOM"
    reloaded = Tokenizer(path)
    assert reloaded.encode("stop the music") == tok.encode("stop the music")
    assert pickle.loads(pickle.dumps(tok)).tokens() == tokens


def test_tokenizer_from_manifests(tmp_path):
    from lhotse import SupervisionSegment, SupervisionSet

    sups = [SupervisionSegment(f"utt{i}", f"rec{i}", 0.0, 1.0, text=t) for i, t in enumerate(COMMANDS * 3)]
    manifest = tmp_path / "supervisions.jsonl.gz"
    SupervisionSet.from_segments(sups).to_file(manifest)
    tok = train_tokenizer_from_manifests([manifest], tmp_path / "units.model", vocab_size=50)
    assert tok.decode(tok.encode("CALL MOM")) == "CALL MOM"

    bad = tmp_path / "bad.jsonl.gz"
    SupervisionSet.from_segments([SupervisionSegment("bad-utt", "r", 0.0, 1.0, text="caf\u00e9 \u2603")]).to_file(bad)
    with pytest.raises(SpeechkitError, match="'bad-utt'"):
        train_tokenizer_from_manifests([bad], tmp_path / "x.model", vocab_size=50)
    with pytest.raises(CorpusError, match="no such manifest"):
        train_tokenizer_from_manifests([tmp_path / "missing.jsonl.gz"], tmp_path / "x.model")


def test_tokenizer_rejects_bad_model_files_and_sizes(tmp_path):
    junk = tmp_path / "junk.model"
    junk.write_bytes(b"not a model")
    with pytest.raises(ModelFileError, match="junk.model"):
        Tokenizer(junk)
    with pytest.raises(ModelFileError, match="no such tokenizer"):
        Tokenizer(tmp_path / "none.model")
    with pytest.raises(SpeechkitError, match="too small"):
        train_tokenizer(COMMANDS, tmp_path / "t.model", vocab_size=10)
    with pytest.raises(SpeechkitError, match="no transcripts"):
        train_tokenizer(["", "..."], tmp_path / "t.model", vocab_size=40)
