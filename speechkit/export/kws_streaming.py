"""Export a ``StreamingKwsTask``: the fixed-window clip artifact and the stateful streaming one.

``speechkit export CKPT kws.onnx`` on a :class:`~speechkit.tasks.kws_stream.StreamingKwsTask`
checkpoint writes

* ``kws.onnx``: the clip-classifier artifact (contract 6) through
  :func:`speechkit.export.clip_classifier.export_clip_artifacts`, so ``--int8``, ``--ort``, the
  accuracy gate, ``speechkit classify`` and the windowed detector keep working (the clip logits
  of a streaming network are its pooled score at the clip's last frame);
* ``kws_stream.onnx``: the stateful artifact of :mod:`speechkit.runtime.kws_streaming` (audio
  chunk and caches in, per-frame logits and next caches out; the contract is in that module and
  in ``export/README.md``), parity-checked as the runtime uses it: onnxruntime carrying its own
  caches and PyTorch carrying its own run side by side over a 7.3 s stream cut into odd
  numbers of frames, and every call's logits must agree within ``atol`` (caches within ``atol``
  relative to their scale: they are inner activations of up to ~10-100, where float32
  rounding of different kernels differs by more than 1e-4 in absolute terms).

The front-end runs inside the stateful graph on the new audio plus the cached last
``n_fft - hop`` samples (``cache_0``), so it must not centre its frames (``center=False``).
The module registers the ``kws-streaming`` exporter for ``StreamingKwsTask`` at import.

Shapes: S samples, N frames, F bins, C classes.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import Tensor, nn

import speechkit
from speechkit.errors import ModelFileError, SpeechkitError
from speechkit.export.artifact import ExportResult, export_artifact
from speechkit.export.clip_classifier import (
    CLIP_GATE,
    ClipExportOptions,
    clip_metadata,
    export_clip_artifacts,
    random_audio,
    task_sample_rate,
)
from speechkit.export.onnx_export import ParityError, convert_to_ort
from speechkit.export.registry import Exporter, register_exporter
from speechkit.fileio import atomic_path
from speechkit.runtime.kws_streaming import STREAMING_KEY, STREAMING_KWS_SPEC

#: Seconds of audio in the parity stream, and the frames of each call (odd sizes, cycled).
PARITY_SECONDS = 7.3
PARITY_CALL_FRAMES = (1, 7, 3, 13, 32, 5, 11)


def stream_path(clip_path: str | os.PathLike) -> Path:
    """``kws.onnx`` -> ``kws_stream.onnx`` (where the stateful artifact goes)."""
    clip_path = Path(clip_path)
    return clip_path.with_name(f"{clip_path.stem}_stream{clip_path.suffix or '.onnx'}")


def frontend_geometry(frontend: nn.Module) -> tuple[int, int]:
    """``(n_fft, hop_length)`` of an uncentred front-end.

    Raises:
        ModelFileError: the front-end centres its frames, lacks ``n_fft``/``hop_length``, or
            has no overlap to carry (``n_fft <= hop_length``).
    """
    name = type(frontend).__name__
    n_fft, hop = getattr(frontend, "n_fft", None), getattr(frontend, "hop_length", None)
    if not isinstance(n_fft, int) or not isinstance(hop, int):
        raise ModelFileError(f"the stateful KWS artifact needs a framed front-end (n_fft, hop_length); {name} has none")
    if getattr(frontend, "center", False):
        raise ModelFileError(
            f"the checkpoint's front-end ({name}) centres its frames (center=True), which looks half a window ahead; "
            "the stateful artifact needs center=False (retrain with the streaming recipe)"
        )
    if n_fft <= hop:
        raise ModelFileError(f"front-end n_fft {n_fft} <= hop_length {hop}: no overlap to carry between calls")
    return n_fft, hop


class DftLogMel(nn.Module):
    """:class:`~speechkit.frontends.LogMel` (``center=False``, power 2) with its STFT as two matmuls.

    onnxruntime's ``STFT``/``DFT`` kernels cost ~10 us a frame at one thread, more than the
    whole streaming network; a dense DFT as a ``MatMul`` costs ~4.5 us, and one radix-2
    decimation-in-frequency step first halves that again: with ``y`` the windowed frame,
    even bins are the half-length DFT of ``y[:n/2] + y[n/2:]``, odd bins that of
    ``y[:n/2] - y[n/2:]`` against odd-bin twiddles. The power and the mel projection are one
    matmul of the squared [real, imaginary] parts with the mel matrix's rows repeated in that
    order (few graph nodes: onnxruntime's cost here is mostly per node). Same features as the
    original to float rounding (the export's parity check runs against the original front-end).

    Args:
        frontend: the trained ``LogMel`` (its window, mel matrix and log floor are copied).

    Shape:
        audio ``(B, S)`` -> feats ``(B, 1 + (S - n_fft) // hop, n_mels)``, S >= n_fft.

    Example:
        >>> from speechkit.frontends import LogMel
        >>> fe = LogMel(center=False)
        >>> audio = torch.randn(1, 352 + 7 * 160)
        >>> bool(torch.allclose(DftLogMel(fe)(audio), fe(audio)[0], atol=1e-4))
        True
    """

    def __init__(self, frontend: nn.Module) -> None:
        super().__init__()
        n = frontend.n_fft
        half, bins = n // 2, n // 2 + 1
        self.n_fft, self.half, self.hop, self.log_floor = n, half, frontend.hop_length, frontend.log_floor
        if n > 2**15:
            raise ModelFileError(f"DftLogMel: n_fft {n} is too large for its int16 phase tables")
        t = torch.arange(half)[:, None]
        # The DFT bases are stored as int16 phase indices t * k mod n (a quarter of the bytes of
        # float32 bases); cos/sin of them are constants that onnxruntime folds when it loads.
        self.register_buffer("even_phase", (t * torch.arange(0, bins, 2)[None] % n).to(torch.int16))
        self.register_buffer("odd_phase", (t * torch.arange(1, bins, 2)[None] % n).to(torch.int16))
        self.register_buffer("window", frontend.window.detach().clone())
        self.register_buffer("mel_fb", frontend.mel_fb.detach().clone())

    def forward(self, audio: Tensor) -> Tensor:
        """audio (B, S) -> log-mel (B, N, n_mels)."""
        y = audio.unfold(1, self.n_fft, self.hop) * self.window  # (B, N, n_fft)
        first, second = y[..., : self.half], y[..., self.half :]
        spec = torch.cat([(first + second) @ self._basis(self.even_phase),
                          (first - second) @ self._basis(self.odd_phase)], dim=-1)
        even_mel, odd_mel = self.mel_fb[0::2], self.mel_fb[1::2]  # rows of the even / odd bins
        # |X|^2 @ mel = [re^2, im^2] @ [mel; mel], for the even then the odd bins
        mel = torch.cat([even_mel, even_mel, odd_mel, odd_mel])
        return torch.log((spec * spec) @ mel + self.log_floor)

    def _basis(self, phase: Tensor) -> Tensor:
        """(half, 2K) ``[cos | -sin]`` of ``exp(-2 pi i * phase / n)``."""
        angle = phase.to(torch.float32) * (2 * np.pi / self.n_fft)
        return torch.cat([torch.cos(angle), -torch.sin(angle)], dim=1)


def graph_frontend(frontend: nn.Module) -> nn.Module | None:
    """The :class:`DftLogMel` twin of an uncentred power-2 ``LogMel``; ``None`` for other front-ends."""
    from speechkit.frontends import LogMel

    if isinstance(frontend, LogMel) and not frontend.center and frontend.power == 2.0:
        return DftLogMel(frontend)
    return None


class KwsStreamingOnnxModel(nn.Module):
    """Export wrapper: ``(audio, cache_0, cache_1, ...) -> (logits, next_cache_0, ...)``.

    ``cache_0`` ``(1, n_fft - hop)`` holds the last samples of the audio fed so far (zeros at the
    start), the rest are the network's ``initial_state(1)``. The front-end runs on
    ``cat(cache_0, audio)``: ``N * hop`` new samples give exactly ``N`` new frames.

    The graph input names are the forward's argument names, so the instance gets a forward
    whose signature lists ``cache_0 ... cache_K`` (the count depends on the network).

    Args:
        frontend: uncentred ``forward(audio (B, S)) -> (feats (B, N, F), lens)``.
        model: a network with ``initial_state`` and ``streaming_forward``.
        fast_frontend: compute a ``LogMel`` front-end with :class:`DftLogMel` (same features,
            about a third of the CPU in onnxruntime); off, the front-end runs as it is.

    Example:
        >>> from speechkit.frontends import LogMel
        >>> from speechkit.models.kws import StreamingBCResNet
        >>> wrapper = KwsStreamingOnnxModel(LogMel(center=False), StreamingBCResNet(num_classes=3)).eval()
        >>> out = wrapper(torch.zeros(1, 3 * 160), *wrapper.initial_caches())
        >>> out[0].shape, len(out) == 1 + len(wrapper.initial_caches())
        (torch.Size([1, 3, 3]), True)
    """

    def __init__(self, frontend: nn.Module, model: nn.Module, fast_frontend: bool = False) -> None:
        super().__init__()
        self.n_fft, self.hop = frontend_geometry(frontend)
        self.frontend = frontend
        self.dft_frontend = graph_frontend(frontend) if fast_frontend else None
        self.model = model
        self.carry = self.n_fft - self.hop
        num_caches = len(self.initial_caches())
        params = [inspect.Parameter("audio", inspect.Parameter.POSITIONAL_OR_KEYWORD)] + [
            inspect.Parameter(f"cache_{i}", inspect.Parameter.POSITIONAL_OR_KEYWORD) for i in range(num_caches)
        ]

        def forward(*inputs: Tensor) -> tuple[Tensor, ...]:
            return self.step(inputs[0], list(inputs[1:]))

        forward.__signature__ = inspect.Signature(params)  # what torch.export binds names with
        self.forward = forward

    def initial_caches(self) -> list[Tensor]:
        """Zero caches of a fresh stream: the audio carry, then the network's state."""
        param = next(self.model.parameters())
        return [param.new_zeros(1, self.carry)] + list(self.model.initial_state(1))

    def step(self, audio: Tensor, caches: list[Tensor]) -> tuple[Tensor, ...]:
        """audio (1, N * hop), caches -> (logits (1, N, C), *next caches)."""
        ext = torch.cat([caches[0], audio], dim=1)
        # (1, N, F): frame i ends at sample (i + 1) * hop of `audio`
        feats = self.dft_frontend(ext) if self.dft_frontend is not None else self.frontend(ext)[0]
        logits, state = self.model.streaming_forward(feats, caches[1:])
        return (logits, ext[:, -self.carry :], *state)


def streaming_metadata(
    frontend: nn.Module, model: nn.Module, labels: Sequence[str], sample_rate: int, clip_samples: int,
    caches: Sequence[Tensor], model_config: dict | None = None,
) -> dict[str, str]:
    """The stateful artifact's ``metadata_props`` (see :mod:`speechkit.runtime.kws_streaming`)."""
    n_fft, hop = frontend_geometry(frontend)
    base = clip_metadata("kws", frontend, model, labels, sample_rate, clip_samples, model_config)
    names = ["audio"] + (model.state_names() if hasattr(model, "state_names") else
                         [f"state_{i}" for i in range(len(caches) - 1)])
    return {
        "speechkit.task": "kws",
        STREAMING_KEY: "1",
        "labels": base["labels"],
        "sample_rate": base["sample_rate"],
        "hop_length": str(hop),
        "frame_length": str(n_fft),
        "window_frames": str(int(model.window_frames)),
        "clip_samples": base["clip_samples"],
        "state_shapes": json.dumps([list(c.shape) for c in caches]),
        "state_names": json.dumps(names),
        "frontend": base["frontend"],
        "model": base["model"],
        "speechkit_version": speechkit.__version__,
    }


def export_streaming_kws(
    frontend: nn.Module,
    model: nn.Module,
    labels: Sequence[str],
    sample_rate: int,
    clip_samples: int,
    path: str | os.PathLike,
    atol: float = 1e-4,
    seed: int = 0,
    model_config: dict | None = None,
    ort: bool = False,
) -> ExportResult:
    """Export the stateful artifact, checked over a stream against the PyTorch streaming forward.

    The parity stream is :data:`PARITY_SECONDS` of noise at several loudness levels with a
    stretch of digital silence, fed in calls of :data:`PARITY_CALL_FRAMES` frames to
    onnxruntime and to PyTorch, each carrying its own caches (:func:`check_stream_parity`).
    The file appears at ``path`` only if every call agrees. The graph computes a ``LogMel``
    front-end with :class:`DftLogMel`; the PyTorch reference runs the original front-end.

    Returns:
        :class:`ExportResult` whose ``max_abs_diff`` is the largest logit difference.

    Raises:
        ModelFileError: a centred front-end or a network without ``streaming_forward``.
        ParityError: an output differs by more than ``atol``.
        SpeechkitError: the model's output count differs from the number of labels.
    """
    if not hasattr(model, "streaming_forward"):
        raise ModelFileError(f"{type(model).__name__} has no streaming_forward; it cannot be exported as a stateful artifact")
    reference = KwsStreamingOnnxModel(frontend, model).to("cpu", torch.float32).eval()
    wrapper = KwsStreamingOnnxModel(frontend, model, fast_frontend=True).to("cpu", torch.float32).eval()
    caches = wrapper.initial_caches()
    num_classes = int(getattr(model, "num_classes", len(labels)))
    if labels and len(labels) != num_classes:
        raise SpeechkitError(f"the model has {num_classes} outputs but {len(labels)} labels {list(labels)}")
    metadata = streaming_metadata(frontend, model, labels, sample_rate, clip_samples, caches, model_config)
    stream = _parity_stream(np.random.default_rng(seed), int(PARITY_SECONDS * sample_rate), wrapper.hop)
    example = torch.from_numpy(stream[None, : 10 * wrapper.hop])
    num = len(caches)
    path = Path(path)
    with atomic_path(path) as tmp:
        # export_artifact checks metadata and names; the parity that matters is the stream's below.
        export_artifact(
            wrapper, (example, *caches), tmp, STREAMING_KWS_SPEC, metadata, parity_inputs=[],
            dynamic_shapes={"audio": {1: "samples"}, "logits": {1: "frames"}},
            input_names=["audio"] + [f"cache_{k}" for k in range(num)],
            output_names=["logits"] + [f"next_cache_{k}" for k in range(num)],
        )
        worst = check_stream_parity(tmp, reference, stream, PARITY_CALL_FRAMES, atol)
    return ExportResult(path, worst, convert_to_ort(path) if ort else None)


def check_stream_parity(
    onnx_path: str | os.PathLike, wrapper: KwsStreamingOnnxModel, stream: np.ndarray,
    call_frames: Sequence[int], atol: float = 1e-4,
) -> float:
    """Run the artifact and the wrapper over ``stream``, each carrying its own caches.

    Args:
        onnx_path: the stateful artifact.
        wrapper: the PyTorch reference.
        stream: (S,) float32 audio, a whole number of hops.
        call_frames: frames per call, cycled.
        atol: largest allowed logit difference; caches may differ by ``atol * max(1, max |cache|)``.

    Returns:
        The largest absolute logit difference.

    Raises:
        ParityError: a call's logits or caches differ by more (the message names the call).
    """
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    in_names = [i.name for i in session.get_inputs()]
    out_names = [o.name for o in session.get_outputs()]
    torch_caches = wrapper.initial_caches()
    onnx_caches = [c.numpy() for c in torch_caches]
    worst, start, call = 0.0, 0, 0
    while start < len(stream):
        audio = stream[None, start : start + call_frames[call % len(call_frames)] * wrapper.hop]
        got = session.run(out_names, dict(zip(in_names, [audio, *onnx_caches])))
        with torch.no_grad():
            expected = [t.numpy() for t in wrapper(torch.from_numpy(audio), *torch_caches)]
        for k, (name, a, b) in enumerate(zip(out_names, got, expected)):
            diff = float(np.max(np.abs(a.astype(np.float64) - b))) if a.size else 0.0
            limit = atol if k == 0 else atol * max(1.0, float(np.max(np.abs(b))) if b.size else 1.0)
            if a.shape != b.shape or not diff <= limit:
                raise ParityError(
                    f"{onnx_path}: output {name!r} of call {call} (samples {start}..{start + audio.shape[1]}) differs "
                    f"from PyTorch's streaming forward by {diff:.3g} (limit {limit:.3g}; shapes {a.shape}, {b.shape})"
                )
            if k == 0:
                worst = max(worst, diff)
        onnx_caches, torch_caches = got[1:], [torch.from_numpy(b) for b in expected[1:]]
        start, call = start + audio.shape[1], call + 1
    return worst


def _parity_stream(gen: np.random.Generator, samples: int, hop: int) -> np.ndarray:
    """(samples rounded to whole hops,) float32: noise whose level changes every 0.5 s, 0.4 s of zeros."""
    samples = samples // hop * hop
    pieces = random_audio(gen, 16, samples // 16 + 1).reshape(-1)[:samples].copy()
    pieces[samples // 3 : samples // 3 + 6400] = 0.0  # digital silence mid-stream
    return pieces.astype(np.float32)


def export_streaming_task(task, path: str | os.PathLike, model_config: dict | None = None, **kwargs) -> ExportResult:
    """:func:`export_streaming_kws` of a ``StreamingKwsTask``."""
    return export_streaming_kws(
        task.frontend, task.model, task.labels, task_sample_rate(task), task.clip_samples, path,
        model_config=model_config, **kwargs,
    )


def export_streaming_kws_artifacts(task, out: str | os.PathLike, options: ClipExportOptions | None = None,
                                   model_config: dict | None = None, log=print) -> dict:
    """Both artifacts of a ``StreamingKwsTask``: the clip ones (fp32, int8, ORT as asked) and the stateful one.

    Returns:
        :func:`~speechkit.export.clip_classifier.export_clip_artifacts`'s report plus
        ``"stream"`` (path), ``"stream_parity_max_diff"`` and the stateful file in ``"sizes"``.
    """
    from speechkit.export.onnx_export import file_size_text

    options = options or ClipExportOptions()
    frontend_geometry(task.frontend)  # refuse a centred front-end before writing anything
    task = task.to("cpu").eval()
    result = export_clip_artifacts(task, out, options, model_config=model_config, log=log)
    target = stream_path(out)
    stream = export_streaming_task(task, target, model_config=model_config, atol=options.atol, ort=options.ort)
    log(f"wrote {target} ({file_size_text(target)}); streaming parity with PyTorch: max |diff| "
        f"{stream.max_abs_diff:.2g} over {PARITY_SECONDS:g} s in calls of {'/'.join(map(str, PARITY_CALL_FRAMES))} "
        f"frames (limit {options.atol:g})")
    result.update(stream=target, stream_parity_max_diff=stream.max_abs_diff)
    result["sizes"][target.name] = target.stat().st_size
    if stream.ort_path is not None:
        result["ort"].append(stream.ort_path)
        result["sizes"][stream.ort_path.name] = stream.ort_path.stat().st_size
    return result


def export_command(task, args: argparse.Namespace, checkpoint: Path | None) -> int:
    """The exporter ``speechkit export`` runs for ``StreamingKwsTask`` checkpoints."""
    from speechkit.export.clip_classifier import export_options

    options, model_config = export_options(args, checkpoint)
    export_streaming_kws_artifacts(task, args.output, options, model_config=model_config)
    return 0


# The clip-classifier exporter already adds --train-manifest / --calibration-clips.
register_exporter(Exporter(
    name="kws-streaming",
    task_class="speechkit.tasks.kws_stream.StreamingKwsTask",
    export=export_command,
    gate=CLIP_GATE,
    add_arguments=None,
))

__all__ = [
    "DftLogMel", "KwsStreamingOnnxModel", "check_stream_parity", "export_streaming_kws", "export_streaming_kws_artifacts", "export_streaming_task",
    "frontend_geometry", "stream_path", "streaming_metadata",
]
