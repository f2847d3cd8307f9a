"""Feature front-ends: LogMel, MFCC, Kaldi-compatible Fbank, SpecAugment, and the frozen
SpeechEmbedding (openWakeWord 0.4.0's ``speech_embedding``, trained on real speech).

All feature front-ends are pure-torch ``nn.Module``s with one contract::

    forward(audio (B, S) float32, audio_lens (B,) int64 | None = None)
        -> (feats (B, T, F) float32, feat_lens (B,) int64)

plus ``num_frames(num_samples) -> int``, ``feature_dim`` and ``config() -> dict``. They export
to ONNX inside a model graph with the dynamo exporter.

The classes are imported on first access (module ``__getattr__``), so that importing the
torch-free :mod:`speechkit.frontends.kaldi_options` -- which the numpy/onnxruntime runtime
does -- does not import torch through this package's ``__init__``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from speechkit.frontends.fbank import Fbank
    from speechkit.frontends.kaldi_options import fbank_options_dict, knf_options_from_dict
    from speechkit.frontends.specaugment import SpecAugment
    from speechkit.frontends.spectral import MFCC, LogMel
    from speechkit.frontends.speech_embedding import SpeechEmbedding

# public name -> submodule that defines it
_LAZY = {
    "LogMel": "spectral",
    "MFCC": "spectral",
    "Fbank": "fbank",
    "AstFbank": "fbank",
    "SpecAugment": "specaugment",
    "SpeechEmbedding": "speech_embedding",
    "fbank_options_dict": "kaldi_options",
    "knf_options_from_dict": "kaldi_options",
}

__all__ = [
    "MFCC", "AstFbank", "Fbank", "LogMel", "SpecAugment", "SpeechEmbedding", "fbank_options_dict", "knf_options_from_dict",
]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    globals()[name] = value  # cache: later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
