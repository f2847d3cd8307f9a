"""HuBERT model, presets and checkpoint loading (issue 16)."""

from __future__ import annotations

import argparse
import json

import pytest
import torch

from speechkit.errors import ModelFileError
from speechkit.models.ssl import HubertConfig, HubertModel, hubert_preset
from speechkit.models.ssl.checkpoints import (
    fairseq_config,
    hf_config,
    load_hubert,
    to_fairseq_state_dict,
    to_hf_state_dict,
    write_safetensors,
)
from speechkit.models.ssl.masking import span_mask

TINY = dict(conv_layers=[(16, 10, 5), (16, 3, 2), (24, 2, 2)], dim=32, num_layers=2, num_heads=4, ffn_dim=48,
            pos_conv_kernel=8, pos_conv_groups=4, final_dim=8)


def tiny(**kw) -> HubertModel:
    torch.manual_seed(0)
    model = HubertModel(HubertConfig(**{**TINY, **kw})).eval()
    with torch.no_grad():  # non-trivial norms and weight-norm gains
        for name, p in model.named_parameters():
            if "norm" in name or "weight_g" in name:
                p.add_(torch.randn_like(p) * 0.1)
    return model


@pytest.mark.parametrize("preset,count", [("base", 94_371_712), ("starhubert", 22_309_024),
                                          ("starhubert_l", 26_631_232), ("starhubert_6l", 12_741_280),
                                          ("tiny_teacher", 927_392), ("tiny_student", 537_760)])
def test_hubert_preset_parameter_counts(preset, count):
    model = HubertModel(hubert_preset(preset))
    assert sum(p.numel() for p in model.parameters()) == count


def test_hubert_base_count_with_pretraining_head_is_the_papers_94_7m():
    model = HubertModel(hubert_preset("base", num_classes=504))  # fairseq's 504-cluster head
    total = sum(p.numel() for p in model.parameters())
    assert total == 94_697_600 and round(total / 1e6, 2) == 94.70
    assert model.encoder_parameters() == 94_371_712


def test_hubert_shapes_and_every_layer():
    model = tiny()
    feats = model.extract_features(torch.randn(2, 3200), torch.tensor([3200, 2000]))
    frames = model.output_lengths(torch.tensor([3200, 2000]))
    assert feats.lens.tolist() == frames.tolist() == [159, 99]
    assert len(feats.hidden) == 3 and len(feats.attn) == 2
    assert feats.post_cnn.shape == (2, 159, 32) and feats.attn[0].shape == (2, 4, 159, 159)
    assert torch.allclose(feats.attn[1][1, :, :99, :99].sum(-1), torch.ones(4, 99))
    assert feats.attn[1][1, :, :, 99:].abs().max() == 0  # padded keys get no attention


def test_hubert_padded_batch_matches_single():
    model = tiny()
    a, b = torch.randn(1, 3200), torch.randn(1, 1700)
    batch = torch.zeros(2, 3200)
    batch[0], batch[1, :1700] = a[0], b[0]
    out = model.extract_features(batch, torch.tensor([3200, 1700]))
    for i, x in enumerate((a, b)):
        single = model.extract_features(x)
        n = int(single.lens[0])
        assert out.lens[i] == n
        for h_b, h_s in zip(out.hidden, single.hidden):
            assert torch.allclose(h_b[i, :n], h_s[0], atol=1e-5)
        assert out.hidden[-1][i, n:].abs().sum() == 0


def test_hubert_mask_replaces_frames_with_the_embedding():
    model = tiny()
    audio = torch.randn(1, 3200)
    mask = span_mask(torch.tensor([159]), 159, prob=0.5, length=5, generator=torch.Generator().manual_seed(0))
    out = model.extract_features(audio, mask=mask)
    assert mask.any() and torch.allclose(out.post_cnn[mask], model.mask_emb.expand(int(mask.sum()), -1))


def test_span_mask_stays_inside_the_valid_frames():
    mask = span_mask(torch.tensor([100, 30, 3]), 100, prob=0.8, length=10, generator=torch.Generator().manual_seed(1))
    assert not mask[1, 30:].any() and not mask[2, 3:].any()
    assert 0.3 < mask[0].float().mean() < 0.8 and mask[2, :3].all()


def test_hubert_macs_count_conv_and_transformer():
    model = tiny()
    t = int(model.output_lengths(torch.tensor([16000]))[0])
    assert model.macs(16000) > 2 * 4 * t * 32 * 32  # at least the attention projections of 2 layers


def _write_fairseq(model, path, args_namespace=False):
    state = to_fairseq_state_dict(model)
    cfg = fairseq_config(model.config)
    ckpt = {"model": state, "args": argparse.Namespace(**cfg)} if args_namespace else {"model": state, "cfg": {"model": cfg}}
    torch.save(ckpt, path)


def _write_hf(model, folder, safetensors=False, parametrizations=False):
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(hf_config(model.config)))
    state = to_hf_state_dict(model, parametrizations=parametrizations)
    if safetensors:
        write_safetensors(state, folder / "model.safetensors")
    else:
        torch.save(state, folder / "pytorch_model.bin")


def test_checkpoint_key_names_are_the_real_files():
    model = tiny(num_layers=1, num_classes=3)
    fairseq, hf = set(to_fairseq_state_dict(model)), set(to_hf_state_dict(model, parametrizations=True))
    assert {"feature_extractor.conv_layers.0.0.weight", "feature_extractor.conv_layers.0.2.weight",
            "feature_extractor.conv_layers.1.0.weight", "layer_norm.weight", "post_extract_proj.weight", "mask_emb",
            "encoder.pos_conv.0.weight_g", "encoder.pos_conv.0.weight_v", "encoder.pos_conv.0.bias",
            "encoder.layer_norm.bias", "encoder.layers.0.self_attn.k_proj.weight",
            "encoder.layers.0.self_attn_layer_norm.weight", "encoder.layers.0.fc1.weight",
            "encoder.layers.0.final_layer_norm.bias", "final_proj.weight", "label_embs_concat"} <= fairseq
    assert {"feature_extractor.conv_layers.0.conv.weight", "feature_extractor.conv_layers.0.layer_norm.weight",
            "feature_projection.layer_norm.weight", "feature_projection.projection.weight", "masked_spec_embed",
            "encoder.pos_conv_embed.conv.parametrizations.weight.original0",
            "encoder.pos_conv_embed.conv.parametrizations.weight.original1", "encoder.pos_conv_embed.conv.bias",
            "encoder.layers.0.attention.k_proj.weight", "encoder.layers.0.layer_norm.weight",
            "encoder.layers.0.feed_forward.intermediate_dense.weight",
            "encoder.layers.0.feed_forward.output_dense.bias", "encoder.layers.0.final_layer_norm.weight"} <= hf
    assert len(fairseq) == len(model.state_dict())


def test_fairseq_and_hf_files_of_the_same_weights_give_the_same_outputs(tmp_path):
    model = tiny(num_classes=5)
    _write_fairseq(model, tmp_path / "hubert.pt")
    _write_fairseq(model, tmp_path / "old_args.pt", args_namespace=True)
    _write_hf(model, tmp_path / "hf_bin")
    _write_hf(model, tmp_path / "hf_st", safetensors=True, parametrizations=True)
    audio, lens = torch.randn(2, 3000), torch.tensor([3000, 2500])
    with torch.no_grad():
        ref = model.extract_features(audio, lens)
        for source in ("hubert.pt", "old_args.pt", "hf_bin", "hf_st", "hf_st/model.safetensors"):
            loaded = load_hubert(tmp_path / source)
            out = loaded.extract_features(audio, lens)
            for a, b in zip(ref.hidden, out.hidden):
                torch.testing.assert_close(a, b, atol=1e-6, rtol=0)
    assert load_hubert(tmp_path / "hubert.pt").config.num_classes == 5
    assert load_hubert(tmp_path / "hf_bin").config.num_classes == 0


def test_checkpoint_errors_name_the_keys(tmp_path):
    model = tiny()
    state = to_fairseq_state_dict(model)
    state.pop("encoder.layers.1.fc1.weight")
    state["encoder.layers.1.adapter.weight"] = torch.zeros(1)
    torch.save({"model": state, "cfg": {"model": fairseq_config(model.config)}}, tmp_path / "bad.pt")
    with pytest.raises(ModelFileError, match=r"missing keys layers\.1\.fc1\.weight; unexpected keys encoder\.layers\.1\.adapter"):
        load_hubert(tmp_path / "bad.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ModelFileError, match="not a readable"):
        load_hubert(tmp_path / "junk.pt")
    torch.save({"state_dict": {}}, tmp_path / "lightning.pt")
    with pytest.raises(ModelFileError, match="not a fairseq checkpoint"):
        load_hubert(tmp_path / "lightning.pt")
    with pytest.raises(ModelFileError, match="no such"):
        load_hubert(tmp_path / "missing.pt")
    (tmp_path / "empty_hf").mkdir()
    with pytest.raises(ModelFileError, match="model.safetensors or pytorch_model.bin"):
        load_hubert(tmp_path / "empty_hf")


def test_pickled_classes_other_than_namespace_are_refused(tmp_path):
    model = tiny()
    torch.save({"model": to_fairseq_state_dict(model), "cfg": {"model": fairseq_config(model.config)},
                "extra": torch.nn.Identity()}, tmp_path / "pickled.pt")
    with pytest.raises(ModelFileError, match="weights_only"):
        load_hubert(tmp_path / "pickled.pt")
