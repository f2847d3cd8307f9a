"""Manifest files: one format (lhotse CutSet JSONL.gz) for every corpus.

A prepared folder (``OUT_DIR``) holds:

* ``cuts_train.jsonl.gz``, ``cuts_valid.jsonl.gz``, ``cuts_test.jsonl.gz``: one cut per example.
  For classification each cut has exactly one supervision whose ``text`` is what was said (e.g.
  ``"bed"``, empty for silence), whose ``speaker`` is set where the corpus knows it, and whose
  ``custom["label"]`` is the class (e.g. ``"_unknown_"``).
* ``labels.json``: JSON list of class names; the list order is the logit order.
* ``cuts_noise.jsonl.gz`` (KWS): background-noise recordings used by the augmentation.
* ASR corpora write ``cuts_<subset>.jsonl.gz`` per subset instead (e.g. ``cuts_dev-clean``).

All writes are atomic (temporary file + rename), so a crash never leaves a truncated manifest.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

from speechkit.errors import AudioError, CorpusError
from speechkit.fileio import atomic_path, write_json_atomic

if TYPE_CHECKING:  # lhotse is imported lazily so `speechkit --help` stays fast
    from lhotse import CutSet, MonoCut, Recording

SPLITS = ("train", "valid", "test")
NOISE = "noise"
LABELS_FILENAME = "labels.json"
#: Name of the class for words that are not keywords (Speech Commands convention).
UNKNOWN = "_unknown_"
#: Name of the class for clips without speech (Speech Commands convention).
SILENCE = "_silence_"


def cuts_path(out_dir: str | os.PathLike, split: str) -> Path:
    """Path of the manifest of ``split`` (``train``, ``valid``, ``test``, ``noise``, a subset)."""
    return Path(out_dir) / f"cuts_{split}.jsonl.gz"


def write_cuts(cuts: CutSet | Iterable, path: str | os.PathLike) -> Path:
    """Write cuts to ``path`` (``.jsonl.gz``) atomically and return the path.

    lhotse picks the format from the suffix, so the temporary file keeps ``.jsonl.gz``.
    """
    from lhotse import CutSet

    if not isinstance(cuts, CutSet):
        cuts = CutSet.from_cuts(cuts)
    path = Path(path)
    with atomic_path(path, suffix=".jsonl.gz") as tmp:
        cuts.to_file(tmp)
    return path


def read_cuts(path: str | os.PathLike, hint: str = "run `speechkit prepare ...` first", lazy: bool = False) -> CutSet:
    """Read a cut manifest, eagerly, or lazily (``lazy``: cuts are read as they are iterated,
    so a 960 h manifest takes little memory; errors further into the file then surface there).

    Raises:
        CorpusError: the file is missing or is not a lhotse cut manifest.
    """
    from lhotse import CutSet

    path = Path(path)
    if not path.is_file():
        raise CorpusError(f"{path}: no such manifest; {hint}")
    try:
        cuts = CutSet.from_file(path)  # lazy for .jsonl.gz; None for an empty file
        if cuts is None:
            return CutSet()
        return cuts if lazy else cuts.to_eager()
    except Exception as exc:  # gzip/JSON/lhotse errors all mean "not a cut manifest"
        raise CorpusError(f"{path}: not a readable lhotse cut manifest ({exc}); {hint}") from None


def write_labels(out_dir: str | os.PathLike, labels: Sequence[str]) -> Path:
    """Write ``labels.json`` (the class order = logit order) atomically."""
    path = Path(out_dir) / LABELS_FILENAME
    write_json_atomic(path, list(labels))
    return path


def read_labels(manifest_dir: str | os.PathLike, hint: str = "run `speechkit prepare ...` first") -> list[str]:
    """Read ``labels.json`` from a prepared folder.

    Raises:
        CorpusError: the file is missing or is not a JSON list of unique strings.
    """
    path = Path(manifest_dir) / LABELS_FILENAME
    if not path.is_file():
        raise CorpusError(f"{path}: no such file; {hint}")
    try:
        labels = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CorpusError(f"{path}: not valid JSON ({exc}); expected a list of class names") from None
    if (
        not isinstance(labels, list)
        or not labels
        or not all(isinstance(x, str) for x in labels)
        or len(set(labels)) != len(labels)
    ):
        raise CorpusError(f"{path}: expected a non-empty JSON list of unique class names")
    return labels


def audio_recording(path: str | os.PathLike, recording_id: str) -> Recording:
    """Describe an audio file as a lhotse ``Recording``, validating its header.

    Only the header is read (``soundfile.info``), so this is fast enough to run over a whole
    corpus during preparation; a corrupt file fails here, not hours into training.

    Raises:
        AudioError: the file is missing, unreadable or has no samples.
    """
    import soundfile as sf
    from lhotse import Recording
    from lhotse.audio import AudioSource

    path = Path(path).resolve()
    try:
        info = sf.info(str(path))
    except Exception as exc:  # LibsndfileError / RuntimeError / OSError
        reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise AudioError(f"{path}: cannot read audio header ({reason}); expected wav or flac") from None
    if info.frames <= 0 or info.channels <= 0:
        raise AudioError(f"{path}: audio has no samples")
    return Recording(
        id=recording_id,
        sources=[AudioSource(type="file", channels=list(range(info.channels)), source=str(path))],
        sampling_rate=int(info.samplerate),
        num_samples=int(info.frames),
        duration=info.frames / info.samplerate,
    )


def audio_recordings(
    items: Sequence[tuple[str | os.PathLike, str]], num_jobs: int = 4
) -> list[Recording]:
    """:func:`audio_recording` over ``(path, recording_id)`` pairs, in order, with threads.

    libsndfile releases the GIL, so threads speed up header reads over 100k files.
    """
    if num_jobs <= 1 or len(items) < 64:
        return [audio_recording(p, i) for p, i in items]
    with ThreadPoolExecutor(num_jobs) as pool:
        return list(pool.map(lambda item: audio_recording(*item), items))


def classification_cut(
    recording: Recording,
    text: str,
    label: str,
    speaker: str | None = None,
    custom: dict | None = None,
    start: float = 0.0,
    duration: float | None = None,
    cut_id: str | None = None,
) -> MonoCut:
    """A cut over (part of) ``recording`` with one supervision carrying the class.

    Args:
        recording: the audio.
        text: what was said (``""`` for silence / non-speech).
        label: the class name, stored as ``supervision.custom["label"]``.
        speaker: speaker id, if the corpus has one.
        custom: more per-example fields (e.g. ``{"device": "a"}``), merged into the
            supervision's ``custom``.
        start: offset into the recording (seconds).
        duration: length (seconds); the rest of the recording by default.
        cut_id: id of the cut and supervision (the recording id by default).
    """
    from lhotse import MonoCut, SupervisionSegment

    if duration is None:
        duration = recording.duration - start
    cut_id = cut_id or recording.id
    supervision = SupervisionSegment(
        id=cut_id,
        recording_id=recording.id,
        start=0.0,  # relative to the cut
        duration=duration,
        channel=0,
        text=text,
        speaker=speaker,
        custom={"label": label, **(custom or {})},
    )
    return MonoCut(
        id=cut_id, start=start, duration=duration, channel=0,
        supervisions=[supervision], recording=recording,
    )


def cut_label(cut) -> str:
    """The class of a classification cut (``supervisions[0].custom["label"]``).

    Raises:
        CorpusError: the cut has no supervision with a label.
    """
    try:
        return cut.supervisions[0].custom["label"]
    except (IndexError, KeyError, TypeError):
        raise CorpusError(
            f"cut {cut.id!r} has no supervision with custom['label']; expected a manifest written "
            "by `speechkit prepare`"
        ) from None


def label_counts(cuts: Iterable) -> Counter:
    """Number of cuts per class."""
    return Counter(cut_label(c) for c in cuts)


def format_summary(out_dir: str | os.PathLike, splits: dict[str, Sequence], labels: Sequence[str]) -> str:
    """One paragraph: cuts per split, and per class as ``train/valid/test`` counts."""
    counts = {name: label_counts(cuts) for name, cuts in splits.items()}
    per_split = ", ".join(f"{name} {len(cuts)}" for name, cuts in splits.items())
    per_class = "; ".join(
        f"{label} " + "/".join(str(counts[name][label]) for name in splits) for label in labels
    )
    return (
        f"Wrote manifests to {out_dir}: {per_split} cuts. {len(labels)} classes "
        f"({'/'.join(splits)}): {per_class}."
    )


def write_classification_corpus(
    out_dir: str | os.PathLike,
    labels: Sequence[str],
    splits: dict[str, Sequence],
    noise: Sequence | None = None,
) -> str:
    """Write ``labels.json``, ``cuts_<split>.jsonl.gz`` (and ``cuts_noise``); return a summary.

    Args:
        out_dir: destination folder (created).
        labels: class names in logit order.
        splits: split name -> cuts (each with one labelled supervision).
        noise: background-noise cuts for augmentation; not written when ``None``.

    Returns:
        The one-paragraph summary of :func:`format_summary`.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    unknown = {cut_label(c) for cuts in splits.values() for c in cuts} - set(labels)
    if unknown:  # a bug in a recipe, not a user error: the labels must cover every cut
        raise ValueError(f"cuts have labels {sorted(unknown)} missing from labels {list(labels)}")
    for name, cuts in splits.items():
        write_cuts(cuts, cuts_path(out_dir, name))
    if noise is not None:
        write_cuts(noise, cuts_path(out_dir, NOISE))
    # labels.json last: its presence marks a complete folder for the DataModule.
    write_labels(out_dir, labels)
    return format_summary(out_dir, splits, labels)
