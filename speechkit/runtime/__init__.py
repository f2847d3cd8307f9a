"""On-device runtime: numpy + onnxruntime only; what a phone app mirrors. Never imports torch.

* :mod:`speechkit.runtime.artifact`: ``ArtifactSpec`` and ``open_artifact``, the one place that
  opens an exported ONNX file and validates its names and metadata.
* :mod:`speechkit.runtime.classifier`: ``ClipClassifier``, any clip-classifier artifact
  (``kws``, ``scene``, ...): whole files, windowed and averaged.
* :mod:`speechkit.runtime.kws`: ``KwsModel`` (a ``kws`` clip classifier) and the streaming
  ``KeywordDetector`` (over either KWS artifact).
* :mod:`speechkit.runtime.kws_streaming`: ``StreamingKwsModel``, the stateful streaming KWS
  artifact (audio chunk and caches in, per-frame scores out).
* :mod:`speechkit.runtime.audio`: file / raw PCM sources, mixing and resampling of chunks.
* :mod:`speechkit.runtime.calibrate`: thresholds that meet a false-alarm budget.
* :mod:`speechkit.runtime.eval_stream`: recall and false alarms per hour, DET curve.
* :mod:`speechkit.runtime.mic`: microphone input (sounddevice, optional).

Example::

    from speechkit.runtime import KeywordDetector
    detector = KeywordDetector("kws.onnx")
    print(detector.accept_waveform(samples, 48000))
"""

from speechkit.runtime.artifact import Artifact, ArtifactSpec, open_artifact
from speechkit.runtime.classifier import CLIP_CLASSIFIER_SPEC, ClipClassifier
from speechkit.runtime.kws import KeywordDetector, KwsModel, keyword_labels, thresholds_path
from speechkit.runtime.kws_streaming import StreamingKwsModel

__all__ = [
    "CLIP_CLASSIFIER_SPEC", "Artifact", "ArtifactSpec", "ClipClassifier", "KeywordDetector", "KwsModel",
    "StreamingKwsModel", "keyword_labels", "open_artifact", "thresholds_path",
]
