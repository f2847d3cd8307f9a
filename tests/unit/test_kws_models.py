"""Tests for the KWS/ASC CNNs (BC-ResNet, BC-ResNet-Mod) and their normalization blocks."""


import numpy as np
import pytest
import torch
from torch import nn

from speechkit.errors import SpeechkitError
from speechkit.models.kws import BCRESNET_WIDTHS, BCResNet, BCResNetMod, ClassifierFeatures, bcresnet_preset
from speechkit.models.kws.bcresnet import BCResBlock
from speechkit.models.nn import FreqNorm, ResNorm, SubSpectralNorm

# The modules whose doctest examples run below.

# Counted from the official Qualcomm-AI-research/bcresnet architecture (docs/methods/kws.md, section 2).
BCRESNET_PARAMS = {1: 9_232, 1.5: 17_154, 2: 27_284, 3: 54_168, 6: 187_812, 8: 321_068}
# Our BC-ResNet-Mod layout, 10 classes, 4 sub-bands (docs/methods/kws.md, section 4).
BCRESNET_MOD_PARAMS = {40: 85_890, 80: 314_970}


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def feats(batch: int, frames: int, bins: int, seed: int = 0, dtype=torch.float32) -> torch.Tensor:
    """Log-mel-like features: a tone band over noise, (batch, frames, bins)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, frames, bins, generator=g, dtype=dtype) - 6.0
    x[:, :, bins // 4 : bins // 4 + 3] += 4.0
    return x


def randomize_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give BatchNorms non-trivial running stats and affine params so eval mode is not identity."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(0.1 * torch.randn(m.num_features, generator=g))
            m.running_var.copy_(0.5 + torch.rand(m.num_features, generator=g))
            m.weight.data.copy_(1.0 + 0.1 * torch.randn(m.num_features, generator=g))
            m.bias.data.copy_(0.1 * torch.randn(m.num_features, generator=g))
    return model


# --- parameter counts -------------------------------------------------------------------------


def test_bcresnet_widths_preset_tuple():
    assert BCRESNET_WIDTHS == (1, 1.5, 2, 3, 6, 8)


@pytest.mark.parametrize("width", BCRESNET_WIDTHS)
def test_bcresnet_param_count_matches_official(width):
    assert n_params(bcresnet_preset(width)) == BCRESNET_PARAMS[width]


@pytest.mark.parametrize("base_width", [40, 80])
def test_bcresnet_mod_param_count(base_width):
    assert n_params(BCResNetMod(base_width=base_width)) == BCRESNET_MOD_PARAMS[base_width]


def test_resnorm_adds_no_parameters():
    assert n_params(BCResNet(resnorm=True)) == n_params(BCResNet(resnorm=False)) == 9_232
    assert n_params(BCResNetMod(resnorm=False)) == n_params(BCResNetMod(resnorm=True))


def test_bcresnet_num_classes_changes_only_last_layer():
    # 1x1 conv 4c -> classes with bias: (4*8 + 1) params per class at width 1.
    assert n_params(BCResNet(num_classes=35)) - n_params(BCResNet(num_classes=12)) == 23 * 33


# --- structure: hyperparameters reach submodules ----------------------------------------------


def test_bcresnet_structure_follows_official_layout():
    model = BCResNet(width=1.5, dropout_prob=0.3)
    assert [len(s) for s in model.stages] == [2, 2, 4, 4]
    widths = [s[-1].f1[3].out_channels for s in model.stages]
    assert widths == [12, 18, 24, 30]  # int() truncation of 1.5c and 2.5c
    dilations = [s[0].f1[0].dilation[1] for s in model.stages]
    assert dilations == [1, 2, 4, 8]
    assert [s[0].f2[-2].stride[0] for s in model.stages] == [1, 2, 2, 1]
    assert [[b.transition for b in s] for s in model.stages] == [
        [True, False], [True, False], [True, False, False, False], [True, False, False, False]
    ]
    drops = [m.p for m in model.modules() if isinstance(m, nn.Dropout2d)]
    assert len(drops) == 12 and set(drops) == {0.3}
    ssn = [m.num_subbands for m in model.modules() if isinstance(m, SubSpectralNorm)]
    assert len(ssn) == 12 and set(ssn) == {5}


def test_bcresnet_mod_structure():
    model = BCResNetMod(base_width=8, num_subbands=4, dropout_prob=0.2)
    assert [len(s) for s in model.stages] == [2, 2, 2, 3]
    pools = [type(p).__name__ for p in model.pools]
    assert pools == ["MaxPool2d", "MaxPool2d", "Identity", "Identity"]
    assert sum(isinstance(m, ResNorm) for m in model.modules()) == 5
    assert {m.p for m in model.modules() if isinstance(m, nn.Dropout2d)} == {0.2}
    assert not any(isinstance(m, ResNorm) for m in BCResNetMod(resnorm=False).modules())
    assert sum(isinstance(m, ResNorm) for m in BCResNet(resnorm=True).modules()) == 5


def test_bcresblock_residual_paths():
    block = BCResBlock(8, 8).eval()
    x = torch.randn(2, 8, 10, 30)
    # The output of a normal block is ReLU(x + f2 + f1): zeroing f2's and f1's last layers'
    # weights leaves ReLU(x + SSN bias) = ReLU(x) with default BN init.
    with torch.no_grad():
        block.f2[0].weight.zero_()
        block.f1[3].weight.zero_()
    torch.testing.assert_close(block(x), torch.relu(x))


# --- shapes, batches, dtypes ------------------------------------------------------------------


@pytest.mark.parametrize("frames", [1, 2, 50, 101, 151])
def test_bcresnet_output_shape(frames):
    model = BCResNet(width=1).eval()
    assert model(feats(2, frames, 40)).shape == (2, 12)


@pytest.mark.parametrize("frames", [7, 8, 64, 101])
def test_bcresnet_mod_output_shape(frames):
    model = BCResNetMod(base_width=8).eval()
    assert model(feats(2, frames, 256)).shape == (2, 10)


def test_bcresnet_other_bin_counts():
    # 80 bins: SSN sizes 40, 20, 10 (5 sub-bands) and 10 bins before the 5x5 classifier conv.
    assert BCResNet(in_bins=80).eval()(feats(1, 101, 80)).shape == (1, 12)
    assert BCResNetMod(base_width=8, in_bins=64).eval()(feats(1, 64, 64)).shape == (1, 10)


@pytest.mark.parametrize(
    "make, bins, frames",
    [
        (lambda: BCResNet(width=1, resnorm=True), 40, 101),
        (lambda: BCResNetMod(base_width=8), 256, 64),
    ],
)
def test_batch_matches_single_items(make, bins, frames):
    torch.manual_seed(0)
    model = randomize_bn(make()).eval()
    x = feats(3, frames, bins)
    with torch.no_grad():
        batched = model(x)
        single = torch.cat([model(x[i : i + 1]) for i in range(3)])
    torch.testing.assert_close(batched, single, atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    "make, bins, frames, num_stages",
    [
        (lambda: BCResNet(width=1, resnorm=True), 40, 101, 4),
        (lambda: BCResNetMod(base_width=8), 256, 64, 4),
    ],
    ids=["bcresnet1", "bcresnet_mod8"],
)
def test_extract_features_last_stage_is_what_the_head_consumes(make, bins, frames, num_stages):
    torch.manual_seed(0)
    model = randomize_bn(make()).eval()
    x = feats(3, frames, bins)
    with torch.no_grad():
        got = model.extract_features(x)
        logits = model(x)
        single = [model.extract_features(x[i : i + 1]) for i in range(3)]
    assert isinstance(got, ClassifierFeatures) and len(got.stages) == num_stages
    torch.testing.assert_close(model.classifier(got.last).flatten(1), logits, rtol=0, atol=0)
    # Stage k's output is stage k - 1's through stage k, its ResNorm (and BC-ResNet-Mod's pool).
    pools = getattr(model, "pools", [nn.Identity()] * num_stages)
    with torch.no_grad():
        for k in range(1, num_stages):
            again = pools[k](model.stage_norms[k](model.stages[k](got.stages[k - 1])))
            torch.testing.assert_close(again, got.stages[k], rtol=0, atol=0)
    # Batch equals items, stage by stage.
    for k in range(num_stages):
        torch.testing.assert_close(got.stages[k], torch.cat([s.stages[k] for s in single]), atol=1e-5, rtol=0)


def test_bcresnet_float64_and_backward():
    model = BCResNet(width=1, resnorm=True).double().train()
    x = feats(4, 101, 40, dtype=torch.float64)
    logits = model(x)
    assert logits.dtype == torch.float64 and logits.shape == (4, 12)
    nn.functional.cross_entropy(logits, torch.tensor([0, 1, 2, 3])).backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    mod = BCResNetMod(base_width=8).double().eval()
    assert mod(feats(2, 32, 256, dtype=torch.float64)).isfinite().all()


def test_eval_deterministic_train_stochastic():
    torch.manual_seed(0)
    model = BCResNet(width=1, dropout_prob=0.5)
    x = feats(2, 101, 40)
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(x), model(x), atol=0, rtol=0)
        model.train()
        torch.manual_seed(1)
        a = model(x)
        torch.manual_seed(2)
        b = model(x)
    assert not torch.allclose(a, b)  # Dropout2d is active in training


# --- ResNorm / FreqNorm / SSN -----------------------------------------------------------------


def test_freqnorm_zero_mean_unit_var_per_instance_and_bin():
    g = torch.Generator().manual_seed(0)
    x = 3.0 * torch.randn(2, 4, 10, 50, generator=g) + torch.linspace(-5, 5, 10)[:, None]
    y = FreqNorm()(x)
    mean = y.mean(dim=(1, 3))
    var = y.var(dim=(1, 3), correction=0)
    torch.testing.assert_close(mean, torch.zeros(2, 10), atol=1e-5, rtol=0)
    torch.testing.assert_close(var, torch.ones(2, 10), atol=1e-3, rtol=0)
    # Each instance is normalized alone: changing sample 1 leaves sample 0 unchanged.
    x2 = x.clone()
    x2[1] *= 10
    torch.testing.assert_close(FreqNorm()(x2)[0], y[0])


def test_freqnorm_removes_per_bin_device_colouring():
    # A per-bin gain and offset (a "device" EQ) is removed entirely by FreqNorm.
    x = torch.randn(1, 1, 40, 101)
    gain = torch.linspace(0.5, 2.0, 40)[:, None]
    offset = torch.linspace(-3.0, 1.0, 40)[:, None]
    torch.testing.assert_close(FreqNorm()(x * gain + offset), FreqNorm()(x), atol=1e-4, rtol=0)


def test_resnorm_is_scaled_identity_plus_freqnorm():
    x = torch.randn(2, 3, 8, 20)
    torch.testing.assert_close(ResNorm(lambda_=0.25)(x), 0.25 * x + FreqNorm()(x))


def test_resnorm_switch_changes_output_not_weights():
    torch.manual_seed(0)
    plain = randomize_bn(BCResNet(width=1, resnorm=False)).eval()
    with_rn = BCResNet(width=1, resnorm=True).eval()
    with_rn.load_state_dict(plain.state_dict())  # same keys: ResNorm has no state
    x = feats(2, 101, 40)
    with torch.no_grad():
        assert (plain(x) - with_rn(x)).abs().max() > 1e-3


def test_subspectralnorm_normalizes_each_subband_separately():
    ssn = SubSpectralNorm(num_channels=3, num_subbands=4).train()
    x = torch.randn(5, 3, 8, 30)
    x[:, :, 2:4] = 100.0 + 7.0 * x[:, :, 2:4]  # band 1 has its own scale and offset
    y = ssn(x)
    for c in range(3):
        for band in range(4):
            part = y[:, c, 2 * band : 2 * band + 2]
            assert abs(part.mean().item()) < 1e-4
            assert abs(part.var(correction=0).item() - 1.0) < 1e-3
    assert ssn.bn.num_features == 12


def test_subspectralnorm_rejects_indivisible_bins():
    with pytest.raises(ValueError, match="sub-bands"):
        SubSpectralNorm(2, 5)(torch.randn(1, 2, 12, 4))


# --- user errors ------------------------------------------------------------------------------


def test_invalid_configs_raise_speechkit_error():
    with pytest.raises(SpeechkitError, match="num_subbands=5"):
        BCResNet(in_bins=64)  # SSN sizes 32, 16, 8
    with pytest.raises(SpeechkitError, match="at least 5"):
        BCResNet(in_bins=20, num_subbands=1)
    with pytest.raises(SpeechkitError, match="num_subbands=5"):
        BCResNetMod(num_subbands=5)
    with pytest.raises(SpeechkitError, match="at least 1"):
        BCResNet(width=0.1)


def test_wrong_feature_shape_raises_speechkit_error():
    with pytest.raises(SpeechkitError, match="40 bins"):
        BCResNet()(torch.randn(2, 101, 64))
    with pytest.raises(SpeechkitError, match="256 bins"):
        BCResNetMod()(torch.randn(1, 256, 101))


# --- ONNX export ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make, bins, frames",
    [
        (lambda: BCResNet(width=1, resnorm=True), 40, 101),
        (lambda: BCResNetMod(base_width=8), 256, 64),
    ],
    ids=["bcresnet1", "bcresnet_mod8"],
)
def test_onnx_export_dynamic_batch_parity(tmp_path, make, bins, frames):
    import onnxruntime as ort

    torch.manual_seed(0)
    model = randomize_bn(make()).eval()
    path = tmp_path / "model.onnx"
    batch = torch.export.Dim("batch", min=1, max=64)
    torch.onnx.export(
        model, (feats(2, frames, bins),), str(path), dynamo=True,
        input_names=["feats"], output_names=["logits"],
        dynamic_shapes=({0: batch},), verbose=False,
    )
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for n in (1, 3):
        x = feats(n, frames, bins, seed=n)
        (got,) = sess.run(["logits"], {"feats": x.numpy()})
        with torch.no_grad():
            want = model(x).numpy()
        assert got.shape == (n, want.shape[1])
        assert np.abs(got - want).max() <= 1e-4
