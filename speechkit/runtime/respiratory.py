"""The respiratory-cycle policy of ICBHI 2017, torch-free: one place for prepare, classify and tests.

Bae et al. (Interspeech 2023, Patch-Mix CL; official code ``util/icbhi_util.py``) turn a
recording into fixed-length cycle clips like this, and so does speechkit:

1. read the recording, mix to mono, **resample to 16 kHz** (soxr here; torchaudio there);
2. **linear fade-in and fade-out of 1/16 s** (1,000 samples at 16 kHz) over the whole recording;
3. **slice each annotated cycle** ``[int(start * rate), int(end * rate))``, clamped to the
   recording;
4. **fix the length** to ``cycle_seconds`` (8 s): a longer cycle keeps its first 8 s; a shorter
   one is **repeat-padded** (tiled) and cut to 8 s, then faded out over its last 1/16 s
   (``pad="zero"`` pads with zeros instead, without that fade).

Annotation files (``<recording>.txt``) hold one cycle per line: ``start end crackle wheeze``
(seconds, seconds, 0/1, 0/1), tab- or space-separated. Labels: ``normal`` (0 0), ``crackle``
(1 0), ``wheeze`` (0 1), ``both`` (1 1), in that logit order (:data:`LABELS`).

Recordings are named ``<patient>_<index>_<location>_<mode>_<device>``; :func:`parse_name`
splits the name.

Shapes: S samples, N cycles.

Example:
    >>> clip = fix_length(np.ones(3, np.float32), 8, pad="repeat", fade_samples=2)
    >>> clip.tolist()
    [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0]
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from speechkit.errors import CorpusError

#: Class names in logit order (ICBHI: 0 normal, 1 crackle, 2 wheeze, 3 both).
LABELS = ("normal", "crackle", "wheeze", "both")
#: 2-class names (normal vs abnormal), for the ``--two-class`` option of preparation.
LABELS_2CLASS = ("normal", "abnormal")
#: ICBHI recording devices (the last field of a file name).
DEVICES = ("AKGC417L", "LittC2SE", "Litt3200", "Meditron")
SAMPLE_RATE = 16000
CYCLE_SECONDS = 8.0
#: The fade is 1/16 s (``sample_rate / 16`` samples) in the official code.
FADE_DIVISOR = 16


class Cycle(NamedTuple):
    """One annotated respiratory cycle: times in seconds, the two adventitious-sound flags."""

    start: float
    end: float
    crackle: bool
    wheeze: bool

    @property
    def label(self) -> str:
        """``normal``, ``crackle``, ``wheeze`` or ``both``."""
        return LABELS[int(self.crackle) + 2 * int(self.wheeze)]


@dataclass(frozen=True)
class RecordingName:
    """The fields of an ICBHI file name ``<patient>_<index>_<location>_<mode>_<device>``."""

    patient: str
    index: str
    location: str
    mode: str
    device: str

    @property
    def prefix(self) -> str:
        """The name without the device (the part the known file-name differences share)."""
        return f"{self.patient}_{self.index}_{self.location}_{self.mode}"


def parse_name(stem: str) -> RecordingName:
    """Split an ICBHI recording name (no suffix) into its five fields.

    Raises:
        CorpusError: not five ``_``-separated fields.
    """
    parts = stem.split("_")
    if len(parts) != 5 or not all(parts):
        raise CorpusError(
            f"{stem!r}: not an ICBHI recording name; expected <patient>_<index>_<location>_<mode>_<device>, "
            "e.g. 101_1b1_Al_sc_Meditron"
        )
    return RecordingName(*parts)


def read_annotations(path: str | os.PathLike) -> list[Cycle]:
    """Read an ICBHI annotation file: one ``start end crackle wheeze`` line per cycle.

    Blank lines are skipped. ``classify --annotations`` also accepts lines with only
    ``start end`` (the flags then read as 0).

    Raises:
        CorpusError: missing file, or a malformed line (the message names the file and line).
    """
    path = Path(path)
    if not path.is_file():
        raise CorpusError(f"{path}: no such annotation file; expected '<start> <end> <crackle> <wheeze>' lines")
    cycles = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        cycles.append(_parse_line(fields, f"{path}:{lineno}"))
    return cycles


def _parse_line(fields: list[str], where: str) -> Cycle:
    expected = "expected '<start s> <end s> <crackle 0|1> <wheeze 0|1>'"
    if len(fields) not in (2, 4):
        raise CorpusError(f"{where}: {len(fields)} fields ({' '.join(fields)!r}); {expected}")
    try:
        start, end = float(fields[0]), float(fields[1])
        flags = [int(f) for f in fields[2:]] or [0, 0]
    except ValueError:
        raise CorpusError(f"{where}: not numbers ({' '.join(fields)!r}); {expected}") from None
    if not (np.isfinite(start) and np.isfinite(end)) or start < 0 or end <= start:
        raise CorpusError(f"{where}: cycle {start}..{end} s is empty or negative; {expected}")
    if any(f not in (0, 1) for f in flags):
        raise CorpusError(f"{where}: crackle/wheeze flags must be 0 or 1, got {flags}; {expected}")
    return Cycle(start, end, bool(flags[0]), bool(flags[1]))


def fade(audio: np.ndarray, fade_in: int, fade_out: int) -> np.ndarray:
    """Linear fade-in over the first ``fade_in`` and fade-out over the last ``fade_out`` samples.

    The ramps are torchaudio ``Fade(fade_shape="linear")``'s: ``linspace(0, 1, n)`` and
    ``linspace(1, 0, n)``. Returns a new (S,) float32 array.
    """
    out = np.array(audio, dtype=np.float32, copy=True)
    n_in, n_out = min(fade_in, len(out)), min(fade_out, len(out))
    if n_in > 0:
        out[:n_in] *= np.linspace(0.0, 1.0, n_in, dtype=np.float32)
    if n_out > 0:
        out[len(out) - n_out :] *= np.linspace(1.0, 0.0, n_out, dtype=np.float32)
    return out


def fix_length(cycle: np.ndarray, num_samples: int, pad: str = "repeat", fade_samples: int = 0) -> np.ndarray:
    """Truncate to the first ``num_samples`` or pad up to it (the paper's policy, step 4).

    Args:
        cycle: (S,) samples of one cycle (S >= 1 for ``repeat``).
        num_samples: output length.
        pad: ``repeat`` (tile, then fade out over ``fade_samples``) or ``zero``.
        fade_samples: fade-out length after repeat-padding.

    Returns:
        (num_samples,) float32.
    """
    cycle = np.asarray(cycle, dtype=np.float32)
    if len(cycle) >= num_samples:
        return cycle[:num_samples].copy()
    if pad == "zero" or len(cycle) == 0:
        return np.pad(cycle, (0, num_samples - len(cycle)))
    if pad != "repeat":
        raise ValueError(f"pad must be 'repeat' or 'zero', got {pad!r}")
    tiled = np.tile(cycle, -(-num_samples // len(cycle)))[:num_samples]
    return fade(tiled, 0, fade_samples)


def cycle_clips(
    audio: np.ndarray,
    cycles: Sequence[Sequence[float]],
    sample_rate: int = SAMPLE_RATE,
    cycle_seconds: float = CYCLE_SECONDS,
    pad: str = "repeat",
) -> np.ndarray:
    """Steps 2-4 of the policy on a recording already at ``sample_rate``.

    Args:
        audio: (S,) mono float32 recording at ``sample_rate``.
        cycles: :class:`Cycle` s, or any ``(start, end, ...)`` in seconds.
        cycle_seconds: clip length.

    Returns:
        (N, round(cycle_seconds * sample_rate)) float32; a cycle that starts past the end of
        the recording gives an all-zero clip (the official code gives an empty slice there).
    """
    fade_samples = sample_rate // FADE_DIVISOR
    faded = fade(audio, fade_samples, fade_samples)
    num = round(cycle_seconds * sample_rate)
    clips = np.zeros((len(cycles), num), dtype=np.float32)
    for i, cycle in enumerate(cycles):
        start = min(int(cycle[0] * sample_rate), len(faded))
        end = min(int(cycle[1] * sample_rate), len(faded))
        clips[i] = fix_length(faded[start:end], num, pad=pad, fade_samples=fade_samples)
    return clips


def segment_clips(audio: np.ndarray, segments: Sequence[Sequence[float]], sample_rate: int,
                  clip_samples: int) -> np.ndarray:
    """:func:`cycle_clips` with the artifact's rate and clip length (the ``classify`` hook)."""
    return cycle_clips(audio, segments, sample_rate, clip_samples / sample_rate)


#: How ``speechkit classify --annotations/--windows`` turns the segments of a recording into
#: clips for artifacts of these tasks: the same policy as ``speechkit prepare icbhi``.
SEGMENT_CLIPS = {"respiratory": segment_clips}
