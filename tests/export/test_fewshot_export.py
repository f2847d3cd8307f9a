"""Few-shot KWS export: ONNX parity, metadata, the runtime loader, wrong-model and bad-file errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import torch

from speechkit.errors import AudioError, ModelFileError
from speechkit.frontends import LogMel
from speechkit.models.fewshot import BCResNetEmbedding
from speechkit.runtime.fewshot import EmbeddingModel, EnrolledWordsModel, enroll, load_prototype_file
from speechkit.tasks.fewshot import FewShotKwsTask


def _task(seed: int, open_set: str = "dummy") -> FewShotKwsTask:
    torch.manual_seed(seed)
    task = FewShotKwsTask(BCResNetEmbedding(width=1), LogMel.bcresnet(), open_set=open_set)
    # BN statistics away from the init so that parity is checked on a non-trivial network
    task.train()
    with torch.no_grad():
        task(torch.randn(8, 16000) * 0.1)
    return task.eval()


def _copy_with_metadata(src, dst, **changes):
    """A copy of an artifact with some metadata values changed (a cheap "other model")."""
    import onnx

    model = onnx.load(str(src))
    for prop in model.metadata_props:
        if prop.key in changes:
            prop.value = changes[prop.key]
    onnx.save(model, str(dst))
    return dst


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    from speechkit.export.fewshot_export import export_fewshot_task

    root = tmp_path_factory.mktemp("fewshot_export")
    task = _task(0, "dummy")
    result = export_fewshot_task(task, root / "a.onnx")
    assert result.max_abs_diff <= 1e-4
    other = _copy_with_metadata(root / "a.onnx", root / "b.onnx", model_id="0123456789abcdef",
                                open_set=json.dumps({"rule": "max-similarity", "tau": 1.0}))
    return {"a": (root / "a.onnx", task), "b": (other, None)}


def test_parity_metadata_and_open_set_rule(exported):
    path, task = exported["a"]
    model = EmbeddingModel(path)
    assert model.metadata["speechkit.task"] == "fewshot-kws" and model.embedding_dim == 32
    assert model.sample_rate == 16000 and model.clip_samples == 16000 and model.rule.has_dummy
    audio = np.random.default_rng(3).uniform(-0.3, 0.3, (3, 16000)).astype(np.float32)
    np.testing.assert_allclose(model.embed(audio), task.embed_clips(audio), atol=1e-4)
    # the exported rule scores like the torch head
    protos, query = torch.randn(5, 32), torch.randn(4, 32)
    with torch.no_grad():
        expected = task.head(protos[:, None], query).numpy()
    np.testing.assert_allclose(model.rule.logits(query.numpy(), protos.numpy()), expected, rtol=1e-4, atol=1e-3)
    assert not EmbeddingModel(exported["b"][0]).rule.has_dummy


def test_wrong_model_and_bad_files(exported, tmp_path):
    kws = _copy_with_metadata(exported["a"][0], tmp_path / "kws.onnx", **{"speechkit.task": "kws"})
    with pytest.raises(ModelFileError, match="is a 'kws' model, expected 'fewshot-kws'"):
        EmbeddingModel(kws)
    (tmp_path / "junk.onnx").write_bytes(b"not onnx")
    with pytest.raises(ModelFileError, match="not a loadable ONNX model"):
        EmbeddingModel(tmp_path / "junk.onnx")
    # a prototype file enrolled with model a is refused by model b, in one line
    rng = np.random.default_rng(0)
    wav = tmp_path / "word.wav"
    t = np.arange(6400) / 16000
    audio = np.zeros(24000, np.float32)
    audio[8000:14400] = 0.3 * sum(np.sin(2 * np.pi * 150 * h * t) / h for h in range(1, 10)) * np.hanning(6400)
    sf.write(wav, audio + rng.normal(size=24000).astype(np.float32) * 1e-4, 16000)
    a, b = EmbeddingModel(exported["a"][0]), EmbeddingModel(exported["b"][0])
    data = enroll(a, "hello", [wav, wav], tmp_path / "hello.json")
    assert data["model_id"] == a.model_id != b.model_id and len(data["prototype"]) == 32
    assert load_prototype_file(tmp_path / "hello.json", a)["name"] == "hello"
    with pytest.raises(ModelFileError, match="enrolled with another model"):
        load_prototype_file(tmp_path / "hello.json", b)
    (tmp_path / "x.json").write_text(json.dumps({"name": "x"}))
    with pytest.raises(ModelFileError, match="not a prototype file"):
        EnrolledWordsModel(a, [tmp_path / "x.json"])
    # enrolment with bad recordings: one-line errors through the CLI
    from speechkit.cli.main import main

    sf.write(tmp_path / "silent.wav", np.zeros(16000, np.float32), 16000)
    sf.write(tmp_path / "short.wav", audio[8000:9000], 16000)
    sf.write(tmp_path / "r8k.wav", audio[::2], 8000)
    for bad, message in (("silent.wav", "silent"), ("short.wav", "too short"), ("r8k.wav", "recorded at 8000 Hz")):
        with pytest.raises(AudioError, match=message):
            enroll(a, "w", [wav, tmp_path / bad])
        assert main(["enroll-keyword", "--model", str(exported["a"][0]), "--name", "w", "--audio", str(wav),
                     str(tmp_path / bad), "--out", str(tmp_path / "w.json")]) == 2
    assert not (tmp_path / "w.json").exists()
    # the enrolled word runs as a clip classifier over [word, _unknown_]
    words = EnrolledWordsModel(a, [tmp_path / "hello.json"])
    probs = words.probabilities(np.stack([audio[:16000], np.zeros(16000, np.float32)]))
    assert words.labels == ["hello", "_unknown_"] and probs.shape == (2, 2)
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
    # `speechkit demo kws --enroll` streams a file through the enrolled-words detector
    stream = tmp_path / "stream.wav"
    sf.write(stream, np.concatenate([np.zeros(8000, np.float32), audio, audio]), 16000)
    assert main(["demo", "kws", "--model", str(exported["a"][0]), "--enroll", str(tmp_path / "hello.json"),
                 "--input", str(stream), "--threshold", "0.5"]) == 0
    assert main(["demo", "kws", "--model", str(exported["b"][0]), "--enroll", str(tmp_path / "hello.json"),
                 "--input", str(stream)]) == 2  # a prototype file of another model: one-line error
