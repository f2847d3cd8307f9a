"""Text for ASR: the one normalisation (:mod:`.normalize`) and sentencepiece units (:mod:`.tokenizer`).

The tokenizer is imported lazily (sentencepiece is loaded only when it is used).
"""

from speechkit.text.normalize import ALPHABET, integer_to_words, normalize_text

__all__ = ["ALPHABET", "integer_to_words", "normalize_text", "Tokenizer", "train_tokenizer",
           "train_tokenizer_from_manifests", "manifest_texts", "BLANK_ID"]


def __getattr__(name: str):
    if name in ("Tokenizer", "train_tokenizer", "train_tokenizer_from_manifests", "manifest_texts", "BLANK_ID"):
        from speechkit.text import tokenizer

        return getattr(tokenizer, name)
    raise AttributeError(f"module 'speechkit.text' has no attribute {name!r}")
