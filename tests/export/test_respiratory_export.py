"""The respiratory AST exports to the clip-classifier artifact (task ``respiratory``) with parity,
and ``speechkit classify`` labels each annotated cycle or each window with the training policy."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import torch
from fakes import run_cli

from speechkit.errors import ModelFileError
from speechkit.runtime.respiratory import cycle_clips, read_annotations

RATE = 16000


@pytest.fixture(scope="module")
def task():
    from speechkit.frontends.fbank import AstFbank
    from speechkit.models.respiratory import AST
    from speechkit.tasks.respiratory import RespiratoryTask

    torch.manual_seed(0)
    model = AST(num_classes=4, preset="tiny", depth=2, num_mel_bins=32, input_frames=98)
    with torch.no_grad():  # spread the logits so that labels differ between cycles
        model.head[1].weight.mul_(20)
    return RespiratoryTask(model, AstFbank(num_mel_bins=32), labels=["normal", "crackle", "wheeze", "both"],
                           clip_samples=RATE).eval()


@pytest.fixture(scope="module")
def artifact(task, tmp_path_factory):
    from speechkit.export.respiratory_export import export_respiratory

    out = tmp_path_factory.mktemp("resp") / "resp.onnx"
    result = export_respiratory(task, out, log=lambda line: None)
    assert result["parity_max_diff"] <= 1e-4
    return out


def test_artifact_is_a_respiratory_clip_classifier(artifact, task):
    from speechkit.runtime import ClipClassifier

    classifier = ClipClassifier(artifact, tasks=("respiratory",))
    assert classifier.labels == task.labels and (classifier.sample_rate, classifier.clip_samples) == (RATE, RATE)
    meta = classifier.metadata
    assert json.loads(meta["frontend"])["class"] == "AstFbank" and json.loads(meta["frontend"])["norm_std"] == 4.5689974
    assert json.loads(meta["model"])["class"] == "AST" and json.loads(meta["model"])["input_frames"] == 98
    audio = (0.2 * np.random.default_rng(0).standard_normal((3, RATE))).astype(np.float32)
    with torch.no_grad():
        expected = task(torch.from_numpy(audio)).numpy()
    assert np.abs(classifier.logits(audio) - expected).max() <= 1e-4
    with pytest.raises(ModelFileError, match="is a 'respiratory' model, expected 'kws'"):
        ClipClassifier(artifact, tasks=("kws",))


def test_the_exporter_registry_picks_the_respiratory_exporter(task):
    from speechkit.export.registry import exporter_for

    exporter = exporter_for(task)
    assert exporter.name == "respiratory" and exporter.gate.metric == "ICBHI score"


def test_classify_prints_a_label_per_annotated_cycle_and_per_window(artifact, task, tmp_path, monkeypatch):
    rng = np.random.default_rng(1)
    seconds = 3.3
    audio = (0.1 * rng.standard_normal(int(seconds * 44100))).astype(np.float32)
    audio[int(1.2 * 44100) : int(1.6 * 44100)] += 0.5 * np.sin(2 * np.pi * 500 * np.arange(int(0.4 * 44100)) / 44100)
    wav, txt = tmp_path / "rec.wav", tmp_path / "rec.txt"
    sf.write(wav, audio, 44100, subtype="FLOAT")
    txt.write_text("0.1\t0.7\t0\t0\n0.7\t1.9\t0\t1\n1.9\t3.2\t1\t0\n")
    status, stdout, err = run_cli(["classify", "--model", artifact, "--audio", wav, "--annotations", txt], monkeypatch)
    assert status == 0, err
    lines = [json.loads(line) for line in stdout.splitlines()]
    assert [(d["start"], d["end"]) for d in lines] == [(0.1, 0.7), (0.7, 1.9), (1.9, 3.2)]
    # the same labels from PyTorch on the training policy's clips (resampled like the runtime)
    from speechkit.runtime.audio import read_audio

    audio16, _ = read_audio(wav, RATE)
    clips = cycle_clips(audio16, read_annotations(txt), RATE, 1.0)
    with torch.no_grad():
        probs = torch.softmax(task(torch.from_numpy(clips)), -1).numpy()
    assert [d["label"] for d in lines] == [task.labels[i] for i in probs.argmax(1)]
    assert [d["score"] for d in lines] == pytest.approx(probs.max(1).tolist(), abs=1e-3)

    status, stdout, err = run_cli(["classify", "--model", artifact, wav, "--windows", "--hop-seconds", "0.5"], monkeypatch)
    assert status == 0, err
    windows = [json.loads(line) for line in stdout.splitlines()]
    assert [d["start"] for d in windows] == [0.0, 0.5, 1.0, 1.5, 2.0, 2.3]  # last window ends at 3.3 s
    assert all(d["end"] - d["start"] == pytest.approx(1.0) for d in windows)

    txt.write_text("0.1\t0.7\t0\t0\n0.9 oops\n")
    status, _, err = run_cli(["classify", "--model", artifact, "--audio", wav, "--annotations", txt], monkeypatch)
    assert status != 0 and "rec.txt:2: expected '<start s> <end s> ...'" in err and err.count("\n") == 1, err
    status, _, err = run_cli(["classify", "--model", artifact], monkeypatch)
    assert status != 0 and "at least one audio file" in err


def test_classify_whole_file_mode_is_unchanged(artifact, tmp_path, monkeypatch):
    wav = tmp_path / "short.wav"
    sf.write(wav, np.zeros(8000, np.float32), RATE)
    status, stdout, err = run_cli(["classify", "--model", artifact, wav], monkeypatch)
    assert status == 0, err
    line = json.loads(stdout)
    assert line["file"] == str(wav) and line["label"] in ("normal", "crackle", "wheeze", "both")
