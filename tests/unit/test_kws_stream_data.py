"""KWSStreamDataModule: stream-window training items, their labels, rates, determinism, errors.

Most tests run on ``separable_kws_manifests``: the "words" are tones (yes 200 Hz, no 800 Hz,
unknown words 1400/2000/2600 Hz, 0.5 s each), so where a keyword lies in an item can be read
off the audio.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import soundfile as sf
import torch

from speechkit.data.kws_stream import KWSStreamDataModule, collate_stream, speech_span
from speechkit.errors import CorpusError

RATE = 16000
CTX = 8000  # 500 ms context
T = CTX + RATE


def module(manifests, **kwargs) -> KWSStreamDataModule:
    kwargs.setdefault("augment", False)
    dm = KWSStreamDataModule(str(manifests), batch_size=8, **kwargs)
    dm.setup("fit")
    return dm


def items(dm, n: int, torch_seed: int = 0) -> list[dict]:
    torch.manual_seed(torch_seed)
    ds = dm.datasets["train"]
    ds._rng = None
    return [ds[i % len(ds)] for i in range(n)]


def band_energy(audio: np.ndarray, freq: float, width: int = 400) -> np.ndarray:
    """Energy at ``freq`` per block of ``width`` samples (a one-bin DFT per block)."""
    blocks = audio[: audio.size // width * width].reshape(-1, width)
    t = np.arange(width) / RATE
    basis = np.exp(-2j * np.pi * freq * t)
    return np.abs(blocks @ basis) ** 2


def test_keyword_items_put_the_whole_keyword_in_the_window_where_kw_start_kw_end_say(separable_kws_manifests):
    dm = module(separable_kws_manifests, p_keyword=1, p_partial=0, p_running=0, p_unknown=0, p_nonspeech=0,
                p_keyword_tail=0, hard_negative_prob=0)
    freq = {"yes": 200.0, "no": 800.0}
    for item in items(dm, 30):
        label = dm.labels[item["label"]]
        assert item["kind"] == "keyword" and label in freq and item["kw_label"] == item["label"]
        s, e = item["kw_start"], item["kw_end"]
        assert item["audio"].shape == (T,) and CTX <= s < e <= T
        assert T - e <= RATE // 2  # the end falls in the last half of the window
        energy = band_energy(item["audio"], freq[label])
        inside = energy[(s + 400) // 400 : e // 400].mean()
        outside = np.concatenate([energy[: max(0, s - 400) // 400], energy[(e + 400) // 400 :]])
        assert inside > 100 * (outside.max() if outside.size else 0.0) + 1e-6


def test_partial_and_tail_items_are_unknown_and_follow_the_geometry_rule(separable_kws_manifests):
    dm = module(separable_kws_manifests, p_keyword=1, p_partial=1, p_running=0, p_unknown=0, p_nonspeech=0,
                p_keyword_tail=0.5, hard_negative_prob=0)
    unknown = dm.labels.index("_unknown_")
    kinds = Counter()
    for item in items(dm, 120):
        kinds[item["kind"]] += 1
        s, e = item["kw_start"], item["kw_end"]
        if item["kind"] == "partial":
            assert item["label"] == unknown and (s, e, item["kw_label"]) == (-1, -1, -1)
            # the keyword's tone runs up to the end of the item: it has not ended yet
            label_freq = [200.0, 800.0]
            last = max(band_energy(item["audio"][-1200:], f, 400)[-1] for f in label_freq)
            assert last > 1.0
        elif item["kind"] == "keyword_tail":
            assert item["label"] == unknown and dm.labels[item["kw_label"]] in ("yes", "no")
            assert 0 <= s < CTX < e and (e - CTX) * 2 < (e - s)  # less than half left in the window
        else:
            assert item["kind"] == "keyword" and item["label"] == item["kw_label"] and s >= CTX and e <= T
    assert kinds["partial"] > 30 and kinds["keyword_tail"] > 10 and kinds["keyword"] > 10


def test_kinds_appear_at_their_rates(separable_kws_manifests):
    weights = {"p_keyword": 0.4, "p_partial": 0.1, "p_running": 0.2, "p_unknown": 0.1, "p_nonspeech": 0.2}
    dm = module(separable_kws_manifests, p_keyword_tail=0.0, hard_negative_prob=0, **weights)
    got = Counter(item["kind"] for item in items(dm, 500))
    for name, p in weights.items():
        share = got[name[2:]] / 500
        assert abs(share - p) < 0.07, (name, share)
    silence, unknown = dm.labels.index("_silence_"), dm.labels.index("_unknown_")
    for item in items(dm, 60):
        expected = {"nonspeech": silence, "running": unknown, "unknown": unknown, "partial": unknown}
        if item["kind"] in expected:
            assert item["label"] == expected[item["kind"]]


def test_items_are_deterministic_per_seed(separable_kws_manifests):
    a = items(module(separable_kws_manifests, seed=3, augment=True), 12)
    b = items(module(separable_kws_manifests, seed=3, augment=True), 12)
    c = items(module(separable_kws_manifests, seed=4, augment=True), 12)
    assert all(np.array_equal(x["audio"], y["audio"]) and x["label"] == y["label"] for x, y in zip(a, b))
    assert sum(np.array_equal(x["audio"], y["audio"]) for x, y in zip(a, c)) < 3


def test_running_speech_comes_from_negative_speech_files(separable_kws_manifests, tmp_path):
    folder = tmp_path / "speech"
    folder.mkdir()
    t = np.arange(5 * 22050) / 22050
    sf.write(folder / "talk.flac", (0.3 * np.sin(2 * np.pi * 3300 * t)).astype(np.float32), 22050)  # any rate
    dm = module(separable_kws_manifests, negative_speech=[str(folder)], p_keyword=0, p_partial=0, p_running=1,
                p_unknown=0, p_nonspeech=0, hard_negative_prob=0)
    for item in items(dm, 5):
        assert item["kind"] == "running" and item["label"] == dm.labels.index("_unknown_")
        assert band_energy(item["audio"], 3300.0).mean() > 100 * band_energy(item["audio"], 200.0).mean()


def test_hard_negative_dirs_are_rescanned_at_setup_fit(separable_kws_manifests, tmp_path):
    mined = tmp_path / "round-1"
    dm = module(separable_kws_manifests, hard_negative_dirs=[str(mined)], hard_negative_prob=1.0)
    assert dm.datasets["train"].hard_negatives == []  # missing folder: nothing yet
    assert {it["kind"] for it in items(dm, 10)} != {"hard_negative"}
    mined.mkdir()
    window = np.linspace(-0.5, 0.5, T).astype(np.float32)
    sf.write(mined / "hn_00000_yes.wav", window, RATE, subtype="FLOAT")
    dm.setup("fit")
    for item in items(dm, 5):
        assert item["kind"] == "hard_negative" and item["label"] == dm.labels.index("_unknown_")
        assert np.allclose(item["audio"], window, atol=0.02)  # the file's last T samples, plus a faint floor


def test_collate_and_loader_stack_the_new_keys(separable_kws_manifests):
    dm = module(separable_kws_manifests)
    batch = next(iter(dm.train_dataloader()))
    assert batch["audio"].shape == (8, T) and batch["audio_lens"].tolist() == [T] * 8
    for key in ("kw_start", "kw_end", "kw_labels"):
        assert batch[key].dtype == torch.int64 and batch[key].shape == (8,)
    assert len(batch["kinds"]) == 8
    val = next(iter(dm.val_dataloader()))
    assert val["audio"].shape[1] == RATE and "kw_start" not in val  # validation: the parent's clips
    plain = collate_stream([{"audio": np.zeros(4, np.float32), "audio_len": 4, "label": 0, "id": "x"}])
    assert "kw_start" not in plain


def test_bad_folders_and_weights_give_one_line_errors(separable_kws_manifests, tmp_path):
    with pytest.raises(CorpusError, match="nowhere: no such negative_speech folder"):
        KWSStreamDataModule(str(separable_kws_manifests), negative_speech=[str(tmp_path / "nowhere")])
    (tmp_path / "empty").mkdir()
    with pytest.raises(CorpusError, match="empty: negative_speech folder has no .wav or .flac files"):
        KWSStreamDataModule(str(separable_kws_manifests), negative_speech=[str(tmp_path / "empty")])
    with pytest.raises(CorpusError, match="positive sum"):
        KWSStreamDataModule(str(separable_kws_manifests), p_keyword=0, p_partial=0, p_running=0, p_unknown=0,
                            p_nonspeech=0)
    with pytest.raises(CorpusError, match="context_ms"):
        KWSStreamDataModule(str(separable_kws_manifests), context_ms=-1)


def test_synthetic_speech_items_and_config_parsing(tiny_kws_manifests):
    from jsonargparse import ArgumentParser

    parser = ArgumentParser()
    parser.add_class_arguments(KWSStreamDataModule, "data")
    cfg = parser.parse_args(["--data.manifest_dir", str(tiny_kws_manifests), "--data.negative_speech", "[]",
                             "--data.p_running", "0.3", "--data.snr_db", "[10, 40]"])
    dm = KWSStreamDataModule(**cfg.data.as_dict())
    dm.setup("fit")
    assert len(dm.datasets["train"]) == len(dm.datasets["train"].cuts)
    kinds = Counter()
    for item in items(dm, 60):
        kinds[item["kind"]] += 1
        assert item["audio"].shape == (T,) and np.isfinite(item["audio"]).all()
        if item["kind"] == "keyword":
            s, e = item["kw_start"], item["kw_end"]
            assert CTX <= s < e <= T and dm.labels[item["label"]] in ("yes", "no")
            assert np.sqrt(np.mean(item["audio"][s:e] ** 2)) > 3e-3  # the word is audible there
    assert kinds["keyword"] > 15 and kinds["running"] > 3


def test_voice_room_channel_augmentations_act_on_the_whole_item(tiny_kws_manifests):
    from speechkit.data.augment import AUGMENTATIONS

    names = [a for a in ("eq", "babble", "pitch") if a in AUGMENTATIONS]
    augmented = module(tiny_kws_manifests, augment=True, seed=1, augmentations=names, augment_p=1.0)
    item = items(augmented, 1)[0]
    assert item["audio"].shape == (T,)
    x = item["audio"]
    y = augmented.datasets["train"]._voice_room_channel(x, np.random.default_rng(0))
    assert y.shape == x.shape and not np.allclose(x, y, atol=1e-3)
    plain = module(tiny_kws_manifests, augment=True, seed=1).datasets["train"]
    assert plain._voice_room_channel(x, np.random.default_rng(0)) is x  # no augmentations: untouched


def test_speech_span_finds_a_word_under_a_noise_floor():
    rng = np.random.default_rng(0)
    x = 0.003 * rng.standard_normal(RATE).astype(np.float32)
    x[5000:11000] += 0.3 * np.sin(2 * np.pi * 300 * np.arange(6000) / RATE)
    s, e = speech_span(x)
    assert 4500 <= s <= 5000 and 11000 <= e <= 11500
    assert speech_span(np.zeros(RATE, np.float32)) == (0, 0)
    assert speech_span(0.1 * rng.standard_normal(RATE).astype(np.float32)) == (0, RATE)
