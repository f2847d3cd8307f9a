"""LRS3 and LRS2 (BBC/TED lip reading sentences) -> mouth ROIs, 16 kHz audio and lhotse manifests.

``speechkit prepare lrs3 CORPUS_DIR OUT_DIR [--landmarks DIR] [--valid-utterances N]`` reads::

    LRS3: CORPUS_DIR/{pretrain,trainval,test}/<SPEAKER>/<NNNNN>.mp4 + <NNNNN>.txt
    LRS2: CORPUS_DIR/{main,pretrain}/<SHOW>/<NNNNN>.mp4 + .txt, and the list files
          CORPUS_DIR/{pretrain,train,val,test}.txt (one <SHOW>/<NNNNN> per line, extra columns ignored)

Each ``.txt`` starts with ``Text:  THE WORDS`` (other lines, the word timings, are not used;
``{LG}``-style markers are dropped). For every video it writes ``OUT_DIR/roi/<split>/<SPEAKER>/
<NNNNN>.mp4`` (96 x 96 gray mouth ROI at 25 fps, H.264; the data module crops 88 x 88) and
``OUT_DIR/audio/<split>/<SPEAKER>/<NNNNN>.flac`` (16 kHz mono, cut or zero-padded to exactly
640 samples per video frame, so the two stay in sync), and ``OUT_DIR/cuts_<split>.jsonl.gz``:
lhotse cuts over the flac with ``custom = {"video": ROI path, "fps": 25, "roi": "landmarks" |
"centre"}``. Splits: LRS3 ``pretrain``, ``trainval``, ``test`` (and ``valid``: the
``--valid-utterances`` trainval utterances held out, chosen by a hash of their ids, as
AV-HuBERT holds out 1,200); LRS2 ``pretrain``, ``train``, ``valid``, ``test``.

**Mouth ROI.** With ``--landmarks DIR``, each video has ``DIR/<split>/<SPEAKER>/<NNNNN>.pkl`` or
``.npz``: 68-point face landmarks per frame (dlib/iBUG order, pixels), as the public LRS3
preprocessing releases ship them (AV-HuBERT's ``landmark`` folder: a pickled list with one
(68, 2) array per frame, ``None`` where detection failed) or an ``.npz`` with an array
``landmarks`` of shape (T, 68, 2) (NaN rows for missing frames). Missing frames take the nearest
detected frame's landmarks; the ROI is a square centred on the mouth points (48-67), of side
``2 * roi_scale`` times the mouth width (outer corners 48-54), smoothed over 5 frames and resized
to 96 x 96. Without landmarks, the **centre crop** (a square of the frame's short side, resized
to 96 x 96) is used and the cut is flagged ``roi: centre``; that is exact for the synthetic
corpus (``speechkit synth lrs3``, whose frames are the mouth ROI) and a rough stand-in for real
LRS3 face crops. Videos at another frame rate are resampled to 25 fps by nearest frame.
"""

from __future__ import annotations

import hashlib
import pickle
import re
from pathlib import Path

import numpy as np

from speechkit.errors import AudioError, CorpusError
from speechkit.plugins import Subcommand

FPS = 25
SAMPLE_RATE = 16000
ROI_SIZE = 96
LRS3_SPLITS = ("pretrain", "trainval", "test")
LRS2_LISTS = {"pretrain": "pretrain", "train": "main", "val": "main", "test": "main"}


def read_lrs_text(path: Path) -> str:
    """The normalised transcript of an LRS ``.txt`` (its ``Text:`` line).

    Raises:
        CorpusError: no ``Text:`` line, or nothing left after normalisation.
    """
    from speechkit.text.normalize import normalize_text

    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as exc:
        raise CorpusError(f"{path}: cannot read the transcript ({exc.strerror})") from None
    for line in lines:
        if line.startswith("Text:"):
            text = normalize_text(re.sub(r"\{[^}]*\}", " ", line[len("Text:"):]), str(path))
            if not text:
                raise CorpusError(f"{path}: empty transcript")
            return text
    raise CorpusError(f"{path}: no 'Text:' line; expected an LRS transcript ('Text:  THE WORDS')")


def load_landmarks(path: Path, num_frames: int) -> np.ndarray:
    """(T, 68, 2) float landmarks from a ``.pkl`` (list of (68, 2) or None) or ``.npz``
    (``landmarks``), missing frames filled from the nearest detected one.

    Raises:
        CorpusError: unreadable file, wrong shape, or no detected frame at all.
    """
    try:
        if path.suffix == ".npz":
            with np.load(path) as data:
                marks = np.asarray(data["landmarks"], dtype=np.float64)
        else:
            with open(path, "rb") as f:
                frames = pickle.load(f)
            marks = np.stack([np.full((68, 2), np.nan) if m is None else np.asarray(m, np.float64).reshape(68, 2)
                              for m in frames])
    except Exception as exc:
        raise CorpusError(f"{path}: cannot read landmarks ({type(exc).__name__}: {exc}); expected 68-point "
                          "landmarks per frame (.pkl list or .npz 'landmarks' (T, 68, 2))") from None
    if marks.ndim != 3 or marks.shape[1:] != (68, 2):
        raise CorpusError(f"{path}: landmarks of shape {marks.shape}; expected (T, 68, 2)")
    found = np.flatnonzero(~np.isnan(marks).any(axis=(1, 2)))
    if found.size == 0:
        raise CorpusError(f"{path}: no frame has landmarks (no face detected)")
    index = np.arange(num_frames)
    nearest = found[np.abs(index[:, None] - found[None, :]).argmin(axis=1)]
    return marks[np.minimum(nearest, len(marks) - 1)]


def _resize(image: np.ndarray, size: int) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.fromarray(image).resize((size, size), Image.BILINEAR))


def mouth_rois(frames: np.ndarray, landmarks: np.ndarray | None, roi_scale: float = 1.0,
               size: int = ROI_SIZE) -> np.ndarray:
    """uint8 (T, H, W) frames -> uint8 (T, size, size) mouth ROIs (module docstring).

    Example:
        >>> mouth_rois(np.zeros((2, 120, 160), np.uint8), None).shape
        (2, 96, 96)
    """
    t, h, w = frames.shape
    if landmarks is None:
        side = min(h, w)
        top, left = (h - side) // 2, (w - side) // 2
        return np.stack([_resize(f[top : top + side, left : left + side], size) for f in frames])
    mouth = landmarks[:, 48:68]
    centre = mouth.mean(axis=1)
    width = np.linalg.norm(landmarks[:, 54] - landmarks[:, 48], axis=1)
    kernel = np.ones(5) / 5
    centre = np.stack([np.convolve(np.pad(centre[:, k], 2, mode="edge"), kernel, "valid") for k in range(2)], 1)
    half = np.convolve(np.pad(width, 2, mode="edge"), kernel, "valid") * roi_scale
    padded = np.pad(frames, ((0, 0), (size, size), (size, size)), mode="edge")
    out = []
    for i, frame in enumerate(padded):
        r = max(int(round(half[i])), 8)
        cx, cy = int(round(centre[i, 0])) + size, int(round(centre[i, 1])) + size
        r = min(r, size)
        out.append(_resize(frame[cy - r : cy + r, cx - r : cx + r], size))
    return np.stack(out)


def to_25fps(frames: np.ndarray, fps: float) -> np.ndarray:
    """Nearest-frame resampling of (T, H, W) frames from ``fps`` to 25 fps (identity at 25)."""
    if abs(fps - FPS) < 1e-3:
        return frames
    num = max(1, int(round(len(frames) * FPS / fps)))
    return frames[np.minimum((np.arange(num) * fps / FPS).round().astype(int), len(frames) - 1)]


def prepare_video(video: Path, text_file: Path, out_dir: Path, split: str, landmarks_dir: Path | None,
                  roi_scale: float = 1.0):
    """One utterance: write its ROI mp4 and flac, return its lhotse cut.

    Raises:
        CorpusError: unreadable video/transcript/landmarks (one line naming the file).
    """
    from lhotse import MonoCut, SupervisionSegment

    from speechkit.audio import resample, save_audio
    from speechkit.data.manifests import audio_recording
    from speechkit.data.video import read_video, write_video

    speaker, utt = video.parent.name, video.stem
    text = read_lrs_text(text_file)
    try:
        clip = read_video(video)
    except AudioError as exc:
        raise CorpusError(str(exc)) from None
    if clip.audio.size == 0:
        raise CorpusError(f"{video}: the video has no audio track")
    frames = to_25fps(clip.frames, clip.fps)
    marks, roi_kind = None, "centre"
    if landmarks_dir is not None:
        candidates = [landmarks_dir / split / speaker / f"{utt}{ext}" for ext in (".pkl", ".npz")]
        found = next((c for c in candidates if c.is_file()), None)
        if found is None:
            raise CorpusError(f"{candidates[0].with_suffix('')}.pkl|.npz: no landmark file for {video}")
        marks = load_landmarks(found, len(clip.frames))
        marks = marks[np.minimum((np.arange(len(frames)) * clip.fps / FPS).round().astype(int), len(marks) - 1)]
        roi_kind = "landmarks"
    rois = mouth_rois(frames, marks, roi_scale)
    audio = resample(clip.audio, clip.sample_rate, SAMPLE_RATE)
    target = len(rois) * (SAMPLE_RATE // FPS)
    audio = audio[:target] if audio.size >= target else np.pad(audio, (0, target - audio.size))
    cut_id = f"{split}-{speaker}-{utt}"
    roi_path = out_dir / "roi" / split / speaker / f"{utt}.mp4"
    audio_path = out_dir / "audio" / split / speaker / f"{utt}.flac"
    write_video(roi_path, rois, FPS)
    save_audio(audio_path, audio, SAMPLE_RATE)
    recording = audio_recording(audio_path, cut_id)
    supervision = SupervisionSegment(id=cut_id, recording_id=cut_id, start=0.0, duration=recording.duration,
                                     channel=0, text=text, speaker=speaker)
    return MonoCut(id=cut_id, start=0.0, duration=recording.duration, channel=0, supervisions=[supervision],
                   recording=recording, custom={"video": str(roi_path.resolve()), "fps": FPS, "roi": roi_kind})


def load_video_inputs(path: str | Path, landmarks: str | Path | None = None, roi_size: int = 88,
                      sample_rate: int = 16000, fps: int = 25) -> tuple[np.ndarray, np.ndarray]:
    """What an AVSR model reads from a video file: (audio float32 (640 T,) at 16 kHz, uint8 (T, 88, 88) ROIs).

    Frames are resampled to ``fps``, the mouth ROI is cut from ``landmarks`` (a ``.pkl``/``.npz``
    file of 68-point landmarks per frame, :func:`speechkit.data.corpora.lrs.load_landmarks`) or is
    the centre crop of the frame (right for the synthetic corpus, whose frames are the mouth
    region), then the centre ``roi_size`` crop; the audio track is resampled and cut or
    zero-padded to the frames.

    Raises:
        AudioError: missing/corrupt file, no frames, no audio track, or frames that show no face
            (nearly constant pictures: the standard deviation over all pixels is below 2 gray levels).
        CorpusError: an unreadable landmark file or one with no detected face.
    """
    from speechkit.audio import resample
    from speechkit.data.video import read_video

    clip = read_video(path)
    if clip.audio.size == 0:
        raise AudioError(f"{path}: the video has no audio track")
    if float(clip.frames.std()) < 2.0:
        raise AudioError(f"{path}: no face in the video (the frames are blank)")
    frames = to_25fps(clip.frames, clip.fps) if fps == 25 else clip.frames
    marks = None
    if landmarks is not None:
        marks = load_landmarks(Path(landmarks), len(clip.frames))
        marks = marks[np.minimum((np.arange(len(frames)) * clip.fps / fps).round().astype(int), len(marks) - 1)]
    rois = mouth_rois(frames, marks)
    top = (rois.shape[1] - roi_size) // 2
    rois = rois[:, top : top + roi_size, top : top + roi_size]
    audio = resample(clip.audio, clip.sample_rate, sample_rate)
    target = len(rois) * (sample_rate // fps)
    audio = audio[:target] if audio.size >= target else np.pad(audio, (0, target - audio.size))
    return audio.astype(np.float32), np.ascontiguousarray(rois)


def _lrs3_items(corpus: Path) -> dict[str, list[Path]]:
    splits = {s: sorted((corpus / s).glob("*/*.mp4")) for s in LRS3_SPLITS if (corpus / s).is_dir()}
    if not splits:
        raise CorpusError(f"{corpus}: no pretrain/, trainval/ or test/ folder; expected the LRS3 layout "
                          "(<split>/<SPEAKER>/<NNNNN>.mp4 + .txt)")
    return splits


def _lrs2_items(corpus: Path) -> dict[str, list[Path]]:
    splits = {}
    for name, folder in LRS2_LISTS.items():
        listing = corpus / f"{name}.txt"
        if not listing.is_file():
            continue
        ids = [line.split()[0] for line in listing.read_text().splitlines() if line.strip()]
        splits["valid" if name == "val" else name] = [corpus / folder / f"{i}.mp4" for i in ids]
    if not splits:
        raise CorpusError(f"{corpus}: no pretrain.txt/train.txt/val.txt/test.txt list files; expected the LRS2 "
                          "layout (main/, pretrain/ and the lists)")
    return splits


def prepare_lrs(corpus_dir: str | Path, out_dir: str | Path, layout: str = "lrs3", landmarks_dir: str | None = None,
                valid_utterances: int = 0, roi_scale: float = 1.0) -> dict[str, int]:
    """Prepare LRS3 or LRS2 (module docstring); returns cuts per split.

    Raises:
        CorpusError: a missing folder/file or an unreadable video, transcript or landmark file.
    """
    from speechkit.data.manifests import cuts_path, write_cuts

    corpus, out = Path(corpus_dir), Path(out_dir)
    if not corpus.is_dir():
        raise CorpusError(f"{corpus}: no such corpus folder")
    items = _lrs3_items(corpus) if layout == "lrs3" else _lrs2_items(corpus)
    marks = Path(landmarks_dir) if landmarks_dir else None
    counts = {}
    for split, videos in items.items():
        cuts = []
        for video in videos:
            if not video.is_file():
                raise CorpusError(f"{video}: listed but missing")
            text_file = video.with_suffix(".txt")
            if not text_file.is_file():
                raise CorpusError(f"{text_file}: missing transcript for {video.name}")
            cuts.append(prepare_video(video, text_file, out, split, marks, roi_scale))
        if not cuts:
            raise CorpusError(f"{corpus / split}: no videos (<SPEAKER>/<NNNNN>.mp4)")
        if split == "trainval" and valid_utterances > 0:
            ranked = sorted(cuts, key=lambda c: hashlib.sha256(c.id.encode()).hexdigest())
            held = {c.id for c in ranked[:valid_utterances]}
            write_cuts([c for c in cuts if c.id in held], cuts_path(out, "valid"))
            counts["valid"] = len(held)
            cuts = [c for c in cuts if c.id not in held]
        write_cuts(cuts, cuts_path(out, split))
        counts[split] = len(cuts)
    return counts


def _add_arguments(p) -> None:
    p.add_argument("--landmarks", default=None, metavar="DIR",
                   help="68-point landmarks per video: DIR/<split>/<SPEAKER>/<NNNNN>.pkl|.npz (default: centre crop, "
                   "flagged roi=centre)")
    p.add_argument("--valid-utterances", type=int, default=0,
                   help="trainval utterances held out as cuts_valid (LRS3 only; default: %(default)s)")
    p.add_argument("--roi-scale", type=float, default=1.0,
                   help="ROI half-side in mouth widths (with --landmarks; default: %(default)s)")


def _run(layout: str):
    def run(args) -> int:
        counts = prepare_lrs(args.corpus_dir, args.out_dir, layout, args.landmarks, args.valid_utterances,
                             args.roi_scale)
        roi = "landmark ROIs" if args.landmarks else "centre-crop ROIs (no --landmarks)"
        print(f"wrote {', '.join(f'{k}: {v}' for k, v in counts.items())} cuts with {roi} to {args.out_dir}")
        return 0

    return run


PREPARE = (
    Subcommand("lrs3", "LRS3: {pretrain,trainval,test}/<SPEAKER>/<NNNNN>.mp4 + .txt (audio-visual)",
               _add_arguments, _run("lrs3"), description=__doc__.split("\n\n")[0] if __doc__ else None, order=70),
    Subcommand("lrs2", "LRS2: main/, pretrain/ + pretrain|train|val|test.txt lists (audio-visual)",
               _add_arguments, _run("lrs2"), order=71),
)
