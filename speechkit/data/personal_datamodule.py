"""Keyword + speaker labels per clip, for personalized KWS (PK-MTL).

:class:`PersonalDataModule` is :class:`~speechkit.data.datamodules.ClassificationDataModule`
(same manifests, clips, augmentation) with the speaker of every clip: the supervision's
``speaker`` (GSC: ``<speaker>_nohash_<k>.wav``; the synthetic corpus: the voice's ID). Batches
add::

    {"speakers": LongTensor (B,)   index among the training speakers, -1 for none (silence
                                   clips, speakers not in the training split),
     "speaker_ids": list[str] (B,) the speaker ID ("" for none)}

The speaker head's classes are the training split's speakers (:attr:`PersonalDataModule.speakers`,
sorted). Speakers of the validation and test splits must be held out of training (checked:
an overlap is a :class:`~speechkit.errors.CorpusError`). ``test_manifest_dir`` takes the test
clips from another prepared folder (all its splits), e.g. a corpus of held-out voice families.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch.utils.data import Dataset

from speechkit.data.datamodules import (
    PREPARE_HINT,
    ClassificationDataModule,
    CutClassificationDataset,
    collate_classification,
)
from speechkit.data.manifests import SPLITS, cuts_path, read_cuts
from speechkit.errors import CorpusError


def cut_speaker(cut) -> str:
    """A cut's speaker ID (``supervisions[0].speaker``), ``""`` when it has none."""
    return str(cut.supervisions[0].speaker or "") if cut.supervisions else ""


class SpeakerLabelledDataset(Dataset):
    """:class:`CutClassificationDataset` items plus ``speaker`` (index, -1: none) and ``speaker_id``."""

    def __init__(self, base: CutClassificationDataset, speaker_index: dict[str, int]) -> None:
        self.base = base
        self.speaker_ids = [cut_speaker(cut) for cut in base.cuts]
        self.speakers = [speaker_index.get(s, -1) for s in self.speaker_ids]

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int) -> dict:
        item = self.base[i]
        item["speaker"] = self.speakers[i]
        item["speaker_id"] = self.speaker_ids[i]
        return item


def collate_personal(items: list[dict]) -> dict:
    """:func:`collate_classification` plus ``speakers`` (B,) int64 and ``speaker_ids``."""
    batch = collate_classification(items)
    batch["speakers"] = torch.tensor([it["speaker"] for it in items], dtype=torch.int64)
    batch["speaker_ids"] = [it["speaker_id"] for it in items]
    return batch


class PersonalDataModule(ClassificationDataModule):
    """Keyword-labelled clips with their speakers (see the module docstring).

    Args:
        manifest_dir: folder written by ``speechkit prepare`` (train/valid/test splits).
        test_manifest_dir: another prepared folder whose clips (all splits) form the test set;
            ``None``: ``manifest_dir``'s test split.
        **kwargs: :class:`ClassificationDataModule` arguments (batch size, augmentation, ...).

    Raises:
        CorpusError: missing manifests, a training split without speakers, or a validation/test
            speaker who is also a training speaker.
    """

    def __init__(self, manifest_dir: str, test_manifest_dir: str | None = None, **kwargs) -> None:
        super().__init__(manifest_dir=manifest_dir, **kwargs)
        self.test_manifest_dir = Path(test_manifest_dir) if test_manifest_dir else None
        self._speakers: list[str] | None = None

    @property
    def speakers(self) -> list[str]:
        """Training speakers, sorted: the speaker head's classes (read once from the train manifest)."""
        if self._speakers is None:
            cuts = read_cuts(cuts_path(self.manifest_dir, "train"), hint=PREPARE_HINT)
            self._speakers = sorted({s for s in map(cut_speaker, cuts) if s})
            if not self._speakers:
                raise CorpusError(
                    f"{cuts_path(self.manifest_dir, 'train')}: no cut has a speaker; personalized KWS needs "
                    "speaker IDs (Speech Commands file names <speaker>_nohash_<k>.wav)"
                )
        return list(self._speakers)

    @property
    def num_speakers(self) -> int:
        return len(self.speakers)

    def test_cuts(self) -> list:
        """The test clips: ``test_manifest_dir``'s splits, or ``manifest_dir``'s test split."""
        if self.test_manifest_dir is None:
            return list(read_cuts(cuts_path(self.manifest_dir, "test"), hint=PREPARE_HINT))
        cuts = []
        for split in SPLITS:
            path = cuts_path(self.test_manifest_dir, split)
            if path.is_file():
                cuts += list(read_cuts(path))
        if not cuts:
            raise CorpusError(f"{self.test_manifest_dir}: no cuts_<split>.jsonl.gz; {PREPARE_HINT}")
        return cuts

    def _loader(self, split: str, shuffle: bool):
        loader = super()._loader(split, shuffle)
        loader.collate_fn = collate_personal
        return loader

    def _dataset(self, split: str) -> SpeakerLabelledDataset:
        hp = self.hparams
        cuts = self.test_cuts() if split == "test" else read_cuts(cuts_path(self.manifest_dir, split), hint=PREPARE_HINT)
        index = {s: i for i, s in enumerate(self.speakers)}
        if split != "train":
            shared = sorted({cut_speaker(c) for c in cuts} & set(index))
            if shared:
                raise CorpusError(
                    f"{split} speakers {shared[:3]}{'...' if len(shared) > 3 else ''} are also training speakers; "
                    "personalized KWS evaluates on held-out speakers (split the corpus by speaker)"
                )
        augment = self._augment(cuts) if split == "train" and hp.augment else None
        base = CutClassificationDataset(cuts, self._labels, sample_rate=hp.sample_rate,
                                        clip_samples=self.clip_samples, augment=augment, seed=hp.seed)
        return SpeakerLabelledDataset(base, index)
