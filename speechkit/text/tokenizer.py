"""Sentencepiece units for CTC, with the blank at id 0.

Id layout (fixed, checked when a model file is loaded):

* ``0``: ``<blk>``, the CTC blank. It is sentencepiece's *pad* piece (``pad_id=0``), a control
  symbol: it never comes out of :meth:`Tokenizer.encode` and :meth:`Tokenizer.decode` drops it,
  so CTC ids and sentencepiece ids are the same numbers (no +1 shifting anywhere).
* ``1``: ``<unk>``; no ``<s>``/``</s>`` (CTC does not use them).
* ``2 ...``: the learned pieces; every letter of the normal form (:data:`ALPHABET`) is
  guaranteed a piece (``required_chars``), so any normalised text encodes without ``<unk>``.

Text is normalised by :func:`~speechkit.text.normalize.normalize_text` before training and
before encoding.

Example:
    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "bpe.model"
    >>> tok = train_tokenizer(["TURN ON THE LIGHT", "TURN OFF THE RADIO"] * 20, path, vocab_size=40)
    >>> tok.decode(tok.encode("turn on the radio"))
    'TURN ON THE RADIO'
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Iterable, Iterator

from speechkit.errors import CorpusError, ModelFileError, SpeechkitError
from speechkit.fileio import atomic_path
from speechkit.text.normalize import ALPHABET, normalize_text

BLANK = "<blk>"
BLANK_ID = 0
UNK_ID = 1
# Pieces that are not learned: blank, unk, and the word-boundary piece "▁" on its own.
_MIN_VOCAB_SIZE = len(ALPHABET) + 3


class Tokenizer:
    """A sentencepiece model with the CTC blank at id 0.

    Picklable (it carries the serialized model, not a path), so it can travel to data-loader
    workers and into checkpoints.

    Args:
        model_path: a ``.model`` file written by :func:`train_tokenizer`.

    Raises:
        ModelFileError: the file is missing, not a sentencepiece model, or has no blank at id 0.
    """

    def __init__(self, model_path: str | os.PathLike) -> None:
        path = Path(model_path)
        if not path.is_file():
            raise ModelFileError(f"{path}: no such tokenizer model; train one with `speechkit tokenizer train`")
        self._load(path.read_bytes(), str(path))

    @classmethod
    def from_bytes(cls, model_proto: bytes, name: str = "<bytes>") -> Tokenizer:
        """Build from a serialized sentencepiece model (e.g. one stored in a checkpoint)."""
        tokenizer = cls.__new__(cls)
        tokenizer._load(model_proto, name)
        return tokenizer

    def _load(self, model_proto: bytes, name: str) -> None:
        import sentencepiece as spm

        processor = spm.SentencePieceProcessor()
        try:
            processor.LoadFromSerializedProto(model_proto)
        except Exception as exc:  # sentencepiece raises RuntimeError/OSError on bad protos
            raise ModelFileError(f"{name}: not a sentencepiece model ({exc})") from None
        if processor.get_piece_size() < 2 or processor.id_to_piece(BLANK_ID) != BLANK or processor.unk_id() != UNK_ID:
            raise ModelFileError(
                f"{name}: sentencepiece model without {BLANK} at id {BLANK_ID} and <unk> at id {UNK_ID}; "
                "train it with `speechkit tokenizer train` so that id 0 is the CTC blank"
            )
        self._processor = processor
        self.model_bytes = model_proto
        self.name = name

    def __getstate__(self) -> dict:
        return {"model_bytes": self.model_bytes, "name": self.name}

    def __setstate__(self, state: dict) -> None:
        self._load(state["model_bytes"], state["name"])

    @property
    def vocab_size(self) -> int:
        """Number of units including the blank (the CTC head's output size V)."""
        return self._processor.get_piece_size()

    @property
    def blank_id(self) -> int:
        return BLANK_ID

    def tokens(self) -> list[str]:
        """The pieces in id order, blank first (what the ONNX metadata ``tokens`` holds)."""
        return [self._processor.id_to_piece(i) for i in range(self.vocab_size)]

    def encode(self, text: str, utterance_id: str | None = None) -> list[int]:
        """Normalise ``text`` and split it into unit ids (never 0).

        Raises:
            SpeechkitError: the text cannot be normalised (names ``utterance_id``).
        """
        return list(self._processor.encode(normalize_text(text, utterance_id), out_type=int))

    def decode(self, ids: Iterable[int]) -> str:
        """Join unit ids into text; blanks are dropped (ids need not be CTC-collapsed)."""
        return self._processor.decode([int(i) for i in ids if int(i) != BLANK_ID])


def train_tokenizer(
    texts: Iterable[str],
    out_path: str | os.PathLike,
    vocab_size: int = 500,
    model_type: str = "unigram",
) -> Tokenizer:
    """Train a sentencepiece model on ``texts`` and write it atomically to ``out_path``.

    Args:
        texts: transcripts (normalised here; already-normal text is unchanged).
        out_path: the ``.model`` file to write (sentencepiece's ``.vocab`` is not written:
            :meth:`Tokenizer.tokens` gives the same list).
        vocab_size: requested number of units including blank and ``<unk>``. On small text
            sets sentencepiece may learn fewer (``hard_vocab_limit=false``): a few hundred
            sentences cannot support 500 units, and failing would help nobody. Check
            :attr:`Tokenizer.vocab_size`.
        model_type: ``unigram`` (icefall's and WeNet's choice) or ``bpe``.

    Returns:
        The trained tokenizer.

    Raises:
        SpeechkitError: no text, an impossible vocabulary size, or text that cannot be normalised.
    """
    import sentencepiece as spm

    if vocab_size < _MIN_VOCAB_SIZE:
        raise SpeechkitError(f"vocab size {vocab_size} is too small: need at least {_MIN_VOCAB_SIZE} "
                             f"(blank, <unk>, word boundary and the {len(ALPHABET)} letters)")
    if model_type not in ("unigram", "bpe"):
        raise SpeechkitError(f"tokenizer model type {model_type!r}: expected 'unigram' or 'bpe'")
    sentences = [t for t in (normalize_text(text) for text in texts) if t]
    if not sentences:
        raise SpeechkitError("no transcripts to train the tokenizer on (all texts were empty)")
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(sentences), model_writer=model, vocab_size=vocab_size,
        model_type=model_type, character_coverage=1.0, required_chars=ALPHABET,
        pad_id=BLANK_ID, pad_piece=BLANK, unk_id=UNK_ID, bos_id=-1, eos_id=-1,
        hard_vocab_limit=False, input_sentence_size=10_000_000, shuffle_input_sentence=True,
        num_threads=1, minloglevel=2,
    )
    with atomic_path(out_path) as tmp:
        tmp.write_bytes(model.getvalue())
    return Tokenizer.from_bytes(model.getvalue(), str(out_path))


def manifest_texts(manifests: Iterable[str | os.PathLike]) -> Iterator[str]:
    """Yield the normalised transcript of every supervision in lhotse manifests.

    Args:
        manifests: ``CutSet`` or ``SupervisionSet`` files (JSONL, optionally gzipped).

    Raises:
        CorpusError: a file is missing or not a lhotse manifest with supervisions.
        SpeechkitError: a transcript cannot be normalised (names its supervision id).
    """
    from lhotse import load_manifest_lazy

    for path in manifests:
        path = Path(path)
        if not path.is_file():
            raise CorpusError(f"{path}: no such manifest; expected lhotse cuts or supervisions (.jsonl.gz)")
        try:
            items = load_manifest_lazy(path)
        except Exception as exc:  # lhotse raises ValueError/JSON errors for foreign files
            raise CorpusError(f"{path}: not a readable lhotse manifest ({exc})") from None
        for item in items:
            supervisions = getattr(item, "supervisions", None)
            if supervisions is None:
                if not hasattr(item, "text"):
                    raise CorpusError(f"{path}: holds {type(item).__name__} items; expected cuts or supervisions")
                supervisions = [item]
            for sup in supervisions:
                if sup.text:
                    yield normalize_text(sup.text, sup.id)


def train_tokenizer_from_manifests(
    manifests: Iterable[str | os.PathLike],
    out_path: str | os.PathLike,
    vocab_size: int = 500,
    model_type: str = "unigram",
) -> Tokenizer:
    """:func:`train_tokenizer` over the transcripts of lhotse manifests (``speechkit tokenizer train``)."""
    manifests = list(manifests)
    texts = list(manifest_texts(manifests))
    if not texts:
        raise CorpusError(f"{', '.join(map(str, manifests))}: no transcripts found in the supervisions")
    return train_tokenizer(texts, out_path, vocab_size, model_type)
