"""Streaming ASR: a chunk-masked Conformer encoder with a CTC head.

* :mod:`.conformer`: :class:`ConformerEncoder` (``forward``, the cached ``streaming_forward``,
  whose state layout is documented there, and ``extract_features`` -> :class:`EncoderFeatures`,
  the per-layer outputs and Q, K, V for distillation) and the presets ``xs``, ``s``, ``m``.
* :mod:`.subsampling`: convolutional subsampling x4 and its length formula.
* :mod:`.attention`: rotary multi-head self-attention (``project`` gives its Q, K, V).
* :mod:`.masks`: chunk and padding masks, and dynamic chunk training (:class:`DynamicChunk`).
* :mod:`.ctc`: :class:`CTCHead`.
"""

from speechkit.models.asr.conformer import (
    PRESETS,
    ConformerEncoder,
    ConformerLayer,
    EncoderFeatures,
    conformer_m,
    conformer_s,
    conformer_xs,
)
from speechkit.models.asr.ctc import CTCHead
from speechkit.models.asr.masks import DynamicChunk, attention_mask, chunk_mask
from speechkit.models.asr.subsampling import Conv2dSubsampling4, output_lengths

__all__ = [
    "PRESETS", "ConformerEncoder", "ConformerLayer", "EncoderFeatures", "conformer_xs", "conformer_s", "conformer_m",
    "CTCHead", "DynamicChunk", "attention_mask", "chunk_mask", "Conv2dSubsampling4", "output_lengths",
]
