"""Data: corpus preparation, lhotse manifests, augmentation, DataModules, synthetic corpora.

Every corpus becomes lhotse ``CutSet`` manifests (JSONL.gz) in one folder:

* ``speechkit.data.corpora``: recipes that turn a raw corpus folder into manifests
  (``speechkit prepare <corpus> CORPUS_DIR OUT_DIR``).
* ``speechkit.data.manifests``: file names, atomic writing/reading of cut sets and label files.
* ``speechkit.data.augment``: waveform augmentation (time shift, background noise, speed, volume).
* ``speechkit.data.datamodules``: LightningDataModules that read the manifests
  (``ClassificationDataModule``, ``KWSDataModule``).
* ``speechkit.data.synth``: synthetic corpora (espeak-ng) for tests and quickstarts.
"""
