"""The frozen real-speech front-end (:class:`speechkit.frontends.SpeechEmbedding`) and its head.

Parity is against onnxruntime running openWakeWord 0.4.0's own two ONNX files the way its
``AudioFeatures`` does (int16 samples, ``x / 10 + 2``, 76-frame windows every 8 frames), on random
audio and on a word spoken by espeak-ng.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from speechkit.errors import ModelFileError, SpeechkitError
from speechkit.frontends.speech_embedding import SpeechEmbedding, openwakeword_model_dir
from speechkit.models.kws import EmbeddingHead


@pytest.fixture(scope="module")
def frontend() -> SpeechEmbedding:
    return SpeechEmbedding()


def openwakeword_features(int16_audio: np.ndarray) -> np.ndarray:
    """openWakeWord's ``AudioFeatures._get_embeddings`` with onnxruntime: (S,) int16 -> (T', 96)."""
    import onnxruntime as ort

    folder = openwakeword_model_dir()
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    mel_model = ort.InferenceSession(str(folder / "melspectrogram.onnx"), options, providers=["CPUExecutionProvider"])
    emb_model = ort.InferenceSession(str(folder / "embedding_model.onnx"), options, providers=["CPUExecutionProvider"])
    spec = np.squeeze(mel_model.run(None, {"input": int16_audio[None].astype(np.float32)})[0]) / 10 + 2
    windows = [spec[i : i + 76] for i in range(0, spec.shape[0], 8) if spec[i : i + 76].shape[0] == 76]
    batch = np.expand_dims(np.array(windows), axis=-1).astype(np.float32)
    return emb_model.run(None, {"input_1": batch})[0].reshape(len(windows), 96)


def torch_features(frontend: SpeechEmbedding, int16_audio: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        feats, lens = frontend(torch.from_numpy(int16_audio.astype(np.float32) / 32768.0)[None])
    assert lens.tolist() == [feats.shape[1]]
    return feats[0].numpy()


def spoken_word() -> np.ndarray:
    """"seven" by espeak-ng, padded with digital silence to 1.5 s, as int16."""
    from speechkit.data.synth.espeak import synthesize
    from speechkit.data.synth.voices import Voice

    audio = synthesize("seven", Voice(), 16000)
    out = np.zeros(24000, dtype=np.float32)
    start = 4000
    out[start : start + min(len(audio), 24000 - start)] = audio[: 24000 - start]
    return np.round(np.clip(out, -1, 1) * 32767).astype(np.int16)


@pytest.mark.parametrize("kind", ["noise", "word"])
def test_matches_openwakeword_onnx_pipeline(frontend, kind):
    if kind == "noise":
        rng = np.random.default_rng(0)
        audio = (rng.standard_normal(20000) * rng.uniform(100, 8000)).astype(np.int16)
    else:
        audio = spoken_word()
        assert np.abs(audio).max() > 3000  # audible speech, not silence
    ref = openwakeword_features(audio)
    ours = torch_features(frontend, audio)
    assert ours.shape == ref.shape == (frontend.num_frames(len(audio)), 96)
    assert np.abs(ref).max() > 1.0  # the comparison is not between two near-zero tensors
    np.testing.assert_allclose(ours, ref, atol=1e-4 * max(1.0, float(np.abs(ref).max())), rtol=0)
    # the embeddings of different inputs differ: the parity above is not a constant output
    other = torch_features(frontend, (audio // 3).astype(np.int16))
    assert np.abs(other - ours).max() > 0.1


def test_frozen_eval_and_not_in_state_dict(frontend):
    assert list(frontend.parameters()) == []
    assert frontend.state_dict() == {}
    assert frontend.train().training is False
    task_like = torch.nn.ModuleDict({"frontend": frontend, "head": EmbeddingHead(3)})
    task_like.train()
    assert frontend.training is False and task_like["head"].training
    assert all(not k.startswith("frontend.") for k in task_like.state_dict())
    # nothing in the front-end can be trained: a loss gives gradients to the head only
    audio = torch.randn(2, 16000) * 0.1
    feats, _ = frontend(audio)
    task_like["head"](feats).sum().backward()
    assert all(b.grad is None and not b.requires_grad for b in frontend.buffers())
    assert all(p.grad is not None for p in task_like["head"].parameters())


def test_padded_batch_equals_items_alone(frontend):
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal(20000).astype(np.float32) * 0.2, rng.standard_normal(14000).astype(np.float32) * 0.05
    batch = np.zeros((2, 20000), dtype=np.float32)
    batch[0], batch[1, :14000] = a, b
    batch[1, 14000:] = 0.9  # garbage beyond the length must be ignored
    with torch.no_grad():
        feats, lens = frontend(torch.from_numpy(batch), torch.tensor([20000, 14000]))
        alone_b, _ = frontend(torch.from_numpy(b)[None])
        silence, _ = frontend(torch.zeros(1, 20000))
    assert lens.tolist() == [frontend.num_frames(20000), frontend.num_frames(14000)] == [6, 2]
    torch.testing.assert_close(feats[1, :2], alone_b[0], atol=1e-4, rtol=0)
    torch.testing.assert_close(feats[1, 2:], silence[0, 2:], atol=1e-4, rtol=0)  # padding = digital silence


def test_frame_counts(frontend):
    # mel: 1 + (S - 512) // 160; embeddings: 1 + (mel - 76) // 8
    assert [frontend.num_frames(s) for s in (0, 12511, 12512, 16000, 13791, 13792)] == [0, 0, 1, 3, 1, 2]
    assert frontend.config() == {"model_dir": None, "sample_rate": 16000}
    assert frontend.feature_dim == 96


def test_clear_errors(frontend, tmp_path):
    with pytest.raises(SpeechkitError, match=r"pip install --no-deps openwakeword==0\.4\.0"):
        SpeechEmbedding(model_dir=str(tmp_path))
    (tmp_path / "melspectrogram.onnx").write_bytes(b"not onnx")
    with pytest.raises(ModelFileError, match="not a readable ONNX file"):
        SpeechEmbedding(model_dir=str(tmp_path))
    with pytest.raises(SpeechkitError, match="at least 12512 samples"):
        frontend(torch.zeros(1, 12000))
    with pytest.raises(SpeechkitError, match="16000 Hz only"):
        SpeechEmbedding(sample_rate=8000)
    with pytest.raises(SpeechkitError, match="expects feats"):
        EmbeddingHead(3)(torch.zeros(1, 3, 40))
    with pytest.raises(SpeechkitError, match="odd kernel_size"):
        EmbeddingHead(3, kernel_size=2)


def test_missing_package_names_the_pip_command(monkeypatch):
    import importlib.util

    from speechkit.frontends import speech_embedding

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(SpeechkitError, match=r"run `pip install --no-deps openwakeword==0\.4\.0`"):
        speech_embedding.openwakeword_model_dir()


def test_model_dir_argument_loads_the_same_weights(frontend):
    again = SpeechEmbedding(model_dir=str(openwakeword_model_dir()))
    audio = torch.randn(1, 16000) * 0.1
    with torch.no_grad():
        torch.testing.assert_close(again(audio)[0], frontend(audio)[0])
    assert again.config()["model_dir"] == str(openwakeword_model_dir())


def test_head_pools_over_time():
    head = EmbeddingHead(num_classes=4, hidden=16, num_blocks=1).eval()
    feats = torch.randn(3, 5, 96)
    out = head(feats)
    assert out.shape == (3, 4)
    # a batch item's logits do not depend on the others, and do depend on its frames
    torch.testing.assert_close(head(feats[1:2]), out[1:2])
    assert not torch.allclose(head(feats.flip(0))[0], out[0])
