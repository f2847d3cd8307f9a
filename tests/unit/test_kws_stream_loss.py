"""The stream loss: frame targets follow where the keyword lies; each mode trains what it says."""

import pytest
import torch

from speechkit.losses.kws_stream import IGNORE, StreamKwsLoss, frame_targets

HOP, FRAME, WINDOW, UNK = 160, 512, 16000, 1


def _targets(kw_start, kw_end, num_frames=150, label=2, tol=1600):
    return frame_targets(
        torch.tensor([label]), torch.tensor([kw_start]), torch.tensor([kw_end]), num_frames, HOP, FRAME,
        WINDOW, UNK, tol,
    )[0]


def _frame_end(t):
    return t * HOP + FRAME


def test_keyword_frames_start_once_the_keyword_has_ended_and_last_while_it_is_whole_in_the_window():
    kw_start, kw_end = 17000, 22000
    targets = _targets(kw_start, kw_end)
    for t, target in enumerate(targets.tolist()):
        end = _frame_end(t)
        if end - WINDOW < 0:
            assert target == IGNORE  # window not inside the item
        elif end < kw_end - 1600:
            assert target == UNK  # not yet ended: "lef" is not "left"
        elif end < kw_end:
            assert target == IGNORE  # the fuzzy end band
        elif end - WINDOW <= kw_start:
            assert target == 2
    keyword_frames = [t for t, v in enumerate(targets.tolist()) if v == 2]
    assert keyword_frames and _frame_end(keyword_frames[0]) >= kw_end


def test_a_keyword_mostly_out_of_the_window_is_unknown_and_half_out_is_ignored():
    kw_start, kw_end = 1000, 9000  # window start passes kw_start from frame ~4 on
    targets = _targets(kw_start, kw_end, num_frames=120)
    for t, target in enumerate(targets.tolist()):
        start = _frame_end(t) - WINDOW
        if start < 0:
            continue
        if start <= kw_start:
            assert target == 2
        elif (kw_end - start) * 2 >= kw_end - kw_start:
            assert target == IGNORE
        else:
            assert target == UNK


def test_items_without_a_keyword_keep_their_label_on_every_scored_frame():
    targets = frame_targets(torch.tensor([0, 1]), torch.tensor([-1, -1]), torch.tensor([-1, -1]), 150, HOP, FRAME, WINDOW, UNK)
    scored = targets[:, 100:]
    assert (scored[0] == 0).all() and (scored[1] == 1).all()


def test_maxpool_pushes_only_the_best_keyword_frame_and_frames_mode_all_of_them():
    batch = {"labels": torch.tensor([2]), "kw_start": torch.tensor([17000]), "kw_end": torch.tensor([22000])}
    logits = torch.zeros(1, 150, 3, requires_grad=True)
    with torch.no_grad():
        logits[0, 140, 2] = 2.0  # the best keyword frame
    for mode, expected in (("maxpool", 1), ("frames", None)):
        loss_fn = StreamKwsLoss(mode, unknown_index=UNK, hop_samples=HOP, frame_samples=FRAME, window_samples=WINDOW)
        if logits.grad is not None:
            logits.grad = None
        loss, stats = loss_fn(logits, batch)
        loss.backward()
        pushed_up = (logits.grad[0, :, 2] < 0).nonzero().flatten().tolist()
        if expected == 1:
            assert pushed_up == [140]
        else:
            assert len(pushed_up) == int(stats["keyword_frames"]) > 10


def test_last_mode_and_batches_without_spans_score_the_last_frame():
    loss_fn = StreamKwsLoss("frames", unknown_index=UNK)
    logits = torch.zeros(2, 50, 3)
    logits[:, -1, 0] = 10.0
    loss, _ = loss_fn(logits, {"labels": torch.tensor([0, 0])})
    assert loss.item() < 1e-3


def test_bad_mode_is_refused():
    with pytest.raises(ValueError, match="mode"):
        StreamKwsLoss("mean")


def test_frames_that_heard_the_whole_keyword_are_taught_it_even_when_the_last_window_lost_it():
    # The item's label is _unknown_ (its last window holds under half of the keyword), yet the
    # frames whose windows held all of it must still be taught the keyword.
    labels, kw_labels = torch.tensor([UNK]), torch.tensor([2])
    targets = frame_targets(labels, torch.tensor([1000]), torch.tensor([9000]), 150, HOP, FRAME, WINDOW, UNK,
                            kw_labels=kw_labels)[0]
    assert targets[(torch.arange(150) * HOP + FRAME - WINDOW >= 0) & (torch.arange(150) * HOP + FRAME - WINDOW <= 1000)].eq(2).all()
    assert targets[-1] == UNK
