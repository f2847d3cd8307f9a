"""Few-shot KWS task: episodic ProtoNet / D-ProtoNets training, optionally with AuxSL.

Yang et al., "Improving Small Footprint Few-shot Keyword Spotting with Supervision on Auxiliary
Data", Interspeech 2023 (arXiv 2309.00647): ``L = L_FSL(episodes) + lambda * L_SL(LibriWord)``,
``L_FSL`` the D-ProtoNets loss, ``L_SL`` a cross-entropy through a *separate* linear classifier
on the shared embedding, dropped at export.

Batches (:class:`speechkit.data.fewshot_datamodule.FewShotDataModule`)::

    {"audio": (N*K + N*Q + U, S) float32   supports (class-major), known queries, unknown queries,
     "ways": N, "shots": K, "queries": Q, "unknown": U,
     "aux_audio": (A, S), "aux_labels": (A,) int64}      (training with AuxSL only)

Validation and test: fixed 5-way episodes with ``max(eval_shots)`` supports per class; the
first ``k`` supports give the k-shot figures, so one episode serves 1- and 5-shot.
Logged: ``val/acc_<k>shot``, ``val/auroc_<k>shot`` (percent, per-episode means) and
``val/acc`` (their mean over ``eval_shots``: the best-checkpoint metric).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from speechkit.losses.fewshot import FewShotLoss
from speechkit.models.fewshot import PrototypeHead
from speechkit.runtime.fewshot import FEWSHOT_TASK, auroc
from speechkit.tasks.base import OptimConfig, SpeechTask


class FewShotKwsTask(SpeechTask):
    """Front-end -> embedding network -> prototype head, trained on episodes.

    Args:
        model: embedding network ``forward(feats (B, T, F)) -> (B, D)`` with an
            ``embedding_dim`` attribute (:class:`speechkit.models.fewshot.BCResNetEmbedding`).
        frontend: ``forward(audio (B, S), audio_lens) -> (feats (B, T, F), feat_lens)``.
        loss: episode loss (default :class:`~speechkit.losses.fewshot.FewShotLoss`).
        specaugment: applied to training features (``None``: off).
        open_set: ``"dummy"`` (D-ProtoNets) or ``"none"`` (ProtoNet, max-similarity rule).
        gamma: initial dummy temperature ratio (D-ProtoNets: 3).
        aux_weight: AuxSL lambda; 0 turns the auxiliary classifier off.
        aux_classes: auxiliary (LibriWord) classes, linked from ``data.aux_num_classes``.
        sample_rate, clip_samples: audio the model takes (linked from the data module).
        eval_shots: shot counts of the validation/test figures.
        task_name: ``fewshot-kws``: the artifact's ``speechkit.task``.
        optim: optimizer and schedule.
    """

    monitor = "val/acc"
    monitor_mode = "max"
    data_links = (
        ("data.aux_num_classes", "model.init_args.aux_classes"),
        ("data.sample_rate", "model.init_args.sample_rate"),
        ("data.clip_samples", "model.init_args.clip_samples"),
        ("data.eval_shots", "model.init_args.eval_shots"),
    )

    def __init__(
        self,
        model: nn.Module,
        frontend: nn.Module,
        loss: nn.Module | None = None,
        specaugment: nn.Module | None = None,
        open_set: str = "dummy",
        gamma: float = 3.0,
        aux_weight: float = 0.0,
        aux_classes: int = 0,
        sample_rate: int = 16000,
        clip_samples: int = 16000,
        eval_shots: list[int] | None = None,
        task_name: str = FEWSHOT_TASK,
        optim: OptimConfig | None = None,
    ) -> None:
        super().__init__(optim)
        self.save_config(["model", "frontend", "loss", "specaugment"])
        if open_set not in ("dummy", "none"):
            raise ValueError(f"open_set must be 'dummy' or 'none', got {open_set!r}")
        self.model = model
        self.frontend = frontend
        self.loss_fn = loss if loss is not None else FewShotLoss()
        self.specaugment = specaugment
        self.head = PrototypeHead(model.embedding_dim, dummy=open_set == "dummy", gamma=gamma)
        self.aux_weight = float(aux_weight)
        self.aux_classifier = (nn.Linear(model.embedding_dim, int(aux_classes))
                               if self.aux_weight > 0 and aux_classes > 0 else None)
        self.sample_rate = int(sample_rate)
        self.clip_samples = int(clip_samples)
        self.eval_shots = sorted(int(k) for k in (eval_shots or [1, 5]))
        self.task_name = task_name

    def forward(self, audio: Tensor, audio_lens: Tensor | None = None) -> Tensor:
        """audio (B, S) float32 in [-1, 1] -> embeddings (B, D)."""
        feats, feat_lens = self.frontend(audio, audio_lens)
        if self.training and self.specaugment is not None:
            feats = self.specaugment(feats, feat_lens)
        return self.model(feats)

    def step(self, batch: dict, stage: str) -> tuple[Tensor, dict[str, Tensor]]:
        ways, shots, queries, unknown = (int(batch[k]) for k in ("ways", "shots", "queries", "unknown"))
        audio = batch["audio"]
        use_aux = stage == "train" and self.aux_classifier is not None and "aux_audio" in batch
        if use_aux:
            audio = torch.cat([audio, batch["aux_audio"]])
        emb = self(audio)
        n_support = ways * shots
        n_episode = n_support + ways * queries + unknown
        support = emb[:n_support].reshape(ways, shots, -1)
        query = emb[n_support:n_episode]
        targets = torch.cat([torch.arange(ways, device=emb.device).repeat_interleave(queries),
                             torch.full((unknown,), ways, device=emb.device, dtype=torch.long)])
        episode = {"query_targets": targets, "ways": ways}
        if stage == "train":
            loss, stats = self.loss_fn(self.head(support, query), episode)
            stats = {**stats, "acc": 100.0 * stats["acc"]}  # percent, as the validation figures
            if use_aux:
                aux_loss = nn.functional.cross_entropy(self.aux_classifier(emb[n_episode:]), batch["aux_labels"])
                loss = loss + self.aux_weight * aux_loss
                stats.update(loss=loss.detach(), loss_aux=aux_loss.detach())
            return loss, stats
        stats: dict[str, Tensor] = {}
        accs = []
        for k in self.eval_shots:
            logits = self.head(support[:, : min(k, shots)], query)
            loss, sub = self.loss_fn(logits, episode)
            stats[f"acc_{k}shot"] = 100.0 * sub["acc"]
            accs.append(stats[f"acc_{k}shot"])
            if unknown:
                score = self.head.unknown_score(logits).detach().cpu().numpy()
                stats[f"auroc_{k}shot"] = torch.tensor(100.0 * auroc(score, targets.cpu().numpy() == ways))
        stats["acc"] = torch.stack(accs).mean()
        stats["loss"] = loss.detach()
        return loss, stats

    @torch.no_grad()
    def embed_clips(self, audio: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """(M, S) clips -> (M, D) embeddings (eval mode, CPU numpy)."""
        self.eval()
        out = [self(torch.from_numpy(np.ascontiguousarray(audio[i : i + batch_size], np.float32)).to(self.device))
               .cpu().numpy() for i in range(0, len(audio), batch_size)]
        return np.concatenate(out) if out else np.zeros((0, self.model.embedding_dim), np.float32)

    def open_set_config(self) -> dict:
        """The head's open-set rule for the runtime (:class:`speechkit.runtime.fewshot.OpenSetRule`)."""
        return self.head.open_set_config()
