"""Neural network modules, one sub-package per family.

* :mod:`speechkit.models.kws`: keyword spotting and clip classifiers (BC-ResNet, BC-ResNet-Mod).
* :mod:`speechkit.models.nn`: blocks shared between families (normalizations, ...).

Families never import each other; anything two families need lives in ``models/nn``.
Classifiers take front-end features ``(B, T, F)`` and return logits ``(B, num_classes)``;
sequence models follow ``forward(x, x_lens) -> (y, y_lens)`` (see ARCHITECTURE.md).
"""
