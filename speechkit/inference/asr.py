"""Speech recognition with a trained model: load it, transcribe audio, score a test set.

The one place that turns a model file into text, used by ``speechkit transcribe``,
``speechkit eval-asr``, the ASR quickstart and the benchmarks.

* :func:`load_recognizer` dispatches on the model file: a ``speechkit fit`` checkpoint now;
  an ONNX loader is registered in :data:`LOADERS` by suffix (the ``.onnx`` entry is where the
  export issue plugs in its onnxruntime recognizer).
* A recogniser maps waveforms to CTC log-probabilities (:class:`Recognizer`); decoding
  (greedy or prefix beam search, :mod:`speechkit.decoding`) and detokenisation from the token
  list are shared by every kind of model file.
* Chunked decoding runs the encoder under the chunk mask (``chunk_ms`` of 40 ms encoder
  frames, WeNet's "simulated streaming"), which gives the outputs of the cached
  ``streaming_forward`` by the encoder's contract.

Shape legend: S samples (16 kHz), T' encoder frames (40 ms), V units (blank = 0).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from speechkit.decoding import ctc_text
from speechkit.errors import AudioError, ModelFileError, SpeechkitError
from speechkit.runtime.chunking import ENCODER_FRAME_MS as FRAME_MS

#: Longest input transcribed in one piece (s). Full-context attention memory grows with the
#: square of the length: 180 s is 4500 encoder frames, about 0.3 GB of attention weights per
#: layer; an hour would need hundreds of GB.
MAX_AUDIO_SECONDS = 180.0
#: Peak level (linear, -70 dBFS) below which a file counts as silent: nothing to transcribe.
SILENCE_PEAK = 10 ** (-70 / 20)


@dataclass(frozen=True)
class DecodeOptions:
    """How to decode.

    Attributes:
        chunk_ms: 0 for full context; else the attention chunk in ms, a multiple of 40 ms
            (640 ms = 16 encoder frames, 320 ms = 8).
        left_chunks: chunks of left context under chunking; -1 for all.
        beam_size: 1 for greedy search; more for CTC prefix beam search.
    """

    chunk_ms: int = 0
    left_chunks: int = -1
    beam_size: int = 1

    def __post_init__(self) -> None:
        if self.chunk_ms < 0 or self.chunk_ms % FRAME_MS:
            raise SpeechkitError(f"chunk of {self.chunk_ms} ms: expected 0 (full context) or a positive "
                                 f"multiple of {FRAME_MS} ms, e.g. 320 or 640")
        if self.beam_size < 1:
            raise SpeechkitError(f"beam size {self.beam_size}: expected 1 (greedy) or more")

    @property
    def chunk_frames(self) -> int:
        """Chunk size in encoder frames; -1 for full context."""
        return self.chunk_ms // FRAME_MS if self.chunk_ms else -1

    def label(self) -> str:
        return "full context" if not self.chunk_ms else f"{self.chunk_ms} ms chunks"


class Recognizer(Protocol):
    """What a loaded model offers (a checkpoint, later an ONNX file)."""

    sample_rate: int
    tokens: list[str]  # unit pieces in id order, blank first
    num_params: int | None

    def log_probs(self, audios: Sequence[np.ndarray], options: DecodeOptions) -> list[np.ndarray]:
        """Per waveform (S_i,) float32, the (T'_i, V) log-probabilities."""
        ...


class CheckpointRecognizer:
    """A :class:`speechkit.tasks.asr.AsrCtcTask` (from a checkpoint) as a :class:`Recognizer`.

    Args:
        task: the task, in eval mode.
        device: torch device to run on.
    """

    def __init__(self, task, device: str = "cpu") -> None:
        self.task = task.to(device).eval()
        self.device = device
        self.sample_rate = int(task.sample_rate)
        self.tokens = task.tokenizer.tokens()
        self.num_params = sum(p.numel() for p in task.parameters())

    def log_probs(self, audios: Sequence[np.ndarray], options: DecodeOptions) -> list[np.ndarray]:
        import torch

        from speechkit.data.asr_datamodule import pad_waveforms

        batch, lens = pad_waveforms(audios)
        with torch.inference_mode():
            log_probs, out_lens = self.task.log_probs(
                batch.to(self.device), lens.to(self.device), options.chunk_frames, options.left_chunks
            )
        log_probs = log_probs.float().cpu().numpy()
        return [log_probs[i, : int(n)] for i, n in enumerate(out_lens.tolist())]


def _load_checkpoint(path: Path) -> Recognizer:
    from speechkit.tasks import load_task

    return CheckpointRecognizer(load_task(path, expected=("asr-ctc",)))


def _load_onnx(path: Path) -> Recognizer:
    from speechkit.runtime.asr import AsrOnnxRecognizer

    return AsrOnnxRecognizer(path)


#: Model-file loaders by suffix; anything else is read as a Lightning checkpoint.
LOADERS: dict[str, Callable[[Path], Recognizer]] = {".onnx": _load_onnx, ".ort": _load_onnx}


def load_recognizer(path: str | Path) -> Recognizer:
    """Load an ASR model file.

    Raises:
        ModelFileError: missing file, not an ASR model (e.g. a keyword-spotting checkpoint),
            or a format this version cannot run.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: no such model file")
    return LOADERS.get(path.suffix.lower(), _load_checkpoint)(path)


#: (T', V) log-probabilities -> text: the one text rule (:func:`speechkit.decoding.ctc_text`).
decode = ctc_text


def length_batches(lengths: Sequence[int], max_batch_samples: int) -> list[list[int]]:
    """Indices grouped into batches of similar length, each padding to <= ``max_batch_samples``.

    Sorting by length keeps padding small; a batch always holds at least one item.
    """
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    batches: list[list[int]] = []
    for i in order:
        if batches and lengths[i] * (len(batches[-1]) + 1) <= max_batch_samples:
            batches[-1].append(i)
        else:
            batches.append([i])
    return batches


def transcribe(
    recognizer: Recognizer,
    audios: Sequence[np.ndarray],
    options: DecodeOptions = DecodeOptions(),
    batch_seconds: float = 60.0,
) -> tuple[list[str], float]:
    """Transcribe waveforms (at ``recognizer.sample_rate``).

    Args:
        recognizer: from :func:`load_recognizer`.
        audios: (S_i,) float32 waveforms.
        options: chunking and search.
        batch_seconds: padded audio per model call (s).

    Returns:
        ``(texts, seconds)``: one text per waveform, in order, and the compute time spent in
        the model and the search (audio loading excluded), for real-time factors.
    """
    texts = [""] * len(audios)
    seconds = 0.0
    max_samples = int(batch_seconds * recognizer.sample_rate)
    for batch in length_batches([len(a) for a in audios], max_samples):
        start = time.perf_counter()
        log_probs = recognizer.log_probs([audios[i] for i in batch], options)
        for i, lp in zip(batch, log_probs):
            texts[i] = decode(lp, recognizer.tokens, options.beam_size)
        seconds += time.perf_counter() - start
    return texts, seconds


def load_for_transcription(path: str | Path, sample_rate: int) -> np.ndarray:
    """Load one file to transcribe, refusing what cannot be transcribed.

    Raises:
        AudioError: missing, empty or corrupt file; longer than :data:`MAX_AUDIO_SECONDS`;
            silent (peak below -70 dBFS).
    """
    from speechkit.audio import load_audio

    audio = load_audio(path, sample_rate, max_seconds=MAX_AUDIO_SECONDS)
    peak = float(np.abs(audio).max())
    if peak < SILENCE_PEAK:
        level = "-inf" if peak == 0 else f"{20 * np.log10(peak):.0f}"
        raise AudioError(f"{path}: audio is silent (peak {level} dBFS); nothing to transcribe")
    return audio


# -- evaluation ------------------------------------------------------------------------------
@dataclass
class EvalUtterance:
    """One test utterance: ``id``, normalised reference ``text``, and how to load its audio."""

    id: str
    text: str
    load: Callable[[int], np.ndarray]  # sample_rate -> (S,) float32


def read_eval_set(data: str | Path) -> list[EvalUtterance]:
    """Test utterances from a LibriSpeech subset folder or a lhotse cut manifest.

    Args:
        data: ``.../LibriSpeech/test-clean`` (``*.trans.txt`` + ``.flac`` below it; a folder
            holding several subsets is read whole), or a ``cuts_*.jsonl.gz`` file.

    Raises:
        CorpusError: neither layout, or a transcript names missing audio.
        SpeechkitError: a transcript the normalisation cannot map (names the utterance).
    """
    from speechkit.errors import CorpusError
    from speechkit.text import normalize_text

    path = Path(data)
    if path.is_dir():
        return _read_librispeech_dir(path)
    if not path.is_file():
        raise CorpusError(f"{path}: no such folder or manifest; expected a LibriSpeech subset folder "
                          "(e.g. LibriSpeech/test-clean) or a lhotse cuts file (cuts_test-clean.jsonl.gz)")
    from speechkit.data.asr_datamodule import cut_text
    from speechkit.data.datamodules import load_cut_audio
    from speechkit.data.manifests import read_cuts

    items = []
    for cut in read_cuts(path):
        items.append(EvalUtterance(cut.id, normalize_text(cut_text(cut), cut.id),
                                   lambda rate, cut=cut: _checked_cut_audio(cut, rate, load_cut_audio)))
    if not items:
        raise CorpusError(f"{path}: the manifest holds no cuts")
    return items


def _checked_cut_audio(cut, sample_rate: int, loader) -> np.ndarray:
    if cut.duration > MAX_AUDIO_SECONDS:
        raise AudioError(f"cut {cut.id!r} is {cut.duration:.0f} s long, more than the {MAX_AUDIO_SECONDS:.0f} s limit")
    return loader(cut, sample_rate)


def _read_librispeech_dir(root: Path) -> list[EvalUtterance]:
    from speechkit.audio import load_audio
    from speechkit.errors import CorpusError
    from speechkit.text import normalize_text

    transcripts = sorted(root.rglob("*.trans.txt"))
    if not transcripts:
        raise CorpusError(f"{root}: no *.trans.txt transcripts below it; expected a LibriSpeech subset folder "
                          "<subset>/<speaker>/<chapter>/<speaker>-<chapter>.trans.txt with .flac files")
    items = []
    for trans in transcripts:
        for lineno, line in enumerate(trans.read_text(encoding="utf-8").splitlines(), start=1):
            parts = line.strip().split(maxsplit=1)
            if not parts:
                continue
            audio_path = trans.parent / f"{parts[0]}.flac"
            if not audio_path.is_file():
                raise CorpusError(f"{trans}:{lineno}: names {parts[0]}, but {audio_path} does not exist")
            text = normalize_text(parts[1] if len(parts) > 1 else "", parts[0])
            items.append(EvalUtterance(
                parts[0], text,
                lambda rate, p=audio_path: load_audio(p, rate, max_seconds=MAX_AUDIO_SECONDS),
            ))
    return items


def evaluate(
    recognizer: Recognizer,
    utterances: Sequence[EvalUtterance],
    options: DecodeOptions = DecodeOptions(),
    num_worst: int = 10,
    audios: Sequence[np.ndarray] | None = None,
) -> dict:
    """Word error rate, its parts and the real-time factor on a test set.

    Args:
        recognizer: the model.
        utterances: from :func:`read_eval_set`.
        options: chunking and search.
        num_worst: how many of the worst utterances (most word errors) to list.
        audios: the utterances' waveforms if already loaded (the quickstart decodes one set
            several ways).

    Returns:
        JSON-ready dict: ``wer``, ``substitutions``, ``deletions``, ``insertions``,
        ``ref_words``, ``num_utterances``, ``audio_seconds``, ``rtf`` (compute seconds per
        audio second, on this machine's threads: ``threads``), ``decoding`` (the options) and
        ``worst`` (``id``, ``errors``, ``ref``, ``hyp``).
    """
    import torch

    from speechkit.metrics.wer import WordErrors, word_errors

    if not utterances:
        raise SpeechkitError("nothing to evaluate: the test set is empty")
    if audios is None:
        audios = [u.load(recognizer.sample_rate) for u in utterances]
    hyps, seconds = transcribe(recognizer, audios, options)
    per_utt = [word_errors(u.text, h) for u, h in zip(utterances, hyps)]
    total = sum(per_utt, WordErrors())
    audio_seconds = sum(len(a) for a in audios) / recognizer.sample_rate
    ranked = sorted(range(len(utterances)), key=lambda i: (-per_utt[i].errors, utterances[i].id))
    worst = [
        {"id": utterances[i].id, "errors": per_utt[i].errors, "ref": utterances[i].text, "hyp": hyps[i]}
        for i in ranked[:num_worst] if per_utt[i].errors > 0
    ]
    return {
        **total.to_dict(),
        "num_utterances": len(utterances),
        "audio_seconds": round(audio_seconds, 2),
        "rtf": round(seconds / max(audio_seconds, 1e-9), 5),
        "threads": torch.get_num_threads(),
        "decoding": {"chunk_ms": options.chunk_ms, "left_chunks": options.left_chunks, "beam_size": options.beam_size},
        "worst": worst,
    }
