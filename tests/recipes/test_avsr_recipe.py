"""The synthetic AVSR recipe end to end: synth lrs3 -> prepare lrs3 -> tokenizer -> fit (cross-modal + TD
losses) -> the loss fell -> checkpoint reload -> speechkit export -> speechkit transcribe --video."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from fakes import run_cli

import speechkit

pytest.importorskip("av")
RECIPE = Path(speechkit.__file__).resolve().parent / "recipes" / "synthetic" / "avsr"
TINY_MODEL = ["--model.init_args.encoder.init_args.dim", "48", "--model.init_args.encoder.init_args.num_layers", "2",
              "--model.init_args.encoder.init_args.visual_channels", "4", "--model.init_args.encoder.init_args.dropout",
              "0.0", "--model.init_args.encoder.init_args.modality_dropout", "0.0"]


def ctc_loss(task, datamodule) -> float:
    """Mean per-utterance CTC loss on the validation split (eval mode, clean audio, both modalities)."""
    task.eval()
    losses = []
    with torch.no_grad():
        for batch in datamodule.val_dataloader():
            outputs = task.forward_batch(batch)
            losses.append(task.loss_fn.ctc(outputs, batch)[0])
    return float(torch.stack(losses).mean())


@pytest.mark.slow  # about a minute on one core
@pytest.mark.trains
def test_synthetic_avsr_recipe_learns_reloads_exports_and_transcribes(tmp_path, monkeypatch):
    from speechkit.cli.lightning_cli import run_lightning_cli
    from speechkit.tasks import load_task

    corpus, manifests = tmp_path / "corpus", tmp_path / "manifests"
    status, _, err = run_cli(["synth", "lrs3", corpus, "--speakers", "3", "--test-speakers", "1",
                              "--utterances-per-speaker", "4", "--seed", "1"], monkeypatch)
    assert status == 0, err
    status, out, err = run_cli(["prepare", "lrs3", corpus, manifests, "--valid-utterances", "4"], monkeypatch)
    assert status == 0 and "centre-crop" in out, err
    status, _, err = run_cli(["tokenizer", "train", manifests / "cuts_trainval.jsonl.gz", "--vocab-size", "32",
                              "--out", tmp_path / "bpe.model"], monkeypatch)
    assert status == 0, err
    argv = ["--config", str(RECIPE / "av_xmodal.yaml"), *TINY_MODEL,
            "--data.init_args.train_manifests", f'["{manifests / "cuts_trainval.jsonl.gz"}"]',
            "--data.init_args.valid_manifests", f'["{manifests / "cuts_valid.jsonl.gz"}"]',
            "--data.init_args.test_manifests", f'["{manifests / "cuts_test.jsonl.gz"}"]',
            "--data.init_args.tokenizer_path", str(tmp_path / "bpe.model"),
            "--data.init_args.noise_dirs", f'["{corpus / "musan" / "noise"}"]', "--data.init_args.num_workers", "0",
            "--data.init_args.noise_snr_db", "[10.0, 20.0]", "--data.init_args.max_duration", "12",
            "--model.init_args.cmvn_utterances", "8", "--model.init_args.optim.lr", "0.003",
            "--trainer.max_epochs", "6", "--trainer.default_root_dir", str(tmp_path / "run"),
            "--trainer.enable_progress_bar", "false", "--trainer.logger", "false"]
    cli = run_lightning_cli(argv, run=False)
    assert cli.model.task_name == "avsr" and cli.model.encoder.cross_modal
    before = ctc_loss(cli.model, cli.datamodule)
    cli.model.train()
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    after = ctc_loss(cli.model, cli.datamodule)
    assert after < 0.75 * before, (before, after)
    assert {"train/order_acc", "train/direction", "train/speed", "train/ref", "val/wer"} <= set(
        cli.trainer.callback_metrics)

    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    task = load_task(ckpt, ("avsr",))
    assert ctc_loss(task, cli.datamodule) == pytest.approx(after, rel=1e-5)

    onnx = tmp_path / "avsr.onnx"
    status, out, err = run_cli(["export", ckpt, onnx], monkeypatch)
    assert status == 0 and "parity" in out, err
    video = next((corpus / "test").glob("*/*.mp4"))
    status, out, err = run_cli(["transcribe", onnx, "--video", video], monkeypatch)
    assert status == 0 and len(out.splitlines()) == 1, err
    status, _, err = run_cli(["export", ckpt, tmp_path / "x.onnx", "--int8"], monkeypatch)
    assert status != 0 and "int8" in err
