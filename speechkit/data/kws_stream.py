"""Keyword-spotting training windows cut from running audio, the way a streaming detector hears it.

A detector scores the last second of an endless stream every hop. Most of what it hears is
not a keyword, keywords arrive at any position with speech before and after them, and a word
that has only begun must not fire yet. :class:`KWSStreamDataModule` trains on exactly that:
each training item is ``context + clip`` samples of composed audio (default 0.5 s + 1 s), whose
label is the class of its **window** (the last ``clip_samples``). Validation and test are the
parent's clip sets unchanged (1 s clips of held-out speakers), so ``val/acc`` / ``test/acc``
stay the clip accuracy.

Kinds of training items (``kind`` in each item; weights ``p_*``, normalized):

=================  ==========================================================  =============
kind               what                                                          label
=================  ==========================================================  =============
``keyword``        a keyword clip (trimmed to its speech) in context, its end     the keyword
                   in the last ``keyword_end_region`` of the window
``keyword_tail``   (a share ``p_keyword_tail`` of keyword draws) the keyword      ``_unknown_``
                   ended long ago: less than half of it is left in the window
``partial``        the first 30-70 % of a keyword at the window's end             ``_unknown_``
``running``        running keyword-free speech (``negative_speech`` files, or     ``_unknown_``
                   run-on unknown words when there are none)
``unknown``        an ``_unknown_`` clip (other words, near misses) in context     ``_unknown_``
``nonspeech``      digital / near silence, noises, babble-like noise, tones,      ``_silence_``
                   music-like audio, clicks, the manifest's background noise;     (``_unknown_``
                   from very quiet to clipped                                      without it)
``hard_negative``  the last ``context + clip`` of a wav in ``hard_negative_dirs``  ``_unknown_``
                   (drawn first, with ``hard_negative_prob``)
=================  ==========================================================  =============

"Context" around a word is a random sequence of running speech, unknown words, silence and
noise with natural gaps (0-400 ms), never a keyword. A keyword counts for the window iff all of
it lies inside ``[context, context + clip)``; one cut by the window's start counts only when
less than half remains (then ``_unknown_``); in between is ambiguous and never generated.

Each item carries ``kw_start``, ``kw_end`` (sample indices of a complete keyword inside the
item, -1 if none) and ``kw_label`` (its class, -1 if none): the keyword's class need not be the
window's label (``keyword_tail``), so per-frame targets take ``kw_label`` for the frames whose
window holds the whole keyword. The parent's :class:`~speechkit.data.augment.WaveformAugment`
settings apply: speed and volume per speech piece (one utterance each), its voice/room/channel
transforms (``augmentations``: pitch, formant, EQ, band limits, codecs, reverberation, babble;
all length-preserving) on the whole item except non-speech, then its noise mixing on the whole
item without the time shift (which would move the keyword off its span).

``negative_speech`` must really be free of the keywords: LibriSpeech text, for one, is full of
"on", "up", "no", "right"; select utterances by transcript first.

Batches (``collate_stream``): the parent's keys, ``audio`` (B, context + clip) and
``audio_lens`` (all full length) included, plus ``kw_start``, ``kw_end``, ``kw_labels`` (B,)
int64 and ``kinds`` (list of B str).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch.utils.data import DataLoader

from speechkit.audio import resample, to_mono
from speechkit.data.augment import WaveformAugment, speed_perturb, volume_perturb
from speechkit.data.datamodules import (
    PREPARE_HINT,
    CutClassificationDataset,
    KWSDataModule,
    collate_classification,
    load_cut_audio,
)
from speechkit.data.manifests import NOISE, SILENCE, UNKNOWN, cuts_path, read_cuts
from speechkit.data.synth.negatives import NONSPEECH_KINDS, nonspeech
from speechkit.errors import AudioError, CorpusError

#: Item kinds drawn by weight (``hard_negative`` is drawn first, ``keyword_tail`` within ``keyword``).
KINDS: tuple[str, ...] = ("keyword", "partial", "running", "unknown", "nonspeech")
AUDIO_SUFFIXES = (".wav", ".flac")
#: Non-speech sources of ``nonspeech`` items: the generated kinds plus the manifest's recordings.
NONSPEECH_SOURCES: tuple[str, ...] = NONSPEECH_KINDS + ("background",)
_MAX_GAP_S = 0.4


def speech_span(audio: np.ndarray, sample_rate: int = 16000) -> tuple[int, int]:
    """Start and end sample of the speech in a clip that may carry background noise.

    On the pre-emphasized clip (so rumble and brown noise weigh little), 10 ms frames (energy
    smoothed over 3 frames) louder than both -35 dB below the loudest frame and +10 dB above the
    noise floor (the 15th-percentile frame) count as speech; the span runs from the first to
    the last of them, reverberation tails included. A clip with no frame 10 dB above its floor
    (noise only, or too noisy to tell) gives its whole length. Weak consonants under loud babble
    can fall outside the span: they are masked in the audio too.

    Args:
        audio: (T,) samples.
        sample_rate: Hz.

    Returns:
        ``(start, end)``, ``audio[start:end]`` the speech; ``(0, 0)`` for an all-zero clip.

    Example:
        >>> x = np.zeros(16000, np.float32); x[4000:9000] = 0.5 * np.sin(np.arange(5000) / 3)
        >>> speech_span(x)
        (3840, 9280)
    """
    frame = max(1, sample_rate // 100)
    x = np.asarray(audio, np.float64)
    x = np.concatenate([x[:1], x[1:] - 0.95 * x[:-1]])
    count = x.size // frame
    if count < 2:
        return (0, audio.size) if np.any(audio) else (0, 0)
    energy = np.mean(np.square(x[: count * frame].reshape(count, frame)), axis=1)
    energy = np.convolve(energy, np.ones(3) / 3, mode="same")
    top = float(energy.max())
    if top <= 0:
        return 0, 0
    threshold = max(top * 10**-3.5, float(np.percentile(energy, 15)) * 10.0)
    if threshold >= top:
        return 0, audio.size
    active = np.flatnonzero(energy >= threshold)
    end = audio.size if active[-1] == count - 1 else (int(active[-1]) + 1) * frame
    return int(active[0]) * frame, end


def audio_files(folders: Sequence[str | os.PathLike], what: str, required: bool = True) -> list[Path]:
    """The ``.wav``/``.flac`` files under each folder (recursively), sorted.

    Raises:
        CorpusError: ``required`` and a folder is missing or holds no audio file (names it).
    """
    files: list[Path] = []
    for folder in folders:
        folder = Path(folder)
        found = sorted(p for p in folder.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file()) if folder.is_dir() else []
        if required and not folder.is_dir():
            raise CorpusError(f"{folder}: no such {what} folder")
        if required and not found:
            raise CorpusError(f"{folder}: {what} folder has no .wav or .flac files")
        files += found
    return files


class _RunningSpeech:
    """Random segments of long keyword-free recordings, read on demand (soundfile, any rate)."""

    def __init__(self, files: Sequence[Path], sample_rate: int) -> None:
        import soundfile as sf

        self.sample_rate = sample_rate
        self.files: list[tuple[str, int, int]] = []  # path, frames, rate
        for path in files:
            try:
                info = sf.info(str(path))
            except Exception as exc:  # libsndfile raises several exception types
                raise AudioError(f"{path}: cannot read audio ({exc})") from None
            if info.frames > 0:
                self.files.append((str(path), int(info.frames), int(info.samplerate)))
        weights = np.array([frames / rate for _, frames, rate in self.files], np.float64)
        self.weights = weights / weights.sum() if len(weights) else weights

    def __len__(self) -> int:
        return len(self.files)

    def segment(self, num_samples: int, rng: np.random.Generator) -> np.ndarray:
        """(num_samples,) float32 from a random file (longer files drawn more often), zero-padded if short."""
        import soundfile as sf

        path, frames, rate = self.files[int(rng.choice(len(self.files), p=self.weights))]
        wanted = int(np.ceil(num_samples * rate / self.sample_rate))
        start = int(rng.integers(0, max(frames - wanted, 0) + 1))
        data, _ = sf.read(path, start=start, stop=min(start + wanted, frames), dtype="float32", always_2d=True)
        audio = resample(to_mono(data), rate, self.sample_rate)[:num_samples]
        return np.pad(audio, (0, num_samples - audio.size)).astype(np.float32, copy=False)


class StreamWindowDataset(CutClassificationDataset):
    """Composed ``context + clip`` training items (module docstring) from a manifest's train cuts.

    Args:
        cuts: training cuts (keywords, ``_unknown_``, ``_silence_``).
        labels: class names (must include ``_unknown_``).
        sample_rate: Hz.
        clip_samples: window length (the label is about the last ``clip_samples``).
        context_samples: audio before the window.
        weights: ``{kind: weight}`` over :data:`KINDS`.
        p_keyword_tail: share of keyword draws made ``keyword_tail``.
        keyword_end_region: a keyword's end falls uniformly in the last this-fraction of the window.
        p_isolated: chance that each side of a word is quiet (noise only) rather than context.
        augment: speech perturbation and noise mixing; ``None``: none.
        noises: background recordings (N_i,) for ``nonspeech`` items (``background``).
        running: keyword-free speech files, or ``None`` to run unknown words together instead.
        hard_negatives: wav/flac files of ``hard_negative`` items.
        hard_negative_prob: probability of a ``hard_negative`` item when there are files.
        epoch_scale: items per epoch = ``len(cuts) * epoch_scale``.
        seed: mixed into the per-worker generator (see ``CutClassificationDataset.rng``).

    Raises:
        CorpusError: no ``_unknown_`` label, no keyword cuts, or bad weights.
    """

    def __init__(
        self,
        cuts: Sequence,
        labels: Sequence[str],
        sample_rate: int,
        clip_samples: int,
        context_samples: int,
        weights: dict[str, float],
        p_keyword_tail: float = 0.1,
        keyword_end_region: float = 0.5,
        p_isolated: float = 0.5,
        augment: WaveformAugment | None = None,
        noises: Sequence[np.ndarray] = (),
        running: _RunningSpeech | None = None,
        hard_negatives: Sequence[Path] = (),
        hard_negative_prob: float = 0.0,
        epoch_scale: float = 1.0,
        seed: int = 0,
    ) -> None:
        super().__init__(cuts, labels, sample_rate, clip_samples, augment=augment, seed=seed)
        if UNKNOWN not in labels:
            raise CorpusError(f"stream training needs an {UNKNOWN!r} class; labels.json has {list(labels)}")
        self.unknown_index = list(labels).index(UNKNOWN)
        self.nonspeech_index = self.silence_index if self.silence_index >= 0 else self.unknown_index
        self.keyword_ids = [i for i, t in enumerate(self.targets) if t not in (self.unknown_index, self.silence_index)]
        self.unknown_ids = [i for i, t in enumerate(self.targets) if t == self.unknown_index]
        self.silence_ids = [i for i, t in enumerate(self.targets) if t == self.silence_index]
        if not self.keyword_ids:
            raise CorpusError("stream training: the training cuts hold no keyword clip")
        bad = {k: w for k, w in weights.items() if k not in KINDS or not w >= 0}
        if bad or sum(weights.values()) <= 0:
            raise CorpusError(f"stream item weights must be >= 0 over {KINDS} with a positive sum, got {weights}")
        self.kinds = [k for k in KINDS if weights.get(k, 0) > 0]
        total = sum(weights[k] for k in self.kinds)
        self.kind_p = np.array([weights[k] / total for k in self.kinds])
        self.context_samples = int(context_samples)
        self.total_samples = self.context_samples + self.clip_samples
        self.p_keyword_tail = float(p_keyword_tail)
        self.keyword_end_region = float(keyword_end_region)
        self.p_isolated = float(p_isolated)
        self.noises = list(noises)
        self.running = running if running is not None and len(running) else None
        self.hard_negatives = list(hard_negatives)
        self.hard_negative_prob = float(hard_negative_prob)
        self.num_items = max(1, round(len(self.cuts) * epoch_scale))
        self._mix = dataclasses.replace(augment, time_shift_ms=0.0) if augment is not None else None

    def __len__(self) -> int:
        return self.num_items

    def __getitem__(self, i: int) -> dict:
        rng = self.rng()
        if self.hard_negatives and rng.random() < self.hard_negative_prob:
            kind = "hard_negative"
        else:
            kind = self.kinds[int(rng.choice(len(self.kinds), p=self.kind_p))]
        audio, label, span, kw_label, kind = getattr(self, f"_make_{kind}")(rng)
        if kind != "nonspeech":
            audio = self._voice_room_channel(audio, rng)
        if kind != "nonspeech" or rng.random() < 0.5:  # non-speech items keep their own level half the time
            audio = self._add_noise(audio, rng, floor=kind != "nonspeech")
        return {
            "audio": np.clip(audio, -1.0, 1.0).astype(np.float32, copy=False),
            "audio_len": self.total_samples,
            "label": label,
            "id": f"{kind}-{i}",
            "kw_start": span[0],
            "kw_end": span[1],
            "kw_label": kw_label,
            "kind": kind,
        }

    # -- item kinds: each returns (audio (T,), label, (kw_start, kw_end), kw_label, kind) ----
    def _make_keyword(self, rng: np.random.Generator):
        T, ctx, win = self.total_samples, self.context_samples, self.clip_samples
        cut = self.keyword_ids[int(rng.integers(len(self.keyword_ids)))]
        word = self._fit(self._speech(cut, rng), int(0.98 * win))
        length = word.size
        if rng.random() < self.p_keyword_tail:
            # Ended long ago: 5-45 % left in the window, all of it inside the item.
            lo, hi = max(0.05, 1.0 - ctx / length), 0.45
            if lo <= hi:
                end = ctx + int(rng.uniform(lo, hi) * length)
                audio = self._place(word, end, rng)
                return audio, self.unknown_index, (end - length, end), self.targets[cut], "keyword_tail"
        end = int(rng.uniform(max(ctx + length, T - self.keyword_end_region * win), T + 1))
        end = min(max(end, ctx + length), T)
        audio = self._place(word, end, rng)
        return audio, self.targets[cut], (end - length, end), self.targets[cut], "keyword"

    def _make_partial(self, rng: np.random.Generator):
        cut = self.keyword_ids[int(rng.integers(len(self.keyword_ids)))]
        word = self._speech(cut, rng)
        part = word[: max(1, int(rng.uniform(0.3, 0.7) * word.size))]
        part = part[-self.clip_samples :]
        return self._place(part, self.total_samples, rng), self.unknown_index, (-1, -1), -1, "partial"

    def _make_running(self, rng: np.random.Generator):
        return self._running_speech(self.total_samples, rng), self.unknown_index, (-1, -1), -1, "running"

    def _make_unknown(self, rng: np.random.Generator):
        if not self.unknown_ids:
            return self._make_running(rng)
        T, win = self.total_samples, self.clip_samples
        word = self._fit(self._speech(self.unknown_ids[int(rng.integers(len(self.unknown_ids)))], rng), win)
        end = int(rng.uniform(max(self.context_samples + word.size, T - self.keyword_end_region * win), T + 1))
        return self._place(word, min(end, T), rng), self.unknown_index, (-1, -1), -1, "unknown"

    def _make_nonspeech(self, rng: np.random.Generator):
        sources = [s for s in NONSPEECH_SOURCES if s != "background" or self.noises or self.silence_ids]
        source = sources[int(rng.integers(len(sources)))]
        if source == "background":
            audio = self._background(self.total_samples, rng)
            peak = float(np.abs(audio).max(initial=0.0))
            level = 10 ** (rng.uniform(-50.0, 6.0) / 20)
            audio = audio * np.float32(level / peak) if peak > 0 else audio
        else:
            audio = nonspeech(source, self.total_samples, rng, self.sample_rate)
        return np.clip(audio, -1.0, 1.0), self.nonspeech_index, (-1, -1), -1, "nonspeech"

    def _make_hard_negative(self, rng: np.random.Generator):
        from speechkit.audio import load_audio

        path = self.hard_negatives[int(rng.integers(len(self.hard_negatives)))]
        audio = load_audio(path, self.sample_rate)[-self.total_samples :]
        if self.augment is not None and self.augment.volume_db > 0:
            audio = volume_perturb(audio, float(rng.uniform(-self.augment.volume_db, self.augment.volume_db)))
        audio = np.pad(audio, (self.total_samples - audio.size, 0))
        return audio, self.unknown_index, (-1, -1), -1, "hard_negative"

    # -- building blocks ---------------------------------------------------------------------
    def _speech(self, index: int, rng: np.random.Generator) -> np.ndarray:
        """A cut's speech: trimmed to :func:`speech_span`, then speed- and volume-perturbed.

        Only the perturbations that belong to one utterance (speed, level) are applied per
        piece; voice, room and channel augmentations act on the whole item
        (:meth:`_voice_room_channel`), as one microphone in one room would.
        """
        audio = load_cut_audio(self.cuts[index], self.sample_rate)
        start, end = speech_span(audio, self.sample_rate)
        audio = audio[start:end] if end > start else audio
        aug = self.augment
        if aug is not None and (len(aug.speed_factors) > 1 or aug.speed_factors[0] != 1.0):
            audio = speed_perturb(audio, float(aug.speed_factors[int(rng.integers(len(aug.speed_factors)))]), self.sample_rate)
        if aug is not None and aug.volume_db > 0:
            audio = volume_perturb(audio, float(rng.uniform(-aug.volume_db, aug.volume_db)))
        return audio

    def _voice_room_channel(self, audio: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """The augmentation's voice/room/channel transforms (pitch, formant, EQ, reverb, ...) on a whole item.

        They keep the length, so the keyword stays where ``kw_start``/``kw_end`` say.
        """
        transform = getattr(self.augment, "voice_room_channel", None)
        if transform is None or not getattr(self.augment, "augmentations", ()):
            return audio
        out = transform(audio, rng)
        return out if out.size == audio.size else np.pad(out[: audio.size], (0, max(0, audio.size - out.size)))

    def _fit(self, word: np.ndarray, max_samples: int) -> np.ndarray:
        """Compress a word in time (resampling) if it is longer than ``max_samples``."""
        if word.size <= max_samples:
            return word
        return resample(word, word.size, max_samples)[:max_samples]

    def _place(self, word: np.ndarray, end: int, rng: np.random.Generator) -> np.ndarray:
        """An item with ``word`` ending at sample ``end``, context before it and after it."""
        T = self.total_samples
        start = end - word.size
        out = np.zeros(T, np.float32)
        out[start:end] = word
        # Each side is, with p_isolated, quiet (the noise mixing comes later): a word said on
        # its own, as users say commands; else other material after a short gap.
        if rng.random() >= self.p_isolated:
            gap = int(rng.uniform(0.0, _MAX_GAP_S) * self.sample_rate)
            if start - gap > 0:
                out[: start - gap] = self._context(start - gap, rng)[-(start - gap) :]
        if rng.random() >= self.p_isolated:
            gap = int(rng.uniform(0.0, _MAX_GAP_S) * self.sample_rate)
            if end + gap < T:
                out[end + gap :] = self._context(T - end - gap, rng)[: T - end - gap]
        return out

    def _context(self, num_samples: int, rng: np.random.Generator) -> np.ndarray:
        """(num_samples,) of keyword-free material: speech, unknown words, silence, noise, with gaps."""
        pieces, length = [], 0
        while length < num_samples:
            choice = rng.random()
            if choice < 0.35:
                piece = self._running_speech(int(rng.uniform(0.3, 1.5) * self.sample_rate), rng)
            elif choice < 0.65 and self.unknown_ids:
                piece = self._speech(self.unknown_ids[int(rng.integers(len(self.unknown_ids)))], rng)
            elif choice < 0.85:
                piece = np.zeros(int(rng.uniform(0.1, 0.8) * self.sample_rate), np.float32)
            else:
                n = int(rng.uniform(0.2, 1.0) * self.sample_rate)
                kind = str(rng.choice(["white", "pink", "brown", "babble", "tones", "music", "clicks"]))
                piece = nonspeech(kind, n, rng, self.sample_rate, peak_dbfs=float(rng.uniform(-45.0, -15.0)))
            gap = np.zeros(int(rng.uniform(0.0, _MAX_GAP_S) * self.sample_rate), np.float32)
            pieces += [piece, gap]
            length += piece.size + gap.size
        return np.concatenate(pieces)[:num_samples]

    def _running_speech(self, num_samples: int, rng: np.random.Generator) -> np.ndarray:
        """Keyword-free running speech: a segment of a ``negative_speech`` file, else unknown words run together."""
        if self.running is not None:
            return self.running.segment(num_samples, rng)
        if not self.unknown_ids:
            return np.zeros(num_samples, np.float32)
        pieces, length = [], 0
        while length < num_samples:
            word = self._speech(self.unknown_ids[int(rng.integers(len(self.unknown_ids)))], rng)
            gap = np.zeros(int(rng.uniform(0.0, 0.15) * self.sample_rate), np.float32)
            pieces += [word, gap]
            length += word.size + gap.size
        out = np.concatenate(pieces)
        start = int(rng.integers(0, out.size - num_samples + 1))
        return out[start : start + num_samples]

    def _background(self, num_samples: int, rng: np.random.Generator) -> np.ndarray:
        """A random stretch of a background recording (or of ``_silence_`` cuts run together)."""
        if self.noises:
            noise = self.noises[int(rng.integers(len(self.noises)))]
            noise = np.tile(noise, -(-num_samples // max(noise.size, 1))) if noise.size < num_samples else noise
            start = int(rng.integers(0, noise.size - num_samples + 1))
            return noise[start : start + num_samples].astype(np.float32)
        pieces = [load_cut_audio(self.cuts[self.silence_ids[int(rng.integers(len(self.silence_ids)))]], self.sample_rate)]
        while sum(p.size for p in pieces) < num_samples:
            pieces.append(load_cut_audio(self.cuts[self.silence_ids[int(rng.integers(len(self.silence_ids)))]], self.sample_rate))
        return np.concatenate(pieces)[:num_samples]

    def _add_noise(self, audio: np.ndarray, rng: np.random.Generator, floor: bool = True) -> np.ndarray:
        """A faint noise floor (mostly), then the parent's noise mixing on the whole item (no time shift)."""
        if floor and rng.random() < 0.7:  # a microphone never records digital silence between words
            audio = audio + nonspeech("pink", audio.size, rng, self.sample_rate, peak_dbfs=float(rng.uniform(-70.0, -45.0)))
        if self._mix is not None:
            audio = self._mix.add_noise_and_shift(audio, rng)
        return audio


def collate_stream(items: list[dict]) -> dict:
    """:func:`~speechkit.data.datamodules.collate_classification` plus ``kw_start``, ``kw_end``,
    ``kw_labels`` ((B,) int64) and ``kinds`` (list of B str) when the items carry them."""
    batch = collate_classification(items)
    if items and "kw_start" in items[0]:
        batch["kw_start"] = torch.tensor([it["kw_start"] for it in items], dtype=torch.int64)
        batch["kw_end"] = torch.tensor([it["kw_end"] for it in items], dtype=torch.int64)
        batch["kw_labels"] = torch.tensor([it["kw_label"] for it in items], dtype=torch.int64)
        batch["kinds"] = [it["kind"] for it in items]
    return batch


class KWSStreamDataModule(KWSDataModule):
    """:class:`~speechkit.data.datamodules.KWSDataModule` whose training items are stream windows.

    Validation and test are the parent's 1 s clips; training items are composed on the fly
    (module docstring). Works on any prepared Speech Commands layout, synthetic or real; without
    ``negative_speech`` the running speech is unknown words run together.

    Args:
        manifest_dir: folder written by ``speechkit prepare``.
        negative_speech: folders of keyword-free running speech (wav/flac, any length and rate,
            searched recursively), e.g. :func:`speechkit.data.synth.negatives.synth_running_speech`
            output or LibriSpeech folders; ``None``: none.
        context_ms: audio before the window in each item (ms); the streaming model's receptive
            field reaches back further than the window, so this gives it real left context.
        p_keyword, p_partial, p_running, p_unknown, p_nonspeech: weights of the item kinds
            (normalized; 0 turns a kind off).
        p_keyword_tail: share of keyword draws whose keyword ended long ago (``_unknown_``).
        keyword_end_region: a keyword's end falls in the last this-fraction of the window.
        p_isolated: chance that each side of a keyword or unknown word is quiet (only the noise
            mixed in later) rather than other material: commands are mostly said on their own.
        hard_negative_dirs: folders of mined windows (:func:`speechkit.data.hard_negatives.mine_hard_negatives`);
            may be missing or empty now: they are scanned again at every ``setup("fit")``.
        hard_negative_prob: probability of a hard-negative item while there are files.
        epoch_scale: training items per epoch = training cuts x this.
        **kwargs: :class:`KWSDataModule` / ``ClassificationDataModule`` arguments
            (``batch_size``, ``num_workers``, ``augment``, ``noise_prob``, ``snr_db``, ...).

    Raises:
        CorpusError: a ``negative_speech`` folder is missing or holds no audio; bad weights.
    """

    def __init__(
        self,
        manifest_dir: str,
        negative_speech: list[str] | None = None,
        context_ms: float = 500.0,
        p_keyword: float = 0.5,
        p_partial: float = 0.1,
        p_running: float = 0.15,
        p_unknown: float = 0.15,
        p_nonspeech: float = 0.1,
        p_keyword_tail: float = 0.1,
        keyword_end_region: float = 0.5,
        p_isolated: float = 0.5,
        hard_negative_dirs: list[str] | None = None,
        hard_negative_prob: float = 0.1,
        epoch_scale: float = 1.0,
        **kwargs,
    ) -> None:
        super().__init__(manifest_dir=manifest_dir, **kwargs)
        self.negative_speech = [str(p) for p in negative_speech or []]
        self._negative_files = audio_files(self.negative_speech, "negative_speech")
        if (context_ms < 0 or not 0 < keyword_end_region <= 1 or not 0 <= p_keyword_tail <= 1
                or not 0 <= p_isolated <= 1):
            raise CorpusError(
                f"context_ms must be >= 0 (got {context_ms}), keyword_end_region in (0, 1] (got "
                f"{keyword_end_region}), p_keyword_tail and p_isolated in [0, 1] (got {p_keyword_tail}, {p_isolated})"
            )
        if epoch_scale <= 0 or not 0 <= hard_negative_prob <= 1:
            raise CorpusError(f"epoch_scale must be > 0 (got {epoch_scale}), hard_negative_prob in [0, 1] (got {hard_negative_prob})")
        self.weights = {"keyword": p_keyword, "partial": p_partial, "running": p_running, "unknown": p_unknown, "nonspeech": p_nonspeech}
        bad = {k: w for k, w in self.weights.items() if not w >= 0}
        if bad or sum(self.weights.values()) <= 0:
            raise CorpusError(f"p_* weights must be >= 0 with a positive sum, got {self.weights}")
        self.context_samples = round(context_ms * self.sample_rate / 1000)
        self.p_keyword_tail = float(p_keyword_tail)
        self.keyword_end_region = float(keyword_end_region)
        self.p_isolated = float(p_isolated)
        self.hard_negative_dirs = [str(p) for p in hard_negative_dirs or []]
        self.hard_negative_prob = float(hard_negative_prob)
        self.epoch_scale = float(epoch_scale)

    @property
    def item_samples(self) -> int:
        """Length of a training item: context + clip (samples)."""
        return self.context_samples + self.clip_samples

    def hard_negative_files(self) -> list[Path]:
        """The wav/flac files now in ``hard_negative_dirs`` (missing folders count as empty)."""
        return audio_files(self.hard_negative_dirs, "hard_negative", required=False)

    def setup(self, stage: str | None = None) -> None:
        """The parent's setup; for ``fit``, scan ``hard_negative_dirs`` again (mining adds files between fits)."""
        super().setup(stage)
        train = self.datasets.get("train")
        if isinstance(train, StreamWindowDataset) and stage in ("fit", None):
            train.hard_negatives = self.hard_negative_files()

    def train_dataloader(self) -> DataLoader:
        if "train" not in self.datasets:
            self.datasets["train"] = self._dataset("train")
        return DataLoader(
            self.datasets["train"], batch_size=self.hparams.batch_size, shuffle=True,
            num_workers=self.hparams.num_workers, collate_fn=collate_stream, persistent_workers=False,
        )

    def _dataset(self, split: str):
        if split != "train":
            return super()._dataset(split)
        hp = self.hparams
        cuts = read_cuts(cuts_path(self.manifest_dir, split), hint=PREPARE_HINT)
        augment = self._augment(cuts) if hp.augment else None
        noises = list(augment.noises) if augment is not None else self._noise_recordings()
        return StreamWindowDataset(
            cuts, self._labels, sample_rate=self.sample_rate, clip_samples=self.clip_samples,
            context_samples=self.context_samples, weights=self.weights, p_keyword_tail=self.p_keyword_tail,
            keyword_end_region=self.keyword_end_region, p_isolated=self.p_isolated, augment=augment, noises=noises,
            running=_RunningSpeech(self._negative_files, self.sample_rate) if self._negative_files else None,
            hard_negatives=self.hard_negative_files(), hard_negative_prob=self.hard_negative_prob,
            epoch_scale=self.epoch_scale, seed=hp.seed,
        )

    def _noise_recordings(self) -> list[np.ndarray]:
        path = cuts_path(self.manifest_dir, NOISE)
        if not path.is_file():
            if SILENCE in self._labels:
                rank_zero_warn(f"{path} not found: non-speech items use generated noise only")
            return []
        return [load_cut_audio(cut, self.sample_rate) for cut in read_cuts(path)]


__all__ = ["KINDS", "KWSStreamDataModule", "StreamWindowDataset", "audio_files", "collate_stream", "speech_span"]
