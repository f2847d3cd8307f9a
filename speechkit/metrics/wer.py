"""Word error rate: jiwer's alignment counts, summed over a corpus (and across DDP ranks).

Both sides are expected in speechkit's normal form (:func:`speechkit.text.normalize_text`):
references are normalised when they are read, hypotheses come out of the tokenizer in that
form. WER = (substitutions + deletions + insertions) / reference words, over the whole corpus
(not a mean of per-utterance rates).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch
from torchmetrics import Metric


@dataclass
class WordErrors:
    """Alignment counts of one or more utterances.

    Attributes:
        substitutions, deletions, insertions: edit operations from reference to hypothesis.
        ref_words: words in the references.
    """

    substitutions: int = 0
    deletions: int = 0
    insertions: int = 0
    ref_words: int = 0

    @property
    def errors(self) -> int:
        return self.substitutions + self.deletions + self.insertions

    @property
    def wer(self) -> float:
        """Errors per reference word (0 for an empty reference with an empty hypothesis)."""
        if self.ref_words == 0:
            return float(self.errors > 0)
        return self.errors / self.ref_words

    def __add__(self, other: WordErrors) -> WordErrors:
        return WordErrors(*(a + b for a, b in zip(asdict(self).values(), asdict(other).values())))

    def to_dict(self) -> dict:
        return {"wer": self.wer, **asdict(self)}


def word_errors(reference: str, hypothesis: str) -> WordErrors:
    """Alignment counts of one utterance (jiwer's Levenshtein alignment over words).

    Example:
        >>> word_errors("TURN ON THE LIGHT", "TURN THE LIGHT")
        WordErrors(substitutions=0, deletions=1, insertions=0, ref_words=4)
    """
    import jiwer

    ref_words = len(reference.split())
    if not reference.strip() or not hypothesis.strip():  # jiwer refuses empty strings
        return WordErrors(0, ref_words, len(hypothesis.split()), ref_words)
    out = jiwer.process_words(reference, hypothesis)
    return WordErrors(out.substitutions, out.deletions, out.insertions, ref_words)


def corpus_word_errors(references: Sequence[str], hypotheses: Sequence[str]) -> WordErrors:
    """Summed :func:`word_errors` over paired lists."""
    if len(references) != len(hypotheses):
        raise ValueError(f"{len(references)} references but {len(hypotheses)} hypotheses")
    total = WordErrors()
    for ref, hyp in zip(references, hypotheses):
        total = total + word_errors(ref, hyp)
    return total


class WordErrorRate(Metric):
    """Corpus WER as a torchmetrics ``Metric``: counts are summed over batches and DDP ranks.

    Lightning logs it with ``self.log("val/wer", metric)``, computing and resetting it at the
    end of each epoch.
    """

    full_state_update = False
    higher_is_better = False

    def __init__(self) -> None:
        super().__init__()
        for name in ("substitutions", "deletions", "insertions", "ref_words"):
            self.add_state(name, default=torch.tensor(0, dtype=torch.int64), dist_reduce_fx="sum")

    def update(self, references: Sequence[str], hypotheses: Sequence[str]) -> None:
        counts = corpus_word_errors(references, hypotheses)
        self.substitutions += counts.substitutions
        self.deletions += counts.deletions
        self.insertions += counts.insertions
        self.ref_words += counts.ref_words

    def compute(self) -> torch.Tensor:
        errors = self.substitutions + self.deletions + self.insertions
        return errors.double() / self.ref_words.clamp(min=1).double()

    def counts(self) -> WordErrors:
        """The summed counts on this process (not synchronised)."""
        return WordErrors(int(self.substitutions), int(self.deletions), int(self.insertions), int(self.ref_words))
