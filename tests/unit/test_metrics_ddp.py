"""Classification test metrics under 2-process DDP (gloo) equal the single-process ones.

A TAU-like corpus with three recording devices and an odd number of test clips (29), so the
shards are uneven and a padding sampler would count a clip twice. Each rank evaluates its own
shard; the torchmetrics counts are summed at the epoch end.
"""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as L
import pytest
import torch
from fakes import make_tau2020
from torch import nn

from speechkit.data.corpora import prepare_tau2020_mobile
from speechkit.data.datamodules import ClassificationDataModule
from speechkit.errors import SpeechkitError
from speechkit.frontends import LogMel
from speechkit.metrics.classification import ClassificationMetrics, GroupAccuracy
from speechkit.tasks import ClassificationTask

SR = 44100


class MeanLinear(nn.Module):
    """A fixed random classifier: mean over frames, then a linear layer (B, T, F) -> (B, C)."""

    def __init__(self, in_bins: int, num_classes: int) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.proj = nn.Linear(in_bins, num_classes)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        return self.proj(feats.mean(dim=1))


class RecordTest(L.Callback):
    """Saves each rank's test results (and how many clips it evaluated) to ``out/rank<k>.pt``."""

    def __init__(self, out: str) -> None:
        self.out = out
        self.seen = 0

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self.seen += len(batch["ids"])

    def on_test_end(self, trainer, pl_module) -> None:
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("test/acc")}
        result = {"confusion": pl_module.test_confusion, "metrics": metrics, "seen": self.seen}
        torch.save(result, Path(self.out) / f"rank{trainer.global_rank}.pt")


@pytest.fixture(scope="module")
def three_device_manifests(tmp_path_factory) -> Path:
    root = make_tau2020(tmp_path_factory.mktemp("tau3") / "TAU-urban-acoustic-scenes-2020-mobile-development")
    files = [line.split("\t")[0] for line in (root / "meta.csv").read_text().splitlines()[1:]]
    (root / "evaluation_setup" / "fold1_test.csv").write_text("filename\n" + "\n".join(files[:29]) + "\n")
    out = tmp_path_factory.mktemp("tau3_manifests")
    prepare_tau2020_mobile(root, out, num_jobs=1)
    return out


def _run_test(manifests: Path, out: Path, devices: int) -> list[dict]:
    torch.manual_seed(0)
    task = ClassificationTask(
        model=MeanLinear(16, 10), frontend=LogMel(SR, n_fft=1024, win_length=882, hop_length=441, n_mels=16),
        sample_rate=SR, clip_samples=SR // 20, task_name="scene",
    )
    # One clip per batch: every logit is computed the same way in both runs, whatever the
    # CPU kernels, so the predictions (not only the sums) are comparable exactly.
    dm = ClassificationDataModule(str(manifests), batch_size=1, sample_rate=SR, clip_seconds=0.05, group_by="device")
    trainer = L.Trainer(
        accelerator="cpu", devices=devices, strategy="ddp_spawn" if devices > 1 else "auto", logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        callbacks=[RecordTest(str(out))], default_root_dir=str(out),
    )
    trainer.test(task, datamodule=dm, verbose=False)
    return [torch.load(out / f"rank{r}.pt") for r in range(devices)]


@pytest.mark.trains
def test_group_accuracy_and_confusion_match_single_process_under_ddp(three_device_manifests, tmp_path):
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    [single] = _run_test(three_device_manifests, tmp_path / "one", devices=1)
    ranks = _run_test(three_device_manifests, tmp_path / "two", devices=2)

    confusion = single["confusion"]
    assert single["seen"] == int(confusion.sum()) == 29
    assert set(single["metrics"]) == {"test/acc", "test/acc_a", "test/acc_b", "test/acc_s1"}
    assert single["metrics"]["test/acc"] == pytest.approx(float(confusion.trace()) / 29)
    # Each rank evaluated its own uneven shard, not the whole set ...
    assert sorted(r["seen"] for r in ranks) == [14, 15]
    # ... and still reports the whole set's figures.
    for result in ranks:
        assert torch.equal(result["confusion"], confusion)
        assert result["metrics"] == pytest.approx(single["metrics"])


def test_group_accuracy_counts_and_checks_ids():
    metric = GroupAccuracy(num_groups=3)
    metric.update(torch.tensor([0, 1, 1, 2]), torch.tensor([0, 1, 0, 2]), torch.tensor([0, 0, 0, 2]))
    metric.update(torch.tensor([1]), torch.tensor([0]), torch.tensor([2]))
    acc = metric.compute()
    assert acc[0] == pytest.approx(2 / 3) and acc[1].isnan() and acc[2] == pytest.approx(0.5)
    with pytest.raises(SpeechkitError, match=r"group ids must be in \[0, 3\), got 3\.\.3"):
        metric.update(torch.tensor([0]), torch.tensor([0]), torch.tensor([3]))


def test_classification_metrics_accept_group_names_and_reset():
    metrics = ClassificationMetrics(num_classes=2, groups=["a", "b", "c"])
    metrics.update(torch.tensor([0, 1, 1]), torch.tensor([0, 0, 1]), ["b", "b", "a"])
    report = metrics.compute()
    assert report.group_accuracy == {"a": 1.0, "b": 0.5}  # "c" had no clip
    assert report.confusion.tolist() == [[1, 1], [0, 1]] and report.num_examples == 3
    with pytest.raises(SpeechkitError, match=r"batch groups \['z'\] are not among the task's groups"):
        metrics.update(torch.tensor([0]), torch.tensor([0]), ["z"])
    metrics.reset()
    assert metrics.compute().num_examples == 0
