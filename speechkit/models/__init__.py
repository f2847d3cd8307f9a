"""Neural network modules, one sub-package per family.

* :mod:`speechkit.models.kws`: keyword spotting and clip classifiers (BC-ResNet, BC-ResNet-Mod).
* :mod:`speechkit.models.nn`: blocks shared between families (normalizations, ...).

Families never import each other; anything two families need lives in ``models/nn``.
Classifiers take front-end features ``(B, T, F)`` and return logits ``(B, num_classes)``;
sequence models follow ``forward(x, x_lens) -> (y, y_lens)`` (see docs/ARCHITECTURE.md).
``forward`` has that one return type; per-layer activations (hidden states, attention Q, K, V
for distillation) come from ``extract_features(...)``, which returns a small dataclass
(:class:`~speechkit.models.asr.EncoderFeatures`, :class:`~speechkit.models.kws.ClassifierFeatures`).
"""
