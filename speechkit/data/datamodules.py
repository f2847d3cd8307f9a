"""LightningDataModules over prepared classification manifests (KWS, acoustic scenes).

A prepared folder (``speechkit prepare ...``, see :mod:`speechkit.data.manifests`) holds
``cuts_{train,valid,test}.jsonl.gz``, ``labels.json`` and, for KWS, ``cuts_noise.jsonl.gz``.
Batches are dicts::

    {"audio": FloatTensor (B, S), "audio_lens": LongTensor (B,), "labels": LongTensor (B,),
     "ids": list[str] (B,), "groups": LongTensor (B,) (test split, only with ``group_by``)}

with S = ``clip_seconds * sample_rate``: every clip is padded with zeros at the end or cropped
(randomly in training, centred in evaluation) to S; ``audio_lens`` holds the number of real
samples. Only the training split is augmented (:class:`speechkit.data.augment.WaveformAugment`).
Under DDP the test split is sharded without padding (each clip is evaluated once, by one
process), so test metrics summed over processes count the test set exactly once.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import lightning.pytorch as L
import numpy as np
import torch
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from lightning.pytorch.utilities import rank_zero_warn
from torch.utils.data import DataLoader, Dataset

from speechkit.audio import resample, to_mono
from speechkit.data.augment import WaveformAugment
from speechkit.data.manifests import NOISE, SILENCE, UNKNOWN, cut_label, cuts_path, read_cuts, read_labels
from speechkit.errors import AudioError, CorpusError

PREPARE_HINT = "run `speechkit prepare <corpus> CORPUS_DIR OUT_DIR` first and pass OUT_DIR as manifest_dir"


def load_cut_audio(cut, sample_rate: int) -> np.ndarray:
    """A cut's audio as mono float32 (T,) at ``sample_rate`` Hz.

    Raises:
        AudioError: the audio cannot be read (the message names the source file).
    """
    try:
        audio = cut.load_audio()  # (C, T) at cut.sampling_rate
    except Exception as exc:  # lhotse wraps backend failures in several exception types
        source = cut.recording.sources[0].source if cut.has_recording else cut.id
        raise AudioError(f"{source}: cannot load audio of cut {cut.id!r} ({exc})") from None
    audio = to_mono(np.ascontiguousarray(audio.T, dtype=np.float32))
    return resample(audio, cut.sampling_rate, sample_rate)


def fit_length(audio: np.ndarray, num_samples: int, rng: np.random.Generator | None = None) -> np.ndarray:
    """Zero-pad at the end or crop to ``num_samples``.

    Args:
        audio: (T,) samples.
        num_samples: output length S.
        rng: crop at a random offset with it; centre crop when ``None``.

    Returns:
        (S,) float32.
    """
    excess = len(audio) - num_samples
    if excess > 0:
        start = int(rng.integers(excess + 1)) if rng is not None else excess // 2
        return audio[start : start + num_samples]
    if excess < 0:
        return np.pad(audio, (0, -excess))
    return audio


class CutClassificationDataset(Dataset):
    """Fixed-length clips and class indices from a list of labelled cuts.

    Args:
        cuts: cuts with one supervision carrying ``custom["label"]``.
        labels: class names; a cut's target is the index of its label.
        sample_rate: output rate (Hz); audio at another rate is resampled.
        clip_samples: output length S of every clip.
        augment: training augmentation; ``None`` for evaluation (centre crop, no noise).
        seed: mixed into the per-worker random generator.
        group_by: supervision ``custom`` field (e.g. ``device``) whose value, as an index into
            ``groups``, each item carries as ``group``; ``None``: no groups.
        groups: group names (required with ``group_by``).

    Raises:
        CorpusError: a cut's label is not in ``labels``, or its ``group_by`` value is missing or
            not in ``groups``.
    """

    def __init__(
        self,
        cuts: Sequence,
        labels: Sequence[str],
        sample_rate: int,
        clip_samples: int,
        augment: WaveformAugment | None = None,
        seed: int = 0,
        group_by: str | None = None,
        groups: Sequence[str] = (),
    ) -> None:
        self.cuts = list(cuts)
        index = {name: i for i, name in enumerate(labels)}
        self.targets = []
        for cut in self.cuts:
            label = cut_label(cut)
            if label not in index:
                raise CorpusError(f"cut {cut.id!r} has label {label!r}, which is not in labels.json {list(labels)}")
            self.targets.append(index[label])
        group_index = {name: i for i, name in enumerate(groups)}
        self.group_ids = None
        if group_by is not None:
            self.group_ids = [group_index.get(cut_group(cut, group_by), -1) for cut in self.cuts]
            missing = [cut for cut, g in zip(self.cuts, self.group_ids) if g < 0]
            if missing:
                raise CorpusError(
                    f"cut {missing[0].id!r}: its {group_by!r} value {cut_group(missing[0], group_by)!r} is not "
                    f"among the groups {list(groups)}"
                )
        self.silence_index = index.get(SILENCE, -1)
        self.sample_rate = sample_rate
        self.clip_samples = clip_samples
        self.augment = augment
        self.seed = seed
        self._rng_key: tuple | None = None
        self._rng: np.random.Generator | None = None

    def __len__(self) -> int:
        return len(self.cuts)

    def __getitem__(self, i: int) -> dict:
        cut = self.cuts[i]
        audio = load_cut_audio(cut, self.sample_rate)
        if self.augment is None:
            length = min(len(audio), self.clip_samples)
            audio = fit_length(audio, self.clip_samples)
        else:
            rng = self.rng()
            audio = self.augment.perturb(audio, rng, is_silence=self.targets[i] == self.silence_index)
            length = min(len(audio), self.clip_samples)
            audio = fit_length(audio, self.clip_samples, rng)
            audio = self.augment.add_noise_and_shift(audio, rng, is_silence=self.targets[i] == self.silence_index)
        item = {"audio": audio, "audio_len": length, "label": self.targets[i], "id": cut.id}
        if self.group_ids is not None:
            item["group"] = self.group_ids[i]
        return item

    def rng(self) -> np.random.Generator:
        """This process's generator, created on first use in each worker.

        ``torch.initial_seed()`` differs per DataLoader worker and per epoch (the loader draws a
        new base seed each epoch from torch's seeded global generator), so augmentation differs
        across workers, epochs and DDP ranks but repeats under ``seed_everything``.
        """
        worker = torch.utils.data.get_worker_info()
        key = (os.getpid(), worker.id if worker is not None else -1)
        if self._rng is None or self._rng_key != key:
            self._rng_key = key
            self._rng = np.random.default_rng([self.seed, torch.initial_seed(), _rank()])
        return self._rng


class CutBabble:
    """Other training utterances for the ``babble`` augmentation (picklable for workers).

    ``CutBabble(cuts, sample_rate)(rng, n)`` returns ``n`` random cuts' audio, each (N_i,)
    float32 at ``sample_rate``.

    Raises:
        CorpusError: ``cuts`` is empty.
    """

    def __init__(self, cuts: Sequence, sample_rate: int) -> None:
        self.cuts = list(cuts)
        if not self.cuts:
            raise CorpusError("the babble augmentation needs training utterances; the training split has none")
        self.sample_rate = sample_rate

    def __call__(self, rng: np.random.Generator, n: int) -> list[np.ndarray]:
        picks = rng.integers(len(self.cuts), size=n)
        return [load_cut_audio(self.cuts[int(k)], self.sample_rate) for k in picks]


def cut_group(cut, field: str) -> str:
    """A cut's ``supervisions[0].custom[field]`` as a string (e.g. its recording device).

    Raises:
        CorpusError: the cut has no such field.
    """
    custom = (cut.supervisions[0].custom or {}) if cut.supervisions else {}
    if field not in custom:
        raise CorpusError(
            f"cut {cut.id!r} has no supervision custom[{field!r}]; group_by needs a field every cut "
            f"of the manifest has (TAU 2020 Mobile: device, city)"
        )
    return str(custom[field])


def collate_classification(items: list[dict]) -> dict:
    """Stack dataset items into a batch dict (see module docstring)."""
    batch = {
        "audio": torch.from_numpy(np.stack([it["audio"] for it in items]).astype(np.float32, copy=False)),
        "audio_lens": torch.tensor([it["audio_len"] for it in items], dtype=torch.int64),
        "labels": torch.tensor([it["label"] for it in items], dtype=torch.int64),
        "ids": [it["id"] for it in items],
    }
    if items and "group" in items[0]:
        batch["groups"] = torch.tensor([it["group"] for it in items], dtype=torch.int64)
    return batch


class ClassificationDataModule(L.LightningDataModule):
    """Clip classification (keywords, acoustic scenes) from a prepared manifest folder.

    ``labels`` and ``num_classes`` are available right after construction (``labels.json`` is
    read in ``__init__``) so LightningCLI can link ``data.num_classes`` into the model.

    Args:
        manifest_dir: folder written by ``speechkit prepare``.
        batch_size: clips per batch (per process under DDP).
        num_workers: DataLoader worker processes.
        sample_rate: audio rate fed to the model (Hz); other rates are resampled.
        clip_seconds: every clip is padded/cropped to this length.
        augment: augment the training split (never valid/test/predict).
        noise_prob: probability of background noise (+ time shift) on a non-silence clip.
        noise_max_gain: noise amplitude ``U(0, noise_max_gain)`` (BC-ResNet: 0.1).
        snr_db: ``(low, high)`` dB: mix noise at a random SNR instead of a random gain.
        time_shift_ms: maximum time shift of the noised clips (ms).
        speed_factors: speed-perturbation factors, e.g. ``(0.9, 1.0, 1.1)``.
        volume_db: random gain range ±dB.
        augmentations: voice/room/channel augmentations of training speech clips, names from
            :data:`speechkit.data.augment.AUGMENTATIONS` (``pitch``, ``formant``, ``eq``,
            ``bandlimit``, ``codec``, ``reverb``, ``babble``); empty: none.
        augment_p: probability of each of ``augmentations`` per clip.
        seed: seed of the augmentation generators.
        group_by: supervision ``custom`` field whose values group the test clips for per-group
            test accuracy (``test/acc_<value>``), e.g. ``device`` for TAU 2020 Mobile;
            ``None``: no groups.

    Raises:
        CorpusError: ``manifest_dir`` lacks ``labels.json`` or a split's manifest.
    """

    def __init__(
        self,
        manifest_dir: str,
        batch_size: int = 32,
        num_workers: int = 0,
        sample_rate: int = 16000,
        clip_seconds: float = 1.0,
        augment: bool = False,
        noise_prob: float = 0.8,
        noise_max_gain: float = 0.1,
        snr_db: tuple[float, float] | None = None,
        time_shift_ms: float = 100.0,
        speed_factors: tuple[float, ...] = (1.0,),
        volume_db: float = 0.0,
        augmentations: list[str] | None = None,
        augment_p: float = 0.5,
        seed: int = 0,
        group_by: str | None = None,
    ) -> None:
        super().__init__()
        from speechkit.data.augment import AUGMENTATIONS

        unknown = [a for a in augmentations or () if a not in AUGMENTATIONS]
        if unknown:
            raise CorpusError(f"unknown augmentation(s) {unknown}; expected names from {list(AUGMENTATIONS)}")
        self.save_hyperparameters()
        self.manifest_dir = Path(manifest_dir)
        self._labels = read_labels(self.manifest_dir, hint=PREPARE_HINT)
        # Read by the task through its data links (``data.sample_rate``): without the attribute
        # jsonargparse skips the link and a 44.1 kHz checkpoint would record 16 kHz.
        self.sample_rate = int(sample_rate)
        self.clip_samples = round(clip_seconds * sample_rate)
        self.datasets: dict[str, CutClassificationDataset] = {}
        self._groups: list[str] | None = None

    @property
    def labels(self) -> list[str]:
        """Class names in logit order (from ``labels.json``)."""
        return list(self._labels)

    @property
    def num_classes(self) -> int:
        return len(self._labels)

    @property
    def groups(self) -> list[str]:
        """Sorted ``group_by`` values of the test clips (read once); empty without ``group_by``."""
        if self.hparams.group_by is None:
            return []
        if self._groups is None:
            self._set_groups(read_cuts(cuts_path(self.manifest_dir, "test"), hint=PREPARE_HINT))
        return list(self._groups)

    def _set_groups(self, test_cuts) -> None:
        self._groups = sorted({cut_group(cut, self.hparams.group_by) for cut in test_cuts})

    def setup(self, stage: str | None = None) -> None:
        """Load the manifests the stage needs (``fit``: train + valid; ``validate``; ``test``/``predict``)."""
        wanted = {"fit": ("train", "valid"), "validate": ("valid",), "test": ("test",), "predict": ("test",)}
        for split in wanted.get(stage, ("train", "valid", "test")):
            if split not in self.datasets:
                self.datasets[split] = self._dataset(split)

    def train_dataloader(self) -> DataLoader:
        # A plain shuffling loader: under DDP Lightning swaps in a DistributedSampler.
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("valid", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        if split not in self.datasets:
            self.datasets[split] = self._dataset(split)
        dataset = self.datasets[split]
        sampler = None
        if split == "test" and _world_size() > 1:
            # Lightning's default DistributedSampler pads the shards with repeated clips;
            # this one does not, so summed test counts see every clip exactly once.
            sampler = UnrepeatedDistributedSampler(dataset, shuffle=False)
        return DataLoader(
            dataset, batch_size=self.hparams.batch_size, shuffle=shuffle if sampler is None else None,
            sampler=sampler, num_workers=self.hparams.num_workers, collate_fn=collate_classification,
            persistent_workers=False,
        )

    def _dataset(self, split: str) -> CutClassificationDataset:
        hp = self.hparams
        cuts = read_cuts(cuts_path(self.manifest_dir, split), hint=PREPARE_HINT)
        augment = self._augment(cuts) if split == "train" and hp.augment else None
        group_by = hp.group_by if split == "test" else None
        if group_by is not None and self._groups is None:
            self._set_groups(cuts)
        return CutClassificationDataset(
            cuts, self._labels, sample_rate=hp.sample_rate, clip_samples=self.clip_samples, augment=augment,
            seed=hp.seed, group_by=group_by, groups=self.groups if group_by else (),
        )

    def _augment(self, train_cuts: Sequence = ()) -> WaveformAugment:
        hp = self.hparams
        augmentations = tuple(hp.augmentations or ())
        babble_source = None
        if "babble" in augmentations:
            # Talkers say no keyword when the corpus has non-keyword speech: a keyword in the
            # babble under an ``_unknown_`` clip would contradict its label.
            speech = [c for c in train_cuts if cut_label(c) != SILENCE]
            unknown = [c for c in speech if cut_label(c) == UNKNOWN]
            babble_source = CutBabble(unknown or speech, hp.sample_rate)
        noises = []
        wants_noise = hp.noise_prob > 0 or SILENCE in self._labels
        path = cuts_path(self.manifest_dir, NOISE)
        if wants_noise and path.is_file():
            noises = [load_cut_audio(cut, hp.sample_rate) for cut in read_cuts(path)]
        elif wants_noise:
            rank_zero_warn(f"{path} not found: training without background-noise augmentation")
        return WaveformAugment(
            sample_rate=hp.sample_rate, noises=noises, noise_prob=hp.noise_prob,
            noise_max_gain=hp.noise_max_gain, snr_db=tuple(hp.snr_db) if hp.snr_db else None,
            time_shift_ms=hp.time_shift_ms, speed_factors=tuple(hp.speed_factors), volume_db=hp.volume_db,
            augmentations=augmentations, augment_p=hp.augment_p, babble_source=babble_source,
        )


class KWSDataModule(ClassificationDataModule):
    """:class:`ClassificationDataModule` with the BC-ResNet keyword-spotting defaults.

    Batch 100, 1 s at 16 kHz, augmentation on: background noise with probability 0.8 at
    amplitude ``U(0, 0.1)`` (``_silence_`` always, at ``U(0, 1)``) plus a ±100 ms time shift.
    Only the defaults that differ (``batch_size``, ``augment``) are written here; every other
    argument is :class:`ClassificationDataModule`'s, passed on by keyword (LightningCLI follows
    ``**kwargs`` into the base signature, so ``--print_config`` still lists them all).
    """

    def __init__(self, manifest_dir: str, batch_size: int = 100, augment: bool = True, **kwargs) -> None:
        super().__init__(manifest_dir=manifest_dir, batch_size=batch_size, augment=augment, **kwargs)


def _rank() -> int:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank()
    return 0


def _world_size() -> int:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_world_size()
    return 1
