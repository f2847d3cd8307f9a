"""Keyword spotting and clip classification networks.

All take front-end features ``(B, T, F)`` and return logits ``(B, num_classes)``.
"""

from speechkit.models.kws.bcresnet import BCRESNET_WIDTHS, BCResNet, bcresnet_preset
from speechkit.models.kws.bcresnet_mod import BCResNetMod

__all__ = ["BCRESNET_WIDTHS", "BCResNet", "BCResNetMod", "bcresnet_preset"]
