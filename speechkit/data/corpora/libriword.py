"""LibriWord: 1 s word clips cut from LibriSpeech at aligned word times (Yang et al., Interspeech 2023).

``speechkit prepare libriword LIBRISPEECH_DIR OUT_DIR (--alignments MFA_DIR | --aligner MODEL)``
builds the auxiliary word-classification corpus of "Improving Small Footprint Few-shot Keyword
Spotting with Supervision on Auxiliary Data" (arXiv 2309.00647; no code or data release):

1. utterances: LibriSpeech's layout, read with :mod:`speechkit.data.corpora.librispeech`'s checks
   and lhotse's recipe (transcripts, speakers, audio headers);
2. word times: Montreal Forced Aligner TextGrids (``--alignments``; the public LibriSpeech
   alignments, or ``speechkit align`` / ``speechkit synth librispeech --word-times`` output), or
   CTC forced alignment with one of our ASR models (``--aligner``; the TextGrids it makes are kept
   in ``OUT_DIR/alignments`` for the next run);
3. word forms: plural, 3rd person, past tense, -ing and possessive forms are reduced to their base
   when that base occurs in the corpus (:func:`reduce_word_forms`);
4. selection: words of at least ``min_word_chars`` letters and at most a clip long; the ``num_words``
   forms with most clips, each with at most ``clips_per_word`` clips dealt round-robin over speakers
   (paper: 1,000 x 300), forms with fewer than ``min_clips`` dropped;
5. clips: ``clip_seconds`` centred on the word (its midpoint at the clip's middle, to a sample).
   Cuts reference the source flac with ``start``/``duration``; where the window passes a
   recording's edge the cut is padded with silence (a lhotse ``MixedCut`` with padding).

Output (the project's classification format, :mod:`speechkit.data.manifests`)::

    OUT_DIR/cuts_train.jsonl.gz  cuts_dev.jsonl.gz   split by speaker (no speaker in both)
    OUT_DIR/labels.txt           one reduced word per line (also labels.json, the logit order)

Each cut's supervision: ``text`` = the word as said (lower case), ``custom["label"]`` = its reduced
form, ``speaker``, and ``custom`` ``word_start``/``word_end`` (s, in the source recording) and
``source`` (the utterance id).
"""

from __future__ import annotations

import os
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from speechkit.data.corpora.librispeech import check_subset, find_subsets
from speechkit.data.manifests import classification_cut, write_classification_corpus
from speechkit.data.word_alignments import find_textgrids, read_textgrid, textgrid_path, write_textgrid
from speechkit.errors import CorpusError, SpeechkitError
from speechkit.fileio import write_text_atomic
from speechkit.plugins import Subcommand

LABELS_TXT = "labels.txt"
ALIGNMENTS_DIR = "alignments"

# -- word forms ----------------------------------------------------------------------------------

#: Contractions that look like possessives (kept as they are).
_CONTRACTIONS = frozenset(
    "it's he's she's that's there's what's here's who's where's let's how's when's why's one's".split()
)
#: Words the suffix rules would wrongly reduce to another word of the corpus (kept as they are).
KEEP_AS_IS = frozenset(
    "news hers ours yours theirs shed wed fed led bed red bled sped evening morning wedding being during "
    "nothing something anything everything thing things ceiling pudding bring king sing ring wing string "
    "spring sting swing cling fling ding lens bus gas yes thus this his has was is us as its series species "
    "physics politics always perhaps whereas besides sometimes towards afterwards upwards downwards forwards "
    "backwards outwards olives".split()
)


def _candidates(word: str) -> list[str]:
    """Base forms to try for ``word``, most likely first (the first one in the corpus wins)."""
    out: list[str] = []
    if len(word) < 4:
        return out
    if word.endswith("ies") and len(word) > 4:
        out.append(word[:-3] + "y")  # studies -> study
    if word.endswith("ied") and len(word) > 4:
        out.append(word[:-3] + "y")  # carried -> carry
    if re.search(r"(s|x|z|ch|sh|o)es$", word):
        out.append(word[:-2])  # watches -> watch, goes -> go
    if word.endswith("s") and not re.search(r"(ss|us|is|'s)$", word):
        out.append(word[:-1])  # cats -> cat, lies -> lie
    for suffix in ("ed", "ing"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 2:
            stem = word[: -len(suffix)]
            out += [stem + "e", stem] if suffix == "ed" else [stem, stem + "e"]  # used -> use; walking -> walk
            if len(stem) >= 3 and stem[-1] == stem[-2] and stem[-1] not in "aeiosl":
                out.append(stem[:-1])  # running -> run, stopped -> stop (not: passed, called, seeing)
    return out


def reduce_word_forms(vocabulary: Iterable[str]) -> dict[str, str]:
    """Map each word of ``vocabulary`` to its reduced form (the word itself if none applies).

    Rules, applied to lower-case words: a possessive ``'s`` / ``s'`` is dropped (``man's`` ->
    ``man``; contractions such as ``it's`` are kept); then one suffix: ``-ies``/``-ied`` -> ``-y``,
    ``-es``, ``-s``, ``-ed`` (``-d`` after ``e``), ``-ing`` (with ``e`` restored or a doubled
    consonant undone). A suffix rule only applies when the base it gives is itself a word of
    ``vocabulary`` (so ``always`` stays: there is no ``alway``) and the word is not in
    :data:`KEEP_AS_IS` (``news`` is not ``new``, ``evening`` not ``even``). Irregular forms
    (``went``, ``men``) are not merged: they do not sound like their base, and the point is to
    keep acoustically near-identical forms out of separate classes.

    Args:
        vocabulary: words (any case; the map's keys are lower case).

    Returns:
        word -> reduced form, both lower case.

    Example:
        >>> forms = reduce_word_forms(["cats", "cat", "walked", "walk", "running", "run", "man's", "man",
        ...                            "news", "new", "always", "studies", "study", "it's"])
        >>> [forms[w] for w in ("cats", "walked", "running", "man's", "news", "always", "studies", "it's")]
        ['cat', 'walk', 'run', 'man', 'news', 'always', 'study', "it's"]
    """
    words = {w.lower() for w in vocabulary if w}
    forms = {}
    for word in sorted(words):
        base = word
        if base not in _CONTRACTIONS and base.endswith("'s") and len(base) > 2:
            base = base[:-2]
        elif base.endswith("s'") and len(base) > 2:
            base = base[:-1]
        if base not in KEEP_AS_IS:
            base = next((c for c in _candidates(base) if c in words and c != base), base)
        forms[word] = base
    return forms


# -- utterances ----------------------------------------------------------------------------------


@dataclass
class Utterance:
    """One LibriSpeech utterance: id, speaker, subset, transcript, and its lhotse ``Recording``."""

    id: str
    speaker: str
    subset: str
    text: str
    recording: object


def librispeech_utterances(
    corpus_dir: str | os.PathLike, subsets: Sequence[str] | None = None, num_jobs: int = 4
) -> list[Utterance]:
    """Every utterance of the LibriSpeech folder (layout checked as ``speechkit prepare librispeech`` does).

    Raises:
        CorpusError: missing folder, no subsets, malformed transcripts, missing flac.
        AudioError: a corrupt flac.
    """
    from lhotse.recipes import prepare_librispeech as lhotse_prepare

    root = Path(corpus_dir).resolve()
    subsets = find_subsets(root, subsets)
    for subset in subsets:
        check_subset(root / subset, num_jobs)
    manifests = lhotse_prepare(root, dataset_parts=list(subsets), output_dir=None, num_jobs=num_jobs)
    utterances = []
    for subset in subsets:
        recordings = manifests[subset]["recordings"]
        for sup in manifests[subset]["supervisions"]:
            utterances.append(Utterance(sup.id, str(sup.speaker), subset, sup.text, recordings[sup.recording_id]))
    return sorted(utterances, key=lambda u: u.id)


# -- alignments ----------------------------------------------------------------------------------


def read_alignments(utterances: Sequence[Utterance], alignments_dir: str | os.PathLike) -> tuple[dict, Counter]:
    """Word times of each utterance from its TextGrid.

    Returns:
        ``(utt id -> [WordTime], problems)`` with ``problems["missing"]`` / ``["malformed"]``
        counting utterances without a usable TextGrid.

    Raises:
        CorpusError: the folder holds no TextGrid, or none of them belongs to a usable utterance.
    """
    found = find_textgrids(alignments_dir)
    words, problems = {}, Counter()
    for utt in utterances:
        path = found.get(utt.id)
        if path is None:
            problems["missing"] += 1
            continue
        try:
            words[utt.id] = read_textgrid(path)
        except CorpusError:
            problems["malformed"] += 1
    if not words:
        raise CorpusError(
            f"{alignments_dir}: no usable TextGrid for the {len(utterances)} utterances "
            f"({problems['missing']} missing, {problems['malformed']} malformed)"
        )
    return words, problems


def align_utterances(utterances: Sequence[Utterance], aligner, out_dir: str | os.PathLike | None = None,
                     progress: bool = False) -> tuple[dict, Counter]:
    """Word times of each utterance from a CTC aligner (:class:`speechkit.runtime.ctc_aligner.CtcAligner`).

    Args:
        utterances: from :func:`librispeech_utterances`.
        aligner: has ``sample_rate`` and ``align(audio, transcript) -> [WordTime]``.
        out_dir: where to write the TextGrids (MFA layout, by subset); none if ``None``.
        progress: a progress bar on stderr.

    Returns:
        ``(utt id -> [WordTime], problems)``; ``problems["failed"]`` counts utterances the
        aligner could not align (a transcript longer than the audio allows).

    Raises:
        CorpusError: no utterance could be aligned.
    """
    from speechkit.audio import resample

    words, problems = {}, Counter()
    for utt in _progress(utterances, progress, "aligning"):
        audio = utt.recording.load_audio()[0]
        if utt.recording.sampling_rate != aligner.sample_rate:
            audio = resample(audio, utt.recording.sampling_rate, aligner.sample_rate)
        try:
            words[utt.id] = aligner.align(audio, utt.text)
        except SpeechkitError:
            problems["failed"] += 1
            continue
        if out_dir is not None:
            write_textgrid(textgrid_path(out_dir, utt.id, utt.subset), words[utt.id], utt.recording.duration)
    if not words:
        raise CorpusError(f"the aligner could align none of the {len(utterances)} utterances")
    return words, problems


def _progress(items, enabled: bool, desc: str):
    if not enabled:
        return items
    from tqdm import tqdm

    return tqdm(items, desc=desc, unit="utt")


# -- selection -----------------------------------------------------------------------------------


@dataclass
class WordClip:
    """A candidate clip: one aligned word of one utterance."""

    utterance: Utterance
    index: int  # position among the utterance's aligned words
    said: str  # the word as said, lower case
    form: str  # its reduced form (the label)
    start_s: float
    end_s: float


def _said(label: str) -> str:
    return re.sub(r"[^a-z']", "", label.lower()).strip("'")


def select_clips(
    candidates: Sequence[WordClip], num_words: int, clips_per_word: int, min_clips: int, seed: int
) -> tuple[dict[str, list[WordClip]], Counter]:
    """The ``num_words`` forms with most clips, each with <= ``clips_per_word`` clips, dealt over speakers.

    Within a form, clips are shuffled per speaker (``seed``) and taken one per speaker in turn
    (speakers in a shuffled order), so every speaker gives about the same number of clips where
    possible.

    Returns:
        ``(form -> clips, dropped)``; forms in rank order (most clips first, then by name).
    """
    by_form: dict[str, list[WordClip]] = defaultdict(list)
    for clip in candidates:
        by_form[clip.form].append(clip)
    dropped = Counter()
    ranked = sorted(by_form, key=lambda f: (-len(by_form[f]), f))
    rare = [f for f in ranked if len(by_form[f]) < min_clips]
    dropped[f"clips of words with fewer than {min_clips} clips"] = sum(len(by_form[f]) for f in rare)
    ranked = [f for f in ranked if len(by_form[f]) >= min_clips]
    dropped[f"clips of words beyond the top {num_words}"] = sum(len(by_form[f]) for f in ranked[num_words:])
    rng = np.random.default_rng(seed)
    chosen = {}
    for form in ranked[:num_words]:
        chosen[form] = _deal_over_speakers(by_form[form], clips_per_word, rng)
        dropped[f"clips over {clips_per_word} per word"] += len(by_form[form]) - len(chosen[form])
    return chosen, dropped


def _deal_over_speakers(clips: list[WordClip], limit: int, rng: np.random.Generator) -> list[WordClip]:
    per_speaker: dict[str, list[WordClip]] = defaultdict(list)
    for clip in sorted(clips, key=lambda c: (c.utterance.id, c.index)):
        per_speaker[clip.utterance.speaker].append(clip)
    queues = [per_speaker[s] for s in sorted(per_speaker)]
    for queue in queues:
        rng.shuffle(queue)
    queues = [queues[i] for i in rng.permutation(len(queues))]
    out: list[WordClip] = []
    depth = 0
    while len(out) < limit and any(depth < len(q) for q in queues):
        out += [q[depth] for q in queues if depth < len(q)][: limit - len(out)]
        depth += 1
    return out


def split_speakers(speakers: Iterable[str], dev_fraction: float, seed: int) -> set[str]:
    """The dev speakers: ``round(dev_fraction * n)`` of them (at least 1 when n >= 2), seeded.

    Example:
        >>> sorted(split_speakers(["1", "2", "3", "4", "5"], 0.2, seed=0)).__len__()
        1
    """
    speakers = sorted(set(speakers))
    if len(speakers) < 2 or dev_fraction <= 0:
        return set()
    count = min(len(speakers) - 1, max(1, round(dev_fraction * len(speakers))))
    order = np.random.default_rng(seed).permutation(len(speakers))
    return {speakers[i] for i in order[:count]}


def word_cut(clip: WordClip, clip_seconds: float):
    """The cut of ``clip``: ``clip_seconds`` centred on the word, padded where it passes an edge.

    The window start is rounded to a sample so the word's midpoint is at the clip's middle to
    within one sample.
    """
    from lhotse.utils import fastcopy

    recording = clip.utterance.recording
    rate = recording.sampling_rate
    clip_samples = round(clip_seconds * rate)
    first = round((clip.start_s + clip.end_s) / 2 * rate) - clip_samples // 2
    lo, hi = max(0, first), min(recording.num_samples, first + clip_samples)
    cut_id = f"{clip.utterance.id}-{clip.index:03d}"
    cut = classification_cut(
        recording, text=clip.said, label=clip.form, speaker=clip.utterance.speaker, start=lo / rate,
        duration=(hi - lo) / rate, cut_id=cut_id,
        custom={"word_start": round(clip.start_s, 4), "word_end": round(clip.end_s, 4), "source": clip.utterance.id},
    )  # fmt: skip
    if lo > first:
        cut = cut.pad(duration=(hi - first) / rate, direction="left")
    if hi < first + clip_samples:
        cut = cut.pad(duration=clip_samples / rate, direction="right")
    return cut if cut.id == cut_id else fastcopy(cut, id=cut_id)


# -- the builder ---------------------------------------------------------------------------------


def prepare_libriword(
    corpus_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    alignments: str | os.PathLike | None = None,
    aligner=None,
    subsets: Sequence[str] | None = None,
    num_words: int = 1000,
    clips_per_word: int = 300,
    min_clips: int = 10,
    clip_seconds: float = 1.0,
    min_word_chars: int = 3,
    dev_fraction: float = 0.1,
    seed: int = 0,
    num_jobs: int = 4,
    progress: bool = False,
) -> str:
    """Build LibriWord (module docstring) and return the summary printed by the CLI.

    Args:
        corpus_dir: the ``LibriSpeech`` folder (subset folders inside).
        out_dir: destination.
        alignments: a folder of MFA-layout TextGrids; exactly one of ``alignments``/``aligner``.
        aligner: a CTC aligner (:func:`speechkit.runtime.ctc_aligner.open_aligner`); its TextGrids
            are written to ``out_dir/alignments``.
        subsets: LibriSpeech subsets (default: every one present).
        num_words: N, the forms kept (most clips first). clips_per_word: M, clips per form at most.
        min_clips: forms with fewer clips are dropped.
        clip_seconds: clip length (s). min_word_chars: shortest reduced form kept (letters).
        dev_fraction: share of speakers in the dev split. seed: clip and speaker choices.
        num_jobs: threads for reading audio headers. progress: progress bar while aligning.

    Raises:
        CorpusError: bad corpus layout, no usable alignment, or no word with ``min_clips`` clips.
        SpeechkitError: bad arguments.
    """
    if (alignments is None) == (aligner is None):
        raise SpeechkitError("give exactly one source of word times: alignments (TextGrids) or an aligner")
    for name, value in (("words", num_words), ("clips per word", clips_per_word), ("min clips", min_clips)):
        if value < 1:
            raise SpeechkitError(f"number of {name} must be >= 1, got {value}")
    if not 0.1 <= clip_seconds <= 10.0:
        raise SpeechkitError(f"clip of {clip_seconds} s: expected 0.1-10 s")
    out_dir = Path(out_dir)
    if alignments is not None:
        find_textgrids(alignments)  # a wrong folder fails now, not after reading the corpus
    utterances = librispeech_utterances(corpus_dir, subsets, num_jobs)
    if alignments is not None:
        times, problems = read_alignments(utterances, alignments)
    else:
        times, problems = align_utterances(utterances, aligner, out_dir / ALIGNMENTS_DIR, progress)
    candidates, dropped = _candidates_of(utterances, times, clip_seconds, min_word_chars)
    chosen, more = select_clips(candidates, num_words, clips_per_word, min_clips, seed)
    dropped.update(more)
    if not chosen:
        raise CorpusError(
            f"{corpus_dir}: no word has {min_clips} clips or more ({len(candidates)} candidate clips); "
            "use a larger corpus or lower --min-clips"
        )
    dev_speakers = split_speakers({c.utterance.speaker for clips in chosen.values() for c in clips}, dev_fraction, seed)
    splits = {"train": [], "dev": []}
    for clips in chosen.values():
        for clip in clips:
            splits["dev" if clip.utterance.speaker in dev_speakers else "train"].append(word_cut(clip, clip_seconds))
    labels = list(chosen)
    write_classification_corpus(out_dir, labels, splits)
    write_text_atomic(out_dir / LABELS_TXT, "".join(f"{label}\n" for label in labels))
    return _summary(out_dir, utterances, times, problems, dropped, chosen, splits, dev_speakers, candidates,
                    clips_per_word)


def _candidates_of(utterances, times: dict, clip_seconds: float, min_word_chars: int) -> tuple[list[WordClip], Counter]:
    aligned = [(u, [w for w in times[u.id] if _said(w.word)]) for u in utterances if u.id in times]
    forms = reduce_word_forms({_said(w.word) for _, words in aligned for w in words})
    candidates, dropped = [], Counter()
    for utt, words in aligned:
        for index, word in enumerate(words):
            said = _said(word.word)
            form = forms[said]
            if sum(ch.isalpha() for ch in form) < min_word_chars:
                dropped[f"words shorter than {min_word_chars} letters"] += 1
            elif word.end_s - word.start_s > clip_seconds:
                dropped[f"words longer than {clip_seconds:g} s"] += 1
            else:
                candidates.append(WordClip(utt, index, said, form, word.start_s, word.end_s))
    return candidates, dropped


def _summary(out_dir, utterances, times, problems, dropped, chosen, splits, dev_speakers, candidates,
             clips_per_word) -> str:
    clips = [c for cs in chosen.values() for c in cs]
    speakers = {c.utterance.speaker for c in clips}
    full = sum(len(cs) == clips_per_word for cs in chosen.values())
    merged = sorted({(c.said, c.form) for c in candidates if c.said != c.form}, key=lambda p: p[1])
    padded = sum(1 for cuts in splits.values() for cut in cuts if type(cut).__name__ == "MixedCut")
    problem_text = ", ".join(f"{n} {k}" for k, n in sorted(problems.items())) or "none"
    dropped_text = "; ".join(f"{k} {n}" for k, n in dropped.items() if n) or "none"
    examples = ", ".join(f"{a}->{b}" for a, b in merged[:6])
    return "\n".join([
        f"Wrote LibriWord to {out_dir}: {len(chosen)} words, {len(clips)} clips "
        f"(train {len(splits['train'])}, dev {len(splits['dev'])}); {len(speakers)} speakers "
        f"(train {len(speakers - dev_speakers)}, dev {len(dev_speakers & speakers)}); "
        f"{full} of the {len(chosen)} words have the full {clips_per_word} clips.",
        f"  alignments: {len(times)} of {len(utterances)} utterances; without one: {problem_text}.",
        f"  candidate clips {len(candidates)}; dropped: {dropped_text}.",
        f"  word forms merged: {len(merged)}" + (f" (e.g. {examples})" if merged else "") + ".",
        f"  clips padded at a recording edge: {padded}.",
    ])  # fmt: skip


# -- ``speechkit prepare libriword`` -------------------------------------------------------------


def _add_prepare_arguments(p) -> None:
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--alignments", metavar="MFA_DIR",
                        help="folder of Montreal Forced Aligner TextGrids (<speaker>/<chapter>/<utt>.TextGrid)")
    source.add_argument("--aligner", metavar="MODEL",
                        help="an ASR model (.onnx/.ort artifact or .ckpt checkpoint) to align with (CTC Viterbi)")
    p.add_argument("--tokenizer", default=None,
                   help="the aligner's sentencepiece model (default: bpe.model beside an artifact, if any)")
    p.add_argument("--subsets", nargs="+", default=None, metavar="SUBSET",
                   help="LibriSpeech subsets (default: every one present)")
    p.add_argument("--words", type=int, default=1000, help="N: words kept, most clips first (default: %(default)s)")
    p.add_argument("--clips", type=int, default=300, help="M: clips per word at most (default: %(default)s)")
    p.add_argument("--min-clips", type=int, default=10, help="drop words with fewer clips (default: %(default)s)")
    p.add_argument("--clip-seconds", type=float, default=1.0, help="clip length (default: %(default)s)")
    p.add_argument("--min-word-chars", type=int, default=3,
                   help="shortest word kept, in letters of its reduced form (default: %(default)s)")
    p.add_argument("--dev-fraction", type=float, default=0.1,
                   help="share of speakers in the dev split (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="clip and speaker choices (default: %(default)s)")  # fmt: skip


def _prepare_from_args(args) -> int:
    aligner = None
    if args.aligner:
        from speechkit.runtime.ctc_aligner import open_aligner

        aligner = open_aligner(args.aligner, args.tokenizer, num_threads=max(1, args.num_jobs))
    print(prepare_libriword(
        args.corpus_dir, args.out_dir, alignments=args.alignments, aligner=aligner, subsets=args.subsets,
        num_words=args.words, clips_per_word=args.clips, min_clips=args.min_clips, clip_seconds=args.clip_seconds,
        min_word_chars=args.min_word_chars, dev_fraction=args.dev_fraction, seed=args.seed, num_jobs=args.num_jobs,
        progress=True,
    ))  # fmt: skip
    return 0


PREPARE = Subcommand(
    "libriword", "LibriWord: 1 s word clips from LibriSpeech at aligned word times", _add_prepare_arguments,
    _prepare_from_args,
    description="LibriWord (few-shot KWS auxiliary data): cut 1 s clips centred on aligned words of a LibriSpeech "
    "folder (word times from MFA TextGrids or our CTC aligner), reduce word forms, keep the top N words with M "
    "clips each. Writes cuts_train.jsonl.gz, cuts_dev.jsonl.gz (split by speaker) and labels.txt.",
    order=50,
)
