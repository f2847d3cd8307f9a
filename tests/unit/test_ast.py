"""The Audio Spectrogram Transformer: shapes, batch consistency, presets, the AST front-end, and
loading pretrained checkpoints in the original and Hugging Face layouts (tiny random ones)."""

from __future__ import annotations

import math

import pytest
import torch

from speechkit.errors import ModelFileError, SpeechkitError
from speechkit.frontends.fbank import FLOAT32_EPS, AstFbank, Fbank
from speechkit.models.respiratory import AST
from speechkit.models.respiratory.ast import grid_size
from speechkit.models.respiratory.checkpoint import load_ast_checkpoint, resize_pos_embed


def tiny(**kwargs) -> AST:
    torch.manual_seed(0)
    return AST(**{"num_classes": 4, "preset": "tiny", "num_mel_bins": 48, "input_frames": 120, **kwargs}).eval()


def test_grid_and_shapes():
    assert grid_size(128, 798) == (12, 79)  # the paper's 948 patches for 8 s
    assert grid_size(128, 1024) == (12, 101)  # AudioSet's grid
    model = tiny()
    feats = torch.randn(3, 120, 48)
    assert model.grid == (4, 11) and model.embed(feats).shape == (3, 44, 64)
    assert model.encode(model.embed(feats)).shape == (3, 64)
    assert model(feats).shape == (3, 4)


def test_batch_equals_per_item_and_eval_is_deterministic():
    model = tiny()
    feats = torch.randn(4, 120, 48)
    with torch.no_grad():
        batch = model(feats)
        single = torch.cat([model(feats[i : i + 1]) for i in range(4)])
    assert torch.allclose(batch, single, atol=1e-5)
    with torch.no_grad():
        assert torch.equal(model(feats), batch)


def test_output_is_mean_of_cls_and_distillation_tokens():
    model = tiny()
    feats = torch.randn(2, 120, 48)
    with torch.no_grad():
        pooled = model.encode(model.embed(feats))
        model.dist_token.copy_(model.cls_token)
        model.pos_embed[:, 1].copy_(model.pos_embed[:, 0])
        same = model.encode(model.embed(feats))
    # with identical tokens the two outputs coincide: the mean is either one
    b = feats.shape[0]
    x = torch.cat([model.cls_token.expand(b, -1, -1), model.dist_token.expand(b, -1, -1), model.embed(feats)], 1)
    x = x + model.pos_embed
    for block in model.blocks:
        x = block(x)
    assert torch.allclose(same, model.norm(x)[:, 0], atol=1e-5)
    assert not torch.allclose(pooled, same)


def test_presets_and_wrong_input_size():
    assert sum(p.numel() for p in AST(preset="tiny").parameters()) == 277_828  # golden: tiny at 128 bins x 798 frames (the base preset: 85,989,124)
    base = AST(preset="base", depth=1)  # one block of DeiT-base-384: width 768, 12 heads
    assert base.cfg.embed_dim == 768 and base.blocks[0].attn.num_heads == 12 and base.pos_embed.shape == (1, 950, 768)
    with pytest.raises(SpeechkitError, match="built for 120 frames x 48 bins"):
        tiny()(torch.randn(1, 100, 48))
    with pytest.raises(SpeechkitError, match="preset"):
        AST(preset="huge")


def test_ast_fbank_is_normalised_kaldi_fbank():
    audio = 0.1 * torch.randn(2, 16000)
    ast = AstFbank()
    ref, lens = Fbank.forward(ast, audio)  # the plain Kaldi fbank with AST's options
    feats, feat_lens = ast(audio)
    assert torch.allclose(feats, (ref + 4.2677393) / (2 * 4.5689974)) and feats.shape == (2, 98, 128)
    assert torch.equal(feat_lens, lens)
    assert ast.kaldi_options()["frame_opts"]["window_type"] == "hanning"
    # AST's lowest filters cover no FFT bin: they hold the log floor, as in torchaudio's kaldi.fbank
    empty = (ast.mel_banks.sum(0) == 0).nonzero().flatten()
    assert len(empty) > 0 and torch.all(ref[..., empty] == math.log(FLOAT32_EPS))
    assert AstFbank(**ast.config()).config() == ast.config()


def test_fbank_without_the_flag_still_rejects_empty_filters():
    with pytest.raises(ValueError, match="no FFT bin"):
        Fbank(num_mel_bins=128)


# -- pretrained checkpoints -----------------------------------------------------------------
def original_layout(model: AST, grid_time: int) -> dict:
    """The model's weights under the original AST keys, with a wider (f, grid_time) pos grid."""
    state = {}
    for key, value in model.state_dict().items():
        new = "module.mlp_head." + key[5:] if key.startswith("head.") else "module.v." + key
        state[new] = value.clone()
    f, t = model.grid
    grid = model.pos_embed[:, 2:].reshape(1, f, t, -1)
    pad = torch.randn(1, f, (grid_time - t) // 2, grid.shape[-1])
    wide = torch.cat([pad, grid, torch.randn(1, f, grid_time - t - pad.shape[2], grid.shape[-1])], dim=2)
    state["module.v.pos_embed"] = torch.cat([model.pos_embed[:, :2], wide.reshape(1, f * grid_time, -1)], 1)
    state["module.v.head.weight"] = torch.randn(1000, 64)  # DeiT's unused heads
    state["module.v.head_dist.weight"] = torch.randn(1000, 64)
    return state


def hf_layout(model: AST) -> dict:
    p = "audio_spectrogram_transformer."
    sd = model.state_dict()
    state = {p + "embeddings.cls_token": sd["cls_token"], p + "embeddings.distillation_token": sd["dist_token"],
             p + "embeddings.position_embeddings": sd["pos_embed"],
             p + "embeddings.patch_embeddings.projection.weight": sd["patch_embed.proj.weight"],
             p + "embeddings.patch_embeddings.projection.bias": sd["patch_embed.proj.bias"],
             p + "layernorm.weight": sd["norm.weight"], p + "layernorm.bias": sd["norm.bias"],
             "classifier.layernorm.weight": sd["head.0.weight"], "classifier.layernorm.bias": sd["head.0.bias"],
             "classifier.dense.weight": sd["head.1.weight"], "classifier.dense.bias": sd["head.1.bias"]}
    names = {"norm1": "layernorm_before", "attn.proj": "attention.output.dense", "norm2": "layernorm_after",
             "mlp.fc1": "intermediate.dense", "mlp.fc2": "output.dense"}
    for i in range(len(model.blocks)):
        for ours, theirs in names.items():
            for kind in ("weight", "bias"):
                state[f"{p}encoder.layer.{i}.{theirs}.{kind}"] = sd[f"blocks.{i}.{ours}.{kind}"]
        for kind in ("weight", "bias"):
            q, k, v = sd[f"blocks.{i}.attn.qkv.{kind}"].chunk(3)
            for name, t in (("query", q), ("key", k), ("value", v)):
                state[f"{p}encoder.layer.{i}.attention.attention.{name}.{kind}"] = t
    return state


def test_load_original_layout_with_pos_grid_crop(tmp_path):
    source = tiny()
    path = tmp_path / "audioset_tiny.pth"
    torch.save(original_layout(source, grid_time=17), path)  # a wider time grid, centre-cropped back
    target = tiny()
    torch.manual_seed(1)
    torch.nn.init.normal_(target.head[1].weight)
    notes = load_ast_checkpoint(target, path)
    assert "original AST layout" in notes[0] and "positional grid 4x17 -> 4x11" in notes[1]
    feats = torch.randn(2, 120, 48)
    with torch.no_grad():
        assert torch.allclose(target(feats), source(feats), atol=1e-6)


def test_load_hugging_face_layout_and_fresh_head(tmp_path):
    source = tiny()
    path = tmp_path / "pytorch_model.bin"
    torch.save(hf_layout(source), path)
    target = tiny()
    load_ast_checkpoint(target, path)
    feats = torch.randn(2, 120, 48)
    with torch.no_grad():
        assert torch.allclose(target(feats), source(feats), atol=1e-6)
    # a checkpoint with another class count: everything but the head's Linear is copied
    other = AST(num_classes=7, preset="tiny", num_mel_bins=48, input_frames=120)
    notes = load_ast_checkpoint(other, path)
    assert any("kept fresh" in n for n in notes)
    assert torch.equal(other.head[0].weight, source.head[0].weight) and other.head[1].weight.shape == (7, 64)
    with torch.no_grad():
        assert torch.allclose(other.encode(other.embed(feats)), source.encode(source.embed(feats)), atol=1e-6)
    # the recipe path: AST(pretrained=...)
    assert torch.equal(AST(num_classes=4, preset="tiny", num_mel_bins=48, input_frames=120,
                           pretrained=str(path)).cls_token, source.cls_token)


def test_pos_embed_resize_interpolates_when_larger():
    pos = torch.randn(1, 2 + 2 * 3, 8)
    out = resize_pos_embed(pos, (2, 3), (2, 6))
    assert out.shape == (1, 14, 8) and torch.equal(out[:, :2], pos[:, :2])


def test_checkpoint_errors_are_one_line(tmp_path):
    with pytest.raises(ModelFileError, match="no such AST checkpoint"):
        load_ast_checkpoint(tiny(), tmp_path / "missing.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(ModelFileError, match="not a readable tensor checkpoint"):
        load_ast_checkpoint(tiny(), tmp_path / "junk.pth")
    state = original_layout(tiny(), 11)
    del state["module.v.blocks.3.mlp.fc2.weight"]
    state["module.v.blocks.9.norm1.weight"] = torch.ones(64)
    torch.save(state, tmp_path / "partial.pth")
    with pytest.raises(ModelFileError, match=r"missing blocks.3.mlp.fc2.weight \(1\); unexpected blocks.9.norm1.weight"):
        load_ast_checkpoint(tiny(), tmp_path / "partial.pth")
    torch.save(original_layout(tiny(), 11), tmp_path / "narrow.pth")
    with pytest.raises(ModelFileError, match="wrong shape"):
        load_ast_checkpoint(AST(preset="tiny", embed_dim=32, num_mel_bins=48, input_frames=120), tmp_path / "narrow.pth")
