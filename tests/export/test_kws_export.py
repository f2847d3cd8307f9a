"""KWS export (a clip classifier): parity, the contract's metadata, int8 gate, ORT format, CLI errors.

A BC-ResNet-1 with random weights serves for parity; the int8 gate and the end-to-end checks use
one trained through ``speechkit fit`` on an easy corpus written here: noise ("_silence_") and
tones at a class-specific frequency ("yes" 600 Hz, "no" 1200 Hz, "up" 2400 Hz), 0.5 s clips.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from speechkit.errors import SpeechkitError

RATE = 16000
CLIP = 8000
FREQS = {"yes": 600.0, "no": 1200.0, "up": 2400.0}
LABELS = ["_silence_", "yes", "no", "up"]


def tone_clip(rng: np.random.Generator, label: str, samples: int = CLIP) -> np.ndarray:
    """Noise, plus for keywords a 0.25-0.45 s tone near the class frequency at a random place."""
    x = rng.standard_normal(samples).astype(np.float32) * rng.uniform(0.005, 0.03)
    if label in FREQS:
        length = int(samples * rng.uniform(0.5, 0.9))
        start = int(rng.integers(0, samples - length + 1))
        f = FREQS[label] * rng.uniform(0.97, 1.03)
        x[start : start + length] += rng.uniform(0.1, 0.6) * np.sin(2 * np.pi * f * np.arange(length) / RATE + rng.uniform(0, 6.3))
    return x


def write_tone_corpus(root: Path, per_class: dict[str, int], seed: int = 0) -> Path:
    from speechkit.audio import save_audio
    from speechkit.data.manifests import audio_recording, classification_cut, write_classification_corpus

    rng = np.random.default_rng(seed)
    splits = {}
    for split, n in per_class.items():
        cuts = []
        for label in LABELS:
            name = label.strip("_")
            for i in range(n):
                path = root / "wav" / split / f"{name}_{i}.wav"
                save_audio(path, tone_clip(rng, label), RATE)
                recording = audio_recording(path, f"{split}-{name}-{i}")
                cuts.append(classification_cut(recording, name if label in FREQS else "", label))
        splits[split] = cuts
    write_classification_corpus(root / "manifests", LABELS, splits)
    return root / "manifests"


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict:
    """Manifests and a ``speechkit fit`` checkpoint of BC-ResNet-1 on the tone corpus (~10 s)."""
    from speechkit.cli.lightning_cli import run_lightning_cli

    root = tmp_path_factory.mktemp("tones")
    manifests = write_tone_corpus(root, {"train": 24, "valid": 6, "test": 24})
    config = {
        "seed_everything": 0,
        "trainer": {
            "max_epochs": 10, "default_root_dir": str(root / "run"), "accelerator": "cpu", "devices": 1,
            "logger": False, "enable_progress_bar": False, "enable_model_summary": False,
        },
        "model": {"class_path": "speechkit.tasks.ClassificationTask", "init_args": {
            "task_name": "kws",
            "frontend": {"class_path": "speechkit.frontends.LogMel", "init_args": {"n_mels": 40}},
            "model": {"class_path": "speechkit.models.kws.BCResNet", "init_args": {"width": 1}},
            "optim": {"name": "adamw", "lr": 0.01, "weight_decay": 0.0, "warmup_epochs": 0, "schedule": "constant"},
        }},
        "data": {"class_path": "speechkit.data.datamodules.ClassificationDataModule",
                 "init_args": {"manifest_dir": str(manifests), "batch_size": 16, "clip_seconds": CLIP / RATE}},
    }
    (root / "config.yaml").write_text(yaml.safe_dump(config))
    run_lightning_cli(["fit", "--config", str(root / "config.yaml")])
    return {"root": root, "manifests": manifests, "checkpoint": root / "run" / "checkpoints" / "last.ckpt"}


def speechkit(argv: list[str], capsys) -> tuple[int, str, str]:
    from speechkit.cli.main import main

    status = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def random_bcresnet(num_classes: int = 3):
    """LogMel + BC-ResNet-1 with random weights and BatchNorm statistics from random audio.

    Fresh BatchNorm statistics (mean 0, variance 1 against log-mels near -10) make every input
    give nearly the same logits, which would make a parity check vacuous; statistics averaged
    over noise at several loudnesses give input-dependent outputs.
    """
    from speechkit.frontends import LogMel
    from speechkit.models.kws import BCResNet

    torch.manual_seed(0)
    frontend, model = LogMel.bcresnet(), BCResNet(num_classes=num_classes, width=1)
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.momentum = None  # cumulative average: exact statistics after a few batches
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(frontend(torch.randn(8, 16000) * torch.logspace(-2, -0.3, 8)[:, None])[0])
    return frontend, model.eval()


# -- generic export --------------------------------------------------------------------------------


def test_export_onnx_rejects_dynamic_axes_of_unknown_tensors(tmp_path):
    from speechkit.export import export_onnx

    module = torch.nn.Linear(4, 2)
    with pytest.raises(ValueError, match="neither inputs"):
        export_onnx(module, (torch.randn(2, 4),), tmp_path / "m.onnx", ["x"], ["y"], dynamic_shapes={"input": {0: "batch"}})
    with pytest.raises(ValueError, match="rank 2"):
        export_onnx(module, (torch.randn(2, 4),), tmp_path / "m.onnx", ["x"], ["y"], dynamic_shapes={"x": {2: "batch"}})
    assert not list(tmp_path.iterdir())


# -- KWS artifact ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def random_export(tmp_path_factory) -> dict:
    from speechkit.export.kws_export import export_kws

    frontend, model = random_bcresnet()
    path = tmp_path_factory.mktemp("random") / "kws_bcresnet1.onnx"
    diff = export_kws(frontend, model, ["_silence_", "yes", "no"], 16000, 16000, path)
    return {"path": path, "frontend": frontend, "model": model, "diff": diff}


def test_kws_export_parity_and_contract_metadata(random_export):
    from speechkit.runtime import KwsModel

    assert random_export["diff"] <= 1e-4
    loaded = KwsModel(random_export["path"])
    meta = loaded.metadata
    assert meta["speechkit.task"] == "kws"
    assert json.loads(meta["labels"]) == ["_silence_", "yes", "no"]
    assert (meta["sample_rate"], meta["clip_samples"]) == ("16000", "16000")
    assert json.loads(meta["frontend"]) == {"class": "LogMel", **random_export["frontend"].config()}
    model_meta = json.loads(meta["model"])
    num_params = sum(p.numel() for p in random_export["model"].parameters())
    assert model_meta["class"] == "BCResNet" and model_meta["num_params"] == num_params
    assert model_meta["num_classes"] == 3 and model_meta["in_bins"] == 40
    import speechkit

    assert meta["speechkit_version"] == speechkit.__version__
    session = loaded.session
    assert [(i.name, i.shape) for i in session.get_inputs()] == [("audio", ["batch", 16000])]
    assert [(o.name, o.shape) for o in session.get_outputs()] == [("logits", ["batch", 3])]


def test_exported_kws_runs_in_plain_onnxruntime(random_export, tmp_path):
    """No speechkit (or torch) import is needed to run the artifact."""
    rng = np.random.default_rng(3)
    audio = (rng.standard_normal((4, 16000)) * np.array([[0.01], [0.05], [0.2], [0.5]])).astype(np.float32)
    np.save(tmp_path / "audio.npy", audio)
    code = (
        "import sys, json, numpy as np, onnxruntime as ort\n"
        f"s = ort.InferenceSession({str(random_export['path'])!r}, providers=['CPUExecutionProvider'])\n"
        "meta = s.get_modelmeta().custom_metadata_map\n"
        f"logits = s.run(['logits'], {{'audio': np.load({str(tmp_path / 'audio.npy')!r})}})[0]\n"
        "assert not [m for m in sys.modules if m.split('.')[0] in ('speechkit', 'torch')]\n"
        "print(json.dumps({'labels': json.loads(meta['labels']), 'logits': logits.tolist()}))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    got = json.loads(result.stdout)
    assert got["labels"] == ["_silence_", "yes", "no"]
    from speechkit.export.kws_export import KwsOnnxModel

    with torch.no_grad():
        expected = KwsOnnxModel(random_export["frontend"], random_export["model"]).eval()(torch.from_numpy(audio))
    np.testing.assert_allclose(np.array(got["logits"]), expected.numpy(), atol=1e-4)
    assert np.ptp(expected.numpy(), axis=0).max() > 1e-2  # the logits really depend on the input


def test_check_parity_fails_with_the_measured_difference(random_export):
    from speechkit.export import ParityError, check_parity
    from speechkit.export.kws_export import KwsOnnxModel

    wrapper = KwsOnnxModel(random_export["frontend"], random_export["model"]).eval()
    audio = [(np.zeros((2, 16000), np.float32),)]
    assert check_parity(random_export["path"], wrapper, audio, atol=1e-4) <= 1e-4
    with pytest.raises(ParityError, match=r"differs from PyTorch by 0\.0[0-9]+ \(max abs\) on inputs audio \(2, 16000\)"):
        check_parity(random_export["path"], lambda a: wrapper(a) + 0.03, audio, atol=1e-4)
    assert issubclass(ParityError, SpeechkitError)


def test_kws_artifact_metadata_keeps_the_contract_key_order(random_export):
    """Existing users read the same keys in the same order as before the family interface."""
    import onnx

    keys = [p.key for p in onnx.load(str(random_export["path"])).metadata_props]
    assert keys == ["speechkit.task", "labels", "sample_rate", "clip_samples", "frontend", "model", "speechkit_version"]


def test_int8_is_written_only_through_the_accuracy_gate(tmp_path):
    """The clip classifiers' gate: at most 1 point of accuracy lost; nothing is left behind on refusal."""
    from speechkit.export.clip_classifier import CLIP_GATE
    from speechkit.export.gate import QualityGateError
    from speechkit.export.int8 import write_gated_int8

    fp32 = tmp_path / "m.onnx"
    fp32.write_bytes(b"fp32")

    def quantize(src, dst):
        dst.write_bytes(b"int8")

    def accuracy(fp32_pct: float, int8_pct: float):
        return lambda path: (fp32_pct if path == fp32 else int8_pct, 100)

    lines: list[str] = []
    path, report = write_gated_int8(fp32, quantize, CLIP_GATE, accuracy(95.0, 94.0), log=lines.append)  # exactly 1 point
    assert path == tmp_path / "m_int8.onnx" and path.read_bytes() == b"int8" and report.passed
    assert any("accuracy on 100 items: fp32 95.00%, int8 94.00% (drop 1.00 points" in line for line in lines)
    path.unlink()
    with pytest.raises(QualityGateError, match=r"m_int8\.onnx: .*drop 1\.50 points, limit 1\.00.*--force"):
        write_gated_int8(fp32, quantize, CLIP_GATE, accuracy(95.0, 93.5), log=lines.append)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]
    _, forced = write_gated_int8(fp32, quantize, CLIP_GATE, accuracy(95.0, 90.0), force=True, log=lines.append)
    assert not forced.passed and forced.forced and forced.delta == pytest.approx(5.0)
    assert "kept because of --force" in lines[-2]


# -- CLI on a trained checkpoint -------------------------------------------------------------------


@pytest.fixture(scope="module")
def cli_export(trained, tmp_path_factory) -> dict:
    """``speechkit export CKPT kws_tones.onnx --int8 --ort`` run once (in-process)."""
    from speechkit.cli.main import main

    out_dir = tmp_path_factory.mktemp("export")
    out = out_dir / "kws_tones.onnx"
    with pytest.MonkeyPatch.context() as mp:
        import io

        stdout, stderr = io.StringIO(), io.StringIO()
        mp.setattr(sys, "stdout", stdout)
        mp.setattr(sys, "stderr", stderr)
        status = main(["export", str(trained["checkpoint"]), str(out), "--int8", "--ort"])
    return {"status": status, "stdout": stdout.getvalue(), "stderr": stderr.getvalue(), "out": out}


@pytest.mark.trains
def test_export_cli_writes_fp32_int8_and_ort(cli_export):
    import onnxruntime as ort

    from speechkit.runtime import KwsModel

    status, stdout, err, out = (cli_export[k] for k in ("status", "stdout", "stderr", "out"))
    tmp_path = out.parent
    assert status == 0, err
    accuracies = re.search(r"fp32 ([\d.]+)%, int8 ([\d.]+)%", stdout)
    assert accuracies, stdout
    fp32, int8 = map(float, accuracies.groups())
    assert fp32 >= 90.0 and int8 >= fp32 - 1.0  # a trained model, and the gate let it through
    int8_path, = tmp_path.glob("*_int8.onnx")
    assert {p.name for p in tmp_path.iterdir()} == {"kws_tones.onnx", "kws_tones_int8.onnx", "kws_tones.ort", "kws_tones_int8.ort"}
    assert "mobile usability" in stdout and "sizes: kws_tones.onnx" in stdout
    fp32_model, int8_model = KwsModel(out), KwsModel(int8_path)
    assert int8_model.labels == fp32_model.labels == LABELS
    assert "quantization" in int8_model.metadata and fp32_model.clip_samples == CLIP
    assert json.loads(fp32_model.metadata["model"])["width"] == 1.0  # from the checkpoint's config
    # the .ort file runs in onnxruntime and agrees with the .onnx file
    audio = np.stack([tone_clip(np.random.default_rng(i), label) for i, label in enumerate(LABELS)])
    session = ort.InferenceSession(str(out.with_suffix(".ort")), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(session.run(["logits"], {"audio": audio})[0], fp32_model.logits(audio), atol=1e-4)
    assert (int8_model.logits(audio).argmax(1) == np.arange(4)).all()


@pytest.mark.trains
def test_export_cli_int8_gate_refuses_unless_forced(trained, tmp_path, capsys):
    out = tmp_path / "kws.onnx"
    # demand that int8 beats fp32 by 50 points: impossible, so the gate must refuse
    status, stdout, err = speechkit(["export", trained["checkpoint"], out, "--int8", "--max-int8-drop", "-50"], capsys)
    assert status == 2
    assert err.startswith("speechkit: error: ") and err.count("\n") == 1, err
    assert "int8 quantization loses too much" in err and "--force" in err and str(tmp_path / "kws_int8.onnx") in err
    assert out.is_file() and not (tmp_path / "kws_int8.onnx").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["kws.onnx"]  # no scratch files left behind

    status, stdout, err = speechkit(["export", trained["checkpoint"], out, "--int8", "--max-int8-drop", "-50", "--force"], capsys)
    assert status == 0, err
    assert "kept because of --force" in stdout and (tmp_path / "kws_int8.onnx").is_file()


@pytest.mark.trains
def test_export_cli_user_errors_are_one_line(trained, tmp_path, capsys):
    corrupt = tmp_path / "corrupt.ckpt"
    corrupt.write_bytes(b"not a checkpoint")
    cases = [
        ([tmp_path / "missing.ckpt", tmp_path / "m.onnx"], "no such checkpoint file"),
        ([corrupt, tmp_path / "m.onnx"], "not a readable PyTorch checkpoint"),
        ([trained["checkpoint"], tmp_path / "m.txt"], "must end in .onnx"),
        ([trained["checkpoint"], tmp_path / "m.onnx", "--int8", "--train-manifest", tmp_path / "none.jsonl.gz"], "no such manifest"),
    ]
    for argv, message in cases:
        status, _, err = speechkit(["export", *argv], capsys)
        assert status == 2 and err.startswith("speechkit: error: ") and message in err and err.count("\n") == 1, err


@pytest.mark.trains
@pytest.mark.parametrize("variant", ["kws_tones.onnx", "kws_tones_int8.onnx"])
def test_exported_trained_model_drives_the_streaming_detector(cli_export, variant):
    """End to end: checkpoint -> ONNX (fp32 and int8) -> torch-free detector finds the tones."""
    from speechkit.runtime import KeywordDetector

    path = cli_export["out"].parent / variant
    rng = np.random.default_rng(7)
    stream = (rng.standard_normal(8 * RATE) * 0.01).astype(np.float32)
    events = [("yes", 1.0), ("up", 3.0), ("no", 5.5)]
    for label, start in events:
        i = int(start * RATE)
        stream[i : i + int(0.35 * RATE)] += 0.4 * np.sin(2 * np.pi * FREQS[label] * np.arange(int(0.35 * RATE)) / RATE)
    detector = KeywordDetector(path, thresholds=0.8)
    detections = [d for i in range(0, len(stream), 1600) for d in detector.accept_waveform(stream[i : i + 1600], RATE)]
    detections += detector.input_finished()
    # A barely trained model's scores depend on the CPU's kernels (avx512 / avx2 / default): assert
    # what must hold on every CPU, not the exact list. Each tone is found once, within half a
    # second of its span, and at most one other detection (a repeat or a confusion) occurs.
    matched = []
    for label, start in events:
        near = [d for d in detections if d["keyword"] == label and start - 0.5 <= d["time"] <= start + 0.35 + 0.5]
        assert near, (label, detections)
        matched.append(near[0])
    assert len(detections) - len(matched) <= 1, detections
    assert all(d["score"] >= 0.8 for d in detections)
