"""VoxCeleb1/2 speaker data -> lhotse manifests with speaker IDs, and the VoxCeleb1-O trial list.

Layout of ``VOX_DIR`` (as downloaded and extracted)::

    wav/id10270/x6uYqmx31kE/00001.wav     VoxCeleb1: wav/<speaker>/<video>/<nnnnn>.wav
    aac/id00012/21Uxsk56VDQ/00001.m4a     VoxCeleb2: aac/<speaker>/<video>/<nnnnn>.m4a
    veri_test.txt or veri_test2.txt       VoxCeleb1-O trials: "<1|0> <path1> <path2>" per line,
                                          paths relative to wav/ (id10270/x6uYqmx31kE/00001.wav)

(``VOX_DIR`` may also be the ``wav``/``aac`` folder itself.) Written to ``OUT_DIR``:
``cuts_voxceleb.jsonl.gz`` (one cut per utterance; id ``<speaker>/<video>/<nnnnn>``, supervision
``speaker`` = the ``idXXXXX`` folder, ``custom["label"]`` = the speaker, ``custom["video"]``),
``speakers.json`` (sorted IDs) and, when a trial list is present, ``trials.jsonl``
(``{"label": 0|1, "enrol": cut id, "test": cut id}`` per line).

``.m4a`` (VoxCeleb2) needs an audio decoder that no speechkit dependency provides: convert to wav
first (``ffmpeg -i x.m4a -ar 16000 x.wav``, keeping the layout); the preparation says so and stops.

Usage::

    speechkit prepare voxceleb data/VoxCeleb1 data/voxceleb_manifests
"""

from __future__ import annotations

import os
from pathlib import Path

from speechkit.data.manifests import audio_recordings, classification_cut, write_cuts
from speechkit.errors import CorpusError
from speechkit.fileio import write_json_atomic, write_text_atomic
from speechkit.plugins import Subcommand

LAYOUT = ("expected VOX_DIR/wav/<idXXXXX>/<video>/<nnnnn>.wav (VoxCeleb1) or VOX_DIR/aac/<idXXXXX>/<video>/"
          "<nnnnn>.m4a (VoxCeleb2), and optionally veri_test.txt / veri_test2.txt")
TRIAL_FILES = ("veri_test2.txt", "veri_test.txt")


def audio_root(vox_dir: Path) -> Path:
    """The folder holding the ``id*`` speaker folders (``wav``, ``aac`` or ``vox_dir`` itself)."""
    for name in ("wav", "aac"):
        if (vox_dir / name).is_dir():
            return vox_dir / name
    if any(p.is_dir() and p.name.startswith("id") for p in vox_dir.iterdir()):
        return vox_dir
    raise CorpusError(f"{vox_dir}: no wav/ or aac/ folder and no idXXXXX speaker folders; {LAYOUT}")


def scan_utterances(root: Path) -> list[tuple[Path, str, str, str]]:
    """``(path, cut id, speaker, video)`` of every utterance under ``root``, sorted.

    Raises:
        CorpusError: no utterance, or ``.m4a`` files (see the module docstring).
    """
    items = []
    m4a = []
    for path in sorted(root.glob("id*/*/*")):
        if path.suffix.lower() == ".m4a":
            m4a.append(path)
        elif path.suffix.lower() in (".wav", ".flac"):
            speaker, video = path.parent.parent.name, path.parent.name
            items.append((path, f"{speaker}/{video}/{path.stem}", speaker, video))
    if m4a:
        raise CorpusError(
            f"{m4a[0]}: VoxCeleb2 .m4a audio needs a decoder no speechkit dependency provides; convert to wav "
            f"keeping the layout (ffmpeg -i x.m4a -ar 16000 x.wav) and prepare again ({len(m4a)} .m4a files)"
        )
    if not items:
        raise CorpusError(f"{root}: no utterances found; {LAYOUT}")
    return items


def read_trials(path: Path, known: set[str]) -> list[dict]:
    """Parse a VoxCeleb1-O trial list into ``{"label", "enrol", "test"}`` rows (cut ids).

    Raises:
        CorpusError: a malformed line (names the line) or a path missing from the corpus.
    """
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 3 or parts[0] not in ("0", "1"):
            raise CorpusError(f"{path}:{number}: expected '<1|0> <path1> <path2>', got {line.strip()[:80]!r}")
        ids = [str(Path(p).with_suffix("")) for p in parts[1:]]
        missing = [p for p, i in zip(parts[1:], ids) if i not in known]
        if missing:
            raise CorpusError(f"{path}:{number}: {missing[0]} is not in the corpus; {LAYOUT}")
        rows.append({"label": int(parts[0]), "enrol": ids[0], "test": ids[1]})
    if not rows:
        raise CorpusError(f"{path}: no trials")
    return rows


def prepare_voxceleb(vox_dir: str | os.PathLike, out_dir: str | os.PathLike, num_jobs: int = 4) -> str:
    """Write the VoxCeleb manifests (module docstring) to ``out_dir``; return a summary line.

    Raises:
        CorpusError: layout, trial list or m4a problems; AudioError: a corrupt audio file.
    """
    import json

    vox_dir, out = Path(vox_dir), Path(out_dir)
    if not vox_dir.is_dir():
        raise CorpusError(f"{vox_dir}: no such folder; {LAYOUT}")
    items = scan_utterances(audio_root(vox_dir))
    trial_file = next((vox_dir / n for n in TRIAL_FILES if (vox_dir / n).is_file()), None)
    trials = read_trials(trial_file, {cut_id for _, cut_id, _, _ in items}) if trial_file else []
    recordings = audio_recordings([(path, cut_id) for path, cut_id, _, _ in items], num_jobs)
    cuts = [classification_cut(rec, "", speaker, speaker=speaker, custom={"video": video})
            for rec, (_, _, speaker, video) in zip(recordings, items)]
    out.mkdir(parents=True, exist_ok=True)
    write_cuts(cuts, out / "cuts_voxceleb.jsonl.gz")
    speakers = sorted({speaker for _, _, speaker, _ in items})
    write_json_atomic(out / "speakers.json", speakers)
    if trials:
        write_text_atomic(out / "trials.jsonl", "".join(json.dumps(t) + "\n" for t in trials))
    hours = sum(r.duration for r in recordings) / 3600
    return (f"Wrote VoxCeleb manifests to {out}: {len(cuts)} utterances ({hours:.2f} h), {len(speakers)} speakers"
            + (f", {len(trials)} trials from {trial_file.name}" if trials else ", no trial list"))


def _add_prepare_arguments(p) -> None:
    pass


def _prepare_from_args(args) -> int:
    print(prepare_voxceleb(args.corpus_dir, args.out_dir, num_jobs=args.num_jobs))
    return 0


PREPARE = Subcommand(
    "voxceleb", "VoxCeleb1/2 speaker data (+ the VoxCeleb1-O trial list)", _add_prepare_arguments, _prepare_from_args,
    description="VoxCeleb: CORPUS_DIR/wav/<idXXXXX>/<video>/<nnnnn>.wav (VoxCeleb2 .m4a: convert to wav first) and "
    "veri_test.txt. Writes cuts_voxceleb.jsonl.gz (speaker IDs), speakers.json and trials.jsonl.",
    order=40,
)
