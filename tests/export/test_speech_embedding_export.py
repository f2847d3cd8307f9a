"""The real-speech front-end recipe end to end: fit, export with the embedding in-graph, classify, demo.

``recipes/synthetic/kws/speech_embedding.yaml`` (frozen ``SpeechEmbedding`` + ``EmbeddingHead``) is
fitted for a few steps on the tiny fake Speech Commands folder (``tiny_kws_manifests``), exported
by ``speechkit export`` (the clip-classifier exporter), and run by ``speechkit classify`` and
``speechkit demo kws`` with the torch-free runtime. Checks compare the runtime with PyTorch on
the same model, so they hold whatever the barely trained model predicts.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml
from fakes import run_cli

import speechkit

RECIPE = Path(speechkit.__file__).resolve().parent / "recipes" / "synthetic" / "kws" / "speech_embedding.yaml"


@pytest.fixture(scope="module")
def checkpoint(tiny_kws_manifests, tmp_path_factory) -> Path:
    """``speechkit fit`` of the recipe as written, on tiny data, 2 epochs."""
    from speechkit.cli.lightning_cli import run_lightning_cli

    root = tmp_path_factory.mktemp("speech_embedding")
    config = yaml.safe_load(RECIPE.read_text())
    config["trainer"].update({"max_epochs": 2, "default_root_dir": str(root / "run"), "accelerator": "cpu",
                              "devices": 1, "logger": False, "enable_progress_bar": False})
    config["data"]["init_args"].update({"manifest_dir": str(tiny_kws_manifests), "batch_size": 8, "num_workers": 0})
    (root / "config.yaml").write_text(yaml.safe_dump(config))
    run_lightning_cli(["fit", "--config", str(root / "config.yaml")])
    return root / "run" / "checkpoints" / "last.ckpt"


def spoken(text: str, seconds: float) -> np.ndarray:
    from speechkit.data.synth.espeak import synthesize
    from speechkit.data.synth.voices import Voice

    word = synthesize(text, Voice(), 16000)
    out = np.zeros(int(16000 * seconds), dtype=np.float32)
    out[4000 : 4000 + len(word)] = word[: len(out) - 4000]
    return out


@pytest.mark.trains
def test_fit_export_classify_and_demo(checkpoint, tmp_path, monkeypatch):
    import onnx

    from speechkit.runtime import ClipClassifier
    from speechkit.tasks import load_task

    # the checkpoint holds the head only: the frozen front-end is rebuilt from the wheel's files
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)["state_dict"]
    assert state and not any(k.startswith("frontend.") for k in state)
    assert any(k.startswith("model.") for k in state)
    task = load_task(checkpoint).eval()
    assert type(task.frontend).__name__ == "SpeechEmbedding"

    out = tmp_path / "kws_se.onnx"
    status, stdout, err = run_cli(["export", checkpoint, out], monkeypatch)
    assert status == 0, err
    assert "parity with PyTorch" in stdout

    # the embedding network is in the graph: raw audio in, the 20 embedding convolutions + the STFT
    graph = onnx.load(str(out)).graph
    assert [i.name for i in graph.input] == ["audio"]
    assert sum(n.op_type == "Conv" for n in graph.node) >= 21
    classifier = ClipClassifier(out)
    assert classifier.task == "kws" and (classifier.sample_rate, classifier.clip_samples) == (16000, 16000)
    assert json.loads(classifier.metadata["frontend"]) == {"class": "SpeechEmbedding", "model_dir": None,
                                                          "sample_rate": 16000}
    assert json.loads(classifier.metadata["model"])["class"] == "EmbeddingHead"

    # ORT against PyTorch on a spoken word and on noise
    rng = np.random.default_rng(0)
    clips = np.stack([spoken("yes", 1.0), spoken("seven", 1.0), 0.1 * rng.standard_normal(16000).astype(np.float32)])
    with torch.no_grad():
        expected = task(torch.from_numpy(clips)).numpy()
    got = classifier.logits(clips)
    assert np.abs(expected - got).max() <= 1e-4 * max(1.0, float(np.abs(expected).max()))
    assert np.abs(expected[0] - expected[2]).max() > 1e-3  # different inputs, different logits

    # `speechkit classify`: posteriors averaged over windows, as PyTorch computes them
    wav = tmp_path / "word.wav"
    audio = spoken("yes", 1.7)
    sf.write(wav, audio, 16000, subtype="FLOAT")
    status, stdout, err = run_cli(["classify", "--model", out, wav], monkeypatch)
    assert status == 0, err
    line = json.loads(stdout)
    windows = classifier.windows(audio)
    with torch.no_grad():
        probs = torch.softmax(task(torch.from_numpy(windows)), dim=-1).mean(0).numpy()
    assert line["score"] == pytest.approx(float(probs.max()), abs=1e-3)
    assert probs[task.labels.index(line["label"])] >= probs.max() - 1e-4

    # `speechkit demo kws` runs the artifact over a file
    status, stdout, err = run_cli(["demo", "kws", "--model", out, "--input", wav], monkeypatch)
    assert status == 0, err
    for row in stdout.splitlines():
        assert json.loads(row)["keyword"] in task.labels
