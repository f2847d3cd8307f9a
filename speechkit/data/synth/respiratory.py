"""A synthetic respiratory-sound corpus in the ICBHI 2017 layout (``speechkit synth icbhi OUT``).

**Synthetic, not a medical dataset.** The sounds imitate the textbook acoustics of lung sounds
closely enough to exercise the ICBHI pipeline (preparation, the 4-class task, per-device
scores, export, ``classify``) and to compare training methods on a held-out-patient,
held-out-device split; nothing learnt from it says anything about real patients.

What one recording holds (16 kHz internally, then resampled to the device's rate):

* **breath cycles**: band-limited noise (a per-patient band inside 80-1,200 Hz) under an
  inhale hump and a quieter, longer exhale hump, with a short pause; cycle lengths vary around
  a per-patient breathing period;
* **heart sounds**: S1/S2 bumps (damped 30-70 Hz tones) at the patient's heart rate,
  independent of breathing;
* **crackles** (``crackle`` flag): short explosive transients, *fine* (2-5 ms, 300-900 Hz)
  or *coarse* (8-20 ms, 100-300 Hz), 5 to 15 per cycle, mostly during inhalation;
* **wheezes** (``wheeze`` flag): continuous tonal components with a fundamental of
  100 Hz - 1 kHz, 80 ms or longer, with 1-3 harmonics and a pitch glide, mostly in exhalation;
* **both**: crackles and a wheeze in one cycle;
* **devices** (``AKGC417L``, ``LittC2SE``, ``Litt3200``, ``Meditron``): a frequency response
  (smooth gain curve), a noise floor and a sampling rate each;
* **patients**: random physiology (breathing period, inhale share, breath band and level,
  heart rate, wheeze pitch range, crackle kind) and a pathology profile (how often their
  cycles crackle or wheeze).

Layout written (what ``speechkit prepare icbhi`` reads)::

    OUT/ICBHI_final_database/<patient>_<k>b1_<location>_sc_<device>.wav + .txt
    OUT/ICBHI_challenge_train_test.txt      "<recording>\\t<train|test>" per line
    OUT/README.md, OUT/synth_info.json

Test recordings belong to held-out patients; ``heldout_device`` is used only by test patients.
Same arguments, same bytes (each patient seeds its own generator).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from speechkit.audio import resample
from speechkit.data.synth.speech_commands import clip_rng, run_jobs, staged_output_dir, write_audio_file
from speechkit.errors import SpeechkitError
from speechkit.plugins import Subcommand
from speechkit.runtime.respiratory import DEVICES

RATE = 16000
DATABASE = "ICBHI_final_database"
SPLIT_FILE = "ICBHI_challenge_train_test.txt"
LOCATIONS = ("Tc", "Al", "Ar", "Pl", "Pr", "Ll", "Lr")
#: device -> (sampling rate Hz, gain curve [(Hz, dB)], noise floor RMS).
DEVICE_MODELS = {
    "AKGC417L": (44100, [(0, -30), (60, -6), (200, 0), (1500, 0), (4000, -6), (8000, -12)], 0.004),
    "LittC2SE": (4000, [(0, -20), (40, 0), (200, 4), (500, 0), (1000, -12), (2000, -30)], 0.002),
    "Litt3200": (4000, [(0, -24), (30, -3), (100, 2), (400, 2), (800, -6), (2000, -24)], 0.0015),
    "Meditron": (10000, [(0, -24), (50, -2), (300, 0), (1200, -3), (3000, -18), (5000, -30)], 0.001),
}


@dataclass
class Patient:
    """Random physiology and pathology of one synthetic patient."""

    id: int
    breath_period: float  # seconds per cycle (mean)
    inhale_share: float
    band: tuple[float, float]  # Hz, breath noise band
    breath_level: float
    heart_rate: float  # beats per minute
    heart_level: float
    crackle_prob: float
    wheeze_prob: float
    crackle_kind: str  # fine | coarse | mixed
    wheeze_range: tuple[float, float]  # Hz, fundamental


def sample_patient(rng: np.random.Generator, pid: int, cycle_seconds: tuple[float, float]) -> Patient:
    """A patient: healthy, crackling, wheezing or both, with random physiology."""
    profile = rng.choice(["healthy", "crackle", "wheeze", "both"], p=[0.3, 0.3, 0.2, 0.2])
    crackle = {"healthy": 0.05, "crackle": 0.6, "wheeze": 0.1, "both": 0.5}[profile]
    wheeze = {"healthy": 0.03, "crackle": 0.08, "wheeze": 0.55, "both": 0.45}[profile]
    low = rng.uniform(80, 200)
    f0 = rng.uniform(120, 700)
    return Patient(
        id=pid, breath_period=float(rng.uniform(*cycle_seconds)), inhale_share=float(rng.uniform(0.33, 0.45)),
        band=(float(low), float(rng.uniform(500, 1200))), breath_level=float(rng.uniform(0.03, 0.1)),
        heart_rate=float(rng.uniform(55, 105)), heart_level=float(rng.uniform(0.005, 0.03)),
        crackle_prob=crackle, wheeze_prob=wheeze, crackle_kind=str(rng.choice(["fine", "coarse", "mixed"])),
        wheeze_range=(float(f0), float(min(f0 * rng.uniform(1.2, 1.6), 1000.0))),
    )


def band_noise(rng: np.random.Generator, n: int, low: float, high: float) -> np.ndarray:
    """(n,) Gaussian noise band-limited to [low, high] Hz (FFT mask with soft edges), unit RMS."""
    spec = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1 / RATE)
    mask = 1 / (1 + (low / np.maximum(freqs, 1.0)) ** 4) / (1 + (freqs / high) ** 4)
    out = np.fft.irfft(spec * mask, n)
    return out / (out.std() + 1e-9)


def hump(n: int) -> np.ndarray:
    """(n,) smooth rise-and-fall envelope (a sine hump)."""
    return np.sin(np.pi * (np.arange(n) + 0.5) / max(n, 1)) if n > 0 else np.zeros(0)


def breath_cycle(rng: np.random.Generator, patient: Patient, seconds: float) -> tuple[np.ndarray, int]:
    """One normal breath: (samples,) audio and the sample where exhalation starts."""
    n = int(seconds * RATE)
    inhale = int(n * patient.inhale_share * rng.uniform(0.9, 1.1))
    exhale = int((n - inhale) * rng.uniform(0.75, 0.9))
    envelope = np.zeros(n)
    envelope[:inhale] = hump(inhale)
    envelope[inhale : inhale + exhale] = 0.6 * hump(exhale)
    level = patient.breath_level * rng.uniform(0.8, 1.25)
    return level * envelope * band_noise(rng, n, *patient.band), inhale


def add_crackles(rng: np.random.Generator, cycle: np.ndarray, inhale: int, kind: str, level: float) -> None:
    """Add explosive transients in place, mostly (80%) during inhalation."""
    for _ in range(int(rng.integers(5, 16))):
        fine = kind == "fine" or (kind == "mixed" and rng.random() < 0.5)
        dur = rng.uniform(0.002, 0.005) if fine else rng.uniform(0.008, 0.02)
        freq = rng.uniform(300, 900) if fine else rng.uniform(100, 300)
        m = int(dur * RATE)
        span = inhale if rng.random() < 0.8 and inhale > m else len(cycle)
        at = int(rng.integers(0, max(span - m, 1)))
        t = np.arange(m) / RATE
        burst = np.sin(2 * np.pi * freq * t + rng.uniform(-0.3, 0.3)) * np.exp(-t / (dur / 4))
        cycle[at : at + m] += level * rng.uniform(4, 10) * burst[: len(cycle) - at]


def add_wheeze(rng: np.random.Generator, cycle: np.ndarray, inhale: int, f_range: tuple[float, float],
               level: float) -> None:
    """Add one tonal wheeze (>= 80 ms, harmonics, pitch glide) in place, mostly in exhalation."""
    n = len(cycle)
    m = int(min(max(rng.uniform(0.25, 0.7) * n, 0.08 * RATE), n))
    lo = inhale if rng.random() < 0.75 and n - inhale > m else 0
    at = int(rng.integers(lo, max(n - m, lo) + 1))
    f0 = rng.uniform(*f_range)
    glide = f0 * rng.uniform(-0.25, 0.25)
    freq = np.clip(f0 + glide * np.linspace(0, 1, m), 100, 1000)
    phase = 2 * np.pi * np.cumsum(freq) / RATE
    tone = sum(rng.uniform(0.2, 0.6) ** k * np.sin((k + 1) * phase) for k in range(int(rng.integers(1, 4))))
    cycle[at : at + m] += level * rng.uniform(1.5, 3.0) * hump(m) ** 0.5 * tone


def heart_sounds(rng: np.random.Generator, patient: Patient, n: int) -> np.ndarray:
    """(n,) S1/S2 bumps at the patient's heart rate."""
    out = np.zeros(n)
    beat = 60.0 / patient.heart_rate
    t0 = rng.uniform(0, beat)
    bump_t = np.arange(int(0.06 * RATE)) / RATE
    while t0 < n / RATE:
        for offset, gain, freq in ((0.0, 1.0, rng.uniform(30, 50)), (0.3 * beat, 0.7, rng.uniform(45, 70))):
            at = int((t0 + offset) * RATE)
            if at < n:
                bump = gain * np.sin(2 * np.pi * freq * bump_t) * np.exp(-bump_t / 0.015)
                out[at : at + len(bump)] += bump[: n - at]
        t0 += beat * rng.uniform(0.95, 1.05)
    return patient.heart_level * out


def device_response(audio: np.ndarray, device: str, rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """Apply a device's gain curve and noise floor; resample to its rate. Returns (audio, rate)."""
    rate, curve, floor = DEVICE_MODELS[device]
    spec = np.fft.rfft(audio)
    freqs = np.fft.rfftfreq(len(audio), 1 / RATE)
    points, gains = zip(*curve)
    spec *= 10 ** (np.interp(freqs, points, gains) / 20)
    out = np.fft.irfft(spec, len(audio)) + floor * rng.standard_normal(len(audio))
    return resample(out.astype(np.float32), RATE, rate), rate


def render_recording(rng: np.random.Generator, patient: Patient, num_cycles: int) -> tuple[np.ndarray, list[str]]:
    """A recording at 16 kHz (before the device) and its annotation lines."""
    lead = rng.uniform(0.05, 0.4)
    parts, lines, t = [np.zeros(int(lead * RATE))], [], lead
    for _ in range(num_cycles):
        seconds = patient.breath_period * rng.uniform(0.8, 1.2)
        cycle, inhale = breath_cycle(rng, patient, seconds)
        crackle = rng.random() < patient.crackle_prob
        wheeze = rng.random() < patient.wheeze_prob
        if crackle:
            add_crackles(rng, cycle, inhale, patient.crackle_kind, patient.breath_level)
        if wheeze:
            add_wheeze(rng, cycle, inhale, patient.wheeze_range, patient.breath_level)
        lines.append(f"{t:.3f}\t{t + len(cycle) / RATE:.3f}\t{int(crackle)}\t{int(wheeze)}")
        parts.append(cycle)
        t += len(cycle) / RATE
    parts.append(np.zeros(int(rng.uniform(0.05, 0.4) * RATE)))
    audio = np.concatenate(parts)
    return audio + heart_sounds(rng, patient, len(audio)), lines


@dataclass
class _PatientJob:
    folder: str
    seed: int
    pid: int
    split: str
    devices: tuple[str, ...]
    recordings: int
    cycles: tuple[int, int]
    cycle_seconds: tuple[float, float]


def _render_patient(job: _PatientJob) -> list[dict]:
    rng = clip_rng(job.seed, "patient", job.pid)
    patient = sample_patient(rng, job.pid, job.cycle_seconds)
    written = []
    for k in range(job.recordings):
        device = str(rng.choice(job.devices))
        name = f"{job.pid}_{k + 1}b1_{rng.choice(LOCATIONS)}_sc_{device}"
        audio, lines = render_recording(rng, patient, int(rng.integers(job.cycles[0], job.cycles[1] + 1)))
        audio, rate = device_response(audio, device, rng)
        peak = float(np.abs(audio).max())
        write_audio_file(Path(job.folder) / f"{name}.wav", audio / max(peak / 0.9, 1.0), rate)
        (Path(job.folder) / f"{name}.txt").write_text("\n".join(lines) + "\n")
        written.append({"name": name, "split": job.split, "device": device, "cycles": len(lines),
                        "labels": [line.split("\t")[2:] for line in lines]})
    return [{"patient": asdict(patient), "recordings": written}]


def synth_icbhi(
    out_dir: str | os.PathLike,
    num_patients: int = 24,
    recordings_per_patient: int = 2,
    cycles_per_recording: tuple[int, int] = (4, 8),
    cycle_seconds: tuple[float, float] = (2.5, 5.0),
    test_percent: float = 35.0,
    heldout_device: str | None = "Litt3200",
    seed: int = 0,
    jobs: int = 1,
) -> dict:
    """Write a synthetic ICBHI-layout corpus; return a summary dict.

    Args:
        out_dir: new (or empty) folder; written atomically.
        num_patients: synthetic patients (ids from 101).
        recordings_per_patient: recordings per patient, each on a random device.
        cycles_per_recording: (min, max) annotated cycles per recording.
        cycle_seconds: range of the patients' mean breathing periods.
        test_percent: share of patients whose recordings form the test split.
        heldout_device: a device only test patients use (``None``: all devices everywhere).
        seed: same seed, same bytes.
        jobs: worker processes (the output does not depend on it).

    Raises:
        SpeechkitError: bad counts, or an unknown device.
    """
    if num_patients < 2 or recordings_per_patient < 1 or not 1 <= cycles_per_recording[0] <= cycles_per_recording[1]:
        raise SpeechkitError("synth icbhi needs >= 2 patients, >= 1 recording each and 1 <= min cycles <= max cycles")
    if heldout_device is not None and heldout_device not in DEVICES:
        raise SpeechkitError(f"unknown device {heldout_device!r}; expected one of {', '.join(DEVICES)}")
    num_test = min(max(1, round(num_patients * test_percent / 100)), num_patients - 1)
    order = np.random.default_rng(seed).permutation(num_patients)
    test_ids = {101 + int(i) for i in order[:num_test]}
    train_devices = tuple(d for d in DEVICES if d != heldout_device)
    with staged_output_dir(out_dir) as stage:
        folder = stage / DATABASE
        folder.mkdir()
        plan = [
            _PatientJob(str(folder), seed, pid, "test" if pid in test_ids else "train",
                        DEVICES if pid in test_ids else train_devices, recordings_per_patient,
                        tuple(cycles_per_recording), tuple(cycle_seconds))
            for pid in range(101, 101 + num_patients)
        ]
        patients = [p for result in run_jobs(_render_patient, plan, jobs) for p in result]
        recordings = [r for p in patients for r in p["recordings"]]
        (stage / SPLIT_FILE).write_text("".join(f"{r['name']}\t{r['split']}\n" for r in recordings))
        info = {"seed": seed, "heldout_device": heldout_device, "test_patients": sorted(test_ids), "patients": patients}
        (stage / "synth_info.json").write_text(json.dumps(info, indent=1))
        (stage / "README.md").write_text(_README.format(seed=seed, patients=num_patients, test=num_test,
                                                       device=heldout_device or "none"))
    return {"out_dir": str(out_dir), "recordings": len(recordings), "cycles": sum(r["cycles"] for r in recordings),
            "test_patients": num_test, "heldout_device": heldout_device}


_README = """# Synthetic respiratory sounds (ICBHI 2017 layout)

Generated by `speechkit synth icbhi` (seed {seed}): {patients} synthetic patients, {test} of them
held out for the test split; held-out device: {device}. **Synthetic, not a medical dataset**:
breath noise, heart sounds, crackles and wheezes are generated by simple acoustic models
(speechkit/data/synth/respiratory.py) for software tests and method comparisons only.

- `ICBHI_final_database/<patient>_<k>b1_<location>_sc_<device>.wav` (the device's rate, 16-bit)
  and `.txt` (`start end crackle wheeze` per cycle, tab-separated), as in ICBHI 2017.
- `ICBHI_challenge_train_test.txt`: `<recording>\\t<train|test>`.
- `synth_info.json`: every patient's physiology and every recording's cycles.
"""


# -- ``speechkit synth icbhi`` -----------------------------------------------------------------


def _pair(kind):
    def parse(text: str):
        values = [kind(v) for v in text.split(",")]
        if len(values) != 2:
            raise ValueError(text)
        return tuple(values)

    return parse


def _add_arguments(p) -> None:
    p.add_argument("--patients", type=int, default=24, help="synthetic patients (default: %(default)s)")
    p.add_argument("--recordings", type=int, default=2, help="recordings per patient (default: %(default)s)")
    p.add_argument("--cycles", type=_pair(int), default=(4, 8), help="MIN,MAX cycles per recording (default: 4,8)")
    p.add_argument("--cycle-seconds", type=_pair(float), default=(2.5, 5.0),
                   help="MIN,MAX mean breathing period of a patient (default: 2.5,5.0)")
    p.add_argument("--test-percent", type=float, default=35.0, help="patients held out for test (default: %(default)s)")
    p.add_argument("--heldout-device", default="Litt3200",
                   help="device only test patients use; 'none' for none (default: %(default)s)")


def _synth_from_args(args) -> int:
    device = None if args.heldout_device.lower() == "none" else args.heldout_device
    summary = synth_icbhi(args.out, args.patients, args.recordings, args.cycles, args.cycle_seconds,
                          args.test_percent, device, seed=args.seed, jobs=args.jobs)
    print(f"wrote {summary['recordings']} recordings ({summary['cycles']} cycles) to {summary['out_dir']}; "
          f"{summary['test_patients']} test patients, held-out device {summary['heldout_device']}")
    return 0


SYNTH = Subcommand(
    "icbhi", "ICBHI 2017 respiratory-sound layout: synthetic breath cycles, crackles, wheezes (not medical data)",
    _add_arguments, _synth_from_args,
    description="Write a synthetic respiratory-sound corpus in the ICBHI 2017 layout "
    "(ICBHI_final_database/*.wav + *.txt, ICBHI_challenge_train_test.txt): generated breath cycles, heart "
    "sounds, crackles and wheezes on four simulated devices. Synthetic, not a medical dataset.",
    order=40,
)
