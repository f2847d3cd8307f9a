"""The stateful streaming KWS artifact: export parity, runtime == torch streaming, detector, CLI.

One tiny ``StreamingBCResNet`` (random weights with BatchNorm statistics fitted to audio) is
exported once per module; the checks compare the torch-free runtime with PyTorch on the same
model, so they hold whatever the untrained model predicts.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from speechkit.errors import ModelFileError
from speechkit.frontends import LogMel
from speechkit.models.kws import StreamingBCResNet

RATE = 16000
LABELS = ["_unknown_", "yes", "no"]


def _audio(seconds: float, seed: int = 0) -> np.ndarray:
    """Noise with tone bursts whose loudness changes: (S,) float32 at 16 kHz."""
    rng = np.random.default_rng(seed)
    n = int(seconds * RATE)
    t = np.arange(n) / RATE
    x = 0.02 * rng.standard_normal(n) * (1 + np.sin(2 * np.pi * 0.3 * t) ** 2)
    x += 0.3 * np.sin(2 * np.pi * 700 * t) * (np.sin(2 * np.pi * 0.7 * t) > 0.6)
    return x.astype(np.float32)


def _task():
    from speechkit.tasks.kws_stream import StreamingKwsTask

    torch.manual_seed(0)
    frontend = LogMel(center=False)
    model = StreamingBCResNet(num_classes=len(LABELS), window_frames=98, norm_frames=100).train()
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = None
    with torch.no_grad():
        model(frontend(torch.from_numpy(np.stack([_audio(1.0, seed=s) for s in range(8)])))[0])
    return StreamingKwsTask(model=model.eval(), frontend=frontend, labels=LABELS, clip_samples=RATE).eval()


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    from speechkit.export.kws_streaming import export_streaming_kws_artifacts

    task = _task()
    out = tmp_path_factory.mktemp("kws_stream") / "kws.onnx"
    result = export_streaming_kws_artifacts(task, out, log=lambda line: None)
    return task, result


def torch_stream_logits(task, audio: np.ndarray) -> np.ndarray:
    """The torch streaming reference: frames of ``[n_fft - hop zeros, audio]``, every frame's pooled logits."""
    frontend = task.frontend
    padded = np.concatenate([np.zeros(frontend.n_fft - frontend.hop_length, np.float32), audio])
    with torch.no_grad():
        feats, _ = frontend(torch.from_numpy(padded)[None])
        state = task.model.initial_state(1)
        logits, _ = task.model.streaming_forward(feats, state)
    return logits[0].numpy()


def test_export_writes_both_artifacts_with_parity(exported):
    from speechkit.runtime import KwsModel, StreamingKwsModel

    task, result = exported
    assert result["onnx"].is_file() and result["stream"].is_file()
    assert result["stream"].name == "kws_stream.onnx"
    assert result["stream_parity_max_diff"] <= 1e-4
    clip = KwsModel(result["onnx"])  # the fixed-window artifact is the model's forward
    audio = _audio(1.0, seed=3)[None]
    with torch.no_grad():
        expected = task(torch.from_numpy(audio)).numpy()
    np.testing.assert_allclose(clip.logits(audio), expected, atol=1e-4)
    stream = StreamingKwsModel(result["stream"])
    assert stream.labels == LABELS and stream.sample_rate == RATE
    assert (stream.hop_length, stream.frame_length, stream.window_frames) == (160, 512, 98)
    assert stream.state_shapes[0] == (1, 352)
    assert [tuple(s.shape) for s in task.model.initial_state(1)] == stream.state_shapes[1:]
    names = json.loads(stream.metadata["state_names"])
    assert names[:4] == ["audio", "frames_seen", "pooling", "input_norm"] and len(names) == len(stream.state_shapes)


def test_runtime_scores_equal_torch_streaming_forward_over_odd_chunks(exported):
    from speechkit.runtime import StreamingKwsModel

    task, result = exported
    audio = _audio(7.3, seed=5)
    audio = audio[: len(audio) // 160 * 160]
    model = StreamingKwsModel(result["stream"])
    sizes = [1234, 77, 5003, 160, 1, 999, 16000]
    times, probs, start, i = [], [], 0, 0
    while start < len(audio):
        t, p = model.accept(audio[start : start + sizes[i % len(sizes)]])
        times.append(t)
        probs.append(p)
        start += sizes[i % len(sizes)]
        i += 1
    times, probs = np.concatenate(times), np.concatenate(probs)
    expected = torch.softmax(torch.from_numpy(torch_stream_logits(task, audio)), -1).numpy()
    assert probs.shape == expected.shape == (len(audio) // 160, 3)
    np.testing.assert_allclose(probs, expected, atol=1e-4)
    np.testing.assert_allclose(times, np.arange(1, len(probs) + 1) * 0.01)
    # logits too, from a fresh stream in one call
    model.reset()
    np.testing.assert_allclose(model.logits(audio), torch_stream_logits(task, audio), atol=1e-4)


def test_detector_on_stateful_artifact_reads_the_hop_frames(exported):
    from speechkit.runtime import KeywordDetector

    task, result = exported
    audio = _audio(4.0, seed=6)
    detector = KeywordDetector(result["stream"], thresholds=0.99, smoothing=1, silence_db=None)
    scorer = detector.scorer
    pieces = [scorer.accept(audio[i : i + 777], RATE) for i in range(0, len(audio), 777)] + [scorer.finish()]
    times = np.concatenate([p[0] for p in pieces])
    scores = np.concatenate([p[1] for p in pieces])
    np.testing.assert_allclose(times, np.arange(1, 41) * 0.1)
    frames = torch.softmax(torch.from_numpy(torch_stream_logits(task, audio)), -1).numpy()
    np.testing.assert_allclose(scores, frames[9::10][:, [1, 2]], atol=1e-4)
    # same evaluations whatever the chunking, and whatever the audio per model call
    scorer.reset()
    t2, s2 = scorer.accept(audio, RATE)
    np.testing.assert_allclose(s2, scores, atol=1e-6)
    batched = KeywordDetector(result["stream"], thresholds=0.99, smoothing=1, silence_db=None, call_ms=320).scorer
    assert batched.call == 4 * 1600  # 320 ms rounded up to whole 100 ms hops
    pieces = [batched.accept(audio[i : i + 1600], RATE) for i in range(0, len(audio), 1600)]
    assert [len(p[0]) for p in pieces[:8]] == [0, 0, 0, 4, 0, 0, 0, 4]  # a call every 4 hops
    pieces.append(batched.finish())
    np.testing.assert_allclose(np.concatenate([p[1] for p in pieces]), scores, atol=1e-5)
    np.testing.assert_allclose(np.concatenate([p[0] for p in pieces]), times)


def test_detector_level_gate_zeroes_silence_for_both_artifacts(exported):
    from speechkit.runtime import KeywordDetector

    _, result = exported
    silence = np.zeros(5 * RATE, np.float32)
    for path in (result["onnx"], result["stream"]):
        gated = KeywordDetector(path, thresholds=0.5, smoothing=1)
        times, scores = gated.scorer.accept(silence, RATE)
        assert len(times) == 50 and not scores.any()
        open_gate = KeywordDetector(path, thresholds=0.5, smoothing=1, silence_db=None)
        _, ungated = open_gate.scorer.accept(silence, RATE)
        assert ungated.max() > 0.05  # the model itself does score silence


def test_demo_kws_runs_the_stateful_artifact_on_a_file(exported, tmp_path):
    from speechkit.audio import save_audio

    _, result = exported
    stereo = np.stack([_audio(3.0, seed=8), _audio(3.0, seed=9)], axis=1)
    save_audio(tmp_path / "stereo.wav", stereo, RATE)
    out = subprocess.run(
        [sys.executable, "-m", "speechkit", "demo", "kws", "--model", str(result["stream"]),
         "--input", str(tmp_path / "stereo.wav"), "--threshold", "0.01"],
        capture_output=True, timeout=120,
    )
    assert out.returncode == 0, out.stderr.decode()
    lines = [json.loads(line) for line in out.stdout.decode().splitlines()]
    assert lines and set(lines[0]) == {"time", "keyword", "score"}  # threshold 0.01: something fires


def test_calibrate_and_eval_stream_take_the_stateful_artifact(exported, tmp_path):
    from speechkit.audio import save_audio
    from speechkit.runtime import KeywordDetector
    from speechkit.runtime.calibrate import calibrate
    from speechkit.runtime.eval_stream import evaluate_stream

    _, result = exported
    model = tmp_path / "kws_stream.onnx"
    model.write_bytes(result["stream"].read_bytes())
    save_audio(tmp_path / "negatives.wav", _audio(20.0, seed=10), RATE)
    calibrated = calibrate(model, tmp_path / "negatives.wav", fa_per_hour=0.0)
    assert set(calibrated["thresholds"]) == {"yes", "no"} and sum(calibrated["false_alarms"].values()) == 0
    detector = KeywordDetector(model)  # picks up kws_stream.thresholds.json
    assert detector.thresholds == calibrated["thresholds"]
    (tmp_path / "events.json").write_text(json.dumps([{"keyword": "yes", "start": 1.0, "end": 1.5}]))
    report = evaluate_stream(model, tmp_path / "negatives.wav", tmp_path / "events.json")
    assert report["false_alarms"] == 0 and report["events"] == 1  # the calibrated thresholds hold on the same audio


def test_export_refuses_a_centred_frontend_and_a_clip_network():
    from speechkit.export.kws_streaming import export_streaming_kws, frontend_geometry, stream_path
    from speechkit.models.kws import BCResNet

    with pytest.raises(ModelFileError, match="center=False"):
        frontend_geometry(LogMel(center=True))
    with pytest.raises(ModelFileError, match="no streaming_forward"):
        export_streaming_kws(LogMel(center=False), BCResNet(num_classes=3), LABELS, RATE, RATE, "x.onnx")
    assert stream_path(Path("out/kws.onnx")) == Path("out/kws_stream.onnx")


def test_streaming_task_is_served_by_the_kws_streaming_exporter():
    from speechkit.export.registry import exporter_for

    assert exporter_for(_task()).name == "kws-streaming"
