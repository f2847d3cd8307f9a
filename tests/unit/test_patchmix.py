"""Patch-Mix and the Patch-Mix contrastive loss; the respiratory task's training modes."""

from __future__ import annotations

import pytest
import torch

from speechkit.losses.patchmix import PatchMixContrastiveLoss, PatchMixCrossEntropy, Projector, patch_mix


def test_patch_mix_with_lambda_one_is_the_identity():
    tokens = torch.randn(4, 30, 8)
    out = patch_mix(tokens, lam=1.0, generator=torch.Generator().manual_seed(0))
    assert torch.equal(out.tokens, tokens) and out.lam == 1.0 and not out.swapped.any()
    assert torch.equal(patch_mix(tokens, beta=0.0).tokens, tokens)  # beta <= 0: no mixing


@pytest.mark.parametrize("lam", [0.0, 0.3, 0.55, 0.9])
def test_mix_fraction_is_the_share_of_unswapped_patches(lam):
    tokens = torch.arange(4 * 30, dtype=torch.float32).reshape(4, 30, 1)  # every token distinct
    out = patch_mix(tokens, lam=lam, generator=torch.Generator().manual_seed(1))
    k = int(30 * (1 - lam))
    assert int(out.swapped.sum()) == k and out.lam == pytest.approx(1 - k / 30)
    for b in range(4):
        own = (out.tokens[b] == tokens[b]).flatten()
        partner = (out.tokens[b] == tokens[out.perm[b]]).flatten()
        if out.perm[b] != b:  # the same positions for the whole batch, taken from the partner
            assert torch.equal(~own, out.swapped) and torch.equal(partner, out.swapped)
        assert own.float().mean() == pytest.approx(out.lam) or out.perm[b] == b


def test_patch_mix_time_only_swaps_whole_columns():
    f, t = 3, 10
    tokens = torch.randn(2, f * t, 4)
    out = patch_mix(tokens, lam=0.6, grid=(f, t), time_only=True, generator=torch.Generator().manual_seed(0))
    columns = out.swapped.reshape(f, t)
    assert torch.equal(columns, columns[:1].expand(f, t))  # a column is swapped in every frequency row
    assert int(columns[0].sum()) == 4 and out.lam == pytest.approx(0.6)
    with pytest.raises(ValueError, match="grid"):
        patch_mix(tokens, time_only=True)


def test_beta_one_draws_uniform_lambdas():
    g = torch.Generator().manual_seed(0)
    lams = [patch_mix(torch.zeros(2, 100, 1), beta=1.0, generator=g).lam for _ in range(400)]
    assert 0.4 < sum(lams) / len(lams) < 0.6 and min(lams) < 0.1 and max(lams) > 0.9


def test_patch_mix_cross_entropy_mixes_the_two_targets():
    logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 0.0, 3.0]])
    targets, perm = torch.tensor([0, 2]), torch.tensor([1, 0])
    ce = torch.nn.functional.cross_entropy
    expected = 0.7 * ce(logits, targets) + 0.3 * ce(logits, torch.tensor([2, 0]))
    assert torch.isclose(PatchMixCrossEntropy()(logits, targets, 0.7, perm), expected)


def test_contrastive_loss_hand_computed_and_minimal_at_the_sources():
    loss = PatchMixContrastiveLoss(temperature=0.5)
    sources = torch.eye(3)
    perm = torch.tensor([1, 2, 0])
    # hand value for mixed == sources, lambda 0.75: each row has s = 2 at itself, 0 elsewhere
    log_self = 2 - torch.log(torch.exp(torch.tensor(2.0)) + 2)
    log_other = 0 - torch.log(torch.exp(torch.tensor(2.0)) + 2)
    assert torch.isclose(loss(sources, sources, 0.75, perm), -(0.75 * log_self + 0.25 * log_other))
    # with the paper's temperature, the mixed feature that points between its two sources in the
    # proportion lambda : 1 - lambda beats both sources alone and any unrelated feature
    loss = PatchMixContrastiveLoss()
    lam = 0.7
    target = lam * sources + (1 - lam) * sources[perm]
    best = loss(target, sources, lam, perm)
    for other in (sources, sources[perm], torch.roll(sources, 1, 1) + 0.3 * sources, torch.randn(3, 3)):
        assert best < loss(other, sources, lam, perm)
    # The loss is a cross-entropy against the soft target (lambda at its own source, 1 - lambda at
    # the partner): its floor is the target's entropy, reached exactly when the mixed feature's
    # similarities put those weights on its two sources. Free features optimised on the sphere
    # reach the floor, nearer their own source than the partner, far from the rest.
    sources = torch.eye(4)
    perm = torch.tensor([1, 2, 3, 0])
    for lam in (1.0, 0.7):
        floor = -sum(w * torch.log(torch.tensor(w)) for w in (lam, 1 - lam) if w > 0)
        assert loss(sources if lam == 1 else torch.randn(4, 4), sources, lam, perm) >= floor - 1e-6
        mixed = torch.randn(4, 4, generator=torch.Generator().manual_seed(0), requires_grad=True)
        optimizer = torch.optim.Adam([mixed], lr=0.02)
        for _ in range(400):
            optimizer.zero_grad()
            loss(mixed, sources, lam, perm).backward()
            optimizer.step()
            with torch.no_grad():  # stay on the unit sphere (the loss only sees directions)
                mixed.copy_(torch.nn.functional.normalize(mixed, dim=1))
        assert float(loss(mixed.detach(), sources, lam, perm)) == pytest.approx(float(floor), abs=0.02)
        cos = mixed.detach()  # unit rows: the cosine with each (one-hot) source
        own, partner = cos[torch.arange(4), torch.arange(4)], cos[torch.arange(4), perm]
        others = cos.clone()
        others[torch.arange(4), torch.arange(4)] = float("-inf")
        others[torch.arange(4), perm] = float("-inf")
        assert (own > others.amax(1)).all()
        if lam < 1:
            assert (own > partner).all() and (partner > others.amax(1)).all()


def test_contrastive_loss_gradient_blocks_sources_when_detached():
    mixed = torch.randn(4, 6, requires_grad=True)
    sources = torch.randn(4, 6, requires_grad=True)
    PatchMixContrastiveLoss()(mixed, sources.detach(), 0.5, torch.tensor([1, 0, 3, 2])).backward()
    assert mixed.grad is not None and torch.isfinite(mixed.grad).all() and sources.grad is None


def test_projector_shape():
    assert Projector(16, 8).eval()(torch.randn(5, 16)).shape == (5, 8)


# -- the task --------------------------------------------------------------------------------
def _task(mode: str, ma_beta: float = 0.0):
    from speechkit.frontends.fbank import AstFbank
    from speechkit.models.respiratory import AST
    from speechkit.tasks.respiratory import PatchMixConfig, RespiratoryTask

    torch.manual_seed(0)
    return RespiratoryTask(
        AST(num_classes=4, preset="tiny", depth=1, num_mel_bins=32, input_frames=48), AstFbank(num_mel_bins=32),
        labels=["normal", "crackle", "wheeze", "both"], clip_samples=8000, mix=PatchMixConfig(mode=mode),
        ma_beta=ma_beta,
    )


def _batch(n=4):
    g = torch.Generator().manual_seed(0)
    return {"audio": 0.1 * torch.randn(n, 8000, generator=g), "audio_lens": torch.full((n,), 8000),
            "labels": torch.tensor([0, 1, 2, 3])[:n]}


@pytest.mark.parametrize("mode", ["none", "patchmix", "patchmix_cl"])
def test_task_training_modes_give_finite_losses_and_gradients(mode):
    task = _task(mode).train()
    loss, stats = task.step(_batch(), "train")
    loss.backward()
    assert torch.isfinite(loss) and task.model.patch_embed.proj.weight.grad.abs().sum() > 0
    assert ("cl" in stats) == (mode == "patchmix_cl")
    if mode == "patchmix_cl":
        assert task.projector.net[0].weight.grad is not None
        # a batch of one has no partner: the step falls back to plain CE
        loss, stats = task.step(_batch(1), "train")
        assert "cl" not in stats and torch.isfinite(loss)


def test_task_eval_step_is_plain_and_counts_icbhi():
    task = _task("patchmix_cl").eval()
    with torch.no_grad():
        loss, _ = task.step(_batch(), "val")
        logits = task(_batch()["audio"])
    assert torch.isclose(loss, torch.nn.functional.cross_entropy(logits, _batch()["labels"]), atol=1e-6)
    assert task.metrics["val"].compute().num_examples == 4


def test_moving_average_update_halves_the_step():
    plain, averaged = _task("none"), _task("none", ma_beta=0.5)
    before = averaged.model.head[1].weight.detach().clone()
    for task in (plain, averaged):
        optimizer = torch.optim.SGD(task.parameters(), lr=0.1)

        def closure(task=task, optimizer=optimizer):
            optimizer.zero_grad()
            loss, _ = task.step(_batch(), "train")
            loss.backward()
            return loss

        task.optimizer_step(0, 0, optimizer, closure) if task is averaged else optimizer.step(closure)
    step = plain.model.head[1].weight - before
    assert step.abs().max() > 0
    assert torch.allclose(averaged.model.head[1].weight - before, 0.5 * step, atol=1e-6)
