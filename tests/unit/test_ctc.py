"""CTC loss and decoding on hand-made posteriors with known answers."""

from __future__ import annotations

import itertools
import math
import subprocess
import sys

import numpy as np
import pytest
import torch

from speechkit.decoding import (
    CTCGreedyDecoder,
    CTCPrefixBeamDecoder,
    ctc_greedy_search,
    ctc_prefix_beam_search,
    ctc_text,
    hypothesis_text,
    tokens_to_text,
    word_times,
)
from speechkit.errors import SpeechkitError
from speechkit.losses import CTCLoss
from speechkit.losses.ctc import min_ctc_frames


def collapse(path) -> tuple:
    """CTC's many-to-one map: merge repeats, drop blanks (id 0)."""
    return tuple(token for token, _ in itertools.groupby(path) if token != 0)


def brute_force_posterior(probs: np.ndarray) -> dict[tuple, float]:
    """P(label sequence) summed over all T^V paths."""
    totals: dict[tuple, float] = {}
    for path in itertools.product(range(probs.shape[1]), repeat=probs.shape[0]):
        p = float(np.prod(probs[np.arange(len(path)), path]))
        totals[collapse(path)] = totals.get(collapse(path), 0.0) + p
    return totals


def test_greedy_collapses_repeats_and_blanks_with_frames():
    # frames: a a _ a b b _  -> "a a b" with first frames 0, 3, 4
    best = [1, 1, 0, 1, 2, 2, 0]
    probs = np.full((len(best), 3), 0.1)
    probs[np.arange(len(best)), best] = 0.8
    hyp = ctc_greedy_search(np.log(probs))
    assert hyp.token_ids == [1, 1, 2]
    assert hyp.token_frames == [0, 3, 4]
    assert hyp.score == pytest.approx(len(best) * math.log(0.8))


def test_prefix_beam_finds_what_greedy_misses():
    # Each frame: blank 0.6, "a" 0.4. Best path is blank-blank (0.36), but the label "a" has
    # paths aa, a_, _a: 0.16 + 0.24 + 0.24 = 0.64.
    log_probs = np.log(np.array([[0.6, 0.4], [0.6, 0.4]]))
    assert ctc_greedy_search(log_probs).token_ids == []
    nbest = ctc_prefix_beam_search(log_probs, beam_size=2)
    assert nbest[0].token_ids == [1]
    assert nbest[0].score == pytest.approx(math.log(0.64))
    assert nbest[1].token_ids == [] and nbest[1].score == pytest.approx(math.log(0.36))


def test_prefix_beam_with_a_wide_beam_is_exact():
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(3), size=5)  # T=5, V=3: 243 paths
    exact = brute_force_posterior(probs)
    nbest = ctc_prefix_beam_search(np.log(probs), beam_size=100, token_candidates=3)
    assert len(nbest) == len(exact)
    for hyp in nbest:
        assert math.exp(hyp.score) == pytest.approx(exact[tuple(hyp.token_ids)], rel=1e-9)
    assert tuple(nbest[0].token_ids) == max(exact, key=exact.get)


def test_decoders_give_the_same_result_chunk_by_chunk():
    rng = np.random.default_rng(1)
    log_probs = np.log(rng.dirichlet(np.full(6, 0.3), size=40))
    greedy, beam = CTCGreedyDecoder(), CTCPrefixBeamDecoder(beam_size=4)
    for start in range(0, 40, 7):
        greedy.advance(log_probs[start : start + 7])
        beam.advance(log_probs[start : start + 7])
    assert greedy.result() == ctc_greedy_search(log_probs)
    assert beam.result() == ctc_prefix_beam_search(log_probs, beam_size=4)[0]
    assert beam.num_frames == 40
    beam.reset()
    assert beam.result().token_ids == [] and beam.num_frames == 0


def test_beam_token_frames_point_at_emissions():
    probs = np.full((6, 3), 0.02)
    for t, token in enumerate([0, 1, 1, 0, 2, 0]):
        probs[t, token] = 0.96
    hyp = ctc_prefix_beam_search(np.log(probs), beam_size=3)[0]
    assert hyp.token_ids == [1, 2] and hyp.token_frames == [1, 4]


def test_tokens_to_text_and_word_times():
    tokens = ["<blk>", "<unk>", "\u2581TURN", "\u2581O", "N", "\u2581", "LIGHT", "S"]
    hyp = ctc_greedy_search(np.log(_one_hot([0, 2, 0, 3, 4, 0, 5, 6, 7], 8)))
    assert tokens_to_text(hyp.token_ids, tokens) == "TURN ON LIGHTS"
    words = word_times(hyp, tokens, frame_shift_s=0.04, offset_s=1.0)
    assert [w.word for w in words] == ["TURN", "ON", "LIGHTS"]
    # a bare boundary piece ("\u2581" at frame 6) does not start the word: its letters do (frame 7)
    assert [round(w.start_s, 2) for w in words] == [1.04, 1.12, 1.28]
    assert round(words[-1].end_s, 2) == 1.36
    # CTC often emits the boundary in the silence long before the word
    early = ctc_greedy_search(np.log(_one_hot([5] + [0] * 20 + [6, 7], 8)))
    (word,) = word_times(early, tokens, frame_shift_s=0.04)
    assert word.word == "LIGHTS" and round(word.start_s, 2) == 0.84
    # a long pause ends a word even when the model leaves out the boundary mark after it
    glued = ctc_greedy_search(np.log(_one_hot([2, 0, 3, 4] + [0] * 24 + [6, 7], 8)))  # TURN ON ... LIGHTS
    assert tokens_to_text(glued.token_ids, tokens) == "TURN ONLIGHTS"
    assert hypothesis_text(glued, tokens) == "TURN ON LIGHTS"
    assert hypothesis_text(glued, tokens, word_gap_frames=None) == "TURN ONLIGHTS"
    assert [w.word for w in word_times(glued, tokens)] == ["TURN", "ON", "LIGHTS"]


def test_ctc_text_is_the_one_text_rule_for_greedy_and_beam():
    """eval-asr, validation WER, the int8 gate and the benchmarks all call ctc_text."""
    from speechkit.inference.asr import decode

    tokens = ["<blk>", "<unk>", "\u2581TURN", "\u2581O", "N", "\u2581", "LIGHT", "S"]
    glued = np.log(_one_hot([2, 0, 3, 4] + [0] * 24 + [6, 7], 8))  # a pause instead of a word mark
    for beam in (1, 4):
        assert ctc_text(glued, tokens, beam) == decode(glued, tokens, beam) == "TURN ON LIGHTS"
    assert ctc_text(glued, tokens) == hypothesis_text(ctc_greedy_search(glued), tokens)
    assert ctc_text(np.zeros((0, 8)), tokens) == ""


def _one_hot(best: list[int], vocab: int) -> np.ndarray:
    probs = np.full((len(best), vocab), 0.01)
    probs[np.arange(len(best)), best] = 1.0
    return probs / probs.sum(axis=1, keepdims=True)


def test_decoding_module_does_not_import_torch():
    code = "import sys, speechkit.decoding; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_ctc_loss_hand_computed_value():
    probs = torch.tensor([[[0.6, 0.4], [0.6, 0.4]]])
    outputs = {"log_probs": probs.log(), "log_prob_lens": torch.tensor([2])}
    batch = {"tokens": torch.tensor([[1]]), "token_lens": torch.tensor([1])}
    loss, stats = CTCLoss()(outputs, batch)
    assert loss.item() == pytest.approx(-math.log(0.64), rel=1e-5)
    assert stats["loss_per_token"].item() == pytest.approx(-math.log(0.64), rel=1e-5)
    assert not stats["loss"].requires_grad


def test_ctc_loss_ignores_padding_and_has_finite_gradients():
    torch.manual_seed(0)
    logits = torch.randn(2, 12, 5, requires_grad=True)
    tokens = torch.tensor([[1, 2, 2, 3], [4, 1, 0, 0]])
    outputs = {"log_probs": logits.log_softmax(-1), "log_prob_lens": torch.tensor([12, 7])}
    batch = {"tokens": tokens, "token_lens": torch.tensor([4, 2])}
    loss, _ = CTCLoss()(outputs, batch)
    singles = []
    for b, (n_frames, n_tokens) in enumerate([(12, 4), (7, 2)]):
        single_out = {
            "log_probs": logits[b : b + 1, :n_frames].log_softmax(-1), "log_prob_lens": torch.tensor([n_frames])
        }
        single_batch = {"tokens": tokens[b : b + 1, :n_tokens], "token_lens": torch.tensor([n_tokens])}
        singles.append(CTCLoss()(single_out, single_batch)[0])
    assert loss.item() == pytest.approx((singles[0] + singles[1]).item() / 2, rel=1e-5)
    loss.backward()
    assert torch.isfinite(logits.grad).all() and logits.grad[1, 7:].abs().max() == 0


def test_ctc_loss_rejects_inputs_shorter_than_labels():
    assert min_ctc_frames(torch.tensor([[1, 2, 2, 3, 3], [1, 1, 0, 0, 0]]), torch.tensor([5, 2])).tolist() == [7, 3]
    outputs = {"log_probs": torch.randn(2, 6, 5).log_softmax(-1), "log_prob_lens": torch.tensor([6, 2])}
    batch = {
        "tokens": torch.tensor([[1, 2, 2], [1, 1, 0]]), "token_lens": torch.tensor([3, 2]), "ids": ["utt-a", "utt-b"]
    }
    with pytest.raises(SpeechkitError, match=r"utterance 'utt-b': 2 encoder frames .* 2 tokens .* at least 3"):
        CTCLoss()(outputs, batch)
