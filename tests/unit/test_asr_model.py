"""Conformer-CTC encoder: length arithmetic, masks, batch consistency, streaming equivalence."""

from __future__ import annotations

import pytest
import torch

from speechkit.models.asr import (
    PRESETS,
    ConformerEncoder,
    CTCHead,
    DynamicChunk,
    EncoderFeatures,
    attention_mask,
    chunk_mask,
    output_lengths,
)
from speechkit.models.asr.attention import MultiHeadSelfAttention
from speechkit.models.asr.subsampling import Conv2dSubsampling4, input_frames

NUM_BINS = 20


def tiny_encoder(seed: int = 0) -> ConformerEncoder:
    torch.manual_seed(seed)
    enc = ConformerEncoder(
        NUM_BINS, dim=32, num_layers=2, num_heads=2, ffn_dim=64, conv_kernel_size=5, subsampling_channels=8
    )
    # Non-trivial CMVN so that the buffers are exercised in every path.
    enc.set_feature_stats(torch.linspace(-1, 1, NUM_BINS), torch.linspace(0.5, 2, NUM_BINS))
    return enc.eval()


def features(batch: int, frames: int, seed: int = 1) -> torch.Tensor:
    return 3.0 * torch.randn(batch, frames, NUM_BINS, generator=torch.Generator().manual_seed(seed))


def test_subsampling_length_formula_matches_convolutions():
    sub = Conv2dSubsampling4(NUM_BINS, 4, 8)
    for frames in range(1, 60):
        x, lens = sub(torch.randn(1, frames, NUM_BINS), torch.tensor([frames]))
        # floor((floor((T - 1) / 2) - 1) / 2), 0 below the 7-frame receptive field
        expected = max(((frames - 1) // 2 - 1) // 2, 0)
        assert lens.item() == expected
        assert output_lengths(torch.tensor([frames])).item() == expected
        if frames >= 7:
            assert x.shape[1] == expected
    for chunk in (1, 2, 8, 16):
        assert output_lengths(torch.tensor([input_frames(chunk)])).item() == chunk
        assert output_lengths(torch.tensor([input_frames(chunk) - 1])).item() == chunk - 1
        assert ConformerEncoder.chunk_input_frames(chunk) == (chunk - 1) * 4 + 7
        assert ConformerEncoder.chunk_shift_frames(chunk) == 4 * chunk


def test_chunk_mask_limits_left_and_right_context():
    mask = chunk_mask(6, 2, 1).int().tolist()
    assert mask == [
        [1, 1, 0, 0, 0, 0], [1, 1, 0, 0, 0, 0],
        [1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 0, 0],
        [0, 0, 1, 1, 1, 1], [0, 0, 1, 1, 1, 1],
    ]
    assert chunk_mask(5, -1, -1).all()
    assert chunk_mask(5, 2, -1).int().tolist()[4] == [1, 1, 1, 1, 1]
    full = attention_mask(torch.tensor([3, 5]), 5)
    assert full.shape == (2, 1, 5, 5)
    assert full[0, 0, 0].tolist() == [True, True, True, False, False]
    assert full[0, 0, 4].tolist() == [True, True, True, False, True]  # padded query: diagonal only added


def test_dynamic_chunk_draws_full_context_and_bounded_chunks():
    policy = DynamicChunk(full_context_prob=0.5, max_chunk_size=25, max_left_chunks=3)
    gen = torch.Generator().manual_seed(0)
    draws = [policy.sample(gen) for _ in range(400)]
    full = [d for d in draws if d == (-1, -1)]
    chunked = [d for d in draws if d != (-1, -1)]
    assert 150 < len(full) < 250
    assert {c for c, _ in chunked} <= set(range(1, 26)) and len({c for c, _ in chunked}) > 15
    assert {left for _, left in chunked} == {0, 1, 2, 3}
    assert all(left == -1 for _, left in (DynamicChunk(0.0, 4).sample(gen) for _ in range(20)))
    narrow = {DynamicChunk(0.0, 16, min_chunk_size=4).sample(gen)[0] for _ in range(200)}
    assert narrow == set(range(4, 17))
    with pytest.raises(ValueError, match="min_chunk_size"):
        DynamicChunk(0.0, 4, min_chunk_size=5)


@pytest.mark.parametrize("chunk_size,left_chunks", [(-1, -1), (3, 1), (4, -1)])
def test_conformer_padded_batch_matches_single(chunk_size, left_chunks):
    enc = tiny_encoder()
    lens = [121, 64, 37]
    feats = features(3, max(lens))
    out, out_lens = enc(feats, torch.tensor(lens), chunk_size, left_chunks)
    for b, n in enumerate(lens):
        single, single_lens = enc(feats[b : b + 1, :n], torch.tensor([n]), chunk_size, left_chunks)
        assert out_lens[b] == single_lens[0] == output_lengths(torch.tensor(n))
        torch.testing.assert_close(out[b, : out_lens[b]], single[0], atol=1e-5, rtol=1e-5)


def test_chunk_mask_hides_frames_after_the_chunk():
    enc = tiny_encoder()
    chunk, frames = 4, 160
    feats = features(1, frames)
    lens = torch.tensor([frames])
    # Encoder frames 0..7 (chunks 0 and 1) read feature frames 0..4*7+6 = 34.
    changed = feats.clone()
    changed[:, 35:] = features(1, frames - 35, seed=7)
    before, _ = enc(feats, lens, chunk_size=chunk)
    after, _ = enc(changed, lens, chunk_size=chunk)
    torch.testing.assert_close(before[:, :8], after[:, :8], atol=1e-6, rtol=0)
    assert (before[:, 8:] - after[:, 8:]).abs().max() > 1e-3
    full_before, _ = enc(feats, lens)
    full_after, _ = enc(changed, lens)
    assert (full_before[:, :8] - full_after[:, :8]).abs().max() > 1e-3


def stream(enc: ConformerEncoder, feats: torch.Tensor, lens: torch.Tensor, chunk: int, left: int):
    """Feed chunks of ``chunk_input_frames`` every ``chunk_shift_frames``; concatenate outputs."""
    batch, frames = feats.shape[:2]
    states = enc.init_states(batch, chunk, left)
    size, shift = enc.chunk_input_frames(chunk), enc.chunk_shift_frames(chunk)
    outs, out_lens = [], torch.zeros(batch, dtype=torch.long)
    for start in range(0, frames, shift):
        piece = feats[:, start : start + size]
        piece_lens = (lens - start).clamp(min=0, max=piece.shape[1])
        out, n, states = enc.streaming_forward(piece, piece_lens, states)
        assert out.shape[1] <= chunk
        outs.append(out)
        out_lens += n
    return torch.cat(outs, dim=1), out_lens


@pytest.mark.parametrize("chunk,left", [(1, 4), (2, 0), (3, 2), (5, 1), (8, 3)])
def test_streaming_forward_equals_chunk_masked_forward(chunk, left):
    enc = tiny_encoder()
    torch.manual_seed(3)
    head = CTCHead(32, 11).eval()
    lens = torch.tensor([143, 90])  # not multiples of any chunk's 4 * C shift
    feats = features(2, 143)
    ref, ref_lens = enc(feats, lens, chunk_size=chunk, left_chunks=left)
    with torch.no_grad():
        out, out_lens = stream(enc, feats, lens, chunk, left)
    assert out_lens.tolist() == ref_lens.tolist()
    for b in range(2):
        # Chunks before an item's last one are full, so its valid frames are the first ones.
        n = int(ref_lens[b])
        diff = (head(out[b, :n]) - head(ref[b, :n])).abs().max().item()
        assert diff <= 1e-4, f"chunk {chunk}: streaming log-probs differ by {diff}"
    # Full context differs from chunked, so the test above is not vacuous.
    full, _ = enc(feats, lens)
    assert (full - ref).abs().max() > 1e-3


def test_streaming_batch_matches_single_streams():
    enc = tiny_encoder()
    lens = torch.tensor([101, 58])
    feats = features(2, 101)
    with torch.no_grad():
        batched, batched_lens = stream(enc, feats, lens, chunk=3, left=2)
        single, single_lens = stream(enc, feats[1:, :58], lens[1:], chunk=3, left=2)
    n = int(single_lens[0])
    assert batched_lens[1] == n
    torch.testing.assert_close(batched[1, :n], single[0, :n], atol=1e-5, rtol=1e-5)


def test_streaming_states_layout():
    enc = tiny_encoder()
    states = enc.init_states(batch_size=3, chunk_size=4, left_chunks=2)
    assert [tuple(s.shape) for s in states] == [(3, 2, 8, 64), (3, 2, 4, 32), (3,)]
    assert all(s.dtype == torch.float32 and not s.any() for s in states)
    feats = features(3, enc.chunk_input_frames(4))
    with torch.no_grad():
        _, _, new = enc.streaming_forward(feats, torch.tensor([feats.shape[1], 11, 3]), states)
    assert [tuple(s.shape) for s in new] == [tuple(s.shape) for s in states]
    assert new[2].tolist() == [4.0, 2.0, 0.0]  # frames cached: full chunk, 11 frames -> 2, 3 -> 0
    torch.testing.assert_close(new[0][2], states[0][2])  # an item with no output keeps its state


@pytest.mark.parametrize("chunk_size, left_chunks", [(-1, -1), (2, 1)])
def test_extract_features_last_layer_is_what_the_head_consumes(chunk_size, left_chunks):
    enc = tiny_encoder()
    feats, lens = features(2, 50), torch.tensor([50, 40])
    out, out_lens = enc(feats, lens, chunk_size, left_chunks)
    got = enc.extract_features(feats, lens, chunk_size, left_chunks)
    assert isinstance(got, EncoderFeatures) and len(got.hidden) == len(got.qkv) == enc.num_layers
    torch.testing.assert_close(got.last, out, rtol=0, atol=0)
    assert torch.equal(got.lens, out_lens)
    head = CTCHead(32, 11)
    torch.testing.assert_close(head(got.last), head(out), rtol=0, atol=0)
    # Layer by layer: each hidden state is the previous one through the layer, and the
    # layer's Q, K, V are its attention's projections of that input.
    mask = attention_mask(out_lens, out.shape[1], chunk_size, left_chunks)
    layer = enc.layers[1]
    torch.testing.assert_close(layer(got.hidden[0], mask), got.hidden[1])
    q, k, v = got.qkv[1]
    assert q.shape == k.shape == v.shape == (2, 2, out.shape[1], 16)
    x = got.hidden[0] + 0.5 * layer.ff1(got.hidden[0])
    for mine, theirs in zip(layer.attn.project(layer.norm_attn(x)), (q, k, v)):
        torch.testing.assert_close(mine, theirs)


def test_extract_features_padded_batch_matches_single():
    enc = tiny_encoder()
    feats, lens = features(2, 60), torch.tensor([60, 41])
    batched = enc.extract_features(feats, lens, chunk_size=2, left_chunks=2)
    single = enc.extract_features(feats[1:, :41], lens[1:], chunk_size=2, left_chunks=2)
    n = int(single.lens[0])
    assert int(batched.lens[1]) == n
    for b, s in zip(batched.hidden, single.hidden):
        torch.testing.assert_close(b[1, :n], s[0, :n], atol=1e-5, rtol=1e-5)
    for b, s in zip(batched.qkv, single.qkv):
        for bt, st in zip(b, s):
            torch.testing.assert_close(bt[1, :, :n], st[0, :, :n], atol=1e-5, rtol=1e-5)


def test_forward_keeps_one_return_type():
    enc = tiny_encoder()
    feats, lens = features(2, 50), torch.tensor([50, 40])
    with pytest.raises(TypeError):
        enc(feats, lens, return_hidden=True)  # per-layer outputs come from extract_features
    out = enc(feats, lens)
    assert isinstance(out, tuple) and len(out) == 2
    attn = MultiHeadSelfAttention(32, 2)
    assert isinstance(attn(out[0], attention_mask(out[1], out[0].shape[1])), torch.Tensor)


def test_short_inputs_give_zero_length_and_finite_output():
    enc = tiny_encoder()
    out, lens = enc(features(2, 5), torch.tensor([5, 0]))
    assert lens.tolist() == [0, 0] and torch.isfinite(out).all()
    out, lens = enc(features(2, 30), torch.tensor([30, 3]))
    assert lens.tolist() == [6, 0] and torch.isfinite(out).all()


def test_encoder_trains_in_train_mode():
    enc = tiny_encoder().train()
    head = CTCHead(32, 11, dropout=0.1)
    log_probs = head(enc(features(2, 60), torch.tensor([60, 45]), chunk_size=2)[0])
    log_probs.sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in enc.parameters())
    assert torch.allclose(log_probs.exp().sum(-1), torch.ones(2, log_probs.shape[1]), atol=1e-5)


# Pinned so that a change of an on-device budget is a reviewed diff (encoder only, F = 80;
# the CTC head adds (D + 1) * V).
PRESET_PARAMETERS = {"xs": 2_514_304, "s": 12_922_496, "m": 29_177_344}


@pytest.mark.parametrize("name", sorted(PRESET_PARAMETERS))
def test_preset_parameter_counts(name):
    enc = PRESETS[name]()
    assert sum(p.numel() for p in enc.parameters()) == PRESET_PARAMETERS[name]
