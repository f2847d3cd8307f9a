"""Few-shot keyword spotting at run time: embeddings, episodes, enrolment, detection (no torch).

**The artifact** (``speechkit export`` of a ``fewshot-kws`` checkpoint):

==================  ==========================================================================
input ``audio``     float32 ``[batch, clip_samples]``, mono, in [-1, 1], at ``sample_rate``
output ``embedding`` float32 ``[batch, embedding_dim]``
metadata            ``speechkit.task`` = ``fewshot-kws``, ``sample_rate``, ``clip_samples``,
                    ``embedding_dim``, ``distance`` (``squared-euclidean``), ``open_set`` (JSON:
                    the open-set rule, below), ``model_id`` (hash of the weights: prototype
                    files name it), ``frontend``, ``model``, ``speechkit_version``
==================  ==========================================================================

The open-set rule travels in the metadata rather than as a second graph: it is a few small
matrices (the D-ProtoNets dummy generator ``c_d = W_out maxpool_n(ReLU(W_g1 c_n + b_g1)) +
b_out`` and gamma), run here in numpy. ``{"rule": "dummy", ...}`` scores an (N+1)-way softmax
with the dummy class at temperature ``gamma * tau``; ``{"rule": "max-similarity"}`` (a plain
ProtoNet) scores unknown by the distance to the nearest prototype.

**Enrolment**: :func:`enroll` finds the 1 s clip with the word in each recording (webrtcvad
speech frames, then the loudest clip-long window, centred), embeds the clips and writes a
prototype file (JSON: name, prototype, the model's ``model_id``). :class:`EnrolledWordsModel`
turns an embedding model plus prototype files into a "classifier" over the enrolled words plus
``_unknown_`` that :class:`speechkit.runtime.kws.KeywordDetector` streams like any KWS model;
thresholds come from the prototype files (calibrated on keyword-free audio at a false-alarm
budget, :func:`calibrate_enrollment`, with the classifier's own search).

Shapes: B batch, S samples, D embedding size, N enrolled words / ways, M queries.
"""

from __future__ import annotations

import base64
import json
import math
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from speechkit.errors import AudioError, ModelFileError, SpeechkitError
from speechkit.fileio import write_json_atomic
from speechkit.runtime.artifact import ArtifactSpec, open_artifact
from speechkit.runtime.classifier import ClipClassifier, softmax

#: ``speechkit.task`` of few-shot embedding artifacts.
FEWSHOT_TASK = "fewshot-kws"
FEWSHOT_METADATA = ("sample_rate", "clip_samples", "embedding_dim", "distance", "open_set", "model_id",
                    "frontend", "model", "speechkit_version")
FEWSHOT_SPEC = ArtifactSpec("fewshot-embedding", (FEWSHOT_TASK,), ("audio",), ("embedding",), FEWSHOT_METADATA)
PROTOTYPE_FORMAT = "speechkit-fewshot-prototype"
UNKNOWN_LABEL = "_unknown_"
#: Enrolment recordings: at least this much audio (s) and this much detected speech (s).
MIN_RECORDING_S = 0.3
MIN_SPEECH_S = 0.09
#: A recording whose loudest 30 ms frame is below this (dBFS) is silent.
SILENT_DBFS = -50.0


# -- the open-set rule ------------------------------------------------------------------------
def _encode(array) -> dict:
    a = np.asarray(array, dtype="<f4")
    return {"shape": list(a.shape), "f32": base64.b64encode(a.tobytes()).decode("ascii")}


def _decode(obj: dict) -> np.ndarray:
    return np.frombuffer(base64.b64decode(obj["f32"]), dtype="<f4").reshape(obj["shape"]).astype(np.float32)


class OpenSetRule:
    """Episode logits and unknown scores from embeddings, in numpy (the torch head's twin).

    Args:
        config: ``PrototypeHead.open_set_config()`` (lists) or the artifact's decoded ``open_set``.

    Example:
        >>> rule = OpenSetRule({"rule": "max-similarity", "tau": 1.0})
        >>> rule.logits(np.zeros((1, 2), np.float32), np.array([[0, 0], [3, 4]], np.float32))
        array([[ -0., -25.]], dtype=float32)
    """

    def __init__(self, config: dict) -> None:
        self.kind = config.get("rule")
        if self.kind not in ("dummy", "max-similarity"):
            raise ModelFileError(f"unknown open-set rule {self.kind!r}; expected 'dummy' or 'max-similarity'")
        self.tau = float(config.get("tau", 1.0))
        self.gamma = float(config.get("gamma", 1.0))
        if self.kind == "dummy":
            get = (lambda k: _decode(config[k])) if isinstance(config["g1_weight"], dict) else (
                lambda k: np.asarray(config[k], np.float32))
            self.g1_w, self.g1_b, self.out_w, self.out_b = (get(k) for k in ("g1_weight", "g1_bias", "out_weight", "out_bias"))

    @property
    def has_dummy(self) -> bool:
        return self.kind == "dummy"

    def to_metadata(self) -> str:
        """The ``open_set`` metadata value (JSON, matrices as base64 float32)."""
        out = {"rule": self.kind, "tau": self.tau}
        if self.has_dummy:
            out["gamma"] = self.gamma
            out.update({k: _encode(v) for k, v in (("g1_weight", self.g1_w), ("g1_bias", self.g1_b),
                                                   ("out_weight", self.out_w), ("out_bias", self.out_b))})
        return json.dumps(out)

    def dummy(self, protos: np.ndarray) -> np.ndarray:
        """(N, D) prototypes -> (D,) dummy prototype (order of the prototypes does not matter)."""
        hidden = np.maximum(protos @ self.g1_w.T + self.g1_b, 0.0).max(axis=0)
        return (hidden @ self.out_w.T + self.out_b).astype(np.float32)

    def logits(self, query: np.ndarray, protos: np.ndarray) -> np.ndarray:
        """(M, D), (N, D) -> (M, N) logits, or (M, N + 1) with the dummy class last."""
        known = -sq_distances(query, protos) / self.tau
        if not self.has_dummy:
            return known
        dummy = -sq_distances(query, self.dummy(protos)[None]) / (self.gamma * self.tau)
        return np.concatenate([known, dummy], axis=1).astype(np.float32)

    def unknown_score(self, logits: np.ndarray, ways: int) -> np.ndarray:
        """(M, N[+1]) -> (M,): the dummy's probability, or minus the best known logit."""
        if self.has_dummy:
            return softmax(logits)[:, ways]
        return -logits[:, :ways].max(axis=1)


def sq_distances(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """(M, D), (N, D) -> (M, N) squared Euclidean distances, float32."""
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    return ((x[:, None, :] - y[None, :, :]) ** 2).sum(-1).astype(np.float32)


# -- episode metrics ----------------------------------------------------------------------------
def auroc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve of ``scores`` for ``positive`` (bool) items; ties count half.

    Example:
        >>> auroc(np.array([0.1, 0.4, 0.35, 0.8]), np.array([False, False, True, True]))
        0.75
    """
    scores = np.asarray(scores, np.float64)
    positive = np.asarray(positive, bool)
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if not n_pos or not n_neg:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores))
    sorted_scores = scores[order]
    i = 0
    while i < len(scores):  # average ranks over ties
        j = i
        while j + 1 < len(scores) and sorted_scores[j + 1] == sorted_scores[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def mean_ci95(values: Sequence[float]) -> tuple[float, float]:
    """Mean and 95 % confidence half-width (``1.96 * std / sqrt(n)``) of per-episode values."""
    a = np.asarray([v for v in values if not math.isnan(v)], np.float64)
    if not len(a):
        return float("nan"), float("nan")
    half = 1.96 * a.std(ddof=1) / math.sqrt(len(a)) if len(a) > 1 else float("nan")
    return float(a.mean()), float(half)


def episode_metrics(embeddings: np.ndarray, episodes, rule: OpenSetRule, shots: int | None = None) -> dict:
    """Closed-set accuracy and open-set AUROC over episodes, from precomputed embeddings.

    Args:
        embeddings: (items, D) embedding of every item the episodes index.
        episodes: objects with ``support`` (N, K), ``query`` (N, Q), ``unknown`` (U,) index
            arrays (:class:`speechkit.data.episodes.Episode`).
        rule: the open-set rule.
        shots: use only the first ``shots`` supports of each class (one sampler serves 1- and
            5-shot); ``None``: all.

    Returns:
        ``{"episodes", "acc", "acc_ci95", "auroc", "auroc_ci95"}`` in percent.
    """
    accs, aurocs = [], []
    for ep in episodes:
        support = ep.support[:, :shots] if shots else ep.support
        ways = support.shape[0]
        protos = embeddings[support].mean(axis=1)
        known = ep.query.reshape(-1)
        targets = np.repeat(np.arange(ways), ep.query.shape[1])
        queries = np.concatenate([known, ep.unknown])
        logits = rule.logits(embeddings[queries], protos)
        accs.append(100.0 * float((logits[: len(known), :ways].argmax(1) == targets).mean()))
        if len(ep.unknown):
            is_unknown = np.arange(len(queries)) >= len(known)
            aurocs.append(100.0 * auroc(rule.unknown_score(logits, ways), is_unknown))
    acc, acc_ci = mean_ci95(accs)
    au, au_ci = mean_ci95(aurocs)
    return {"episodes": len(accs), "acc": acc, "acc_ci95": acc_ci, "auroc": au, "auroc_ci95": au_ci}


# -- the embedding artifact ---------------------------------------------------------------------
class EmbeddingModel:
    """A ``fewshot-kws`` embedding artifact.

    Args:
        path: ``.onnx`` from ``speechkit export`` of a few-shot checkpoint.
        num_threads: onnxruntime threads.

    Raises:
        ModelFileError: not such an artifact (a KWS classifier gives ``"is a 'kws' model,
            expected 'fewshot-kws'"``), or malformed metadata.
    """

    def __init__(self, path: str | os.PathLike, num_threads: int = 1) -> None:
        artifact = open_artifact(path, [FEWSHOT_SPEC], num_threads)
        self.artifact = artifact
        self.path = artifact.path
        self.session = artifact.session
        self.metadata = artifact.metadata
        self.sample_rate = artifact.positive_int("sample_rate")
        self.clip_samples = artifact.positive_int("clip_samples")
        self.embedding_dim = artifact.positive_int("embedding_dim")
        self.model_id = artifact.metadata["model_id"]
        if artifact.metadata["distance"] != "squared-euclidean":
            raise ModelFileError(f"{self.path}: distance {artifact.metadata['distance']!r}, expected 'squared-euclidean'")
        self.rule = OpenSetRule(artifact.json("open_set", dict))

    def embed(self, audio: np.ndarray, max_batch: int = 64) -> np.ndarray:
        """(B, clip_samples) float32 in [-1, 1] -> (B, D) embeddings."""
        audio = np.ascontiguousarray(audio, dtype=np.float32)
        out = [self.session.run(["embedding"], {"audio": audio[i : i + max_batch]})[0]
               for i in range(0, len(audio), max_batch)]
        return np.concatenate(out) if out else np.zeros((0, self.embedding_dim), np.float32)


# -- enrolment ----------------------------------------------------------------------------------
def find_keyword_clip(audio: np.ndarray, sample_rate: int, clip_samples: int, where: str = "recording") -> np.ndarray:
    """The ``clip_samples`` window holding the spoken word, found by VAD and energy.

    Speech frames (webrtcvad, aggressiveness 2, 30 ms) mark where the word is; among the
    clip-long windows with the most speech energy the middle one is taken, so a word shorter than
    the clip sits in its centre. A recording shorter than the clip is zero-padded around it.

    Raises:
        AudioError: too short, silent, or no speech found (one line naming ``where``).
    """
    audio = np.asarray(audio, np.float32).reshape(-1)
    if not np.all(np.isfinite(audio)):
        raise AudioError(f"{where}: audio contains NaN or infinite samples")
    if len(audio) < MIN_RECORDING_S * sample_rate:
        raise AudioError(f"{where}: {len(audio) / sample_rate:.2f} s is too short; record the word with at least "
                         f"{MIN_RECORDING_S} s of audio")
    frame = sample_rate * 30 // 1000
    n = len(audio) // frame
    frames = audio[: n * frame].reshape(n, frame).astype(np.float64)
    power = (frames**2).mean(axis=1)
    if n == 0 or 10 * math.log10(power.max() + 1e-20) < SILENT_DBFS:
        raise AudioError(f"{where}: silent (loudest 30 ms below {SILENT_DBFS:g} dBFS); record the word again, closer to the microphone")
    speech = _vad_frames(audio[: n * frame], sample_rate, frame) if sample_rate in (8000, 16000, 32000, 48000) else None
    if speech is None:
        speech = power > power.max() * 1e-3
    loud = speech & (power > power.max() * 1e-3)  # VAD speech frames that carry energy
    if loud.sum() * frame < MIN_SPEECH_S * sample_rate:
        raise AudioError(f"{where}: no speech found; say the word clearly (silence, noise or a click is not enough)")
    energy = np.where(loud, power, 0.0)
    padded = np.concatenate([np.zeros(n), energy, np.zeros(n)])  # windows may run over the ends
    win = max(1, clip_samples // frame)
    sums = np.convolve(padded, np.ones(win), mode="valid")
    best = np.flatnonzero(sums >= sums.max() * 0.98)
    start_frame = int(best[len(best) // 2]) - n
    start = start_frame * frame
    out = np.zeros(clip_samples, np.float32)
    src0, src1 = max(start, 0), min(start + clip_samples, len(audio))
    out[src0 - start : src1 - start] = audio[src0:src1]
    return out


def _vad_frames(audio: np.ndarray, sample_rate: int, frame: int) -> np.ndarray:
    import webrtcvad

    vad = webrtcvad.Vad(2)
    pcm = (np.clip(audio, -1, 1) * 32767).astype("<i2")
    return np.array([vad.is_speech(pcm[i * frame : (i + 1) * frame].tobytes(), sample_rate)
                     for i in range(len(pcm) // frame)], bool)


def read_enrollment_audio(path: str | os.PathLike, sample_rate: int) -> np.ndarray:
    """A mono recording at exactly ``sample_rate`` (no silent resampling: a mismatch is an error).

    Raises:
        AudioError: missing/unreadable/empty file, more than one channel, another rate.
    """
    import soundfile as sf

    path = Path(path)
    if not path.is_file():
        raise AudioError(f"{path}: no such audio file")
    try:
        audio, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as exc:  # LibsndfileError, RuntimeError
        raise AudioError(f"{path}: cannot read audio ({str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__})") from None
    if audio.shape[0] == 0:
        raise AudioError(f"{path}: no audio samples")
    if audio.shape[1] != 1:
        raise AudioError(f"{path}: {audio.shape[1]} channels; enrolment takes mono recordings")
    if rate != sample_rate:
        raise AudioError(f"{path}: recorded at {rate} Hz, the model takes {sample_rate} Hz; record (or convert) at {sample_rate} Hz")
    return audio[:, 0]


def enroll(model: EmbeddingModel, name: str, recordings: Sequence[str | os.PathLike],
           out: str | os.PathLike | None = None) -> dict:
    """Make (and optionally write) the prototype of a new word from a few recordings.

    Args:
        model: the embedding artifact.
        name: the word's name (what detections report).
        recordings: audio files, each with the word said once anywhere in it.
        out: JSON file to write (atomically); ``None``: only return it.

    Returns:
        The prototype file's object: ``format``, ``name``, ``model_id``, ``model``,
        ``embedding_dim``, ``prototype`` (D floats), ``recordings``, ``spread`` (mean squared
        distance of the recordings to the prototype), ``threshold`` (``None`` until calibrated).

    Raises:
        AudioError: a bad recording; SpeechkitError: no recordings or an empty name.
    """
    if not name.strip():
        raise SpeechkitError("--name: the enrolled word needs a name")
    if not recordings:
        raise SpeechkitError("--audio: give at least one recording of the word (five are better)")
    clips = np.stack([find_keyword_clip(read_enrollment_audio(p, model.sample_rate), model.sample_rate,
                                        model.clip_samples, where=str(p)) for p in recordings])
    emb = model.embed(clips)
    proto = emb.mean(axis=0)
    spread = float(sq_distances(emb, proto[None]).mean())
    data = {
        "format": PROTOTYPE_FORMAT, "version": 1, "name": name.strip(), "model_id": model.model_id,
        "model": Path(model.path).name, "embedding_dim": model.embedding_dim,
        "prototype": [round(float(x), 7) for x in proto], "recordings": len(recordings), "spread": spread,
        "threshold": None,
    }
    if out is not None:
        write_json_atomic(Path(out), data)
    return data


def load_prototype_file(path: str | os.PathLike, model: EmbeddingModel) -> dict:
    """Read a prototype file and check that ``model`` made it.

    Raises:
        ModelFileError: unreadable, not a prototype file, or enrolled with another model.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelFileError(f"{path}: unreadable prototype file ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != PROTOTYPE_FORMAT or not isinstance(data.get("prototype"), list):
        raise ModelFileError(f"{path}: not a prototype file of `speechkit enroll-keyword`")
    if data.get("model_id") != model.model_id:
        raise ModelFileError(f"{path}: enrolled with another model ({data.get('model')}, id {data.get('model_id')}), "
                             f"not {model.path.name} (id {model.model_id}); enrol the word again with this model")
    if len(data["prototype"]) != model.embedding_dim:
        raise ModelFileError(f"{path}: prototype has {len(data['prototype'])} values, the model's embedding {model.embedding_dim}")
    return data


class EnrolledWordsModel(ClipClassifier):
    """An embedding model plus enrolled words, as a clip classifier over ``names + [_unknown_]``.

    ``probabilities(windows)`` embeds each window and returns the (N+1)-way softmax of the
    open-set rule: with a dummy generator (D-ProtoNets) the dummy class is ``_unknown_``; with
    the max-similarity rule the unknown logit is ``-2 * mean(spread) / tau`` (twice the
    enrolment recordings' mean squared distance to their prototype). The keyword detector
    streams it like a KWS model (:class:`speechkit.runtime.kws.KeywordDetector`).

    Args:
        model: path of the embedding artifact, or a loaded :class:`EmbeddingModel`.
        prototype_files: one JSON file per word (``speechkit enroll-keyword``).

    Raises:
        ModelFileError: a prototype file of another model, or two files with the same name.
    """

    def __init__(self, model: str | os.PathLike | EmbeddingModel, prototype_files: Sequence[str | os.PathLike]) -> None:
        self.embedder = model if isinstance(model, EmbeddingModel) else EmbeddingModel(model)
        if not prototype_files:
            raise SpeechkitError("--enroll: give at least one prototype file")
        self.words = [load_prototype_file(p, self.embedder) for p in prototype_files]
        names = [w["name"] for w in self.words]
        if len(set(names)) != len(names) or UNKNOWN_LABEL in names:
            raise ModelFileError(f"enrolled words must have distinct names (not {UNKNOWN_LABEL}), got {names}")
        self.protos = np.asarray([w["prototype"] for w in self.words], np.float32)
        self.unknown_logit = -2.0 * float(np.mean([w.get("spread") or 1.0 for w in self.words])) / self.embedder.rule.tau
        self.path = Path(prototype_files[0])
        self.task = FEWSHOT_TASK
        self.labels = names + [UNKNOWN_LABEL]
        self.sample_rate = self.embedder.sample_rate
        self.clip_samples = self.embedder.clip_samples
        self.metadata = self.embedder.metadata

    @property
    def thresholds(self) -> dict[str, float]:
        """The calibrated thresholds stored in the prototype files (words without one are left out)."""
        return {w["name"]: float(w["threshold"]) for w in self.words if isinstance(w.get("threshold"), (int, float))}

    def logits(self, audio: np.ndarray) -> np.ndarray:
        """(B, clip_samples) -> (B, N + 1) logits, ``_unknown_`` last."""
        emb = self.embedder.embed(audio)
        logits = self.embedder.rule.logits(emb, self.protos)
        if not self.embedder.rule.has_dummy:
            logits = np.concatenate([logits, np.full((len(emb), 1), self.unknown_logit, np.float32)], axis=1)
        return logits


def enrolled_detector(model: str | os.PathLike, prototype_files: Sequence[str | os.PathLike],
                      thresholds=None, **settings):
    """A :class:`~speechkit.runtime.kws.KeywordDetector` for enrolled words.

    Thresholds: ``thresholds`` (as the detector's) over the prototype files' calibrated ones,
    over :data:`speechkit.runtime.kws.DEFAULT_THRESHOLD`. ``settings``: the detector's other
    keyword arguments (``hop_ms``, ``smoothing``, ``refractory_s``, ``vad``, ...).
    """
    from speechkit.runtime.kws import KeywordDetector

    words = EnrolledWordsModel(model, prototype_files)
    table = dict(words.thresholds)
    if isinstance(thresholds, dict):
        table.update(thresholds)
    elif thresholds is not None:
        table = {k: float(thresholds) for k in words.labels[:-1]}
    return KeywordDetector(words, table or None, thresholds_file=False, **settings)


def calibrate_enrollment(model: str | os.PathLike, prototype_files: Sequence[str | os.PathLike],
                         negatives: str | os.PathLike, fa_per_hour: float = 0.5, **settings) -> dict[str, float]:
    """Calibrate each enrolled word's threshold on keyword-free audio and store it in its file.

    The classifier's calibration (:mod:`speechkit.runtime.calibrate`): stream the negatives
    through the detector, then per word the lowest threshold with at most ``fa_per_hour`` false
    alarms per hour of negatives (never below 0.5).

    Returns:
        ``{word: threshold}``; each prototype file is rewritten (atomically) with its ``threshold``
        and a ``calibration`` record.
    """
    from speechkit.runtime.calibrate import audio_files, join_traces, pick_threshold, score_file

    if not fa_per_hour >= 0:
        raise AudioError(f"--fa-per-hour must be >= 0, got {fa_per_hour}")
    detector = enrolled_detector(model, prototype_files, thresholds=0.5, **settings)
    traces, seconds = [], 0.0
    for path in audio_files(negatives):
        t, s, duration = score_file(detector.scorer, path)
        traces.append((t, s))
        seconds += duration
    refractory = detector.settings.refractory_s
    times, scores = join_traces(traces, gap_s=2 * refractory + 1.0)
    allowed = int(math.floor(fa_per_hour * seconds / 3600.0 + 1e-9))
    result = {}
    for k, (word, path) in enumerate(zip(detector.keywords, prototype_files)):
        threshold, count = pick_threshold(times, scores[:, k], allowed, refractory)
        threshold = math.ceil(threshold * 1e6) / 1e6
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        data["threshold"] = threshold
        data["calibration"] = {"negatives": str(negatives), "negative_hours": round(seconds / 3600.0, 6),
                               "fa_per_hour_budget": fa_per_hour, "false_alarms": count,
                               "hop_ms": detector.settings.hop_ms, "smoothing": detector.settings.smoothing}
        write_json_atomic(Path(path), data)
        result[word] = threshold
    return result
