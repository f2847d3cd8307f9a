"""The standalone ASR decoder (``decode_artifact.py``, no speechkit import) cuts a stream into the
same encoder calls as the one chunk schedule (:mod:`speechkit.runtime.chunking`)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from speechkit.runtime.chunking import SUBSAMPLING, ChunkSchedule


def load_decoder():
    spec = importlib.util.spec_from_file_location("decode_artifact", Path(__file__).with_name("decode_artifact.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("chunk_size", [1, 2, 8])
def test_decode_artifact_windows_follow_the_chunk_schedule(chunk_size):
    decoder = load_decoder()
    schedule = ChunkSchedule.for_chunk_size(chunk_size)
    for num_frames in range(0, 4 * schedule.chunk_frames + 3):
        expected = [(w.start, w.end) for w in schedule.windows(num_frames)]
        got = decoder.chunk_windows(num_frames, schedule.chunk_frames, schedule.shift_frames, SUBSAMPLING)
        assert got == expected, num_frames
