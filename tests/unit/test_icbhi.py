"""ICBHI 2017: the cycle policy, annotation parsing, preparation in the real layout, the synthetic
twin, and the ICBHI score on hand-computed cases."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import torch

from speechkit.data.corpora.icbhi import prepare_icbhi
from speechkit.data.manifests import cuts_path, read_cuts
from speechkit.errors import CorpusError
from speechkit.metrics.icbhi import IcbhiMetrics, icbhi_scores
from speechkit.runtime.respiratory import Cycle, cycle_clips, fade, fix_length, parse_name, read_annotations


# -- the cycle policy ------------------------------------------------------------------------
def test_fix_length_truncates_to_the_first_samples():
    assert fix_length(np.arange(10, dtype=np.float32), 4).tolist() == [0, 1, 2, 3]


def test_fix_length_repeat_pads_then_fades_out():
    clip = fix_length(np.array([1, 2, 3], np.float32), 8, pad="repeat", fade_samples=3)
    # tiled 1 2 3 1 2 3 1 2, the last 3 (3 1 2) times linspace(1, 0, 3) = 1, .5, 0
    assert clip.tolist() == [1, 2, 3, 1, 2, 3, 0.5, 0.0]
    assert fix_length(np.array([1, 2], np.float32), 4, pad="zero").tolist() == [1, 2, 0, 0]


def test_fade_is_linear_at_both_ends():
    out = fade(np.ones(10, np.float32), 5, 3)
    assert out[:5].tolist() == pytest.approx([0, 0.25, 0.5, 0.75, 1.0])
    assert out[-3:].tolist() == pytest.approx([1.0, 0.5, 0.0])


def test_cycle_clips_fade_the_recording_then_slice_at_int_sample_indices():
    rate = 16000
    audio = np.ones(3 * rate, np.float32)
    clips = cycle_clips(audio, [Cycle(0.0, 1.0, False, False), Cycle(1.5, 2.5, True, False)], rate, 2.0)
    assert clips.shape == (2, 2 * rate)
    assert clips[0, 0] == 0.0 and clips[0, rate // 16] == 1.0  # the recording's fade-in
    # repeat-padded: the second copy starts at sample 16000 with the cycle's own first sample
    assert clips[1, rate] == clips[1, 0] == 1.0
    assert clips[1, -1] == 0.0 and clips[1, -rate // 16 - 1] == 1.0  # the clip's fade-out
    # a cycle past the end of the recording is silence, not an error
    assert not cycle_clips(audio, [(5.0, 6.0)], rate, 1.0).any()


def test_read_annotations_and_labels(tmp_path):
    path = tmp_path / "101_1b1_Al_sc_Meditron.txt"
    path.write_text("0.036\t0.579\t0\t0\n0.579\t2.45\t1\t0\n\n2.45 3.893 0 1\n3.893\t5.2\t1\t1\n")
    cycles = read_annotations(path)
    assert [c.label for c in cycles] == ["normal", "crackle", "wheeze", "both"]
    assert cycles[1] == Cycle(0.579, 2.45, True, False)


@pytest.mark.parametrize("line, message", [
    ("0.5\t0.2\t0\t0", "empty or negative"),
    ("0.1\tabc\t0\t0", "not numbers"),
    ("0.1\t0.2\t0", "3 fields"),
    ("0.1\t0.2\t2\t0", "must be 0 or 1"),
])
def test_malformed_annotation_line_names_file_and_line(tmp_path, line, message):
    path = tmp_path / "rec.txt"
    path.write_text(f"0.0\t0.1\t0\t0\n{line}\n")
    with pytest.raises(CorpusError, match=rf"rec.txt:2: .*{message}"):
        read_annotations(path)


def test_parse_name():
    name = parse_name("160_1b3_Al_mc_AKGC417L")
    assert (name.patient, name.device, name.prefix) == ("160", "AKGC417L", "160_1b3_Al_mc")
    with pytest.raises(CorpusError, match="not an ICBHI recording name"):
        parse_name("160_1b3_Al")


# -- preparation in the real layout ---------------------------------------------------------
def _write(folder, name, rate, annotations, seconds=3.0, seed=0):
    rng = np.random.default_rng(seed)
    sf.write(folder / f"{name}.wav", (0.1 * rng.standard_normal(int(seconds * rate))).astype(np.float32), rate)
    (folder / f"{name}.txt").write_text(annotations)


@pytest.fixture
def icbhi_tree(tmp_path):
    """Four recordings: 44.1 kHz and 4 kHz, one on disk as ..._AKGC417L but ..._Meditron in the
    split file (a known file-name difference), one recording not in the split file."""
    root = tmp_path / "ICBHI"
    db = root / "ICBHI_final_database"
    db.mkdir(parents=True)
    _write(db, "101_1b1_Al_sc_AKGC417L", 44100, "0.1\t1.0\t0\t0\n1.0\t2.4\t1\t0\n", seed=1)  # listed as Meditron
    _write(db, "104_1b1_Ar_sc_Litt3200", 4000, "0.0\t1.2\t0\t1\n1.2\t2.9\t1\t1\n", seed=2)
    _write(db, "107_2b3_Tc_mc_LittC2SE", 4000, "0.2\t1.9\t0\t0\n", seed=3)
    _write(db, "200_1b1_Pl_sc_Meditron", 4000, "0.2\t1.9\t0\t0\n", seed=4)  # not in the split file
    (root / "ICBHI_challenge_train_test.txt").write_text(
        "101_1b1_Al_sc_Meditron\ttrain\n104_1b1_Ar_sc_Litt3200\ttest\n107_2b3_Tc_mc_LittC2SE\ttrain\n")
    return root


def test_prepare_icbhi_real_layout(icbhi_tree, tmp_path):
    out = tmp_path / "out"
    summary = prepare_icbhi(icbhi_tree, out, cycle_seconds=2.0)
    assert "1 matched through a file-name difference" in summary
    assert json.loads((out / "labels.json").read_text()) == ["normal", "crackle", "wheeze", "both"]
    train, test = read_cuts(cuts_path(out, "train")), read_cuts(cuts_path(out, "test"))
    assert [c.supervisions[0].custom["label"] for c in train] == ["normal", "crackle", "normal"]
    assert [c.supervisions[0].custom["label"] for c in test] == ["wheeze", "both"]
    assert [c.id for c in read_cuts(cuts_path(out, "valid"))] == [c.id for c in test]  # no validation set
    first = train[0].supervisions[0].custom
    assert (first["patient"], first["device"], first["file_device"]) == ("101", "Meditron", "AKGC417L")
    assert first["recording"] == "101_1b1_Al_sc_Meditron" and first["cycle_end"] == 1.0
    cut = test[1]
    assert cut.sampling_rate == 16000 and cut.num_samples == 32000
    # the stored clip is the runtime policy's output (16-bit rounding aside)
    from speechkit.runtime.audio import read_audio

    audio, _ = read_audio(icbhi_tree / "ICBHI_final_database" / "104_1b1_Ar_sc_Litt3200.wav", 16000)
    expected = cycle_clips(audio, read_annotations(icbhi_tree / "ICBHI_final_database" / "104_1b1_Ar_sc_Litt3200.txt"),
                           16000, 2.0)[1]
    assert np.abs(cut.load_audio()[0] - expected).max() < 1e-3


def test_prepare_icbhi_two_class_and_validation_patients(icbhi_tree, tmp_path):
    out = tmp_path / "out2"
    prepare_icbhi(icbhi_tree, out, cycle_seconds=1.0, two_class=True, valid_percent=50)
    assert json.loads((out / "labels.json").read_text()) == ["normal", "abnormal"]
    valid = read_cuts(cuts_path(out, "valid"))
    train = read_cuts(cuts_path(out, "train"))
    assert len(valid) and len(train) and {c.supervisions[0].speaker for c in valid}.isdisjoint(
        {c.supervisions[0].speaker for c in train})


def test_prepare_icbhi_errors(icbhi_tree, tmp_path):
    (icbhi_tree / "ICBHI_challenge_train_test.txt").rename(icbhi_tree / "elsewhere.txt")
    with pytest.raises(CorpusError, match="no split file ICBHI_challenge_train_test.txt"):
        prepare_icbhi(icbhi_tree, tmp_path / "a")
    (icbhi_tree / "elsewhere.txt").rename(icbhi_tree / "ICBHI_challenge_train_test.txt")
    db = icbhi_tree / "ICBHI_final_database"
    (db / "107_2b3_Tc_mc_LittC2SE.txt").write_text("0.2\t1.9\t0\t0\n0.3 x 0 0\n")
    with pytest.raises(CorpusError, match=r"107_2b3_Tc_mc_LittC2SE.txt:2: not numbers"):
        prepare_icbhi(icbhi_tree, tmp_path / "b")
    assert not (tmp_path / "b" / "labels.json").exists()
    with open(icbhi_tree / "ICBHI_challenge_train_test.txt", "a") as f:
        f.write("999_1b1_Al_sc_Meditron\ttrain\n")
    with pytest.raises(CorpusError, match=r"train_test.txt:4: recording 999_1b1_Al_sc_Meditron has no"):
        prepare_icbhi(icbhi_tree, tmp_path / "c")


# -- the synthetic twin ---------------------------------------------------------------------
def test_synth_icbhi_is_deterministic_and_holds_out_patients_and_a_device(tmp_path):
    from speechkit.data.synth.respiratory import synth_icbhi

    kwargs = dict(num_patients=6, recordings_per_patient=2, cycles_per_recording=(2, 3), cycle_seconds=(1.0, 1.5),
                  test_percent=34, heldout_device="Litt3200", seed=3)
    synth_icbhi(tmp_path / "a", **kwargs)
    synth_icbhi(tmp_path / "b", **kwargs)
    files = sorted(p.name for p in (tmp_path / "a" / "ICBHI_final_database").iterdir())
    assert len(files) == 24
    for name in files:
        assert (tmp_path / "a" / "ICBHI_final_database" / name).read_bytes() == \
            (tmp_path / "b" / "ICBHI_final_database" / name).read_bytes()
    split = [line.split("\t") for line in (tmp_path / "a" / "ICBHI_challenge_train_test.txt").read_text().splitlines()]
    train_patients = {n.split("_")[0] for n, s in split if s == "train"}
    test_patients = {n.split("_")[0] for n, s in split if s == "test"}
    assert train_patients and test_patients and train_patients.isdisjoint(test_patients)
    assert not any(n.endswith("Litt3200") for n, s in split if s == "train")
    summary = prepare_icbhi(tmp_path / "a", tmp_path / "prepared", cycle_seconds=1.0)
    assert "train" in summary and read_cuts(cuts_path(tmp_path / "prepared", "test"))


def test_synth_wheeze_is_tonal_and_crackle_is_transient():
    from speechkit.data.synth.respiratory import RATE, add_crackles, add_wheeze

    rng = np.random.default_rng(0)
    wheeze = np.zeros(RATE)
    add_wheeze(rng, wheeze, 0, (400.0, 410.0), 0.1)
    spectrum = np.abs(np.fft.rfft(wheeze))
    peak_hz = np.argmax(spectrum) * RATE / len(wheeze)
    assert 300 < peak_hz < 520 and (np.abs(wheeze) > 1e-4).sum() >= 0.08 * RATE
    crackle = np.zeros(RATE)
    add_crackles(rng, crackle, RATE // 2, "fine", 0.1)
    assert 0 < (np.abs(crackle) > 1e-3).sum() < 0.1 * RATE  # short bursts, mostly silence


# -- the ICBHI score ------------------------------------------------------------------------
def test_icbhi_scores_hand_computed():
    # normal 10 (8 right), crackle 6 (3 right, 1 -> wheeze), wheeze 4 (2 right, 1 -> both), both 2 (1 right)
    conf = torch.tensor([[8, 1, 1, 0], [2, 3, 1, 0], [1, 0, 2, 1], [0, 1, 0, 1]])
    s = icbhi_scores(conf)
    assert s["sp"] == pytest.approx(80.0)
    assert s["se"] == pytest.approx(100 * 6 / 12)
    assert s["score"] == pytest.approx(65.0)
    assert s["se_2cls"] == pytest.approx(100 * 9 / 12)  # any abnormal prediction counts
    assert s["score_2cls"] == pytest.approx((80 + 75) / 2)


def test_icbhi_metrics_per_device_and_table():
    m = IcbhiMetrics(["normal", "crackle", "wheeze", "both"], groups=["AKGC417L", "Meditron"])
    m.update(torch.tensor([0, 0, 1, 2]), torch.tensor([0, 1, 1, 3]), torch.tensor([0, 0, 1, 1]))
    m.update(torch.tensor([1]), torch.tensor([0]), torch.tensor([1]))
    report = m.compute()
    assert report.scores["sp"] == pytest.approx(50.0) and report.scores["se"] == pytest.approx(100 / 3)
    assert report.groups["AKGC417L"]["sp"] == 100.0 and report.groups["AKGC417L"]["se"] == 0.0
    assert report.groups["Meditron"]["sp"] == 0.0 and report.groups["Meditron"]["se"] == 50.0
    assert report.groups["Meditron"]["se_2cls"] == 100.0
    table = report.table()
    assert "Score 41.67" in table and "Meditron" in table and report.class_recall["crackle"] == 50.0
