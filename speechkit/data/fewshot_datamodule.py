"""Episodic data for few-shot KWS: splitGSC episodes (+ LibriWord batches for AuxSL).

``manifest_dir`` is a splitGSC folder (``speechkit prepare speech-commands ... --split
fewshot``): ``cuts_train/valid/test.jsonl.gz`` hold disjoint word classes. ``aux_manifest_dir``
(optional) is a LibriWord-format folder (``speechkit prepare libriword``, or any
classification folder such as ``prepare speech-commands --classes all`` on synthetic words):
``cuts_train.jsonl.gz`` plus ``labels.json`` (or ``labels.txt``, one label a line).

Batches: see :mod:`speechkit.tasks.fewshot`. Training episodes are drawn at random every epoch
(a ``RandomSampler`` over a large virtual index space, so they follow ``seed_everything``);
validation and test episodes are fixed (:class:`speechkit.data.episodes.EpisodeSampler` with
``seed + 1`` / ``seed + 2``): every validation sees the same episodes.
"""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, RandomSampler

from speechkit.data.augment import WaveformAugment
from speechkit.data.datamodules import fit_length, load_cut_audio
from speechkit.data.episodes import EpisodeSampler
from speechkit.data.manifests import LABELS_FILENAME, cut_label, cuts_path, read_cuts
from speechkit.errors import CorpusError

FEWSHOT_HINT = "run `speechkit prepare speech-commands CORPUS OUT --split fewshot` and pass OUT as manifest_dir"
AUX_HINT = "pass a LibriWord folder (`speechkit prepare libriword`) as aux_manifest_dir"
#: Size of the virtual index space of training episodes (episode i is a function of (seed, i)).
_VIRTUAL_EPISODES = 1 << 30


class ClipStore:
    """Cuts of one split with class ids, loading fixed-length clips on demand.

    Args:
        cuts: classification cuts (``custom["label"]``).
        labels: class names; ``None``: the sorted labels of ``cuts``.
        sample_rate, clip_samples: output audio.

    Raises:
        CorpusError: a cut whose label is not in ``labels``.
    """

    def __init__(self, cuts, labels: list[str] | None, sample_rate: int, clip_samples: int) -> None:
        self.cuts = list(cuts)
        names = [cut_label(c) for c in self.cuts]
        self.labels = list(labels) if labels is not None else sorted(set(names))
        index = {name: i for i, name in enumerate(self.labels)}
        bad = sorted(set(names) - set(index))
        if bad:
            raise CorpusError(f"cuts with labels {bad[:5]} that are not among the labels {self.labels[:10]}...")
        self.targets = np.array([index[n] for n in names], np.int64)
        self.sample_rate, self.clip_samples = sample_rate, clip_samples

    def clip(self, i: int, augment: WaveformAugment | None = None, rng: np.random.Generator | None = None) -> np.ndarray:
        """(clip_samples,) float32 of item ``i`` (centre crop / end pad; augmented if given)."""
        audio = load_cut_audio(self.cuts[int(i)], self.sample_rate)
        if augment is None:
            return fit_length(audio, self.clip_samples)
        audio = augment.perturb(audio, rng)
        audio = fit_length(audio, self.clip_samples, rng)
        return augment.add_noise_and_shift(audio, rng)

    def clips(self, indices) -> np.ndarray:
        """(M, clip_samples) float32 of items ``indices`` (evaluation path)."""
        return np.stack([self.clip(i) for i in indices]) if len(indices) else np.zeros((0, self.clip_samples), np.float32)


class EpisodeDataset(Dataset):
    """Episode ``i`` of a sampler as a batch dict (plus AuxSL clips when ``aux`` is given)."""

    def __init__(self, store: ClipStore, sampler: EpisodeSampler, length: int, aux: ClipStore | None = None,
                 aux_batch_size: int = 0, augment: WaveformAugment | None = None, seed: int = 0) -> None:
        self.store, self.sampler, self.length = store, sampler, length
        self.aux, self.aux_batch_size, self.augment, self.seed = aux, aux_batch_size, augment, seed

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> dict:
        ep = self.sampler.episode(i)
        rng = np.random.default_rng([self.seed, int(i), 0xA06])
        clips = [self.store.clip(j, self.augment, rng) for j in ep.items]
        batch = {
            "audio": torch.from_numpy(np.stack(clips).astype(np.float32, copy=False)),
            "ways": self.sampler.ways, "shots": self.sampler.shots, "queries": self.sampler.queries,
            "unknown": self.sampler.unknown,
        }
        if self.aux is not None and self.aux_batch_size:
            picks = rng.integers(len(self.aux.cuts), size=self.aux_batch_size)
            batch["aux_audio"] = torch.from_numpy(np.stack([self.aux.clip(j, self.augment, rng) for j in picks]))
            batch["aux_labels"] = torch.from_numpy(self.aux.targets[picks])
        return batch


def read_aux_labels(folder: Path) -> list[str] | None:
    """``labels.json`` or ``labels.txt`` of a LibriWord-format folder; ``None`` if neither."""
    from speechkit.data.manifests import read_labels

    if (folder / LABELS_FILENAME).is_file():
        return read_labels(folder, hint=AUX_HINT)
    txt = folder / "labels.txt"
    if txt.is_file():
        labels = [line.strip() for line in txt.read_text(encoding="utf-8").splitlines() if line.strip()]
        if not labels or len(set(labels)) != len(labels):
            raise CorpusError(f"{txt}: expected one unique label per line")
        return labels
    return None


class FewShotDataModule(L.LightningDataModule):
    """Episodes of splitGSC (and LibriWord batches for AuxSL).

    Args:
        manifest_dir: the splitGSC folder.
        aux_manifest_dir: LibriWord-format folder for AuxSL; ``None``: no auxiliary data.
        ways, shots, queries, unknown: training episodes (N-way K-shot, Q queries per class, U
            open-set queries from other training classes).
        episodes_per_epoch: training episodes per epoch.
        eval_ways, eval_queries, eval_unknown: validation/test episodes.
        eval_shots: shot counts evaluated (the episodes carry ``max(eval_shots)`` supports).
        val_episodes, test_episodes: fixed evaluation episodes.
        aux_batch_size: LibriWord clips added to every training episode.
        sample_rate, clip_seconds: audio fed to the model.
        augment: augment training clips (speed/volume/shift/noise of :class:`WaveformAugment`).
        num_workers: DataLoader workers.
        seed: episode seed.

    Raises:
        CorpusError: missing folders/manifests, or too few classes/clips for the episodes.
    """

    def __init__(
        self,
        manifest_dir: str,
        aux_manifest_dir: str | None = None,
        ways: int = 5,
        shots: int = 1,
        queries: int = 5,
        unknown: int = 5,
        episodes_per_epoch: int = 200,
        eval_ways: int = 5,
        eval_shots: list[int] | None = None,
        eval_queries: int = 5,
        eval_unknown: int = 5,
        val_episodes: int = 100,
        test_episodes: int = 1000,
        aux_batch_size: int = 32,
        sample_rate: int = 16000,
        clip_seconds: float = 1.0,
        augment: bool = True,
        num_workers: int = 0,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.manifest_dir = Path(manifest_dir)
        if not cuts_path(self.manifest_dir, "train").is_file():
            raise CorpusError(f"{cuts_path(self.manifest_dir, 'train')}: no such manifest; {FEWSHOT_HINT}")
        self.aux_dir = Path(aux_manifest_dir) if aux_manifest_dir else None
        self._aux_labels = None
        if self.aux_dir is not None:
            if not cuts_path(self.aux_dir, "train").is_file():
                raise CorpusError(f"{cuts_path(self.aux_dir, 'train')}: no such manifest; {AUX_HINT}")
            self._aux_labels = read_aux_labels(self.aux_dir)
        self.sample_rate = int(sample_rate)
        self.clip_samples = round(clip_seconds * sample_rate)
        self.eval_shots = sorted(int(k) for k in (eval_shots or [1, 5]))
        self.stores: dict[str, ClipStore] = {}

    @property
    def aux_num_classes(self) -> int:
        """Classes of the auxiliary data (0 without it); read without loading the audio."""
        if self.aux_dir is None:
            return 0
        if self._aux_labels is None:
            self._aux_labels = self.store("aux").labels
        return len(self._aux_labels)

    def store(self, split: str) -> ClipStore:
        """The :class:`ClipStore` of ``train``/``valid``/``test`` or ``aux`` (read once)."""
        if split not in self.stores:
            if split == "aux":
                cuts = read_cuts(cuts_path(self.aux_dir, "train"), hint=AUX_HINT)
                self.stores[split] = ClipStore(cuts, self._aux_labels, self.sample_rate, self.clip_samples)
            else:
                cuts = read_cuts(cuts_path(self.manifest_dir, split), hint=FEWSHOT_HINT)
                if not len(cuts):
                    raise CorpusError(f"{cuts_path(self.manifest_dir, split)}: manifest has no cuts; {FEWSHOT_HINT}")
                self.stores[split] = ClipStore(cuts, None, self.sample_rate, self.clip_samples)
        return self.stores[split]

    def sampler(self, split: str, num_episodes: int | None = None) -> EpisodeSampler:
        """The episode sampler of a split (training or the fixed evaluation episodes)."""
        h = self.hparams
        store = self.store(split)
        if split == "train":
            return EpisodeSampler(store.targets, h.ways, h.shots, h.queries, h.unknown, seed=h.seed)
        offset = {"valid": 1, "test": 2}[split]
        return EpisodeSampler(store.targets, h.eval_ways, max(self.eval_shots), h.eval_queries, h.eval_unknown,
                              seed=h.seed + offset, num_episodes=num_episodes)

    def train_dataloader(self) -> DataLoader:
        h = self.hparams
        augment = WaveformAugment(sample_rate=self.sample_rate, noise_prob=0.0, speed_factors=(0.9, 1.0, 1.1),
                                  volume_db=6.0) if h.augment else None
        dataset = EpisodeDataset(self.store("train"), self.sampler("train"), _VIRTUAL_EPISODES,
                                 aux=self.store("aux") if self.aux_dir is not None else None,
                                 aux_batch_size=h.aux_batch_size, augment=augment, seed=h.seed)
        sampler = RandomSampler(dataset, replacement=True, num_samples=h.episodes_per_epoch)
        return DataLoader(dataset, batch_size=None, sampler=sampler, num_workers=h.num_workers)

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader("valid", self.hparams.val_episodes)

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader("test", self.hparams.test_episodes)

    def _eval_loader(self, split: str, episodes: int) -> DataLoader:
        dataset = EpisodeDataset(self.store(split), self.sampler(split, episodes), episodes, seed=self.hparams.seed)
        return DataLoader(dataset, batch_size=None, shuffle=False, num_workers=self.hparams.num_workers)
