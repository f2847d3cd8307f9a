"""The family interface end to end with the acoustic-scene classifier (no scene-specific code).

A BC-ResNet-Mod ``ClassificationTask(task_name="scene")`` is trained for a few steps through
``speechkit fit`` on a tiny fake TAU Urban Acoustic Scenes 2020 Mobile folder (``tau_manifests``
in conftest), exported with ``speechkit export`` (the clip-classifier exporter found through the
registry), and a wav file is classified by ``speechkit classify`` with the torch-free runtime.
Nothing asserts what the barely trained model predicts: the checks compare the runtime with
PyTorch on the same model, so they hold on every CPU.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml
from fakes import SCENES, run_cli

RATE = 44100
CLIP_SECONDS = 0.25
CLIP = int(RATE * CLIP_SECONDS)


@pytest.fixture(scope="module")
def scene_checkpoint(tau_manifests, tmp_path_factory):
    """``speechkit fit`` of a narrow BC-ResNet-Mod on the fake TAU folder, 2 epochs (a few steps)."""
    from speechkit.cli.lightning_cli import run_lightning_cli

    root = tmp_path_factory.mktemp("scene")
    config = {
        "seed_everything": 0,
        "trainer": {
            "max_epochs": 2, "default_root_dir": str(root / "run"), "accelerator": "cpu", "devices": 1,
            "logger": False, "enable_progress_bar": False, "enable_model_summary": False,
        },
        "model": {"class_path": "speechkit.tasks.ClassificationTask", "init_args": {
            "task_name": "scene",
            "frontend": {"class_path": "speechkit.frontends.LogMel", "init_args": {
                "sample_rate": RATE, "n_fft": 1024, "win_length": 882, "hop_length": 441, "n_mels": 64}},
            "model": {"class_path": "speechkit.models.kws.BCResNetMod", "init_args": {
                "base_width": 8, "num_subbands": 4, "in_bins": 64, "dropout_prob": 0.0}},
            "optim": {"name": "adamw", "lr": 0.01, "weight_decay": 0.0, "warmup_epochs": 0, "schedule": "constant"},
        }},
        "data": {"class_path": "speechkit.data.datamodules.ClassificationDataModule", "init_args": {
            "manifest_dir": str(tau_manifests), "batch_size": 8, "sample_rate": RATE, "clip_seconds": CLIP_SECONDS}},
    }
    (root / "config.yaml").write_text(yaml.safe_dump(config))
    run_lightning_cli(["fit", "--config", str(root / "config.yaml")])
    return root / "run" / "checkpoints" / "last.ckpt"


@pytest.mark.trains
def test_scene_checkpoint_exports_and_classifies_a_file(scene_checkpoint, tau_manifests, tmp_path, monkeypatch):
    from speechkit.runtime import ClipClassifier
    from speechkit.tasks import load_task

    out = tmp_path / "scene.onnx"
    status, stdout, err = run_cli(["export", scene_checkpoint, out, "--int8", "--force"], monkeypatch)
    assert status == 0, err
    assert "parity with PyTorch" in stdout and "calibrating int8" in stdout
    assert {p.name for p in tmp_path.iterdir()} == {"scene.onnx", "scene_int8.onnx"}

    # the family-neutral clip-classifier artifact, task taken from the checkpoint
    classifier = ClipClassifier(out)
    meta = classifier.metadata
    assert classifier.task == "scene" and classifier.labels == sorted(SCENES)
    assert (classifier.sample_rate, classifier.clip_samples) == (RATE, CLIP)
    model_meta = json.loads(meta["model"])
    assert model_meta["class"] == "BCResNetMod" and model_meta["base_width"] == 8  # from the checkpoint's config
    assert json.loads(meta["frontend"])["class"] == "LogMel"
    assert "quantization" in ClipClassifier(tmp_path / "scene_int8.onnx").metadata

    # a 0.6 s file (two clips and an overlapping last one) and a 0.1 s one (zero-padded)
    rng = np.random.default_rng(0)
    long_wav, short_wav = tmp_path / "long.wav", tmp_path / "short.wav"
    t = np.arange(int(0.6 * RATE)) / RATE
    audio = (0.3 * np.sin(2 * np.pi * 350 * t) + 0.01 * rng.standard_normal(len(t))).astype(np.float32)
    sf.write(long_wav, audio, RATE, subtype="FLOAT")
    sf.write(short_wav, audio[: int(0.1 * RATE)], RATE, subtype="FLOAT")
    status, stdout, err = run_cli(["classify", "--model", out, long_wav, short_wav], monkeypatch)
    assert status == 0, err
    lines = [json.loads(line) for line in stdout.splitlines()]
    assert [d["file"] for d in lines] == [str(long_wav), str(short_wav)]

    # the same numbers from PyTorch: softmax of the task over the same windows, averaged
    task = load_task(scene_checkpoint).eval()
    for line, samples in zip(lines, (audio, audio[: int(0.1 * RATE)])):
        windows = classifier.windows(samples)
        assert len(windows) == (3 if len(samples) > CLIP else 1)
        with torch.no_grad():
            probs = torch.softmax(task(torch.from_numpy(windows)), dim=-1).mean(0).numpy()
        assert probs[task.labels.index(line["label"])] >= probs.max() - 1e-4  # the top label (up to ties)
        assert line["score"] == pytest.approx(float(probs.max()), abs=1e-3)

    # the KWS runtime refuses a scene model with one clear line
    status, _, err = run_cli(["demo", "kws", "--model", out, "--input", long_wav], monkeypatch)
    assert status == 2 and f"{out}: is a 'scene' model, expected 'kws'" in err and err.count("\n") == 1, err
