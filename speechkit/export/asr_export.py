"""ASR ONNX artifacts (ARCHITECTURE contract 7): streaming and full-context, parity, int8 gate.

The features stay outside the graph: a phone app computes them with kaldi-native-fbank's
``OnlineFbank`` from the options in the metadata, as sherpa-onnx apps do, and feeds the encoder
chunk by chunk with its states. Shapes: T feature frames, F bins, T' encoder frames, V units.

**Streaming artifact** (``speechkit export CKPT asr.onnx --streaming --chunk-ms 320``):

====================  ========================================================================
input ``features``    float32 ``[1, frames, num_bins]``: one chunk, ``chunk_frames`` feature
                      frames (the chunk plus the subsampling's 3-frame right context); the
                      next call starts ``shift_frames`` later. The last chunk of an utterance
                      may be shorter (at least 7 frames; fewer give no output).
inputs ``cache_i``    float32, shapes ``state_shapes[i]``; zeros at the start of an utterance,
                      then the previous call's ``next_cache_i``.
output ``log_probs``  float32 ``[1, out_frames, vocab]``, CTC log-probabilities (40 ms frames;
                      ``out_frames = (frames - 3) // 4``: the chunk size for a full chunk).
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

**Gates.** The export fails unless ONNX Runtime matches PyTorch within ``atol`` (1e-4) on every
output: for the streaming artifact chunk by chunk over a stream longer than the left context
plus a short last chunk, for the full-context one over several lengths. ``int8`` writes
``<stem>_int8.onnx`` by dynamic quantization of the weight matrices (MatMul) and refuses it
when the WER on a test manifest rises by more than 1 point (absolute) over fp32, unless forced.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

import speechkit
from speechkit.errors import ModelFileError, SpeechkitError
from speechkit.export.onnx_export import (
    check_mobile_usability,
    check_parity,
    convert_to_ort,
    export_onnx,
    file_size_text,
    read_metadata,
    write_metadata,
)
from speechkit.fileio import atomic_path

STREAMING_TASK = "asr-ctc-streaming"
OFFLINE_TASK = "asr-ctc"
#: ``task_name`` of the checkpoints exported here (:class:`speechkit.tasks.asr.AsrCtcTask`).
TRAINING_TASK = "asr-ctc"
#: Largest allowed WER rise of the int8 model, in percentage points (absolute).
MAX_INT8_WER_RISE_POINTS = 1.0
#: Default left context of the streaming artifact, in encoder frames (64 x 40 ms = 2.56 s, the
#: encoder's ``init_states`` default of 8 chunks of 8 frames).
DEFAULT_LEFT_CONTEXT_FRAMES = 64


class AsrStreamingOnnxModel(nn.Module):
    """Export wrapper: one chunk of features and the states in, log-probabilities and states out.

    Args:
        encoder: a :class:`speechkit.models.asr.ConformerEncoder` (``streaming_forward``).
        ctc_head: (B, T', D) -> (B, T', V) log-probabilities.

    ``forward(features (1, T, F), cache_0, cache_1, cache_2) -> (log_probs (1, T', V),
    next_cache_0, next_cache_1, next_cache_2)`` (the state layout is documented in
    :mod:`speechkit.models.asr.conformer`); every frame of ``features`` is valid (the chunk
    length is the tensor's length).

    Example:
        >>> from speechkit.models.asr import ConformerEncoder, CTCHead
        >>> enc = ConformerEncoder(20, dim=32, num_layers=2, num_heads=2, ffn_dim=64).eval()
        >>> wrapper = AsrStreamingOnnxModel(enc, CTCHead(32, 11)).eval()
        >>> states = enc.init_states(1, chunk_size=4, left_chunks=2)
        >>> out = wrapper(torch.zeros(1, enc.chunk_input_frames(4), 20), *states)
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


# -- metadata ----------------------------------------------------------------------------------


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
    from speechkit.models.asr.subsampling import SUBSAMPLING

    streaming = chunk_size > 0
    frame_shift_ms = float(feature_options["frame_opts"]["frame_shift_ms"])
    metadata = {
        "speechkit.task": STREAMING_TASK if streaming else OFFLINE_TASK,
        "tokens": json.dumps(list(tokens), ensure_ascii=False),
        "sample_rate": str(int(sample_rate)),
        "feature": json.dumps(feature_options),
        "chunk_frames": str(encoder.chunk_input_frames(chunk_size) if streaming else 0),
        "shift_frames": str(encoder.chunk_shift_frames(chunk_size) if streaming else 0),
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


def chunk_size_from_ms(chunk_ms: int, frame_shift_ms: float = 10.0) -> int:
    """Encoder frames per chunk of ``chunk_ms`` (a positive multiple of 4 feature frames).

    Raises:
        SpeechkitError: not a positive multiple of the encoder frame (40 ms).
    """
    from speechkit.models.asr.subsampling import SUBSAMPLING

    frame_ms = SUBSAMPLING * frame_shift_ms
    chunk_size = round(chunk_ms / frame_ms)
    if chunk_ms <= 0 or abs(chunk_size * frame_ms - chunk_ms) > 1e-6:
        raise SpeechkitError(f"--chunk-ms {chunk_ms}: expected a positive multiple of {frame_ms:g} ms, e.g. 320 or 640")
    return chunk_size


# -- export with parity --------------------------------------------------------------------------


def _random_features(encoder: nn.Module, frames: int, gen: np.random.Generator) -> np.ndarray:
    """(1, frames, F) features at the scale the encoder normalises to N(0, 1)."""
    mean = encoder.feat_mean.detach().cpu().numpy()
    std = 1.0 / encoder.feat_inv_std.detach().cpu().numpy()
    return (mean + std * gen.standard_normal((1, frames, len(mean)))).astype(np.float32)


def export_streaming(
    encoder: nn.Module,
    ctc_head: nn.Module,
    metadata: dict[str, str],
    path: str | os.PathLike,
    chunk_size: int,
    left_chunks: int,
    atol: float = 1e-4,
    seed: int = 0,
) -> float:
    """Export the streaming artifact and check it chunk by chunk against PyTorch.

    The parity stream has ``left_chunks + 3`` full chunks (so the attention cache fills and
    slides) and a short last chunk; each chunk's inputs are the states PyTorch carried. A
    second stream is a single 7-frame chunk. The file appears at ``path`` only if every
    output (log-probabilities and states) is within ``atol``.

    Returns:
        The largest absolute difference measured.

    Raises:
        ParityError: a difference above ``atol`` (the message gives it).
    """
    wrapper = AsrStreamingOnnxModel(encoder, ctc_head).to("cpu", torch.float32).eval()
    size, shift = encoder.chunk_input_frames(chunk_size), encoder.chunk_shift_frames(chunk_size)
    states = encoder.init_states(1, chunk_size, left_chunks)
    num_states = len(states)
    gen = np.random.default_rng(seed)
    example = torch.from_numpy(_random_features(encoder, size, gen))
    in_names = ["features"] + [f"cache_{i}" for i in range(num_states)]
    out_names = ["log_probs"] + [f"next_cache_{i}" for i in range(num_states)]
    stream = _random_features(encoder, shift * (left_chunks + 3) + size - 5, gen)
    inputs = []
    for start in range(0, stream.shape[1] - 6, shift):  # the last chunk is shorter
        feats = stream[:, start : start + size]
        inputs.append((feats, *[s.numpy() for s in states]))
        with torch.no_grad():
            states = list(wrapper(torch.from_numpy(feats), *states)[1:])
    fresh = [s.numpy() for s in encoder.init_states(1, chunk_size, left_chunks)]
    inputs.append((_random_features(encoder, 7, gen), *fresh))
    with atomic_path(path) as tmp:
        export_onnx(
            wrapper, (example, *encoder.init_states(1, chunk_size, left_chunks)), tmp, in_names, out_names,
            dynamic_shapes={"features": {1: "frames"}, "log_probs": {1: "out_frames"}}, metadata=metadata,
        )
        worst = check_parity(tmp, wrapper, inputs, atol=atol)
    return worst


def export_offline(
    encoder: nn.Module,
    ctc_head: nn.Module,
    metadata: dict[str, str],
    path: str | os.PathLike,
    lengths: Sequence[int] = (7, 61, 250),
    atol: float = 1e-4,
    seed: int = 0,
) -> float:
    """Export the full-context artifact, checked against PyTorch on utterances of ``lengths`` frames.

    Returns:
        The largest absolute log-probability difference.

    Raises:
        ParityError: a difference above ``atol``.
    """
    wrapper = AsrOfflineOnnxModel(encoder, ctc_head).to("cpu", torch.float32).eval()
    gen = np.random.default_rng(seed)
    example = torch.from_numpy(_random_features(encoder, 100, gen))
    with atomic_path(path) as tmp:
        export_onnx(
            wrapper, (example,), tmp, ["features"], ["log_probs"],
            dynamic_shapes={"features": {1: "frames"}, "log_probs": {1: "out_frames"}}, metadata=metadata,
        )
        worst = check_parity(tmp, wrapper, [(_random_features(encoder, n, gen),) for n in lengths], atol=atol)
    return worst


# -- int8 ----------------------------------------------------------------------------------------


def quantize_asr(fp32_path: str | os.PathLike, int8_path: str | os.PathLike) -> Path:
    """Dynamic int8 quantization of the weight matrices (MatMul), atomically.

    Weights become int8 (per tensor); activations are quantized on the fly per call, so no
    calibration data is needed (the usual choice for Transformer/Conformer encoders on CPU).
    Convolutions, LayerNorms and the softmax stay float.

    Returns:
        ``Path(int8_path)``; its metadata is the fp32 file's plus ``quantization``.
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    fp32_path, int8_path = Path(fp32_path), Path(int8_path)
    metadata = read_metadata(fp32_path)
    root = logging.getLogger()
    level = root.level
    # onnxruntime logs a root-logger warning recommending its pre-processing (shape inference and
    # graph optimisation), which matters for static QDQ quantization, not for MatMul weights.
    root.setLevel(logging.ERROR)
    try:
        with atomic_path(int8_path) as tmp:
            quantize_dynamic(
                str(fp32_path), str(tmp), op_types_to_quantize=["MatMul"], weight_type=QuantType.QInt8,
                per_channel=False, extra_options={"MatMulConstBOnly": True},
            )
            write_metadata(tmp, {**metadata, "quantization": "int8 dynamic, MatMul weights per tensor"})
    finally:
        root.setLevel(level)
    return int8_path


@dataclass
class Int8WerReport:
    """WER (fractions) of the fp32 and int8 artifacts on the same test utterances."""

    fp32_wer: float
    int8_wer: float
    num_utterances: int
    max_rise_points: float

    @property
    def rise_points(self) -> float:
        """WER added by quantization, in percentage points (negative: int8 is better)."""
        return 100.0 * (self.int8_wer - self.fp32_wer)

    @property
    def passed(self) -> bool:
        return self.rise_points <= self.max_rise_points + 1e-9

    def summary(self) -> str:
        return (
            f"WER on {self.num_utterances} test utterances: fp32 {100 * self.fp32_wer:.2f}%, int8 "
            f"{100 * self.int8_wer:.2f}% (rise {self.rise_points:.2f} points, limit {self.max_rise_points:.2f})"
        )

    def to_dict(self) -> dict:
        return {**asdict(self), "rise_points": self.rise_points, "passed": self.passed}


class Int8WerError(SpeechkitError):
    """The int8 model's WER rises more than allowed (and ``force`` was not given)."""


def onnx_wer(onnx_path: str | os.PathLike, test_manifest: str | os.PathLike) -> tuple[float, int]:
    """Corpus WER of an ASR artifact on a test set, decoded as ``speechkit eval-asr`` does.

    Args:
        onnx_path: streaming (decoded chunk by chunk with its states) or full-context artifact.
        test_manifest: lhotse cuts with transcripts, or a LibriSpeech subset folder.

    Returns:
        ``(wer, num_utterances)``.
    """
    from speechkit.inference.asr import read_eval_set, transcribe
    from speechkit.metrics.wer import corpus_word_errors
    from speechkit.runtime.asr import AsrOnnxRecognizer

    recognizer = AsrOnnxRecognizer(onnx_path)
    utterances = read_eval_set(test_manifest)
    texts, _ = transcribe(recognizer, [u.load(recognizer.sample_rate) for u in utterances])
    return corpus_word_errors([u.text for u in utterances], texts).wer, len(utterances)


def int8_gate(
    fp32_path: str | os.PathLike,
    int8_path: str | os.PathLike,
    test_manifest: str | os.PathLike,
    max_rise_points: float = MAX_INT8_WER_RISE_POINTS,
    force: bool = False,
    wer_fn: Callable[[str | os.PathLike, str | os.PathLike], tuple[float, int]] | None = None,
) -> Int8WerReport:
    """Compare fp32 and int8 WER on the same test set; refuse a large rise.

    Args:
        wer_fn: ``(model, test set) -> (wer, utterances)``; default :func:`onnx_wer`.

    Raises:
        Int8WerError: the rise exceeds ``max_rise_points`` and ``force`` is False.
    """
    wer_fn = wer_fn or onnx_wer
    fp32_wer, count = wer_fn(fp32_path, test_manifest)
    int8_wer, _ = wer_fn(int8_path, test_manifest)
    report = Int8WerReport(fp32_wer, int8_wer, count, max_rise_points)
    if not report.passed and not force:
        raise Int8WerError(
            f"{int8_path}: int8 quantization costs too much accuracy: {report.summary()}; not written. "
            "Pass --force to keep it anyway"
        )
    return report


# -- the command ---------------------------------------------------------------------------------


def _task_parts(task) -> tuple[nn.Module, nn.Module, nn.Module, list[str], int]:
    """(encoder, ctc_head, frontend, tokens, sample_rate) of an ``AsrCtcTask``."""
    encoder, head, frontend = task.encoder, task.ctc_head, task.frontend
    if not hasattr(encoder, "streaming_forward"):
        raise ModelFileError(f"the checkpoint's encoder ({type(encoder).__name__}) has no streaming_forward; cannot export it")
    if not hasattr(frontend, "kaldi_options"):
        raise ModelFileError(
            f"the checkpoint's front-end is {type(frontend).__name__}; the ASR artifact needs the Kaldi "
            "fbank (speechkit.frontends.Fbank), whose options the runtime gives kaldi-native-fbank"
        )
    return encoder, head, frontend, task.tokenizer.tokens(), int(task.sample_rate)


def export_asr_task(
    task,
    out_path: str | os.PathLike,
    streaming: bool = True,
    chunk_ms: int = 320,
    int8: bool = False,
    force: bool = False,
    ort: bool = False,
    test_manifest: str | os.PathLike | None = None,
    left_chunks: int | None = None,
    atol: float = 1e-4,
    max_wer_rise_points: float = MAX_INT8_WER_RISE_POINTS,
) -> dict:
    """Export an ``AsrCtcTask`` to the streaming or full-context artifact (+ int8, + ORT).

    Args:
        task: the task (eval mode; moved to CPU float32).
        out_path: the ``.onnx`` file; int8 goes to ``<stem>_int8.onnx`` beside it.
        streaming: streaming artifact (else full context).
        chunk_ms: streaming chunk (a multiple of 40 ms).
        int8: also write the dynamically quantized model, gated on WER.
        force: keep the int8 model even if it fails the gate (or with no test manifest).
        ort: also write the ORT mobile format of every written model.
        test_manifest: cuts (or a LibriSpeech folder) for the int8 gate; ``None``: the first
            test (else validation) manifest of the checkpoint's data module that exists.
        left_chunks: chunks of left context in the streaming cache; ``None``: 2.56 s
            (:data:`DEFAULT_LEFT_CONTEXT_FRAMES`).
        atol: parity tolerance on the outputs.
        max_wer_rise_points: int8 gate limit.

    Returns:
        A JSON-ready report: ``path``, ``task``, ``size_bytes``, ``parity_max_diff``, the
        chunking (streaming), ``int8`` (path, size, WERs, or None) and ``ort`` (paths).

    Raises:
        ParityError, Int8WerError, SpeechkitError (bad options), ModelFileError (not exportable).
    """
    encoder, head, frontend, tokens, sample_rate = _task_parts(task)
    encoder, head = encoder.to("cpu", torch.float32).eval(), head.to("cpu", torch.float32).eval()
    feature_options = frontend.kaldi_options()
    out_path = Path(out_path)
    if out_path.suffix != ".onnx":
        raise SpeechkitError(f"{out_path}: the output file name must end in .onnx")
    manifest = test_manifest if test_manifest is not None else _default_test_manifest(task)
    if int8 and manifest is None and not force:  # before the export, which takes a while
        raise SpeechkitError("--int8 checks the WER on test audio: pass --test-manifest, or --force to skip the check")
    report: dict = {"path": str(out_path)}
    if streaming:
        chunk_size = chunk_size_from_ms(chunk_ms, float(feature_options["frame_opts"]["frame_shift_ms"]))
        if left_chunks is None:
            left_chunks = max(1, DEFAULT_LEFT_CONTEXT_FRAMES // chunk_size)
        if left_chunks < 1:
            raise SpeechkitError(f"left chunks {left_chunks}: expected 1 or more (the attention cache is bounded)")
        metadata = asr_metadata(encoder, head, tokens, feature_options, sample_rate, chunk_size, left_chunks)
        report["parity_max_diff"] = export_streaming(encoder, head, metadata, out_path, chunk_size, left_chunks, atol)
        report.update(chunk_ms=int(metadata["chunk_ms"]), left_chunks=left_chunks,
                      chunk_frames=int(metadata["chunk_frames"]), shift_frames=int(metadata["shift_frames"]))
    else:
        metadata = asr_metadata(encoder, head, tokens, feature_options, sample_rate)
        report["parity_max_diff"] = export_offline(encoder, head, metadata, out_path, atol=atol)
    report.update(task=metadata["speechkit.task"], size_bytes=out_path.stat().st_size, atol=atol, int8=None, ort=[])
    written = [out_path]
    if int8:
        report["int8"] = write_int8(out_path, manifest, force, max_wer_rise_points)
        written.append(Path(report["int8"]["path"]))
    if ort:
        report["ort"] = [str(convert_to_ort(p)) for p in written]
        report["mobile_usability"] = check_mobile_usability(out_path).summary()
    return report


def _default_test_manifest(task) -> Path | None:
    """The first existing test (else validation) manifest the checkpoint's data module names."""
    from speechkit.data.manifests import cuts_path

    config = getattr(task, "datamodule_config", None) or {}
    candidates = [Path(m) for key in ("test_manifests", "valid_manifests") for m in (config.get(key) or [])]
    if config.get("manifest_dir"):
        candidates.append(cuts_path(config["manifest_dir"], "test"))
    return next((c for c in candidates if c.is_file()), None)


def write_int8(
    out_path: Path, test_manifest: str | os.PathLike | None, force: bool = False,
    max_rise_points: float = MAX_INT8_WER_RISE_POINTS,
) -> dict:
    """Quantize ``out_path`` to ``<stem>_int8.onnx`` if it passes :func:`int8_gate` (or ``force``).

    Returns:
        ``{"path", "size_bytes", "gate": Int8WerReport.to_dict() | None, "forced"}``.

    Raises:
        Int8WerError: the gate failed (nothing written); SpeechkitError: no test set, no force.
    """
    out_path = Path(out_path)
    if test_manifest is None and not force:
        raise SpeechkitError("--int8 checks the WER on test audio: pass --test-manifest, or --force to skip the check")
    int8_path = out_path.with_name(f"{out_path.stem}_int8.onnx")
    with tempfile.TemporaryDirectory(dir=out_path.parent) as scratch:
        candidate = quantize_asr(out_path, Path(scratch) / int8_path.name)
        gate = None
        if test_manifest is not None:
            try:
                gate = int8_gate(out_path, candidate, test_manifest, max_rise_points, force=force)
            except Int8WerError as exc:
                raise Int8WerError(str(exc).replace(str(candidate), str(int8_path))) from None
        with atomic_path(int8_path) as tmp:
            shutil.copyfile(candidate, tmp)
    return {"path": str(int8_path), "size_bytes": int8_path.stat().st_size,
            "gate": gate.to_dict() if gate is not None else None, "forced": bool(force and (gate is None or not gate.passed))}


def export_asr(
    ckpt_path: str | os.PathLike,
    out_path: str | os.PathLike,
    streaming: bool = True,
    chunk_ms: int = 320,
    int8: bool = False,
    force: bool = False,
    ort: bool = False,
    test_manifest: str | os.PathLike | None = None,
    **kwargs,
) -> dict:
    """:func:`export_asr_task` for a ``speechkit fit`` checkpoint of an ``asr-ctc`` task."""
    from speechkit.tasks import load_task

    task = load_task(ckpt_path, expected=(TRAINING_TASK,))
    return export_asr_task(task, out_path, streaming, chunk_ms, int8, force, ort, test_manifest, **kwargs)


def format_report(report: dict) -> list[str]:
    """Human-readable lines of an :func:`export_asr_task` report."""
    path = Path(report["path"])
    what = (f"streaming, {report['chunk_ms']} ms chunks ({report['chunk_frames']} feature frames every "
            f"{report['shift_frames']}), {report['left_chunks']} left chunks" if report["task"] == STREAMING_TASK
            else "full context")
    first = (f"wrote {path} ({file_size_text(path)}; {report['task']}: {what}); parity with PyTorch: "
             f"max |diff| {report['parity_max_diff']:.2g} (limit {report['atol']:g})")
    lines = [first]
    int8 = report.get("int8")
    if int8:
        gate = int8["gate"]
        if gate is None:
            lines.append("warning: int8 WER not checked (no test manifest; --force)")
        else:
            lines.append(f"int8 {Int8WerReport(gate['fp32_wer'], gate['int8_wer'], gate['num_utterances'], gate['max_rise_points']).summary()}")
            if not gate["passed"]:
                lines.append("warning: int8 model fails the WER gate; kept because of --force")
        lines.append(f"wrote {int8['path']} ({file_size_text(int8['path'])}, "
                     f"{100 * int8['size_bytes'] / max(report['size_bytes'], 1):.0f}% of fp32)")
    for ort_path in report.get("ort", []):
        lines.append(f"wrote {ort_path} ({file_size_text(ort_path)})")
    if "mobile_usability" in report:
        lines.append(f"mobile usability ({path.name}): {report['mobile_usability']}")
    return lines


def export_asr_command(task, args) -> int:
    """The ``asr-ctc`` exporter of ``speechkit export`` (``fn(task, args)``, see export_cmd)."""
    report = export_asr_task(
        task, args.output, streaming=not getattr(args, "full_context", False),
        chunk_ms=getattr(args, "chunk_ms", 320), int8=args.int8, force=args.force, ort=args.ort,
        test_manifest=args.test_manifest, left_chunks=getattr(args, "left_chunks", None),
        atol=args.atol, max_wer_rise_points=getattr(args, "max_int8_drop", MAX_INT8_WER_RISE_POINTS),
    )
    for line in format_report(report):
        print(line)
    return 0
