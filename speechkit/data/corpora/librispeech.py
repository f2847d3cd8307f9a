"""LibriSpeech -> ``cuts_<subset>.jsonl.gz`` through lhotse's recipe.

We only check the layout first (so a wrong folder gives one clear line instead of an assertion
or a silently empty manifest: lhotse skips missing flac files with a log message), then call
:func:`lhotse.recipes.prepare_librispeech` and turn its recordings and supervisions into cuts,
one per utterance. The transcripts are lhotse's (upper-case, as released); text normalisation
belongs to the ASR tokenizer.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

from speechkit.data.manifests import audio_recordings, cuts_path, write_cuts
from speechkit.errors import CorpusError
from speechkit.plugins import Subcommand

LAYOUT = (
    "expected CORPUS_DIR/<subset>/<speaker>/<chapter>/<speaker>-<chapter>-<utt>.flac and "
    "<speaker>-<chapter>.trans.txt, i.e. the extracted LibriSpeech/ folder of the openslr.org/12 "
    "archives (subsets such as dev-clean, train-clean-100)"
)
#: Subsets looked for when none are named (LibriSpeech and Mini LibriSpeech).
KNOWN_SUBSETS = (
    "dev-clean", "dev-other", "test-clean", "test-other", "train-clean-100", "train-clean-360",
    "train-other-500", "dev-clean-2", "train-clean-5",
)  # fmt: skip
_UTT_ID = re.compile(r"^\d+-\d+-\d+$")


def prepare_librispeech(
    corpus_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    subsets: Sequence[str] | None = None,
    num_jobs: int = 4,
) -> str:
    """Write ``cuts_<subset>.jsonl.gz`` for each subset; return a one-paragraph summary.

    Args:
        corpus_dir: the ``LibriSpeech`` folder that holds the subset folders.
        out_dir: destination folder.
        subsets: subset folder names; by default every known subset present.
        num_jobs: threads for reading audio headers.

    Raises:
        CorpusError: the layout is wrong, a transcript line is malformed or names a missing flac.
        AudioError: a flac file is corrupt (the message names it).
    """
    from lhotse import CutSet
    from lhotse.recipes import prepare_librispeech as lhotse_prepare

    root = Path(corpus_dir).resolve()  # absolute paths in the cuts: training may run from any folder
    subsets = find_subsets(root, subsets)
    for subset in subsets:
        check_subset(root / subset, num_jobs)
    manifests = lhotse_prepare(root, dataset_parts=list(subsets), output_dir=None, num_jobs=num_jobs)
    parts = []
    for subset in subsets:
        cuts = CutSet.from_manifests(
            recordings=manifests[subset]["recordings"], supervisions=manifests[subset]["supervisions"]
        ).trim_to_supervisions(keep_overlapping=False)
        cuts = cuts.to_eager()
        write_cuts(cuts, cuts_path(out_dir, subset))
        hours = sum(c.duration for c in cuts) / 3600
        speakers = len({s.speaker for c in cuts for s in c.supervisions})
        parts.append(f"{subset} {len(cuts)} cuts ({hours:.2f} h, {speakers} speakers)")
    return f"Wrote LibriSpeech manifests to {out_dir}: {'; '.join(parts)}."


def find_subsets(root: Path, subsets: Sequence[str] | None) -> list[str]:
    """The subsets to prepare: the named ones (checked) or every known one present.

    Raises:
        CorpusError: the folder or a named subset is missing, or no known subset is present.
    """
    if not root.is_dir():
        raise CorpusError(f"{root}: no such folder; {LAYOUT}")
    if subsets:
        missing = [s for s in subsets if not (root / s).is_dir()]
        if missing:
            raise CorpusError(f"{root}: no subset folder(s) {', '.join(missing)}; {LAYOUT}")
        return list(dict.fromkeys(subsets))
    found = [s for s in KNOWN_SUBSETS if (root / s).is_dir()]
    if not found:
        nested = [d for d in root.iterdir() if d.is_dir() and any((d / s).is_dir() for s in KNOWN_SUBSETS)]
        hint = f" (did you mean {nested[0]}?)" if nested else ""
        raise CorpusError(f"{root}: no LibriSpeech subset folders found{hint}; {LAYOUT}")
    return found


def check_subset(subset_dir: Path, num_jobs: int = 4) -> int:
    """Check transcripts and audio headers of one subset; return the number of utterances.

    Raises:
        CorpusError: no transcripts, a malformed line, or a missing flac.
        AudioError: a corrupt flac.
    """
    transcripts = sorted(subset_dir.rglob("*.trans.txt"))
    if not transcripts:
        raise CorpusError(f"{subset_dir}: no *.trans.txt transcripts; {LAYOUT}")
    audio = []
    for trans in transcripts:
        for lineno, line in enumerate(trans.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            parts = line.split(maxsplit=1)
            if len(parts) != 2 or not _UTT_ID.match(parts[0]):
                raise CorpusError(
                    f"{trans}:{lineno}: expected '<speaker>-<chapter>-<utt> TRANSCRIPT', got {line.strip()!r}"
                )
            flac = trans.parent / f"{parts[0]}.flac"
            if not flac.is_file():
                raise CorpusError(f"{trans}:{lineno}: names {parts[0]}, but {flac} does not exist; {LAYOUT}")
            audio.append((flac, parts[0]))
    audio_recordings(audio, num_jobs)  # raises AudioError naming a corrupt file
    return len(audio)


# -- ``speechkit prepare librispeech`` ----------------------------------------------------------


def _add_prepare_arguments(p) -> None:
    p.add_argument("--subsets", nargs="+", default=None, metavar="SUBSET",
                   help="subset folders, e.g. train-clean-100 dev-clean (default: every one present)")


def _prepare_from_args(args) -> int:
    print(prepare_librispeech(args.corpus_dir, args.out_dir, subsets=args.subsets, num_jobs=args.num_jobs))
    return 0


PREPARE = Subcommand(
    "librispeech", "LibriSpeech (through lhotse's recipe)", _add_prepare_arguments, _prepare_from_args,
    description="LibriSpeech: CORPUS_DIR/<subset>/<speaker>/<chapter>/*.flac + *.trans.txt. "
    "Writes cuts_<subset>.jsonl.gz per subset.",
    order=20,
)
