"""The SSL recipes end to end at toy scale (issue 16): HuBERT iteration-1 pre-training learns,
STaR / DistilHuBERT / ARMHuBERT distillation lowers its loss, the student checkpoint reloads
without the teacher, exports to a parity-checked ONNX feature extractor that the torch-free
runtime reads, and wrong files fail with one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import speechkit
from speechkit.cli.lightning_cli import run_lightning_cli
from speechkit.errors import ModelFileError

RECIPES = Path(speechkit.__file__).resolve().parent / "recipes" / "synthetic" / "ssl"
TEACHER = {"conv_layers": [[16, 10, 5], [32, 3, 2], [32, 3, 2], [32, 3, 2], [32, 3, 2], [32, 2, 2], [32, 2, 2]],
           "dim": 32, "num_layers": 2, "num_heads": 4, "ffn_dim": 64, "pos_conv_kernel": 8, "pos_conv_groups": 4,
           "final_dim": 16, "num_classes": 8, "dropout": 0.0, "attention_dropout": 0.0}
STUDENT = {"conv_layers": [[8, 10, 5], [16, 1, 1], [16, 3, 2], [16, 3, 2], [16, 3, 2], [16, 3, 2], [24, 1, 1],
                           [24, 2, 2], [24, 2, 2]],
           "dim": 24, "num_layers": 2, "num_heads": 4, "ffn_dim": 48, "pos_conv_kernel": 8, "pos_conv_groups": 4,
           "dropout": 0.0, "attention_dropout": 0.0}


@pytest.fixture(scope="module")
def manifests(tmp_path_factory) -> Path:
    """Espeak-free toy corpus in the LibriSpeech layout (tones; 4 utterances per subset), prepared."""
    from fakes import make_librispeech

    from speechkit.data.corpora import prepare_librispeech

    root = tmp_path_factory.mktemp("ssl_corpus")
    corpus = make_librispeech(root / "LibriSpeech", subsets=("train-clean-100", "dev-clean", "test-clean"), seconds=1.0)
    prepare_librispeech(corpus, root / "manifests", num_jobs=1)
    return root / "manifests"


def _data_args(manifests: Path) -> list[str]:
    return ["--data.init_args.train_manifests", json.dumps([str(manifests / "cuts_train-clean-100.jsonl.gz")]),
            "--data.init_args.valid_manifests", json.dumps([str(manifests / "cuts_dev-clean.jsonl.gz")]),
            "--data.init_args.test_manifests", json.dumps([str(manifests / "cuts_test-clean.jsonl.gz")]),
            "--data.init_args.max_duration", "4.0", "--data.init_args.min_seconds", "0.5"]


def _fit(argv: list[str], root: Path, epochs: int):
    cli = run_lightning_cli(argv + ["--trainer.default_root_dir", str(root), "--trainer.max_epochs", str(epochs),
                                    "--trainer.limit_val_batches", "1", "--trainer.log_every_n_steps", "1",
                                    "--trainer.enable_progress_bar", "false"], run=False)
    batch = next(iter(cli.datamodule.train_dataloader()))
    return cli, batch


def _eval_loss(task, batch) -> float:
    task.eval()
    with torch.no_grad():
        return float(task.step(batch, "val")[0])


@pytest.fixture(scope="module")
def teacher_ckpt(manifests, tmp_path_factory) -> tuple[Path, float, float]:
    root = tmp_path_factory.mktemp("ssl_teacher")
    cli, batch = _fit(["--config", str(RECIPES / "teacher.yaml"), *_data_args(manifests),
                       "--model.init_args.encoder.init_args.config", json.dumps(TEACHER),
                       "--model.init_args.kmeans_utterances", "4", "--model.init_args.mask_length", "3",
                       "--model.init_args.optim.lr", "0.003"], root, epochs=30)
    cli.model.clusters.fit([a[: int(n)].numpy() for a, n in zip(batch["audio"], batch["audio_lens"])])
    before = _eval_loss(cli.model, batch)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    after = _eval_loss(cli.model, batch)
    return root / "checkpoints" / "last.ckpt", before, after


@pytest.mark.trains
def test_hubert_pretraining_learns_the_cluster_targets(teacher_ckpt):
    path, before, after = teacher_ckpt
    assert path.is_file()
    assert after < 0.8 * before, (before, after)


@pytest.mark.trains
@pytest.mark.parametrize("method", ["star", pytest.param("distilhubert", marks=pytest.mark.slow),
                                    pytest.param("armhubert", marks=pytest.mark.slow)])
def test_distillation_lowers_its_loss_and_the_student_reloads_alone(method, teacher_ckpt, manifests, tmp_path):
    from speechkit.tasks import load_task
    from speechkit.tasks.ssl import load_upstream

    overlay = [] if method == "star" else ["--config", str(RECIPES / f"{method}.yaml")]
    cli, batch = _fit(["--config", str(RECIPES / "star.yaml"), *overlay, *_data_args(manifests),
                       "--model.init_args.student.init_args.config", json.dumps(STUDENT),
                       "--model.init_args.teacher_path", str(teacher_ckpt[0]),
                       "--model.init_args.distill.mask_length", "3", "--model.init_args.optim.lr", "0.003"],
                      tmp_path, epochs=20)
    assert cli.model.distill.method == method and cli.model.teacher_dim == 32
    before = _eval_loss(cli.model, batch)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    after = _eval_loss(cli.model, batch)
    assert after < 0.8 * before, (before, after)

    ckpt = tmp_path / "checkpoints" / "last.ckpt"
    task = load_task(ckpt)  # the teacher file is not needed to rebuild the student
    student = load_upstream(ckpt)
    audio = batch["audio"][:1]
    with torch.no_grad():
        ref = cli.model.student.eval()(audio)[0]
        assert torch.allclose(task.student(audio)[0], ref, atol=1e-6)
        assert torch.allclose(student(audio)[0], ref, atol=1e-6)


@pytest.mark.slow  # the torch.onnx export alone takes ~30 s; parity is also in tests/export/test_ssl_export.py
@pytest.mark.trains
def test_student_exports_a_parity_checked_feature_extractor(teacher_ckpt, tmp_path):
    from speechkit.cli.main import main
    from speechkit.runtime.ssl import SslFeatureExtractor
    from speechkit.tasks.ssl import load_upstream

    out = tmp_path / "ssl_teacher_tiny.onnx"
    assert main(["export", str(teacher_ckpt[0]), str(out), "--ssl-layers", "0,1,2"]) == 0
    extractor = SslFeatureExtractor(out)
    assert extractor.layers == [0, 1, 2] and extractor.frame_rate == 50.0 and extractor.hidden_dim == 32
    model = load_upstream(teacher_ckpt[0])
    audio = np.random.default_rng(0).standard_normal(12345).astype(np.float32) * 0.1
    hidden = extractor(audio)
    with torch.no_grad():
        ref = model.extract_features(torch.from_numpy(audio)[None]).hidden
    assert hidden.shape == (3, int(model.output_lengths(torch.tensor([12345]))[0]), 32)
    np.testing.assert_allclose(hidden, torch.stack(ref)[:, 0].numpy(), atol=1e-4)
    assert extractor(np.stack([audio, audio])).shape == (3, 2, hidden.shape[1], 32)


def test_ssl_files_of_the_wrong_kind_fail_in_one_line(tmp_path):
    import onnx

    from speechkit.runtime.ssl import SslFeatureExtractor
    from speechkit.tasks.ssl import load_upstream

    torch.save({"state_dict": {}, "hyper_parameters": {}}, tmp_path / "kws.ckpt")
    with pytest.raises(ModelFileError, match="not a checkpoint of an SSL task"):
        load_upstream(tmp_path / "kws.ckpt")
    graph = onnx.helper.make_graph([onnx.helper.make_node("Identity", ["audio"], ["logits"])], "g",
                                   [onnx.helper.make_tensor_value_info("audio", onnx.TensorProto.FLOAT, [1, 4])],
                                   [onnx.helper.make_tensor_value_info("logits", onnx.TensorProto.FLOAT, [1, 4])])
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, tmp_path / "plain.onnx")
    with pytest.raises(ModelFileError, match="without speechkit metadata"):
        SslFeatureExtractor(tmp_path / "plain.onnx")
    onnx.helper.set_model_props(model, {"speechkit.task": "kws"})
    onnx.save(model, tmp_path / "kws.onnx")
    with pytest.raises(ModelFileError, match="is a 'kws' model, expected 'ssl-pretrain' or 'ssl-distill'"):
        SslFeatureExtractor(tmp_path / "kws.onnx")
    with pytest.raises(ModelFileError, match="no such model file"):
        SslFeatureExtractor(tmp_path / "missing.onnx")


def test_ssl_kmeans_writes_centroids_and_20ms_labels(manifests, tmp_path):
    from speechkit.cli.main import main
    from speechkit.tasks.ssl import MfccClusters

    out = tmp_path / "km"
    assert main(["ssl-kmeans", "--manifests", str(manifests / "cuts_train-clean-100.jsonl.gz"), "--clusters", "4",
                 "--out", str(out)]) == 0
    labels = np.load(out / "labels.npz")
    assert len(labels.files) == 4 and all(len(labels[k]) == 49 for k in labels.files)  # 1.0 s -> 49 frames
    assert len(np.unique(np.concatenate([labels[k] for k in labels.files]))) > 1
    clusters = MfccClusters(4)
    clusters.load(out / "kmeans.pt")
    assert clusters.fitted
    with pytest.raises(ModelFileError, match="centroids"):
        MfccClusters(5).load(out / "kmeans.pt")


def test_ssl_tasks_refuse_mismatched_models(teacher_ckpt):
    from speechkit.errors import SpeechkitError
    from speechkit.models.ssl import HubertConfig, HubertModel
    from speechkit.tasks.ssl import SslPretrainTask
    from speechkit.tasks.ssl_distill import SslDistillTask

    with pytest.raises(SpeechkitError, match="pre-training head"):
        SslPretrainTask(HubertModel(HubertConfig(**{**TEACHER, "num_classes": 0})))
    odd = HubertModel(HubertConfig(**{**STUDENT, "conv_layers": [[8, 10, 5], [24, 4, 4]]}))  # 20 samples per frame
    task = SslDistillTask(odd, teacher_path=str(teacher_ckpt[0]))
    with pytest.raises(SpeechkitError, match="frames are 320 samples"):
        task.teacher()
