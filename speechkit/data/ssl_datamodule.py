"""Audio-only data for self-supervised pre-training and distillation (issue 16): no transcripts.

The same lhotse cut manifests as :class:`speechkit.data.asr_datamodule.AsrDataModule` (e.g.
``speechkit prepare librispeech`` output), the same duration-bucketed sampler, DDP sharding and
``stats_audio``; transcripts are neither needed nor read. Training utterances longer than
``crop_seconds`` are cut to a random ``crop_seconds`` window (fairseq HuBERT's
``max_sample_size``), drawn per utterance per epoch. Batches::

    {"audio": FloatTensor (B, S), "audio_lens": LongTensor (B,), "ids": list[str] (B,)}
"""

from __future__ import annotations

import lightning.pytorch as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from speechkit.data.asr_datamodule import AsrDataModule, _SizedSampler, pad_waveforms
from speechkit.data.datamodules import load_cut_audio
from speechkit.errors import CorpusError


class AudioDataset(Dataset):
    """``dataset[cuts] -> batch`` of waveforms (module docstring); ``crop_samples`` > 0 crops."""

    def __init__(self, sample_rate: int, crop_samples: int = 0, seed: int = 0) -> None:
        self.sample_rate, self.crop_samples, self.seed = sample_rate, crop_samples, seed

    def __getitem__(self, cuts) -> dict:
        audios, ids = [], []
        rng = np.random.default_rng([self.seed, torch.initial_seed() % 2**32])
        for cut in cuts:
            audio = load_cut_audio(cut, self.sample_rate)
            if 0 < self.crop_samples < len(audio):
                start = int(rng.integers(0, len(audio) - self.crop_samples + 1))
                audio = audio[start : start + self.crop_samples]
            audios.append(audio)
            ids.append(cut.id)
        audio, audio_lens = pad_waveforms(audios)
        return {"audio": audio, "audio_lens": audio_lens, "ids": ids}


class _DurationFilter:
    def __init__(self, min_seconds: float, max_seconds: float) -> None:
        self.min_seconds, self.max_seconds = min_seconds, max_seconds

    def __call__(self, cut) -> bool:
        return self.min_seconds <= cut.duration <= self.max_seconds


class SslDataModule(AsrDataModule):
    """Unlabelled speech from lhotse cut manifests (``AsrDataModule`` without the tokenizer).

    Args:
        train_manifests, valid_manifests, test_manifests: ``cuts_*.jsonl.gz`` files.
        sample_rate: audio rate fed to the model (Hz).
        max_duration: seconds of audio per batch (per process).
        num_buckets: duration buckets of the sampler.
        num_workers: loader processes.
        min_seconds, max_seconds: utterances outside this range are skipped (train/valid).
        crop_seconds: training utterances are cut to a random window this long; 0: no crop.
        seed: sampler and crop seed.
    """

    def __init__(
        self,
        train_manifests: list[str],
        valid_manifests: list[str],
        test_manifests: list[str] | None = None,
        sample_rate: int = 16000,
        max_duration: float = 200.0,
        num_buckets: int = 30,
        num_workers: int = 2,
        min_seconds: float = 0.5,
        max_seconds: float = 30.0,
        crop_seconds: float = 15.0,
        seed: int = 0,
    ) -> None:
        L.LightningDataModule.__init__(self)
        if crop_seconds < 0 or min_seconds > max_seconds:
            raise CorpusError(f"crop_seconds ({crop_seconds}) must be >= 0 and min_seconds <= max_seconds")
        self.save_hyperparameters()
        self.speed_factors = (1.0,)  # the inherited train loader passes them; audio-only data is never sped up

    @property
    def vocab_size(self) -> int:
        raise AttributeError("SslDataModule has no vocabulary (audio only)")

    @property
    def tokenizer_path(self) -> str:
        raise AttributeError("SslDataModule has no tokenizer (audio only)")

    def _loader(self, split: str, shuffle: bool, speed_factors=(1.0,)) -> DataLoader:
        hp = self.hparams
        cuts = self.cuts(split)
        if split != "test":
            cuts = cuts.filter(_DurationFilter(hp.min_seconds, hp.max_seconds))
        sampler = self._sampler(cuts, shuffle)
        crop = 0
        if split == "train":
            sampler = _SizedSampler(sampler, self._count_batches(self._sampler(cuts, shuffle), split))
            crop = int(round(hp.crop_seconds * self.sample_rate))
        dataset = AudioDataset(self.sample_rate, crop_samples=crop, seed=hp.seed)
        return DataLoader(dataset, sampler=sampler, batch_size=None, num_workers=hp.num_workers,
                          persistent_workers=False)
