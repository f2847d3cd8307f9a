"""Personalized keyword spotting at run time (numpy + onnxruntime, no torch): the PK-MTL artifact,
user profiles (enrolment), TB/TO scoring and the personalized stream detector.

**Artifact** (``speechkit.task`` = ``personal-kws``, :data:`PERSONAL_SPEC`):

=======================  =====================================================================
input ``audio``          float32 ``[batch, clip_samples]``, mono, in [-1, 1], at ``sample_rate``
output ``logits``        float32 ``[batch, num_classes]`` keyword cosine-classifier logits
output ``keyword_embedding``  float32 ``[batch, D]`` ``z^k``
output ``speaker_embedding``  float32 ``[batch, D]`` ``z^s`` (naive MTL: the shared embedding;
                         vanilla: ``z^k``)
metadata                 the clip-classifier keys plus ``embedding_dim``, ``model_id`` (hash of
                         the weights: a profile names the model it was made with) and
                         ``scoring`` (JSON: ``system``, ``keyword_prototypes`` (C x D),
                         ``alpha``, ``sv_threshold``, and ``trm`` = {``tb``, ``to``} weights
                         when the model has Task Representation Modules)
=======================  =====================================================================

**Scores** of a test clip against an enrolment (:func:`personal_scores`): C-KWS
``psi^k = cos(z^k, p^k_target)``; SV ``psi^s = cos(z^s, e)`` with ``e`` the enrolment speaker
embedding; SCM ``alpha psi^k + (1 - alpha) psi^s``; TRM ``cos(TRM(z^k, z^s), TRM(p^k, e))``.
Error rates (:func:`equal_error_rate`, :func:`frr_at_far`, :func:`far_at_frr`) are shared
with ``speechkit eval-personal``.

**Enrolment** (:func:`enroll`): in each recording the window where the model's keyword posterior
peaks is taken as the keyword; the profile holds the mean of those windows' unit speaker
embeddings (re-normalized), the keyword and the ``model_id``.

**Detector** (:class:`PersonalKeywordDetector`): the ordinary keyword detector on the profile's
keyword; at each detection the speaker score (cosine between the mean speaker embedding of the
evaluations that made the detection and the profile) is attached. TB mode reports every
detection; TO mode suppresses those below the speaker threshold (``"suppressed": true``, shown
only with ``verbose``).

Shapes: B batch, C classes, D embedding dim, N clips / evaluations.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from speechkit.errors import AudioError, ModelFileError, SpeechkitError
from speechkit.runtime.artifact import ArtifactSpec, open_artifact
from speechkit.runtime.classifier import CLIP_METADATA, ClipClassifier, softmax
from speechkit.runtime.kws import KeywordDetector, StreamScorer, keyword_labels

PERSONAL_TASK = "personal-kws"
PERSONAL_OUTPUTS = ("logits", "keyword_embedding", "speaker_embedding")
PERSONAL_SPEC = ArtifactSpec(
    "personal-kws", (PERSONAL_TASK,), ("audio",), PERSONAL_OUTPUTS,
    CLIP_METADATA + ("embedding_dim", "model_id", "scoring"),
)
PROFILE_FORMAT = "speechkit-personal-profile"
#: Default weight of the keyword score in SCM (SCM-M, the paper's manual alpha).
DEFAULT_ALPHA = 0.5
#: Speaker-score threshold when the artifact carries none.
DEFAULT_SV_THRESHOLD = 0.5
#: An enrolment recording whose loudest 30 ms frame is below this (dBFS) has no speech.
ENROL_SPEECH_DBFS = -45.0
ENROL_HOP_MS = 100.0


# -- numpy scoring -----------------------------------------------------------------------------


def unit(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (zero rows stay zero)."""
    x = np.asarray(x, np.float64)
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.maximum(norm, 1e-12)


def trm_apply(weights: dict, z_k: np.ndarray, z_s: np.ndarray) -> np.ndarray:
    """The Task Representation Module (:class:`speechkit.models.personal.TaskRepresentationModule`) in numpy.

    Args:
        weights: ``{"w1": (2, 2D), "b1": (2,), "w2": (2D, 2), "b2": (2D,)}`` nested lists/arrays.
        z_k, z_s: ``(N, D)`` keyword and speaker embeddings.

    Returns:
        ``(N, 2D)`` task embeddings.

    Example:
        >>> w = {"w1": np.zeros((2, 4)), "b1": np.zeros(2), "w2": np.zeros((4, 2)), "b2": np.zeros(4)}
        >>> trm_apply(w, np.array([[3.0, 4.0]]), np.array([[1.0, 0.0]])).round(2).tolist()
        [[0.3, 0.4, 0.5, 0.0]]
    """
    x = np.concatenate([unit(z_k), unit(z_s)], axis=-1)
    w1, b1, w2, b2 = (np.asarray(weights[k], np.float64) for k in ("w1", "b1", "w2", "b2"))
    hidden = np.maximum(x @ w1.T + b1, 0.0)
    return x / (1.0 + np.exp(-(hidden @ w2.T + b2)))


def personal_scores(
    z_k: np.ndarray, z_s: np.ndarray, keyword_prototype: np.ndarray, enrolment: np.ndarray,
    alpha: float = DEFAULT_ALPHA, trm: dict | None = None,
) -> dict[str, np.ndarray]:
    """Scores of N test clips against one target (keyword prototype + enrolment embedding) or N targets.

    Args:
        z_k, z_s: ``(N, D)`` test embeddings.
        keyword_prototype: ``(D,)`` or ``(N, D)`` target keyword prototype(s).
        enrolment: ``(D,)`` or ``(N, D)`` enrolment speaker embedding(s).
        alpha: SCM weight of the keyword score.
        trm: ``{"tb": weights, "to": weights}`` (see :func:`trm_apply`) or ``None``.

    Returns:
        ``{"kws", "sv", "scm"}`` (and ``"trm_tb"``, ``"trm_to"`` with ``trm``), each ``(N,)``.

    Example:
        >>> z = np.array([[1.0, 0.0], [0.0, 1.0]])
        >>> s = personal_scores(z, z, np.array([1.0, 0.0]), np.array([0.0, 1.0]))
        >>> s["kws"].tolist(), s["sv"].tolist(), s["scm"].tolist()
        ([1.0, 0.0], [0.0, 1.0], [0.5, 0.5])
    """
    z_k, z_s = unit(z_k), unit(z_s)
    p_k = np.broadcast_to(unit(keyword_prototype), z_k.shape)
    e = np.broadcast_to(unit(enrolment), z_s.shape)
    psi_k = np.einsum("nd,nd->n", z_k, p_k)
    psi_s = np.einsum("nd,nd->n", z_s, e)
    out = {"kws": psi_k, "sv": psi_s, "scm": alpha * psi_k + (1.0 - alpha) * psi_s}
    for task, weights in (trm or {}).items():
        query, anchor = unit(trm_apply(weights, z_k, z_s)), unit(trm_apply(weights, p_k, e))
        out[f"trm_{task}"] = np.einsum("nd,nd->n", query, anchor)
    return out


def equal_error_rate(positives: np.ndarray, negatives: np.ndarray) -> float:
    """EER (a fraction) of scores where higher means "accept".

    The point where the miss rate (FRR) equals the false-alarm rate (FAR), interpolated between
    the two thresholds around the crossing.

    Example:
        >>> round(equal_error_rate(np.array([0.9, 0.8, 0.3]), np.array([0.1, 0.2, 0.7])), 4)
        0.3333
        >>> equal_error_rate(np.array([0.9]), np.array([0.1]))
        0.0
    """
    far, frr, _ = error_curve(positives, negatives)
    i = int(np.argmin(np.abs(far - frr)))
    if far[i] == frr[i] or i == 0:
        return float((far[i] + frr[i]) / 2)
    # far falls and frr rises along the sweep: interpolate the crossing with the previous point
    j = i - 1 if (far[i] - frr[i]) * (far[i - 1] - frr[i - 1]) < 0 else i
    if j == i:
        return float((far[i] + frr[i]) / 2)
    d_i, d_j = far[i] - frr[i], far[j] - frr[j]
    t = d_j / (d_j - d_i)
    return float(far[j] + t * (far[i] - far[j]))


def error_curve(positives: np.ndarray, negatives: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """FAR and FRR (fractions) at every distinct score threshold, threshold rising (accept >= t).

    Returns:
        ``(far, frr, thresholds)``, each ``(K + 1,)``: the first threshold accepts everything,
        the last (``inf``) nothing.

    Raises:
        SpeechkitError: no positive or no negative scores.
    """
    pos, neg = np.sort(np.asarray(positives, np.float64)), np.sort(np.asarray(negatives, np.float64))
    if not len(pos) or not len(neg):
        raise SpeechkitError(f"error rates need positive and negative trials, got {len(pos)} and {len(neg)}")
    thresholds = np.concatenate([np.unique(np.concatenate([pos, neg])), [np.inf]])
    frr = np.searchsorted(pos, thresholds, side="left") / len(pos)  # positives below t are missed
    far = 1.0 - np.searchsorted(neg, thresholds, side="left") / len(neg)  # negatives >= t accepted
    return far, frr, thresholds


def frr_at_far(positives: np.ndarray, negatives: np.ndarray, target_far: float) -> float:
    """Smallest FRR over thresholds whose FAR is at most ``target_far`` (fractions).

    Example:
        >>> frr_at_far(np.array([0.9, 0.8, 0.3, 0.2]), np.array([0.1, 0.25, 0.5, 0.85]), 0.25)
        0.5
    """
    far, frr, _ = error_curve(positives, negatives)
    return float(frr[far <= target_far + 1e-12].min())


def far_at_frr(positives: np.ndarray, negatives: np.ndarray, target_frr: float) -> float:
    """FAR at the highest threshold whose FRR on ``positives`` is at most ``target_frr``.

    The threshold is set from the positives alone (as the paper's realistic test: from the
    ts-tk trials), then FAR is measured on ``negatives``.

    Example:
        >>> far_at_frr(np.array([0.9, 0.8, 0.7, 0.6]), np.array([0.1, 0.65, 0.75]), 0.25)
        0.3333333333333333
    """
    pos = np.sort(np.asarray(positives, np.float64))
    k = int(np.floor(target_frr * len(pos) + 1e-9))  # at most k positives may fall below t
    threshold = pos[min(k, len(pos) - 1)]
    return float(np.mean(np.asarray(negatives) >= threshold))


# -- the artifact ------------------------------------------------------------------------------


class PersonalKwsModel(ClipClassifier):
    """A ``personal-kws`` artifact: keyword logits and both embeddings per clip.

    Also a :class:`~speechkit.runtime.classifier.ClipClassifier` (``logits``, ``probabilities``),
    so the ordinary keyword detector runs it.

    Attributes:
        model_id: hash of the weights (profiles are tied to it).
        embedding_dim: D.
        scoring: the ``scoring`` metadata (system, keyword_prototypes, alpha, sv_threshold, trm).
        keyword_prototypes: ``(C, D)`` unit prototypes of the keyword classes.

    Raises:
        ModelFileError: not a personal-kws artifact (e.g. a plain ``kws`` model), malformed metadata.
    """

    def __init__(self, path: str | os.PathLike, num_threads: int = 1) -> None:
        artifact = open_artifact(path, [PERSONAL_SPEC], num_threads)
        self.artifact = artifact
        self.path = artifact.path
        self.session = artifact.session
        self.metadata = artifact.metadata
        self.task = artifact.task
        self.labels = artifact.json("labels", list, item=str)
        self.sample_rate = artifact.positive_int("sample_rate")
        self.clip_samples = artifact.positive_int("clip_samples")
        self.embedding_dim = artifact.positive_int("embedding_dim")
        self.model_id = self.metadata["model_id"]
        self.scoring = artifact.json("scoring", dict)
        protos = np.asarray(self.scoring.get("keyword_prototypes", []), np.float64)
        if protos.shape != (len(self.labels), self.embedding_dim):
            raise ModelFileError(f"{self.path}: metadata 'scoring' has keyword prototypes of shape {protos.shape}, "
                                 f"expected ({len(self.labels)}, {self.embedding_dim})")
        self.keyword_prototypes = unit(protos)
        self._check_shapes()

    @property
    def alpha(self) -> float:
        return float(self.scoring.get("alpha", DEFAULT_ALPHA))

    @property
    def sv_threshold(self) -> float:
        return float(self.scoring.get("sv_threshold", DEFAULT_SV_THRESHOLD))

    @property
    def trm(self) -> dict | None:
        return self.scoring.get("trm") or None

    def run(self, audio: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """audio ``(B, clip_samples)`` -> ``(logits (B, C), z^k (B, D), z^s (B, D))``."""
        return tuple(self.session.run(list(PERSONAL_OUTPUTS), {"audio": np.ascontiguousarray(audio, np.float32)}))

    def logits(self, audio: np.ndarray) -> np.ndarray:
        return self.run(audio)[0]


def model_fingerprint(arrays: Sequence[np.ndarray]) -> str:
    """``model_id``: the first 16 hex digits of the SHA-256 of the weights' bytes (in order)."""
    digest = hashlib.sha256()
    for a in arrays:
        digest.update(np.ascontiguousarray(a, np.float32).tobytes())
    return digest.hexdigest()[:16]


# -- profiles and enrolment --------------------------------------------------------------------


@dataclass
class Profile:
    """A user's enrolment.

    Attributes:
        keyword: the enrolled keyword (a label of the model).
        speaker_embedding: ``(D,)`` unit enrolment embedding ``e``.
        model_id: the artifact it was made with.
        clips: per recording: ``{"file", "keyword", "score", "time"}`` (the chosen window).
    """

    keyword: str
    speaker_embedding: np.ndarray
    model_id: str
    clips: list[dict] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"format": PROFILE_FORMAT, "version": 1, "model_id": self.model_id, "keyword": self.keyword,
                "speaker_embedding": [round(float(x), 7) for x in self.speaker_embedding], "clips": self.clips}

    def save(self, path: str | os.PathLike) -> Path:
        """Write the profile as JSON (atomically)."""
        from speechkit.fileio import write_json_atomic

        path = Path(path)
        write_json_atomic(path, self.to_json())
        return path


def load_profile(path: str | os.PathLike, model: PersonalKwsModel) -> Profile:
    """Read a profile made with ``model``.

    Raises:
        ModelFileError: missing, corrupt or malformed file; a profile of another model; a
            keyword the model does not know.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        reason = "no such file" if not path.exists() else f"not a JSON profile ({str(exc).splitlines()[0][:80]})"
        raise ModelFileError(f"{path}: {reason}; make one with `speechkit enroll`") from None
    if not isinstance(data, dict) or data.get("format") != PROFILE_FORMAT:
        raise ModelFileError(f"{path}: not a speechkit profile (made by `speechkit enroll`)")
    try:
        embedding = np.asarray(data["speaker_embedding"], np.float64)
        keyword, model_id = str(data["keyword"]), str(data["model_id"])
    except (KeyError, TypeError, ValueError):
        raise ModelFileError(f"{path}: malformed profile (needs model_id, keyword, speaker_embedding)") from None
    if model_id != model.model_id:
        raise ModelFileError(f"{path}: profile made with another model (model_id {model_id}, {model.path} is "
                             f"{model.model_id}); enroll again with this model")
    if embedding.shape != (model.embedding_dim,) or not np.all(np.isfinite(embedding)):
        raise ModelFileError(f"{path}: speaker embedding of shape {embedding.shape}, expected ({model.embedding_dim},)")
    if keyword not in model.labels:
        raise ModelFileError(f"{path}: keyword {keyword!r} is not a label of {model.path}")
    return Profile(keyword, unit(embedding), model_id, list(data.get("clips") or []))


def speech_present(audio: np.ndarray, sample_rate: int, threshold_db: float = ENROL_SPEECH_DBFS) -> bool:
    """Whether some 30 ms frame of ``audio`` is louder than ``threshold_db`` dBFS (RMS)."""
    frame = max(1, sample_rate * 30 // 1000)
    n = len(audio) // frame
    if n == 0:
        return False
    frames = np.asarray(audio[: n * frame], np.float64).reshape(n, frame)
    power = (frames**2).mean(axis=1)
    return bool(10 * np.log10(power.max() + 1e-20) >= threshold_db)


def keyword_window(model: PersonalKwsModel, audio: np.ndarray, keywords: Sequence[str]) -> dict:
    """The window of a recording where a keyword's posterior peaks.

    Args:
        audio: ``(S,)`` mono at the model's rate.
        keywords: candidate labels.

    Returns:
        ``{"keyword", "score", "time" (window start, s), "speaker_embedding" (D,)}``.
    """
    clip, hop = model.clip_samples, int(model.sample_rate * ENROL_HOP_MS / 1000)
    if len(audio) <= clip:
        windows, starts = np.pad(audio, (0, clip - len(audio)))[None], [0]
    else:
        starts = list(range(0, len(audio) - clip + 1, hop))
        windows = np.stack([audio[s : s + clip] for s in starts])
    columns = [model.labels.index(k) for k in keywords]
    best = None
    for i in range(0, len(windows), 32):
        logits, _, z_s = model.run(windows[i : i + 32])
        probs = softmax(logits)[:, columns]
        row, col = np.unravel_index(int(np.argmax(probs)), probs.shape)
        if best is None or probs[row, col] > best["score"]:
            best = {"keyword": keywords[col], "score": float(probs[row, col]),
                    "time": round(starts[i + row] / model.sample_rate, 3), "speaker_embedding": z_s[row]}
    return best


def enroll(model: PersonalKwsModel, recordings: Sequence[tuple[str, np.ndarray]], keyword: str | None = None) -> Profile:
    """Make a profile from a user's recordings of the keyword.

    Args:
        model: the personal-kws artifact.
        recordings: ``(name, audio (S,) mono float32 at the model's rate)`` pairs.
        keyword: the keyword to enrol; ``None``: the one the model hears most often.

    Raises:
        SpeechkitError: no recordings, a recording with no speech, an unknown keyword.
    """
    if not recordings:
        raise SpeechkitError("enrolment needs at least one recording of the keyword")
    candidates = keyword_labels(model.labels)
    if keyword is not None and keyword not in model.labels:
        raise SpeechkitError(f"keyword {keyword!r} is not a label of {model.path} ({candidates})")
    for name, audio in recordings:
        if not speech_present(audio, model.sample_rate):
            raise SpeechkitError(f"{name}: no speech found (loudest 30 ms below {ENROL_SPEECH_DBFS:g} dBFS); "
                                 "record the keyword again, closer to the microphone")
    found = [keyword_window(model, audio, [keyword] if keyword else candidates) for _, audio in recordings]
    if keyword is None:
        names = [f["keyword"] for f in found]
        keyword = max(set(names), key=lambda k: (names.count(k), sum(f["score"] for f in found if f["keyword"] == k)))
        found = [keyword_window(model, audio, [keyword]) for _, audio in recordings]
    embedding = unit(np.mean(unit(np.stack([f["speaker_embedding"] for f in found])), axis=0))
    clips = [{"file": name, "keyword": f["keyword"], "score": round(f["score"], 4), "time": f["time"]}
             for (name, _), f in zip(recordings, found)]
    return Profile(keyword, embedding, model.model_id, clips)


def enroll_files(model: PersonalKwsModel, paths: Sequence[str | os.PathLike], keyword: str | None = None) -> Profile:
    """:func:`enroll` on audio files (mixed to mono, resampled to the model's rate).

    Raises:
        AudioError: missing, empty or corrupt file; SpeechkitError: see :func:`enroll`.
    """
    from speechkit.runtime.audio import read_audio

    recordings = []
    for path in paths:
        audio, _ = read_audio(path, model.sample_rate)
        if audio.size == 0:
            raise AudioError(f"{path}: no audio samples")
        recordings.append((str(path), audio))
    return enroll(model, recordings, keyword)


# -- the personalized stream detector ----------------------------------------------------------


class PersonalStreamScorer(StreamScorer):
    """:class:`~speechkit.runtime.kws.StreamScorer` that also keeps each evaluation's unit speaker embedding."""

    def reset(self) -> None:
        super().reset()
        self.embeddings: dict[int, np.ndarray] = {}  # end sample -> (D,) unit z^s

    def _posteriors(self, windows: np.ndarray, end_samples: np.ndarray, loud: np.ndarray) -> np.ndarray:
        probs = np.zeros((len(windows), len(self.model.labels)), np.float32)
        active = self._active(end_samples, loud)
        for start in range(0, len(active), self.max_batch):
            rows = active[start : start + self.max_batch]
            logits, _, z_s = self.model.run(windows[rows])
            probs[rows] = softmax(logits)
            for row, emb in zip(rows, unit(z_s)):
                self.embeddings[int(end_samples[row])] = emb
        # keep this call's evaluations (its detections are found after it) and a few clips before
        horizon = int(end_samples[0]) - 4 * self.clip if len(end_samples) else self._consumed
        self.embeddings = {k: v for k, v in self.embeddings.items() if k >= horizon}
        return probs


class PersonalKeywordDetector(KeywordDetector):
    """The keyword detector on a profile's keyword, with a speaker check per detection.

    Args:
        model: ``.onnx`` path of a personal-kws artifact or a loaded :class:`PersonalKwsModel`.
        profile: profile path (``speechkit enroll``) or a loaded :class:`Profile`.
        mode: ``"tb"`` (report every detection, with its speaker score) or ``"to"`` (suppress a
            detection whose speaker score is below ``sv_threshold``).
        sv_threshold: speaker-score threshold; ``None``: the artifact's (``scoring.sv_threshold``).
        verbose: also return suppressed detections (marked ``"suppressed": true``).
        **kwargs: :class:`~speechkit.runtime.kws.KeywordDetector` options (thresholds, hop_ms, ...).

    Detections: ``{"time", "keyword", "score", "speaker_score", "mode"}`` (+ ``"suppressed": true``).

    Raises:
        ModelFileError: bad model or profile (another model's, corrupt); SpeechkitError: bad mode.
    """

    def __init__(self, model: str | os.PathLike | PersonalKwsModel, profile: str | os.PathLike | Profile,
                 mode: str = "to", sv_threshold: float | None = None, verbose: bool = False,
                 num_threads: int = 1, **kwargs) -> None:
        if mode not in ("tb", "to"):
            raise SpeechkitError(f"--mode must be 'tb' or 'to', got {mode!r}")
        loaded = model if isinstance(model, PersonalKwsModel) else PersonalKwsModel(model, num_threads)
        self.profile = profile if isinstance(profile, Profile) else load_profile(profile, loaded)
        kwargs.setdefault("thresholds_file", False)
        super().__init__(loaded, keywords=[self.profile.keyword], **kwargs)
        self.mode, self.verbose = mode, verbose
        self.sv_threshold = loaded.sv_threshold if sv_threshold is None else float(sv_threshold)
        self.scorer = PersonalStreamScorer(loaded, self.keywords, self.settings.hop_ms, self.settings.smoothing,
                                           self.settings.vad, silence_db=kwargs.get("silence_db", -60.0))

    def _as_detections(self, end_times: np.ndarray, scores: np.ndarray, fires: list[tuple[int, int]]) -> list[dict]:
        detections = super()._as_detections(end_times, scores, fires)
        out = []
        for det, (n, _) in zip(detections, fires):
            det["speaker_score"] = round(self.speaker_score(float(end_times[n])), 4)
            det["mode"] = self.mode
            if self.mode == "to" and det["speaker_score"] < self.sv_threshold:
                det["suppressed"] = True
                if not self.verbose:
                    continue
            out.append(det)
        return out

    def speaker_score(self, end_time_s: float) -> float:
        """Cosine between the profile and the mean unit speaker embedding of the evaluations that
        made a detection ending at ``end_time_s`` (the last ``smoothing`` ones)."""
        end = int(round(end_time_s * self.scorer.rate))
        hop = self.scorer.hop
        keys = [end - k * hop for k in range(self.settings.smoothing)]
        embs = [self.scorer.embeddings[k] for k in keys if k in self.scorer.embeddings]
        if not embs:
            return -1.0
        return float(unit(np.mean(embs, axis=0)) @ self.profile.speaker_embedding)
