"""Synthetic audio-visual speech in the LRS3 layout: espeak-ng speech and a rendered talking mouth.

``speechkit synth lrs3 OUT`` writes::

    OUT/trainval/<SPEAKER>/<NNNNN>.mp4 + <NNNNN>.txt     training speakers (voice pool "train")
    OUT/test/<SPEAKER>/<NNNNN>.mp4 + <NNNNN>.txt         held-out voices and held-out faces
    OUT/musan/noise/free-sound/noise-free-sound-NNNN.wav  MUSAN-layout background noise
    OUT/README.txt

Each ``.txt`` starts with ``Text:  THE WORDS`` and ``Conf:  4`` as in LRS3. Each mp4 holds
25 fps 96 x 96 grayscale H.264 video and 16 kHz PCM audio of exactly ``T * 640`` samples (the
speech, zero-padded to a whole frame), so video frame ``t`` covers audio samples
``[640 t, 640 (t + 1))``.

**How the mouth follows the speech.** espeak-ng reports a phoneme event at the sample where each
phoneme starts (:func:`speechkit.data.synth.espeak.synthesize_with_phonemes`). Every phoneme maps
to a viseme target (:data:`VISEMES`: mouth opening, width, lip rounding, teeth and tongue
visibility, each in [0, 1]); the piecewise-constant target track (100 Hz) is smoothed with a
Gaussian (``sigma`` 35 ms) so neighbouring visemes blend (co-articulation) and is then sampled at
the frame centres. The renderer draws a face crop at a mouth-ROI-like size: skin with a lighting
gradient, nostril shadows, the outer lips, the dark mouth opening, the upper teeth and the
tongue, with soft (anti-aliased) edges.

**What varies.** Per speaker (drawn from the speaker's seed; test speakers are new draws, so both
the voice and the face are held out): skin tone, mouth position and size, lip thickness and
darkness, nostril spacing, a base blur. Per clip: a smooth random walk of head position and
scale, lighting gain and left-right gradient, extra blur, pixel noise.

**The ROI step on this data is the identity.** Real LRS3 needs a mouth crop from face landmarks
(:mod:`speechkit.data.corpora.lrs`); here the picture *is* the mouth region (96 x 96), and
the data module takes the 88 x 88 crop (random in training, centred otherwise) as for real
ROIs. ``speechkit prepare lrs3 OUT MANIFESTS`` without landmark files therefore uses the
centre crop and flags it, which is right for this corpus.
"""

from __future__ import annotations

import hashlib
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from speechkit.errors import SpeechkitError
from speechkit.plugins import Subcommand

SAMPLE_RATE = 16000
FPS = 25
SAMPLES_PER_FRAME = SAMPLE_RATE // FPS  # 640
IMAGE_SIZE = 96
#: Viseme parameters: (opening, width, rounding, teeth, tongue), each in [0, 1].
VISEMES: dict[str, tuple[float, float, float, float, float]] = {
    "rest": (0.05, 0.5, 0.0, 0.0, 0.0),
    "bilabial": (0.0, 0.5, 0.0, 0.0, 0.0),  # p b m
    "labiodental": (0.1, 0.55, 0.0, 1.0, 0.0),  # f v
    "dental": (0.25, 0.55, 0.0, 1.0, 1.0),  # T D (th)
    "alveolar": (0.2, 0.6, 0.0, 1.0, 0.4),  # t d n s z
    "lateral": (0.35, 0.6, 0.0, 1.0, 1.0),  # l
    "postalveolar": (0.25, 0.4, 0.6, 1.0, 0.0),  # S Z tS dZ
    "velar": (0.35, 0.5, 0.0, 0.2, 0.3),  # k g N h
    "r": (0.2, 0.4, 0.5, 0.3, 0.0),
    "w": (0.1, 0.25, 1.0, 0.0, 0.0),
    "j": (0.2, 0.75, 0.0, 1.0, 0.3),
    "open": (0.95, 0.6, 0.0, 0.3, 0.2),  # a A V aI aU
    "mid": (0.6, 0.75, 0.0, 1.0, 0.2),  # E e eI a#
    "spread": (0.3, 0.9, 0.0, 1.0, 0.1),  # I i
    "rounded": (0.6, 0.35, 0.8, 0.0, 0.0),  # O 0 oU OI
    "close_round": (0.25, 0.2, 1.0, 0.0, 0.0),  # U u
    "schwa": (0.4, 0.5, 0.1, 0.5, 0.2),  # @ 3
}
#: Viseme names grouped into four classes a lip reader should tell apart (the sanity check).
VISEME_CLASSES: dict[str, str] = {
    "rest": "closed", "bilabial": "closed", "labiodental": "closed", "w": "round",
    "postalveolar": "round", "rounded": "round", "close_round": "round", "r": "round",
    "open": "open", "velar": "open", "schwa": "open", "lateral": "open",
    "mid": "spread", "spread": "spread", "j": "spread", "alveolar": "spread", "dental": "spread",
}  # fmt: skip
_PREFIX_RULES = (  # longest match first: espeak-ng ASCII mnemonics (stress marks stripped)
    ("tS", "postalveolar"), ("dZ", "postalveolar"), ("aI", "open"), ("aU", "open"), ("eI", "mid"),
    ("oU", "rounded"), ("OI", "rounded"), ("a#", "mid"), ("e@", "mid"), ("I@", "spread"), ("U@", "close_round"),
    ("_", "rest"), ("p", "bilabial"), ("b", "bilabial"), ("m", "bilabial"), ("f", "labiodental"),
    ("v", "labiodental"), ("T", "dental"), ("D", "dental"), ("t", "alveolar"), ("d", "alveolar"),
    ("n", "alveolar"), ("s", "alveolar"), ("z", "alveolar"), ("l", "lateral"), ("S", "postalveolar"),
    ("Z", "postalveolar"), ("k", "velar"), ("g", "velar"), ("N", "velar"), ("h", "velar"), ("x", "velar"),
    ("r", "r"), ("w", "w"), ("j", "j"), ("a", "open"), ("A", "open"), ("V", "open"), ("E", "mid"),
    ("e", "mid"), ("I", "spread"), ("i", "spread"), ("O", "rounded"), ("0", "rounded"), ("o", "rounded"),
    ("U", "close_round"), ("u", "close_round"), ("@", "schwa"), ("3", "schwa"),
)  # fmt: skip
_DIGITS = ("ZERO", "ONE", "TWO", "THREE", "FOUR", "FIVE", "SIX", "SEVEN", "EIGHT", "NINE")
TEXT_CHOICES = ("digits", "commands", "sentences", "general")


def viseme_of(phoneme: str) -> str:
    """The viseme name of an espeak-ng phoneme mnemonic (stress marks ignored).

    Example:
        >>> viseme_of("'aI"), viseme_of("m"), viseme_of("u:"), viseme_of("_:")
        ('open', 'bilabial', 'close_round', 'rest')
    """
    name = phoneme.lstrip("',%=")
    for prefix, viseme in _PREFIX_RULES:
        if name.startswith(prefix):
            return viseme
    return "schwa"


def viseme_track(phones: list[tuple[str, float]], num_frames: int, fps: float = FPS,
                 coarticulation_s: float = 0.035) -> tuple[np.ndarray, list[str]]:
    """Viseme parameters per video frame (co-articulated) and the dominant viseme per frame.

    Args:
        phones: ``(phoneme mnemonic, start seconds)`` in order (espeak-ng's phoneme events).
        num_frames: T video frames.
        coarticulation_s: Gaussian smoothing of the 100 Hz target track (seconds).

    Returns:
        float32 (T, 5) parameters (:data:`VISEMES` order) and T viseme names (the target at each
        frame centre, before smoothing).
    """
    step = 0.01
    num = int(np.ceil(num_frames / fps / step)) + 1
    times = np.arange(num) * step
    names = np.full(num, "rest", dtype=object)
    for i, (phone, start) in enumerate(phones):
        end = phones[i + 1][1] if i + 1 < len(phones) else start + 0.08
        names[(times >= start) & (times < end)] = viseme_of(phone)
    targets = np.array([VISEMES[n] for n in names], dtype=np.float64)
    radius = int(3 * coarticulation_s / step)
    kernel = np.exp(-0.5 * (np.arange(-radius, radius + 1) * step / coarticulation_s) ** 2)
    kernel /= kernel.sum()
    padded = np.pad(targets, ((radius, radius), (0, 0)), mode="edge")
    smooth = np.stack([np.convolve(padded[:, k], kernel, mode="valid") for k in range(targets.shape[1])], 1)
    centres = np.minimum(((np.arange(num_frames) + 0.5) / fps / step).astype(int), num - 1)
    return smooth[centres].astype(np.float32), [str(names[c]) for c in centres]


@dataclass(frozen=True)
class Face:
    """One synthetic speaker's face (pixels of the 96 x 96 crop, gray levels 0-255)."""

    skin: float
    mouth_x: float
    mouth_y: float
    mouth_width: float  # half-width of the lips at width 0.5
    mouth_height: float  # half-height of the opening at opening 1
    lip_thickness: float
    lip_darkness: float  # lip gray = skin * lip_darkness
    nostril_gap: float
    blur: float

    @classmethod
    def sample(cls, rng: np.random.Generator) -> Face:
        return cls(
            skin=float(rng.uniform(90, 200)), mouth_x=float(rng.uniform(44, 52)), mouth_y=float(rng.uniform(54, 62)),
            mouth_width=float(rng.uniform(15, 22)), mouth_height=float(rng.uniform(10, 15)),
            lip_thickness=float(rng.uniform(2.5, 5.0)), lip_darkness=float(rng.uniform(0.45, 0.75)),
            nostril_gap=float(rng.uniform(6, 10)), blur=float(rng.uniform(0.3, 1.0)),
        )


def _soft_ellipse(yy, xx, cy, cx, ry, rx, edge: float = 1.0) -> np.ndarray:
    """Coverage in [0, 1] of an axis-aligned ellipse with an anti-aliased edge (~``edge`` px)."""
    ry, rx = np.maximum(ry, 1e-3), np.maximum(rx, 1e-3)
    r = np.sqrt(((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2)
    return np.clip((1.0 - r) * np.minimum(ry, rx) / edge + 0.5, 0.0, 1.0)


def _blur(images: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur of (T, H, W) float images along H and W."""
    if sigma < 0.2:
        return images
    radius = max(1, int(3 * sigma))
    k = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    k /= k.sum()
    out = np.pad(images, ((0, 0), (radius, radius), (0, 0)), mode="edge")
    out = sum(k[i] * out[:, i : i + images.shape[1]] for i in range(k.size))
    out = np.pad(out, ((0, 0), (0, 0), (radius, radius)), mode="edge")
    return sum(k[i] * out[:, :, i : i + images.shape[2]] for i in range(k.size))


def render_mouth(params: np.ndarray, face: Face, rng: np.random.Generator, size: int = IMAGE_SIZE) -> np.ndarray:
    """Draw the mouth crop of every frame.

    Args:
        params: float (T, 5) viseme parameters per frame (:func:`viseme_track`).
        face: the speaker's :class:`Face`.
        rng: draws this clip's head motion, lighting, blur and pixel noise.

    Returns:
        uint8 (T, size, size) grayscale frames.

    Example:
        >>> face = Face.sample(np.random.default_rng(0))
        >>> closed, wide = render_mouth(np.array([VISEMES["bilabial"], VISEMES["open"]]), face, np.random.default_rng(1))
        >>> int((wide < 0.5 * face.skin).sum()) > int((closed < 0.5 * face.skin).sum())  # a dark opening
        True
    """
    num = params.shape[0]
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    walk = np.cumsum(rng.normal(0, 0.35, size=(num, 3)), axis=0)
    walk -= walk.mean(axis=0)
    dx, dy = np.clip(walk[:, 0], -4, 4), np.clip(walk[:, 1], -4, 4)
    scale = 1.0 + np.clip(walk[:, 2] * 0.01, -0.06, 0.06)
    gain, slope = rng.uniform(0.8, 1.15), rng.uniform(-0.25, 0.25)
    sigma = face.blur + rng.uniform(0.0, 0.6)
    images = np.empty((num, size, size))
    for t in range(num):
        opening, width, rounding, teeth, tongue = (float(v) for v in params[t])
        s = scale[t] * size / IMAGE_SIZE
        cx, cy = face.mouth_x * size / IMAGE_SIZE + dx[t], face.mouth_y * size / IMAGE_SIZE + dy[t]
        img = np.full((size, size), face.skin)
        for side in (-1, 1):  # nostril shadows
            img -= 0.35 * face.skin * _soft_ellipse(yy, xx, cy - 30 * s, cx + side * face.nostril_gap * s, 2.2 * s, 3.2 * s)
        half_w = face.mouth_width * s * (0.7 + 0.6 * width) * (1.0 - 0.35 * rounding)
        half_h = face.mouth_height * s * opening
        outer = _soft_ellipse(yy, xx, cy, cx, half_h + face.lip_thickness * s * (1 + 0.5 * rounding), half_w + 2 * s)
        img = img * (1 - outer) + face.skin * face.lip_darkness * outer
        inner = _soft_ellipse(yy, xx, cy, cx, half_h, half_w * 0.85)
        dark = 25.0 + 0.05 * face.skin
        inside = dark
        teeth_band = np.clip((cy - half_h + 0.45 * half_h + 1.5 - yy), 0, 1) * teeth
        inside = inside * (1 - teeth_band) + 215.0 * teeth_band
        tongue_band = np.clip(yy - (cy + 0.25 * half_h), 0, 1) * tongue
        inside = inside * (1 - tongue_band) + (0.55 * face.skin + 30) * tongue_band
        img = img * (1 - inner) + inside * inner
        images[t] = img
    images *= gain * (1.0 + slope * (xx - size / 2) / size)[None]
    images = _blur(images, sigma) + rng.normal(0, rng.uniform(1.0, 4.0), size=images.shape)
    return np.clip(np.round(images), 0, 255).astype(np.uint8)


def _speaker_seed(seed: int, split: str, index: int) -> int:
    digest = hashlib.sha256(f"lrs3-synth/{seed}/{split}/{index}".encode()).digest()
    return int.from_bytes(digest[:8], "little")


def _text(source, rng: np.random.Generator) -> str:
    if source == "digits":
        return " ".join(_DIGITS[int(d)] for d in rng.integers(0, 10, size=int(rng.integers(3, 7))))
    return source.sample(rng)


def render_clip(text: str, voice, face: Face, seed: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Speak ``text`` and draw the mouth: (audio float32 (T * 640,), frames uint8 (T, 96, 96), visemes T).

    Raises:
        SpeechkitError: the voice is not an espeak-ng voice (only espeak-ng reports phonemes).
    """
    from speechkit.data.synth.espeak import synthesize_with_phonemes

    if getattr(voice, "engine", "espeak") != "espeak":
        raise SpeechkitError("the audio-visual corpus needs espeak-ng voices (phoneme events); use --engines espeak")
    audio, phones = synthesize_with_phonemes(text, voice, SAMPLE_RATE, seed=seed)
    num_frames = max(1, -(-audio.size // SAMPLES_PER_FRAME))
    audio = np.pad(audio, (0, num_frames * SAMPLES_PER_FRAME - audio.size)).astype(np.float32)
    params, names = viseme_track(phones, num_frames)
    frames = render_mouth(params, face, np.random.default_rng(seed))
    return audio, frames, names


def _render_speaker(job: tuple) -> tuple[int, float]:
    from speechkit.data.synth.text import get_text_source
    from speechkit.data.video import write_video
    from speechkit.fileio import write_text_atomic

    out, split, index, voice, text_name, utterances, seed = job
    rng = np.random.default_rng(_speaker_seed(seed, split, index))
    face = Face.sample(rng)
    source = "digits" if text_name == "digits" else get_text_source(text_name)
    folder = Path(out) / split / voice.speaker_id
    seconds = 0.0
    for u in range(utterances):
        text = _text(source, rng)
        audio, frames, _ = render_clip(text, voice, face, seed=int(rng.integers(2**31)))
        write_video(folder / f"{u:05d}.mp4", frames, FPS, audio, SAMPLE_RATE)
        write_text_atomic(folder / f"{u:05d}.txt", f"Text:  {text}\nConf:  4\n")
        seconds += audio.size / SAMPLE_RATE
    return utterances, seconds


def synth_lrs3(out: str | Path, train_speakers: int = 8, test_speakers: int = 4, utterances_per_speaker: int = 20,
               text: str = "digits", seed: int = 0, jobs: int = 1, noise_files: int = 4) -> dict:
    """Write the corpus (module docstring); returns a summary dict.

    Raises:
        SpeechkitError: ``out`` exists and is not empty; an unknown text source.
    """
    from speechkit.audio import save_audio
    from speechkit.data.synth.effects import make_noise
    from speechkit.data.synth.voices import sample_speakers

    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise SpeechkitError(f"{out}: exists and is not empty; choose a new output folder")
    if text not in TEXT_CHOICES:
        raise SpeechkitError(f"unknown text source {text!r}; expected one of {', '.join(TEXT_CHOICES)}")
    start = time.perf_counter()
    jobs_list = []
    for split, count, pool in (("trainval", train_speakers, "train"), ("test", test_speakers, "heldout")):
        voices = sample_speakers(count, seed=seed + (0 if pool == "train" else 1), pool=pool, engines="espeak")
        jobs_list += [(str(out), split, i, v, text, utterances_per_speaker, seed) for i, v in enumerate(voices)]
    if jobs > 1:
        with ProcessPoolExecutor(jobs) as pool_:
            results = list(pool_.map(_render_speaker, jobs_list))
    else:
        results = [_render_speaker(job) for job in jobs_list]
    rng = np.random.default_rng(seed + 7)
    for i in range(noise_files):
        kind = ("white", "pink", "brown")[i % 3]
        noise = 0.1 * make_noise(kind, 30 * SAMPLE_RATE, rng, SAMPLE_RATE)
        save_audio(out / "musan" / "noise" / "free-sound" / f"noise-free-sound-{i:04d}.wav", noise, SAMPLE_RATE)
    from speechkit.fileio import write_text_atomic

    write_text_atomic(out / "README.txt", __doc__ or "")
    return {"out_dir": str(out), "utterances": sum(r[0] for r in results), "seconds_audio": sum(r[1] for r in results),
            "speakers": len(jobs_list), "seconds": time.perf_counter() - start}


def _add_arguments(p) -> None:
    p.add_argument("--speakers", type=int, default=8, help="training speakers (trainval/) (default: %(default)s)")
    p.add_argument("--test-speakers", type=int, default=4,
                   help="held-out speakers (test/): held-out voices and new faces (default: %(default)s)")
    p.add_argument("--utterances-per-speaker", type=int, default=20, help="clips per speaker (default: %(default)s)")
    p.add_argument("--text", choices=TEXT_CHOICES, default="digits",
                   help="what is said: digit strings (10 words), the command grammar, sentences, or common "
                   "words (default: %(default)s)")


def _run(args) -> int:
    if getattr(args, "engines", "espeak") not in (None, "espeak"):
        raise SpeechkitError("the audio-visual corpus needs espeak-ng (phoneme events); use --engines espeak")
    summary = synth_lrs3(args.out, args.speakers, args.test_speakers, args.utterances_per_speaker, args.text,
                         args.seed, args.jobs)
    print(f"wrote {summary['utterances']} clips ({summary['seconds_audio'] / 60:.1f} min, {summary['speakers']} "
          f"speakers) to {summary['out_dir']} in {summary['seconds']:.1f} s")
    return 0


SYNTH = Subcommand(
    "lrs3", "LRS3 layout: trainval|test/<speaker>/<NNNNN>.mp4 + .txt (speech with a rendered talking mouth)",
    _add_arguments, _run,
    description="Write a synthetic audio-visual corpus in the LRS3 layout: espeak-ng speech whose phoneme events "
    "drive a rendered mouth (25 fps, 96x96 gray H.264 + 16 kHz PCM in mp4), held-out voices and faces in test/, "
    "and MUSAN-layout noise in musan/noise/.",
    order=60,
)
