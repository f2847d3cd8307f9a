"""Word alignments as Praat TextGrid files in the Montreal Forced Aligner layout.

One reader and one writer for the three places word times meet: the public MFA alignments of
LibriSpeech, ``speechkit align`` (CTC forced alignment) and ``speechkit synth librispeech
--word-times`` (espeak-ng's own word events), all read by ``speechkit prepare libriword``.

Layout: one file per utterance, ``<root>/[<subset>/]<speaker>/<chapter>/<speaker>-<chapter>-<utt>.TextGrid``
(files are found by name anywhere under the root, so a subset level is optional). Each file has
an interval tier ``words`` (MFA also writes ``phones``; ignored): labelled intervals are words,
empty ones silence. MFA's markers for silence and unknown words (``sil``, ``sp``, ``spn``,
``<unk>``) are skipped. Labels are returned in upper case, as LibriSpeech transcripts are.
Files are read and written with ``praatio``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

from speechkit.decoding import WordTime
from speechkit.errors import CorpusError
from speechkit.fileio import atomic_path

WORDS_TIER = "words"
SUFFIX = ".TextGrid"
#: Interval labels that are not words (MFA's silence, short pause, spoken noise, unknown word).
NOT_WORDS = frozenset({"", "sil", "sp", "spn", "<unk>", "<eps>"})
_UTT_ID = re.compile(r"^\d+-\d+-\d+$")
LAYOUT = (
    "expected <root>/[<subset>/]<speaker>/<chapter>/<speaker>-<chapter>-<utt>.TextGrid files with a "
    f"'{WORDS_TIER}' interval tier (the Montreal Forced Aligner's LibriSpeech layout)"
)


def textgrid_path(root: str | os.PathLike, utt_id: str, subset: str | None = None) -> Path:
    """Where the TextGrid of ``utt_id`` goes: ``root/[subset/]speaker/chapter/utt_id.TextGrid``.

    Example:
        >>> textgrid_path("ali", "19-198-0001", "dev-clean").as_posix()
        'ali/dev-clean/19/198/19-198-0001.TextGrid'
    """
    speaker, chapter, _ = utt_id.split("-")
    base = Path(root) / subset if subset else Path(root)
    return base / speaker / chapter / f"{utt_id}{SUFFIX}"


def write_textgrid(path: str | os.PathLike, words: Sequence[WordTime], duration_s: float) -> Path:
    """Write a ``words`` tier (gaps become empty intervals) atomically; return the path.

    Word spans are clipped to ``[0, duration_s]``; a start before the previous word's end moves
    to that end, and words left empty are not written.

    Args:
        path: the ``.TextGrid`` file.
        words: the words in time order (seconds).
        duration_s: length of the utterance (s).
    """
    from praatio import textgrid as tgio

    entries, last_end = [], 0.0
    for w in words:
        start = min(max(w.start_s, last_end, 0.0), duration_s)
        end = min(max(w.end_s, 0.0), duration_s)
        if end - start > 1e-6 and w.word.strip():
            entries.append((round(start, 4), round(end, 4), w.word.strip().lower()))
            last_end = entries[-1][1]
    grid = tgio.Textgrid()
    grid.addTier(tgio.IntervalTier(WORDS_TIER, entries, 0.0, round(duration_s, 4)))
    path = Path(path)
    with atomic_path(path, suffix=SUFFIX) as tmp:
        grid.save(str(tmp), format="long_textgrid", includeBlankSpaces=True, reportingMode="silence")
    return path


def read_textgrid(path: str | os.PathLike) -> list[WordTime]:
    """The words of a TextGrid's ``words`` tier, upper case, in time order.

    Raises:
        CorpusError: the file is missing, not a TextGrid, or has no ``words`` interval tier
            (one line naming the file).
    """
    from praatio import textgrid as tgio

    path = Path(path)
    if not path.is_file():
        raise CorpusError(f"{path}: no such TextGrid; {LAYOUT}")
    try:
        grid = tgio.openTextgrid(str(path), includeEmptyIntervals=False, reportingMode="silence")
        tier = grid.getTier(WORDS_TIER)
        if not isinstance(tier, tgio.IntervalTier):
            raise ValueError("not an interval tier")
        entries = list(tier.entries)
    except Exception as exc:  # praatio raises many types on malformed files
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CorpusError(f"{path}: not a readable TextGrid with a '{WORDS_TIER}' tier ({reason})") from None
    return [
        WordTime(label.strip().upper(), float(start), float(end))
        for start, end, label in entries
        if label.strip().lower() not in NOT_WORDS and end > start
    ]


def find_textgrids(root: str | os.PathLike) -> dict[str, Path]:
    """Utterance id -> TextGrid file for every ``<utt id>.TextGrid`` under ``root``.

    Raises:
        CorpusError: ``root`` is not a folder, or holds no such file.
    """
    root = Path(root)
    if not root.is_dir():
        raise CorpusError(f"{root}: no such alignments folder; {LAYOUT}")
    found = {
        p.stem: p for p in sorted(root.rglob(f"*{SUFFIX}")) if _UTT_ID.match(p.stem) and not p.name.startswith(".")
    }
    if not found:
        raise CorpusError(f"{root}: no <speaker>-<chapter>-<utt>.TextGrid files; {LAYOUT}")
    return found
