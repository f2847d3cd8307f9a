"""Word times of a known transcript from a CTC model: forced alignment without torch.

:class:`CtcAligner` turns ``(audio, transcript)`` into one :class:`~speechkit.decoding.WordTime`
per transcript word: the model's (T', V) log-posteriors, the transcript's units per word, and the
Viterbi path of :func:`speechkit.decoding.ctc_align.align_words`. Where the posteriors come from
is a callable, so the ONNX artifacts (here) and ``speechkit fit`` checkpoints
(:mod:`speechkit.inference.ctc_align`, torch side) share everything else.

:func:`open_aligner` opens a model file by suffix through :data:`ALIGNER_LOADERS`: ``.onnx`` /
``.ort`` here (either ASR artifact; the full-context ``asr-ctc`` one aligns best, the streaming one
is run window by window); :mod:`speechkit.inference.ctc_align` adds ``.ckpt`` when it is imported
(the CLI imports it with ``speechkit align``'s module, so ``speechkit prepare libriword --aligner
X.ckpt`` finds it).

Text -> units: with the model's sentencepiece model (``--tokenizer``, or ``bpe.model`` beside
the artifact, as ``speechkit quickstart asr`` ships it), exactly the training segmentation;
without one, each normalised word is covered by the fewest pieces of the artifact's ``tokens``
(:func:`~speechkit.decoding.ctc_align.segment_word`), and characters no piece covers map to
``<unk>``.

Times: encoder frame ``j`` reads feature frames ``4j ... 4j + 6`` (25 ms windows every 10 ms),
i.e. audio 40j ... 40j + 85 ms centred at 40j + 42.5 ms, so frame ``j`` stands for the 40 ms
around that centre: ``t = j * 0.04 + 0.0225`` s (:data:`FRAME_OFFSET_S`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from speechkit.decoding import WordTime
from speechkit.decoding.ctc_align import align_words, segment_word
from speechkit.errors import ModelFileError
from speechkit.runtime.chunking import ENCODER_FRAME_MS, FEATURE_SHIFT_MS, RECEPTIVE_FIELD

#: Feature window (ms) of the Kaldi fbank every ASR artifact uses.
_WINDOW_MS = 25.0
#: Time of encoder frame 0's start (s): the centre of its receptive field minus half a frame.
FRAME_OFFSET_S = (((RECEPTIVE_FIELD - 1) * FEATURE_SHIFT_MS + _WINDOW_MS) / 2 - ENCODER_FRAME_MS / 2) / 1000.0
#: Name of the sentencepiece model looked for beside an artifact.
TOKENIZER_FILENAME = "bpe.model"


class CtcAligner:
    """Forced alignment of transcripts with a CTC model.

    Args:
        log_probs: ``fn(audio (n,) float32 at sample_rate) -> (T', V)`` log-posteriors.
        encode_word: ``fn(word) -> unit ids`` for one transcript word (normalised inside; [] if
            the word has nothing to say, e.g. punctuation).
        tokens: the units in id order, blank first.
        sample_rate: Hz the model takes.
        frame_shift_s: seconds per output frame (0.04).
        name: the model file (for messages).
        offset_s: time of frame 0 (:data:`FRAME_OFFSET_S`).

    Example:
        A stand-in model that says "HI" (id 2) in frames 1-2 of 4:

        >>> lp = np.log(np.array([[.9, .05, .05], [.05, .05, .9], [.05, .05, .9], [.9, .05, .05]]))
        >>> aligner = CtcAligner(lambda a: lp, lambda w: [2], ["<blk>", "<unk>", "\u2581HI"], 16000, 0.04, "demo")
        >>> [(w.word, round(w.start_s, 4), round(w.end_s, 4)) for w in aligner.align(np.zeros(2000), "hi")]
        [('hi', 0.0625, 0.1425)]
    """

    def __init__(
        self,
        log_probs: Callable[[np.ndarray], np.ndarray],
        encode_word: Callable[[str], list[int]],
        tokens: Sequence[str],
        sample_rate: int,
        frame_shift_s: float,
        name: str,
        offset_s: float = FRAME_OFFSET_S,
    ) -> None:
        self._log_probs, self._encode_word = log_probs, encode_word
        self.tokens, self.sample_rate, self.frame_shift_s = list(tokens), int(sample_rate), float(frame_shift_s)
        self.name, self.offset_s = str(name), float(offset_s)

    def word_units(self, transcript: str) -> list[tuple[str, list[int]]]:
        """``(word, unit ids)`` for each whitespace-separated word that has units."""
        units = [(word, self._encode_word(word)) for word in transcript.split()]
        return [(word, ids) for word, ids in units if ids]

    def align(self, audio: np.ndarray, transcript: str) -> list[WordTime]:
        """Word times (s from the start of ``audio``) of ``transcript``'s words, in order.

        Args:
            audio: (n,) float32 mono at :attr:`sample_rate`.
            transcript: what is said (any case; LibriSpeech transcripts as they are).

        Raises:
            SpeechkitError: the transcript does not fit the audio (too many units for the frames).
        """
        words = self.word_units(transcript)
        if not words:
            return []
        log_probs = self._log_probs(np.asarray(audio, dtype=np.float32))
        return align_words(log_probs, words, self.tokens, self.frame_shift_s, self.offset_s)


def _onnx_aligner(path: Path, tokenizer: str | os.PathLike | None, num_threads: int) -> CtcAligner:
    from speechkit.runtime.asr_model import AsrModel, compute_fbank, full_log_probs

    model = AsrModel(path, num_threads)
    encode = word_encoder(model.tokens, tokenizer if tokenizer else _beside(path), str(path))

    def log_probs(audio: np.ndarray) -> np.ndarray:
        return full_log_probs(model, compute_fbank(model, audio))

    return CtcAligner(log_probs, encode, model.tokens, model.sample_rate, model.frame_shift_s, str(path))


def _beside(path: Path) -> Path | None:
    candidate = path.with_name(TOKENIZER_FILENAME)
    return candidate if candidate.is_file() else None


def word_encoder(
    tokens: Sequence[str], tokenizer: str | os.PathLike | None, model_name: str
) -> Callable[[str], list[int]]:
    """``fn(word) -> unit ids``: through the sentencepiece model ``tokenizer`` if given, else
    from the token list alone (:func:`~speechkit.decoding.ctc_align.segment_word`).

    Raises:
        ModelFileError: the sentencepiece model's pieces are not the model's ``tokens``.
    """
    from speechkit.text.normalize import normalize_text

    if tokenizer is not None:
        import sentencepiece

        processor = sentencepiece.SentencePieceProcessor()
        try:
            processor.LoadFromSerializedProto(Path(tokenizer).read_bytes())
        except Exception as exc:  # OSError for a missing file, RuntimeError for a bad proto
            raise ModelFileError(f"{tokenizer}: not a readable sentencepiece model ({exc})") from None
        pieces = [processor.id_to_piece(i) for i in range(processor.get_piece_size())]
        if pieces != list(tokens):
            raise ModelFileError(
                f"{tokenizer}: its {len(pieces)} pieces are not the units of {model_name} ({len(tokens)}); "
                "pass the tokenizer the model was trained with"
            )
        # the same normal form as speechkit.text.Tokenizer.encode (training), without its lhotse-side helpers
        return lambda word: list(processor.encode(normalize_text(word), out_type=int))

    def encode(word: str) -> list[int]:
        return [i for w in normalize_text(word).split() for i in segment_word(w, tokens)]

    return encode


#: Model-file loaders by suffix: ``fn(path, tokenizer, num_threads) -> CtcAligner``.
ALIGNER_LOADERS: dict[str, Callable[[Path, str | os.PathLike | None, int], CtcAligner]] = {
    ".onnx": _onnx_aligner,
    ".ort": _onnx_aligner,
}


def open_aligner(
    path: str | os.PathLike, tokenizer: str | os.PathLike | None = None, num_threads: int = 1
) -> CtcAligner:
    """A :class:`CtcAligner` over an ASR model file (``.onnx``/``.ort``; ``.ckpt`` once
    :mod:`speechkit.inference.ctc_align` is imported).

    Args:
        path: the model.
        tokenizer: its sentencepiece model (default: ``bpe.model`` beside an artifact, if any).
        num_threads: onnxruntime threads.

    Raises:
        ModelFileError: missing file, not an ASR model, an unsupported suffix, or a tokenizer
            that does not match.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: no such model file")
    loader = ALIGNER_LOADERS.get(path.suffix.lower())
    if loader is None:
        known = ", ".join(sorted(ALIGNER_LOADERS))
        raise ModelFileError(
            f"{path}: cannot align with a {path.suffix or 'suffix-less'} file here (known: {known}); "
            "checkpoints need `speechkit align` (the torch side)"
        )
    return loader(path, tokenizer, num_threads)
