"""ASR task, data module, inference, WER and checkpoint averaging (tiny generated corpora)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from fakes import gliding_tone, write_transcribed_cuts
from lhotse import CutSet

from speechkit.cli.lightning_cli import run_lightning_cli
from speechkit.cli.main import main
from speechkit.data.asr_datamodule import AsrDataModule, encoder_frames
from speechkit.errors import AudioError, ModelFileError, SpeechkitError
from speechkit.inference.asr import (
    DecodeOptions,
    evaluate,
    length_batches,
    load_for_transcription,
    load_recognizer,
    read_eval_set,
    transcribe,
)
from speechkit.metrics.wer import WordErrorRate, corpus_word_errors, word_errors
from speechkit.tasks import load_task
from speechkit.tasks.asr import use_fused_step
from speechkit.tasks.averaging import average_checkpoints, latest_checkpoints
from speechkit.text import train_tokenizer

REPO = Path(__file__).resolve().parents[2]
SR = 16000
TEXTS = ["turn on the light", "turn off the radio", "set a timer for 5 minutes", "what's the weather",
         "play some music", "call mom", "stop the timer", "open the door"]
TINY_ENCODER = [
    "--model.init_args.encoder.init_args.dim", "32", "--model.init_args.encoder.init_args.num_layers", "1",
    "--model.init_args.encoder.init_args.num_heads", "2", "--model.init_args.encoder.init_args.ffn_dim", "64",
    "--model.init_args.encoder.init_args.subsampling_channels", "4",
    "--model.init_args.encoder.init_args.conv_kernel_size", "3",
]


_tone_speech = gliding_tone


def _write_cuts(folder: Path, name: str, texts: list[str], seconds: list[float]) -> Path:
    return write_transcribed_cuts(folder, name, texts, seconds)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("asr")
    texts = [t.upper() for t in TEXTS]
    train = _write_cuts(root, "train", texts * 2, [1.0 + 0.1 * (i % 8) for i in range(16)])
    valid = _write_cuts(root, "valid", texts[:4], [1.2, 1.4, 1.6, 1.1])
    tokenizer = root / "bpe.model"
    train_tokenizer(TEXTS * 5, tokenizer, vocab_size=40)
    return {"root": root, "train": train, "valid": valid, "tokenizer": tokenizer}


def _datamodule(corpus: dict, **kw) -> AsrDataModule:
    args = {"train_manifests": [str(corpus["train"])], "valid_manifests": [str(corpus["valid"])],
            "test_manifests": [str(corpus["valid"])], "tokenizer_path": str(corpus["tokenizer"]),
            "max_duration": 4.0, "num_buckets": 2, "num_workers": 0, "min_seconds": 0.5}
    return AsrDataModule(**{**args, **kw})


@pytest.fixture(scope="module")
def checkpoint(corpus, tmp_path_factory) -> Path:
    """A tiny model fitted for 2 epochs through ``speechkit fit``'s CLI class (links, CMVN)."""
    root = tmp_path_factory.mktemp("fit")
    cli = run_lightning_cli([
        "--config", str(REPO / "recipes/synthetic/asr/commands.yaml"),
        "--data.init_args.train_manifests", json.dumps([str(corpus["train"])]),
        "--data.init_args.valid_manifests", json.dumps([str(corpus["valid"])]),
        "--data.init_args.tokenizer_path", str(corpus["tokenizer"]),
        "--data.init_args.max_duration", "6", "--data.init_args.num_workers", "0",
        "--model.init_args.cmvn_utterances", "8", "--model.init_args.decode_chunk_size", "2",
        "--trainer.default_root_dir", str(root), "--trainer.max_epochs", "2",
        "--trainer.enable_progress_bar", "false", *TINY_ENCODER,
    ], run=False)
    assert cli.model.ctc_head.proj.out_features == cli.datamodule.vocab_size == 40
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    metrics = cli.trainer.callback_metrics
    assert {"val/wer", "val/wer_chunk2", "val/loss"} <= set(metrics)
    # Its value is checked against `eval-asr` in test_validation_wer_equals_evaluate_on_the_same_model_and_data.
    return root / "checkpoints" / "last.ckpt"


# ---------------------------------------------------------------------------- WER


def test_word_errors_counts_and_corpus_rate():
    assert word_errors("TURN ON THE LIGHT", "TURN ON THE LIGHT").errors == 0
    counts = word_errors("TURN ON THE LIGHT", "TURN OF THE LIGHT PLEASE")
    assert (counts.substitutions, counts.deletions, counts.insertions, counts.ref_words) == (1, 0, 1, 4)
    assert word_errors("A B", "").deletions == 2 and word_errors("", "A").insertions == 1
    total = corpus_word_errors(["A B C D", "E F"], ["A B C D", "X"])
    assert total.wer == pytest.approx(2 / 6)  # corpus rate, not the mean of 0 and 1


def test_word_error_rate_metric_accumulates_batches():
    metric = WordErrorRate()
    metric.update(["A B C D"], ["A B C D"])
    metric.update(["E F"], ["X"])
    assert float(metric.compute()) == pytest.approx(2 / 6)
    assert metric.counts().deletions == 1 and metric.counts().substitutions == 1


# ---------------------------------------------------------------------------- data


def test_datamodule_batches_every_cut_once_within_budget(corpus):
    dm = _datamodule(corpus)
    assert dm.vocab_size == 40 and dm.sample_rate == SR
    loader = dm.train_dataloader()
    batches = list(loader)
    assert len(batches) == len(loader)  # the sized sampler gives Lightning the true epoch length
    ids = [i for b in batches for i in b["ids"]]
    assert sorted(ids) == sorted(c.id for c in CutSet.from_file(corpus["train"]))
    for batch in batches:
        assert batch["audio"].shape[0] == len(batch["ids"]) == batch["tokens"].shape[0]
        assert batch["audio_lens"].dtype == batch["token_lens"].dtype == torch.int64
        assert int(batch["audio_lens"].sum()) <= 4.0 * SR
        for i, text in enumerate(batch["texts"]):
            assert text == text.upper() and dm.tokenizer.decode(batch["tokens"][i, : batch["token_lens"][i]].tolist()) == text
            assert torch.all(batch["audio"][i, batch["audio_lens"][i]:] == 0)
    assert any(t == "SET A TIMER FOR FIVE MINUTES" for b in batches for t in b["texts"])  # normalised


def test_datamodule_drops_audio_too_short_for_its_transcript(corpus, tmp_path):
    long_text = "set a timer for twenty five minutes and turn off the radio in the kitchen please"
    path = _write_cuts(tmp_path, "short", [long_text, "call mom"], [0.6, 1.0])
    dm = _datamodule(corpus, train_manifests=[str(path)])
    assert encoder_frames(0.6) < len(dm.tokenizer.encode(long_text))
    ids = [i for b in dm.train_dataloader() for i in b["ids"]]
    assert ids == ["short-1"]


def test_datamodule_speed_perturbation_through_lhotse(corpus):
    dm = _datamodule(corpus, speed_perturb=True, seed=3)
    durations = {c.id: c.duration for c in CutSet.from_file(corpus["train"])}
    ratios = set()
    for batch in dm.train_dataloader():
        for cut_id, n in zip(batch["ids"], batch["audio_lens"].tolist()):
            base = cut_id.split("_sp")[0]
            ratios.add(round(durations[base] * SR / n, 1))
    assert ratios <= {0.9, 1.0, 1.1} and len(ratios) >= 2


def test_unmappable_transcript_is_a_one_line_error(corpus, tmp_path):
    path = _write_cuts(tmp_path, "bad", ["turn on the light \u2603"], [1.0])
    dm = _datamodule(corpus, train_manifests=[str(path)])
    with pytest.raises(SpeechkitError, match="bad-0"):
        list(dm.train_dataloader())


def test_missing_manifest_names_the_file(corpus, tmp_path):
    dm = _datamodule(corpus, train_manifests=[str(tmp_path / "cuts_nope.jsonl.gz")])
    with pytest.raises(SpeechkitError, match="cuts_nope.jsonl.gz"):
        dm.train_dataloader()


# ---------------------------------------------------------------------------- task


@pytest.mark.trains
def test_task_learns_cmvn_and_checkpoint_transcribes_alone(checkpoint, corpus, tmp_path):
    task = load_task(checkpoint, expected=("asr-ctc",))
    assert task.encoder.feat_mean.abs().sum() > 0  # CMVN set from training audio at fit start
    assert task.tokenizer.vocab_size == 40
    # The tokenizer travels inside the checkpoint: decoding needs no tokenizer file.
    moved = tmp_path / "bpe_moved.model"
    Path(corpus["tokenizer"]).rename(moved)
    try:
        recognizer = load_recognizer(checkpoint)
        audio = _tone_speech(1.3, 7)
        (full,), _ = transcribe(recognizer, [audio])
        assert isinstance(full, str)
        log_probs = recognizer.log_probs([audio, audio[:8000]], DecodeOptions(chunk_ms=80))
        with torch.no_grad():
            single, lens = task.log_probs(torch.from_numpy(audio[:8000])[None], torch.tensor([8000]), 2)
        assert log_probs[1].shape == (int(lens[0]), 40)
        np.testing.assert_allclose(log_probs[1], single[0].numpy(), atol=1e-4)  # padded batch == item
    finally:
        moved.rename(corpus["tokenizer"])


@pytest.mark.trains
def test_task_feature_stats_match_numpy(checkpoint):
    task = load_task(checkpoint)
    audios = [_tone_speech(1.0, 1), _tone_speech(0.5, 2)]
    mean, std = task.feature_stats(audios)
    feats = [task.frontend(torch.from_numpy(a)[None])[0][0].double().numpy() for a in audios]
    frames = np.concatenate(feats)
    np.testing.assert_allclose(mean.numpy(), frames.mean(0), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(std.numpy(), frames.std(0), rtol=1e-3, atol=1e-4)


def test_validation_text_rule_is_the_eval_rule():
    """A pause of more than 0.8 s between pieces ends a word in validation as in eval-asr."""
    from speechkit.decoding import ctc_text
    from speechkit.tasks.asr import AsrCtcTask

    tokens = ["<blk>", "<unk>", "\u2581TURN", "\u2581ON", "LIGHTS"]
    frames = [2, 0, 3, 0] + [0] * 25 + [4, 0]  # "LIGHTS" 26 frames after "ON", without a word mark
    log_probs = torch.full((1, len(frames), len(tokens)), -20.0)
    log_probs[0, torch.arange(len(frames)), torch.tensor(frames)] = 0.0
    fake = type("FakeTask", (), {"tokenizer": type("Tok", (), {"tokens": lambda self: tokens})()})()
    texts = AsrCtcTask.greedy_texts(fake, log_probs, torch.tensor([len(frames)]))
    assert texts == [ctc_text(log_probs[0].numpy(), tokens)] == ["TURN ON LIGHTS"]
    assert AsrCtcTask.greedy_texts(fake, log_probs, torch.tensor([4])) == ["TURN ON"]  # lengths respected


@pytest.mark.trains
def test_validation_wer_equals_evaluate_on_the_same_model_and_data(checkpoint, corpus):
    """``val/wer`` (what picks the best checkpoint) is the WER ``eval-asr`` reports."""
    from speechkit.inference.asr import CheckpointRecognizer

    task = load_task(checkpoint, expected=("asr-ctc",)).eval()
    metric = task.wer_metrics["val"]
    metric.reset()
    texts = {}
    with torch.no_grad():
        for batch in _datamodule(corpus).val_dataloader():
            task.step(batch, "val")
            log_probs, lens = task.log_probs(batch["audio"], batch["audio_lens"])
            texts.update(zip(batch["ids"], task.greedy_texts(log_probs, lens)))
    utterances = read_eval_set(corpus["valid"])
    result = evaluate(CheckpointRecognizer(task), utterances)
    hyps, _ = transcribe(CheckpointRecognizer(task), [u.load(SR) for u in utterances])
    assert [texts[u.id] for u in utterances] == hyps  # the same text for every utterance
    assert metric.counts().ref_words == result["ref_words"] == sum(len(u.text.split()) for u in utterances)
    assert float(metric.compute()) == pytest.approx(result["wer"])


def test_fused_optimizer_step_matches_default():
    torch.manual_seed(0)
    a, b = torch.nn.Linear(8, 4), torch.nn.Linear(8, 4)
    b.load_state_dict(a.state_dict())
    opt_a, opt_b = torch.optim.AdamW(a.parameters(), 1e-2), torch.optim.AdamW(b.parameters(), 1e-2)
    use_fused_step(opt_b)
    assert all(g["fused"] for g in opt_b.param_groups)
    for _ in range(3):
        x = torch.randn(5, 8)
        for model, opt in ((a, opt_a), (b, opt_b)):
            opt.zero_grad()
            model(x).square().sum().backward()
            opt.step()
    torch.testing.assert_close(a.weight, b.weight)


# ---------------------------------------------------------------------------- inference and CLI


def test_decode_options_and_batches():
    assert DecodeOptions(chunk_ms=320).chunk_frames == 8 and DecodeOptions().chunk_frames == -1
    with pytest.raises(SpeechkitError, match="multiple of 40"):
        DecodeOptions(chunk_ms=300)
    with pytest.raises(SpeechkitError, match="beam"):
        DecodeOptions(beam_size=0)
    batches = length_batches([5, 1, 3, 9, 2], max_batch_samples=9)
    assert sorted(i for b in batches for i in b) == [0, 1, 2, 3, 4]
    assert all(max([5, 1, 3, 9, 2][i] for i in b) * len(b) <= 9 or len(b) == 1 for b in batches)


def test_bad_audio_is_refused_with_one_line(tmp_path):
    silent, empty, long = tmp_path / "silent.wav", tmp_path / "empty.wav", tmp_path / "long.flac"
    sf.write(silent, np.zeros(SR, np.float32), SR)
    empty.write_bytes(b"")
    sf.write(long, np.zeros(181 * 8000, np.int16), 8000)  # 181 s
    for path, message in ((silent, "silent"), (empty, "empty"), (long, "limit")):
        with pytest.raises(AudioError, match=message) as info:
            load_for_transcription(path, SR)
        assert str(path) in str(info.value) and "\n" not in str(info.value)


@pytest.mark.trains
def test_transcribe_and_eval_cli(checkpoint, tmp_path, capsys):
    subset = tmp_path / "LibriSpeech" / "test-clean" / "19" / "198"
    subset.mkdir(parents=True)
    lines = []
    for i, text in enumerate(["TURN ON THE LIGHT", "CALL MOM"]):
        sf.write(subset / f"19-198-{i:04d}.flac", _tone_speech(1.2, i), SR, subtype="PCM_16")
        lines.append(f"19-198-{i:04d} {text}")
    (subset / "19-198.trans.txt").write_text("\n".join(lines) + "\n")
    flacs = sorted(str(p) for p in subset.glob("*.flac"))
    assert main(["transcribe", str(checkpoint), *flacs, "--chunk-ms", "320"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 2  # one line per file, even if empty
    out_json = tmp_path / "eval.json"
    assert main(["eval-asr", "--model", str(checkpoint), "--data", str(subset.parents[1]), "--beam", "3",
                 "--worst", "1", "--out", str(out_json)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result == json.loads(out_json.read_text())
    assert result["num_utterances"] == 2 and result["ref_words"] == 6
    assert result["wer"] == pytest.approx((result["substitutions"] + result["deletions"] + result["insertions"]) / 6)
    assert result["rtf"] > 0 and len(result["worst"]) <= 1 and result["decoding"]["beam_size"] == 3
    # A manifest works too, and gives the same references.
    items = read_eval_set(_write_cuts(tmp_path, "m", ["turn on the light"], [1.0]))
    assert items[0].text == "TURN ON THE LIGHT"
    assert evaluate(load_recognizer(checkpoint), items)["num_utterances"] == 1


@pytest.mark.trains
def test_speechkit_export_dispatches_asr_checkpoints_through_the_registry(checkpoint, tmp_path, capsys):
    """No CLI file names ASR: the exporter registered by speechkit.export.asr_export serves the task."""
    from speechkit.runtime.asr import AsrModel

    assert main(["export", str(checkpoint), str(tmp_path / "s.onnx"), "--chunk-ms", "80", "--left-chunks", "2"]) == 0
    assert main(["export", str(checkpoint), str(tmp_path / "f.onnx"), "--full-context"]) == 0
    out = capsys.readouterr().out
    assert "asr-ctc-streaming: streaming, 80 ms chunks (11 feature frames every 8), 2 left chunks" in out
    assert "asr-ctc: full context" in out
    streaming, full = AsrModel(tmp_path / "s.onnx"), AsrModel(tmp_path / "f.onnx")
    assert streaming.streaming and streaming.chunk_ms == 80 and not full.streaming
    assert main(["export", str(checkpoint), str(tmp_path / "x.onnx"), "--chunk-ms", "100"]) == 2
    assert "multiple of 40 ms" in capsys.readouterr().err


@pytest.mark.trains
def test_kws_checkpoint_and_bad_files_give_one_line_errors(checkpoint, tmp_path, capsys):
    kws = tmp_path / "kws.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {
        "_class_path": "speechkit.tasks.classification.ClassificationTask", "task_name": "kws"}}, kws)
    wav = tmp_path / "a.wav"
    sf.write(wav, _tone_speech(1.0, 0), SR)
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros(SR, np.float32), SR)
    onnx = tmp_path / "model.onnx"
    onnx.write_bytes(b"not yet")
    for argv, message in (
        (["transcribe", str(kws), str(wav)], "is a kws checkpoint, expected asr-ctc"),
        (["transcribe", str(checkpoint), str(silent)], "silent"),
        (["transcribe", str(onnx), str(wav)], "ONNX"),
        (["transcribe", str(tmp_path / "none.ckpt"), str(wav)], "no such model file"),
        (["eval-asr", "--model", str(checkpoint), "--data", str(tmp_path / "nothing")], "no such folder"),
        (["transcribe", str(checkpoint), str(wav), "--chunk-ms", "100"], "multiple of 40"),
    ):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1, err


def test_tokenizer_train_cli(corpus, tmp_path, capsys):
    out = tmp_path / "units.model"
    assert main(["tokenizer", "train", str(corpus["train"]), "--vocab-size", "35", "--out", str(out)]) == 0
    assert "35 units" in capsys.readouterr().out and out.is_file()


# ---------------------------------------------------------------------------- averaging


def _fake_ckpt(path: Path, epoch: int, step: int, value: float) -> Path:
    torch.save({"epoch": epoch, "global_step": step, "optimizer_states": [{}],
                "state_dict": {"w": torch.full((2,), value), "n": torch.tensor(step)},
                "hyper_parameters": {"x": epoch}}, path)
    return path


def test_average_checkpoints_means_weights_and_picks_latest(tmp_path):
    a = _fake_ckpt(tmp_path / "epoch-000.ckpt", 0, 10, 1.0)
    b = _fake_ckpt(tmp_path / "epoch-001.ckpt", 1, 20, 2.0)
    c = _fake_ckpt(tmp_path / "epoch-002.ckpt", 2, 30, 6.0)
    _fake_ckpt(tmp_path / "last.ckpt", 2, 30, 6.0)  # same position as epoch-002: counted once
    assert latest_checkpoints(tmp_path, 2) == [b, c]
    avg = average_checkpoints([a, b, c], tmp_path / "avg.ckpt")
    saved = torch.load(tmp_path / "avg.ckpt", weights_only=False)
    assert torch.allclose(saved["state_dict"]["w"], torch.full((2,), 3.0))
    assert int(saved["state_dict"]["n"]) == 30 and saved["hyper_parameters"] == {"x": 2}
    assert "optimizer_states" not in saved and len(avg["averaged_from"]) == 3
    with pytest.raises(SpeechkitError, match="fewer than the 9"):
        latest_checkpoints(tmp_path, 9)
    torch.save({"state_dict": {"w": torch.zeros(3)}}, tmp_path / "other.ckpt")
    with pytest.raises(ModelFileError, match="different model"):
        average_checkpoints([a, tmp_path / "other.ckpt"], tmp_path / "bad.ckpt")


@pytest.mark.trains
def test_average_checkpoints_cli(checkpoint, tmp_path, capsys):
    out = tmp_path / "avg.ckpt"
    assert main(["average-checkpoints", str(checkpoint), str(checkpoint), "--out", str(out)]) == 0
    assert "mean of 2" in capsys.readouterr().out
    task, original = load_task(out, expected=("asr-ctc",)), load_task(checkpoint)
    for (name, p), q in zip(task.state_dict().items(), original.state_dict().values()):
        torch.testing.assert_close(p, q, msg=name)
    assert main(["average-checkpoints", "--out", str(out)]) == 2
