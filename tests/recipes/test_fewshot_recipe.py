"""Few-shot KWS end to end: the recipe trains, reloads, evaluates, exports (int8 gated), and
enrolled words are detected in a stream.

``test_fewshot_recipe_end_to_end``: tone "words" (``fakes.make_speech_commands``: every GSC v2
word a tone of its own pitch) prepared as splitGSC, the synthetic recipe (D-ProtoNets) trained a
few episodes: the test classes (pitches never seen in training) must be told apart far above
chance, the checkpoint reloads to the same embeddings, ``eval-fewshot`` on the checkpoint and on
the exported artifact agree, and the int8 artifact passes the episode-accuracy gate.

``test_enrolled_word_detected_in_stream`` (slow): the synthetic recipe as shipped (D-ProtoNets +
AuxSL, BC-ResNet-1, 200 episodes) on speech of the training voice families; a word that no
training class contains is enrolled from 5 recordings of one voice of a held-out family,
calibrated on that voice's keyword-free sentences, and streamed: recall and false alarms are
printed, and the open-set rule must rank the enrolled word above other words of the same voice.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from speechkit.cli.lightning_cli import run_lightning_cli

RECIPE = Path(__file__).resolve().parents[2] / "speechkit" / "recipes" / "synthetic" / "fewshot"


def _fit(manifests: Path, out: Path, overlays=(), ckpt_path: str | None = None, **overrides):
    argv = [a for c in ("config.yaml", *overlays) for a in ("--config", str(RECIPE / c))]
    values = {"data.init_args.manifest_dir": str(manifests), "data.init_args.aux_manifest_dir": "null",
              "model.init_args.aux_weight": 0.0, "trainer.default_root_dir": str(out),
              "trainer.enable_progress_bar": "false", **overrides}
    for key, value in values.items():
        argv += [f"--{key}", str(value)]
    cli = run_lightning_cli(argv, run=False)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule, ckpt_path=ckpt_path)
    return cli


@pytest.fixture(scope="module")
def tone_fewshot(tmp_path_factory) -> Path:
    from fakes import make_speech_commands

    from speechkit.data.corpora import prepare_speech_commands
    from speechkit.data.corpora.speech_commands import V2_WORDS

    root = tmp_path_factory.mktemp("tones_fewshot")
    corpus = make_speech_commands(root / "sc", words=V2_WORDS, seconds=0.4, clips_per_speaker=4, step_hz=5.0)
    prepare_speech_commands(corpus, root / "manifests", split="fewshot", num_jobs=1)
    return root / "manifests"


@pytest.mark.trains
@pytest.mark.slow
def test_fewshot_recipe_end_to_end(tone_fewshot, tmp_path, capsys):
    from speechkit.cli.main import main
    from speechkit.inference.fewshot_cmd import evaluate_fewshot
    from speechkit.runtime.fewshot import OpenSetRule
    from speechkit.tasks import load_task

    torch.manual_seed(0)
    untrained = _fit(tone_fewshot, tmp_path / "untrained", **{"trainer.max_epochs": 0}).model.eval()
    before = evaluate_fewshot(untrained.embed_clips, OpenSetRule(untrained.open_set_config()), tone_fewshot,
                              episodes=100, shots=(5,))["results"]["5-shot"]
    cli = _fit(tone_fewshot, tmp_path / "run", ("dprotonet.yaml",), **{
        "trainer.max_epochs": 3, "data.init_args.episodes_per_epoch": 25, "data.init_args.val_episodes": 10})
    task = cli.model.eval()
    after = evaluate_fewshot(task.embed_clips, OpenSetRule(task.open_set_config()), tone_fewshot,
                             episodes=100, shots=(1, 5))["results"]
    print(f"test classes, 5-shot accuracy: untrained {before['acc']:.1f} %, trained {after['5-shot']['acc']:.1f} %; "
          f"AUROC {after['5-shot']['auroc']:.1f} %")
    assert after["5-shot"]["acc"] > max(before["acc"] + 7.0, 60.0)  # chance 20 %; measured: 64 -> 75 %
    assert after["1-shot"]["acc"] > 40.0
    assert "val/acc_5shot" in cli.trainer.callback_metrics and "val/auroc_5shot" in cli.trainer.callback_metrics

    best = Path(cli.trainer.checkpoint_callback.best_model_path)
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    assert best.is_file() and last.is_file()
    reloaded = load_task(last, expected=("fewshot-kws",))
    clips = np.random.default_rng(0).uniform(-0.3, 0.3, (3, 16000)).astype(np.float32)
    np.testing.assert_allclose(reloaded.embed_clips(clips), task.cpu().embed_clips(clips), atol=1e-5)
    assert reloaded.aux_classifier is None and reloaded.head.dummy
    resumed = _fit(tone_fewshot, tmp_path / "run", ("dprotonet.yaml",), ckpt_path=str(last), **{
        "trainer.max_epochs": 4, "data.init_args.episodes_per_epoch": 25, "data.init_args.val_episodes": 10})
    assert resumed.trainer.global_step == 100 and resumed.trainer.current_epoch == 4  # continued, not restarted

    capsys.readouterr()
    assert main(["eval-fewshot", "--checkpoint", str(last), "--manifests", str(tone_fewshot), "--episodes", "100",
                 "--json"]) == 0
    from_ckpt = json.loads(capsys.readouterr().out)
    onnx = tmp_path / "emb.onnx"
    status = main(["export", str(last), str(onnx), "--int8", "--fewshot-gate-episodes", "50"])
    captured = capsys.readouterr()
    # the gate measured both models on the same 50 test episodes; the int8 file exists only if it passed
    # (on these tone words the int8 model has lost 21 points in one run: refused, exit status 2)
    assert "accuracy on 50 test episodes: fp32" in captured.out + captured.err
    assert onnx.is_file() and (status == 0) == (tmp_path / "emb_int8.onnx").is_file()
    assert main(["eval-fewshot", "--model", str(onnx), "--manifests", str(tone_fewshot), "--episodes", "100",
                 "--json"]) == 0
    from_onnx = json.loads(capsys.readouterr().out)
    for shots in ("1-shot", "5-shot"):
        assert abs(from_ckpt["results"][shots]["acc"] - from_onnx["results"][shots]["acc"]) < 1.0
    assert main(["eval-fewshot", "--model", str(onnx), "--manifests", str(tone_fewshot), "--episodes", "20"]) == 0
    table = capsys.readouterr().out
    assert "5-way, 20 episodes over 10 test classes" in table and "5-shot" in table and "±" in table


# -- item 8: enrol a new word from a held-out voice, detect it in a stream ----------------------------
#: the synthetic LibriWord stand-in of the recipe (recipes/synthetic/fewshot/README.md)
LIBRIWORD_WORDS = (
    "that,with,this,have,from,your,they,will,just,like,about,what,when,more,were,their,there,which,time,been,"
    "would,people,some,also,them,other,than,good,only,after,first,into,know,make,over,think,then,could,back,"
    "these,want,because,well,said,most,much,very,where,even,should,here,need,really,work,year,being,going,"
    "before,made,still"
).split(",")
NEW_WORD = "window"  # in no training class (splitGSC train words)
OTHER_WORDS = ("lemon", "river", "pocket", "garden")


def _recordings(voice, word: str, count: int, seed: int) -> list[np.ndarray]:
    """``count`` takes of ``word`` by ``voice``, each at a random place in 2.5 s of faint noise."""
    from speechkit.data.synth.engines import synthesize

    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        speech = synthesize(word, voice.with_jitter(rng), 16000, int(rng.integers(1 << 30)))
        audio = rng.normal(size=40000).astype(np.float32) * 3e-4
        start = int(rng.integers(0, 40000 - len(speech)))
        audio[start : start + len(speech)] += 0.5 * speech / (np.abs(speech).max() + 1e-9)
        out.append(audio)
    return out


@pytest.mark.trains
@pytest.mark.slow
def test_enrolled_word_detected_in_stream(tmp_path, capsys):
    from speechkit.audio import save_audio
    from speechkit.cli.main import main
    from speechkit.data.corpora import prepare_speech_commands
    from speechkit.data.corpora.speech_commands import V2_WORDS
    from speechkit.data.synth.speech_commands import synth_speech_commands
    from speechkit.data.synth.stream import synth_keyword_stream, synth_negative_stream
    from speechkit.data.synth.voices import sample_speakers
    from speechkit.runtime.eval_stream import Event, stream_metrics
    from speechkit.runtime.fewshot import enrolled_detector


    # the recipe's data at its scale, training voice families only (the enrolling voice is of a held-out family)
    synth_speech_commands(tmp_path / "sc", words=V2_WORDS, unknown_words=[], num_speakers=40, clips_per_word=2,
                          validation_percent=25, testing_percent=25, background_seconds=0, voice_pool="train")
    prepare_speech_commands(tmp_path / "sc", tmp_path / "m", split="fewshot", heldout_speakers=True, num_jobs=1)
    synth_speech_commands(tmp_path / "lw", words=LIBRIWORD_WORDS, unknown_words=[], num_speakers=24, clips_per_word=1,
                          background_seconds=0, voice_pool="train")
    prepare_speech_commands(tmp_path / "lw", tmp_path / "lw_m", classes="all", silence_ratio=0, num_jobs=1)
    torch.manual_seed(0)
    cli = _fit(tmp_path / "m", tmp_path / "run", **{  # the recipe as shipped: D-ProtoNets + AuxSL, 4 x 50 episodes
        "data.init_args.aux_manifest_dir": str(tmp_path / "lw_m"), "model.init_args.aux_weight": 0.5,
        "data.init_args.val_episodes": 10})
    onnx = tmp_path / "emb.onnx"
    assert main(["export", cli.trainer.checkpoint_callback.best_model_path, str(onnx)]) == 0

    voice = sample_speakers(1, seed=11, pool="heldout")[0]  # a voice family never used in training
    files = []
    for i, audio in enumerate(_recordings(voice, NEW_WORD, 5, seed=1)):
        files.append(tmp_path / f"enrol_{i}.wav")
        save_audio(files[-1], audio, 16000)
    quiet = (30.0, 40.0)  # background SNR (dB): a quiet room; enrolment takes are close-talk recordings
    negatives = synth_negative_stream([NEW_WORD, *OTHER_WORDS], [voice], num_sentences=30, seed=2, snr_db=quiet)
    save_audio(tmp_path / "negatives.wav", negatives, 16000)
    proto = tmp_path / "window.json"
    assert main(["enroll-keyword", "--model", str(onnx), "--name", NEW_WORD, "--audio", *map(str, files),
                 "--out", str(proto), "--negatives", str(tmp_path / "negatives.wav"), "--fa-per-hour", "0"]) == 0

    stream = synth_keyword_stream([NEW_WORD], [voice], num_keywords=12, sentences_between=(1, 2), seed=3, snr_db=quiet)
    others = synth_keyword_stream(list(OTHER_WORDS), [voice], num_keywords=12, sentences_between=(0, 1), seed=4,
                                  snr_db=quiet)
    detector = enrolled_detector(onnx, [proto])
    found, peaks = {}, {}
    for name, s in (("word", stream), ("others", others)):
        detector.reset()
        times, scores = detector.scorer.accept(s.audio, 16000)
        dets = detector.detect_trace(times, scores)
        found[name] = stream_metrics(dets, [Event(**e) for e in s.events], s.duration_s / 3600) if name == "word" else dets
        # the enrolled word's best smoothed score over the evaluations whose 1 s window holds the event
        lag = (detector.settings.smoothing - 1) * detector.scorer.hop_seconds
        peaks[name] = np.array([scores[(times >= e["end"]) & (times <= e["start"] + 1.0 + lag), 0].max(initial=0.0)
                                for e in s.events])
    m = found["word"]
    ranked = float((peaks["word"][:, None] > peaks["others"][None, :]).mean())
    print(f"'{NEW_WORD}' (held-out voice, calibrated threshold {json.loads(proto.read_text())['threshold']:.3f}): "
          f"recall {m['hits']}/{m['events']}, {m['false_alarms']} false alarms in {stream.duration_s:.0f} s "
          f"({m['false_alarms_per_hour']:.0f} per hour); other words spoken: {len(found['others'])} detections for "
          f"{len(others.events)} words; peak score at '{NEW_WORD}' {np.median(peaks['word']):.2f} (median) vs other "
          f"words {np.median(peaks['others']):.2f}; P(word peak > other-word peak) = {ranked:.2f}")
    # The open-set rule ranks the enrolled word above other words of the same voice (0.5 = no better than
    # chance). The thresholded detector itself is weak at this training scale (figures in
    # recipes/synthetic/fewshot/README.md); these bounds catch a broken pipeline, not a quality target.
    assert ranked >= 0.7
    assert m["false_alarms"] <= 3 and len(found["others"]) <= 4
