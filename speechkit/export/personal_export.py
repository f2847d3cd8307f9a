"""The personalized-KWS exporter: a ``PersonalKwsTask`` checkpoint -> the ``personal-kws`` artifact.

The artifact (:data:`speechkit.runtime.personal.PERSONAL_SPEC`) takes ``audio`` float32
``[batch, clip_samples]`` and returns ``logits`` (keyword cosine-classifier logits),
``keyword_embedding`` and ``speaker_embedding`` (``[batch, D]``); the log-mel front-end is in the
graph. Metadata: the clip-classifier keys, ``embedding_dim``, ``model_id`` (hash of the weights;
profiles are tied to it) and ``scoring`` (JSON: ``system``, ``keyword_prototypes``, ``alpha``,
``sv_threshold``, and the TB/TO Task Representation Modules' weights when the checkpoint has
them: the runtime applies them in numpy, because the enrolment side of the TRM score needs the
user's profile). ``sv_threshold`` is the speaker score at the EER on the validation speakers
(``--sv-threshold`` to set it). ``--int8`` writes a statically quantized model judged by
:data:`PERSONAL_GATE` (keyword accuracy may drop at most 1 point).

Shapes: B batch, S samples, C classes, D embedding dim.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import Tensor, nn

from speechkit.errors import SpeechkitError
from speechkit.export.artifact import ExportResult, export_artifact
from speechkit.export.clip_classifier import (
    clip_metadata,
    load_manifest_clips,
    onnx_accuracy,
    quantize_clip_classifier,
    random_audio,
    task_sample_rate,
)
from speechkit.export.gate import QualityGate
from speechkit.export.int8 import write_gated_int8
from speechkit.export.registry import Exporter, register_exporter
from speechkit.runtime.personal import DEFAULT_SV_THRESHOLD, PERSONAL_OUTPUTS, PERSONAL_SPEC, model_fingerprint

#: int8 rule: keyword accuracy (percent) may drop by at most 1 point.
PERSONAL_GATE = QualityGate(metric="accuracy", higher_is_better=True, max_delta=1.0)


class PersonalKwsOnnxModel(nn.Module):
    """Export wrapper: audio in; keyword logits and both embeddings out; front-end in the graph.

    Args:
        frontend: ``forward(audio (B, S)) -> (feats (B, T, F), feat_lens)``.
        model: a :class:`~speechkit.models.personal.PersonalKwsNet` with a keyword head.

    Example:
        >>> from speechkit.frontends import LogMel
        >>> from speechkit.models.personal import PersonalKwsNet
        >>> wrapper = PersonalKwsOnnxModel(LogMel.bcresnet(), PersonalKwsNet(4, 8, "pk-mtl", 1)).eval()
        >>> [tuple(t.shape) for t in wrapper(torch.zeros(2, 16000))]
        [(2, 4), (2, 32), (2, 32)]
    """

    def __init__(self, frontend: nn.Module, model: nn.Module) -> None:
        super().__init__()
        if model.keyword_head is None:
            raise SpeechkitError(f"the {model.system!r} system has no keyword head; export a KWS system "
                                 "(pk-mtl, naive-mtl or vanilla)")
        self.frontend = frontend
        self.model = model

    def forward(self, audio: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        feats, _ = self.frontend(audio)
        out = self.model.outputs(feats)
        speaker = out.speaker_embedding if out.speaker_embedding is not None else out.keyword_embedding
        return out.keyword_logits, out.keyword_embedding, speaker


def personal_scoring(task, sv_threshold: float) -> dict:
    """The ``scoring`` metadata of a task (see the module docstring)."""
    net = task.model
    scoring = {
        "system": net.system,
        "keyword_prototypes": np.round(net.keyword_head.prototypes().detach().cpu().numpy(), 7).tolist(),
        "alpha": 0.5,
        "sv_threshold": round(float(sv_threshold), 5),
    }
    if getattr(task, "trm_tb", None) is not None:
        scoring["trm"] = {"tb": task.trm_tb.weights(), "to": task.trm_to.weights()}
    return scoring


@torch.no_grad()
def validation_sv_threshold(task, manifest: Path, max_clips: int = 600) -> float:
    """Speaker score at the EER over all pairs of (up to ``max_clips``) validation clips with speakers."""
    from speechkit.data.datamodules import fit_length, load_cut_audio
    from speechkit.data.manifests import read_cuts
    from speechkit.data.personal_datamodule import cut_speaker
    from speechkit.metrics.personal import speaker_pair_scores
    from speechkit.runtime.personal import error_curve

    cuts = [c for c in read_cuts(manifest) if cut_speaker(c)][:max_clips]
    if len(cuts) < 3:
        raise SpeechkitError(f"{manifest}: fewer than 3 clips with speakers; pass --sv-threshold")
    rate = task_sample_rate(task)
    audio = np.stack([fit_length(load_cut_audio(c, rate), task.clip_samples) for c in cuts])
    wrapper = PersonalKwsOnnxModel(task.frontend, task.model).eval()
    emb = np.concatenate([wrapper(torch.from_numpy(audio[i : i + 64]))[2].numpy() for i in range(0, len(audio), 64)])
    scores, same = speaker_pair_scores(emb, [cut_speaker(c) for c in cuts])
    far, frr, thresholds = error_curve(scores[same], scores[~same])
    return float(thresholds[int(np.argmin(np.abs(far - frr)))])


def export_personal(task, path: str | os.PathLike, sv_threshold: float = DEFAULT_SV_THRESHOLD,
                    batch_sizes: tuple[int, ...] = (1, 2, 5), atol: float = 1e-4, seed: int = 0,
                    model_config: dict | None = None, ort: bool = False) -> ExportResult:
    """Export a :class:`~speechkit.tasks.personal.PersonalKwsTask` (parity-checked on every batch size).

    Raises:
        ParityError: an output differs by more than ``atol`` (nothing written).
        SpeechkitError: a system without a keyword head.
    """
    wrapper = PersonalKwsOnnxModel(task.frontend, task.model).to("cpu", torch.float32).eval()
    rate, clip = task_sample_rate(task), int(task.clip_samples)
    metadata = clip_metadata(task.task_name, task.frontend, task.model, task.labels, rate, clip, model_config)
    modules = [wrapper] + [m for m in (getattr(task, "trm_tb", None), getattr(task, "trm_to", None)) if m is not None]
    weights = [t.detach().cpu().numpy() for m in modules for t in m.state_dict().values() if t.is_floating_point()]
    metadata.update({
        "embedding_dim": str(task.model.embedding_dim),
        "model_id": model_fingerprint(weights),
        "scoring": json.dumps(personal_scoring(task, sv_threshold)),
    })
    gen = np.random.default_rng(seed)
    return export_artifact(
        wrapper, (torch.from_numpy(random_audio(gen, 2, clip)),), path, PERSONAL_SPEC, metadata,
        parity_inputs=[(random_audio(gen, b, clip),) for b in batch_sizes],
        dynamic_shapes={"audio": {0: "batch"}, **{name: {0: "batch"} for name in PERSONAL_OUTPUTS}},
        atol=atol, ort=ort,
    )


def _manifest(task, split: str) -> Path | None:
    from speechkit.data.manifests import cuts_path

    config = getattr(task, "datamodule_config", None) or {}
    folder = config.get("test_manifest_dir") if split == "test" and config.get("test_manifest_dir") else config.get("manifest_dir")
    if folder and cuts_path(folder, split).is_file():
        return cuts_path(folder, split)
    return None


def export_command(task, args: argparse.Namespace, checkpoint: Path | None, log: Callable[[str], None] = print) -> int:
    """What ``speechkit export`` runs for personal-KWS checkpoints."""
    from speechkit.export.onnx_export import checkpoint_model_config, file_size_text

    threshold = getattr(args, "sv_threshold", None)
    if threshold is None:
        valid = _manifest(task, "valid")
        threshold = validation_sv_threshold(task, valid) if valid is not None else DEFAULT_SV_THRESHOLD
        log(f"speaker threshold {threshold:.3f} ({'EER point on ' + str(valid) if valid else 'default: no validation manifest'})")
    config = checkpoint_model_config(checkpoint) if checkpoint is not None else None
    result = export_personal(task, args.output, threshold, atol=args.atol, model_config=config)
    log(f"wrote {result.path} ({file_size_text(result.path)}); parity with PyTorch: max |diff| {result.max_abs_diff:.2g}")
    if args.int8:
        write_personal_int8(task, result.path, args, log)
    return 0


def write_personal_int8(task, fp32: Path, args: argparse.Namespace, log: Callable[[str], None] = print):
    """Quantize (calibrated on training clips) and gate on keyword accuracy of the test clips."""
    train = getattr(args, "train_manifest", None) or _manifest(task, "train")
    test = getattr(args, "test_manifest", None) or _manifest(task, "test")
    if train is None:
        raise SpeechkitError("--int8 calibrates on training audio: pass --train-manifest")
    rate = task_sample_rate(task)
    calibration, _ = load_manifest_clips(train, task.labels, rate, task.clip_samples,
                                         max_clips=getattr(args, "calibration_clips", 300))
    measure = None
    if test is not None:
        audio, targets = load_manifest_clips(test, task.labels, rate, task.clip_samples)

        def measure(path: Path) -> tuple[float, int]:
            return onnx_accuracy(path, audio, targets), len(audio)
    elif not args.force:
        raise SpeechkitError("--int8 checks keyword accuracy on test audio: pass --test-manifest, or --force")
    drop = args.max_int8_drop if getattr(args, "max_int8_drop", None) is not None else PERSONAL_GATE.max_delta
    return write_gated_int8(fp32, lambda src, dst: quantize_clip_classifier(src, dst, calibration),
                            PERSONAL_GATE.with_max_delta(drop), measure, force=args.force, log=log, unit="test clips")


def add_export_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--sv-threshold", type=float, default=None,
                   help="personal-kws: speaker-score threshold of TO mode stored in the artifact (default: the EER "
                   "point on the checkpoint's validation speakers)")


register_exporter(Exporter(
    name="personal-kws",
    task_class="speechkit.tasks.personal.PersonalKwsTask",
    export=export_command,
    gate=PERSONAL_GATE,
    add_arguments=add_export_arguments,
))
