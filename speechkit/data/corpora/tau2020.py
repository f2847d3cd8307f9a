"""TAU Urban Acoustic Scenes 2020 Mobile, development set -> scene classification manifests.

DCASE 2020/2021 Task 1A (https://dcase.community/challenge2020/task-acoustic-scene-classification).
The extracted development folder looks like::

    CORPUS_DIR/meta.csv                          filename, scene_label, identifier, source_label
    CORPUS_DIR/audio/<scene>-<city>-<id>-<segment>-<device>.wav    10 s, 44.1 kHz, mono
    CORPUS_DIR/evaluation_setup/fold1_train.csv     filename, scene_label
    CORPUS_DIR/evaluation_setup/fold1_evaluate.csv  filename, scene_label
    CORPUS_DIR/evaluation_setup/fold1_test.csv      filename

(all tab-separated with a header line). Splits: train = ``fold1_train``, valid =
``fold1_evaluate``, test = ``fold1_test``. In the official release ``fold1_test`` lists the same
files as ``fold1_evaluate`` without labels, so valid and test accuracy coincide; the test labels
are taken from ``meta.csv``. Classes are the scene labels of ``meta.csv`` (10, sorted).
Each cut keeps ``custom["device"]`` (``a``, ``b``, ``c`` real; ``s1``-``s6`` simulated),
``custom["city"]`` and ``custom["identifier"]`` (recording location), so accuracy per device
can be reported. lhotse has no recipe for this corpus.
"""

from __future__ import annotations

import csv
import os
from collections import Counter
from pathlib import Path

from speechkit.data.manifests import audio_recordings, classification_cut, write_classification_corpus
from speechkit.errors import CorpusError
from speechkit.plugins import Subcommand

LAYOUT = (
    "expected CORPUS_DIR/meta.csv, CORPUS_DIR/audio/<scene>-<city>-<id>-<segment>-<device>.wav and "
    "CORPUS_DIR/evaluation_setup/fold1_{train,evaluate,test}.csv (tab-separated), the layout of "
    "TAU-urban-acoustic-scenes-2020-mobile-development"
)
FOLDS = (("train", "fold1_train.csv"), ("valid", "fold1_evaluate.csv"), ("test", "fold1_test.csv"))


def prepare_tau2020_mobile(corpus_dir: str | os.PathLike, out_dir: str | os.PathLike, num_jobs: int = 4) -> str:
    """Write ``cuts_{train,valid,test}.jsonl.gz`` and ``labels.json``; return a summary.

    Raises:
        CorpusError: a file of the layout is missing or malformed, or a list names a missing wav.
        AudioError: a wav file is corrupt (the message names it).
    """
    root = Path(corpus_dir).resolve()  # absolute paths in the cuts: training may run from any folder
    if not root.is_dir():
        raise CorpusError(f"{root}: no such folder; {LAYOUT}")
    meta = read_meta(root / "meta.csv")
    labels = sorted({row["scene_label"] for row in meta.values()})
    splits = {}
    for split, list_name in FOLDS:
        files = read_fold(root / "evaluation_setup" / list_name, meta, root)
        recs = audio_recordings([(root / f, Path(f).stem) for f in files], num_jobs)
        splits[split] = [_scene_cut(rec, meta[f]) for rec, f in zip(recs, files)]
    summary = write_classification_corpus(out_dir, labels, splits)
    devices = "; ".join(
        f"{name} " + ", ".join(f"{d} {n}" for d, n in sorted(Counter(c.supervisions[0].custom["device"] for c in cuts).items()))
        for name, cuts in splits.items()
    )
    return f"TAU Urban Acoustic Scenes 2020 Mobile. {summary} Devices: {devices}."


def read_meta(path: Path) -> dict[str, dict[str, str]]:
    """``meta.csv`` as filename -> row (``scene_label``, ``identifier``, ``source_label``).

    Raises:
        CorpusError: the file is missing or lacks the expected columns.
    """
    rows = _read_tsv(path, required=("filename", "scene_label", "identifier", "source_label"))
    return {row["filename"]: row for _, row in rows}


def read_fold(path: Path, meta: dict[str, dict[str, str]], root: Path) -> list[str]:
    """File names listed in a fold file, checked against ``meta.csv`` and the disk.

    Raises:
        CorpusError: the list is missing, names a file absent from ``meta.csv`` or from disk,
            or gives a scene label that disagrees with ``meta.csv``.
    """
    files = []
    for lineno, row in _read_tsv(path, required=("filename",)):
        name = row["filename"]
        if name not in meta:
            raise CorpusError(f"{path}:{lineno}: {name!r} is not in meta.csv; {LAYOUT}")
        if row.get("scene_label") and row["scene_label"] != meta[name]["scene_label"]:
            raise CorpusError(
                f"{path}:{lineno}: scene {row['scene_label']!r} of {name} disagrees with meta.csv "
                f"({meta[name]['scene_label']!r})"
            )
        if not (root / name).is_file():
            raise CorpusError(f"{path}:{lineno}: lists {name}, but {root / name} does not exist")
        files.append(name)
    return files


def _scene_cut(recording, row: dict[str, str]):
    stem_parts = Path(row["filename"]).stem.split("-")  # scene-city-id-segment-device
    city = stem_parts[1] if len(stem_parts) >= 5 else ""
    custom = {"device": row["source_label"], "city": city, "identifier": row["identifier"]}
    return classification_cut(recording, "", row["scene_label"], custom=custom)


def _read_tsv(path: Path, required: tuple[str, ...]) -> list[tuple[int, dict[str, str]]]:
    """Rows of a tab-separated file with a header, as ``(line number, row)``."""
    if not path.is_file():
        raise CorpusError(f"{path}: missing; {LAYOUT}")
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f, delimiter="\t")
        missing = [c for c in required if c not in (reader.fieldnames or [])]
        if missing:
            raise CorpusError(
                f"{path}: header lacks column(s) {', '.join(missing)} (found {reader.fieldnames}); "
                f"expected tab-separated columns {', '.join(required)}"
            )
        rows = []
        for row in reader:
            if not row.get(required[0]):
                continue  # blank line
            if any(row.get(c) is None for c in required):
                raise CorpusError(f"{path}:{reader.line_num}: expected {len(required)} tab-separated columns")
            rows.append((reader.line_num, {k: (v or "").strip() for k, v in row.items() if k}))
        return rows


# -- ``speechkit prepare tau2020-mobile`` -------------------------------------------------------


def _prepare_from_args(args) -> int:
    print(prepare_tau2020_mobile(args.corpus_dir, args.out_dir, num_jobs=args.num_jobs))
    return 0


PREPARE = Subcommand(
    "tau2020-mobile", "TAU Urban Acoustic Scenes 2020 Mobile (development set)", lambda parser: None,
    _prepare_from_args,
    description="TAU Urban Acoustic Scenes 2020 Mobile development set: meta.csv, audio/*.wav, "
    "evaluation_setup/fold1_{train,evaluate,test}.csv. Writes cuts_train/valid/test.jsonl.gz "
    "and labels.json (10 scenes); each cut keeps its recording device.",
    order=30,
)
