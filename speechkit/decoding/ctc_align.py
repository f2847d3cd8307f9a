"""CTC forced alignment: the best path through the posteriors for a *known* token sequence.

numpy only, so the torch-free runtime (ONNX artifacts) and the torch side (checkpoints) share it:
both hand it a (T, V) array of log-posteriors and the transcript's token ids.

Shape legend: T encoder frames, V units (blank = 0), L tokens, S = 2L + 1 trellis states.

The trellis is CTC's (Graves et al. 2006, section 4.1): states ``blank t1 blank t2 ... tL blank``;
from a state the path stays, moves one state on, or skips the blank between two *different*
tokens (two equal tokens in a row need a blank between them, so ``t t`` costs at least 3
frames). Viterbi keeps the best predecessor instead of summing, and the backtrace gives, for
each token, the first and last frame it occupies. Word times follow from the token path: a word
starts at its first token's first frame and ends at the end of its last token's last frame
(frame ``i`` -> ``offset_s + i * frame_shift_s``; 40 ms per encoder frame after 4x subsampling
of 10 ms features).

A peaky CTC model emits each token on one or two frames and blanks elsewhere, so the end of a
word is usually late in its last token's sound but not at its end; ``benchmarks/ctc_align_error.py``
measures the boundary error against espeak-ng's word events.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from speechkit.decoding.ctc_decoding import WORD_BOUNDARY, WordTime, _is_control
from speechkit.errors import SpeechkitError

_NEG_INF = -np.inf


@dataclass
class ForcedAlignment:
    """The best CTC path of a token sequence.

    Attributes:
        token_ids: (L,) the aligned units.
        first_frames: (L,) first frame of each token on the path.
        last_frames: (L,) last frame of each token on the path (>= first).
        score: log-probability of the path.
    """

    token_ids: list[int]
    first_frames: np.ndarray
    last_frames: np.ndarray
    score: float


def min_frames(token_ids: Sequence[int]) -> int:
    """Fewest frames a CTC path of ``token_ids`` needs: one per token plus a blank per repeat.

    Example:
        >>> min_frames([3, 3, 4]), min_frames([])
        (4, 0)
    """
    repeats = sum(1 for a, b in zip(token_ids, token_ids[1:]) if a == b)
    return len(token_ids) + repeats


def ctc_forced_align(log_probs: np.ndarray, token_ids: Sequence[int], blank: int = 0) -> ForcedAlignment:
    """Viterbi alignment of ``token_ids`` to (T, V) log-posteriors.

    Args:
        log_probs: (T, V) log-probabilities (log-softmax outputs) of one utterance.
        token_ids: (L,) the transcript's units, no blanks, L >= 1.
        blank: blank id.

    Returns:
        :class:`ForcedAlignment`.

    Raises:
        SpeechkitError: the transcript needs more frames than there are (one line), or has no
            tokens, or names a unit outside the vocabulary.

    Example:
        Frames 0-1 say "a" (id 1), frame 2 is blank, frames 3-4 say "a" again: the repeat is
        split by the blank.

        >>> p = np.full((5, 3), 0.05); p[[0, 1, 3, 4], 1] = 0.9; p[2, 0] = 0.9
        >>> ali = ctc_forced_align(np.log(p), [1, 1])
        >>> ali.first_frames.tolist(), ali.last_frames.tolist()
        ([0, 3], [1, 4])
    """
    lp = np.asarray(log_probs, dtype=np.float64)
    if lp.ndim != 2:
        raise ValueError(f"expected (T, V) log-probabilities, got shape {lp.shape}")
    ids = [int(i) for i in token_ids]
    num_frames, vocab = lp.shape
    if not ids:
        raise SpeechkitError("cannot align an empty transcript (no tokens)")
    if any(i < 0 or i >= vocab or i == blank for i in ids):
        raise SpeechkitError(f"token ids {ids} hold the blank or units outside the vocabulary of {vocab}")
    needed = min_frames(ids)
    if needed > num_frames:
        raise SpeechkitError(
            f"transcript of {len(ids)} tokens needs at least {needed} frames, the audio gives only {num_frames}"
        )
    ext = np.full(2 * len(ids) + 1, blank, dtype=np.int64)
    ext[1::2] = ids
    num_states = ext.size
    # the skip s-2 -> s is allowed into a token state whose token differs from the one before
    can_skip = np.zeros(num_states, dtype=bool)
    can_skip[3::2] = ext[3::2] != ext[1:-2:2]
    emit = lp[:, ext]  # (T, S)
    alpha = np.full(num_states, _NEG_INF)
    alpha[:2] = emit[0, :2]
    back = np.zeros((num_frames, num_states), dtype=np.int8)  # 0 stay, 1 from s-1, 2 from s-2
    for t in range(1, num_frames):
        stay = alpha
        step = np.concatenate(([_NEG_INF], alpha[:-1]))
        skip = np.where(can_skip, np.concatenate(([_NEG_INF, _NEG_INF], alpha[:-2])), _NEG_INF)
        candidates = np.stack([stay, step, skip])
        choice = np.argmax(candidates, axis=0)
        back[t] = choice
        alpha = candidates[choice, np.arange(num_states)] + emit[t]
    last = num_states - 1 if alpha[-1] >= alpha[-2] else num_states - 2
    score = float(alpha[last])
    if not np.isfinite(score):
        raise SpeechkitError("no CTC path explains the transcript (the posteriors rule out a token everywhere)")
    states = np.empty(num_frames, dtype=np.int64)
    state = last
    for t in range(num_frames - 1, -1, -1):
        states[t] = state
        state -= int(back[t, state])
    return _token_spans(ids, states, score)


def _token_spans(ids: list[int], states: np.ndarray, score: float) -> ForcedAlignment:
    first = np.full(len(ids), -1, dtype=np.int64)
    last = np.full(len(ids), -1, dtype=np.int64)
    for t, s in enumerate(states.tolist()):
        if s % 2:
            k = s // 2
            if first[k] < 0:
                first[k] = t
            last[k] = t
    return ForcedAlignment(ids, first, last, score)


def align_words(
    log_probs: np.ndarray,
    words: Sequence[tuple[str, Sequence[int]]],
    tokens: Sequence[str],
    frame_shift_s: float = 0.04,
    offset_s: float = 0.0,
    blank: int = 0,
) -> list[WordTime]:
    """Force-align a transcript given as words with their token ids; one time span per word.

    A word's start is its first *lettered* token's first frame (a bare word-boundary piece
    ``"\u2581"`` only marks where the word begins and CTC often emits it early, in the pause
    before the word); its end is the end of its last token's last frame.

    Args:
        log_probs: (T, V) log-posteriors.
        words: ``(word, token_ids)`` per transcript word, in order; every word has >= 1 token.
        tokens: the units in id order (to recognise the bare boundary piece).
        frame_shift_s: seconds per frame of ``log_probs``.
        offset_s: time of frame 0 (s).
        blank: blank id.

    Returns:
        One :class:`~speechkit.decoding.WordTime` per word, in order (``start_s < end_s``).

    Raises:
        SpeechkitError: a word has no tokens, or the transcript does not fit the frames.

    Example:
        >>> p = np.full((6, 4), 0.02); p[[0, 3], 0] = 0.94; p[[1, 2], 2] = 0.94; p[[4, 5], 3] = 0.94
        >>> words = align_words(np.log(p), [("HI", [2]), ("YO", [3])], ["<blk>", "<unk>", "\u2581HI", "\u2581YO"])
        >>> [(w.word, round(w.start_s, 2), round(w.end_s, 2)) for w in words]
        [('HI', 0.04, 0.12), ('YO', 0.16, 0.24)]
    """
    empty = [word for word, ids in words if not len(ids)]
    if empty:
        raise SpeechkitError(f"word(s) {empty} have no tokens; cannot align them")
    flat = [int(i) for _, ids in words for i in ids]
    alignment = ctc_forced_align(log_probs, flat, blank)
    out, k = [], 0
    for word, ids in words:
        span = range(k, k + len(ids))
        lettered = [j for j in span if tokens[flat[j]] != WORD_BOUNDARY] or list(span)
        start = offset_s + int(alignment.first_frames[lettered[0]]) * frame_shift_s
        end = offset_s + (int(alignment.last_frames[span[-1]]) + 1) * frame_shift_s
        out.append(WordTime(word, start, end))
        k += len(ids)
    return out


def segment_word(word: str, tokens: Sequence[str], unk: str = "<unk>") -> list[int]:
    """Split one normalised word into the fewest units of ``tokens`` (no sentencepiece needed).

    For artifacts shipped without their sentencepiece model: the word, with the word-boundary
    mark in front, is covered by as few pieces as possible (ties: the longer first piece), as a
    unigram model does for common words. A character no piece covers becomes ``unk`` (one
    ``<unk>`` per character; the model rarely emits it, so such words align loosely).

    Args:
        word: one word in the tokenizer's normal form (``A-Z`` and ``'``).
        tokens: the units in id order (the ASR artifact's ``tokens`` metadata).
        unk: the unknown piece.

    Returns:
        Unit ids, at least one.

    Raises:
        SpeechkitError: a character is covered by no piece and ``tokens`` has no ``unk``.

    Example:
        >>> segment_word("TURN", ["<blk>", "<unk>", "\u2581", "T", "U", "R", "N", "\u2581TU", "RN"])
        [7, 8]
        >>> segment_word("T#", ["<blk>", "<unk>", "\u2581", "T"])
        [2, 3, 1]
    """
    pieces = {p: i for i, p in enumerate(tokens) if not _is_control(p)}
    longest = max((len(p) for p in pieces), default=1)
    text = WORD_BOUNDARY + word
    n = len(text)
    best: list[tuple[int, list[int]] | None] = [None] * (n + 1)
    best[n] = (0, [])
    for i in range(n - 1, -1, -1):
        options = []
        for j in range(min(n, i + longest), i, -1):  # longer pieces first: ties keep the longer one
            if text[i:j] in pieces and best[j] is not None:
                options.append((best[j][0] + 1, [pieces[text[i:j]], *best[j][1]]))
        if not options and best[i + 1] is not None:
            if text[i] == WORD_BOUNDARY:  # no bare boundary piece: the word starts at its first letter
                options.append(best[i + 1])
            elif unk in tokens:
                options.append((best[i + 1][0] + 1, [tokens.index(unk), *best[i + 1][1]]))
            else:
                raise SpeechkitError(f"character {text[i]!r} of {word!r} is covered by no unit and there is no {unk}")
        best[i] = min(options, key=lambda o: o[0]) if options else None
    if best[0] is None or not best[0][1]:
        raise SpeechkitError(f"cannot split {word!r} into the model's units")
    return best[0][1]
