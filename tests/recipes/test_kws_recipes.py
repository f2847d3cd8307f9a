"""KWS recipes: every config instantiates; tiny fit -> test; resume after a kill; 2-process DDP."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from speechkit.cli.lightning_cli import run_lightning_cli
from speechkit.tasks import load_task

REPO = Path(__file__).resolve().parents[2]
KWS_CONFIGS = sorted(
    p for p in (REPO / "recipes").rglob("*.yaml")
    if p.parent.name.startswith(("kws", "bcresnet")) or p.parent.parent.name == "synthetic" and p.parent.name == "kws"
)
BASE_OF = {p: p.parent / "config.yaml" for p in KWS_CONFIGS}


def test_kws_recipe_list_is_complete():
    names = {str(p.relative_to(REPO)) for p in KWS_CONFIGS}
    assert "recipes/synthetic/kws/config.yaml" in names
    assert "recipes/speech_commands_v2/kws_bcresnet8/config.yaml" in names
    assert "recipes/speech_commands_v1/kws_bcresnet8/config.yaml" in names
    assert "recipes/tau2020_mobile/bcresnet_mod/config.yaml" in names


def _config_args(path: Path) -> list[str]:
    base = BASE_OF[path]
    return ["--config", str(base)] + (["--config", str(path)] if path != base else [])


@pytest.mark.parametrize("config", KWS_CONFIGS, ids=lambda p: str(p.relative_to(REPO / "recipes")))
def test_recipe_instantiates_with_linked_labels(config, tiny_kws_manifests, tau_manifests, tmp_path):
    manifests = tau_manifests if "tau2020" in str(config) else tiny_kws_manifests
    cli = run_lightning_cli(
        _config_args(config) + [
            "--data.init_args.manifest_dir", str(manifests),
            "--trainer.default_root_dir", str(tmp_path),
        ],
        run=False,
    )
    labels = json.loads((manifests / "labels.json").read_text())
    assert cli.model.labels == labels
    assert cli.model.hparams["labels"] == labels
    feats, _ = cli.model.frontend(torch.zeros(2, cli.model.clip_samples))
    cli.model.eval()
    assert cli.model.model(feats).shape == (2, len(labels))


def _fit_args(manifests: Path, root: Path, epochs: int) -> list[str]:
    return [
        "--config", str(REPO / "recipes/synthetic/kws/config.yaml"),
        "--data.init_args.manifest_dir", str(manifests),
        "--data.init_args.batch_size", "16",
        "--trainer.default_root_dir", str(root),
        "--trainer.max_epochs", str(epochs),
        "--trainer.enable_progress_bar", "false",
    ]


def test_fit_then_test_writes_checkpoints_and_confusion_matrix(tiny_kws_manifests, tmp_path):
    cli = run_lightning_cli(_fit_args(tiny_kws_manifests, tmp_path, 3), run=False)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    assert torch.isfinite(cli.trainer.callback_metrics["train/loss_epoch"])
    results = cli.trainer.test(cli.model, datamodule=cli.datamodule, ckpt_path="best", verbose=False)
    assert 0.0 <= results[0]["test/acc"] <= 1.0
    ckpts = {p.name for p in (tmp_path / "checkpoints").iterdir()}
    assert "last.ckpt" in ckpts and any(n.startswith("best-") for n in ckpts)
    assert (Path(cli.trainer.log_dir) / "confusion_matrix.png").stat().st_size > 1000
    assert load_task(tmp_path / "checkpoints" / "last.ckpt", expected=("kws",)).labels == cli.model.labels
    # test(ckpt_path="best") left the best weights in cli.model
    task = load_task(cli.trainer.checkpoint_callback.best_model_path, expected=("kws",))
    assert task.labels == cli.model.labels
    assert task.datamodule_config["manifest_dir"] == str(tiny_kws_manifests)
    with torch.no_grad():
        a = task(torch.zeros(1, task.clip_samples))
        b = cli.model.eval()(torch.zeros(1, task.clip_samples))
    assert torch.allclose(a, b, atol=1e-5)


def _speechkit(*args: str, env: dict | None = None, **kw) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "speechkit", *args], cwd=REPO,
        env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw,
    )


def _ckpt_step(path: Path) -> tuple[int, int]:
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    return int(ckpt["epoch"]), int(ckpt["global_step"])


def test_resume_from_last_checkpoint_after_kill(tiny_kws_manifests, tmp_path):
    last = tmp_path / "checkpoints" / "last.ckpt"
    kill = json.dumps([{"class_path": "fakes.KillAtBatch", "init_args": {"epoch": 2, "batch": 1}}])
    proc = _speechkit("fit", *_fit_args(tiny_kws_manifests, tmp_path, 1000), "--trainer.callbacks", kill,
                      env={"PYTHONPATH": str(REPO / "tests")})
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == -signal.SIGKILL, out  # killed in the middle of epoch 2
    assert _ckpt_step(last)[0] == 1, "last.ckpt should be the one saved at the end of epoch 1"
    killed_epoch, killed_step = _ckpt_step(last)
    resumed = _speechkit(
        "fit", *_fit_args(tiny_kws_manifests, tmp_path, killed_epoch + 2), "--ckpt_path", "last",
    )
    out, _ = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, out
    assert "Restored all states from the checkpoint" in out
    epoch, step = _ckpt_step(last)
    # max_epochs = killed_epoch + 2: only the one remaining epoch runs, continuing the count.
    assert epoch == killed_epoch + 1 and step > killed_step


def test_recipe_runs_under_two_process_ddp(tiny_kws_manifests, tmp_path):
    proc = _speechkit(
        "fit", *_fit_args(tiny_kws_manifests, tmp_path, 1),
        "--trainer.accelerator", "cpu", "--trainer.devices", "2", "--trainer.strategy", "ddp",
        "--trainer.limit_train_batches", "3", "--trainer.limit_val_batches", "2",
    )
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out
    assert "distributed_backend=gloo" in out
    assert "All distributed processes registered" in out
    assert "Starting with 2 processes" in out
    # Each rank sees half of the tiny training set, capped at 3 batches.
    assert 1 <= _ckpt_step(tmp_path / "checkpoints" / "last.ckpt")[1] <= 3
