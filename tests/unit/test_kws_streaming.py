"""StreamingBCResNet: shapes, chunked streaming == full sequence, causality, padded batches."""

import pytest
import torch

from speechkit.errors import SpeechkitError
from speechkit.models.kws import BCResNet, StreamingBCResNet


def _model(seed: int = 0, **kwargs) -> StreamingBCResNet:
    """A small eval-mode model whose BatchNorm statistics are fitted to log-mel-like input.

    (With default statistics the random network's output hardly depends on its input, which
    would make the equality tests vacuous.)
    """
    torch.manual_seed(seed)
    kwargs = {"num_classes": 5, "width": 1, "window_frames": 20, "norm_frames": 15, **kwargs}
    model = StreamingBCResNet(**kwargs).train()
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = None  # cumulative average over the calibration batch
    with torch.no_grad():
        model(_feats(8, 80, seed=100 + seed))
    return model.eval()


def _feats(b: int, t: int, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    # Log-mel-like: an offset per bin, slow drift and noise.
    offset = torch.linspace(-8, 2, 40)
    return offset + 2 * torch.randn(b, t, 40, generator=g)


def _stream(model, feats, sizes):
    state = model.initial_state(feats.shape[0])
    out, start = [], 0
    with torch.no_grad():
        for size in sizes:
            y, state = model.streaming_forward(feats[:, start:start + size], state)
            out.append(y)
            start += size
    assert start == feats.shape[1]
    return torch.cat(out, dim=1), state


def _random_sizes(total: int, seed: int) -> list[int]:
    g = torch.Generator().manual_seed(seed)
    sizes, left = [], total
    while left:
        size = min(left, int(torch.randint(1, 24, (1,), generator=g)))
        sizes.append(size)
        left -= size
    return sizes


def test_streaming_bcresnet_shapes_and_param_count():
    model = _model()
    feats = _feats(3, 37)
    assert model(feats).shape == (3, 5)
    assert model.frame_logits(feats).shape == (3, 37, 5)
    stages = model.extract_features(feats).stages
    assert [tuple(s.shape) for s in stages] == [
        (3, 8, 20, 37), (3, 12, 10, 37), (3, 16, 5, 37), (3, 20, 5, 37)
    ]
    # Same parameters as BC-ResNet-1 (norm and pooling have none).
    count = sum(p.numel() for p in StreamingBCResNet(num_classes=12).parameters())
    assert count == sum(p.numel() for p in BCResNet(num_classes=12).parameters()) == 9232
    shapes = model.initial_state_shapes(2)
    assert shapes[:4] == [(2, 1), (2, 5, 19), (2, 14, 40), (2, 1, 40, 4)]
    assert shapes[-1] == (2, 20, 5, 4)
    assert len(shapes) == 4 + 12 + 1


@pytest.mark.parametrize("input_norm", ["running", "none"])
@pytest.mark.parametrize("chunking", ["ones", "odd", "random", "whole"])
def test_streaming_forward_equals_frame_logits(input_norm, chunking):
    model = _model(input_norm=input_norm)
    feats = _feats(2, 131)  # beyond window + norm horizons, so the clamped counter is exercised
    full = model.frame_logits(feats)
    sizes = {
        "ones": [1] * 131,
        "odd": [3, 7, 1, 13, 5] * 4 + [11, 4],
        "random": _random_sizes(131, seed=4),
        "whole": [131],
    }[chunking]
    streamed, state = _stream(model, feats, sizes)
    assert streamed.shape == full.shape
    torch.testing.assert_close(streamed, full, atol=1e-5, rtol=0)
    assert all(s.shape == t.shape for s, t in zip(state, model.initial_state(2)))


def test_streaming_forward_long_input_keeps_precision():
    # 10 s of frames in 37-frame chunks vs one full pass (float64 window sums).
    model = _model(window_frames=98, norm_frames=100)
    feats = _feats(1, 1000, seed=7)
    streamed, _ = _stream(model, feats, [37] * 27 + [1])
    torch.testing.assert_close(streamed, model.frame_logits(feats), atol=1e-5, rtol=0)


def test_forward_is_last_frame_logits():
    model = _model()
    for t in (5, 20, 64):  # shorter than, equal to and longer than the window
        feats = _feats(2, t)
        torch.testing.assert_close(model(feats), model.frame_logits(feats)[:, -1], atol=1e-5,
                                   rtol=0)


def test_pooling_is_mean_of_last_window_frames():
    model = _model(input_norm="none")
    feats = _feats(1, 50)
    z = model._frame_z(feats)  # (1, C, T)
    pooled = model.frame_logits(feats)[0]  # (T, C)
    torch.testing.assert_close(pooled[3], z[0, :, :4].mean(-1), atol=1e-5, rtol=0)
    torch.testing.assert_close(pooled[40], z[0, :, 21:41].mean(-1), atol=1e-5, rtol=0)


def test_running_norm_normalizes_a_level_change():
    # A constant per-bin offset is removed (up to lambda * x) once the window has seen it.
    model = _model(input_norm="running", resnorm_lambda=0.0)
    feats = _feats(1, 60)
    y = model._normalize(feats, None)[0]
    y_shift = model._normalize(feats + 5.0, None)[0]
    torch.testing.assert_close(y, y_shift, atol=1e-4, rtol=0)


def test_streaming_bcresnet_is_causal():
    model = _model()
    feats = _feats(1, 80)
    changed = feats.clone()
    changed[:, 50:] = torch.randn(1, 30, 40) * 5
    a, b = model.frame_logits(feats), model.frame_logits(changed)
    torch.testing.assert_close(a[:, :50], b[:, :50], atol=1e-6, rtol=0)
    assert (a[:, 50:] - b[:, 50:]).abs().max() > 1e-3


def test_padded_batch_matches_each_item_on_its_frames():
    model = _model()
    lens = [70, 33, 51]
    items = [_feats(1, n, seed=i) for i, n in enumerate(lens)]
    batch = torch.full((3, 70, 40), -13.8)
    for i, item in enumerate(items):
        batch[i, : lens[i]] = item[0]
    out = model.frame_logits(batch)
    for i, item in enumerate(items):
        torch.testing.assert_close(out[i, : lens[i]], model.frame_logits(item)[0], atol=1e-5,
                                   rtol=0)
        torch.testing.assert_close(model(item)[0], out[i, lens[i] - 1], atol=1e-5, rtol=0)


def test_streaming_bcresnet_bad_config_and_input():
    with pytest.raises(SpeechkitError, match="input_norm"):
        StreamingBCResNet(input_norm="batch")
    with pytest.raises(SpeechkitError, match="window_frames"):
        StreamingBCResNet(window_frames=1)
    with pytest.raises(SpeechkitError, match="in_bins"):
        StreamingBCResNet(in_bins=32)
    model = _model()
    with pytest.raises(SpeechkitError, match="40 bins"):
        model(torch.randn(1, 10, 64))
    with pytest.raises(SpeechkitError, match="state tensors"):
        model.streaming_forward(_feats(1, 4), model.initial_state(1)[:-1])


def test_streaming_bcresnet_trains_in_train_mode():
    model = _model().train()
    feats = _feats(4, 98)
    loss = model(feats).logsumexp(-1).mean()
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())
