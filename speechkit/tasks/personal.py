"""Personalized KWS task (PK-MTL): keyword + speaker multi-task training, then the TRMs.

Stage 1 (``speechkit fit``): :class:`PersonalKwsTask` trains a
:class:`~speechkit.models.personal.PersonalKwsNet` with ``L = L^k + 0.1 L^s``
(:class:`~speechkit.losses.personal.MultiTaskLoss`). Validation logs keyword accuracy
(``val/acc``) and the speaker-verification EER over all pairs of validation clips
(``val/sv_eer``, percent; validation speakers are not training speakers). The ``speaker``
system (the separate SV model) has no keyword head: its ``val/acc`` is ``1 - val/sv_eer / 100``
(the verification accuracy at the EER point), so checkpoints are picked the same way.

Stage 2 (``speechkit train-trm``): :func:`fit_trm` freezes the network and trains the TB and TO
Task Representation Modules with the angular prototypical loss on the training clips'
embeddings (computed once, without augmentation: a deviation from the paper, which trains
them for 50 epochs on the augmented stream), and :func:`write_trm_checkpoint` stores them.

Shapes: B batch, S samples, T frames, F bins, C classes, D embedding dim.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from speechkit.errors import SpeechkitError
from speechkit.losses.personal import MultiTaskLoss, angular_prototypical_loss, trm_pair_mask
from speechkit.metrics.personal import equal_error_rate, speaker_pair_scores
from speechkit.models.personal import PersonalKwsNet, TaskRepresentationModule
from speechkit.tasks.base import OptimConfig, SpeechTask

#: ``speechkit.task`` of personalized-KWS checkpoints and artifacts.
PERSONAL_TASK = "personal-kws"


class PersonalKwsTask(SpeechTask):
    """Front-end -> :class:`PersonalKwsNet` -> keyword and speaker cosine classifiers.

    Args:
        model: the network (``system`` chooses PK-MTL or a baseline).
        frontend: ``forward(audio (B, S), audio_lens) -> (feats (B, T, F), feat_lens)``.
        loss: default :class:`MultiTaskLoss` (lambda 0.1).
        specaugment: applied to training features only.
        labels: keyword classes in logit order (linked from the data module).
        sample_rate, clip_samples: what the model expects (linked from the data module).
        trm: hold the TB and TO Task Representation Modules (set by ``speechkit train-trm``).
        optim: optimizer and schedule.

    Batches: :mod:`speechkit.data.personal_datamodule` (``audio``, ``audio_lens``, ``labels``,
    ``speakers``, ``speaker_ids``).
    """

    task_name = PERSONAL_TASK
    monitor = "val/acc"
    monitor_mode = "max"
    data_links = (
        ("data.labels", "model.init_args.labels"),
        ("data.num_classes", "model.init_args.model.init_args.num_classes"),
        ("data.num_speakers", "model.init_args.model.init_args.num_speakers"),
        ("data.sample_rate", "model.init_args.sample_rate"),
        ("data.clip_samples", "model.init_args.clip_samples"),
    )

    def __init__(
        self,
        model: PersonalKwsNet,
        frontend: nn.Module,
        loss: nn.Module | None = None,
        specaugment: nn.Module | None = None,
        labels: list[str] | None = None,
        sample_rate: int = 16000,
        clip_samples: int = 16000,
        trm: bool = False,
        optim: OptimConfig | None = None,
    ) -> None:
        super().__init__(optim)
        self.save_config(["model", "frontend", "loss", "specaugment"])
        self.model = model
        self.frontend = frontend
        self.loss_fn = loss if loss is not None else MultiTaskLoss()
        self.specaugment = specaugment
        self.labels = list(labels) if labels is not None else []
        self.sample_rate = int(sample_rate)
        self.clip_samples = int(clip_samples)
        self.trm_tb = self.trm_to = None
        if trm:
            self.trm_tb = TaskRepresentationModule(model.embedding_dim)
            self.trm_to = TaskRepresentationModule(model.embedding_dim)
        self._val_embeddings: list[tuple[Tensor, list[str]]] = []

    def features(self, audio: Tensor, audio_lens: Tensor | None = None) -> Tensor:
        feats, feat_lens = self.frontend(audio, audio_lens)
        if self.training and self.specaugment is not None:
            feats = self.specaugment(feats, feat_lens)
        return feats

    def forward(self, audio: Tensor, audio_lens: Tensor | None = None) -> Tensor:
        """audio (B, S) -> keyword logits (B, C) (the ``speaker`` system: speaker logits)."""
        return self.model(self.features(audio, audio_lens))

    def step(self, batch: dict, stage: str) -> tuple[Tensor, dict[str, Tensor]]:
        outputs = self.model.outputs(self.features(batch["audio"], batch.get("audio_lens")))
        loss, stats = self.loss_fn(outputs, batch)
        stats = dict(stats)
        if outputs.keyword_logits is not None:
            stats["acc"] = (outputs.keyword_logits.argmax(dim=-1) == batch["labels"]).float().mean()
        if stage != "train" and outputs.speaker_embedding is not None:
            has_speaker = [i for i, s in enumerate(batch.get("speaker_ids", [])) if s]
            self._val_embeddings.append((outputs.speaker_embedding[has_speaker].detach().cpu(),
                                         [batch["speaker_ids"][i] for i in has_speaker]))
        return loss, stats

    def on_validation_epoch_start(self) -> None:
        self._val_embeddings = []

    def on_validation_epoch_end(self) -> None:
        eer = self._speaker_eer()
        if eer is None:
            return
        self.log("val/sv_eer", eer)
        if self.model.keyword_head is None:
            self.log("val/acc", 1.0 - eer / 100.0, prog_bar=True)

    def on_test_epoch_start(self) -> None:
        self._val_embeddings = []

    def on_test_epoch_end(self) -> None:
        eer = self._speaker_eer()
        if eer is not None:
            self.log("test/sv_eer", eer)

    def _speaker_eer(self) -> float | None:
        """SV EER (percent) over every pair of the collected clips; None if there are no pairs."""
        if not self._val_embeddings:
            return None
        emb = torch.cat([e for e, _ in self._val_embeddings]).numpy()
        ids = [s for _, names in self._val_embeddings for s in names]
        self._val_embeddings = []
        scores, same = speaker_pair_scores(emb, ids)
        if not same.any() or same.all():
            return None
        return 100.0 * equal_error_rate(scores[same], scores[~same])


# -- embeddings and the Task Representation Modules (stage 2) ---------------------------------


@dataclass
class ClipEmbeddings:
    """Network outputs over a set of clips (numpy, CPU).

    Attributes:
        keyword: (N, D) keyword embeddings ``z^k`` (``None``: the ``speaker`` system).
        speaker: (N, D) speaker embeddings ``z^s`` (``None``: ``vanilla``).
        logits: (N, C) keyword logits (``None``: the ``speaker`` system).
        labels: (N,) keyword class indices.
        speaker_ids: N speaker IDs (``""``: none).
    """

    keyword: np.ndarray | None
    speaker: np.ndarray | None
    logits: np.ndarray | None
    labels: np.ndarray
    speaker_ids: list[str]


@torch.no_grad()
def embed_clips(task: PersonalKwsTask, loader) -> ClipEmbeddings:
    """Run ``task`` (eval mode) over a DataLoader of personal batches."""
    task.eval()
    parts: dict[str, list] = {"keyword": [], "speaker": [], "logits": [], "labels": [], "ids": []}
    for batch in loader:
        out = task.model.outputs(task.features(batch["audio"], batch.get("audio_lens")))
        for key, value in (("keyword", out.keyword_embedding), ("speaker", out.speaker_embedding),
                           ("logits", out.keyword_logits)):
            if value is not None:
                parts[key].append(value.cpu().numpy())
        parts["labels"].append(batch["labels"].numpy())
        parts["ids"] += list(batch["speaker_ids"])

    def cat(key: str) -> np.ndarray | None:
        return np.concatenate(parts[key]) if parts[key] else None

    return ClipEmbeddings(cat("keyword"), cat("speaker"), cat("logits"), cat("labels"), parts["ids"])


def fit_trm(
    task: PersonalKwsTask,
    embeddings: ClipEmbeddings,
    speakers: list[str],
    keyword_classes: list[int],
    epochs: int = 50,
    batch_size: int = 128,
    lr: float = 1e-2,
    seed: int = 0,
) -> dict[str, float]:
    """Train the TB and TO TRMs of ``task`` (created if absent) on training-clip embeddings.

    Prototypes: ``p^k`` = the keyword head's prototype of the clip's class, ``p^s`` = the
    speaker head's prototype of the clip's training speaker. A batch's rows are the prototypes
    of its target-keyword clips, its columns every clip's query; pairs are masked per task by
    :func:`~speechkit.losses.personal.trm_pair_mask`.

    Args:
        task: a trained task with both heads (``pk-mtl`` or ``naive-mtl``); the network is frozen.
        embeddings: :func:`embed_clips` of the training split (unaugmented).
        speakers: the speaker head's classes (training speakers, in order).
        keyword_classes: class indices that can be targets (keywords, not silence/unknown).
        epochs, batch_size, lr, seed: the optimisation (Adam).

    Returns:
        ``{"loss_tb": ..., "loss_to": ...}``: mean loss of the last epoch.

    Raises:
        SpeechkitError: a system without a speaker or keyword head, or no usable clips.
    """
    net = task.model
    if net.keyword_head is None or net.speaker_head is None:
        raise SpeechkitError(f"the TRM needs keyword and speaker heads; the {net.system!r} system lacks one")
    index = {s: i for i, s in enumerate(speakers)}
    spk = torch.tensor([index.get(s, -1) for s in embeddings.speaker_ids])
    kw = torch.from_numpy(embeddings.labels.astype(np.int64))
    z_k, z_s = torch.from_numpy(embeddings.keyword), torch.from_numpy(embeddings.speaker)
    is_target = torch.isin(kw, torch.tensor(keyword_classes)) & (spk >= 0)
    if int(is_target.sum()) < 2:
        raise SpeechkitError("the TRM needs at least two training clips of a keyword with a known speaker")
    p_k, p_s = net.keyword_head.prototypes().detach(), net.speaker_head.prototypes().detach()
    if task.trm_tb is None:
        task.trm_tb = TaskRepresentationModule(net.embedding_dim)
        task.trm_to = TaskRepresentationModule(net.embedding_dim)
    gen = torch.Generator().manual_seed(seed)
    stats = {}
    for name, trm in (("tb", task.trm_tb), ("to", task.trm_to)):
        trm.train()
        # w starts at 10 (as the cosine classifiers); softplus keeps it positive.
        w, b = nn.Parameter(torch.tensor(2.3)), nn.Parameter(torch.tensor(0.0))
        opt = torch.optim.Adam([*trm.parameters(), w, b], lr=lr)
        for _ in range(epochs):
            order = torch.randperm(len(kw), generator=gen)
            losses = []
            for start in range(0, len(order), batch_size):
                items = order[start : start + batch_size]
                rows = items[is_target[items]]
                cols = torch.cat([rows, items[~is_target[items]]])  # row i's positive is column i
                if len(rows) < 2:
                    continue
                anchors = trm(p_k[kw[rows]], p_s[spk[rows]])
                queries = trm(z_k[cols], z_s[cols])
                cos = nn.functional.normalize(anchors, dim=-1) @ nn.functional.normalize(queries, dim=-1).T
                col_spk = torch.where(spk[cols] >= 0, spk[cols], -1 - torch.arange(len(cols)))
                mask = trm_pair_mask(kw[cols], col_spk, name)[: len(rows)]
                loss = angular_prototypical_loss(cos, nn.functional.softplus(w), b, mask)
                opt.zero_grad()
                loss.backward()
                opt.step()
                losses.append(float(loss.detach()))
        trm.eval()
        stats[f"loss_{name}"] = float(np.mean(losses)) if losses else float("nan")
    return stats


def write_trm_checkpoint(checkpoint: str | Path, task: PersonalKwsTask, out: str | Path) -> Path:
    """Copy ``checkpoint`` to ``out`` with ``task``'s TRM weights and ``trm: true`` (atomic write).

    Raises:
        ModelFileError: unreadable checkpoint; SpeechkitError: ``task`` has no TRMs.
    """
    from speechkit.fileio import atomic_path
    from speechkit.tasks import read_checkpoint

    if task.trm_tb is None:
        raise SpeechkitError("the task has no trained TRMs; run fit_trm first")
    ckpt = read_checkpoint(checkpoint)
    ckpt = {k: v for k, v in ckpt.items() if k not in ("optimizer_states", "lr_schedulers", "loops", "callbacks")}
    ckpt["hyper_parameters"] = {**(ckpt.get("hyper_parameters") or {}), "trm": True}
    state = dict(ckpt["state_dict"])
    for prefix, module in (("trm_tb.", task.trm_tb), ("trm_to.", task.trm_to)):
        state.update({prefix + k: v.detach().clone() for k, v in module.state_dict().items()})
    ckpt["state_dict"] = state
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        torch.save(ckpt, tmp)
    return out
