"""Self-supervised speech encoders: HuBERT (teacher) and its small students (issue 16).

* :mod:`.hubert`: :class:`HubertModel` (``forward``, ``extract_features`` -> :class:`SslFeatures`:
  post-CNN features, every layer's output and attention map), :class:`HubertConfig`.
* :mod:`.presets`: HuBERT Base, the STaRHuBERT students and the tiny configurations of the
  synthetic recipes, with their parameter counts pinned in tests.
* :mod:`.checkpoints`: loading fairseq and Hugging Face HuBERT files (:func:`load_hubert`).
"""

from speechkit.models.ssl.hubert import HubertConfig, HubertModel, SslFeatures
from speechkit.models.ssl.presets import PRESETS, hubert_preset

__all__ = ["HubertConfig", "HubertModel", "SslFeatures", "PRESETS", "hubert_preset"]
