"""Frame constants and the streaming chunk schedule of the ASR encoder (torch-free).

The one place that says how feature frames become encoder frames and how a stream of features
is cut into encoder calls. The model (:mod:`speechkit.models.asr`), the export parity check,
the runtime recognizers, the benchmarks and the tests all take their numbers from here.

Frames:

* a feature frame is :data:`FEATURE_SHIFT_MS` (10 ms) of audio (Kaldi fbank hop);
* the convolutional subsampling turns :data:`SUBSAMPLING` (4) feature frames into one encoder
  frame of :data:`ENCODER_FRAME_MS` (40 ms); encoder frame ``j`` reads feature frames
  ``4j ... 4j + 6`` (:data:`RECEPTIVE_FIELD` = 7), so ``T`` feature frames give
  :func:`encoder_frames` ``(T) = floor((T - 3) / 4)`` encoder frames (0 below 7);
* a chunk of ``C`` encoder frames therefore reads ``chunk_input_frames(C) = 4 (C - 1) + 7``
  feature frames and the next chunk starts ``chunk_shift_frames(C) = 4 C`` frames later:
  consecutive windows overlap by :data:`RIGHT_CONTEXT` (3) feature frames.

The schedule (:class:`ChunkSchedule`) has ONE end condition: a window is run when it is full
(``chunk_frames`` frames available from its start), or, once the input is finished, when at
least :data:`MIN_CHUNK_FRAMES` (7) frames remain (a shorter last chunk; fewer frames give no
encoder frame). After a full window that reaches the end exactly, the 3 frames left are the
overlap and give nothing. So the windows cover every encoder frame of the full-context
encoder exactly once, in order.

Example:
    >>> schedule = ChunkSchedule.for_chunk_size(2)           # 80 ms chunks
    >>> (schedule.chunk_frames, schedule.shift_frames)
    (11, 8)
    >>> [(w.start, w.end, w.first_output, w.num_outputs) for w in schedule.windows(30)]
    [(0, 11, 0, 2), (8, 19, 2, 2), (16, 27, 4, 2)]
    >>> encoder_frames(30)
    6
    >>> [(w.start, w.end, w.num_outputs, w.last) for w in schedule.windows(33)]
    [(0, 11, 2, False), (8, 19, 2, False), (16, 27, 2, False), (24, 33, 1, True)]
    >>> encoder_frames(33)
    7
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from speechkit.errors import SpeechkitError

#: Feature hop (ms): one feature frame.
FEATURE_SHIFT_MS = 10
#: Feature frames per encoder frame (the convolutional subsampling's stride).
SUBSAMPLING = 4
#: Encoder frame (ms).
ENCODER_FRAME_MS = FEATURE_SHIFT_MS * SUBSAMPLING
#: Feature frames one encoder frame reads (two stride-2 3x3 convolutions without padding).
RECEPTIVE_FIELD = 7
#: Feature frames a chunk reads beyond its own ``4 C``: the overlap with the next chunk.
RIGHT_CONTEXT = RECEPTIVE_FIELD - SUBSAMPLING
#: Fewest feature frames that give one encoder frame: the shortest last chunk worth running.
MIN_CHUNK_FRAMES = RECEPTIVE_FIELD


def encoder_frames(num_feature_frames: int) -> int:
    """Encoder frames from ``T`` feature frames: ``floor((T - 3) / 4)``, 0 below 7 frames.

    Equals the subsampling's ``floor((floor((T - 1) / 2) - 1) / 2)``.
    """
    return max((num_feature_frames - RIGHT_CONTEXT) // SUBSAMPLING, 0)


def chunk_input_frames(chunk_size: int) -> int:
    """Feature frames read by ``chunk_size`` (C) encoder frames: ``4 (C - 1) + 7``."""
    return (chunk_size - 1) * SUBSAMPLING + RECEPTIVE_FIELD


def chunk_shift_frames(chunk_size: int) -> int:
    """Feature frames between the starts of consecutive chunks of ``C`` encoder frames: ``4 C``."""
    return SUBSAMPLING * chunk_size


def chunk_size_from_ms(chunk_ms: int, frame_shift_ms: float = FEATURE_SHIFT_MS) -> int:
    """Encoder frames per chunk of ``chunk_ms`` (a positive multiple of the encoder frame).

    Args:
        chunk_ms: chunk length (ms).
        frame_shift_ms: feature hop (ms); the encoder frame is ``SUBSAMPLING`` hops.

    Raises:
        SpeechkitError: not a positive multiple of the encoder frame (40 ms).

    Example:
        >>> chunk_size_from_ms(320), chunk_size_from_ms(40)
        (8, 1)
    """
    frame_ms = SUBSAMPLING * frame_shift_ms
    chunk_size = round(chunk_ms / frame_ms)
    if chunk_ms <= 0 or abs(chunk_size * frame_ms - chunk_ms) > 1e-6:
        raise SpeechkitError(f"--chunk-ms {chunk_ms}: expected a positive multiple of {frame_ms:g} ms, e.g. 320 or 640")
    return chunk_size


@dataclass(frozen=True)
class Window:
    """One encoder call: feature frames ``[start, end)``.

    Attributes:
        start, end: feature frames (``end`` excluded).
        first_output: index, in the whole stream, of the first encoder frame it yields.
        num_outputs: encoder frames it yields (``C`` for a full window, fewer for a short last one).
        last: True for a shorter last window (no window follows it).
    """

    start: int
    end: int
    first_output: int
    num_outputs: int
    last: bool

    @property
    def num_frames(self) -> int:
        """Feature frames of the window."""
        return self.end - self.start


@dataclass(frozen=True)
class ChunkSchedule:
    """Where the encoder calls of a stream start and end, in feature frames.

    Args:
        chunk_frames: feature frames per full window, ``chunk_input_frames(C)``.
        shift_frames: feature frames between window starts, ``chunk_shift_frames(C)``.

    Raises:
        SpeechkitError: a pair that is not ``(4 (C - 1) + 7, 4 C)`` for some ``C >= 1``
            (any other pair skips or repeats encoder frames).
    """

    chunk_frames: int
    shift_frames: int

    def __post_init__(self) -> None:
        chunk_size = self.shift_frames // SUBSAMPLING
        if (
            chunk_size < 1
            or self.shift_frames != chunk_shift_frames(chunk_size)
            or self.chunk_frames != chunk_input_frames(chunk_size)
        ):
            raise SpeechkitError(
                f"chunks of {self.chunk_frames} feature frames every {self.shift_frames}: expected "
                f"{SUBSAMPLING} C + {RIGHT_CONTEXT} frames every {SUBSAMPLING} C for a chunk of C >= 1 encoder frames"
            )

    @classmethod
    def for_chunk_size(cls, chunk_size: int) -> ChunkSchedule:
        """The schedule of chunks of ``chunk_size`` (C >= 1) encoder frames."""
        if chunk_size < 1:
            raise SpeechkitError(f"chunk size {chunk_size}: expected 1 or more encoder frames")
        return cls(chunk_input_frames(chunk_size), chunk_shift_frames(chunk_size))

    @property
    def chunk_size(self) -> int:
        """C, encoder frames per full window."""
        return self.shift_frames // SUBSAMPLING

    @property
    def chunk_ms(self) -> int:
        """Chunk length (ms) at :data:`FEATURE_SHIFT_MS` features."""
        return self.shift_frames * FEATURE_SHIFT_MS

    def next_window(self, start: int, available: int, finished: bool) -> Window | None:
        """The window starting at feature frame ``start``, if it can run now.

        Args:
            start: feature frame where the next window starts (0, then ``window.start +
                shift_frames``).
            available: feature frames of the stream known so far.
            finished: no more frames will come.

        Returns:
            A full window if ``chunk_frames`` frames are available from ``start``; else, when
            ``finished`` and at least :data:`MIN_CHUNK_FRAMES` remain, the shorter last window
            ``[start, available)``; else ``None`` (wait for frames, or the stream is done).
        """
        remaining = available - start
        if remaining >= self.chunk_frames:
            return Window(start, start + self.chunk_frames, start // SUBSAMPLING, self.chunk_size, last=False)
        if finished and remaining >= MIN_CHUNK_FRAMES:
            return Window(start, available, start // SUBSAMPLING, encoder_frames(remaining), last=True)
        return None

    def windows(self, num_frames: int) -> Iterator[Window]:
        """Every window of a finished stream of ``num_frames`` feature frames, in order.

        Their outputs are encoder frames ``0 ... encoder_frames(num_frames) - 1``, each once.
        """
        start = 0
        while (window := self.next_window(start, num_frames, finished=True)) is not None:
            yield window
            start += self.shift_frames
