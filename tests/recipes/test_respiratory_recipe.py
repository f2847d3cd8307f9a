"""The synthetic respiratory recipe end to end: synth -> prepare -> fit (Patch-Mix CL) -> test ->
checkpoint reload -> ``speechkit export --int8`` (ICBHI-score gate) -> ``speechkit classify``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from fakes import run_cli

import speechkit

RECIPE = Path(speechkit.__file__).resolve().parent / "recipes" / "synthetic" / "respiratory"


def train_loss(task, datamodule) -> float:
    """Plain cross-entropy of the task over the training split (eval mode, no mixing)."""
    task.eval()
    losses = []
    with torch.no_grad():
        for batch in datamodule.train_dataloader():
            losses.append(torch.nn.functional.cross_entropy(task(batch["audio"]), batch["labels"]))
    return float(torch.stack(losses).mean())


@pytest.mark.trains
def test_synthetic_patchmix_cl_recipe_learns_exports_and_classifies(tmp_path, monkeypatch):
    from speechkit.cli.lightning_cli import run_lightning_cli
    from speechkit.tasks import load_task

    corpus, manifests = tmp_path / "corpus", tmp_path / "manifests"
    status, _, err = run_cli(["synth", "icbhi", corpus, "--patients", "8", "--recordings", "1", "--cycles", "4,6",
                              "--cycle-seconds", "1.2,2.0", "--test-percent", "25"], monkeypatch)
    assert status == 0, err
    status, out, err = run_cli(["prepare", "icbhi", corpus, manifests, "--cycle-seconds", "2", "--num-jobs", "1"],
                               monkeypatch)
    assert status == 0 and "ICBHI 2017" in out, err

    argv = ["--config", str(RECIPE / "config.yaml"), "--config", str(RECIPE / "patchmix_cl.yaml"),
            "--data.init_args.manifest_dir", str(manifests), "--trainer.max_epochs", "6",
            "--trainer.default_root_dir", str(tmp_path / "run"), "--trainer.enable_progress_bar", "false",
            "--trainer.logger", "false", "--data.init_args.batch_size", "8"]
    cli = run_lightning_cli(argv, run=False)
    assert cli.model.task_name == "respiratory" and cli.model.mix.mode == "patchmix_cl"
    assert cli.model.labels == ["normal", "crackle", "wheeze", "both"] and cli.model.clip_samples == 32000
    cli.datamodule.setup("fit")
    before = train_loss(cli.model, cli.datamodule)
    cli.model.train()
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    after = train_loss(cli.model, cli.datamodule)
    assert after < 0.85 * before, (before, after)

    cli.trainer.test(cli.model, datamodule=cli.datamodule, verbose=False)
    report = cli.model.test_report
    assert report.num_examples == len(cli.datamodule.datasets["test"]) and report.groups  # per device
    metrics = cli.trainer.callback_metrics
    assert float(metrics["test/score"]) == pytest.approx(report.scores["score"])

    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    task = load_task(ckpt)
    batch = next(iter(cli.datamodule.test_dataloader()))
    cli.model.eval()
    with torch.no_grad():
        assert torch.allclose(task(batch["audio"]), cli.model(batch["audio"]), atol=1e-5)

    onnx = tmp_path / "resp.onnx"
    status, out, err = run_cli(["export", ckpt, onnx, "--int8", "--force"], monkeypatch)
    assert status == 0, err
    assert "parity with PyTorch" in out and "int8 ICBHI score" in out and (tmp_path / "resp_int8.onnx").is_file()

    wav = sorted((corpus / "ICBHI_final_database").glob("*.wav"))[0]
    status, out, err = run_cli(["classify", "--model", onnx, "--audio", wav, "--annotations", wav.with_suffix(".txt")],
                               monkeypatch)
    assert status == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    assert len(lines) == len(wav.with_suffix(".txt").read_text().splitlines())
    assert {d["label"] for d in lines} <= set(task.labels)
