"""ASR training augmentation, multi-set ``eval-asr`` and the ASR quickstart's options (issue 12)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from fakes import gliding_tone, write_transcribed_cuts

from speechkit.data.asr_datamodule import AsrDataModule
from speechkit.errors import CorpusError
from speechkit.text import train_tokenizer

SR = 16000
TEXTS = ["TURN ON THE LIGHT", "TURN OFF THE RADIO", "CALL MOM", "STOP THE TIMER", "OPEN THE DOOR", "PLAY SOME MUSIC"]


def _speech(seconds: float, seed: int) -> np.ndarray:
    return gliding_tone(seconds, seed, base_hz=180.0, swing_hz=60.0)


def _write_cuts(folder: Path, name: str, texts: list[str], seconds: list[float], signal=_speech) -> Path:
    return write_transcribed_cuts(folder, name, texts, seconds, signal)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("asr_aug")
    train = _write_cuts(root, "train", TEXTS, [1.0 + 0.15 * i for i in range(len(TEXTS))])
    valid = _write_cuts(root, "valid", TEXTS[:2], [1.2, 1.4])
    noise = _write_cuts(root, "noise", ["", ""], [2.0, 3.0],
                        signal=lambda s, i: np.random.default_rng(i).uniform(-0.3, 0.3, int(s * SR)).astype(np.float32))
    tokenizer = root / "bpe.model"
    train_tokenizer([t.lower() for t in TEXTS] * 5, tokenizer, vocab_size=30)
    return {"train": train, "valid": valid, "noise": noise, "tokenizer": tokenizer}


def _datamodule(corpus: dict, **kw) -> AsrDataModule:
    args = {"train_manifests": [str(corpus["train"])], "valid_manifests": [str(corpus["valid"])],
            "tokenizer_path": str(corpus["tokenizer"]), "max_duration": 30.0, "num_buckets": 2,
            "num_workers": 0, "min_seconds": 0.5}
    return AsrDataModule(**{**args, **kw})


def _first_batch(dm: AsrDataModule, split: str = "train", torch_seed: int = 0) -> dict:
    torch.manual_seed(torch_seed)  # what seed_everything does: the per-worker generator follows it
    loader = dm.train_dataloader() if split == "train" else dm.val_dataloader()
    return next(iter(loader))


ALL = ["formant", "pitch", "babble", "reverb", "eq", "bandlimit", "codec"]


def test_augmented_training_batch_differs_from_the_clean_one_and_keeps_lengths(corpus):
    clean = _first_batch(_datamodule(corpus))
    dm = _datamodule(corpus, augmentations=ALL, augment_p=1.0, noise_manifests=[str(corpus["noise"])],
                     noise_prob=1.0, noise_snr_db=[10.0, 10.0])
    augmented = _first_batch(dm)
    assert augmented["ids"] == clean["ids"] and augmented["texts"] == clean["texts"]
    assert torch.equal(augmented["audio_lens"], clean["audio_lens"])  # words stay inside the utterance
    assert torch.equal(augmented["tokens"], clean["tokens"])
    for i, n in enumerate(clean["audio_lens"].tolist()):
        a, c = augmented["audio"][i, :n], clean["audio"][i, :n]
        assert not torch.allclose(a, c, atol=1e-3)
        assert float(a.abs().max()) <= 1.0
    # Validation is never augmented.
    assert torch.equal(_first_batch(dm, "valid")["audio"], _first_batch(_datamodule(corpus), "valid")["audio"])


def test_augmentation_is_seeded_same_seed_same_audio(corpus):
    kw = {"augmentations": ALL, "augment_p": 0.7, "noise_manifests": [str(corpus["noise"])], "noise_prob": 0.5}
    first = _first_batch(_datamodule(corpus, seed=3, **kw))
    again = _first_batch(_datamodule(corpus, seed=3, **kw))
    assert first["ids"] == again["ids"] and torch.equal(first["audio"], again["audio"])
    other = _first_batch(_datamodule(corpus, seed=3, **kw), torch_seed=1)  # another epoch/worker seed
    assert not torch.equal(first["audio"], other["audio"])


def test_noise_alone_mixes_at_the_asked_snr(corpus):
    clean = _first_batch(_datamodule(corpus))
    noisy = _first_batch(_datamodule(corpus, noise_manifests=[str(corpus["noise"])], noise_prob=1.0,
                                     noise_snr_db=[6.0, 6.0]))
    n = int(clean["audio_lens"][0])
    c, x = clean["audio"][0, :n].double(), noisy["audio"][0, :n].double()
    snr = 10 * torch.log10(c.pow(2).mean() / (x - c).pow(2).mean())
    assert abs(float(snr) - 6.0) < 0.5


def test_bad_augmentation_settings_are_one_line_errors(corpus):
    with pytest.raises(CorpusError, match="unknown augmentation"):
        _datamodule(corpus, augmentations=["echo"])
    with pytest.raises(CorpusError, match=r"augment_p \(1.5\)"):
        _datamodule(corpus, augmentations=["eq"], augment_p=1.5)


# -- eval-asr over several test sets -----------------------------------------------------------
class _FakeRecognizer:
    """Says "call" at full context and nothing in chunks (so the table's columns differ)."""

    sample_rate = SR
    tokens = ["<blk>", "<unk>", "▁CALL"]
    num_params = 0

    def log_probs(self, audios, options):
        out = []
        for audio in audios:
            lp = np.full((max(len(audio) // 640, 2), 3), -20.0, np.float32)
            lp[:, 0] = 0.0
            if not options.chunk_ms:
                lp[0] = [-20.0, -20.0, 0.0]
            out.append(lp)
        return out


@pytest.fixture
def fake_model(monkeypatch, tmp_path):
    import speechkit.inference.asr as asr

    monkeypatch.setattr(asr, "load_recognizer", lambda path: _FakeRecognizer())
    return tmp_path / "model.ckpt"  # never read


def test_eval_asr_over_two_sets_prints_one_table_and_json(corpus, fake_model, tmp_path, capsys):
    from speechkit.cli.main import main

    calls = _write_cuts(tmp_path, "calls", ["CALL MOM", "CALL"], [1.0, 1.0])
    out = tmp_path / "table.json"
    code = main(["eval-asr", "--model", str(fake_model), "--set", f"espeak_heldout={corpus['valid']}",
                 "--set", f"pico={calls}", "--chunk-ms", "0,320", "--out", str(out)])
    assert code == 0
    lines = capsys.readouterr().out.splitlines()
    assert "full context" in lines[0] and "320 ms" in lines[0]
    rows = {line.split()[0]: line.split() for line in lines[2:4]}
    table = json.loads(out.read_text())
    assert [r["set"] for r in table["rows"]] == ["espeak_heldout", "pico"] and table["chunk_ms"] == [0, 320]
    pico = table["rows"][1]["results"]
    assert pico[0]["wer"] == pytest.approx(1 / 3)  # "CALL MOM" + "CALL" heard as "CALL", "CALL"
    assert pico[1]["wer"] == 1.0 and pico[1]["decoding"]["chunk_ms"] == 320  # nothing heard in chunks
    assert rows["pico"][1:] == ["2", "33.33%", "100.00%"]
    assert rows["espeak_heldout"][1] == "2" and rows["espeak_heldout"][-1] == "100.00%"


@pytest.mark.parametrize("spec, message", [
    ("heldout", "expected NAME=PATH"),
    ("=x.jsonl.gz", "expected NAME=PATH"),
    ("a=MISSING,b=MISSING", "test set .a.: .*nope.jsonl.gz: no such folder or manifest"),
])
def test_eval_asr_bad_set_is_a_clear_one_line_error(fake_model, tmp_path, capsys, spec, message):
    from speechkit.cli.main import main

    spec = spec.replace("MISSING", str(tmp_path / "nope.jsonl.gz"))
    assert main(["eval-asr", "--model", str(fake_model), "--set", spec]) == 2
    err = capsys.readouterr().err
    assert err.startswith("speechkit: error: ") and len(err.strip().splitlines()) == 1
    assert __import__("re").search(message, err)
    assert "Traceback" not in err


def test_eval_asr_twice_named_set_and_bad_chunk_list(corpus, fake_model, capsys):
    from speechkit.cli.main import main

    assert main(["eval-asr", "--model", str(fake_model), "--set", f"a={corpus['valid']},a={corpus['valid']}"]) == 2
    assert "given twice" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["eval-asr", "--model", str(fake_model), "--set", f"a={corpus['valid']}", "--chunk-ms", "0,abc"])
    assert "expected chunk sizes in ms" in capsys.readouterr().err


# -- the ASR quickstart's --engines ------------------------------------------------------------
def _quickstart_args(argv: list[str]):
    from speechkit.cli.main import build_parser

    return build_parser().parse_args(["quickstart", "asr", *argv])


def test_quickstart_asr_engines_option():
    from speechkit.quickstart.asr import cross_engine_label, options_from_args

    default = options_from_args(_quickstart_args([]))
    assert default.engines == "espeak" and cross_engine_label(default.engines) == "pico (engine never trained on)"
    mix = options_from_args(_quickstart_args(["--engines", "espeak:3,pico:1", "--speakers", "7", "--no-synth-cache"]))
    assert mix.engines == "espeak:3,pico:1" and mix.speakers == 7 and mix.no_synth_cache
    assert cross_engine_label(mix.engines) == "pico (seen engine, unseen speakers)"
    assert options_from_args(_quickstart_args(["--engines", "pico"])).engines == "pico"


@pytest.mark.parametrize("engines", ["flite", "espeak:x", "nosuch"])
def test_quickstart_asr_bad_engines_fail_before_any_work(engines, capsys):
    from speechkit.cli.main import main
    from speechkit.errors import SpeechkitError
    from speechkit.quickstart.asr import options_from_args

    with pytest.raises(SpeechkitError):
        options_from_args(_quickstart_args(["--engines", engines]))
    assert main(["quickstart", "asr", "--engines", engines]) == 2
    assert capsys.readouterr().err.startswith("speechkit: error: ")
