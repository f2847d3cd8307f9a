"""AVSR data: video I/O, espeak-ng phoneme events, the synthetic LRS3 twin, LRS preparation, the data module."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from speechkit.errors import AudioError, CorpusError, SpeechkitError

av = pytest.importorskip("av")  # the video extra (in dev)


# -- video I/O ----------------------------------------------------------------------------------
def test_video_round_trip_keeps_frames_audio_and_sync(tmp_path):
    from speechkit.data.video import read_video, write_video

    frames = np.zeros((20, 32, 48), np.uint8)
    frames[:, 8:24, :] = np.linspace(0, 250, 48, dtype=np.uint8)
    frames[10:, :4] = 200  # a change at frame 10
    audio = (0.3 * np.sin(np.arange(20 * 640) / 7)).astype(np.float32)
    write_video(tmp_path / "a.mp4", frames, 25, audio, 16000)
    clip = read_video(tmp_path / "a.mp4")
    assert clip.frames.shape == (20, 32, 48) and clip.fps == 25.0 and clip.sample_rate == 16000
    assert np.abs(clip.frames.astype(int) - frames).mean() < 2
    assert clip.frames[9, :4].mean() < 50 < 150 < clip.frames[10, :4].mean()
    np.testing.assert_allclose(clip.audio, audio, atol=1e-4)  # 16-bit PCM


def test_video_errors_are_one_line(tmp_path):
    from speechkit.data.video import read_video, write_video

    with pytest.raises(AudioError, match="no such video file"):
        read_video(tmp_path / "missing.mp4")
    (tmp_path / "bad.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 this is not a video" * 10)
    with pytest.raises(AudioError, match="cannot decode") as err:
        read_video(tmp_path / "bad.mp4")
    assert "\n" not in str(err.value)
    from speechkit.audio import save_audio

    save_audio(tmp_path / "sound.wav", np.zeros(1600, np.float32), 16000)
    with pytest.raises(AudioError, match="no video stream"):
        read_video(tmp_path / "sound.wav")
    with pytest.raises(SpeechkitError, match="T > 0"):
        write_video(tmp_path / "empty.mp4", np.zeros((0, 8, 8), np.uint8), 25)
    assert not (tmp_path / "empty.mp4").exists()


# -- espeak-ng phoneme events ---------------------------------------------------------------------
def test_phoneme_events_leave_the_audio_unchanged():
    from speechkit.data.synth.espeak import synthesize, synthesize_with_phonemes
    from speechkit.data.synth.voices import Voice

    voice = Voice("en-gb-scotland", "f2", rate_wpm=190, speed_factor=1.1)
    audio, phones = synthesize_with_phonemes("seven four one", voice, seed=4)
    assert np.array_equal(audio, synthesize("seven four one", voice, seed=4))
    times = [t for _, t in phones]
    assert times == sorted(times) and times[-1] <= audio.size / 16000 + 1e-6
    assert {"s", "v", "f", "w", "n"} <= {p.lstrip("'") for p, _ in phones}


# -- the synthetic corpus -------------------------------------------------------------------------
def test_lip_only_nearest_viseme_beats_chance_on_heldout_voices_and_faces():
    """The pictures carry the speech: a nearest-centroid classifier of 4 viseme classes, fitted on
    training speakers' frames, scores far above chance (balanced accuracy 0.25) on held-out ones."""
    from speechkit.data.synth.avsr import _DIGITS, VISEME_CLASSES, Face, render_clip
    from speechkit.data.synth.voices import sample_speakers

    def frames_and_classes(pool: str, seed: int, speakers: int):
        feats, classes = [], []
        rng = np.random.default_rng(seed)
        for voice in sample_speakers(speakers, seed=seed, pool=pool):
            face = Face.sample(rng)
            for _ in range(3):
                text = " ".join(_DIGITS[d] for d in rng.integers(0, 10, 5))
                _, frames, names = render_clip(text, voice, face, seed=int(rng.integers(2**30)))
                f = frames.astype(np.float32)
                f = (f - f.mean(0)) / (f.std(0).mean() + 1e-3)  # the clip's own mean picture removed
                feats.append(f[:, 16:80, 16:80].reshape(len(f), 8, 8, 8, 8).mean((2, 4)).reshape(len(f), -1))
                classes += [VISEME_CLASSES[n] for n in names]
        return np.concatenate(feats), np.array(classes)

    x_train, y_train = frames_and_classes("train", 0, 5)
    x_test, y_test = frames_and_classes("heldout", 1, 3)
    labels = sorted(set(y_train))
    centroids = np.stack([x_train[y_train == c].mean(0) for c in labels])
    pred = np.array(labels)[((x_test[:, None] - centroids[None]) ** 2).sum(-1).argmin(1)]
    balanced = np.mean([(pred[y_test == c] == c).mean() for c in labels if (y_test == c).any()])
    assert balanced > 0.4, balanced


@pytest.fixture(scope="module")
def tiny_av_corpus(tmp_path_factory) -> Path:
    from speechkit.data.synth.avsr import synth_lrs3

    out = tmp_path_factory.mktemp("avsr") / "corpus"
    synth_lrs3(out, train_speakers=2, test_speakers=1, utterances_per_speaker=3, seed=3, noise_files=2)
    return out


def test_synth_writes_the_lrs3_layout_in_sync(tiny_av_corpus):
    from speechkit.data.corpora.lrs import read_lrs_text
    from speechkit.data.video import read_video

    videos = sorted(tiny_av_corpus.glob("trainval/*/*.mp4"))
    assert len(videos) == 6 and len(list(tiny_av_corpus.glob("test/*/*.mp4"))) == 3
    assert len(list((tiny_av_corpus / "musan" / "noise").rglob("*.wav"))) == 2
    clip = read_video(videos[0])
    assert clip.frames.shape[1:] == (96, 96) and clip.fps == 25.0
    assert clip.audio.size == 640 * len(clip.frames)
    assert set(read_lrs_text(videos[0].with_suffix(".txt")).split()) <= {
        "ZERO", "ONE", "TWO", "THREE", "FOUR", "FIVE", "SIX", "SEVEN", "EIGHT", "NINE"}
    train_speakers = {p.parent.name for p in videos}
    assert not train_speakers & {p.name for p in (tiny_av_corpus / "test").iterdir()}


# -- preparation ----------------------------------------------------------------------------------
def test_prepare_lrs3_synthetic(tiny_av_corpus, tmp_path):
    from speechkit.data.corpora.lrs import prepare_lrs
    from speechkit.data.manifests import read_cuts
    from speechkit.data.video import read_video

    counts = prepare_lrs(tiny_av_corpus, tmp_path, "lrs3", valid_utterances=2)
    assert counts == {"valid": 2, "trainval": 4, "test": 3}
    cut = next(iter(read_cuts(tmp_path / "cuts_test.jsonl.gz")))
    assert cut.custom["roi"] == "centre" and cut.custom["fps"] == 25
    rois = read_video(cut.custom["video"], with_audio=False).frames
    assert rois.shape[1:] == (96, 96) and cut.recording.num_samples == 640 * len(rois)
    assert cut.supervisions[0].text and cut.supervisions[0].speaker


def _landmarks_for(frames: np.ndarray, mouth_xy=(60.0, 90.0)) -> list:
    """68 points per frame with the mouth (48-67) around ``mouth_xy``, 30 px wide; frame 1 undetected."""
    marks = []
    for i in range(len(frames)):
        pts = np.zeros((68, 2))
        pts[48:68] = np.array(mouth_xy) + np.stack([np.linspace(-15, 15, 20), np.sin(np.arange(20)) * 4], 1)
        pts[48], pts[54] = np.array(mouth_xy) - [15, 0], np.array(mouth_xy) + [15, 0]
        marks.append(None if i == 1 else pts)
    return marks


def test_prepare_lrs2_with_landmarks_crops_the_mouth(tmp_path):
    from speechkit.data.corpora.lrs import prepare_lrs
    from speechkit.data.manifests import read_cuts
    from speechkit.data.video import read_video, write_video

    frames = np.full((12, 120, 160), 60, np.uint8)
    frames[:, 80:100, 45:75] = 230  # a bright "mouth" around (x=60, y=90)
    audio = np.zeros(12 * 640, np.float32) + 0.01
    for split, folder in (("train", "main"), ("test", "main")):
        write_video(tmp_path / "lrs2" / folder / "5535415699068794046" / f"0000{len(split)}.mp4", frames, 25, audio)
        (tmp_path / "lrs2" / folder / "5535415699068794046" / f"0000{len(split)}.txt").write_text(
            "Text:  HELLO {LG} WORLD\nConf:  3\n")
        (tmp_path / "lrs2" / f"{split}.txt").write_text(f"5535415699068794046/0000{len(split)} NF\n")
        marks_dir = tmp_path / "marks" / ("train" if split == "train" else "test") / "5535415699068794046"
        marks_dir.mkdir(parents=True, exist_ok=True)
        with open(marks_dir / f"0000{len(split)}.pkl", "wb") as f:
            pickle.dump(_landmarks_for(frames), f)
    counts = prepare_lrs(tmp_path / "lrs2", tmp_path / "out", "lrs2", landmarks_dir=str(tmp_path / "marks"))
    assert counts == {"train": 1, "test": 1}
    cut = next(iter(read_cuts(tmp_path / "out" / "cuts_train.jsonl.gz")))
    assert cut.supervisions[0].text == "HELLO WORLD" and cut.custom["roi"] == "landmarks"
    rois = read_video(cut.custom["video"], with_audio=False).frames
    assert rois.shape == (12, 96, 96)
    assert rois[:, 30:66, 30:66].mean() > 150  # the mouth fills the ROI centre; the centre crop would not
    with pytest.raises(CorpusError, match="no landmark file"):
        prepare_lrs(tmp_path / "lrs2", tmp_path / "out2", "lrs2", landmarks_dir=str(tmp_path / "nowhere"))


def test_prepare_errors_are_one_line(tmp_path, tiny_av_corpus):
    from speechkit.data.corpora.lrs import load_landmarks, prepare_lrs, read_lrs_text

    with pytest.raises(CorpusError, match="no such corpus folder"):
        prepare_lrs(tmp_path / "nope", tmp_path / "out")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CorpusError, match="LRS3 layout"):
        prepare_lrs(tmp_path / "empty", tmp_path / "out")
    with pytest.raises(CorpusError, match="LRS2 layout"):
        prepare_lrs(tmp_path / "empty", tmp_path / "out", "lrs2")
    (tmp_path / "t.txt").write_text("Conf: 3\n")
    with pytest.raises(CorpusError, match="no 'Text:' line"):
        read_lrs_text(tmp_path / "t.txt")
    np.savez(tmp_path / "m.npz", landmarks=np.full((4, 68, 2), np.nan))
    with pytest.raises(CorpusError, match="no face detected"):
        load_landmarks(tmp_path / "m.npz", 4)
    (tmp_path / "x.pkl").write_bytes(b"garbage")
    with pytest.raises(CorpusError, match="cannot read landmarks"):
        load_landmarks(tmp_path / "x.pkl", 4)
    bad = tmp_path / "bad" / "test" / "spk"
    bad.mkdir(parents=True)
    (bad / "00000.mp4").write_bytes(b"not an mp4")
    (bad / "00000.txt").write_text("Text:  HI\n")
    with pytest.raises(CorpusError, match="cannot decode"):
        prepare_lrs(tmp_path / "bad", tmp_path / "out")


# -- the data module ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_av_manifests(tiny_av_corpus, tmp_path_factory) -> tuple[Path, Path]:
    from speechkit.data.corpora.lrs import prepare_lrs
    from speechkit.text import train_tokenizer

    out = tmp_path_factory.mktemp("avsr_manifests")
    prepare_lrs(tiny_av_corpus, out, "lrs3", valid_utterances=2)
    words = "ZERO ONE TWO THREE FOUR FIVE SIX SEVEN EIGHT NINE"
    train_tokenizer([words] * 20, out / "bpe.model", vocab_size=30)
    return out, out / "bpe.model"


def _datamodule(manifests: Path, tokenizer: Path, **kwargs):
    from speechkit.data.avsr_datamodule import AvsrDataModule

    return AvsrDataModule(train_manifests=[str(manifests / "cuts_trainval.jsonl.gz")],
                          valid_manifests=[str(manifests / "cuts_valid.jsonl.gz")],
                          test_manifests=[str(manifests / "cuts_test.jsonl.gz")], tokenizer_path=str(tokenizer),
                          num_workers=0, max_duration=100.0, **kwargs)


def test_datamodule_batches_audio_video_and_clean_targets(tiny_av_manifests, tiny_av_corpus):
    manifests, tokenizer = tiny_av_manifests
    dm = _datamodule(manifests, tokenizer, noise_dirs=[str(tiny_av_corpus / "musan" / "noise")], babble=True,
                     noise_prob=1.0, noise_snr_db=(0.0, 0.0))
    batch = next(iter(dm.train_dataloader()))
    b, t = batch["video"].shape[:2]
    assert batch["video"].shape[2:] == (88, 88) and batch["video"].dtype == torch.uint8
    assert batch["audio"].shape == batch["clean_audio"].shape == (b, 640 * t)
    assert torch.equal(batch["audio_lens"], 640 * batch["video_lens"])
    for i in range(b):
        n = int(batch["audio_lens"][i])
        noise = batch["audio"][i, :n] - batch["clean_audio"][i, :n]
        snr = 10 * torch.log10(batch["clean_audio"][i, :n].square().mean() / noise.square().mean())
        assert abs(float(snr)) < 1.0  # 0 dB (clamping moves it a little)


@pytest.mark.parametrize("kind", ["noise", "babble"])
def test_eval_noise_is_the_same_every_time(tiny_av_manifests, tiny_av_corpus, kind):
    manifests, tokenizer = tiny_av_manifests
    dm = _datamodule(manifests, tokenizer, noise_dirs=[str(tiny_av_corpus / "musan" / "noise")], eval_noise=kind,
                     eval_snr_db=5.0)
    first, again = next(iter(dm.test_dataloader())), next(iter(dm.test_dataloader()))
    assert torch.equal(first["audio"], again["audio"])
    assert not torch.equal(first["audio"], first["clean_audio"])
    clean = _datamodule(manifests, tokenizer)
    assert torch.equal(next(iter(clean.test_dataloader()))["audio"], first["clean_audio"])


def test_datamodule_errors(tiny_av_manifests):
    manifests, tokenizer = tiny_av_manifests
    with pytest.raises(CorpusError, match="eval_noise"):
        _datamodule(manifests, tokenizer, eval_noise="music")
    with pytest.raises(CorpusError, match="needs noise_dirs"):
        _datamodule(manifests, tokenizer, eval_noise="noise")
    with pytest.raises(CorpusError, match="MUSAN-layout"):
        next(iter(_datamodule(manifests, tokenizer, noise_dirs=[str(manifests / "nowhere")],
                              noise_prob=1.0).train_dataloader()))
