"""LightningDataModule for audio-visual speech recognition (LRS3/LRS2 layouts, synthetic twin).

Manifests are the ASR ones (``cuts_<split>.jsonl.gz`` from ``speechkit prepare lrs3|lrs2``):
lhotse cuts whose recording is the 16 kHz audio and whose ``custom["video"]`` is the 25 fps gray
mouth-ROI mp4 (96 x 96) of the same utterance, so tokenizer, filtering and batching are
:class:`speechkit.data.asr_datamodule.AsrDataModule`'s. Batches add to the ASR batch::

    {"video": uint8 (B, T, 88, 88), "video_lens": int64 (B,),
     "clean_audio": float32 (B, S) the audio before noise (the V2A target)}

with ``audio`` (noisy in training) cut or zero-padded to ``640 T`` samples (25 fps at 16 kHz),
so audio and video share one clock. The 88 x 88 crop of the 96 x 96 ROI is random in training,
centred otherwise (AV-HuBERT's crop).

**Noise.** Training: with probability ``noise_prob`` an utterance gets, at ``U(noise_snr_db)``
dB SNR, either a random slice of a MUSAN-layout noise recording (``noise_dirs``: every
``*.wav``/``*.flac`` below them, e.g. ``musan/noise`` and ``musan/music``) or babble, the sum
of 3-6 other training utterances (with probability ``babble_share`` when both exist). The mixing
functions are :mod:`speechkit.data.augment`'s (``noise_segment``, ``mix_at_snr``, ``babble``)
and the babble talkers come from :class:`speechkit.data.datamodules.CutBabble`. Validation and
test: ``eval_noise`` (``"noise"`` or ``"babble"``, babble from other utterances of the same split)
at exactly ``eval_snr_db`` dB, drawn from a generator seeded by the cut id, so every model sees
the same noisy audio (the benchmark's table); ``None``: clean.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from speechkit.data.asr_datamodule import (
    AsrDataModule,
    AsrDataset,
    _CutFilter,
    _SizedSampler,
    collate_asr,
    cut_text,
    pad_waveforms,
)
from speechkit.data.augment import babble, clamp, mix_at_snr, noise_segment
from speechkit.data.datamodules import CutBabble, load_cut_audio
from speechkit.errors import CorpusError
from speechkit.text.normalize import normalize_text

SAMPLES_PER_FRAME = 640  # 16 kHz / 25 fps
ROI_CROP = 88
EVAL_NOISES = ("noise", "babble")


def load_noise_dir(folders: list[str], sample_rate: int) -> list[np.ndarray]:
    """Every ``*.wav``/``*.flac`` below ``folders`` (MUSAN layout) as float32 mono at ``sample_rate``.

    Raises:
        CorpusError: a folder is missing or holds no audio.
    """
    from speechkit.audio import load_audio

    noises = []
    for folder in folders:
        path = Path(folder)
        files = sorted(p for p in path.rglob("*") if p.suffix.lower() in (".wav", ".flac")) if path.is_dir() else []
        if not files:
            raise CorpusError(f"{path}: no noise recordings (*.wav, *.flac) found; expected a MUSAN-layout folder")
        noises += [load_audio(f, sample_rate) for f in files]
    return noises


def crop_roi(frames: np.ndarray, size: int = ROI_CROP, rng: np.random.Generator | None = None) -> np.ndarray:
    """(T, H, W) -> (T, size, size): a random crop with ``rng``, else the centre crop.

    Example:
        >>> crop_roi(np.zeros((3, 96, 96), np.uint8)).shape
        (3, 88, 88)
    """
    h, w = frames.shape[1:]
    if h < size or w < size:
        raise CorpusError(f"mouth ROI frames are {h}x{w}, smaller than the {size}x{size} crop")
    top = int(rng.integers(h - size + 1)) if rng is not None else (h - size) // 2
    left = int(rng.integers(w - size + 1)) if rng is not None else (w - size) // 2
    return frames[:, top : top + size, left : left + size]


class NoiseMixer:
    """Background noise and babble at an SNR (module docstring), picklable for loader workers.

    Args:
        noises: noise recordings (N_i,) at the audio rate; may be empty.
        babble_source: ``source(rng, n)`` -> other utterances, or None.
        snr_db: ``(low, high)`` dB.
        prob: probability an utterance gets noise.
        babble_share: probability of babble rather than noise when both are available.
    """

    def __init__(self, noises, babble_source, snr_db: tuple[float, float], prob: float = 1.0,
                 babble_share: float = 0.5) -> None:
        if not len(noises) and babble_source is None:
            raise CorpusError("noise mixing needs noise recordings (noise_dirs) or babble")
        self.noises, self.babble_source = list(noises), babble_source
        self.snr_db, self.prob, self.babble_share = tuple(snr_db), prob, babble_share

    def __call__(self, audio: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if rng.random() >= self.prob:
            return audio
        snr = float(rng.uniform(*self.snr_db))
        use_babble = self.babble_source is not None and (not self.noises or rng.random() < self.babble_share)
        if use_babble:
            return clamp(babble(audio, self.babble_source(rng, int(rng.integers(3, 7))), snr, rng))
        return clamp(mix_at_snr(audio, noise_segment(self.noises, audio.size, rng), snr))


class AvsrDataset(AsrDataset):
    """``dataset[cuts] -> batch`` (module docstring).

    Args:
        tokenizer, sample_rate, seed: as :class:`AsrDataset`.
        noise: training :class:`NoiseMixer` (random per draw) or ``None``.
        eval_noise: evaluation :class:`NoiseMixer` (seeded per cut id) or ``None``.
        random_crop: random 88 x 88 ROI crops (training) instead of centre crops.
    """

    def __init__(self, tokenizer, sample_rate: int = 16000, seed: int = 0, noise: NoiseMixer | None = None,
                 eval_noise: NoiseMixer | None = None, random_crop: bool = False) -> None:
        super().__init__(tokenizer, sample_rate=sample_rate, seed=seed)
        self.noise, self.eval_noise, self.random_crop = noise, eval_noise, random_crop

    def __getitem__(self, cuts) -> dict:
        from speechkit.data.video import read_video

        audios, cleans, videos, tokens, ids, texts = [], [], [], [], [], []
        for cut in cuts:
            video_path = (cut.custom or {}).get("video")
            if not video_path:
                raise CorpusError(f"cut {cut.id!r} has no custom 'video' path; prepare it with `speechkit prepare lrs3`")
            frames = read_video(video_path, with_audio=False).frames
            frames = crop_roi(frames, ROI_CROP, self.rng() if self.random_crop else None)
            clean = load_cut_audio(cut, self.sample_rate)
            clean = fit_to_frames(clean, len(frames))
            noisy = clean
            if self.noise is not None:
                noisy = self.noise(clean, self.rng())
            elif self.eval_noise is not None:
                noisy = self.eval_noise(clean, np.random.default_rng(_cut_seed(cut.id, self.seed)))
            text = normalize_text(cut_text(cut), cut.id)
            audios.append(noisy)
            cleans.append(clean)
            videos.append(frames)
            tokens.append(self.tokenizer.encode(text, cut.id))
            texts.append(text)
            ids.append(cut.id)
        batch = collate_asr(audios, tokens, ids, texts)
        batch["clean_audio"] = pad_waveforms(cleans)[0]
        batch["video"], batch["video_lens"] = pad_videos(videos)
        return batch


def fit_to_frames(audio: np.ndarray, num_frames: int) -> np.ndarray:
    """Cut or zero-pad (S,) audio to ``640 * num_frames`` samples (one clock for both streams)."""
    target = num_frames * SAMPLES_PER_FRAME
    return audio[:target] if audio.size >= target else np.pad(audio, (0, target - audio.size))


def pad_videos(videos: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 (T_i, H, W) -> zero-padded uint8 (B, max T_i, H, W) and int64 (B,) lengths."""
    lens = torch.tensor([len(v) for v in videos], dtype=torch.int64)
    h, w = videos[0].shape[1:]
    out = torch.zeros(len(videos), int(lens.max()), h, w, dtype=torch.uint8)
    for i, v in enumerate(videos):
        out[i, : len(v)] = torch.from_numpy(np.ascontiguousarray(v))
    return out, lens


def _cut_seed(cut_id: str, seed: int) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}/{cut_id}".encode()).digest()[:8], "little")


class AvsrDataModule(AsrDataModule):
    """Audio-visual data from ``speechkit prepare lrs3|lrs2`` manifests.

    Args (besides :class:`AsrDataModule`'s ``train_manifests`` ... ``seed``; its voice
    augmentations and ``noise_manifests`` are not used here):
        noise_dirs: MUSAN-layout folders of noise recordings for training (and ``eval_noise: noise``).
        babble: babble from other training utterances in training.
        noise_snr_db: ``(low, high)`` training SNR (the paper: 0 dB for every utterance).
        noise_prob: probability a training utterance gets noise or babble.
        babble_share: probability of babble rather than noise when both are on.
        eval_noise: ``"noise"``, ``"babble"`` or ``None`` for validation and test.
        eval_snr_db: SNR (dB) of ``eval_noise``.
    """

    def __init__(self, train_manifests: list[str], valid_manifests: list[str], test_manifests: list[str] | None = None,
                 tokenizer_path: str = "data/lang/bpe.model", sample_rate: int = 16000, max_duration: float = 60.0,
                 num_buckets: int = 10, num_workers: int = 1, min_seconds: float = 0.3, max_seconds: float = 30.0,
                 seed: int = 0, noise_dirs: list[str] | None = None, babble: bool = False,
                 noise_snr_db: tuple[float, float] = (-5.0, 10.0), noise_prob: float = 0.0, babble_share: float = 0.5,
                 babble_utterances: int = 500, eval_noise: str | None = None, eval_snr_db: float = 0.0) -> None:
        super().__init__(train_manifests, valid_manifests, test_manifests, tokenizer_path=tokenizer_path,
                         sample_rate=sample_rate, max_duration=max_duration, num_buckets=num_buckets,
                         speed_perturb=False, num_workers=num_workers, min_seconds=min_seconds,
                         max_seconds=max_seconds, seed=seed, babble_utterances=babble_utterances,
                         noise_prob=noise_prob)
        if eval_noise not in (None, *EVAL_NOISES):
            raise CorpusError(f"eval_noise {eval_noise!r}; expected one of {EVAL_NOISES} or null")
        if eval_noise == "noise" and not noise_dirs:
            raise CorpusError("eval_noise: noise needs noise_dirs (a MUSAN-layout folder)")
        self.save_hyperparameters()

    def _noises(self) -> list[np.ndarray]:
        return load_noise_dir(self.hparams.noise_dirs, self.sample_rate) if self.hparams.noise_dirs else []

    def train_noise(self) -> NoiseMixer | None:
        hp = self.hparams
        if hp.noise_prob <= 0 or (not hp.noise_dirs and not hp.babble):
            return None
        source = CutBabble(self.cuts("train").subset(first=hp.babble_utterances), self.sample_rate) if hp.babble else None
        return NoiseMixer(self._noises(), source, hp.noise_snr_db, hp.noise_prob,
                          hp.babble_share if hp.noise_dirs else 1.0)

    def evaluation_noise(self, split: str) -> NoiseMixer | None:
        hp = self.hparams
        if hp.eval_noise is None:
            return None
        if hp.eval_noise == "babble":
            return NoiseMixer([], CutBabble(list(self.cuts(split)), self.sample_rate), (hp.eval_snr_db,) * 2)
        return NoiseMixer(self._noises(), None, (hp.eval_snr_db,) * 2)

    def _loader(self, split: str, shuffle: bool, speed_factors=(1.0,)) -> DataLoader:
        hp = self.hparams
        cuts = self.cuts(split)
        if split != "test":
            cuts = cuts.filter(_CutFilter(self.tokenizer, min_seconds=hp.min_seconds, max_seconds=hp.max_seconds,
                                          max_speed=1.0))
        sampler = self._sampler(cuts, shuffle)
        if split == "train":
            sampler = _SizedSampler(sampler, self._count_batches(self._sampler(cuts, shuffle), split))
            dataset = AvsrDataset(self.tokenizer, self.sample_rate, hp.seed, noise=self.train_noise(), random_crop=True)
        else:
            dataset = AvsrDataset(self.tokenizer, self.sample_rate, hp.seed, eval_noise=self.evaluation_noise(split))
        return DataLoader(dataset, sampler=sampler, batch_size=None, num_workers=hp.num_workers,
                          persistent_workers=False)
