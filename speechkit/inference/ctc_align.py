"""CTC forced alignment with ``speechkit fit`` checkpoints, and alignment of a whole corpus.

The Viterbi and the word times are torch-free and shared with the ONNX artifacts
(:mod:`speechkit.decoding.ctc_align`, :class:`speechkit.runtime.ctc_aligner.CtcAligner`); this
module adds what needs torch: the log-posteriors of an ``asr-ctc`` checkpoint (full context) and
its own tokenizer. Importing it registers the ``.ckpt`` loader in
:data:`speechkit.runtime.ctc_aligner.ALIGNER_LOADERS`, so :func:`~speechkit.runtime.ctc_aligner.open_aligner`
(and ``speechkit prepare libriword --aligner X.ckpt``) opens checkpoints too.

:func:`align_corpus` is ``speechkit align``: every utterance of a LibriSpeech folder to one
TextGrid in the Montreal Forced Aligner layout, which ``speechkit prepare libriword --alignments``
reads like MFA's own.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from speechkit.runtime.chunking import ENCODER_FRAME_MS
from speechkit.runtime.ctc_aligner import ALIGNER_LOADERS, CtcAligner, open_aligner, word_encoder


def checkpoint_aligner(path: str | os.PathLike, tokenizer: str | os.PathLike | None = None, num_threads: int = 1) -> CtcAligner:
    """A :class:`CtcAligner` over an ``asr-ctc`` checkpoint (full context, CPU).

    Args:
        path: the checkpoint.
        tokenizer: a sentencepiece model to use instead of the checkpoint's own (must match).
        num_threads: torch intra-op threads.

    Raises:
        ModelFileError: not an ASR checkpoint, or a tokenizer that does not match.
    """
    import torch

    from speechkit.inference.asr import DecodeOptions, load_recognizer

    torch.set_num_threads(max(1, num_threads))
    recognizer = load_recognizer(Path(path))
    encode = word_encoder(recognizer.tokens, tokenizer, str(path)) if tokenizer else recognizer.task.tokenizer.encode
    options = DecodeOptions()

    def log_probs(audio: np.ndarray) -> np.ndarray:
        return recognizer.log_probs([audio], options)[0]

    return CtcAligner(log_probs, encode, recognizer.tokens, recognizer.sample_rate, ENCODER_FRAME_MS / 1000, str(path))


def _ckpt_loader(path: Path, tokenizer, num_threads: int) -> CtcAligner:
    return checkpoint_aligner(path, tokenizer, num_threads)


ALIGNER_LOADERS.setdefault(".ckpt", _ckpt_loader)


def align_corpus(
    model: str | os.PathLike,
    corpus_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    tokenizer: str | os.PathLike | None = None,
    subsets: Sequence[str] | None = None,
    num_jobs: int = 1,
    progress: bool = False,
) -> str:
    """Align every utterance of a LibriSpeech folder; write ``out_dir/<subset>/<spk>/<chapter>/<utt>.TextGrid``.

    Args:
        model: ``.ckpt``, ``.onnx`` or ``.ort`` ASR model.
        corpus_dir: the ``LibriSpeech`` folder. out_dir: where the TextGrids go.
        tokenizer: the model's sentencepiece model (default: the checkpoint's, or ``bpe.model``
            beside an artifact; else the artifact's token list).
        subsets: LibriSpeech subsets (default: every one present).
        num_jobs: threads (audio headers, the model).
        progress: a progress bar on stderr.

    Returns:
        A one-paragraph summary (utterances aligned and failed, words, speed).

    Raises:
        ModelFileError: not an ASR model. CorpusError: bad corpus layout or nothing aligned.
    """
    from speechkit.data.corpora.libriword import align_utterances, librispeech_utterances

    aligner = open_aligner(model, tokenizer, num_jobs)
    utterances = librispeech_utterances(corpus_dir, subsets, num_jobs)
    start = time.perf_counter()
    times, problems = align_utterances(utterances, aligner, out_dir, progress)
    seconds = time.perf_counter() - start
    audio_s = sum(u.recording.duration for u in utterances)
    words = sum(len(w) for w in times.values())
    failed = f"; {problems['failed']} failed (transcript longer than the audio allows)" if problems["failed"] else ""
    return (
        f"Wrote {len(times)} TextGrids ({words} words) to {out_dir} with {model}{failed}; "
        f"{audio_s / 60:.1f} min of audio in {seconds:.1f} s ({audio_s / max(seconds, 1e-9):.0f}x real time)."
    )
