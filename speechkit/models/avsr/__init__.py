"""Audio-visual speech recognition with video temporal dynamics (issue 18; docs/methods/avsr.md).

* :mod:`.frontends`: :class:`AudioFrontend` (fbank stacked to 25 Hz), :class:`VisualFrontend`
  (3D convolution + 2D ResNet trunk over mouth ROIs).
* :mod:`.xmodal`: :class:`XmodalStream`, the V2A and A2V cross-modal attention streams.
* :mod:`.temporal`: :class:`TemporalDynamicsHeads` (context order, playback direction, speed).
* :mod:`.model`: :class:`AvsrModel` (fusion, Conformer layers, CTC; audio-only / concat / cross-modal).
"""

from speechkit.models.avsr.frontends import AudioFrontend, VisualFrontend
from speechkit.models.avsr.model import MODALITIES, AvsrModel
from speechkit.models.avsr.temporal import TemporalDynamicsHeads
from speechkit.models.avsr.xmodal import SimpleAttention, XmodalStream

__all__ = ["AudioFrontend", "VisualFrontend", "AvsrModel", "MODALITIES", "TemporalDynamicsHeads",
           "SimpleAttention", "XmodalStream"]
