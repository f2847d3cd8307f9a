"""Using trained models (torch side): load a checkpoint or artifact, transcribe, evaluate.

* :mod:`speechkit.inference.asr`: recognizers for checkpoints and ONNX artifacts, ``transcribe``,
  ``evaluate`` (WER and RTF of a test set).

Training lives in :mod:`speechkit.tasks`; the torch-free streaming runtime in :mod:`speechkit.runtime`.
"""
