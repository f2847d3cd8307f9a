"""The AVSR family's exporter: an ``avsr`` checkpoint -> the AVSR ONNX artifact.

Inputs ``audio_features`` float32 (B, 4 T, F) (the task's Kaldi fbank, ``snip_edges: false``)
and ``video`` float32 (B, T, 88, 88) (gray mouth ROIs, 0..255); output ``log_probs`` (B, T, V).
Metadata (:data:`speechkit.runtime.avsr.AVSR_METADATA`): ``tokens``, ``sample_rate``,
``feature`` (knf options), ``fps``, ``roi_size``, ``model``. Parity with PyTorch is checked at
several lengths and batch sizes (``--atol``, default 1e-4) before the file is written. The
stacking of 4 fbank frames per video frame is written as a gather (``index_select``) so that the
exported graph has two free sizes (frames of audio and of video) with no shape guard between
them; the runtime always feeds ``4 T`` audio frames, where it equals the model's stacking.

No int8 step: the visual front-end is convolutional and the parity of a quantised one was not
measured here (``--int8`` is refused with a one-line error).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import torch
from torch import Tensor, nn

from speechkit.errors import ModelFileError, SpeechkitError
from speechkit.export.artifact import export_artifact
from speechkit.export.registry import Exporter, register_exporter
from speechkit.models.avsr.frontends import STACK
from speechkit.runtime.avsr import AVSR_SPEC, AVSR_TASK

ROI_SIZE, FPS = 88, 25
_DYNAMIC = {"audio_features": {0: "batch", 1: "audio_frames"}, "video": {0: "batch", 1: "frames"},
            "log_probs": {0: "batch", 1: "frames"}}


class AvsrOnnxWrapper(nn.Module):
    """``forward(audio_features (B, Ta, F), video (B, T, H, W)) -> log_probs (B, T, V)`` over whole
    (unpadded) utterances; audio frames ``4 t .. 4 t + 3`` (clamped to ``Ta - 1``) feed video frame t."""

    def __init__(self, model: nn.Module, ctc_head: nn.Module) -> None:
        super().__init__()
        self.model, self.ctc_head = model, ctc_head

    def forward(self, audio_features: Tensor, video: Tensor) -> Tensor:
        b, t = video.shape[0], video.shape[1]
        idx = (torch.arange(t)[:, None] * STACK + torch.arange(STACK)[None, :]).reshape(-1)
        idx = torch.clamp(idx, max=audio_features.shape[1] - 1)
        feats = audio_features.index_select(1, idx)
        frames = torch.full((b,), t, dtype=torch.int64)
        out = self.model(feats, frames * STACK, video, frames)
        return self.ctc_head(out["encoder_out"])


def export_avsr_task(task, out_path: str | os.PathLike, atol: float = 1e-4, model_config: dict | None = None) -> dict:
    """Write the artifact; returns ``{"path", "parity_max_diff", "size_bytes"}``.

    Raises:
        ModelFileError: not an AVSR task with a Kaldi fbank front-end; ParityError.
    """
    from speechkit.models.avsr import AvsrModel

    if not isinstance(getattr(task, "encoder", None), AvsrModel) or not hasattr(task.frontend, "kaldi_options"):
        raise ModelFileError("not an AVSR checkpoint (an AvsrTask with an AvsrModel and a Kaldi fbank front-end)")
    out_path = Path(out_path)
    if out_path.suffix != ".onnx":
        raise SpeechkitError(f"{out_path}: the output file name must end in .onnx")
    model, head = task.encoder.to("cpu", torch.float32).eval(), task.ctc_head.to("cpu", torch.float32).eval()
    wrapper = AvsrOnnxWrapper(model, head).eval()
    num_bins = model.audio_frontend.input_dim
    gen = torch.Generator().manual_seed(0)

    def example(batch: int, frames: int) -> tuple[Tensor, Tensor]:
        return (torch.randn(batch, STACK * frames, num_bins, generator=gen) * 3 + 5,
                torch.randint(0, 256, (batch, frames, ROI_SIZE, ROI_SIZE), generator=gen).float())

    metadata = {
        "speechkit.task": AVSR_TASK, "tokens": json.dumps(task.tokenizer.tokens()),
        "sample_rate": int(task.sample_rate), "feature": json.dumps(task.frontend.kaldi_options()),
        "fps": FPS, "roi_size": ROI_SIZE, "model": json.dumps(model_config or {"class": type(model).__name__}),
    }
    parity = [tuple(x.numpy() for x in example(b, t)) for b, t in ((1, 9), (2, 17), (3, 30))]
    result = export_artifact(wrapper, example(2, 12), out_path, AVSR_SPEC, metadata, parity_inputs=parity,
                             dynamic_shapes=_DYNAMIC, atol=atol)
    return {"path": str(out_path), "parity_max_diff": result.max_abs_diff, "size_bytes": out_path.stat().st_size}


def export_command(task, args: argparse.Namespace, checkpoint: Path | None) -> int:
    """What ``speechkit export`` runs for an ``avsr`` checkpoint."""
    from speechkit.export.onnx_export import checkpoint_model_config

    if getattr(args, "int8", False):
        raise SpeechkitError("--int8 is not available for AVSR models (no quality gate measured); export fp32")
    config = checkpoint_model_config(checkpoint) if checkpoint is not None else None
    report = export_avsr_task(task, args.output, atol=args.atol, model_config=config)
    print(f"wrote {report['path']} ({report['size_bytes'] / 1e6:.1f} MB); parity with PyTorch: max |log-prob diff| "
          f"{report['parity_max_diff']:.2g} (limit {args.atol:g})")
    return 0


register_exporter(Exporter(name="avsr", task_class="speechkit.tasks.avsr.AvsrTask", export=export_command, gate=None,
                           add_arguments=None))
