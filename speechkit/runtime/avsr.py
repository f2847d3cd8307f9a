"""Audio-visual recognition with the AVSR ONNX artifact (numpy, onnxruntime, kaldi-native-fbank; no torch).

The artifact (``speechkit export`` on an ``avsr`` checkpoint, :mod:`speechkit.export.avsr_export`)
takes ``audio_features`` float32 (B, 4 T, F), Kaldi filter-banks of 16 kHz audio computed with the
options in its ``feature`` metadata (``snip_edges: false``, so 640 T samples give exactly 4 T
frames), and ``video`` float32 (B, T, 88, 88), gray mouth ROIs in 0..255 at 25 fps; it returns
``log_probs`` (B, T, V), decoded greedily by the project's one text rule
(:func:`speechkit.decoding.ctc_text`). Reading an mp4 and cutting the mouth ROI are the data
layer's (:func:`speechkit.data.corpora.lrs.load_video_inputs`); this class takes arrays.

Usage::

    recognizer = AvsrRecognizer("avsr.onnx")
    text = recognizer.transcribe(audio_16k, rois)   # (640 T,) float32, (T, 88, 88) uint8
"""

from __future__ import annotations

import os

import numpy as np

from speechkit.decoding import ctc_text
from speechkit.errors import ModelFileError, SpeechkitError
from speechkit.runtime.artifact import ArtifactSpec, open_artifact

AVSR_TASK = "avsr"
AVSR_METADATA = ("tokens", "sample_rate", "feature", "fps", "roi_size", "model")
AVSR_SPEC = ArtifactSpec(kind="avsr", tasks=(AVSR_TASK,), inputs=("audio_features", "video"),
                         outputs=("log_probs",), metadata=AVSR_METADATA)


class AvsrRecognizer:
    """An AVSR artifact in an onnxruntime session.

    Attributes:
        tokens: units, blank first. sample_rate: Hz (16000). fps: video frames per second (25).
        roi_size: mouth-ROI side in pixels (88). samples_per_frame: ``sample_rate / fps``.

    Raises:
        ModelFileError: missing/corrupt file, not an AVSR artifact, malformed metadata.
    """

    def __init__(self, path: str | os.PathLike, num_threads: int = 1) -> None:
        self.artifact = open_artifact(path, [AVSR_SPEC], num_threads)
        self.path, self.session = self.artifact.path, self.artifact.session
        self.tokens = self.artifact.json("tokens", list, item=str)
        self.sample_rate = self.artifact.positive_int("sample_rate")
        self.fps = self.artifact.positive_int("fps")
        self.roi_size = self.artifact.positive_int("roi_size")
        self.feature_options = self.artifact.json("feature", dict)
        if self.sample_rate % self.fps:
            raise ModelFileError(f"{self.path}: sample_rate {self.sample_rate} is not a whole number of samples per frame")
        self.samples_per_frame = self.sample_rate // self.fps
        from speechkit.runtime.fbank_options import knf_options_from_dict

        try:
            self._knf = knf_options_from_dict(self.feature_options)
        except (ValueError, TypeError) as exc:
            raise ModelFileError(f"{self.path}: metadata 'feature' holds invalid fbank options ({exc})") from None

    def features(self, audio: np.ndarray) -> np.ndarray:
        """(S,) float32 at :attr:`sample_rate` -> (S / 160, F) kaldi-native-fbank features."""
        import kaldi_native_fbank as knf

        fbank = knf.OnlineFbank(self._knf)
        fbank.accept_waveform(self.sample_rate, np.ascontiguousarray(audio, dtype=np.float32))
        fbank.input_finished()
        return np.stack([fbank.get_frame(i) for i in range(fbank.num_frames_ready)]).astype(np.float32)

    def log_probs(self, audio: np.ndarray, rois: np.ndarray) -> np.ndarray:
        """(S,) audio and uint8 (T, roi, roi) ROIs -> (T, V) log-probabilities; the audio is cut or
        zero-padded to ``T * samples_per_frame`` samples first (one clock).

        Raises:
            SpeechkitError: no frames, or ROIs of the wrong size.
        """
        rois = np.asarray(rois)
        if rois.ndim != 3 or rois.shape[0] < 1 or rois.shape[1:] != (self.roi_size, self.roi_size):
            raise SpeechkitError(f"mouth ROIs of shape {rois.shape}; expected (T >= 1, {self.roi_size}, {self.roi_size})")
        target = rois.shape[0] * self.samples_per_frame
        audio = np.asarray(audio, np.float32)
        audio = audio[:target] if audio.size >= target else np.pad(audio, (0, target - audio.size))
        feats = self.features(audio)[None]
        video = rois.astype(np.float32)[None]
        return self.session.run(["log_probs"], {"audio_features": feats, "video": video})[0][0]

    def transcribe(self, audio: np.ndarray, rois: np.ndarray) -> str:
        """The text of one utterance (greedy CTC, :func:`speechkit.decoding.ctc_text`)."""
        return ctc_text(self.log_probs(audio, rois), self.tokens)
