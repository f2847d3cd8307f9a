"""ONNX parity of the SSL feature extractor and its metadata (issue 16)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from speechkit.errors import AudioError, SpeechkitError
from speechkit.export.ssl_export import SslOnnxModel, export_ssl_features
from speechkit.models.ssl import HubertConfig, HubertModel
from speechkit.runtime.ssl import SslFeatureExtractor

CONFIG = dict(conv_layers=[(8, 10, 5), (16, 1, 1), (16, 4, 4), (16, 4, 4), (24, 4, 4)], dim=24, num_layers=2,
              num_heads=4, ffn_dim=32, pos_conv_kernel=8, pos_conv_groups=4)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    torch.manual_seed(0)
    model = HubertModel(HubertConfig(**CONFIG)).eval()
    path = tmp_path_factory.mktemp("ssl_export") / "ssl_tiny_random.onnx"
    diff = export_ssl_features(model, path, "ssl-distill", layers=[0, 2])
    return model, path, diff


def test_ssl_onnx_matches_pytorch_for_several_lengths(exported):
    model, path, diff = exported
    assert diff <= 1e-4
    extractor = SslFeatureExtractor(path)
    rng = np.random.default_rng(1)
    for n in (325, 8000, 16000 + 77):
        audio = rng.standard_normal(n).astype(np.float32) * 0.3
        with torch.no_grad():
            ref = model.extract_features(torch.from_numpy(audio)[None]).hidden
        out = extractor(audio)
        np.testing.assert_allclose(out, torch.stack([ref[0], ref[2]])[:, 0].numpy(), atol=1e-4)


def test_ssl_artifact_metadata(exported):
    model, path, _ = exported
    extractor = SslFeatureExtractor(path)
    meta = extractor.artifact.metadata
    assert extractor.layers == [0, 2] and extractor.hidden_dim == 24 and extractor.sample_rate == 16000
    assert extractor.hop_samples == 320 and extractor.min_samples == 325 and extractor.frame_rate == 50.0
    assert meta["speechkit.task"] == "ssl-distill" and json.loads(meta["model"])["dim"] == 24


def test_ssl_runtime_rejects_bad_audio(exported):
    extractor = SslFeatureExtractor(exported[1])
    with pytest.raises(AudioError, match="NaN"):
        extractor(np.full(16000, np.nan, dtype=np.float32))
    with pytest.raises(AudioError, match="shorter than one frame"):
        extractor(np.zeros(100, dtype=np.float32))
    with pytest.raises(AudioError, match="mono"):
        extractor(np.zeros((1, 2, 16000), dtype=np.float32))


def test_ssl_export_refuses_layers_the_model_lacks():
    model = HubertModel(HubertConfig(**CONFIG))
    with pytest.raises(SpeechkitError, match="0..2"):
        SslOnnxModel(model, [3])
