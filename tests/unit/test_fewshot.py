"""Few-shot KWS: episodes, splitGSC, models, loss, open-set rule, enrolment clip finding."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from speechkit.data.episodes import EpisodeSampler
from speechkit.errors import AudioError, CorpusError
from speechkit.losses.fewshot import FewShotLoss
from speechkit.models.fewshot import BCResNetEmbedding, DummyGenerator, PrototypeHead, prototypes
from speechkit.runtime.fewshot import (
    OpenSetRule,
    auroc,
    episode_metrics,
    find_keyword_clip,
    mean_ci95,
    read_enrollment_audio,
)

TARGETS = np.repeat(np.arange(8), 12)  # 8 classes x 12 items


# -- episodes -----------------------------------------------------------------------------------
def test_episodes_are_deterministic_and_well_formed():
    a = EpisodeSampler(TARGETS, ways=5, shots=3, queries=4, unknown=6, seed=7)
    b = EpisodeSampler(TARGETS, ways=5, shots=3, queries=4, unknown=6, seed=7)
    other = EpisodeSampler(TARGETS, ways=5, shots=3, queries=4, unknown=6, seed=8)
    assert [a.episode(i) == b.episode(i) for i in (0, 5, 99)] == [True] * 3
    assert a.episode(3) == b.episode(3) and not (a.episode(3) == a.episode(4))  # order-free, episodes differ
    assert sum(a.episode(i) == other.episode(i) for i in range(20)) < 2
    for i in range(20):
        ep = a.episode(i)
        assert ep.support.shape == (5, 3) and ep.query.shape == (5, 4) and ep.unknown.shape == (6,)
        assert len(set(ep.classes.tolist())) == 5
        for n, c in enumerate(ep.classes):
            assert (TARGETS[ep.support[n]] == c).all() and (TARGETS[ep.query[n]] == c).all()
        assert not set(ep.support.ravel()) & set(ep.query.ravel())  # supports are not queries
        assert not np.isin(TARGETS[ep.unknown], ep.classes).any()  # open-set queries come from outside
    assert len(list(EpisodeSampler(TARGETS, 2, 1, 1, seed=0, num_episodes=4))) == 4


def test_episode_sampler_errors():
    with pytest.raises(CorpusError, match="need 6 classes"):
        EpisodeSampler(np.repeat(np.arange(5), 10), ways=5, shots=1, queries=1, unknown=1)  # none left for unknown
    with pytest.raises(CorpusError, match="at least 10 items"):
        EpisodeSampler(np.repeat(np.arange(8), 4), ways=5, shots=5, queries=5)


# -- splitGSC -----------------------------------------------------------------------------------
def test_prepare_fewshot_split(tmp_path):
    from fakes import make_speech_commands

    from speechkit.data.corpora.speech_commands import FEWSHOT_SPLIT, V2_WORDS, prepare_speech_commands
    from speechkit.data.manifests import cut_label, cuts_path, read_cuts

    corpus = make_speech_commands(tmp_path / "sc", words=V2_WORDS, seconds=0.05)
    assert sum(len(v) for v in FEWSHOT_SPLIT.values()) == 35 and set(sum(map(list, FEWSHOT_SPLIT.values()), [])) == set(V2_WORDS)
    prepare_speech_commands(corpus, tmp_path / "all", split="fewshot", num_jobs=1)
    prepare_speech_commands(corpus, tmp_path / "held", split="fewshot", heldout_speakers=True, num_jobs=1)
    for split, words in FEWSHOT_SPLIT.items():
        every = read_cuts(cuts_path(tmp_path / "all", split))
        assert {cut_label(c) for c in every} == set(words)
        assert len(every) == 3 * len(words)  # all three speakers of each word
        held = read_cuts(cuts_path(tmp_path / "held", split))
        assert {cut_label(c) for c in held} == set(words) and len(held) == len(words)  # one speaker's list
    with pytest.raises(CorpusError, match="needs the 35 words.*no folder for backward"):
        prepare_speech_commands(make_speech_commands(tmp_path / "small", words=["yes", "no"], seconds=0.05),
                                tmp_path / "x", split="fewshot", num_jobs=1)


# -- models and loss ----------------------------------------------------------------------------
def test_embedding_shapes_and_batch_equals_items():
    torch.manual_seed(0)
    net = BCResNetEmbedding(width=1).eval()
    feats = torch.randn(4, 101, 40)
    with torch.no_grad():
        batch = net(feats)
        single = torch.cat([net(feats[i : i + 1]) for i in range(4)])
    assert batch.shape == (4, 32) and torch.allclose(batch, single, atol=1e-5)
    assert BCResNetEmbedding(width=8).eval()(feats[:1]).shape == (1, 256)
    assert BCResNetEmbedding(width=1, embedding_dim=12)(feats).shape == (4, 12)


def test_prototype_is_support_mean_and_logits_follow_class_permutation():
    torch.manual_seed(0)
    support, query = torch.randn(5, 3, 8), torch.randn(7, 8)
    assert torch.allclose(prototypes(support), support.mean(1))
    perm = torch.tensor([3, 0, 4, 1, 2])
    for dummy in (False, True):
        head = PrototypeHead(8, dummy=dummy)
        logits, permuted = head(support, query), head(support[perm], query)
        assert torch.allclose(permuted[:, :5], logits[:, perm], atol=1e-5)
        if dummy:
            assert torch.allclose(permuted[:, 5], logits[:, 5], atol=1e-5)  # dummy unchanged
        # the nearest prototype wins: a query equal to a prototype gets that class
        assert head(support, prototypes(support))[:, :5].argmax(1).tolist() == [0, 1, 2, 3, 4]


def test_dummy_generator_is_order_invariant_and_gamma_is_learnable():
    gen = DummyGenerator(6, hidden=10)
    protos = torch.randn(5, 6)
    assert torch.allclose(gen(protos), gen(protos[torch.randperm(5)]), atol=1e-6)
    head = PrototypeHead(6, dummy=True, gamma=3.0)
    assert head.gamma.item() == pytest.approx(3.0)
    logits = head(torch.randn(3, 2, 6), torch.randn(4, 6))
    logits[:, -1].sum().backward()
    assert head.gamma_raw.grad is not None and head.generator.g1.weight.grad is not None


def test_fewshot_loss_weights_unknown_queries():
    logits = torch.tensor([[4.0, 0.0, 0.0], [0.0, 4.0, 0.0], [1.0, 0.0, 0.0]], requires_grad=True)
    batch = {"query_targets": torch.tensor([0, 1, 2]), "ways": 2}
    l0, s0 = FewShotLoss(lambda_u=0.0)(logits, batch)
    l1, s1 = FewShotLoss(lambda_u=2.0)(logits, batch)
    assert s0["acc"] == 1.0 and l1.item() == pytest.approx(l0.item() + 2.0 * s1["loss_unknown"].item())
    assert s1["loss_unknown"] > 1.0  # the unknown query leans to class 0, not the dummy
    l1.backward()
    assert logits.grad[2, 2] < 0  # pushed towards the dummy
    no_dummy, stats = FewShotLoss(lambda_u=5.0)(logits[:, :2], batch)  # ProtoNet: unknown ignored
    assert stats["loss_unknown"] == 0.0


# -- runtime twin of the head, metrics --------------------------------------------------------------
def test_numpy_open_set_rule_matches_torch_head():
    torch.manual_seed(1)
    support, query = torch.randn(5, 2, 8), torch.randn(9, 8)
    for dummy in (False, True):
        head = PrototypeHead(8, dummy=dummy, gamma=2.5)
        rule = OpenSetRule(head.open_set_config())
        again = OpenSetRule(__import__("json").loads(rule.to_metadata()))  # metadata round trip
        with torch.no_grad():
            expected = head(support, query).numpy()
            unknown = head.unknown_score(head(support, query)).numpy()
        for r in (rule, again):
            got = r.logits(query.numpy(), prototypes(support).numpy())
            np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
            np.testing.assert_allclose(r.unknown_score(got, 5), unknown, rtol=1e-4, atol=1e-4)


def test_auroc_and_ci():
    rng = np.random.default_rng(0)
    scores, labels = rng.normal(size=60), rng.random(60) < 0.4
    brute = np.mean([(p > n) + 0.5 * (p == n) for p in scores[labels] for n in scores[~labels]])
    assert auroc(scores, labels) == pytest.approx(brute)
    assert auroc(np.array([1.0, 1.0]), np.array([True, False])) == 0.5
    mean, half = mean_ci95([50.0, 60.0, 70.0])
    assert mean == 60.0 and half == pytest.approx(1.96 * 10.0 / np.sqrt(3))


def test_episode_metrics_on_separable_embeddings():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(8, 4)) * 10
    emb = (centres[TARGETS] + rng.normal(size=(len(TARGETS), 4))).astype(np.float32)
    sampler = EpisodeSampler(TARGETS, 5, 5, 3, 5, seed=0, num_episodes=20)
    rule = OpenSetRule({"rule": "max-similarity"})
    m = episode_metrics(emb, list(sampler), rule, shots=1)
    assert m["episodes"] == 20 and m["acc"] > 95 and m["auroc"] > 90
    shuffled = episode_metrics(rng.permutation(emb), list(sampler), rule, shots=5)
    assert shuffled["acc"] < 50  # labels no longer match the embeddings: near chance (20 %)


# -- enrolment clip finding -----------------------------------------------------------------------
def _word(rate=16000, seconds=0.4, offset=1.3, total=3.0, seed=0):
    rng = np.random.default_rng(seed)
    audio = rng.normal(size=int(total * rate)).astype(np.float32) * 1e-4
    t = np.arange(int(seconds * rate)) / rate
    # a voiced, vowel-like sound: harmonics of 140 Hz with a syllable envelope
    voiced = sum(np.sin(2 * np.pi * 140 * h * t) / h for h in range(1, 12)) * np.sin(np.pi * t / seconds) ** 2
    audio[int(offset * rate) : int(offset * rate) + len(t)] += 0.3 * voiced.astype(np.float32)
    return audio


def test_find_keyword_clip_centres_the_word():
    audio = _word()
    clip = find_keyword_clip(audio, 16000, 16000)
    energy = np.abs(clip) > 0.01
    first, last = np.flatnonzero(energy)[[0, -1]]
    assert clip.shape == (16000,)
    assert abs((first + last) / 2 - 8000) < 1600  # word centre within 0.1 s of the clip centre
    assert last - first > 0.3 * 16000  # the whole word is inside
    short = find_keyword_clip(_word(total=0.6, offset=0.1), 16000, 16000)  # shorter than a clip: padded
    assert short.shape == (16000,) and np.abs(short).max() > 0.1


def test_enrolment_audio_errors(tmp_path):
    with pytest.raises(AudioError, match="silent"):
        find_keyword_clip(np.zeros(32000, np.float32), 16000, 16000, where="a.wav")
    with pytest.raises(AudioError, match="too short"):
        find_keyword_clip(_word()[:2000], 16000, 16000)
    with pytest.raises(AudioError, match="NaN"):
        find_keyword_clip(np.full(32000, np.nan, np.float32), 16000, 16000)
    sf.write(tmp_path / "r8k.wav", _word(rate=8000), 8000)
    with pytest.raises(AudioError, match="recorded at 8000 Hz, the model takes 16000 Hz"):
        read_enrollment_audio(tmp_path / "r8k.wav", 16000)
    sf.write(tmp_path / "stereo.wav", np.stack([_word(), _word()], 1), 16000)
    with pytest.raises(AudioError, match="2 channels"):
        read_enrollment_audio(tmp_path / "stereo.wav", 16000)
    (tmp_path / "bad.wav").write_bytes(b"RIFF....not audio")
    with pytest.raises(AudioError, match="cannot read audio"):
        read_enrollment_audio(tmp_path / "bad.wav", 16000)


def test_datamodule_batches_fixed_eval_episodes_and_aux(tmp_path):
    from fakes import make_speech_commands

    from speechkit.data.corpora import prepare_speech_commands
    from speechkit.data.corpora.speech_commands import V2_WORDS
    from speechkit.data.fewshot_datamodule import FewShotDataModule

    tree = make_speech_commands(tmp_path / "sc", words=V2_WORDS, seconds=0.05, clips_per_speaker=4)
    prepare_speech_commands(tree, tmp_path / "fs", split="fewshot", num_jobs=1)
    aux_tree = make_speech_commands(tmp_path / "aux", words=["alpha", "bravo", "delta"], seconds=0.05)
    prepare_speech_commands(aux_tree, tmp_path / "aux_m", classes="all", silence_ratio=0, num_jobs=1)
    dm = FewShotDataModule(str(tmp_path / "fs"), str(tmp_path / "aux_m"), ways=4, shots=2, queries=1, unknown=3,
                           episodes_per_epoch=3, val_episodes=2, aux_batch_size=5, augment=True)
    assert dm.aux_num_classes == 3 and dm.eval_shots == [1, 5] and dm.clip_samples == 16000
    batches = list(dm.train_dataloader())
    assert len(batches) == 3
    b = batches[0]
    assert b["audio"].shape == (4 * 2 + 4 * 1 + 3, 16000) and (b["ways"], b["shots"], b["queries"], b["unknown"]) == (4, 2, 1, 3)
    assert b["aux_audio"].shape == (5, 16000) and b["aux_labels"].max() < 3
    v1, v2 = list(dm.val_dataloader()), list(dm.val_dataloader())
    assert len(v1) == 2 and v1[0]["audio"].shape == (5 * 5 + 5 * 5 + 5, 16000)
    assert all(torch.equal(x["audio"], y["audio"]) for x, y in zip(v1, v2))  # the same episodes every time
    assert set(dm.store("valid").labels).isdisjoint(dm.store("train").labels)
    with pytest.raises(CorpusError, match="no such manifest"):
        FewShotDataModule(str(tmp_path / "missing"))
