"""Google Speech Commands (v1 / v2) -> classification manifests.

The standard protocols (Warden 2018, https://arxiv.org/abs/1804.03209; BC-ResNet, Kim et al. 2021):

* **12 classes**: ``yes no up down left right on off stop go`` + ``_unknown_`` (every other word)
  + ``_silence_`` (1 s segments cut from the ``_background_noise_`` recordings).
* **35 classes** (v2) / **30 classes** (v1): every word folder is a class; no silence/unknown.
* **custom keywords** (``keywords=[...]``): the given words + ``_unknown_`` + ``_silence_``.

Label order (logit order) follows TensorFlow's ``speech_commands`` example:
``_silence_, _unknown_, <keywords in the order given>``; all-word protocols sort the words.

Splits come from ``validation_list.txt`` and ``testing_list.txt``; every other file is train.
The BC-ResNet paper evaluates on the separately released test archive
(``speech_commands_test_set_v0.02.tar.gz``, folders ``<word>/``, ``_unknown_/``, ``_silence_/``);
pass its folder as ``test_dir`` to use it as the test split instead of ``testing_list.txt``.

We write our own recipe instead of calling ``lhotse.recipes.prepare_speechcommands`` because that
one expects both archives under fixed names, puts the whole background-noise files into train,
skips missing files with only a log line, and leaves the 12-class mapping to the user.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from speechkit.data.manifests import (
    SILENCE,
    UNKNOWN,
    audio_recordings,
    classification_cut,
    write_classification_corpus,
)
from speechkit.errors import CorpusError
from speechkit.plugins import Subcommand

V1_WORDS = (
    "bed", "bird", "cat", "dog", "down", "eight", "five", "four", "go", "happy", "house", "left",
    "marvin", "nine", "no", "off", "on", "one", "right", "seven", "sheila", "six", "stop", "three",
    "tree", "two", "up", "wow", "yes", "zero",
)  # fmt: skip
V2_WORDS = tuple(sorted(V1_WORDS + ("backward", "follow", "forward", "learn", "visual")))
#: The 10 keywords of the 12-class protocol, in TensorFlow's label order.
KEYWORDS_12 = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
BACKGROUND_NOISE = "_background_noise_"
LAYOUT = (
    "expected CORPUS_DIR/<word>/<speaker>_nohash_<k>.wav folders, validation_list.txt and "
    "testing_list.txt (and _background_noise_/*.wav for _silence_), the layout of "
    "speech_commands_v0.02.tar.gz; see https://arxiv.org/abs/1804.03209"
)
TEST_LAYOUT = (
    "expected TEST_DIR/<word>/*.wav, TEST_DIR/_unknown_/<word>_<speaker>_nohash_<k>.wav and "
    "TEST_DIR/_silence_/*.wav, the layout of speech_commands_test_set_v0.02.tar.gz"
)
CLASS_CHOICES = ("12", "30", "35", "all")
SPLITS = ("train", "valid", "test")
#: splitGSC (few-shot KWS, ``--split fewshot``): 15 / 10 / 10 word classes of GSC v2. The
#: D-ProtoNets paper's own class lists were not available to us; this fixed split keeps the ten
#: command words for test (words a user would enrol), see docs/methods/fewshot_kws.md.
FEWSHOT_SPLIT = {
    "train": ("backward", "bed", "bird", "cat", "dog", "eight", "five", "follow", "forward", "four",
              "happy", "house", "learn", "marvin", "nine"),
    "valid": ("one", "seven", "sheila", "six", "three", "tree", "two", "visual", "wow", "zero"),
    "test": KEYWORDS_12,
}  # fmt: skip


@dataclass
class Corpus:
    """What a Speech Commands folder holds: word -> files (relative posix paths), noise files."""

    root: Path
    words: dict[str, list[str]]
    noise_files: list[str] = field(default_factory=list)

    @property
    def version(self) -> int | None:
        """1 or 2 when the words are exactly those of v1 / v2; ``None`` for other corpora."""
        found = set(self.words)
        return {frozenset(V1_WORDS): 1, frozenset(V2_WORDS): 2}.get(frozenset(found))


@dataclass
class ClassSetup:
    """The class list and the word -> class mapping of one protocol."""

    labels: list[str]
    keywords: list[str]  # words that are classes of their own
    has_unknown: bool
    has_silence: bool

    def label_of(self, word: str) -> str | None:
        """Class of a spoken word; ``None`` if it is not a class and there is no ``_unknown_``."""
        if word in self.keywords:
            return word
        return UNKNOWN if self.has_unknown else None


def prepare_speech_commands(
    corpus_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    version: int | None = None,
    classes: str = "12",
    keywords: Sequence[str] | None = None,
    test_dir: str | os.PathLike | None = None,
    silence_ratio: float = 1.0,
    unknown_ratio: float | None = None,
    seed: int = 0,
    num_jobs: int = 4,
    split: str = "standard",
    heldout_speakers: bool = False,
) -> str:
    """Write Speech Commands manifests to ``out_dir``; return a one-paragraph summary.

    Args:
        corpus_dir: the extracted ``speech_commands_v0.0x`` folder.
        out_dir: where ``cuts_{train,valid,test,noise}.jsonl.gz`` and ``labels.json`` go.
        version: 1 or 2 to check that the folder is that version (30 / 35 words).
        classes: ``"12"``, ``"30"``, ``"35"`` or ``"all"`` (every word folder is a class).
            Ignored when ``keywords`` is given.
        keywords: custom keywords; classes = keywords + ``_unknown_`` + ``_silence_``.
        test_dir: the official separately released test folder, used as the test split.
        silence_ratio: ``_silence_`` cuts per split = ratio x the mean per-keyword count of
            that split (BC-ResNet balances to about 1.0). 0 drops the ``_silence_`` class.
        unknown_ratio: if set, keep at most ratio x the mean per-keyword count of
            ``_unknown_`` cuts per split (a seeded random subset); all are kept by default.
        seed: seed of silence offsets and unknown subsampling (the output is deterministic).
        num_jobs: threads for reading audio headers.
        split: ``"standard"`` (the lists) or ``"fewshot"``: splitGSC, the classes of
            :data:`FEWSHOT_SPLIT` (every clip of a class in its class's split; all other
            options but ``heldout_speakers`` are ignored).
        heldout_speakers: with ``split="fewshot"``, keep only the training speakers' clips of
            the train classes, the ``validation_list.txt`` speakers' of the valid classes and the
            ``testing_list.txt`` speakers' of the test classes (voices never heard in training).

    Raises:
        CorpusError: the folder does not have the expected layout, a list names a missing
            file, or the requested classes/version do not match the folder.
        AudioError: an audio file is corrupt (the message names it).
    """
    corpus = scan_corpus(corpus_dir)
    if split == "fewshot":
        return _prepare_fewshot(corpus, out_dir, heldout_speakers, num_jobs)
    if split != "standard":
        raise CorpusError(f"split must be 'standard' or 'fewshot', got {split!r}")
    check_version(corpus, version)
    classes = str(classes).lower()
    setup = class_setup(corpus, classes, keywords, silence_ratio)
    relpaths = split_files(corpus)
    splits = {name: _word_cuts(corpus.root, paths, setup, num_jobs) for name, paths in relpaths.items()}
    if test_dir is not None:
        splits["test"] = _test_dir_cuts(Path(test_dir), setup, num_jobs)
    rng = np.random.default_rng(seed)
    noise = audio_recordings(
        [(corpus.root / p, p[: -len(".wav")]) for p in corpus.noise_files], num_jobs
    )
    for name in SPLITS:
        if name == "test" and test_dir is not None:
            continue  # the official test set is already balanced and has its own _silence_
        mean_count = _mean_keyword_count(splits[name], setup)
        if setup.has_unknown and unknown_ratio is not None:
            splits[name] = _subsample_unknown(splits[name], round(unknown_ratio * mean_count), rng)
        if setup.has_silence:
            count = max(1, round(silence_ratio * mean_count)) if mean_count else 0
            splits[name] = splits[name] + silence_cuts(noise, count, rng, prefix=f"{SILENCE}/{name}")
    if not splits["train"]:
        raise CorpusError(f"{corpus.root}: no training files left after the lists; {LAYOUT}")
    noise_cuts = [rec.to_cut() for rec in noise]
    summary = write_classification_corpus(out_dir, setup.labels, splits, noise=noise_cuts)
    version_text = f"Speech Commands v{corpus.version}" if corpus.version else "Speech Commands layout"
    return f"{version_text}, {len(corpus.words)} words, {len(noise)} noise files. {summary}"


def _prepare_fewshot(corpus: Corpus, out_dir: str | os.PathLike, heldout_speakers: bool, num_jobs: int) -> str:
    """splitGSC: one split per class group of :data:`FEWSHOT_SPLIT`; labels = the 35 words."""
    missing = sorted(w for words in FEWSHOT_SPLIT.values() for w in words if w not in corpus.words)
    if missing:
        raise CorpusError(f"{corpus.root}: --split fewshot needs the 35 words of Speech Commands v2; "
                          f"no folder for {', '.join(missing)}")
    lists = split_files(corpus) if heldout_speakers else None
    setup = ClassSetup([w for words in FEWSHOT_SPLIT.values() for w in words],
                       [w for words in FEWSHOT_SPLIT.values() for w in words], has_unknown=False, has_silence=False)
    splits = {}
    for name, words in FEWSHOT_SPLIT.items():
        paths = [p for w in words for p in corpus.words[w]]
        if lists is not None:
            keep = set(lists[name])
            paths = [p for p in paths if p in keep]
        splits[name] = _word_cuts(corpus.root, paths, setup, num_jobs)
        if not splits[name]:
            raise CorpusError(f"{corpus.root}: no {name} clips for the few-shot classes {', '.join(words)}")
    summary = write_classification_corpus(out_dir, setup.labels, splits)
    speakers = " (held-out speakers in valid/test)" if heldout_speakers else ""
    return f"splitGSC few-shot split 15/10/10 classes{speakers}. {summary}"


def scan_corpus(corpus_dir: str | os.PathLike) -> Corpus:
    """List word folders and background-noise files.

    Raises:
        CorpusError: the folder is missing, holds no word folders, or a word folder has no wav.
    """
    root = Path(corpus_dir).resolve()  # absolute paths in the cuts: training may run from any folder
    if not root.is_dir():
        raise CorpusError(f"{root}: no such folder; {LAYOUT}")
    hint = _nested_hint(root)
    if hint and not (root / "validation_list.txt").is_file():
        raise CorpusError(f"{root}: not the corpus folder itself{hint}; {LAYOUT}")
    words: dict[str, list[str]] = {}
    for entry in sorted(os.scandir(root), key=lambda e: e.name):
        if not entry.is_dir() or entry.name.startswith((".", "_")):
            continue
        wavs = sorted(f.name for f in os.scandir(entry.path) if f.name.endswith(".wav") and f.is_file())
        if not wavs:
            raise CorpusError(f"{entry.path}: folder has no .wav files; {LAYOUT}")
        words[entry.name] = [f"{entry.name}/{name}" for name in wavs]
    if not words:
        raise CorpusError(f"{root}: no word folders found{_nested_hint(root)}; {LAYOUT}")
    noise_dir = root / BACKGROUND_NOISE
    noise_files = []
    if noise_dir.is_dir():
        noise_files = sorted(f"{BACKGROUND_NOISE}/{f.name}" for f in os.scandir(noise_dir) if f.name.endswith(".wav"))
    return Corpus(root=root, words=words, noise_files=noise_files)


def check_version(corpus: Corpus, version: int | None) -> None:
    """Raise :class:`CorpusError` unless ``version`` is ``None`` or the folder's version."""
    if version is None or corpus.version == version:
        return
    expected = V1_WORDS if version == 1 else V2_WORDS
    missing = sorted(set(expected) - set(corpus.words))
    extra = sorted(set(corpus.words) - set(expected))
    raise CorpusError(
        f"{corpus.root}: expected Speech Commands v{version} ({len(expected)} words) but found "
        f"{len(corpus.words)} word folders (missing: {', '.join(missing) or 'none'}; "
        f"not in v{version}: {', '.join(extra) or 'none'})"
    )


def class_setup(
    corpus: Corpus, classes: str, keywords: Sequence[str] | None, silence_ratio: float
) -> ClassSetup:
    """The labels of the requested protocol.

    Raises:
        CorpusError: a keyword has no folder, the word count does not match ``classes``, or
            ``_silence_`` is needed but there is no background noise.
    """
    words = list(corpus.words)
    if keywords is not None or classes == "12":
        wanted = list(dict.fromkeys(keywords)) if keywords is not None else list(KEYWORDS_12)
        missing = [w for w in wanted if w not in corpus.words]
        if missing:
            raise CorpusError(
                f"{corpus.root}: no folder for keyword(s) {', '.join(missing)}; word folders: "
                f"{', '.join(words)}"
            )
        has_silence = silence_ratio > 0
        if has_silence and not corpus.noise_files:
            raise CorpusError(
                f"{corpus.root / BACKGROUND_NOISE}: no .wav files; _silence_ clips are cut from "
                "CORPUS_DIR/_background_noise_/*.wav (pass --silence-ratio 0 for no _silence_ class)"
            )
        specials = ([SILENCE] if has_silence else []) + [UNKNOWN]
        return ClassSetup(specials + wanted, wanted, has_unknown=True, has_silence=has_silence)
    if classes not in CLASS_CHOICES:
        raise CorpusError(f"classes must be one of {', '.join(CLASS_CHOICES)}, got {classes!r}")
    if classes != "all" and len(words) != int(classes):
        raise CorpusError(
            f"{corpus.root}: --classes {classes} needs {classes} word folders, found {len(words)} "
            "(use --classes all for every word folder)"
        )
    return ClassSetup(sorted(words), sorted(words), has_unknown=False, has_silence=False)


def split_files(corpus: Corpus) -> dict[str, list[str]]:
    """Relative wav paths per split, from ``validation_list.txt`` / ``testing_list.txt``.

    A file in both lists goes to test (never let test clips leak into model selection).

    Raises:
        CorpusError: a list file is missing, or names a file that does not exist.
    """
    valid = _read_list(corpus, "validation_list.txt")
    test = _read_list(corpus, "testing_list.txt")
    valid -= test
    train = [p for files in corpus.words.values() for p in files if p not in valid and p not in test]
    return {"train": train, "valid": sorted(valid), "test": sorted(test)}


def silence_cuts(noise: Sequence, count: int, rng: np.random.Generator, prefix: str, seconds: float = 1.0) -> list:
    """``count`` 1 s ``_silence_`` cuts at random offsets in random noise recordings.

    Offsets are whole samples so cut boundaries are exact.
    """
    usable = [rec for rec in noise if rec.duration >= seconds]
    if count and not usable:
        raise CorpusError(f"no background-noise file is at least {seconds} s long; cannot make _silence_")
    cuts = []
    for i in range(count):
        rec = usable[rng.integers(len(usable))]
        clip = round(seconds * rec.sampling_rate)
        offset = int(rng.integers(rec.num_samples - clip + 1)) / rec.sampling_rate
        cuts.append(
            classification_cut(rec, "", SILENCE, start=offset, duration=clip / rec.sampling_rate,
                                cut_id=f"{prefix}_{i:05d}", custom={"source": rec.id})
        )
    return cuts


def _read_list(corpus: Corpus, name: str) -> set[str]:
    path = corpus.root / name
    if not path.is_file():
        raise CorpusError(f"{path}: missing list file{_nested_hint(corpus.root)}; {LAYOUT}")
    entries = set()
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        entry = line.strip().replace("\\", "/")
        if not entry:
            continue
        word = entry.split("/", 1)[0]
        if word not in corpus.words or not (corpus.root / entry).is_file():
            raise CorpusError(
                f"{path}:{lineno}: lists {entry!r}, but {corpus.root / entry} does not exist; "
                "the list and the word folders must come from the same release"
            )
        entries.add(entry)
    return entries


def _word_cuts(root: Path, relpaths: Sequence[str], setup: ClassSetup, num_jobs: int) -> list:
    recs = audio_recordings([(root / p, p[: -len(".wav")]) for p in relpaths], num_jobs)
    cuts = []
    for rec, rel in zip(recs, relpaths):
        word, name = rel.split("/", 1)
        cuts.append(classification_cut(rec, word, setup.label_of(word), speaker=_speaker(name)))
    return cuts


def _test_dir_cuts(test_dir: Path, setup: ClassSetup, num_jobs: int) -> list:
    if not test_dir.is_dir():
        raise CorpusError(f"{test_dir}: no such folder; {TEST_LAYOUT}")
    items = []  # (relpath, text, label, speaker)
    for folder in sorted(d for d in test_dir.iterdir() if d.is_dir() and not d.name.startswith(".")):
        for wav in sorted(folder.glob("*.wav")):
            rel = f"{folder.name}/{wav.name}"
            if folder.name == SILENCE:
                text, label, speaker = "", SILENCE if setup.has_silence else None, None
            elif folder.name == UNKNOWN:
                text, _, rest = wav.stem.partition("_")  # "<word>_<speaker>_nohash_<k>"
                label, speaker = setup.label_of(text), _speaker(rest)
            else:
                text, label, speaker = folder.name, setup.label_of(folder.name), _speaker(wav.name)
            if label is None:
                raise CorpusError(
                    f"{test_dir / rel}: {folder.name!r} clips are not one of the classes "
                    f"{setup.labels}; the official test set fits the 12-class protocol"
                )
            items.append((rel, text, label, speaker))
    if not items:
        raise CorpusError(f"{test_dir}: no .wav files in sub-folders; {TEST_LAYOUT}")
    recs = audio_recordings([(test_dir / rel, rel[: -len(".wav")]) for rel, *_ in items], num_jobs)
    return [classification_cut(rec, text, label, speaker=spk) for rec, (_, text, label, spk) in zip(recs, items)]


def _mean_keyword_count(cuts: Sequence, setup: ClassSetup) -> float:
    if not setup.keywords:
        return 0.0
    n = sum(1 for c in cuts if c.supervisions[0].custom["label"] in setup.keywords)
    return n / len(setup.keywords)


def _subsample_unknown(cuts: list, keep: int, rng: np.random.Generator) -> list:
    unknown = [i for i, c in enumerate(cuts) if c.supervisions[0].custom["label"] == UNKNOWN]
    if keep >= len(unknown):
        return cuts
    drop = set(np.asarray(unknown)[rng.permutation(len(unknown))[keep:]].tolist())
    return [c for i, c in enumerate(cuts) if i not in drop]


def _speaker(filename: str) -> str | None:
    """``<speaker>_nohash_<k>.wav`` -> ``<speaker>``; ``None`` for other names."""
    speaker, sep, _ = filename.partition("_nohash_")
    return speaker if sep else None


def _nested_hint(root: Path) -> str:
    """Point at a sub-folder that looks like the corpus (a common extraction slip)."""
    try:
        nested = [d for d in root.iterdir() if (d / "validation_list.txt").is_file()]
    except OSError:
        return ""
    return f" (did you mean {nested[0]}?)" if nested else ""


# -- ``speechkit prepare speech-commands`` ------------------------------------------------------


def _word_list(text: str) -> list[str]:
    words = [w.strip() for w in text.split(",") if w.strip()]
    if not words:
        raise argparse.ArgumentTypeError("expected comma-separated words, e.g. yes,no")
    return words


def _non_negative(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text}")
    return value


def _add_prepare_arguments(p) -> None:
    p.add_argument("--version", type=int, choices=(1, 2), default=None,
                   help="check that CORPUS_DIR is v1 (30 words) or v2 (35 words)")
    p.add_argument("--classes", default="12", choices=("12", "30", "35", "all"),
                   help="12: 10 keywords + _unknown_ + _silence_; 30/35/all: every word is a class (default: 12)")
    p.add_argument("--keywords", type=_word_list, default=None, metavar="W1,W2,...",
                   help="custom keywords: classes = keywords + _unknown_ + _silence_ (overrides --classes)")
    p.add_argument("--test-dir", default=None, metavar="DIR",
                   help="the official test archive folder (speech_commands_test_set_v0.0x), used as "
                   "the test split instead of testing_list.txt (as the BC-ResNet paper evaluates)")
    p.add_argument("--silence-ratio", type=_non_negative, default=1.0,
                   help="_silence_ clips per split = ratio x mean keyword count (default: 1.0; 0: no _silence_)")
    p.add_argument("--unknown-ratio", type=_non_negative, default=None,
                   help="keep at most ratio x mean keyword count _unknown_ clips per split (default: keep all)")
    p.add_argument("--seed", type=int, default=0, help="seed of silence offsets / unknown subsampling (default: 0)")
    p.add_argument("--split", choices=("standard", "fewshot"), default="standard",
                   help="fewshot: splitGSC, 15/10/10 word classes in train/valid/test for few-shot KWS")
    p.add_argument("--heldout-speakers", action="store_true",
                   help="with --split fewshot: valid/test classes only from the listed held-out speakers")


def _prepare_from_args(args) -> int:
    print(prepare_speech_commands(
        args.corpus_dir, args.out_dir, version=args.version, classes=args.classes,
        keywords=args.keywords, test_dir=args.test_dir, silence_ratio=args.silence_ratio,
        unknown_ratio=args.unknown_ratio, seed=args.seed, num_jobs=args.num_jobs,
        split=args.split, heldout_speakers=args.heldout_speakers,
    ))
    return 0


PREPARE = Subcommand(
    "speech-commands", "Google Speech Commands v1/v2", _add_prepare_arguments, _prepare_from_args,
    description="Google Speech Commands: CORPUS_DIR/<word>/<speaker>_nohash_<k>.wav, "
    "validation_list.txt, testing_list.txt, _background_noise_/. Writes cuts_train/valid/test/"
    "noise.jsonl.gz and labels.json (_silence_, _unknown_, keywords...).",
    order=10,
)
