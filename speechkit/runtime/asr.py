"""Speech recognition with the ASR ONNX artifacts (contract 7): numpy, onnxruntime, kaldi-native-fbank.

No torch: this is the code a phone app mirrors. Features come from kaldi-native-fbank's
``OnlineFbank`` with the options stored in the model (``feature``), exactly as the model was
trained on them (:class:`speechkit.frontends.Fbank` matches knf). The parts:

* :mod:`.asr_model`: the artifact specs, :class:`AsrModel` (opened with
  :func:`speechkit.runtime.artifact.open_artifact`), features, :class:`RecognitionResult`;
* :mod:`.chunking`: the frame constants and the one chunk schedule;
* :mod:`.asr_streaming`: :class:`StreamingRecognizer` (``asr-ctc-streaming``), with endpoints;
* :mod:`.asr_offline`: :class:`OfflineRecognizer` (``asr-ctc``) and :class:`AsrOnnxRecognizer`
  (either artifact for ``transcribe``/``eval-asr``);
* :func:`open_recognizer` (here): either recognizer, by the file's ``speechkit.task``.

Usage (sherpa-onnx verbs)::

    recognizer = StreamingRecognizer("asr.onnx", partials=True)
    for samples, rate in source:                   # any chunk size, rate, channel count
        for result in recognizer.accept_waveform(samples, rate):
            print(result.to_dict())                # {"time": 1.28, "text": "TURN ON", "final": false, ...}
    for result in recognizer.input_finished():
        print(result.to_dict())

Shapes: T feature frames, F bins, T' encoder frames, V units (blank = 0).
"""

from __future__ import annotations

import os

from speechkit.runtime.asr_model import (
    ASR_METADATA,
    ASR_SPECS,
    DECODINGS,
    OFFLINE_SPEC,
    OFFLINE_TASK,
    STREAMING_SPEC,
    STREAMING_TASK,
    AsrModel,
    RecognitionResult,
    compute_fbank,
    is_asr_onnx,
    streaming_log_probs,
)
from speechkit.runtime.asr_offline import AsrOnnxRecognizer, OfflineRecognizer
from speechkit.runtime.asr_streaming import DEFAULT_ENDPOINT, TAIL_PADDING_S, StreamingRecognizer
from speechkit.runtime.endpoint import EndpointConfig

__all__ = [
    "ASR_METADATA", "ASR_SPECS", "DECODINGS", "DEFAULT_ENDPOINT", "OFFLINE_SPEC", "OFFLINE_TASK", "STREAMING_SPEC",
    "STREAMING_TASK", "TAIL_PADDING_S", "AsrModel", "AsrOnnxRecognizer", "OfflineRecognizer", "RecognitionResult",
    "StreamingRecognizer", "compute_fbank", "is_asr_onnx", "open_recognizer", "streaming_log_probs",
]


def open_recognizer(
    path: str | os.PathLike,
    decoding: str = "greedy",
    beam_size: int = 4,
    endpoint: EndpointConfig | None = None,
    num_threads: int = 1,
) -> StreamingRecognizer | OfflineRecognizer:
    """The recognizer for either ASR artifact, by its ``speechkit.task``.

    Both have ``transcribe(samples, rate)`` and ``transcribe_file(path)`` returning a final
    :class:`RecognitionResult`; the streaming one decodes window by window, exactly as live.

    Args:
        endpoint: endpoint rules for the streaming artifact; ``None`` (default): each file is
            one utterance.

    Raises:
        ModelFileError: not an ASR artifact (the message names the task found and both accepted).
    """
    model = AsrModel(path, num_threads)
    if model.streaming:
        return StreamingRecognizer(model, decoding, beam_size, endpoint)
    return OfflineRecognizer(model, decoding, beam_size)
