"""Personalized KWS (PK-MTL): networks, losses, TRM, scoring metrics, data module, VoxCeleb preparation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from speechkit.errors import CorpusError, SpeechkitError
from speechkit.losses.personal import MultiTaskLoss, angular_prototypical_loss, trm_pair_mask
from speechkit.models.personal import SYSTEMS, PersonalKwsNet, TaskRepresentationModule
from speechkit.runtime.personal import (
    equal_error_rate,
    far_at_frr,
    frr_at_far,
    personal_scores,
    trm_apply,
    unit,
)


# -- networks ----------------------------------------------------------------------------------
@pytest.mark.parametrize("system", SYSTEMS)
def test_personal_net_shapes_per_system(system):
    net = PersonalKwsNet(num_classes=5, num_speakers=7, system=system, width=1).eval()
    out = net.outputs(torch.randn(3, 101, 40))
    has_kw, has_spk = system != "speaker", system != "vanilla"
    assert (out.keyword_logits is not None) == has_kw and (out.speaker_logits is not None) == has_spk
    if has_kw:
        assert out.keyword_logits.shape == (3, 5) and out.keyword_embedding.shape == (3, 32)
    if has_spk:
        assert out.speaker_logits.shape == (3, 7) and out.speaker_embedding.shape == (3, 32)
    assert net(torch.randn(2, 101, 40)).shape == ((2, 5) if has_kw else (2, 7))


def test_naive_mtl_shares_one_embedding_and_pkmtl_has_two():
    feats = torch.randn(2, 101, 40)
    naive = PersonalKwsNet(4, 6, "naive-mtl", 1).eval()
    out = naive.outputs(feats)
    assert torch.equal(out.keyword_embedding, out.speaker_embedding)
    pk = PersonalKwsNet(4, 6, "pk-mtl", 1).eval()
    out = pk.outputs(feats)
    assert not torch.allclose(out.keyword_embedding, out.speaker_embedding)


def test_personal_net_batch_equals_per_item():
    net = PersonalKwsNet(4, 6, "pk-mtl", 1, resnorm=True).eval()
    feats = torch.randn(4, 101, 40)
    with torch.no_grad():
        batch = net.outputs(feats)
        for i in range(4):
            one = net.outputs(feats[i : i + 1])
            torch.testing.assert_close(one.keyword_logits[0], batch.keyword_logits[i], atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(one.speaker_embedding[0], batch.speaker_embedding[i], atol=1e-5, rtol=1e-5)


def test_personal_net_split_point_and_overhead():
    """Encoder = BC-ResNet without its last two conv layers; PK-MTL adds one branch (2 convs + FC)."""
    from speechkit.models.kws import BCResNet

    width = 3
    backbone = sum(p.numel() for p in BCResNet(num_classes=12, width=width).parameters())
    vanilla = PersonalKwsNet(12, 100, "vanilla", width)
    pk = PersonalKwsNet(12, 100, "pk-mtl", width)
    # vanilla = backbone - final logit conv + FC(96 -> 96) + cosine classifier (12 x 96 + scale + bias)
    assert vanilla.inference_parameters() == backbone - (96 * 12 + 12) + (96 * 96 + 96) + (12 * 96 + 2)
    branch = 60 * 25 + 60 * 96 + 2 * 96 + 96 * 96 + 96  # depthwise 5x5, 1x1, BN, FC
    assert pk.inference_parameters() - vanilla.inference_parameters() == branch
    assert vanilla.inference_parameters() == 63470  # the paper's vanilla BC-ResNet-3: 63.5k


def test_personal_net_rejects_unknown_system_and_missing_speakers():
    with pytest.raises(SpeechkitError, match="unknown system"):
        PersonalKwsNet(4, 3, "dual")
    with pytest.raises(SpeechkitError, match="needs training speakers"):
        PersonalKwsNet(4, 0, "pk-mtl")


def test_cosine_classifier_scale_and_bias_are_learnable():
    net = PersonalKwsNet(4, 6, "pk-mtl", 1)
    names = {n for n, p in net.named_parameters() if p.requires_grad}
    assert {"keyword_head.scale", "keyword_head.bias", "speaker_head.scale", "speaker_head.bias"} <= names


# -- losses ------------------------------------------------------------------------------------
def test_multitask_loss_weights_and_ignores_unknown_speakers():
    from speechkit.models.personal import PersonalOutputs

    kw = torch.tensor([[2.0, 0.0], [0.0, 2.0]])
    spk = torch.tensor([[0.0, 3.0, 0.0], [5.0, 0.0, 0.0]])
    batch = {"labels": torch.tensor([0, 0]), "speakers": torch.tensor([1, -1])}
    loss, stats = MultiTaskLoss(0.1)(PersonalOutputs(kw, spk, None, None), batch)
    l_kw = torch.nn.functional.cross_entropy(kw, batch["labels"])
    l_spk = torch.nn.functional.cross_entropy(spk[:1], torch.tensor([1]))  # the -1 item does not count
    torch.testing.assert_close(loss, l_kw + 0.1 * l_spk)
    assert stats["loss_spk"] == pytest.approx(float(l_spk))


def test_angular_prototypical_loss_hand_value_and_mask():
    cos = torch.tensor([[0.5, 0.2, 0.9], [0.1, 0.8, 0.0]])
    w, b = torch.tensor(5.0), torch.tensor(-1.0)
    logits = 5.0 * cos - 1.0
    expected = -(torch.log_softmax(logits[0], 0)[0] + torch.log_softmax(logits[1], 0)[1]) / 2
    torch.testing.assert_close(angular_prototypical_loss(cos, w, b), expected)
    mask = torch.tensor([[True, True, False], [True, True, True]])  # drop the strong negative of row 0
    assert angular_prototypical_loss(cos, w, b, mask) < expected


def test_trm_pair_mask_tb_drops_neutral_pairs_to_keeps_them():
    kw, spk = torch.tensor([0, 0, 1, 0]), torch.tensor([1, 2, 1, 1])
    tb, to = trm_pair_mask(kw, spk, "tb"), trm_pair_mask(kw, spk, "to")
    assert not tb[0, 1] and to[0, 1]  # same keyword, other speaker: neutral in TB, negative in TO
    assert tb[0, 2] and to[0, 2]  # other keyword, same speaker: negative in both
    assert not tb[0, 3] and not to[0, 3]  # a second positive is never a negative
    assert tb.diagonal().all() and to.diagonal().all()


def test_trm_numpy_equals_torch():
    torch.manual_seed(0)
    trm = TaskRepresentationModule(8)
    z_k, z_s = torch.randn(5, 8), torch.randn(5, 8)
    with torch.no_grad():
        expected = trm(z_k, z_s).numpy()
    np.testing.assert_allclose(trm_apply(trm.weights(), z_k.numpy(), z_s.numpy()), expected, atol=1e-6)


# -- scoring and error rates -------------------------------------------------------------------
def test_error_rates_hand_values():
    pos, neg = np.array([0.9, 0.8, 0.7, 0.2]), np.array([0.1, 0.3, 0.75, 0.85])
    assert frr_at_far(pos, neg, 0.0) == 0.75  # above 0.85 only the 0.9 positive is accepted
    assert frr_at_far(pos, neg, 0.25) == 0.5  # t in (0.75, 0.8]: one false alarm (0.85), two misses
    assert far_at_frr(pos, neg, 0.25) == 0.5  # t = 0.7 accepts 0.75 and 0.85
    assert equal_error_rate(pos, neg) == pytest.approx(0.5)  # t = 0.75: FAR = FRR = 2/4
    assert equal_error_rate(np.array([2.0, 3.0]), np.array([0.0, 1.0])) == 0.0


def test_personal_scores_scm_is_the_alpha_mix():
    rng = np.random.default_rng(0)
    z_k, z_s = rng.standard_normal((6, 4)), rng.standard_normal((6, 4))
    proto, enrol = rng.standard_normal(4), rng.standard_normal(4)
    s = personal_scores(z_k, z_s, proto, enrol, alpha=0.3)
    np.testing.assert_allclose(s["kws"], unit(z_k) @ unit(proto))
    np.testing.assert_allclose(s["scm"], 0.3 * s["kws"] + 0.7 * s["sv"])


def test_trials_quadrants_follow_their_definition():
    from speechkit.metrics.personal import QUADRANTS, build_trials

    labels = np.array([2, 2, 3, 3, 2, 2, 3, 0, 1, -1, -1])
    ids = ["a", "a", "a", "a", "b", "b", "b", "", "b", "", ""]
    trials = build_trials(labels, ids, keyword_classes=[2, 3], per_quadrant=30, seed=1)
    idsa = np.asarray(ids)
    for q, name in enumerate(QUADRANTS):
        rows = trials.quadrant == q
        same_spk = idsa[trials.enrol[rows]] == idsa[trials.test[rows]]
        same_kw = labels[trials.test[rows]] == trials.target[rows]
        assert (labels[trials.enrol[rows]] == trials.target[rows]).all()
        if name == "realistic":
            assert rows.sum() == 2 and (labels[trials.test[rows]] == -1).all()
        else:
            assert rows.sum() == 30
            assert same_spk.all() if name.startswith("ts") else not same_spk.any()
            assert same_kw.all() if name.endswith("-tk") else not same_kw.any()
    assert (trials.enrol != trials.test).all()


def test_evaluate_system_separates_a_perfect_system():
    """Embeddings that encode keyword and speaker exactly: TO EER 0, vanilla-style C-KWS TO EER high."""
    from speechkit.metrics.personal import ClipSet, build_trials, evaluate_system

    rng = np.random.default_rng(0)
    labels, ids = [], []
    for s in range(6):
        for k in (0, 1, 2):
            for _ in range(2):
                labels.append(k)
                ids.append(f"s{s}")
    labels = np.array(labels)
    speaker_axes = np.eye(6)[[int(i[1]) for i in ids]]
    z_k = np.eye(3)[labels] + 0.01 * rng.standard_normal((len(labels), 3))
    z_s = speaker_axes + 0.01 * rng.standard_normal((len(labels), 6))
    logits = z_k * 10
    z_s8 = np.pad(z_s, ((0, 0), (0, 0)))
    clips = ClipSet(np.pad(z_k, ((0, 0), (0, 3))), z_s8, logits, labels, ids, np.pad(np.eye(3), ((0, 0), (0, 3))))
    trials = [build_trials(labels, ids, [1, 2], 50, seed) for seed in range(2)]
    rows = evaluate_system("ideal", clips, trials, ["C-KWS", "SCM-M"])
    ckws, scm = rows
    assert ckws["ckws_acc"] == 100.0 and ckws["sv_eer"] < 1.0
    assert scm["to_eer"] < 1.0 and scm["tb_eer"] < 1.0
    assert ckws["to_eer"] > 10.0  # the keyword score alone cannot reject other speakers


def test_det_plot_is_written(tmp_path):
    from speechkit.metrics.personal import save_det_plot

    rng = np.random.default_rng(0)
    path = save_det_plot(tmp_path / "det.png", "x", {"TB": (rng.normal(1, 1, 100), rng.normal(0, 1, 100))})
    assert path.read_bytes()[:4] == b"\x89PNG"


# -- data --------------------------------------------------------------------------------------
def test_personal_datamodule_speakers_and_batches(tiny_kws_manifests):
    from speechkit.data.personal_datamodule import PersonalDataModule

    dm = PersonalDataModule(manifest_dir=str(tiny_kws_manifests), batch_size=6)
    assert dm.num_speakers >= 5 and dm.speakers == sorted(dm.speakers)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["speakers"].shape == batch["labels"].shape == (6,)
    for spk, name in zip(batch["speakers"].tolist(), batch["speaker_ids"]):
        assert (spk == -1) == (name == "") and (spk < 0 or dm.speakers[spk] == name)
    valid = next(iter(dm.val_dataloader()))
    assert (valid["speakers"] == -1).all()  # validation speakers are held out of training


def test_personal_datamodule_refuses_test_speakers_seen_in_training(tiny_kws_manifests):
    from speechkit.data.personal_datamodule import PersonalDataModule

    dm = PersonalDataModule(manifest_dir=str(tiny_kws_manifests), test_manifest_dir=str(tiny_kws_manifests))
    with pytest.raises(CorpusError, match="also training speakers"):
        dm.setup("test")


# -- VoxCeleb preparation -----------------------------------------------------------------------
def _vox_tree(root: Path) -> Path:
    for spk in ("id10001", "id10002"):
        for video in ("vidA", "vidB"):
            folder = root / "wav" / spk / video
            folder.mkdir(parents=True)
            for k in (1, 2):
                sf.write(folder / f"{k:05d}.wav", np.zeros(1600, np.float32) + 0.01, 16000, subtype="PCM_16")
    (root / "veri_test.txt").write_text("1 id10001/vidA/00001.wav id10001/vidB/00002.wav\n"
                                        "0 id10001/vidA/00001.wav id10002/vidA/00001.wav\n")
    return root


def test_prepare_voxceleb_writes_speakers_and_trials(tmp_path):
    from speechkit.data.corpora.voxceleb import prepare_voxceleb
    from speechkit.data.manifests import read_cuts

    summary = prepare_voxceleb(_vox_tree(tmp_path / "vox"), tmp_path / "out", num_jobs=1)
    assert "8 utterances" in summary and "2 speakers" in summary and "2 trials" in summary
    cuts = list(read_cuts(tmp_path / "out" / "cuts_voxceleb.jsonl.gz"))
    assert {c.supervisions[0].speaker for c in cuts} == {"id10001", "id10002"}
    trials = [json.loads(line) for line in (tmp_path / "out" / "trials.jsonl").read_text().splitlines()]
    assert trials[1] == {"label": 0, "enrol": "id10001/vidA/00001", "test": "id10002/vidA/00001"}


def test_prepare_voxceleb_malformed_trial_line_and_m4a(tmp_path):
    from speechkit.data.corpora.voxceleb import prepare_voxceleb

    root = _vox_tree(tmp_path / "vox")
    (root / "veri_test.txt").write_text("1 id10001/vidA/00001.wav id10001/vidB/00002.wav\nyes id10001/vidA/00001.wav\n")
    with pytest.raises(CorpusError, match=r"veri_test.txt:2: expected"):
        prepare_voxceleb(root, tmp_path / "out", num_jobs=1)
    (root / "veri_test.txt").write_text("1 id10001/vidA/00001.wav id10009/x/00001.wav\n")
    with pytest.raises(CorpusError, match="id10009/x/00001.wav is not in the corpus"):
        prepare_voxceleb(root, tmp_path / "out", num_jobs=1)
    m4a = tmp_path / "vox2" / "aac" / "id00012" / "v"
    m4a.mkdir(parents=True)
    (m4a / "00001.m4a").write_bytes(b"\0" * 10)
    with pytest.raises(CorpusError, match="convert to wav"):
        prepare_voxceleb(tmp_path / "vox2", tmp_path / "out2", num_jobs=1)
    with pytest.raises(CorpusError, match="no wav/ or aac/"):
        prepare_voxceleb(tmp_path, tmp_path / "out3", num_jobs=1)
