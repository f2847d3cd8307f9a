"""On-device runtime: numpy + onnxruntime only; what a phone app mirrors. Never imports torch.

* :mod:`speechkit.runtime.model`: load and validate exported ONNX artifacts (``KwsModel``).
* :mod:`speechkit.runtime.kws`: the streaming ``KeywordDetector``.
* :mod:`speechkit.runtime.audio`: file / raw PCM sources, mixing and resampling of chunks.
* :mod:`speechkit.runtime.calibrate`: thresholds that meet a false-alarm budget.
* :mod:`speechkit.runtime.eval_stream`: recall and false alarms per hour, DET curve.
* :mod:`speechkit.runtime.mic`: microphone input (sounddevice, optional).

Example::

    from speechkit.runtime import KeywordDetector
    detector = KeywordDetector("kws.onnx")
    print(detector.accept_waveform(samples, 48000))
"""

from speechkit.runtime.kws import KeywordDetector, keyword_labels, thresholds_path
from speechkit.runtime.model import KwsModel, open_onnx

__all__ = ["KeywordDetector", "KwsModel", "keyword_labels", "open_onnx", "thresholds_path"]
