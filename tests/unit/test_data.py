"""Data layer: corpus recipes, manifests, augmentation, DataModules (tiny generated corpora)."""

from __future__ import annotations

import json
from pathlib import Path

import lightning.pytorch as L
import numpy as np
import pytest
import soundfile as sf
import torch
from fakes import SCENES, SPEAKERS, SR, make_speech_commands, make_tau2020, tone
from lhotse import CutSet

from speechkit.cli.main import main
from speechkit.data import augment as aug
from speechkit.data.corpora import prepare_librispeech, prepare_speech_commands, prepare_tau2020_mobile
from speechkit.data.corpora.speech_commands import KEYWORDS_12, V2_WORDS
from speechkit.data.datamodules import ClassificationDataModule, KWSDataModule, fit_length
from speechkit.data.manifests import cuts_path, read_labels
from speechkit.errors import AudioError, CorpusError

# ---------------------------------------------------------------------------- tiny corpora


@pytest.fixture(scope="module")
def sc_tree(tmp_path_factory) -> Path:
    return make_speech_commands(tmp_path_factory.mktemp("sc") / "speech_commands_v0.02")


@pytest.fixture(scope="module")
def sc12(sc_tree, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sc12")
    prepare_speech_commands(sc_tree, out, version=2, classes="12", num_jobs=1)
    return out


def _ids(out: Path, split: str) -> set[str]:
    return {c.id for c in CutSet.from_file(cuts_path(out, split))}


def _labels_by_id(out: Path, split: str) -> dict[str, str]:
    return {c.id: c.supervisions[0].custom["label"] for c in CutSet.from_file(cuts_path(out, split))}


# ---------------------------------------------------------------------------- Speech Commands


def test_speech_commands_12class_labels_and_splits(sc_tree, sc12):
    labels = read_labels(sc12)
    assert labels == ["_silence_", "_unknown_", *KEYWORDS_12]
    assert json.loads((sc12 / "labels.json").read_text()) == labels
    listed = {
        "valid": {line[:-4] for line in (sc_tree / "validation_list.txt").read_text().split()},
        "test": {line[:-4] for line in (sc_tree / "testing_list.txt").read_text().split()},
    }
    for split, speaker in (("train", SPEAKERS[0]), ("valid", SPEAKERS[1]), ("test", SPEAKERS[2])):
        cuts = CutSet.from_file(cuts_path(sc12, split))
        words = [c for c in cuts if c.supervisions[0].custom["label"] != "_silence_"]
        silence = [c for c in cuts if c.supervisions[0].custom["label"] == "_silence_"]
        assert {c.id for c in words} == {f"{w}/{speaker}_nohash_0" for w in V2_WORDS}
        if split in listed:
            assert {c.id for c in words} == listed[split]
        for c in words:
            sup = c.supervisions[0]
            assert sup.speaker == speaker
            assert sup.custom["label"] == (sup.text if sup.text in KEYWORDS_12 else "_unknown_")
        # One file per keyword per split -> mean keyword count 1 -> one 1 s silence cut.
        assert len(silence) == 1 and silence[0].duration == pytest.approx(1.0)
        assert silence[0].supervisions[0].text == ""
        assert silence[0].load_audio().shape == (1, SR)
    noise = CutSet.from_file(cuts_path(sc12, "noise"))
    assert sorted(c.duration for c in noise) == pytest.approx([2.0, 3.0])


def test_speech_commands_all_words_and_version(sc_tree, tmp_path):
    summary = prepare_speech_commands(sc_tree, tmp_path, classes="35", num_jobs=1)
    assert "v2" in summary and "35 classes" in summary
    assert read_labels(tmp_path) == sorted(V2_WORDS)
    labels = _labels_by_id(tmp_path, "train")
    assert len(labels) == 35 and all(k.split("/")[0] == v for k, v in labels.items())
    with pytest.raises(CorpusError, match=r"expected Speech Commands v1 \(30 words\).*not in v1: backward"):
        prepare_speech_commands(sc_tree, tmp_path / "v1", version=1)
    with pytest.raises(CorpusError, match="--classes 30 needs 30 word folders, found 35"):
        prepare_speech_commands(sc_tree, tmp_path / "c30", classes="30")


def test_speech_commands_keywords_and_unknown_ratio(sc_tree, tmp_path):
    prepare_speech_commands(sc_tree, tmp_path / "a", keywords=["yes", "bed"], unknown_ratio=2.0, seed=3, num_jobs=1)
    assert read_labels(tmp_path / "a") == ["_silence_", "_unknown_", "yes", "bed"]
    labels = _labels_by_id(tmp_path / "a", "train")
    counts = {name: list(labels.values()).count(name) for name in read_labels(tmp_path / "a")}
    assert counts == {"_silence_": 1, "_unknown_": 2, "yes": 1, "bed": 1}  # 2 x mean keyword count
    # Deterministic for a seed.
    prepare_speech_commands(sc_tree, tmp_path / "b", keywords=["yes", "bed"], unknown_ratio=2.0, seed=3, num_jobs=1)
    assert _labels_by_id(tmp_path / "a", "train") == _labels_by_id(tmp_path / "b", "train")
    with pytest.raises(CorpusError, match="no folder for keyword.*hello"):
        prepare_speech_commands(sc_tree, tmp_path / "c", keywords=["yes", "hello"])


def test_speech_commands_official_test_dir(sc_tree, tmp_path):
    test_dir = tmp_path / "speech_commands_test_set_v0.02"
    for folder, name in (("yes", "dddd4444_nohash_0.wav"), ("_unknown_", "bed_eeee5555_nohash_1.wav"),
                         ("_silence_", "silence_0.wav")):
        (test_dir / folder).mkdir(parents=True)
        sf.write(test_dir / folder / name, tone(300, 1.0), SR)
    prepare_speech_commands(sc_tree, tmp_path / "out", test_dir=test_dir, num_jobs=1)
    cuts = {c.id: c.supervisions[0] for c in CutSet.from_file(cuts_path(tmp_path / "out", "test"))}
    assert {k: (s.text, s.custom["label"], s.speaker) for k, s in cuts.items()} == {
        "yes/dddd4444_nohash_0": ("yes", "yes", "dddd4444"),
        "_unknown_/bed_eeee5555_nohash_1": ("bed", "_unknown_", "eeee5555"),
        "_silence_/silence_0": ("", "_silence_", None),
    }


def _copy_tree(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


@pytest.mark.parametrize(
    "breakage, error, message",
    [
        ("missing", CorpusError, r"no such folder; expected CORPUS_DIR/<word>/<speaker>_nohash_<k>\.wav"),
        ("no_words", CorpusError, "no word folders found"),
        ("no_lists", CorpusError, r"validation_list\.txt: missing list file"),
        ("list_names_missing", CorpusError, r"validation_list\.txt:1: lists 'yes/gone_nohash_0\.wav'"),
        ("corrupt_wav", AudioError, r"no/aaaa1111_nohash_0\.wav: cannot read audio header"),
        ("empty_word_folder", CorpusError, r"zzz: folder has no \.wav files"),
        ("nested", CorpusError, "did you mean .*speech_commands_v0.02"),
    ],
)
def test_speech_commands_bad_folders(sc_tree, tmp_path, breakage, error, message):
    root = tmp_path / "corpus"
    if breakage == "no_words":
        root.mkdir()
        (root / "_background_noise_").mkdir()
    elif breakage == "nested":
        _copy_tree(sc_tree, root / "speech_commands_v0.02")
    elif breakage != "missing":
        _copy_tree(sc_tree, root)
    if breakage == "no_lists":
        (root / "validation_list.txt").unlink()
    elif breakage == "list_names_missing":
        (root / "validation_list.txt").write_text("yes/gone_nohash_0.wav\n")
    elif breakage == "corrupt_wav":
        (root / "no" / "aaaa1111_nohash_0.wav").write_bytes(b"RIFF\x00\x00garbage" * 10)
    elif breakage == "empty_word_folder":
        (root / "zzz").mkdir()
    with pytest.raises(error, match=message):
        prepare_speech_commands(root, tmp_path / "out", num_jobs=1)
    assert not (tmp_path / "out" / "labels.json").exists()


def test_cli_prepare_speech_commands(sc_tree, tmp_path, capsys):
    assert main(["prepare", "speech-commands", str(sc_tree), str(tmp_path / "out"), "--keywords", "up,down"]) == 0
    out = capsys.readouterr().out
    assert "Wrote manifests" in out and "train 36" in out and "_silence_ 1/1/1" in out
    assert read_labels(tmp_path / "out") == ["_silence_", "_unknown_", "up", "down"]

    assert main(["prepare", "speech-commands", str(tmp_path / "nowhere"), str(tmp_path / "o2")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("speechkit: error: ") and err.count("\n") == 1 and "no such folder" in err


# ---------------------------------------------------------------------------- DataModule


def _concat(loader) -> dict:
    batches = list(loader)
    out = {k: torch.cat([b[k] for b in batches]) for k in ("audio", "audio_lens", "labels")}
    out["ids"] = [i for b in batches for i in b["ids"]]
    return out


def test_kws_datamodule_batches(sc_tree, sc12):
    dm = KWSDataModule(str(sc12), batch_size=8, seed=1)
    assert dm.num_classes == 12 and dm.labels[:2] == ["_silence_", "_unknown_"]  # before setup
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["audio"].shape == (8, SR) and batch["audio"].dtype == torch.float32
    assert batch["audio_lens"].dtype == torch.int64 and batch["audio_lens"].shape == (8,)
    assert batch["labels"].dtype == torch.int64 and int(batch["labels"].max()) < 12
    assert batch["audio"].abs().max() <= 1.0 and len(batch["ids"]) == 8

    # Evaluation: deterministic, not augmented, the file's samples then zeros.
    dm.setup("test")
    first = _concat(dm.test_dataloader())
    again = _concat(dm.predict_dataloader())
    assert torch.equal(first["audio"], again["audio"]) and len(first["ids"]) == 36
    i = first["ids"].index("yes/cccc3333_nohash_0")
    raw, _ = sf.read(sc_tree / "yes" / "cccc3333_nohash_0.wav", dtype="float32")
    assert int(first["audio_lens"][i]) == len(raw) == SR // 4
    np.testing.assert_allclose(first["audio"][i, : len(raw)].numpy(), raw, atol=1e-6)
    assert float(first["audio"][i, len(raw):].abs().max()) == 0.0
    assert dm.labels[int(first["labels"][i])] == "yes"


class _RecordIds(L.LightningModule):
    """Writes the cut ids each DDP rank trains on to ``out_dir/rank<k>.txt``."""

    def __init__(self, out_dir: str):
        super().__init__()
        self.out_dir = out_dir
        self.layer = torch.nn.Linear(1, 1)

    def training_step(self, batch, batch_idx):
        with open(Path(self.out_dir) / f"rank{self.global_rank}.txt", "a") as f:
            f.write("".join(f"{i}\n" for i in batch["ids"]))
        return self.layer(batch["audio"][:, :1]).sum()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


def test_kws_datamodule_under_two_process_ddp(sc12, tmp_path):
    """Lightning swaps in a DistributedSampler: 2 gloo ranks see disjoint halves of train."""
    trainer = L.Trainer(
        accelerator="cpu", devices=2, strategy="ddp_spawn", max_epochs=1, limit_val_batches=0,
        logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
    )
    trainer.fit(_RecordIds(str(tmp_path)), datamodule=KWSDataModule(str(sc12), batch_size=6))
    seen = [(tmp_path / f"rank{r}.txt").read_text().split() for r in (0, 1)]
    assert len(seen[0]) == len(seen[1]) == 18 and not set(seen[0]) & set(seen[1])
    assert set(seen[0]) | set(seen[1]) == _ids(sc12, "train")


def test_train_augmentation_changes_audio_and_eval_does_not(sc12):
    dm = KWSDataModule(str(sc12), batch_size=4, noise_prob=1.0, seed=0)
    train = dm._dataset("train")
    plain = ClassificationDataModule(str(sc12))._dataset("train")
    assert plain.augment is None and train.augment is not None and len(train.augment.noises) == 2
    i = next(k for k, c in enumerate(train.cuts) if c.id.startswith("yes/"))
    assert not np.allclose(train[i]["audio"], plain[i]["audio"])  # noise (p=1) was added
    assert dm._dataset("valid").augment is None and dm._dataset("test").augment is None


def test_classification_datamodule_resamples_and_reports_missing(sc12, tmp_path):
    dm = ClassificationDataModule(str(sc12), batch_size=3, sample_rate=8000, clip_seconds=0.5)
    batch = next(iter(dm.val_dataloader()))
    assert batch["audio"].shape == (3, 4000)
    with pytest.raises(CorpusError, match=r"labels\.json: no such file; run `speechkit prepare"):
        KWSDataModule(str(tmp_path))
    (tmp_path / "labels.json").write_text('["a", "b"]')
    with pytest.raises(CorpusError, match=r"cuts_train\.jsonl\.gz: no such manifest"):
        KWSDataModule(str(tmp_path)).setup("fit")


def test_fit_length_pads_and_crops():
    x = np.arange(10, dtype=np.float32)
    np.testing.assert_array_equal(fit_length(x, 4), [3, 4, 5, 6])  # centre crop
    np.testing.assert_array_equal(fit_length(x, 12), [*range(10), 0, 0])
    crops = {tuple(fit_length(x, 4, np.random.default_rng(s))) for s in range(20)}
    assert len(crops) > 1 and all(np.all(np.diff(c) == 1) for c in crops)


# ---------------------------------------------------------------------------- augmentation


def test_shift_moves_content_with_zero_fill():
    x = np.zeros(400, dtype=np.float32)
    x[100] = 1.0
    assert np.argmax(aug.shift(x, 50)) == 150 and aug.shift(x, 50)[:50].sum() == 0
    assert np.argmax(aug.shift(x, -60)) == 40 and aug.shift(np.ones(400, np.float32), -60)[-60:].sum() == 0
    rng = np.random.default_rng(0)
    positions = {int(np.argmax(aug.random_time_shift(x, 5.0, 16000, rng))) for _ in range(50)}
    assert len(positions) > 5 and min(positions) >= 20 and max(positions) <= 180  # ±80 samples


def test_mix_at_snr_hits_requested_snr():
    rng = np.random.default_rng(0)
    clean = tone(440, 1.0)
    noise = rng.normal(0, 0.2, SR).astype(np.float32)
    for snr in (-5.0, 0.0, 10.0, 20.0):
        mixed = aug.mix_at_snr(clean, noise, snr)
        added = mixed - clean
        measured = 10 * np.log10(np.mean(clean.astype(np.float64) ** 2) / np.mean(added.astype(np.float64) ** 2))
        assert abs(measured - snr) < 0.5
    assert np.array_equal(aug.mix_at_snr(np.zeros(100, np.float32), noise[:100], 0.0), np.zeros(100))


def test_noise_gain_recipe_and_clamp():
    rng = np.random.default_rng(0)
    noises = [np.full(3000, 0.9, dtype=np.float32)]
    a = aug.WaveformAugment(noises=noises, noise_prob=0.0, time_shift_ms=0)
    loud = np.full(1000, 3.0, dtype=np.float32)
    assert np.array_equal(a.add_noise_and_shift(loud, rng), np.ones(1000))  # no noise, clamped
    silence = np.zeros(1000, dtype=np.float32)
    gains = [float(a.add_noise_and_shift(silence, rng, is_silence=True)[0]) / 0.9 for _ in range(200)]
    assert 0 <= min(gains) and max(gains) <= 1.0 / 0.9 + 1e-6 and max(gains) > 0.5  # silence: U(0, 1)
    b = aug.WaveformAugment(noises=noises, noise_prob=1.0, time_shift_ms=0)
    gains = [float(b.add_noise_and_shift(silence, rng, is_silence=False)[0]) / 0.9 for _ in range(200)]
    assert 0 <= min(gains) and max(gains) <= 0.1 + 1e-6  # speech: U(0, 0.1)
    out = aug.mix_at_gain(np.full(10, 0.8, np.float32), np.ones(10, np.float32), 0.5)
    assert aug.clamp(out).max() == 1.0


def test_speed_and_volume_perturbation():
    x = tone(440, 1.0)
    assert len(aug.speed_perturb(x, 1.1, SR)) == pytest.approx(SR / 1.1, abs=2)
    assert len(aug.speed_perturb(x, 0.9, SR)) == pytest.approx(SR / 0.9, abs=2)
    np.testing.assert_allclose(aug.volume_perturb(x, 6.0206), 2 * x, rtol=1e-4)
    a = aug.WaveformAugment(speed_factors=(0.9, 1.1), volume_db=3.0)
    lengths = {len(a.perturb(x, np.random.default_rng(s))) for s in range(10)}
    assert len(lengths) == 2


# ---------------------------------------------------------------------------- LibriSpeech


def make_librispeech(root: Path) -> Path:
    texts = {"1-10": ["HELLO WORLD", "GOOD MORNING"], "2-20": ["SPEECH KIT", "TINY TREE"]}
    for chapter_id, lines in texts.items():
        speaker, chapter = chapter_id.split("-")
        folder = root / "dev-clean" / speaker / chapter
        folder.mkdir(parents=True)
        trans = []
        for k, text in enumerate(lines):
            utt = f"{chapter_id}-{k:04d}"
            sf.write(folder / f"{utt}.flac", tone(300 + 100 * k, 0.3, seed=k), SR, format="FLAC")
            trans.append(f"{utt} {text}")
        (folder / f"{chapter_id}.trans.txt").write_text("\n".join(trans) + "\n")
    return root


def test_librispeech_prepare_through_lhotse(tmp_path, capsys):
    root = make_librispeech(tmp_path / "LibriSpeech")
    assert main(["prepare", "librispeech", str(root), str(tmp_path / "out"), "--num-jobs", "1"]) == 0
    assert "dev-clean 4 cuts" in capsys.readouterr().out
    cuts = CutSet.from_file(tmp_path / "out" / "cuts_dev-clean.jsonl.gz")
    got = {c.id: (c.supervisions[0].text, c.supervisions[0].speaker, round(c.duration, 3)) for c in cuts}
    assert got == {
        "1-10-0000": ("HELLO WORLD", "1", 0.3), "1-10-0001": ("GOOD MORNING", "1", 0.3),
        "2-20-0000": ("SPEECH KIT", "2", 0.3), "2-20-0001": ("TINY TREE", "2", 0.3),
    }


def test_librispeech_bad_layout(tmp_path):
    with pytest.raises(CorpusError, match="no LibriSpeech subset folders found.*did you mean"):
        prepare_librispeech(make_librispeech(tmp_path / "x" / "LibriSpeech").parent, tmp_path / "out")
    with pytest.raises(CorpusError, match="no subset folder.*train-clean-100"):
        prepare_librispeech(tmp_path / "x" / "LibriSpeech", tmp_path / "out", subsets=["train-clean-100"])
    (tmp_path / "x" / "LibriSpeech" / "dev-clean" / "2" / "20" / "2-20-0001.flac").unlink()
    with pytest.raises(CorpusError, match=r"2-20\.trans\.txt:2: names 2-20-0001, but .* does not exist"):
        prepare_librispeech(tmp_path / "x" / "LibriSpeech", tmp_path / "out")


# ---------------------------------------------------------------------------- TAU 2020 Mobile

def test_tau2020_prepare_and_datamodule(tmp_path):
    root = make_tau2020(tmp_path / "TAU-urban-acoustic-scenes-2020-mobile-development")
    summary = prepare_tau2020_mobile(root, tmp_path / "out", num_jobs=1)
    assert "Devices: train a 10, s1 10; valid b 10; test b 10" in summary
    assert read_labels(tmp_path / "out") == sorted(SCENES)
    test = CutSet.from_file(cuts_path(tmp_path / "out", "test"))
    cut = next(c for c in test if c.id == "park-lyon-4-2-b")
    assert cut.supervisions[0].custom == {"label": "park", "device": "b", "city": "lyon", "identifier": "lyon-4"}
    assert len(CutSet.from_file(cuts_path(tmp_path / "out", "train"))) == 20

    dm = ClassificationDataModule(str(tmp_path / "out"), batch_size=5, sample_rate=44100, clip_seconds=0.1)
    batch = next(iter(dm.train_dataloader()))
    assert dm.num_classes == 10 and batch["audio"].shape == (5, 4410)
    assert batch["audio_lens"].tolist() == [2205] * 5
    assert dm.groups == [] and "groups" not in batch

    # Per-device groups: only the test split carries them, as indices into dm.groups.
    dm = ClassificationDataModule(str(tmp_path / "out"), batch_size=5, sample_rate=44100, clip_seconds=0.1,
                                  group_by="device")
    assert dm.groups == ["b"]
    test_batch = next(iter(dm.test_dataloader()))
    assert test_batch["groups"].tolist() == [0] * 5 and test_batch["groups"].dtype == torch.int64
    assert "groups" not in next(iter(dm.train_dataloader()))
    bad = ClassificationDataModule(str(tmp_path / "out"), sample_rate=44100, clip_seconds=0.1, group_by="speaker")
    with pytest.raises(CorpusError, match=r"has no supervision custom\['speaker'\]; group_by needs"):
        _ = bad.groups


def test_kws_datamodule_passes_its_arguments_by_keyword(sc12):
    dm = KWSDataModule(str(sc12), noise_prob=0.5, seed=3, volume_db=2.0)
    base = ClassificationDataModule(str(sc12))
    assert dm.hparams.batch_size == 100 and dm.hparams.augment is True  # the KWS defaults
    assert (dm.hparams.noise_prob, dm.hparams.seed, dm.hparams.volume_db) == (0.5, 3, 2.0)
    assert set(dm.hparams) == set(base.hparams)
    with pytest.raises(TypeError, match="unexpected keyword argument 'noise_probability'"):
        KWSDataModule(str(sc12), noise_probability=0.5)


def test_tau2020_bad_layout(tmp_path):
    root = make_tau2020(tmp_path / "tau")
    (root / "evaluation_setup" / "fold1_evaluate.csv").unlink()
    with pytest.raises(CorpusError, match=r"fold1_evaluate\.csv: missing; expected CORPUS_DIR/meta\.csv"):
        prepare_tau2020_mobile(root, tmp_path / "out")
    (root / "meta.csv").write_text("filename,scene_label\naudio/x.wav,park\n")
    with pytest.raises(CorpusError, match=r"meta\.csv: header lacks column\(s\) filename, .*expected tab-separated"):
        prepare_tau2020_mobile(root, tmp_path / "out")
