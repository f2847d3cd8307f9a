"""Streaming student + training-only KD branches (speechkit.models.asr.kd_branches,
speechkit.tasks.asr_kd): causality at the chunk edge, and the student without its branches is
exactly a plain streaming ``AsrCtcTask``."""

from __future__ import annotations

import pytest
import torch

from speechkit.frontends import Fbank
from speechkit.models.asr import ConformerEncoder
from speechkit.models.asr.ctc import CTCHead
from speechkit.models.asr.kd_branches import KdBranches, default_layer_map
from speechkit.tasks.asr import AsrCtcTask
from speechkit.tasks.asr_kd import BRANCH_PREFIX, AsrKdTask, DistillConfig

CHUNK = 4  # encoder frames


def _student() -> ConformerEncoder:
    return ConformerEncoder(input_dim=20, dim=32, num_layers=4, num_heads=2, ffn_dim=64, conv_kernel_size=5,
                            subsampling_channels=4, dropout=0.0)


def _teacher() -> ConformerEncoder:
    return ConformerEncoder(input_dim=20, dim=48, num_layers=2, num_heads=2, ffn_dim=96, conv_kernel_size=5,
                            subsampling_channels=4, dropout=0.0)


def test_default_layer_map_every_second_student_layer_at_same_relative_depth():
    assert default_layer_map(4, 2) == [(1, 0), (3, 1)]
    assert default_layer_map(18, 12) == [(s, round((s + 1) * 12 / 18) - 1) for s in range(1, 18, 2)]


def test_student_is_causal_at_the_chunk_edge_and_the_aux_branch_is_not():
    torch.manual_seed(0)
    student = _student().eval()
    branches = KdBranches(32, 48, default_layer_map(4, 2), num_heads=2, aux=True, apc=True).eval()
    feats, lens = torch.randn(1, 4 * 4 * CHUNK + 3, 20), torch.tensor([4 * 4 * CHUNK + 3])
    changed = feats.clone()
    # Encoder frame t reads feature frames 4t .. 4t + 6: frames from 4 * CHUNK + 3 on feed only
    # encoder frames >= CHUNK, i.e. the chunks after the first.
    changed[:, 4 * CHUNK + 3:] += torch.randn_like(changed[:, 4 * CHUNK + 3:])
    with torch.no_grad():
        a = student.extract_features(feats, lens, CHUNK, -1)
        b = student.extract_features(changed, lens, CHUNK, -1)
        out_a, out_b = branches(a.hidden, a.lens), branches(b.hidden, b.lens)
    first = slice(0, CHUNK)
    for ha, hb in zip(a.hidden, b.hidden):
        assert torch.allclose(ha[:, first], hb[:, first], atol=1e-5)
        assert not torch.allclose(ha[:, CHUNK:], hb[:, CHUNK:], atol=1e-3)
    for oa, ob in zip(out_a, out_b):
        assert torch.allclose(oa.proj[:, first], ob.proj[:, first], atol=1e-5)
        assert torch.allclose(oa.apc[:, first], ob.apc[:, first], atol=1e-5)  # APC head reads streaming features
        assert not torch.allclose(oa.aux[:, first], ob.aux[:, first], atol=1e-3)  # full context sees the future


@pytest.fixture
def kd_task(monkeypatch, tmp_path):
    from speechkit.text import train_tokenizer

    tokenizer = tmp_path / "bpe.model"
    train_tokenizer(["TURN ON THE LIGHT", "CALL MOM", "STOP THE TIMER", "PLAY MUSIC"] * 5, tokenizer, vocab_size=32)
    teacher = (_teacher().eval(), CTCHead(48, 32).eval())
    monkeypatch.setattr(AsrKdTask, "_load_teacher", lambda self, path, vocab: teacher)
    torch.manual_seed(0)
    task = AsrKdTask(_student(), Fbank(num_mel_bins=20), vocab_size=32, tokenizer_path=str(tokenizer),
                     teacher_checkpoint="teacher.ckpt",
                     distill=DistillConfig(layers="aux", apc_weight=1.0, token_weight=1.0))
    return task, teacher


def test_kd_task_holds_the_plain_students_parameters_plus_branches_only(kd_task):
    task, teacher = kd_task
    plain = AsrCtcTask(_student(), Fbank(num_mel_bins=20), vocab_size=32, tokenizer_path=task.tokenizer_path)
    kd_state = task.state_dict()
    student_state = {k: v for k, v in kd_state.items() if not k.startswith(BRANCH_PREFIX)}
    plain_state = plain.state_dict()
    assert {k: tuple(v.shape) for k, v in student_state.items()} == {k: tuple(v.shape) for k, v in plain_state.items()}
    assert any(k.startswith(BRANCH_PREFIX) for k in kd_state)
    # The teacher is not the student's: no parameter of it is saved or trained.
    teacher_ids = {id(p) for m in teacher for p in m.parameters()}
    assert not teacher_ids & {id(p) for p in task.parameters()}
    # Same weights -> same outputs, full context and streaming chunks.
    plain.load_state_dict(student_state)
    task.eval(), plain.eval()
    audio, audio_lens = torch.randn(2, 16000) * 0.1, torch.tensor([16000, 12000])
    for chunk in (-1, 8):
        lp_kd, n_kd = task.log_probs(audio, audio_lens, chunk)
        lp_plain, n_plain = plain.log_probs(audio, audio_lens, chunk)
        assert torch.equal(n_kd, n_plain) and torch.allclose(lp_kd, lp_plain, atol=1e-6)


def test_kd_training_step_has_every_term_and_no_teacher_gradient(kd_task):
    task, teacher = kd_task
    task.train()
    batch = {"audio": torch.randn(2, 16000) * 0.1, "audio_lens": torch.tensor([16000, 14000]),
             "tokens": torch.tensor([[3, 4, 5], [6, 7, 0]]), "token_lens": torch.tensor([3, 2])}
    task.dynamic_chunk = None
    loss, stats = task.step(batch, "train")
    assert {"ctc_loss", "feat_loss", "attn_loss", "apc_loss", "token_kd_loss"} <= set(stats)
    assert all(torch.isfinite(v) and v > 0 for k, v in stats.items() if k.endswith("_loss"))
    loss.backward()
    assert all(p.grad is None for m in teacher for p in m.parameters())
    assert all(not m.training for m in teacher)
    assert all(p.grad is not None for p in task.kd_branches.parameters())
