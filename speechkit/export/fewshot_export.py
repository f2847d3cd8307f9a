"""The few-shot KWS family's exporter: the embedding network as an ONNX artifact.

Writes the artifact of :mod:`speechkit.runtime.fewshot` (input ``audio`` ``[batch,
clip_samples]``, output ``embedding`` ``[batch, D]``, log-mel front-end in the graph, metadata
``speechkit.task`` = ``fewshot-kws``, ``sample_rate``, ``clip_samples``, ``embedding_dim``,
``distance``, ``open_set`` (the dummy generator's weights and gamma, or the max-similarity
rule), ``model_id``, ``frontend``, ``model``) through
:func:`~speechkit.export.artifact.export_artifact`. The AuxSL classifier is not part of it.
int8 (``--int8``) is judged by :data:`FEWSHOT_GATE` on 5-way 5-shot episode accuracy of the
checkpoint's splitGSC test classes (at most 2 points lost). Registered for
``speechkit.tasks.fewshot.FewShotKwsTask``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

import speechkit
from speechkit.errors import SpeechkitError
from speechkit.export.artifact import ExportResult, export_artifact
from speechkit.export.clip_classifier import random_audio
from speechkit.export.gate import QualityGate
from speechkit.export.int8 import ArrayCalibrationReader, frontend_node_names, quantize_static_qdq, write_gated_int8
from speechkit.export.registry import Exporter, register_exporter
from speechkit.runtime.fewshot import FEWSHOT_SPEC, EmbeddingModel, OpenSetRule, episode_metrics

#: int8 rule: 5-way 5-shot episode accuracy (percent) may drop by at most 2 points.
FEWSHOT_GATE = QualityGate(metric="accuracy", higher_is_better=True, max_delta=2.0)


class EmbeddingOnnxModel(nn.Module):
    """Export wrapper: raw audio in, embedding out, front-end inside the graph.

    Example:
        >>> from speechkit.frontends import LogMel
        >>> from speechkit.models.fewshot import BCResNetEmbedding
        >>> EmbeddingOnnxModel(LogMel.bcresnet(), BCResNetEmbedding(1)).eval()(torch.zeros(2, 16000)).shape
        torch.Size([2, 32])
    """

    def __init__(self, frontend: nn.Module, model: nn.Module) -> None:
        super().__init__()
        self.frontend = frontend
        self.model = model

    def forward(self, audio: Tensor) -> Tensor:
        feats, _ = self.frontend(audio)
        return self.model(feats)


def model_id(model: nn.Module, frontend: nn.Module) -> str:
    """16 hex digits of SHA-256 over the weights and front-end config: prototype files name it."""
    h = hashlib.sha256()
    for name, value in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(value.detach().cpu().float().numpy().tobytes())
    h.update(json.dumps(frontend.config() if hasattr(frontend, "config") else {}, sort_keys=True).encode())
    return h.hexdigest()[:16]


def export_fewshot_task(task, path: str | os.PathLike, atol: float = 1e-4, batch_sizes=(1, 2, 5),
                        ort: bool = False, seed: int = 0) -> ExportResult:
    """Export a :class:`~speechkit.tasks.fewshot.FewShotKwsTask`'s embedding network (parity-checked).

    Raises:
        ParityError: ONNX and PyTorch embeddings differ by more than ``atol`` (nothing written).
    """
    wrapper = EmbeddingOnnxModel(task.frontend, task.model).to("cpu", torch.float32).eval()
    clip = int(task.clip_samples)
    with torch.no_grad():
        dim = int(wrapper(torch.zeros(1, clip)).shape[1])
    frontend_cfg = task.frontend.config() if hasattr(task.frontend, "config") else {}
    rate = frontend_cfg.get("sample_rate", task.sample_rate)
    if int(rate) != int(task.sample_rate):
        raise SpeechkitError(f"the front-end runs at {rate} Hz but the task at {task.sample_rate} Hz")
    model_cfg = {"class": type(task.model).__name__, "width": getattr(task.model, "width", None),
                 "num_params": sum(p.numel() for p in task.model.parameters())}
    metadata = {
        "speechkit.task": task.task_name,
        "sample_rate": int(task.sample_rate),
        "clip_samples": clip,
        "embedding_dim": dim,
        "distance": "squared-euclidean",
        "open_set": OpenSetRule(task.open_set_config()).to_metadata(),
        "model_id": model_id(task.model, task.frontend),
        "frontend": json.dumps({"class": type(task.frontend).__name__, **frontend_cfg}),
        "model": json.dumps(model_cfg),
        "speechkit_version": speechkit.__version__,
    }
    gen = np.random.default_rng(seed)
    return export_artifact(
        wrapper, (torch.from_numpy(random_audio(gen, 2, clip)),), path, FEWSHOT_SPEC, metadata,
        parity_inputs=[(random_audio(gen, b, clip),) for b in batch_sizes],
        dynamic_shapes={"audio": {0: "batch"}, "embedding": {0: "batch"}}, atol=atol, ort=ort,
    )


def episode_accuracy(onnx_path: str | os.PathLike, clips: np.ndarray, episodes, shots: int = 5) -> tuple[float, int]:
    """5-way ``shots``-shot accuracy (percent) of an artifact on fixed episodes over ``clips``."""
    model = EmbeddingModel(onnx_path)
    metrics = episode_metrics(model.embed(clips), episodes, model.rule, shots=shots)
    return metrics["acc"], metrics["episodes"]


def export_command(task, args: argparse.Namespace, checkpoint: Path | None) -> int:
    """What ``speechkit export`` runs for a few-shot checkpoint."""
    from speechkit.export.onnx_export import file_size_text

    out = Path(args.output)
    result = export_fewshot_task(task, out, atol=args.atol, ort=args.ort)
    print(f"wrote {out} ({file_size_text(out)}); parity with PyTorch: max |embedding diff| {result.max_abs_diff:.2g} "
          f"(limit {args.atol:g})")
    if not args.int8:
        return 0
    datamodule = _datamodule_of(task)
    calibration = datamodule.store("train").clips(np.arange(min(len(datamodule.store("train").cuts), 200)))
    test_sampler = datamodule.sampler("test", args.fewshot_gate_episodes)
    episodes = list(test_sampler)
    used = np.unique(np.concatenate([ep.items for ep in episodes]))
    clips = np.zeros((len(datamodule.store("test").cuts), task.clip_samples), np.float32)
    clips[used] = datamodule.store("test").clips(used)
    excluded = frontend_node_names(out)
    write_gated_int8(
        out, lambda src, dst: quantize_static_qdq(src, dst, ArrayCalibrationReader(calibration, 32),
                                                  nodes_to_exclude=excluded, op_types_to_quantize=("Conv", "MatMul", "Gemm")),
        FEWSHOT_GATE.with_max_delta(args.max_int8_drop if args.max_int8_drop is not None else FEWSHOT_GATE.max_delta),
        lambda path: episode_accuracy(path, clips, episodes), force=args.force, unit="test episodes",
    )
    return 0


def _datamodule_of(task):
    """The checkpoint's few-shot data module (from its recorded config), for calibration and the gate."""
    from speechkit.data.fewshot_datamodule import FewShotDataModule

    config = dict(getattr(task, "datamodule_config", None) or {})
    if not config.get("manifest_dir"):
        raise SpeechkitError("--int8 needs the splitGSC manifests: the checkpoint records no data.manifest_dir")
    keep = {k: config[k] for k in ("manifest_dir", "eval_ways", "eval_shots", "eval_queries", "eval_unknown",
                                   "sample_rate", "clip_seconds", "seed") if k in config}
    return FewShotDataModule(**keep)


def add_export_arguments(p: argparse.ArgumentParser) -> None:
    """The few-shot options of ``speechkit export``."""
    p.add_argument("--fewshot-gate-episodes", type=int, default=200,
                   help="few-shot KWS: test episodes (5-way 5-shot) of the int8 accuracy gate (default 200)")


register_exporter(Exporter(
    name="fewshot-kws",
    task_class="speechkit.tasks.fewshot.FewShotKwsTask",
    export=export_command,
    gate=FEWSHOT_GATE,
    add_arguments=add_export_arguments,
))
