"""Personalized-KWS evaluation (Yang et al. 2022): quadrant trial sets, TB/TO/SV error rates, DET plots.

A **trial** pairs an enrolment clip (the target speaker saying the target keyword) with a test
clip from one of four quadrants: ``ts-tk`` (target speaker, target keyword), ``nts-tk``,
``ts-ntk``, ``nts-ntk``; ``realistic`` trials pair an enrolment with a 1 s window of read speech
(:data:`QUADRANTS`). Tasks:

* **TB-KWS**: positives ts-tk; negatives ts-ntk and nts-ntk (nts-tk is neutral, left out);
* **TO-KWS**: positives ts-tk; negatives the three other quadrants;
* **SV**: the speaker score, positives ts-* , negatives nts-*;
* **realistic FAR**: the threshold that keeps FRR at 1 % / 5 % on ts-tk, then FAR on the
  read-speech windows.

The numbers are means over ``num_splits`` random trial sets (10 in the paper). Silence and
unknown clips can be non-target keywords but never targets. The error-rate functions are the
torch-free ones of :mod:`speechkit.runtime.personal`.

Shapes: N clips, D embedding dim, C classes, P trials.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from speechkit.runtime.personal import (
    equal_error_rate,
    error_curve,
    far_at_frr,
    frr_at_far,
    personal_scores,
    unit,
)

__all__ = ["QUADRANTS", "ClipSet", "Trials", "build_trials", "equal_error_rate", "evaluate_system", "frr_at_far",
           "far_at_frr", "speaker_pair_scores", "save_det_plot", "format_table"]

QUADRANTS = ("ts-tk", "nts-tk", "ts-ntk", "nts-ntk", "realistic")
ALPHA_GRID = tuple(np.round(np.linspace(0.0, 1.0, 21), 2))


def speaker_pair_scores(embeddings: np.ndarray, speaker_ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Cosines of every pair of clips and whether the two share a speaker.

    Args:
        embeddings: ``(N, D)``.
        speaker_ids: N IDs.

    Returns:
        ``(scores, same)``, each ``(N (N - 1) / 2,)``.

    Example:
        >>> s, same = speaker_pair_scores(np.array([[1.0, 0], [1, 0], [0, 1]]), ["a", "a", "b"])
        >>> s.tolist(), same.tolist()
        ([1.0, 0.0, 0.0], [True, False, False])
    """
    z = unit(embeddings)
    i, j = np.triu_indices(len(z), k=1)
    ids = np.asarray(speaker_ids)
    return np.einsum("nd,nd->n", z[i], z[j]), ids[i] == ids[j]


@dataclass
class ClipSet:
    """One system's outputs over an evaluation set (test clips, then read-speech windows).

    Attributes:
        keyword: ``(N, D)`` keyword embeddings.
        speaker: ``(N, D)`` speaker embeddings (vanilla: the keyword embeddings).
        logits: ``(N, C)`` keyword logits (accuracy).
        labels: ``(N,)`` class indices; -1 for read-speech windows.
        speaker_ids: N IDs (``""``: none).
        prototypes: ``(C, D)`` keyword prototypes of the system.
        trm: ``{"tb": weights, "to": weights}`` or ``None``.
    """

    keyword: np.ndarray
    speaker: np.ndarray
    logits: np.ndarray
    labels: np.ndarray
    speaker_ids: list[str]
    prototypes: np.ndarray
    trm: dict | None = None


@dataclass
class Trials:
    """Enrolment/test index pairs into a :class:`ClipSet`.

    Attributes:
        enrol, test: ``(P,)`` clip indices.
        target: ``(P,)`` target keyword class.
        quadrant: ``(P,)`` index into :data:`QUADRANTS`.
    """

    enrol: np.ndarray
    test: np.ndarray
    target: np.ndarray
    quadrant: np.ndarray


def build_trials(labels: np.ndarray, speaker_ids: Sequence[str], keyword_classes: Sequence[int],
                 per_quadrant: int, seed: int) -> Trials:
    """One random trial set: ``per_quadrant`` trials of each quadrant, plus one realistic trial
    per read-speech window (clips with label -1).

    An anchor is a (speaker, target keyword) group with at least two clips: the enrolment is one
    of them, the ts-tk test another.

    Raises:
        ValueError: no speaker has two clips of one keyword, or a quadrant has no candidate.
    """
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels)
    ids = np.asarray(speaker_ids)
    groups = defaultdict(list)
    for n, (lab, spk) in enumerate(zip(labels, ids)):
        if spk and lab in keyword_classes:
            groups[(spk, int(lab))].append(n)
    anchors = [g for g, members in groups.items() if len(members) >= 2]
    if not anchors:
        raise ValueError("no speaker has two clips of one target keyword: cannot build ts-tk trials")
    clips = np.flatnonzero(labels >= 0)
    windows = np.flatnonzero(labels < 0)
    rows: list[tuple[int, int, int, int]] = []
    for q, name in enumerate(QUADRANTS[:4]):
        for _ in range(per_quadrant):
            spk, kw = anchors[int(rng.integers(len(anchors)))]
            enrol, other = rng.choice(groups[(spk, kw)], size=2, replace=False)
            same_spk, same_kw = ids[clips] == spk, labels[clips] == kw
            pool = {"ts-tk": [other], "nts-tk": clips[same_kw & ~same_spk],
                    "ts-ntk": clips[same_spk & ~same_kw], "nts-ntk": clips[~same_spk & ~same_kw]}[name]
            if len(pool) == 0:
                raise ValueError(f"no candidate clip for a {name} trial (speaker {spk}, keyword {kw})")
            rows.append((int(enrol), int(pool[int(rng.integers(len(pool)))]), kw, q))
    for w in windows:
        spk, kw = anchors[int(rng.integers(len(anchors)))]
        rows.append((int(rng.choice(groups[(spk, kw)])), int(w), kw, len(QUADRANTS) - 1))
    enrol, test, target, quadrant = (np.asarray(c, np.int64) for c in zip(*rows))
    return Trials(enrol, test, target, quadrant)


def trial_scores(clips: ClipSet, trials: Trials, kind: str, alpha: float = 0.5) -> np.ndarray:
    """``(P,)`` scores of ``kind``: ``kws``, ``sv``, ``scm`` (with ``alpha``), ``trm_tb``, ``trm_to``."""
    scores = personal_scores(
        clips.keyword[trials.test], clips.speaker[trials.test], clips.prototypes[trials.target],
        clips.speaker[trials.enrol], alpha=alpha, trm=clips.trm if kind.startswith("trm") else None,
    )
    return scores[kind]


def task_split(scores: np.ndarray, quadrant: np.ndarray, task: str) -> tuple[np.ndarray, np.ndarray]:
    """(positives, negatives) of ``task`` (``tb``, ``to``, ``sv``, ``real``) from trial scores."""
    q = {name: quadrant == i for i, name in enumerate(QUADRANTS)}
    if task == "sv":
        return scores[q["ts-tk"] | q["ts-ntk"]], scores[q["nts-tk"] | q["nts-ntk"]]
    if task == "real":
        return scores[q["ts-tk"]], scores[q["realistic"]]
    negatives = q["ts-ntk"] | q["nts-ntk"] | (q["nts-tk"] if task == "to" else False)
    return scores[q["ts-tk"]], scores[negatives]


def _metrics(scores_tb: np.ndarray, scores_to: np.ndarray, quadrant: np.ndarray) -> dict[str, float]:
    out = {}
    for task, scores in (("tb", scores_tb), ("to", scores_to)):
        pos, neg = task_split(scores, quadrant, task)
        out[f"{task}_frr_far1"] = 100 * frr_at_far(pos, neg, 0.01)
        out[f"{task}_frr_far10"] = 100 * frr_at_far(pos, neg, 0.10)
        out[f"{task}_eer"] = 100 * equal_error_rate(pos, neg)
    pos, neg = task_split(scores_to, quadrant, "real")
    if len(neg):
        out["real_far_frr1"] = 100 * far_at_frr(pos, neg, 0.01)
        out["real_far_frr5"] = 100 * far_at_frr(pos, neg, 0.05)
    return out


def grid_alpha(clips: ClipSet, trials: Trials, task: str, objective: str) -> float:
    """SCM-GS: the alpha of :data:`ALPHA_GRID` minimising ``objective`` (``far1``, ``far10``,
    ``eer``) of ``task`` on (validation) trials."""
    def cost(alpha: float) -> float:
        pos, neg = task_split(trial_scores(clips, trials, "scm", alpha), trials.quadrant, task)
        if objective == "eer":
            return equal_error_rate(pos, neg)
        return frr_at_far(pos, neg, 0.01 if objective == "far1" else 0.10)

    return float(min(ALPHA_GRID, key=cost))


def evaluate_system(
    name: str,
    clips: ClipSet,
    trial_sets: Sequence[Trials],
    scorings: Sequence[str],
    validation: tuple[ClipSet, Trials] | None = None,
) -> list[dict]:
    """Rows of the table for one system: one per scoring, means over ``trial_sets``.

    Args:
        name: system name.
        clips: outputs over the test clips and read-speech windows.
        trial_sets: the random splits (:func:`build_trials`).
        scorings: among ``C-KWS`` (keyword score only), ``SCM-M`` (alpha 0.5), ``SCM-GS``
            (alpha per operating point from ``validation``), ``TRM``.
        validation: outputs + trials on validation speakers, for SCM-GS.

    Returns:
        ``[{"system", "scoring", "ckws_acc", "ckws_eer", "sv_eer", "tb_frr_far1", ..., "alpha"}]``.
    """
    keyword_rows = clips.labels >= 0
    acc = 100 * float(np.mean(clips.logits[keyword_rows].argmax(1) == clips.labels[keyword_rows]))
    sv_eers, ckws_eers = [], []
    for trials in trial_sets:
        pos, neg = task_split(trial_scores(clips, trials, "sv"), trials.quadrant, "sv")
        sv_eers.append(100 * equal_error_rate(pos, neg))
        scores = trial_scores(clips, trials, "kws")
        tk = (trials.quadrant == 0) | (trials.quadrant == 1)
        ntk = (trials.quadrant == 2) | (trials.quadrant == 3)
        ckws_eers.append(100 * equal_error_rate(scores[tk], scores[ntk]))
    common = {"system": name, "ckws_acc": acc, "ckws_eer": float(np.mean(ckws_eers)), "sv_eer": float(np.mean(sv_eers))}
    rows = []
    for scoring in scorings:
        per_split = []
        alphas = {}
        if scoring == "SCM-GS":
            if validation is None:
                raise ValueError("SCM-GS needs validation trials")
            alphas = {f"{task}_{obj}": grid_alpha(*validation, task, obj)
                      for task in ("tb", "to") for obj in ("far1", "far10", "eer")}
        for trials in trial_sets:
            if scoring == "C-KWS":
                s = trial_scores(clips, trials, "kws")
                per_split.append(_metrics(s, s, trials.quadrant))
            elif scoring == "SCM-M":
                s = trial_scores(clips, trials, "scm", 0.5)
                per_split.append(_metrics(s, s, trials.quadrant))
            elif scoring == "TRM":
                per_split.append(_metrics(trial_scores(clips, trials, "trm_tb"), trial_scores(clips, trials, "trm_to"),
                                          trials.quadrant))
            elif scoring == "SCM-GS":
                merged = {}
                for key, alpha in alphas.items():  # each operating point with its own alpha
                    s = trial_scores(clips, trials, "scm", alpha)
                    m = _metrics(s, s, trials.quadrant)
                    task, obj = key.split("_")
                    metric = {"far1": "frr_far1", "far10": "frr_far10", "eer": "eer"}[obj]
                    merged[f"{task}_{metric}"] = m[f"{task}_{metric}"]
                    if key == "to_far1":
                        merged.update({k: v for k, v in m.items() if k.startswith("real_")})
                per_split.append(merged)
            else:
                raise ValueError(f"unknown scoring {scoring!r}")
        keys = per_split[0].keys()
        row = {**common, "scoring": scoring, **{k: float(np.mean([m[k] for m in per_split])) for k in keys}}
        if alphas:
            row["alpha"] = alphas
        rows.append(row)
    return rows


COLUMNS = (
    ("system", "system", "{}"), ("scoring", "scoring", "{}"), ("ckws_acc", "C-KWS acc", "{:.2f}"),
    ("ckws_eer", "C-KWS EER", "{:.2f}"), ("tb_frr_far1", "TB FRR@FAR1", "{:.2f}"),
    ("tb_frr_far10", "TB FRR@FAR10", "{:.2f}"), ("tb_eer", "TB EER", "{:.2f}"),
    ("to_frr_far1", "TO FRR@FAR1", "{:.2f}"), ("to_frr_far10", "TO FRR@FAR10", "{:.2f}"),
    ("to_eer", "TO EER", "{:.2f}"), ("sv_eer", "SV EER", "{:.2f}"),
    ("real_far_frr1", "real FAR@FRR1", "{:.2f}"), ("real_far_frr5", "real FAR@FRR5", "{:.2f}"),
)


def format_table(rows: Sequence[dict]) -> str:
    """A markdown table of :func:`evaluate_system` rows (percent; ``-`` where not measured)."""
    head = "| " + " | ".join(title for _, title, _ in COLUMNS) + " |"
    lines = [head, "|" + "---|" * len(COLUMNS)]
    for row in rows:
        cells = [fmt.format(row[key]) if key in row and row[key] is not None else "-" for key, _, fmt in COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def save_det_plot(path: str | Path, title: str, curves: dict[str, tuple[np.ndarray, np.ndarray]]) -> Path:
    """A DET plot (FRR against FAR, percent, log axes) of ``{label: (positives, negatives)}``, atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from speechkit.fileio import atomic_path

    fig, ax = plt.subplots(figsize=(5, 5))
    for label, (pos, neg) in curves.items():
        far, frr, _ = error_curve(pos, neg)
        ax.plot(np.clip(100 * far, 0.01, 100), np.clip(100 * frr, 0.01, 100), label=label,
                linestyle="--" if "TO" in label else "-")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(0.05, 100)
    ax.set_ylim(0.05, 100)
    ax.set_xlabel("false alarm rate (%)")
    ax.set_ylabel("false reject rate (%)")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return path
