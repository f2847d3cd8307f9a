"""Decoding of model outputs, numpy only (shared by the torch side and the torch-free runtime).

* :mod:`.ctc_decoding`: CTC greedy and prefix beam search (incremental, with token frames),
  detokenisation from a token list, word times, and :func:`ctc_text`, the one
  log-probabilities-to-text rule behind every reported WER.
"""

from speechkit.decoding.ctc_decoding import (
    CTCGreedyDecoder,
    CTCHypothesis,
    CTCPrefixBeamDecoder,
    WordTime,
    ctc_greedy_search,
    ctc_prefix_beam_search,
    ctc_text,
    hypothesis_text,
    tokens_to_text,
    word_times,
)

__all__ = [
    "CTCGreedyDecoder", "CTCHypothesis", "CTCPrefixBeamDecoder", "WordTime", "ctc_greedy_search",
    "ctc_prefix_beam_search", "ctc_text", "hypothesis_text", "tokens_to_text", "word_times",
]
