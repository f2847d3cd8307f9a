"""AVSR model: shapes, padded batch == per item, the stop-gradient, temporal-dynamics labels, losses."""

from __future__ import annotations

import pytest
import torch

from speechkit.data.avsr_dynamics import (
    FAST,
    FORWARD,
    NORMAL,
    REVERSED,
    direction_label,
    direction_samples,
    order_samples,
    speed_label,
    speed_samples,
)
from speechkit.losses.avsr import AvsrLoss
from speechkit.models.avsr import AvsrModel


def _model(**kwargs) -> AvsrModel:
    torch.manual_seed(0)
    args = dict(vocab_size=12, dim=32, num_layers=2, num_heads=4, visual_channels=4, visual_blocks=(1, 1, 1, 1),
                dropout=0.0)
    return AvsrModel(**{**args, **kwargs})


def _inputs(lengths: list[int], seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    t = max(lengths)
    feats = torch.randn(len(lengths), 4 * t, 80, generator=gen)
    video = torch.randint(0, 256, (len(lengths), t, 88, 88), generator=gen, dtype=torch.uint8)
    lens = torch.tensor(lengths)
    for i, n in enumerate(lengths):  # padding as the collate writes it
        feats[i, 4 * n :] = 0
        video[i, n:] = 0
    return feats, lens * 4, video, lens


@pytest.mark.parametrize("kwargs", [{}, {"cross_modal": False}, {"use_video": False}])
def test_shapes_and_padded_batch_equals_items(kwargs):
    model = _model(**kwargs).eval()
    feats, feat_lens, video, lens = _inputs([9, 5, 7])
    with torch.no_grad():
        batch = model(feats, feat_lens, video, lens)
        assert batch["log_probs"].shape == (3, 9, 12)
        assert batch["log_prob_lens"].tolist() == [9, 5, 7]
        for i, n in enumerate([9, 5, 7]):
            item = model(feats[i : i + 1, : 4 * n], feat_lens[i : i + 1], video[i : i + 1, :n], lens[i : i + 1])
            torch.testing.assert_close(batch["log_probs"][i, :n], item["log_probs"][0], atol=2e-5, rtol=1e-4)


def test_stop_gradient_no_a2v_loss_reaches_v2a():
    """The temporal-dynamics losses (on the A2V stream) must leave V2A, the audio front-end and the
    visual front-end untouched; the refinement loss must reach V2A."""
    model = _model().train()
    feats, feat_lens, video, lens = _inputs([12, 10])
    out = model(feats, feat_lens, video, lens, clean_feats=feats + 0.1, generator=torch.Generator().manual_seed(0))
    td = sum(torch.nn.functional.binary_cross_entropy_with_logits(lg, lb, reduction="sum")
             for lg, lb in out["dynamics"].values())
    td.backward(retain_graph=True)
    groups = {"v2a": model.v2a, "audio_frontend": model.audio_frontend, "visual_frontend": model.visual_frontend}
    for name, module in groups.items():
        grads = [p.grad for p in module.parameters() if p.grad is not None]
        assert all(float(g.abs().sum()) == 0.0 for g in grads), f"{name} got a gradient from the A2V losses"
    assert any(p.grad is not None and float(p.grad.abs().sum()) > 0 for p in model.a2v.parameters())
    assert any(p.grad is not None and float(p.grad.abs().sum()) > 0 for p in model.dynamics.parameters())
    model.zero_grad()
    ref = (out["v2a"] - out["clean"]).square().sum()
    ref.backward()
    assert any(p.grad is not None and float(p.grad.abs().sum()) > 0 for p in model.v2a.parameters())


def test_modality_selection_zeroes_the_other_stream():
    model = _model().eval()
    feats, feat_lens, video, lens = _inputs([8])
    with torch.no_grad():
        av = model(feats, feat_lens, video, lens)["log_probs"]
        audio = model(feats, feat_lens, video, lens, modality="audio")["log_probs"]
        audio_other_video = model(feats, feat_lens, 255 - video, lens, modality="audio")["log_probs"]
        video_only = model(feats, feat_lens, video, lens, modality="video")["log_probs"]
        video_other_audio = model(feats * 2, feat_lens, video, lens, modality="video")["log_probs"]
    assert not torch.allclose(av, audio)
    torch.testing.assert_close(audio, audio_other_video)  # the video no longer matters
    torch.testing.assert_close(video_only, video_other_audio)  # nor the audio


def test_reversed_clip_is_labelled_reversed_and_2x_clip_fast():
    clip = list(range(20))
    assert all(direction_label(clip[t : t + 3]) == FORWARD for t in range(18))
    reversed_clip = clip[::-1]
    assert all(direction_label(reversed_clip[t : t + 3]) == REVERSED for t in range(18))
    fast_clip = clip[::2]  # every second frame: played at 2x
    assert all(speed_label(fast_clip[t : t + 3]) == FAST for t in range(8))
    assert all(speed_label(clip[t : t + 3]) == NORMAL for t in range(18))
    with pytest.raises(ValueError):
        direction_label([1, 3, 2])
    with pytest.raises(ValueError):
        speed_label([0, 3, 6])


def test_sample_sets_are_balanced_and_consistent():
    windows, labels = direction_samples(10)
    assert labels.sum() == len(labels) // 2 and windows.shape == (16, 3)
    assert all(direction_label(w) == lb for w, lb in zip(windows.tolist(), labels.tolist()))
    windows, labels = speed_samples(10)
    assert windows.shape == (12, 3) and all(speed_label(w) == lb for w, lb in zip(windows.tolist(), labels.tolist()))
    pairs, labels = order_samples(9, torch.Generator().manual_seed(1))
    assert pairs.shape == (8, 2)
    assert all((i < j) == bool(lb) for (i, j), lb in zip(pairs.tolist(), labels.tolist()))


def test_loss_weights_and_zero_weights():
    model = _model().train()
    feats, feat_lens, video, lens = _inputs([12, 10])
    out = model(feats, feat_lens, video, lens, clean_feats=feats, generator=torch.Generator().manual_seed(0))
    batch = {"tokens": torch.tensor([[1, 2, 3], [4, 5, 0]]), "token_lens": torch.tensor([3, 2])}
    total, stats = AvsrLoss()(out, batch)
    expected = stats["ctc"] + 0.1 * stats["order"] + 0.05 * stats["direction"] + 0.05 * stats["speed"] + 0.1 * stats["ref"]
    torch.testing.assert_close(total.detach(), expected)
    ctc_only, stats = AvsrLoss(order_weight=0, direction_weight=0, speed_weight=0, ref_weight=0)(out, batch)
    torch.testing.assert_close(ctc_only, stats["ctc"])
    assert "direction" not in stats
