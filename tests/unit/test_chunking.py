"""The one chunk schedule (speechkit.runtime.chunking): coverage, end conditions, model agreement."""

from __future__ import annotations

import pytest

from speechkit.errors import SpeechkitError
from speechkit.runtime.chunking import (
    MIN_CHUNK_FRAMES,
    RIGHT_CONTEXT,
    SUBSAMPLING,
    ChunkSchedule,
    chunk_input_frames,
    chunk_shift_frames,
    chunk_size_from_ms,
    encoder_frames,
)


def test_encoder_frames_match_the_subsampling_arithmetic():
    for frames in range(0, 200):
        assert encoder_frames(frames) == max(((frames - 1) // 2 - 1) // 2, 0), frames
    assert [encoder_frames(t) for t in (6, 7, 10, 11)] == [0, 1, 1, 2]


@pytest.mark.parametrize("chunk_size", [1, 2, 4, 8, 16])
def test_windows_cover_every_encoder_frame_exactly_once(chunk_size):
    schedule = ChunkSchedule.for_chunk_size(chunk_size)
    assert (schedule.chunk_frames, schedule.shift_frames) == (chunk_input_frames(chunk_size), chunk_shift_frames(chunk_size))
    assert schedule.chunk_frames - schedule.shift_frames == RIGHT_CONTEXT and schedule.chunk_size == chunk_size
    for frames in range(0, 6 * schedule.chunk_frames):
        windows = list(schedule.windows(frames))
        outputs = [j for w in windows for j in range(w.first_output, w.first_output + w.num_outputs)]
        assert outputs == list(range(encoder_frames(frames))), (chunk_size, frames)
        for w in windows:
            assert 0 <= w.start < w.end <= frames and w.start % schedule.shift_frames == 0
            assert w.num_outputs == encoder_frames(w.num_frames) >= 1  # no window runs for nothing
            # The window reads exactly the feature frames its encoder frames need (4j ... 4j + 6).
            assert w.first_output * SUBSAMPLING == w.start
            assert w.end - w.start == (w.num_outputs - 1) * SUBSAMPLING + MIN_CHUNK_FRAMES or w.last
        assert all(not w.last for w in windows[:-1])  # a short window is always the last
        assert all(w.num_frames == schedule.chunk_frames for w in windows if not w.last)


def test_last_partial_window_and_leftover_overlap():
    schedule = ChunkSchedule.for_chunk_size(2)  # 11 frames every 8

    def spans(frames: int) -> list[tuple]:
        return [(w.start, w.end, w.num_outputs, w.last) for w in schedule.windows(frames)]

    assert spans(6) == []  # fewer than 7 frames give nothing
    assert spans(7) == [(0, 7, 1, True)]
    assert spans(11) == [(0, 11, 2, False)]  # a full window ending at the end: the 3 left are its overlap
    assert spans(14) == [(0, 11, 2, False)]  # 6 frames after the next start: no encoder frame
    assert spans(15) == [(0, 11, 2, False), (8, 15, 1, True)]
    assert spans(19) == [(0, 11, 2, False), (8, 19, 2, False)]


def test_incremental_windows_wait_for_frames_until_the_input_is_finished():
    schedule = ChunkSchedule.for_chunk_size(2)
    assert schedule.next_window(0, 10, finished=False) is None  # a full window needs 11
    assert schedule.next_window(0, 11, finished=False).end == 11
    assert schedule.next_window(8, 17, finished=False) is None
    last = schedule.next_window(8, 17, finished=True)
    assert (last.start, last.end, last.num_outputs, last.last) == (8, 17, 1, True)
    # Fed frame by frame, the windows are those of the finished stream.
    for total in (30, 33, 40):
        start, got = 0, []
        for available in range(total + 1):
            while (w := schedule.next_window(start, available, finished=available == total)) is not None:
                got.append(w)
                start += schedule.shift_frames
        assert got == list(schedule.windows(total))


def test_schedule_and_chunk_ms_refuse_what_would_skip_frames():
    for chunk, shift in ((35, 30), (36, 32), (7, 0), (3, 0)):
        with pytest.raises(SpeechkitError, match="feature frames every"):
            ChunkSchedule(chunk, shift)
    with pytest.raises(SpeechkitError, match="chunk size 0"):
        ChunkSchedule.for_chunk_size(0)
    assert (chunk_size_from_ms(320), chunk_size_from_ms(40), ChunkSchedule.for_chunk_size(8).chunk_ms) == (8, 1, 320)
    for bad in (300, 0, -40):
        with pytest.raises(SpeechkitError, match="multiple of 40 ms"):
            chunk_size_from_ms(bad)


def test_model_takes_its_frame_arithmetic_from_the_schedule():
    from speechkit.models.asr import ConformerEncoder
    from speechkit.models.asr.subsampling import input_frames

    for c in (1, 4, 8):
        assert ConformerEncoder.chunk_input_frames(c) == input_frames(c) == ChunkSchedule.for_chunk_size(c).chunk_frames
        assert ConformerEncoder.chunk_shift_frames(c) == ChunkSchedule.for_chunk_size(c).shift_frames


@pytest.mark.parametrize("chunk_size,left_chunks", [(2, 2), (4, 1)])
def test_streaming_forward_over_the_schedule_equals_the_chunk_masked_forward(chunk_size, left_chunks):
    """A tiny random encoder: window by window with carried states == one chunk-masked call."""
    import torch

    from speechkit.models.asr import ConformerEncoder

    torch.manual_seed(0)
    encoder = ConformerEncoder(16, dim=16, num_layers=2, num_heads=2, ffn_dim=32, conv_kernel_size=3,
                               subsampling_channels=4, dropout=0.0).eval()
    schedule = ChunkSchedule.for_chunk_size(chunk_size)
    for frames in (7, schedule.chunk_frames, schedule.chunk_frames + 3, schedule.chunk_frames + 4, 61, 64, 97):
        feats = torch.randn(1, frames, 16)
        with torch.no_grad():
            reference, ref_lens = encoder(feats, torch.tensor([frames]), chunk_size, left_chunks)
            states, outs = encoder.init_states(1, chunk_size, left_chunks), []
            for w in schedule.windows(frames):
                out, n, states = encoder.streaming_forward(feats[:, w.start : w.end], torch.tensor([w.num_frames]), states)
                assert int(n) == w.num_outputs
                outs.append(out[0])
        got = torch.cat(outs) if outs else torch.zeros(0, 16)
        assert got.shape[0] == int(ref_lens[0]) == encoder_frames(frames)
        torch.testing.assert_close(got, reference[0], atol=1e-5, rtol=1e-4)
