"""ICBHI 2017 Respiratory Sound Database -> 4-class cycle manifests (``speechkit prepare icbhi``).

The extracted corpus (https://bhichallenge.med.auth.gr/) looks like::

    ICBHI_DIR/ICBHI_final_database/<patient>_<index>_<location>_<mode>_<device>.wav
    ICBHI_DIR/ICBHI_final_database/<same name>.txt     "start end crackle wheeze" per cycle
    ICBHI_DIR/ICBHI_challenge_train_test.txt           "<recording> train|test" per line

(the split file may also sit inside ``ICBHI_final_database/``, or be the Patch-Mix repo's
``official_split.txt``). 920 recordings, 126 patients, 6,898 cycles; devices AKGC417L, LittC2SE,
Litt3200, Meditron; the official 60/40 split is by recording (539 train / 381 test).

**Known file-name differences.** 91 recordings of the distributed archive carry the device
suffix ``AKGC417L`` or ``LittC2SE`` where the split file (and the challenge metadata) names them
``..._Meditron`` (list: ``data/icbhi_dataset/filename_differences.txt`` of the official Patch-Mix
repo raymin0223/patch-mix_contrastive_learning, whose ``script.sh`` renames the files to
``Meditron``). Here a split-file name with no file of its own is matched to the single recording
with the same ``<patient>_<index>_<location>_<mode>`` prefix; the cut's ``device`` is the split
file's (as after the official rename), ``file_device`` the one on disk.

Every cycle goes through :mod:`speechkit.runtime.respiratory` (16 kHz, 1/16 s fades, slice,
8 s repeat-padding or truncation) and is written once as a 16-bit 16 kHz wav under
``OUT/cycles/``; the cuts point there, so training reads fixed-length clips and ``speechkit
classify`` applies the same policy to a raw recording. Cut supervisions carry ``label``
(``normal``/``crackle``/``wheeze``/``both``, or ``normal``/``abnormal`` with ``two_class``),
``patient``, ``device``, ``recording``, ``cycle_start``/``cycle_end`` (s) and ``crackle``/``wheeze``.

Splits: ``train`` and ``test`` from the split file. ICBHI has no validation set (the paper
picks the best epoch on test); ``cuts_valid`` is therefore the test split unless
``valid_percent`` holds out that share of the training *patients*.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from speechkit.data.manifests import audio_recording, classification_cut, write_classification_corpus
from speechkit.errors import CorpusError
from speechkit.plugins import Subcommand
from speechkit.runtime.respiratory import (
    CYCLE_SECONDS,
    LABELS,
    LABELS_2CLASS,
    SAMPLE_RATE,
    Cycle,
    cycle_clips,
    parse_name,
    read_annotations,
)

DATABASE = "ICBHI_final_database"
SPLIT_FILES = ("ICBHI_challenge_train_test.txt", "official_split.txt")
LAYOUT = (
    f"expected ICBHI_DIR/{DATABASE}/<patient>_<index>_<location>_<mode>_<device>.wav with a .txt beside each, "
    f"and ICBHI_DIR/{SPLIT_FILES[0]} ('<recording> train|test' lines)"
)


@dataclass(frozen=True)
class SplitEntry:
    """One recording of the split file and the file on disk that holds it."""

    name: str  # as the split file writes it
    split: str  # train | test
    stem: str  # the wav/txt stem on disk (differs for the known file-name differences)


def find_split_file(root: Path) -> Path:
    """The split file in ``root`` or ``root/ICBHI_final_database``.

    Raises:
        CorpusError: none found.
    """
    for folder in (root, root / DATABASE):
        for name in SPLIT_FILES:
            if (folder / name).is_file():
                return folder / name
    raise CorpusError(f"{root}: no split file {SPLIT_FILES[0]} (or {SPLIT_FILES[1]}); {LAYOUT}")


def read_split(path: Path, database: Path) -> list[SplitEntry]:
    """Parse the split file and match each name to its recording on disk.

    Raises:
        CorpusError: a malformed line (file:line), or a recording with no (or an ambiguous) file.
    """
    stems = {p.stem for p in database.glob("*.wav")}
    by_prefix: dict[str, list[str]] = {}
    for stem in stems:
        parts = stem.split("_")
        by_prefix.setdefault("_".join(parts[:4]), []).append(stem)
    entries = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 2 or fields[1] not in ("train", "test"):
            raise CorpusError(f"{path}:{lineno}: expected '<recording> train|test', got {line.strip()!r}")
        name = Path(fields[0]).stem
        entries.append(SplitEntry(name, fields[1], _stem_on_disk(name, stems, by_prefix, f"{path}:{lineno}")))
    if not entries:
        raise CorpusError(f"{path}: the split file lists no recording; {LAYOUT}")
    return entries


def _stem_on_disk(name: str, stems: set[str], by_prefix: dict[str, list[str]], where: str) -> str:
    if name in stems:
        return name
    candidates = by_prefix.get(parse_name(name).prefix, [])
    if len(candidates) == 1:  # a known file-name difference (device suffix), see the module docstring
        return candidates[0]
    found = f"candidates {sorted(candidates)}" if candidates else "no such file"
    raise CorpusError(f"{where}: recording {name} has no {name}.wav ({found}); {LAYOUT}")


def prepare_icbhi(
    corpus_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    cycle_seconds: float = CYCLE_SECONDS,
    pad: str = "repeat",
    two_class: bool = False,
    valid_percent: float = 0.0,
    num_jobs: int = 1,
    seed: int = 0,
) -> str:
    """Write ``cycles/*.wav``, ``cuts_{train,valid,test}.jsonl.gz`` and ``labels.json``; return a summary.

    Args:
        corpus_dir: ICBHI_DIR (see the module docstring).
        out_dir: output folder.
        cycle_seconds: clip length of every cycle (8 s in the paper).
        pad: ``repeat`` (the paper) or ``zero``.
        two_class: labels ``normal``/``abnormal`` instead of the 4 classes.
        valid_percent: share of training patients held out as ``valid`` (0: valid = test).
        num_jobs: processes reading and writing audio.
        seed: the choice of validation patients.

    Raises:
        CorpusError: missing folder/split file/annotation, malformed lines, unmatched names.
        AudioError: an unreadable recording.
    """
    root = Path(corpus_dir).resolve()
    database = root / DATABASE
    if not database.is_dir():
        raise CorpusError(f"{database}: no such folder; {LAYOUT}")
    entries = read_split(find_split_file(root), database)
    out = Path(out_dir).resolve()
    (out / "cycles").mkdir(parents=True, exist_ok=True)
    for entry in entries:  # every annotation is parsed before any audio is written
        read_annotations(database / f"{entry.stem}.txt")
    jobs = [(str(database), str(out / "cycles"), entry, cycle_seconds, pad) for entry in entries]
    if num_jobs > 1 and len(jobs) > 1:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(num_jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            written = list(pool.map(_write_cycles, jobs))
    else:
        written = [_write_cycles(job) for job in jobs]
    labels = LABELS_2CLASS if two_class else LABELS
    splits: dict[str, list] = {"train": [], "valid": [], "test": []}
    valid_patients = _valid_patients(entries, valid_percent, seed)
    for entry, cycles in zip(entries, written):
        name = parse_name(entry.name)
        split = "valid" if entry.split == "train" and name.patient in valid_patients else entry.split
        for k, (cycle, path) in enumerate(cycles):
            splits[split].append(_cycle_cut(entry, k, cycle, Path(path), two_class))
    if valid_percent <= 0:
        splits["valid"] = list(splits["test"])
    summary = write_classification_corpus(out, labels, splits)
    devices = Counter(c.supervisions[0].custom["device"] for c in splits["train"] + splits["test"])
    renamed = sum(e.name != e.stem for e in entries)
    valid = "the test split (no validation set)" if valid_percent <= 0 else f"{len(valid_patients)} training patients"
    return (f"ICBHI 2017: {len(entries)} recordings ({renamed} matched through a file-name difference). {summary} "
            f"Valid = {valid}. Devices (train+test): "
            + ", ".join(f"{d} {n}" for d, n in sorted(devices.items())) + ".")


def _valid_patients(entries: list[SplitEntry], percent: float, seed: int) -> set[str]:
    if percent <= 0:
        return set()
    patients = sorted({parse_name(e.name).patient for e in entries if e.split == "train"})
    count = min(max(1, round(len(patients) * percent / 100)), len(patients) - 1)
    return set(np.random.default_rng(seed).permutation(patients)[:count].tolist())


def _write_cycles(job) -> list[tuple[Cycle, str]]:
    """Read one recording, apply the cycle policy, write each cycle clip (16 kHz, 16-bit)."""
    from speechkit.audio import save_audio
    from speechkit.runtime.audio import read_audio

    database, folder, entry, cycle_seconds, pad = job
    cycles = read_annotations(Path(database) / f"{entry.stem}.txt")
    audio, _ = read_audio(Path(database) / f"{entry.stem}.wav", SAMPLE_RATE)
    clips = cycle_clips(audio, cycles, SAMPLE_RATE, cycle_seconds, pad)
    out = []
    for k, (cycle, clip) in enumerate(zip(cycles, clips)):
        path = Path(folder) / f"{entry.name}_{k:03d}.wav"
        save_audio(path, np.clip(clip, -1.0, 1.0), SAMPLE_RATE)
        out.append((cycle, str(path)))
    return out


def _cycle_cut(entry: SplitEntry, k: int, cycle: Cycle, path: Path, two_class: bool):
    name, on_disk = parse_name(entry.name), parse_name(entry.stem)
    label = cycle.label if not two_class else ("normal" if cycle.label == "normal" else "abnormal")
    custom = {
        "patient": name.patient, "device": name.device, "file_device": on_disk.device, "recording": entry.name,
        "cycle_start": cycle.start, "cycle_end": cycle.end, "crackle": int(cycle.crackle), "wheeze": int(cycle.wheeze),
    }
    recording = audio_recording(path, path.stem)
    return classification_cut(recording, "", label, speaker=name.patient, custom=custom)


# -- ``speechkit prepare icbhi`` ----------------------------------------------------------------


def _add_arguments(p) -> None:
    p.add_argument("--cycle-seconds", type=float, default=CYCLE_SECONDS,
                   help="fixed clip length of every cycle (default: %(default)s, the paper's)")
    p.add_argument("--pad", choices=("repeat", "zero"), default="repeat", help="padding of short cycles (default: repeat)")
    p.add_argument("--two-class", action="store_true", help="labels normal/abnormal instead of the 4 classes")
    p.add_argument("--valid-percent", type=float, default=0.0,
                   help="hold out this share of training patients as validation (default 0: valid = test, "
                   "the paper's protocol)")


def _prepare_from_args(args) -> int:
    print(prepare_icbhi(args.corpus_dir, args.out_dir, args.cycle_seconds, args.pad, args.two_class,
                        args.valid_percent, num_jobs=args.num_jobs))
    return 0


PREPARE = Subcommand(
    "icbhi", "ICBHI 2017 Respiratory Sound Database (4-class cycles, per-device)", _add_arguments, _prepare_from_args,
    description="ICBHI 2017: ICBHI_final_database/*.wav + *.txt and ICBHI_challenge_train_test.txt. Slices the "
    "annotated cycles with the Patch-Mix CL policy (16 kHz, 1/16 s fades, 8 s repeat-padding) into OUT/cycles/ and "
    "writes cuts_train/valid/test.jsonl.gz and labels.json (normal, crackle, wheeze, both).",
    order=40,
)
