"""LightningDataModule for CTC speech recognition over lhotse cut manifests.

Manifests are ``cuts_<subset>.jsonl.gz`` files from ``speechkit prepare librispeech`` (read
lazily, so 960 h fit in little memory). Batches are drawn by lhotse's
``DynamicBucketingSampler``: utterances of similar duration are grouped so that each batch
holds about ``max_duration`` seconds of audio. The sampler shards batches across DDP ranks
itself (run with the trainer's ``use_distributed_sampler: false``) and reshuffles each epoch
(Lightning calls its ``set_epoch``). Batches are dicts::

    {"audio": FloatTensor (B, S), "audio_lens": LongTensor (B,),
     "tokens": LongTensor (B, U) (padded with 0), "token_lens": LongTensor (B,),
     "ids": list[str] (B,), "texts": list[str] (B,) normalised transcripts}

Speed perturbation (training only) plays each utterance at 0.9, 1.0 or 1.1 times its speed,
one factor drawn per utterance per epoch, through lhotse's ``perturb_speed`` (resampling, so
pitch changes too, as in Kaldi's and icefall's recipes). Unlike icefall, which triples the
training set with two perturbed copies, an epoch here has the original size.

Voice, room and channel augmentation (training only, issue 12): ``augmentations`` names from
:data:`speechkit.data.augment.AUGMENTATIONS` (``formant``, ``pitch``, ``babble``, ``reverb``,
``eq``, ``bandlimit``, ``codec``), each applied with probability ``augment_p`` per utterance
by :class:`speechkit.data.augment.WaveformAugment` (the same code as the KWS data module);
``babble`` mixes in other training utterances (:class:`speechkit.data.datamodules.CutBabble`
over the first ``babble_utterances`` training cuts). Background noise at ``U(noise_snr_db)`` dB
SNR, with probability ``noise_prob``, from the recordings of ``noise_manifests`` (none by
default: the synthetic corpora have no noise recordings). Every draw comes from one generator
per worker seeded from ``seed`` and torch's per-worker seed, so ``seed_everything`` repeats the
audio exactly. Validation and test audio is never augmented.
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Sequence

import lightning.pytorch as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from speechkit.data.augment import WaveformAugment
from speechkit.data.datamodules import CutBabble, load_cut_audio
from speechkit.data.manifests import read_cuts
from speechkit.errors import CorpusError
from speechkit.text.normalize import normalize_text

PREPARE_HINT = "prepare manifests with `speechkit prepare librispeech CORPUS_DIR OUT_DIR` first"
#: Speed-perturbation factors (Ko et al. 2015), as in Kaldi and icefall.
SPEED_FACTORS = (0.9, 1.0, 1.1)
# Frame arithmetic of the default front-end (25 ms windows every 10 ms, snip_edges) and the
# encoder's x4 subsampling, used to drop utterances too short for their transcript.
_WINDOW_S, _HOP_S = 0.025, 0.010


def encoder_frames(duration_s: float) -> int:
    """Encoder frames (40 ms) for ``duration_s`` of audio: fbank frames, then ``(T - 3) // 4``."""
    fbank_frames = 1 + int((duration_s - _WINDOW_S) / _HOP_S) if duration_s >= _WINDOW_S else 0
    from speechkit.runtime.chunking import encoder_frames as frames_from_features

    return frames_from_features(fbank_frames)


def ctc_frames_needed(tokens: Sequence[int]) -> int:
    """Fewest frames CTC needs for ``tokens``: one per token plus a blank between repeats."""
    return len(tokens) + sum(a == b for a, b in itertools.pairwise(tokens))


def cut_text(cut) -> str:
    """A cut's transcript: its supervisions' texts joined by spaces."""
    return " ".join(s.text for s in cut.supervisions if s.text)


class AsrDataset(Dataset):
    """Batch builder for lhotse samplers: ``dataset[cuts] -> batch dict`` (module docstring).

    Args:
        tokenizer: :class:`speechkit.text.Tokenizer` (normalises and encodes transcripts).
        sample_rate: output rate (Hz).
        speed_factors: factors drawn uniformly per utterance; ``(1.0,)`` for none.
        seed: mixed into the per-worker generator of the speed factors and augmentation.
        augment: voice/room/channel augmentation and background noise (training); ``None``: none.

    Raises:
        SpeechkitError: a transcript the normalisation cannot map (names the cut).
        AudioError: unreadable audio (names the file).
    """

    def __init__(self, tokenizer, sample_rate: int = 16000, speed_factors: Sequence[float] = (1.0,), seed: int = 0,
                 augment: WaveformAugment | None = None) -> None:
        self.tokenizer = tokenizer
        self.sample_rate = sample_rate
        self.speed_factors = tuple(speed_factors)
        self.seed = seed
        self.augment = augment
        self._rng: np.random.Generator | None = None
        self._rng_key: tuple | None = None

    def __getitem__(self, cuts) -> dict:
        audios, tokens, ids, texts = [], [], [], []
        for cut in cuts:
            factor = self._speed_factor()
            if factor != 1.0:
                cut = cut.perturb_speed(factor)
            text = normalize_text(cut_text(cut), cut.id)
            audio = load_cut_audio(cut, self.sample_rate)
            if self.augment is not None:
                rng = self.rng()
                audio = self.augment.add_noise_and_shift(self.augment.perturb(audio, rng), rng)
            audios.append(audio)
            tokens.append(self.tokenizer.encode(text, cut.id))
            texts.append(text)
            ids.append(cut.id)
        return collate_asr(audios, tokens, ids, texts)

    def _speed_factor(self) -> float:
        if len(self.speed_factors) <= 1:
            return self.speed_factors[0] if self.speed_factors else 1.0
        return float(self.rng().choice(self.speed_factors))

    def rng(self) -> np.random.Generator:
        """This worker's generator (speed factors and augmentation), reseeded each epoch: the
        loader draws a new ``torch.initial_seed()`` per worker and epoch from the seeded global
        generator; in the main process (``num_workers=0``) it follows ``torch.manual_seed``."""
        worker = torch.utils.data.get_worker_info()
        key = (os.getpid(), worker.id if worker is not None else -1, torch.initial_seed())
        if self._rng is None or self._rng_key != key:
            self._rng_key = key
            self._rng = np.random.default_rng([self.seed, torch.initial_seed() % 2**32, _dist_info()[1]])
        return self._rng


def pad_waveforms(audios: Sequence[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """Waveforms (S_i,) -> zero-padded float32 (B, max S_i) and their lengths int64 (B,)."""
    lens = torch.tensor([len(a) for a in audios], dtype=torch.int64)
    batch = torch.zeros(len(audios), int(lens.max()) if len(audios) else 0)
    for i, audio in enumerate(audios):
        batch[i, : len(audio)] = torch.as_tensor(np.asarray(audio, dtype=np.float32))
    return batch, lens


def collate_asr(audios: list[np.ndarray], tokens: list[list[int]], ids: list[str], texts: list[str]) -> dict:
    """Pad waveforms and token sequences into a batch dict (module docstring)."""
    audio, audio_lens = pad_waveforms(audios)
    token_lens = torch.tensor([len(t) for t in tokens], dtype=torch.int64)
    padded_tokens = torch.zeros(len(tokens), int(token_lens.max()) if tokens else 0, dtype=torch.int64)
    for i, t in enumerate(tokens):
        padded_tokens[i, : len(t)] = torch.tensor(t, dtype=torch.int64)
    return {"audio": audio, "audio_lens": audio_lens, "tokens": padded_tokens, "token_lens": token_lens,
            "ids": list(ids), "texts": list(texts)}


class _CutFilter:
    """Keep cuts whose duration is in range and whose audio can carry their tokens under CTC.

    The slowest speed factor is not a concern (it lengthens audio); the fastest shortens it, so
    the check uses ``duration / max(speed_factors)``.
    """

    def __init__(self, tokenizer, min_seconds: float, max_seconds: float, max_speed: float) -> None:
        self.tokenizer, self.min_seconds, self.max_seconds, self.max_speed = tokenizer, min_seconds, max_seconds, max_speed

    def __call__(self, cut) -> bool:
        if not self.min_seconds <= cut.duration <= self.max_seconds:
            return False
        tokens = self.tokenizer.encode(cut_text(cut), cut.id)  # raises on unmappable text
        return 0 < ctc_frames_needed(tokens) <= encoder_frames(cut.duration / self.max_speed)


class _SizedSampler(torch.utils.data.Sampler):
    """A lhotse sampler with a ``len``: batches per epoch, counted once, so that Lightning can
    size the learning-rate schedule and the progress bar (lhotse samplers have no length)."""

    def __init__(self, sampler, num_batches: int) -> None:
        self.sampler, self.num_batches = sampler, num_batches

    def __iter__(self):
        return iter(self.sampler)

    def __len__(self) -> int:
        return self.num_batches

    def set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)

    def state_dict(self) -> dict:
        return self.sampler.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.sampler.load_state_dict(state)


class AsrDataModule(L.LightningDataModule):
    """Speech recognition data from lhotse cut manifests.

    ``vocab_size``, ``tokenizer_path`` and ``sample_rate`` are available right after
    construction, so LightningCLI links them into the task.

    Args:
        train_manifests: training ``cuts_*.jsonl.gz`` files (read in this order, lazily).
        valid_manifests: validation manifests (WER and loss at every epoch end).
        test_manifests: manifests for ``speechkit test``.
        tokenizer_path: sentencepiece model from ``speechkit tokenizer train``.
        sample_rate: audio rate fed to the model (Hz); other rates are resampled.
        max_duration: seconds of audio per batch (per process under DDP).
        num_buckets: duration buckets of the sampler.
        speed_perturb: speed perturbation 0.9/1.0/1.1 of the training data.
        num_workers: DataLoader worker processes (audio decoding).
        min_seconds, max_seconds: training/validation utterances outside this range are
            skipped (as icefall's recipes do); test utterances are all kept.
        seed: sampler shuffling, speed-factor and augmentation seed.
        augmentations: voice/room/channel augmentations of the training utterances, names from
            :data:`speechkit.data.augment.AUGMENTATIONS`; ``None`` or ``[]``: none.
        augment_p: probability of each of ``augmentations`` per utterance.
        babble_utterances: the ``babble`` talkers are drawn from this many training cuts (the
            first ones of the manifests, read once).
        noise_manifests: cuts manifests of background-noise recordings; ``None``: no noise.
        noise_snr_db: ``(low, high)`` dB: the SNR of the added noise, drawn uniformly.
        noise_prob: probability that a training utterance gets noise.

    Raises:
        ModelFileError: the tokenizer file is missing or not a speechkit tokenizer.
        CorpusError: an unknown augmentation name, or ``augment_p`` outside [0, 1].
    """

    def __init__(
        self,
        train_manifests: list[str],
        valid_manifests: list[str],
        test_manifests: list[str] | None = None,
        tokenizer_path: str = "data/lang/bpe.model",
        sample_rate: int = 16000,
        max_duration: float = 200.0,
        num_buckets: int = 30,
        speed_perturb: bool = False,
        num_workers: int = 2,
        min_seconds: float = 0.5,
        max_seconds: float = 30.0,
        seed: int = 0,
        augmentations: list[str] | None = None,
        augment_p: float = 0.5,
        babble_utterances: int = 2000,
        noise_manifests: list[str] | None = None,
        noise_snr_db: tuple[float, float] = (5.0, 25.0),
        noise_prob: float = 0.5,
    ) -> None:
        super().__init__()
        from speechkit.data.augment import AUGMENTATIONS
        from speechkit.text import Tokenizer

        unknown = [a for a in augmentations or () if a not in AUGMENTATIONS]
        if unknown:
            raise CorpusError(f"unknown augmentation(s) {unknown}; expected names from {list(AUGMENTATIONS)}")
        if not 0.0 <= augment_p <= 1.0 or not 0.0 <= noise_prob <= 1.0:
            raise CorpusError(f"augment_p ({augment_p}) and noise_prob ({noise_prob}) must be in [0, 1]")
        self.save_hyperparameters()
        self.tokenizer = Tokenizer(tokenizer_path)
        self.speed_factors = SPEED_FACTORS if speed_perturb else (1.0,)

    @property
    def vocab_size(self) -> int:
        """Units including the blank (the CTC head's output size)."""
        return self.tokenizer.vocab_size

    @property
    def tokenizer_path(self) -> str:
        return str(self.hparams.tokenizer_path)

    @property
    def sample_rate(self) -> int:
        return int(self.hparams.sample_rate)

    def cuts(self, split: str):
        """The lazy ``CutSet`` of ``train``, ``valid`` or ``test`` (its manifests concatenated)."""
        from lhotse import combine

        paths = {"train": self.hparams.train_manifests, "valid": self.hparams.valid_manifests,
                 "test": self.hparams.test_manifests}[split] or []
        if not paths:
            raise CorpusError(f"no {split} manifests given (data.init_args.{split}_manifests); {PREPARE_HINT}")
        sets = [read_cuts(path, hint=PREPARE_HINT, lazy=True) for path in paths]
        return sets[0] if len(sets) == 1 else combine(*sets)

    def stats_audio(self, max_utterances: int = 500) -> list[np.ndarray]:
        """Waveforms of up to ``max_utterances`` training utterances, for feature statistics.

        Every k-th of the first ``20 * max_utterances`` cuts, so that many speakers are seen
        without reading a whole lazy manifest. Deterministic (the same on every DDP rank).
        """
        cuts = list(self.cuts("train").subset(first=20 * max_utterances)) if max_utterances > 0 else []
        step = max(1, math.ceil(len(cuts) / max(max_utterances, 1)))
        return [load_cut_audio(cut, self.sample_rate) for cut in cuts[::step]]

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True, speed_factors=self.speed_factors)

    def val_dataloader(self) -> DataLoader:
        return self._loader("valid", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

    def _loader(self, split: str, shuffle: bool, speed_factors: Sequence[float] = (1.0,)) -> DataLoader:
        hp = self.hparams
        cuts = self.cuts(split)
        if split != "test":
            cuts = cuts.filter(_CutFilter(self.tokenizer, min_seconds=hp.min_seconds, max_seconds=hp.max_seconds,
                                          max_speed=max(speed_factors)))
        sampler = self._sampler(cuts, shuffle)
        augment = None
        if split == "train":
            sampler = _SizedSampler(sampler, self._count_batches(self._sampler(cuts, shuffle), split))
            augment = self.train_augment()
        dataset = AsrDataset(self.tokenizer, sample_rate=self.sample_rate, speed_factors=speed_factors, seed=hp.seed,
                             augment=augment)
        return DataLoader(dataset, sampler=sampler, batch_size=None, num_workers=hp.num_workers,
                          persistent_workers=False)

    def train_augment(self) -> WaveformAugment | None:
        """The training augmentation (``None`` when no augmentation and no noise is asked for).

        Speed perturbation stays with lhotse (``speed_perturb``); this adds the named
        augmentations and background noise at a random SNR, with no time shift (an utterance's
        words must stay inside it).
        """
        hp = self.hparams
        augmentations = tuple(hp.augmentations or ())
        noises = []
        for path in hp.noise_manifests or ():
            noises += [load_cut_audio(cut, self.sample_rate) for cut in read_cuts(path, hint="a cuts manifest of noise recordings")]
        if not augmentations and not noises:
            return None
        babble_source = None
        if "babble" in augmentations:
            babble_source = CutBabble(self.cuts("train").subset(first=hp.babble_utterances), self.sample_rate)
        return WaveformAugment(
            sample_rate=self.sample_rate, noises=noises, noise_prob=hp.noise_prob if noises else 0.0,
            snr_db=tuple(hp.noise_snr_db), time_shift_ms=0.0, augmentations=augmentations, augment_p=hp.augment_p,
            babble_source=babble_source,
        )

    def _sampler(self, cuts, shuffle: bool):
        from lhotse.dataset import DynamicBucketingSampler, DynamicCutSampler

        world_size, rank = _dist_info()
        common = {"max_duration": self.hparams.max_duration, "shuffle": shuffle, "drop_last": False,
                  "world_size": world_size, "rank": rank, "seed": self.hparams.seed}
        # lhotse needs at least as many cuts as buckets to place the bucket edges.
        num_buckets = min(self.hparams.num_buckets, sum(1 for _ in itertools.islice(cuts, self.hparams.num_buckets)))
        if num_buckets < 2:
            return DynamicCutSampler(cuts, **common)
        return DynamicBucketingSampler(cuts, num_buckets=num_buckets, **common)

    def _count_batches(self, sampler, split: str) -> int:
        """Batches of one epoch on this rank (the fewest over ranks, so all stop together)."""
        count = sum(1 for _ in sampler)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            backend_cuda = torch.distributed.get_backend() == "nccl"
            total = torch.tensor([count], device="cuda" if backend_cuda else "cpu")
            torch.distributed.all_reduce(total, op=torch.distributed.ReduceOp.MIN)
            count = int(total.item())
        if count == 0:
            raise CorpusError(
                f"the {split} manifests give no batch: every utterance was filtered out (duration outside "
                f"[{self.hparams.min_seconds}, {self.hparams.max_seconds}] s or audio too short for its "
                f"transcript), or max_duration ({self.hparams.max_duration} s) exceeds the data"
            )
        return count


def _dist_info() -> tuple[int, int]:
    """(world_size, rank) of the initialised process group, else (1, 0)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_world_size(), torch.distributed.get_rank()
    return 1, 0
