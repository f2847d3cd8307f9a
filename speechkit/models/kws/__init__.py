"""Keyword spotting and clip classification networks.

All take front-end features ``(B, T, F)`` and return logits ``(B, num_classes)``;
``extract_features(feats)`` gives the per-stage activations (:class:`ClassifierFeatures`).
:class:`StreamingBCResNet` also scores every frame (``frame_logits``) and streams with a state
(``initial_state``, ``streaming_forward``).
"""

from speechkit.models.kws.bcresnet import BCRESNET_WIDTHS, BCResNet, ClassifierFeatures, bcresnet_preset
from speechkit.models.kws.bcresnet_mod import BCResNetMod
from speechkit.models.kws.embedding_head import EmbeddingHead
from speechkit.models.kws.streaming import StreamingBCResNet

__all__ = ["BCRESNET_WIDTHS", "BCResNet", "BCResNetMod", "ClassifierFeatures", "EmbeddingHead", "StreamingBCResNet",
           "bcresnet_preset"]
