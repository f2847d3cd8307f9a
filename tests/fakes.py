"""Tiny corpora in the real layouts, generated with numpy tones (no espeak), for data tests."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

from speechkit.data.corpora.speech_commands import V2_WORDS

SR = 16000
SPEAKERS = ("aaaa1111", "bbbb2222", "cccc3333")  # speaker 0 -> train, 1 -> valid, 2 -> test


def tone(freq_hz: float, seconds: float, sr: int = SR, seed: int = 0) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    noise = np.random.default_rng(seed).normal(0, 0.01, len(t))
    return (0.3 * np.sin(2 * np.pi * freq_hz * t) + noise).astype(np.float32)


def make_speech_commands(root: Path, words=V2_WORDS, seconds: float = 0.25, clips_per_speaker: int = 1,
                         step_hz: float = 40.0) -> Path:
    """A Speech Commands tree: 3 speakers per word (train/valid/test), 2 noise files, lists.

    Word ``w`` is a tone of ``200 + step_hz * w`` Hz, so the words are separable by pitch alone
    (with a wide ``step_hz`` a model trained on them must beat chance by far); clip ``k`` of a
    speaker differs in noise.
    """
    valid, test = [], []
    for w, word in enumerate(words):
        (root / word).mkdir(parents=True)
        for s, speaker in enumerate(SPEAKERS):
            for k in range(clips_per_speaker):
                name = f"{word}/{speaker}_nohash_{k}.wav"
                sf.write(root / name, tone(200 + step_hz * w, seconds, seed=w * 10 + s + 1000 * k), SR, subtype="PCM_16")
                (valid if s == 1 else test if s == 2 else []).append(name)
    noise_dir = root / "_background_noise_"
    noise_dir.mkdir()
    rng = np.random.default_rng(1)
    sf.write(noise_dir / "white_noise.wav", rng.uniform(-0.5, 0.5, 3 * SR).astype(np.float32), SR)
    sf.write(noise_dir / "running_tap.wav", tone(1000, 2.0, seed=5), SR)
    (root / "validation_list.txt").write_text("\n".join(valid) + "\n")
    (root / "testing_list.txt").write_text("\n".join(test) + "\n")
    return root


SCENES = ("airport", "bus", "metro", "metro_station", "park", "public_square", "shopping_mall",
          "street_pedestrian", "street_traffic", "tram")  # fmt: skip


def make_tau2020(root: Path, sr: int = 44100, seconds: float = 0.05) -> Path:
    """The TAU 2020 Mobile development layout: per scene 2 train clips (a, s1), 1 evaluate (b)."""
    (root / "audio").mkdir(parents=True)
    (root / "evaluation_setup").mkdir()
    meta, train, evaluate = [], [], []
    for k, scene in enumerate(SCENES):
        for seg, (device, fold) in enumerate((("a", train), ("s1", train), ("b", evaluate))):
            name = f"audio/{scene}-lyon-{k}-{seg}-{device}.wav"
            sf.write(root / name, tone(100 + 50 * k, seconds, sr, seed=seg), sr, subtype="PCM_24")
            meta.append(f"{name}\t{scene}\tlyon-{k}\t{device}")
            fold.append(f"{name}\t{scene}")
    (root / "meta.csv").write_text("filename\tscene_label\tidentifier\tsource_label\n" + "\n".join(meta) + "\n")
    setup = root / "evaluation_setup"
    (setup / "fold1_train.csv").write_text("filename\tscene_label\n" + "\n".join(train) + "\n")
    (setup / "fold1_evaluate.csv").write_text("filename\tscene_label\n" + "\n".join(evaluate) + "\n")
    (setup / "fold1_test.csv").write_text("filename\n" + "\n".join(e.split("\t")[0] for e in evaluate) + "\n")
    return root


LIBRISPEECH_SUBSETS = ("train-clean-100", "train-clean-360", "train-other-500", "dev-clean", "dev-other",
                       "test-clean", "test-other")  # fmt: skip
LIBRISPEECH_TEXTS = ("TURN ON THE LIGHT", "CALL MOM", "WHAT IS THE WEATHER", "STOP THE MUSIC")


def make_librispeech(root: Path, subsets=LIBRISPEECH_SUBSETS, seconds: float = 1.2) -> Path:
    """The LibriSpeech layout ``<subset>/<speaker>/<chapter>/*.flac`` + ``*.trans.txt``.

    Per subset 2 speakers x 2 utterances of ``seconds`` (tones; long enough for the recipes'
    ``min_seconds: 1.0``), transcripts from :data:`LIBRISPEECH_TEXTS`.
    """
    for s, subset in enumerate(subsets):
        for k in range(2):
            speaker, chapter = 100 * (s + 1) + k, 10 * (s + 1) + k
            folder = root / subset / str(speaker) / str(chapter)
            folder.mkdir(parents=True)
            trans = []
            for u in range(2):
                utt = f"{speaker}-{chapter}-{u:04d}"
                sf.write(folder / f"{utt}.flac", tone(300 + 100 * u + 20 * k, seconds, seed=s + u), SR, format="FLAC")
                trans.append(f"{utt} {LIBRISPEECH_TEXTS[(2 * k + u) % len(LIBRISPEECH_TEXTS)]}")
            (folder / f"{speaker}-{chapter}.trans.txt").write_text("\n".join(trans) + "\n")
    return root


try:  # only the resume test needs it; the data tests must not depend on Lightning
    from lightning.pytorch.callbacks import Callback
except ImportError:  # pragma: no cover
    Callback = object


class KillAtBatch(Callback):
    """Lightning callback that SIGKILLs its own process at a fixed training batch.

    A kill at a known point (instead of a timer in the test) makes the resume test deterministic:
    the last checkpoint on disk is always the one saved at the end of epoch ``epoch - 1``.
    Used through the CLI: ``--trainer.callbacks '[{"class_path": "fakes.KillAtBatch", ...}]'``
    with ``tests/`` on ``PYTHONPATH``.
    """

    def __init__(self, epoch: int = 2, batch: int = 1) -> None:
        self.epoch, self.batch = epoch, batch

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.current_epoch == self.epoch and batch_idx == self.batch:
            import os
            import signal

            os.kill(os.getpid(), signal.SIGKILL)


def gliding_tone(seconds: float, seed: int, base_hz: float = 200.0, swing_hz: float = 50.0, sr: int = SR) -> np.ndarray:
    """A speech-like stand-in: a tone gliding around ``base_hz`` (+- ``swing_hz``) plus a little noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    freq = base_hz + swing_hz * np.sin(2 * np.pi * rng.uniform(0.5, 2.0) * t)
    return (0.3 * np.sin(2 * np.pi * np.cumsum(freq) / sr) + rng.normal(0, 0.01, t.size)).astype(np.float32)


def write_transcribed_cuts(folder: Path, name: str, texts: list[str], seconds: list[float], signal=gliding_tone) -> Path:
    """``<folder>/cuts_<name>.jsonl.gz``: one 16-bit wav per text (``signal(seconds, index)``), transcript as
    the supervision text, speakers ``spk0``/``spk1`` alternating. Returns the manifest path."""
    from lhotse import CutSet, MonoCut, Recording, SupervisionSegment

    from speechkit.data.manifests import write_cuts

    cuts = []
    for i, (text, sec) in enumerate(zip(texts, seconds)):
        wav = folder / f"{name}-{i}.wav"
        sf.write(wav, signal(sec, i), SR, subtype="PCM_16")
        rec = Recording.from_file(wav, recording_id=f"{name}-{i}")
        sup = SupervisionSegment(f"{name}-{i}", rec.id, 0.0, rec.duration, text=text, speaker=f"spk{i % 2}")
        cuts.append(MonoCut(f"{name}-{i}", 0.0, rec.duration, 0, recording=rec, supervisions=[sup]))
    return write_cuts(CutSet.from_cuts(cuts), folder / f"cuts_{name}.jsonl.gz")


def run_cli(argv, monkeypatch) -> tuple[int, str, str]:
    """``speechkit ARGV...`` in-process: ``(exit status, stdout, stderr)``."""
    from speechkit.cli.main import main

    stdout, stderr = io.StringIO(), io.StringIO()
    monkeypatch.setattr(sys, "stdout", stdout)
    monkeypatch.setattr(sys, "stderr", stderr)
    status = main([str(a) for a in argv])
    monkeypatch.undo()
    return status, stdout.getvalue(), stderr.getvalue()
