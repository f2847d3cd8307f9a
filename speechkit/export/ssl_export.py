"""Export an SSL encoder (teacher or distilled student) as an ONNX feature extractor (issue 16).

The artifact (contract in :mod:`speechkit.runtime.ssl`): ``audio [batch, samples] ->
hidden_states [layers, batch, frames, D]`` of the chosen layers, parity-checked against PyTorch
(``--atol``, default 1e-4) over several lengths. int8 (static QDQ of the MatMul/Conv/Gemm ops,
calibrated on training audio) is gated through :func:`speechkit.export.int8.write_gated_int8` on
a probe metric: the keyword-spotting probe of :mod:`speechkit.inference.probe` (weighted layer
sum + linear, trained once on the fp32 artifact's features of ``--ssl-probe-data``'s training
clips) is scored on the test clips through the fp32 and the int8 artifact; the int8 file is
refused if the accuracy drops by more than ``--max-int8-drop`` points (default 2).

    speechkit export runs/synthetic/ssl/star/checkpoints/last.ckpt ssl_star_synth.onnx \\
        --int8 --ssl-probe-data data/synth_sc_v1_12/manifests
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from speechkit.errors import SpeechkitError
from speechkit.export.artifact import export_artifact
from speechkit.export.gate import QualityGate
from speechkit.export.int8 import ArrayCalibrationReader, quantize_static_qdq, write_gated_int8
from speechkit.export.registry import Exporter, register_exporter
from speechkit.runtime.ssl import SSL_FEATURES_SPEC

SSL_GATE = QualityGate("kws_probe_accuracy", higher_is_better=True, max_delta=2.0)


class SslOnnxModel(nn.Module):
    """``audio (B, S) -> hidden_states (len(layers), B, T, D)`` of a :class:`HubertModel`."""

    def __init__(self, model: nn.Module, layers: Sequence[int]) -> None:
        super().__init__()
        self.model, self.layers = model.eval(), list(layers)
        bad = [layer for layer in self.layers if not 0 <= layer <= model.num_layers]
        if bad or not self.layers:
            raise SpeechkitError(f"layers {list(layers)}: expected indices in 0..{model.num_layers}")

    def forward(self, audio: Tensor) -> Tensor:
        features = self.model.extract_features(audio, None, num_layers=max(self.layers))
        return torch.stack([features.hidden[i] for i in self.layers])


def export_ssl_features(model: nn.Module, path: str | Path, task_name: str, layers: Sequence[int] | None = None,
                        atol: float = 1e-4, ort: bool = False) -> float:
    """Write the feature-extractor artifact of ``model``; returns the largest parity difference."""
    layers = list(range(model.num_layers + 1)) if layers is None else list(layers)
    wrapper = SslOnnxModel(model, layers)
    cfg = model.config
    rate = cfg.sample_rate
    generator = torch.Generator().manual_seed(0)
    example = (torch.randn(2, rate, generator=generator) * 0.1,)
    parity = [(np.random.default_rng(i).standard_normal((b, n)).astype(np.float32) * 0.1,)
              for i, (b, n) in enumerate([(1, rate), (2, rate * 3 // 2 + 123), (1, max(cfg.min_samples, cfg.hop_samples * 3))])]
    metadata = {
        "speechkit.task": task_name, "sample_rate": rate, "frame_rate": rate / cfg.hop_samples,
        "hop_samples": cfg.hop_samples, "min_samples": cfg.min_samples, "layers": json.dumps(layers), "hidden_dim": cfg.dim,
        "model": json.dumps({k: v for k, v in cfg.to_dict().items() if k != "num_classes"}),
    }
    result = export_artifact(wrapper, example, path, SSL_FEATURES_SPEC, metadata, parity_inputs=parity,
                             dynamic_shapes={"audio": {0: "batch", 1: "samples"},
                                             "hidden_states": {1: "batch", 2: "frames"}},
                             atol=atol, ort=ort)
    return result.max_abs_diff


def probe_gate_measure(train_clips: np.ndarray, train_targets: list[int], test_clips: np.ndarray,
                       test_targets: list[int], num_classes: int, reference: Path) -> Callable[[Path], tuple[float, int]]:
    """``measure(onnx) -> (KWS probe accuracy %, clips)`` with one probe head trained on ``reference``'s features."""
    from speechkit.inference.probe import ProbeConfig, classifier_accuracy, onnx_upstream, train_classifier

    def feats(path: Path, clips: np.ndarray) -> list[Tensor]:
        upstream = onnx_upstream(path)
        audio = torch.from_numpy(clips)
        layers, _ = upstream.layers(audio, torch.full((len(clips),), clips.shape[1]))
        stacked = torch.stack(layers)  # (L, B, T, D)
        return [stacked[:, b] for b in range(len(clips))]

    head = train_classifier(feats(reference, train_clips), train_targets, num_classes, ProbeConfig())

    def measure(path: Path) -> tuple[float, int]:
        return classifier_accuracy(head, feats(path, test_clips), test_targets), len(test_clips)

    return measure


def write_ssl_int8(path: Path, probe_dir: Path | None, max_drop: float, force: bool,
                   log: Callable[[str], None] = print, calibration_clips: int = 64):
    """Quantize ``path`` (calibrated on the probe set's training clips) behind the probe gate."""
    from speechkit.inference.probe import kws_items

    if probe_dir is None:
        raise SpeechkitError("--int8 needs --ssl-probe-data (12-class Speech Commands manifests): calibration "
                             "audio and the data of its keyword-probe quality gate")
    train, labels = kws_items(probe_dir, "train")
    test, _ = kws_items(probe_dir, "test")
    train_clips = np.stack([i.audio for i in train])
    test_clips = np.stack([i.audio for i in test])
    calibration = train_clips[:: max(1, len(train_clips) // calibration_clips)]
    measure = probe_gate_measure(train_clips, [i.target for i in train], test_clips, [i.target for i in test],
                                 len(labels), path)
    return write_gated_int8(
        path, lambda src, dst: quantize_static_qdq(src, dst, ArrayCalibrationReader(calibration, batch_size=8)),
        SSL_GATE.with_max_delta(max_drop), measure, force=force, log=log, unit="test clips",
    )


def add_export_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--ssl-layers", default="",
                   help="SSL encoders: comma-separated representations to output (0 = Transformer input, "
                   "l = layer l; default all)")
    p.add_argument("--ssl-probe-data", type=Path, default=None,
                   help="SSL encoders: 12-class Speech Commands manifests for int8 calibration and its "
                   "keyword-probe quality gate")


def export_command(task, args: argparse.Namespace, checkpoint: Path | None) -> int:
    """The exporter ``speechkit export`` runs for SSL checkpoints (pre-trained or distilled)."""
    model = task.upstream.eval()
    layers = [int(x) for x in args.ssl_layers.split(",")] if getattr(args, "ssl_layers", "") else None
    diff = export_ssl_features(model, args.output, task.task_name, layers, atol=args.atol, ort=args.ort)
    print(f"wrote {args.output} (parity max |diff| {diff:.2e})")
    if args.int8:
        write_ssl_int8(args.output, getattr(args, "ssl_probe_data", None), args.max_int8_drop, args.force)
    return 0


register_exporter(Exporter(
    name="ssl-features",
    task_class="speechkit.tasks.ssl.SslEncoderTask",
    export=export_command,
    gate=SSL_GATE,
    add_arguments=add_export_arguments,
))
