"""Keyword spotting and clip classification networks.

All take front-end features ``(B, T, F)`` and return logits ``(B, num_classes)``;
``extract_features(feats)`` gives the per-stage activations (:class:`ClassifierFeatures`).
"""

from speechkit.models.kws.bcresnet import BCRESNET_WIDTHS, BCResNet, ClassifierFeatures, bcresnet_preset
from speechkit.models.kws.bcresnet_mod import BCResNetMod

__all__ = ["BCRESNET_WIDTHS", "BCResNet", "BCResNetMod", "ClassifierFeatures", "bcresnet_preset"]
