"""Personalized KWS end to end: the synthetic recipe trains (loss falls, accuracy beats chance), the
checkpoint reloads, the TRMs train, the artifact exports, and a profile enrolled from 3 clips of a
held-out voice makes TO mode fire for that voice only while TB mode fires for all three voices.

One small PK-MTL (BC-ResNet-1) is trained once for the module, on a synthetic corpus of
training-family voices saying "yes" and six other words; the stream's voices come from the
held-out voice families. Slow (a few minutes of training on a CPU), hence ``slow``.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from speechkit.cli.lightning_cli import run_lightning_cli

RECIPE = Path(__file__).resolve().parents[2] / "speechkit" / "recipes" / "synthetic" / "personal" / "config.yaml"
SEED = 11  # the stream's voices: sample_speakers(3, SEED, pool="heldout")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from speechkit.data.corpora import prepare_speech_commands
    from speechkit.data.synth.speech_commands import synth_speech_commands
    from speechkit.export.personal_export import export_personal, validation_sv_threshold
    from speechkit.tasks import load_task
    from speechkit.tasks.personal import embed_clips, fit_trm

    root = tmp_path_factory.mktemp("personal_e2e")
    corpus, manifests = root / "corpus", root / "manifests"
    # 9 clips per speaker: the speaker branch needs several takes of each voice
    synth_speech_commands(corpus, words=["yes"], unknown_words=["no", "cat", "dog", "bird", "tree", "house"],
                          num_speakers=200, clips_per_word=3, seed=3, background_seconds=5.0, voice_pool="train",
                          validation_percent=10.0, testing_percent=0.0)
    prepare_speech_commands(corpus, manifests, keywords=["yes"], num_jobs=1)
    # speaker_weight 0.5 (the recipe: 0.1, the paper's): at this size the speaker branch learns too
    # slowly with 0.1 (SV EER 42 % on the validation voices after 8 epochs with 120 speakers in our run)
    argv = ["--config", str(RECIPE), "--trainer.default_root_dir", str(root / "run"), "--trainer.max_epochs", "12",
            "--model.init_args.loss.init_args.speaker_weight", "0.5",
            "--trainer.enable_progress_bar", "false", "--data.init_args.manifest_dir", str(manifests),
            "--data.init_args.test_manifest_dir", "null", "--data.init_args.batch_size", "32",
            "--data.init_args.num_workers", "0"]
    cli = run_lightning_cli(argv, run=False)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    history = cli.trainer.logged_metrics
    checkpoint = root / "last.ckpt"
    cli.trainer.save_checkpoint(checkpoint)
    task = load_task(checkpoint, expected=("personal-kws",))
    dm = cli.datamodule
    stats = fit_trm(task, embed_clips(task, dm._loader("train", shuffle=False)), dm.speakers,
                    [task.labels.index("yes")], epochs=20)
    threshold = validation_sv_threshold(task, manifests / "cuts_valid.jsonl.gz")
    result = export_personal(task, root / "pk.onnx", sv_threshold=threshold, batch_sizes=(1, 2))
    return {"cli": cli, "history": history, "checkpoint": checkpoint, "task": task, "trm": stats,
            "onnx": result, "root": root}


@pytest.mark.slow
@pytest.mark.trains
def test_personal_recipe_learns_reloads_and_exports(trained):
    cli = trained["cli"]
    losses = [float(v) for k, v in cli.trainer.callback_metrics.items() if k == "train/loss_epoch"]
    assert losses and all(math.isfinite(v) for v in losses)
    acc = float(cli.trainer.callback_metrics["val/acc"])
    chance = 1.0 / len(cli.datamodule.labels)
    print(f"val/acc {acc:.3f} (chance {chance:.3f}), val/sv_eer {float(cli.trainer.callback_metrics['val/sv_eer']):.1f} %")
    assert acc > chance + 0.3
    assert float(cli.trainer.callback_metrics["val/sv_eer"]) < 35.0  # 50 % is chance
    # the reloaded checkpoint computes what the trained task computes
    task, live = trained["task"], cli.model.eval()
    audio = torch.randn(2, 16000) * 0.1
    with torch.no_grad():
        torch.testing.assert_close(task(audio), live(audio), atol=1e-5, rtol=1e-5)
    assert trained["trm"]["loss_tb"] < math.log(32)  # well below a uniform guess over a batch
    assert trained["onnx"].max_abs_diff <= 1e-4


def _stream_and_profile(model_path: Path):
    from speechkit.data.synth import effects
    from speechkit.data.synth.speech_commands import render_clip
    from speechkit.data.synth.voices import sample_speakers
    from speechkit.runtime.personal import PersonalKwsModel, enroll

    model = PersonalKwsModel(model_path)
    voices = sample_speakers(3, seed=SEED, pool="heldout")
    rooms = [effects.sample_environment(np.random.default_rng([SEED, i]), "mixed") for i in range(3)]
    rng = np.random.default_rng(SEED)
    profile = enroll(model, [(f"enrol{k}", render_clip("yes", voices[0], rooms[0], rng)) for k in range(3)], "yes")
    parts = [0.002 * rng.standard_normal(8000)]
    starts = []
    for v in range(3):  # the owner, then two other voices, each saying the keyword once
        starts.append(sum(len(p) for p in parts) / 16000)
        parts += [render_clip("yes", voices[v], rooms[v], rng), 0.002 * rng.standard_normal(24000)]
    return model, profile, np.concatenate(parts).astype(np.float32), starts


@pytest.mark.slow
@pytest.mark.trains
def test_personal_stream_to_fires_for_the_owner_only_tb_for_all(trained):
    from speechkit.runtime.personal import PersonalKeywordDetector

    model, profile, stream, starts = _stream_and_profile(trained["onnx"].path)
    fired = {}
    for mode in ("tb", "to"):
        detector = PersonalKeywordDetector(model, profile, mode=mode, verbose=True)
        detections = detector.accept_waveform(stream, 16000) + detector.input_finished()
        speakers = [int(np.argmin([abs(d["time"] - s - 0.5) for s in starts])) for d in detections]
        fired[mode] = [(who, d.get("suppressed", False), d["speaker_score"], d["time"])
                       for who, d in zip(speakers, detections)]
    owner = {mode: sum(1 for who, sup, *_ in f if who == 0 and not sup) for mode, f in fired.items()}
    others = {mode: sum(1 for who, sup, *_ in f if who != 0 and not sup) for mode, f in fired.items()}
    print(f"speaker threshold {model.sv_threshold:.3f}; voices start at {starts} s; detections (voice, suppressed, "
          f"speaker score, time): {fired}")
    print(f"owner fires: TB {owner['tb']}, TO {owner['to']}; other voices fire: TB {others['tb']}, TO {others['to']}")
    assert owner == {"tb": 1, "to": 1}
    assert others["tb"] == 2 and others["to"] == 0
    assert sum(1 for _, sup, *_ in fired["to"] if sup) == 2  # reported as suppressed with verbose
