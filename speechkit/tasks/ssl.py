"""HuBERT pre-training, iteration 1: masked prediction of k-means clusters of MFCC frames (issue 16).

Hsu et al. 2021 (arXiv 2106.07447), the first of HuBERT's iterations: targets are the k-means
cluster ids (scikit-learn ``MiniBatchKMeans``) of 39-d MFCC + delta + delta-delta frames (13
coefficients, 25 ms windows every 10 ms, standardised), taken at every second MFCC frame to meet
the 20 ms encoder frames (fairseq's ``label_rate=100`` against 50 Hz features). Spans of the CNN
features are replaced by the mask embedding (``mask_prob=0.8, mask_length=10``: 8 % of frames
start a span, the paper's p = 0.08, L = 10; scale ``mask_length`` down for tiny models) and the
loss is the cross-entropy of the cosine logits (temperature 0.1) on the masked frames, plus
``unmasked_weight`` times that on the unmasked ones (HuBERT: 0).

Shapes: B batch, S samples, T encoder frames, K clusters.

The clusters are fitted at the start of training from ``kmeans_utterances`` training utterances
(``datamodule.stats_audio``) unless ``kmeans_path`` names a file written by ``speechkit
ssl-kmeans`` (which also writes every utterance's frame labels for inspection); either way the
centroids are buffers of the task and travel in its checkpoints. :func:`load_upstream` turns any
SSL checkpoint (this task's, the distillation task's, fairseq's, Hugging Face's) into a plain
:class:`~speechkit.models.ssl.HubertModel`.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from speechkit.data.asr_datamodule import pad_waveforms
from speechkit.errors import ModelFileError, SpeechkitError
from speechkit.frontends import MFCC
from speechkit.models.ssl.hubert import HubertConfig, HubertModel
from speechkit.models.ssl.masking import span_mask
from speechkit.tasks.base import OptimConfig, SpeechTask

#: Checkpoint key holding the upstream's config and state-dict prefix (read by :func:`load_upstream`).
UPSTREAM_KEY = "speechkit_ssl_upstream"


def deltas(x: Tensor, width: int = 2) -> Tensor:
    """Regression deltas over time (Kaldi/HTK ``add-deltas``, window ``width``): (B, T, F) -> (B, T, F)."""
    padded = nn.functional.pad(x.transpose(1, 2), (width, width), mode="replicate").transpose(1, 2)
    t = x.shape[1]
    num = sum(n * (padded[:, width + n : width + n + t] - padded[:, width - n : width - n + t]) for n in range(1, width + 1))
    return num / (2 * sum(n * n for n in range(1, width + 1)))


class MfccClusters(nn.Module):
    """Frame labels from k-means centroids of standardised MFCC + deltas (39-d).

    Buffers ``centroids`` (K, 39), ``mean`` / ``std`` (39,) are zeros until :meth:`fit` or
    :meth:`load` (``fitted`` tells).
    """

    def __init__(self, num_clusters: int, sample_rate: int = 16000) -> None:
        super().__init__()
        self.mfcc = MFCC(sample_rate=sample_rate, n_mfcc=13, n_fft=512, win_length=400, hop_length=160, n_mels=40)
        self.register_buffer("centroids", torch.zeros(num_clusters, 39))
        self.register_buffer("mean", torch.zeros(39))
        self.register_buffer("std", torch.ones(39))

    @property
    def fitted(self) -> bool:
        return bool(self.centroids.abs().sum() > 0)

    @torch.no_grad()
    def features(self, audio: Tensor, audio_lens: Tensor) -> tuple[Tensor, Tensor]:
        """(B, S) -> (B, T_mfcc, 39) MFCC + deltas (10 ms frames), (B,) lengths."""
        mfcc, lens = self.mfcc(audio.float(), audio_lens)
        d1 = deltas(mfcc)
        return torch.cat([mfcc, d1, deltas(d1)], dim=-1), lens

    @torch.no_grad()
    def fit(self, audios: list[np.ndarray], seed: int = 0, batch_size: int = 16) -> int:
        """Fit the clusters on the waveforms' valid frames; returns the frames used.

        Raises:
            SpeechkitError: fewer frames than clusters.
        """
        from sklearn.cluster import MiniBatchKMeans

        frames = []
        for i in range(0, len(audios), batch_size):
            audio, lens = pad_waveforms(audios[i : i + batch_size])
            feats, feat_lens = self.features(audio, lens)
            frames += [feats[b, : int(n)] for b, n in enumerate(feat_lens)]
        data = torch.cat(frames).double() if frames else torch.zeros(0, 39, dtype=torch.float64)
        k = self.centroids.shape[0]
        if len(data) < k:
            raise SpeechkitError(f"k-means with {k} clusters needs at least {k} frames, got {len(data)}")
        mean, std = data.mean(0), data.std(0).clamp(min=1e-5)
        km = MiniBatchKMeans(n_clusters=k, random_state=seed, batch_size=10000, n_init=3, max_no_improvement=100)
        km.fit(((data - mean) / std).numpy())
        self.centroids.copy_(torch.as_tensor(km.cluster_centers_, dtype=torch.float32))
        self.mean.copy_(mean.float())
        self.std.copy_(std.float())
        return len(data)

    @torch.no_grad()
    def labels(self, audio: Tensor, audio_lens: Tensor, num_frames: int) -> Tensor:
        """(B, S) -> (B, num_frames) int64 cluster ids at the 20 ms frames (every 2nd MFCC frame)."""
        feats, _ = self.features(audio, audio_lens)
        feats = (feats - self.mean) / self.std
        dist = torch.cdist(feats, self.centroids[None].expand(len(feats), -1, -1))
        ids = dist.argmin(-1)
        index = (torch.arange(num_frames, device=ids.device) * 2).clamp(max=ids.shape[1] - 1)
        return ids[:, index]

    def save(self, path: str | os.PathLike) -> None:
        from speechkit.fileio import atomic_path

        with atomic_path(path) as tmp:
            torch.save({"centroids": self.centroids, "mean": self.mean, "std": self.std}, tmp)

    def load(self, path: str | os.PathLike) -> None:
        """Read a ``speechkit ssl-kmeans`` file.

        Raises:
            ModelFileError: missing, unreadable, or another number of clusters.
        """
        path = Path(path)
        if not path.is_file():
            raise ModelFileError(f"{path}: no such k-means file (write one with `speechkit ssl-kmeans`)")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
            centroids, mean, std = state["centroids"], state["mean"], state["std"]
        except Exception:
            raise ModelFileError(f"{path}: not a k-means file of `speechkit ssl-kmeans`") from None
        if tuple(centroids.shape) != tuple(self.centroids.shape):
            raise ModelFileError(f"{path}: {tuple(centroids.shape)} centroids, the model predicts "
                                 f"{tuple(self.centroids.shape)}")
        self.centroids.copy_(centroids)
        self.mean.copy_(mean)
        self.std.copy_(std)


class SslEncoderTask(SpeechTask):
    """A task whose product is an SSL encoder (:attr:`upstream`): what the SSL exporter serves."""

    #: attribute of the task holding the upstream (its state-dict prefix).
    upstream_attr = "encoder"

    @property
    def upstream(self) -> HubertModel:
        return getattr(self, self.upstream_attr)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint[UPSTREAM_KEY] = {"config": self.upstream.config.to_dict(), "prefix": self.upstream_attr + "."}


class SslPretrainTask(SslEncoderTask):
    """HuBERT iteration-1 pre-training (module docstring).

    Args:
        encoder: :class:`HubertModel` with a pre-training head (``config.num_classes`` = K).
        sample_rate: audio rate (Hz; linked from the data module).
        mask_prob, mask_length: span masking (fairseq ``mask_prob``, ``mask_length`` in frames).
        unmasked_weight: weight of the loss on unmasked frames.
        logit_temperature: cosine-logit temperature.
        kmeans_path: centroids from ``speechkit ssl-kmeans``; "": fit at the start of training.
        kmeans_utterances: training utterances the clusters are fitted on (when fitted here).
        seed: k-means and validation-mask seed.
        optim: optimizer and schedule.
    """

    task_name = "ssl-pretrain"
    monitor = "val/loss"
    monitor_mode = "min"
    data_links = (("data.sample_rate", "model.init_args.sample_rate"),)

    def __init__(self, encoder: nn.Module, sample_rate: int = 16000, mask_prob: float = 0.8, mask_length: int = 10,
                 unmasked_weight: float = 0.0, logit_temperature: float = 0.1, kmeans_path: str = "",
                 kmeans_utterances: int = 200, seed: int = 0, optim: OptimConfig | None = None) -> None:
        super().__init__(optim)
        if not isinstance(encoder, HubertModel) or encoder.config.num_classes <= 0:
            raise SpeechkitError("SslPretrainTask needs a HubertModel with a pre-training head (config.num_classes > 0)")
        self.save_config(["encoder"])
        self.encoder = encoder
        self.clusters = MfccClusters(encoder.config.num_classes, sample_rate)
        self.mask_prob, self.mask_length = float(mask_prob), int(mask_length)
        self.unmasked_weight, self.logit_temperature = float(unmasked_weight), float(logit_temperature)
        self.kmeans_path, self.kmeans_utterances, self.seed = kmeans_path, int(kmeans_utterances), int(seed)

    def on_fit_start(self) -> None:
        if self.clusters.fitted:  # resumed: keep the targets the model was trained on
            return
        if self.kmeans_path:
            self.clusters.load(self.kmeans_path)
            return
        datamodule = getattr(self.trainer, "datamodule", None)
        if not hasattr(datamodule, "stats_audio"):
            raise SpeechkitError("no kmeans_path and a data module without stats_audio: cannot fit the clusters")
        self.clusters.cpu().fit(datamodule.stats_audio(self.kmeans_utterances), seed=self.seed)
        self.clusters.to(self.device)

    def step(self, batch: dict, stage: str) -> tuple[Tensor, dict[str, Tensor]]:
        audio, audio_lens = batch["audio"], batch["audio_lens"]
        lens = self.encoder.output_lengths(audio_lens)
        num_frames = int(lens.max())
        generator = None if stage == "train" else torch.Generator().manual_seed(self.seed)
        mask = span_mask(lens, num_frames, self.mask_prob, self.mask_length, generator).to(audio.device)
        features = self.encoder.extract_features(audio, audio_lens, mask=mask)
        targets = self.clusters.labels(audio, audio_lens, num_frames)
        logits = self.encoder.logits(features.last, self.logit_temperature)
        valid = torch.arange(num_frames, device=audio.device)[None, :] < lens[:, None]
        ce = nn.functional.cross_entropy(logits.transpose(1, 2), targets, reduction="none")
        masked, unmasked = valid & mask, valid & ~mask
        loss_m = (ce * masked).sum() / masked.sum().clamp(min=1)
        loss_u = (ce * unmasked).sum() / unmasked.sum().clamp(min=1)
        loss = loss_m + self.unmasked_weight * loss_u
        correct = (logits.argmax(-1) == targets) & masked
        acc = correct.sum().float() / masked.sum().clamp(min=1)
        return loss, {"loss": loss.detach(), "loss_masked": loss_m.detach(), "loss_unmasked": loss_u.detach(),
                      "acc_masked": acc.detach()}


def load_upstream(path: str | os.PathLike) -> HubertModel:
    """A frozen-ready :class:`HubertModel` (eval, CPU) from any SSL checkpoint.

    Accepts a ``speechkit fit`` checkpoint of :class:`SslPretrainTask` or
    :class:`~speechkit.tasks.ssl_distill.SslDistillTask` (the encoder / the student; no teacher
    needed), a fairseq HuBERT ``.pt`` or a Hugging Face folder
    (:func:`speechkit.models.ssl.checkpoints.load_hubert`).

    Raises:
        ModelFileError: missing, unreadable or foreign file.
    """
    from speechkit.models.ssl.checkpoints import load_hubert

    path = Path(path)
    if path.is_file() and path.suffix == ".ckpt":
        from speechkit.tasks import read_checkpoint

        ckpt = read_checkpoint(path)
        info = ckpt.get(UPSTREAM_KEY)
        if not isinstance(info, dict):
            raise ModelFileError(f"{path}: not a checkpoint of an SSL task (no {UPSTREAM_KEY!r}); "
                                 "expected SslPretrainTask or SslDistillTask")
        model = HubertModel(HubertConfig(**info["config"]))
        prefix = info["prefix"]
        state = {k[len(prefix):]: v for k, v in ckpt["state_dict"].items() if k.startswith(prefix)}
        try:
            model.load_state_dict(state)
        except RuntimeError as exc:
            raise ModelFileError(f"{path}: upstream weights do not fit its config ({str(exc).splitlines()[0]})") from None
        return model.eval()
    return load_hubert(path)
