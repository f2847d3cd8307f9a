"""The asr_kd recipes end to end on a tiny generated corpus: teacher fit -> KD fit (aux + APC) ->
the loss decreases -> the checkpoint loads -> the plain student is written, exported as the
streaming artifact (parity-checked) and decoded by the torch-free runtime."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from lhotse import CutSet, MonoCut, Recording, SupervisionSegment

from speechkit.data.manifests import write_cuts
from speechkit.tasks.training import lightning_cli

REPO = Path(__file__).resolve().parents[2]
RECIPE = REPO / "recipes/synthetic/asr_kd"
SR = 16000
TEXTS = ["TURN ON THE LIGHT", "CALL MOM", "STOP THE TIMER", "PLAY SOME MUSIC", "OPEN THE DOOR", "WHAT TIME IS IT"]


def _encoder(dim: int, layers: int) -> list[str]:
    prefix = "--model.init_args.encoder.init_args."
    values = {"dim": dim, "num_layers": layers, "num_heads": 2, "ffn_dim": 2 * dim, "subsampling_channels": 4,
              "conv_kernel_size": 5}
    return [a for k, v in values.items() for a in (prefix + k, str(v))]


def _corpus(root: Path) -> dict:
    from speechkit.text import train_tokenizer

    cuts = []
    for i, text in enumerate(TEXTS * 2):
        rng = np.random.default_rng(i)
        t = np.arange(int((1.0 + 0.1 * (i % 5)) * SR)) / SR
        freq = 150 + 40 * (i % len(TEXTS)) + 30 * np.sin(2 * np.pi * t)
        wav = root / f"u{i}.wav"
        sf.write(wav, (0.3 * np.sin(2 * np.pi * np.cumsum(freq) / SR) + rng.normal(0, 0.01, t.size)).astype(np.float32),
                 SR, subtype="PCM_16")
        rec = Recording.from_file(wav, recording_id=f"u{i}")
        sup = SupervisionSegment(f"u{i}", rec.id, 0.0, rec.duration, text=text, speaker=f"s{i % 3}")
        cuts.append(MonoCut(f"u{i}", 0.0, rec.duration, 0, recording=rec, supervisions=[sup]))
    manifest = write_cuts(CutSet.from_cuts(cuts), root / "cuts_train.jsonl.gz")
    train_tokenizer(TEXTS * 5, root / "bpe.model", vocab_size=32)
    return {"manifest": manifest, "tokenizer": root / "bpe.model"}


def _fit(configs: list[str], corpus: dict, root: Path, extra: list[str], callbacks=()):
    argv = [a for c in configs for a in ("--config", str(RECIPE / c))] + [
        "--data.init_args.train_manifests", json.dumps([str(corpus["manifest"])]),
        "--data.init_args.valid_manifests", json.dumps([str(corpus["manifest"])]),
        "--data.init_args.test_manifests", json.dumps([str(corpus["manifest"])]),
        "--data.init_args.tokenizer_path", str(corpus["tokenizer"]),
        "--data.init_args.max_duration", "5", "--data.init_args.num_workers", "0",
        "--data.init_args.num_buckets", "2", "--data.init_args.min_seconds", "0.5",
        "--model.init_args.cmvn_utterances", "8", "--trainer.default_root_dir", str(root),
        "--trainer.enable_progress_bar", "false", "--trainer.accelerator", "cpu", *extra,
    ]
    cli = lightning_cli(argv, run=False)
    cli.trainer.callbacks.extend(callbacks)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    return cli


@pytest.mark.trains  # about 30 s on one CPU thread
def test_kd_recipe_fits_loads_and_exports_a_plain_streaming_student(tmp_path):
    from lightning.pytorch.callbacks import Callback

    from speechkit.export.asr_export import export_asr
    from speechkit.runtime.asr import StreamingRecognizer
    from speechkit.tasks import load_task
    from speechkit.tasks.asr import AsrCtcTask
    from speechkit.tasks.asr_kd import AsrKdTask, write_student_checkpoint

    corpus = _corpus(tmp_path)
    teacher_root = tmp_path / "teacher"
    _fit(["config.yaml", "teacher.yaml"], corpus, teacher_root, ["--trainer.max_epochs", "2", *_encoder(48, 2)])
    teacher_ckpt = teacher_root / "checkpoints" / "last.ckpt"

    losses: list[float] = []

    class Record(Callback):
        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            losses.append(float(outputs["loss"]))

    kd_root = tmp_path / "kd"
    cli = _fit(["config.yaml", "layer_kd_aux_apc.yaml"], corpus, kd_root,
               ["--trainer.max_epochs", "6", "--model.init_args.teacher_checkpoint", str(teacher_ckpt),
                "--model.init_args.decode_chunk_size", "2", "--model.init_args.dynamic_chunk.min_chunk_size", "2",
                "--model.init_args.dynamic_chunk.max_chunk_size", "4", *_encoder(32, 2)],
               callbacks=[Record()])
    metrics = cli.trainer.callback_metrics
    assert {"train/feat_loss", "train/attn_loss", "train/apc_loss", "train/ctc_loss", "val/wer_chunk2"} <= set(metrics)
    assert len(losses) >= 8 and np.mean(losses[-3:]) < np.mean(losses[:3]), losses

    kd_ckpt = kd_root / "checkpoints" / "last.ckpt"
    kd_task = load_task(kd_ckpt, expected=("asr-ctc",))
    assert isinstance(kd_task, AsrKdTask) and kd_task.kd_branches is not None

    from speechkit.cli.main import main

    # the CLI tool (`speechkit kd-student`); a checkpoint that is not a KD one gets a one-line error
    assert main(["kd-student", str(kd_ckpt), str(tmp_path / "student.ckpt")]) == 0
    student_ckpt = tmp_path / "student.ckpt"
    assert main(["kd-student", str(student_ckpt), str(tmp_path / "again.ckpt")]) == 2
    assert not (tmp_path / "again.ckpt").exists()
    assert write_student_checkpoint(kd_ckpt, tmp_path / "student2.ckpt").is_file()
    student = load_task(student_ckpt, expected=("asr-ctc",))
    assert type(student) is AsrCtcTask
    assert set(student.state_dict()) == {k for k in kd_task.state_dict() if not k.startswith("kd_branches.")}
    audio, lens = torch.randn(1, 16000) * 0.1, torch.tensor([16000])
    with torch.no_grad():
        assert torch.allclose(student.log_probs(audio, lens, 2)[0], kd_task.log_probs(audio, lens, 2)[0], atol=1e-6)

    report = export_asr(student_ckpt, tmp_path / "student.onnx", streaming=True, chunk_ms=320, left_chunks=2)
    assert report["task"] == "asr-ctc-streaming" and report["parity_max_diff"] <= 1e-4
    wav, sr = sf.read(str(next(tmp_path.glob("u*.wav"))), dtype="float32")
    result = StreamingRecognizer(tmp_path / "student.onnx").transcribe(wav, sr)
    assert isinstance(result.text, str)
