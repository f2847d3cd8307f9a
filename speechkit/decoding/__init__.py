"""Decoding of model outputs, numpy only (shared by the torch side and the torch-free runtime).

* :mod:`.ctc_decoding`: CTC greedy and prefix beam search (incremental, with token frames),
  detokenisation from a token list, and word times.
"""

from speechkit.decoding.ctc_decoding import (
    CTCGreedyDecoder,
    CTCHypothesis,
    CTCPrefixBeamDecoder,
    WordTime,
    ctc_greedy_search,
    ctc_prefix_beam_search,
    hypothesis_text,
    tokens_to_text,
    word_times,
)

__all__ = [
    "CTCGreedyDecoder", "CTCHypothesis", "CTCPrefixBeamDecoder", "WordTime", "ctc_greedy_search",
    "ctc_prefix_beam_search", "hypothesis_text", "tokens_to_text", "word_times",
]
