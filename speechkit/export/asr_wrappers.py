"""ASR export wrappers and the artifacts' metadata (docs/ARCHITECTURE.md contract 7).

The features stay outside the graph: a phone app computes them with kaldi-native-fbank's
``OnlineFbank`` from the options in the metadata, as sherpa-onnx apps do, and feeds the encoder
window by window (:class:`speechkit.runtime.chunking.ChunkSchedule`) with its states. Shapes:
T feature frames, F bins, T' encoder frames, V units.

**Streaming artifact** (``speechkit export CKPT asr.onnx --streaming --chunk-ms 320``):

====================  ========================================================================
input ``features``    float32 ``[1, frames, num_bins]``: one window, ``chunk_frames`` feature
                      frames (the chunk plus the subsampling's 3-frame right context); the
                      next call starts ``shift_frames`` later. The last window of an utterance
                      may be shorter (at least 7 frames; fewer give no output).
inputs ``cache_i``    float32, shapes ``state_shapes[i]``; zeros at the start of an utterance,
                      then the previous call's ``next_cache_i``.
output ``log_probs``  float32 ``[1, out_frames, vocab]``, CTC log-probabilities (40 ms frames;
                      ``out_frames = (frames - 3) // 4``: the chunk size for a full window).
outputs ``next_cache_i``  the states for the next call.
metadata              ``speechkit.task`` = ``asr-ctc-streaming``, ``tokens`` (JSON list in id
                      order, blank first), ``sample_rate``, ``feature`` (JSON of the Kaldi
                      fbank options, ``knf.FbankOptions.as_dict()`` layout, dither 0),
                      ``chunk_frames``, ``shift_frames``, ``subsampling``, ``state_shapes``
                      (JSON list of shapes), ``model`` (JSON), ``speechkit_version``; also
                      ``chunk_ms`` and ``left_chunks``; int8 files add ``quantization``.
====================  ========================================================================

**Full-context artifact** (``--full-context``): input ``features`` ``[1, frames, num_bins]`` of
a whole utterance (any length >= 7), output ``log_probs``; ``speechkit.task`` = ``asr-ctc``, the
same metadata with ``chunk_frames`` = ``shift_frames`` = 0 and ``state_shapes`` = ``[]``.
The runtime's :data:`~speechkit.runtime.asr_model.STREAMING_SPEC` and
:data:`~speechkit.runtime.asr_model.OFFLINE_SPEC` say the same in code.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import torch
from torch import Tensor, nn

import speechkit
from speechkit.runtime.asr_model import OFFLINE_TASK, STREAMING_TASK
from speechkit.runtime.chunking import SUBSAMPLING, ChunkSchedule


class AsrStreamingOnnxModel(nn.Module):
    """Export wrapper: one window of features and the states in, log-probabilities and states out.

    Args:
        encoder: a :class:`speechkit.models.asr.ConformerEncoder` (``streaming_forward``).
        ctc_head: (B, T', D) -> (B, T', V) log-probabilities.

    ``forward(features (1, T, F), cache_0, cache_1, cache_2) -> (log_probs (1, T', V),
    next_cache_0, next_cache_1, next_cache_2)`` (the state layout is documented in
    :mod:`speechkit.models.asr.conformer`); every frame of ``features`` is valid (the window
    length is the tensor's length).

    Example:
        >>> from speechkit.models.asr import ConformerEncoder, CTCHead
        >>> enc = ConformerEncoder(20, dim=32, num_layers=2, num_heads=2, ffn_dim=64).eval()
        >>> wrapper = AsrStreamingOnnxModel(enc, CTCHead(32, 11)).eval()
        >>> states = enc.init_states(1, chunk_size=4, left_chunks=2)
        >>> out = wrapper(torch.zeros(1, ChunkSchedule.for_chunk_size(4).chunk_frames, 20), *states)
        >>> tuple(out[0].shape), len(out)
        ((1, 4, 11), 4)
    """

    def __init__(self, encoder: nn.Module, ctc_head: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder
        self.ctc_head = ctc_head

    def forward(self, features: Tensor, cache_0: Tensor, cache_1: Tensor, cache_2: Tensor) -> tuple[Tensor, ...]:
        # Named arguments, not *caches: torch.export maps dynamic shapes onto the signature.
        # Three states: the ConformerEncoder's layout (attention, convolution, cached frames).
        feat_lens = torch.full((features.shape[0],), features.shape[1], dtype=torch.int64, device=features.device)
        enc_out, _, states = self.encoder.streaming_forward(features, feat_lens, [cache_0, cache_1, cache_2])
        return (self.ctc_head(enc_out), *states)


class AsrOfflineOnnxModel(nn.Module):
    """Export wrapper: features of a whole utterance -> full-context log-probabilities.

    ``forward(features (1, T, F)) -> log_probs (1, T', V)``, all frames valid.
    """

    def __init__(self, encoder: nn.Module, ctc_head: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder
        self.ctc_head = ctc_head

    def forward(self, features: Tensor) -> Tensor:
        feat_lens = torch.full((features.shape[0],), features.shape[1], dtype=torch.int64, device=features.device)
        enc_out, _ = self.encoder(features, feat_lens)
        return self.ctc_head(enc_out)


def encoder_config(encoder: nn.Module, ctc_head: nn.Module) -> dict:
    """The ``model`` metadata: class, sizes and parameter count of encoder + head."""
    config: dict = {"class": type(encoder).__name__, "head": type(ctc_head).__name__}
    layer = encoder.layers[0] if hasattr(encoder, "layers") and len(encoder.layers) else None
    for key in ("input_dim", "dim", "num_layers"):
        if isinstance(getattr(encoder, key, None), int):
            config[key] = getattr(encoder, key)
    if layer is not None:
        config["num_heads"] = layer.attn.num_heads
        config["ffn_dim"] = layer.ff1.net[1].out_features
        config["conv_kernel_size"] = layer.conv.depthwise.kernel_size[0]
    if hasattr(encoder, "subsampling"):
        config["subsampling_channels"] = encoder.subsampling.conv[0].out_channels
    config["vocab_size"] = int(ctc_head.proj.out_features) if hasattr(ctc_head, "proj") else None
    config["num_params"] = sum(p.numel() for p in encoder.parameters()) + sum(p.numel() for p in ctc_head.parameters())
    return config


def asr_metadata(
    encoder: nn.Module,
    ctc_head: nn.Module,
    tokens: Sequence[str],
    feature_options: dict,
    sample_rate: int,
    chunk_size: int = 0,
    left_chunks: int = 0,
) -> dict[str, str]:
    """The contract's ``metadata_props`` (all values strings).

    Args:
        encoder, ctc_head: the exported modules.
        tokens: units in id order, blank first.
        feature_options: ``Fbank.kaldi_options()``.
        sample_rate: Hz.
        chunk_size: encoder frames per chunk; 0 for the full-context artifact.
        left_chunks: chunks of left context kept in the attention cache (streaming).
    """
    streaming = chunk_size > 0
    schedule = ChunkSchedule.for_chunk_size(chunk_size) if streaming else None
    frame_shift_ms = float(feature_options["frame_opts"]["frame_shift_ms"])
    metadata = {
        "speechkit.task": STREAMING_TASK if streaming else OFFLINE_TASK,
        "tokens": json.dumps(list(tokens), ensure_ascii=False),
        "sample_rate": str(int(sample_rate)),
        "feature": json.dumps(feature_options),
        "chunk_frames": str(schedule.chunk_frames if schedule else 0),
        "shift_frames": str(schedule.shift_frames if schedule else 0),
        "subsampling": str(SUBSAMPLING),
        "state_shapes": json.dumps(
            [list(s.shape) for s in encoder.init_states(1, chunk_size, left_chunks)] if streaming else []
        ),
        "model": json.dumps(encoder_config(encoder, ctc_head)),
        "speechkit_version": speechkit.__version__,
    }
    if streaming:
        metadata["chunk_ms"] = str(round(chunk_size * SUBSAMPLING * frame_shift_ms))
        metadata["left_chunks"] = str(int(left_chunks))
    return metadata
