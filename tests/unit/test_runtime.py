"""The torch-free runtime: model loading, streaming detector, calibration, eval-stream, demo CLI.

The model here is a stand-in KWS artifact built with onnx.helper (no torch, instant): its
logits are the log power of the input at one tone frequency per keyword, against a constant
filler logit. A tone at 500 Hz is "yes", 1000 Hz is "no", so streams with known keyword times
are just tones in noise.
"""

from __future__ import annotations

import json
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from speechkit.errors import AudioError, ModelFileError, SpeechkitError

RATE = 16000
CLIP = 8000  # 0.5 s clips keep the stand-in small
FREQS = {"yes": 500.0, "no": 1000.0}
LABELS = ["_silence_", "yes", "no"]


def tone_model(
    path: Path, labels=LABELS, task: str = "kws", metadata: bool = True, floor_power: float = 0.05,
    overrides: dict[str, str] | None = None,
) -> Path:
    """Write a KWS artifact whose keyword logits are 3 * log(tone power) (see module docstring)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    t = np.arange(CLIP) / RATE
    freqs = [FREQS[k] for k in labels[1:]]
    cos = np.stack([np.cos(2 * np.pi * f * t) for f in freqs], 1).astype(np.float32)
    sin = np.stack([np.sin(2 * np.pi * f * t) for f in freqs], 1).astype(np.float32)
    consts = {
        "cos": cos, "sin": sin, "scale": np.float32(4.0 / CLIP**2), "eps": np.float32(1e-8), "gain": np.float32(3.0),
        "zero": np.array([0], np.int64), "one": np.array([1], np.int64), "zerof": np.float32(0.0),
        "filler": np.float32(3.0 * np.log(floor_power)),
    }
    nodes = [
        helper.make_node("MatMul", ["audio", "cos"], ["c"]),
        helper.make_node("MatMul", ["audio", "sin"], ["s"]),
        helper.make_node("Mul", ["c", "c"], ["c2"]),
        helper.make_node("Mul", ["s", "s"], ["s2"]),
        helper.make_node("Add", ["c2", "s2"], ["p0"]),
        helper.make_node("Mul", ["p0", "scale"], ["p"]),
        helper.make_node("Add", ["p", "eps"], ["pe"]),
        helper.make_node("Log", ["pe"], ["lp"]),
        helper.make_node("Mul", ["lp", "gain"], ["tone_logits"]),
        helper.make_node("Slice", ["tone_logits", "zero", "one", "one"], ["first"]),
        helper.make_node("Mul", ["first", "zerof"], ["zcol"]),
        helper.make_node("Add", ["zcol", "filler"], ["filler_col"]),
        helper.make_node("Concat", ["filler_col", "tone_logits"], ["logits"], axis=1),
    ]
    graph = helper.make_graph(
        nodes, "tone_kws", [helper.make_tensor_value_info("audio", TensorProto.FLOAT, ["batch", CLIP])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", len(labels)])],
        [numpy_helper.from_array(np.asarray(v), k) for k, v in consts.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    if metadata:
        helper.set_model_props(model, {
            "speechkit.task": task, "labels": json.dumps(list(labels)), "sample_rate": str(RATE),
            "clip_samples": str(CLIP), "frontend": json.dumps({"class": "ToneProjection"}),
            "model": json.dumps({"class": "ToneModel"}), "speechkit_version": "0.1.0", **(overrides or {}),
        })
    onnx.save(model, str(path))
    return path


def tone_stream(events, seconds: float, amp: float = 0.5, noise: float = 0.01, seed: int = 0) -> np.ndarray:
    """Noise with a tone for each ``(keyword, start_s, end_s)``; (T,) float32 at 16 kHz."""
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(int(seconds * RATE)) * noise).astype(np.float32)
    for keyword, start, end in events:
        i0, i1 = int(start * RATE), int(end * RATE)
        x[i0:i1] += amp * np.sin(2 * np.pi * FREQS[keyword] * np.arange(i1 - i0) / RATE)
    return x


EVENTS = [("yes", 1.0, 1.4), ("no", 3.0, 3.4), ("yes", 4.5, 4.9)]


@pytest.fixture(scope="module")
def model_path(tmp_path_factory) -> Path:
    return tone_model(tmp_path_factory.mktemp("runtime") / "tone_kws.onnx")


def run_detector(detector, audio: np.ndarray, chunk: int, rate: int = RATE) -> list[dict]:
    out = []
    for i in range(0, len(audio), chunk):
        out += detector.accept_waveform(audio[i : i + chunk], rate)
    return out + detector.input_finished()


def speechkit_cli(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "speechkit", *args], input=stdin, capture_output=True, timeout=120,
    )


# -- import hygiene ----------------------------------------------------------------------------


def test_runtime_import_does_not_import_torch():
    code = (
        "import sys, speechkit.runtime, speechkit.runtime.artifact, speechkit.runtime.classifier, speechkit.runtime.calibrate, speechkit.runtime.eval_stream, "
        "speechkit.runtime.mic, speechkit.cli.runtime_cmd\n"
        "bad = [m for m in ('torch', 'lightning', 'lhotse') if m in sys.modules]\n"
        "assert not bad, bad"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


# -- model loading -----------------------------------------------------------------------------


def test_kws_model_reads_contract_metadata(model_path):
    from speechkit.runtime import KwsModel

    model = KwsModel(model_path)
    assert (model.labels, model.sample_rate, model.clip_samples) == (LABELS, RATE, CLIP)
    probs = model.probabilities(np.zeros((3, CLIP), np.float32))
    assert probs.shape == (3, 3)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)


def test_kws_model_file_errors_are_one_line(tmp_path):
    from speechkit.runtime import KwsModel

    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"\x08\x01garbage that is not a protobuf model")
    cases = {
        tmp_path / "missing.onnx": "no such model file",
        corrupt: "not a loadable ONNX model",
        tone_model(tmp_path / "asr.onnx", task="asr-ctc"): "is a 'asr-ctc' model, expected 'kws'$",
        tone_model(tmp_path / "plain.onnx", metadata=False): "without speechkit metadata",
        tone_model(tmp_path / "clip.onnx", overrides={"clip_samples": "16000"}): r"expected \[batch, 16000\]",
        tone_model(tmp_path / "labels.onnx", overrides={"labels": json.dumps(["a", "b"])}): "3 logits but 2 labels",
        tone_model(tmp_path / "rate.onnx", overrides={"sample_rate": "fast"}): "expected a positive integer",
        tmp_path: "is a folder",
    }
    for path, message in cases.items():
        with pytest.raises(ModelFileError, match=message) as info:
            KwsModel(path)
        assert "\n" not in str(info.value)


# -- streaming detector ------------------------------------------------------------------------


@pytest.mark.parametrize("chunk", [37, 1600, 7919, 10**6])
def test_detector_fires_once_per_keyword_at_the_right_time(model_path, chunk):
    from speechkit.runtime import KeywordDetector

    detections = run_detector(KeywordDetector(model_path), tone_stream(EVENTS, 6.0), chunk)
    assert [d["keyword"] for d in detections] == ["yes", "no", "yes"]
    for det, (_, start, end) in zip(detections, EVENTS):
        assert start - 0.2 <= det["time"] <= end, det
        assert 0.5 <= det["score"] <= 1.0


def test_detector_results_do_not_depend_on_chunking(model_path):
    from speechkit.runtime import KeywordDetector

    audio = tone_stream(EVENTS, 6.0)
    reference = run_detector(KeywordDetector(model_path), audio, len(audio))
    detector = KeywordDetector(model_path)
    assert run_detector(detector, audio, 1) == reference  # one sample at a time
    detector.reset()
    assert run_detector(detector, audio, 333) == reference


def test_detector_resamples_and_mixes_any_input(model_path):
    import soxr

    from speechkit.runtime import KeywordDetector

    audio = tone_stream(EVENTS, 6.0)
    up = soxr.resample(audio, RATE, 48000)
    stereo = np.stack([up, 0.5 * up], axis=1)
    int16 = (np.clip(audio, -1, 1) * 32767).astype(np.int16)
    expected = run_detector(KeywordDetector(model_path), audio, 1600)
    for samples, rate in ((stereo, 48000), (int16, RATE)):
        got = run_detector(KeywordDetector(model_path), samples, rate // 10, rate)
        assert [d["keyword"] for d in got] == [d["keyword"] for d in expected]
        # the 48 kHz resampler's delay may move a crossing by one 100 ms hop
        assert np.allclose([d["time"] for d in got], [d["time"] for d in expected], atol=0.11)


def test_detector_rearm_and_refractory_keep_one_utterance_to_one_detection(model_path):
    from speechkit.runtime import KeywordDetector

    # a 3 s keyword stays above threshold: re-arming needs a dip, so it fires once even with
    # no refractory period
    long_one = tone_stream([("yes", 1.0, 4.0)], 5.0)
    assert len(run_detector(KeywordDetector(model_path, refractory_s=0.0), long_one, 1600)) == 1
    # two occurrences 1 s apart: the refractory period decides whether the second one counts
    two = tone_stream([("yes", 1.0, 1.4), ("yes", 2.0, 2.4)], 3.5)
    assert len(run_detector(KeywordDetector(model_path), two, 1600)) == 2  # default: one clip (0.5 s)
    assert len(run_detector(KeywordDetector(model_path, refractory_s=1.5), two, 1600)) == 1


def test_detector_thresholds_per_keyword(model_path):
    from speechkit.runtime import KeywordDetector

    audio = tone_stream(EVENTS, 6.0)
    only_no = run_detector(KeywordDetector(model_path, thresholds={"yes": 1.01}), audio, 1600)
    assert [d["keyword"] for d in only_no] == ["no"]
    with pytest.raises(SpeechkitError, match="not keywords"):
        KeywordDetector(model_path, thresholds={"maybe": 0.5})
    with pytest.raises(SpeechkitError, match="thresholds must be"):
        KeywordDetector(model_path, thresholds=0.0)


def test_detector_vad_skips_windows_without_speech(model_path):
    from speechkit.runtime import KeywordDetector

    audio = tone_stream(EVENTS, 6.0)
    counts = {}
    for vad in (None, 3):
        detector = KeywordDetector(model_path, vad=vad)
        evaluated = [0]
        probabilities = detector.model.probabilities

        def counting(windows, probabilities=probabilities, evaluated=evaluated):
            evaluated[0] += len(windows)
            return probabilities(windows)

        detector.model.probabilities = counting
        assert [d["keyword"] for d in run_detector(detector, audio, 1600)] == ["yes", "no", "yes"]
        counts[vad] = evaluated[0]
    assert counts[3] < 0.7 * counts[None]
    with pytest.raises(SpeechkitError, match="aggressiveness"):
        KeywordDetector(model_path, vad=7)


def test_detector_level_gate_never_fires_on_digital_silence(tmp_path):
    from speechkit.runtime import KeywordDetector

    # A stand-in whose filler logit is so low that silence scores 0.5 for each keyword: it
    # fires at 0.0 s on silence (the "up at 0.0 s on 70 min of digital silence").
    eager = tone_model(tmp_path / "eager.onnx", floor_power=1e-12)
    silence = np.zeros(70 * RATE, np.float32)
    open_gate = run_detector(KeywordDetector(eager, silence_db=None), silence, RATE)
    assert open_gate and open_gate[0]["time"] == 0.0  # the test can fail: without the gate it fires
    detector = KeywordDetector(eager)
    assert run_detector(detector, silence, RATE) == []
    assert detector.level_db == -120.0
    near_silence = (np.random.default_rng(0).standard_normal(10 * RATE) * 3e-4).astype(np.float32)  # -70 dBFS
    assert run_detector(KeywordDetector(eager), near_silence, 1600) == []
    # the gate spares real input: keywords in -40 dBFS noise are still found
    audio = tone_stream(EVENTS, 6.0)
    assert [d["keyword"] for d in run_detector(KeywordDetector(eager), audio, 1600)][:1] == ["yes"]
    # ... and the windowed model is not even run on gated windows
    detector = KeywordDetector(eager)
    calls = [0]
    probabilities = detector.model.probabilities

    def counting(windows):
        calls[0] += len(windows)
        return probabilities(windows)

    detector.model.probabilities = counting
    run_detector(detector, np.concatenate([silence[: 5 * RATE], audio]), 1600)
    assert 0 < calls[0] <= 6 * 10 + 11  # the audio's 6 s (+ the clip straddling it), not the silence


def test_demo_kws_stereo_file_is_mixed_down_and_silence_gives_nothing(tmp_path, model_path):
    from speechkit.audio import save_audio

    # Left: a "yes" tone in noise; right: the same tone inverted. Mixed to mono the tone
    # cancels; a reader that took one channel would hear "yes".
    rng = np.random.default_rng(1)
    tone = 0.5 * np.sin(2 * np.pi * FREQS["yes"] * np.arange(2 * RATE) / RATE)
    noise = 0.3 * rng.standard_normal((2 * RATE, 2))
    stereo = np.clip(np.stack([tone, -tone], axis=1) + noise, -1, 1).astype(np.float32)
    save_audio(tmp_path / "stereo.wav", stereo, RATE)
    save_audio(tmp_path / "left.wav", stereo[:, 0], RATE)
    save_audio(tmp_path / "silence.wav", np.zeros(70 * RATE, np.float32), RATE)
    eager = tone_model(tmp_path / "eager.onnx", floor_power=1e-12)
    expected = {("stereo", model_path): [], ("left", model_path): ["yes"], ("silence", eager): []}
    for (name, model), keywords in expected.items():
        result = speechkit_cli("demo", "kws", "--model", str(model), "--input", str(tmp_path / f"{name}.wav"))
        assert result.returncode == 0, result.stderr.decode()
        assert [json.loads(line)["keyword"] for line in result.stdout.decode().splitlines()] == keywords, name


def test_trigger_rising_edge_rearm_and_refractory():
    from speechkit.runtime.kws import Trigger

    times = np.arange(10) * 0.1
    scores = np.array([[0.1], [0.6], [0.7], [0.4], [0.8], [0.2], [0.2], [0.2], [0.9], [0.9]], np.float32)
    assert Trigger([0.5], refractory_s=0.0)(times, scores) == [(1, 0), (4, 0), (8, 0)]
    assert Trigger([0.5], refractory_s=0.5)(times, scores) == [(1, 0), (8, 0)]
    trigger = Trigger([0.5], refractory_s=0.0)  # state carries over between calls
    first, rest = trigger(times[:2], scores[:2]), trigger(times[2:], scores[2:])  # indices per call
    assert first + [(n + 2, k) for n, k in rest] == [(1, 0), (4, 0), (8, 0)]
    two = np.array([[0.1, 0.1], [0.6, 0.9]], np.float32)  # simultaneous rise: highest score wins
    assert Trigger([0.5, 0.5], refractory_s=1.0)(times[:2], two) == [(1, 1)]


# -- audio sources -----------------------------------------------------------------------------


def test_pcm16_reader_carries_partial_frames():
    import io

    from speechkit.runtime.audio import iter_pcm16

    samples = np.arange(-50, 50, dtype=np.int16).repeat(2)  # 100 stereo frames
    data = samples.astype("<i2").tobytes() + b"\x01"  # plus a stray byte
    blocks = list(iter_pcm16(io.BytesIO(data), sample_rate=1000, channels=2, block_seconds=0.007))
    joined = np.concatenate([b for b, _ in blocks])
    assert joined.shape == (100, 2) and {r for _, r in blocks} == {1000}
    np.testing.assert_allclose(joined[:, 0] * 32768, np.arange(-50, 50))


def test_audio_file_reader_errors(tmp_path):
    from speechkit.runtime.audio import iter_audio_file

    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF0000WAVEnot really")
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    for path, message in ((tmp_path / "nope.wav", "no such audio file"), (bad, "cannot read audio"), (empty, "empty")):
        with pytest.raises(AudioError, match=message):
            next(iter_audio_file(path))


def test_stream_converter_matches_whole_file_resampling():
    import soxr

    from speechkit.runtime.audio import StreamConverter

    x = np.sin(2 * np.pi * 440 * np.arange(44100) / 44100).astype(np.float32)
    conv = StreamConverter(16000)
    chunked = np.concatenate([conv(x[i : i + 1000], 44100) for i in range(0, len(x), 1000)] + [conv.flush()])
    whole = soxr.resample(x, 44100, 16000, quality="HQ")
    assert abs(len(chunked) - len(whole)) <= 1
    n = min(len(chunked), len(whole))
    assert np.max(np.abs(chunked[:n] - whole[:n])) < 1e-3


# -- microphone --------------------------------------------------------------------------------


def test_microphone_errors_name_what_to_install(monkeypatch):
    from speechkit.runtime import mic

    monkeypatch.setitem(sys.modules, "sounddevice", None)  # import fails: not installed
    with pytest.raises(SpeechkitError, match=r"pip install 'speechkit\[demo\]'"):
        next(mic.iter_microphone())

    no_input = types.SimpleNamespace(query_devices=lambda device, kind: (_ for _ in ()).throw(ValueError("No input device matching")))
    monkeypatch.setitem(sys.modules, "sounddevice", no_input)
    with pytest.raises(SpeechkitError, match="no usable microphone"):
        next(mic.iter_microphone())


def test_microphone_blocks_reach_the_detector_at_device_rate(monkeypatch, model_path):
    """A fake 44.1 kHz stereo device: the detector mixes and resamples what it delivers."""
    import soxr

    from speechkit.runtime import KeywordDetector, mic

    audio = soxr.resample(tone_stream(EVENTS[:1], 2.5), RATE, 44100)
    stereo = np.stack([audio, audio], axis=1).astype(np.float32)

    class FakeStream:
        def __init__(self, device, samplerate, channels, dtype, blocksize):
            assert (samplerate, channels, dtype) == (44100, 2, "float32")
            self.pos = 0

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def read(self, frames):
            if self.pos >= len(stereo):
                raise KeyboardInterrupt  # what Ctrl-C does to a live stream
            block = stereo[self.pos : self.pos + frames]
            self.pos += frames
            return block, False

    fake = types.SimpleNamespace(
        query_devices=lambda device, kind: {"name": "fake", "max_input_channels": 2, "default_samplerate": 44100.0},
        InputStream=FakeStream,
    )
    monkeypatch.setitem(sys.modules, "sounddevice", fake)
    detector = KeywordDetector(model_path)
    detections = []
    with pytest.raises(KeyboardInterrupt):
        for block, rate in mic.iter_microphone():
            assert block.shape[1] == 2 and rate == 44100
            detections += detector.accept_waveform(block, rate)
    assert [d["keyword"] for d in detections] == ["yes"]


# -- calibration -------------------------------------------------------------------------------


def test_calibration_meets_the_false_alarm_budget(tmp_path):
    from speechkit.audio import save_audio
    from speechkit.runtime import KeywordDetector
    from speechkit.runtime.calibrate import calibrate

    model = tone_model(tmp_path / "kws.onnx")
    negatives = tmp_path / "negatives"
    rng = np.random.default_rng(1)
    seconds = 0.0
    for i in range(3):  # short bursts of the keyword tones at many levels: confusable negatives
        events = [("yes" if j % 2 else "no", 1.0 + 1.5 * j, 1.0 + 1.5 * j + rng.uniform(0.08, 0.3)) for j in range(12)]
        audio = tone_stream(events, 19.0, amp=0.5, seed=10 + i)
        save_audio(negatives / f"neg{i}.wav", audio, RATE)
        seconds += 19.0
    hours = seconds / 3600
    budget_per_hour = 3 / hours  # 3 false alarms per keyword allowed on these 57 s
    result = calibrate(model, negatives, fa_per_hour=budget_per_hour, min_threshold=0.05)
    assert result["allowed_false_alarms"] == 3 and result["negative_files"] == 3
    assert Path(result["path"]) == tmp_path / "kws.thresholds.json"
    saved = json.loads((tmp_path / "kws.thresholds.json").read_text())
    assert saved["thresholds"] == result["thresholds"]

    def false_alarms(thresholds) -> dict:
        counts = {"yes": 0, "no": 0}
        detector = KeywordDetector(model, thresholds=thresholds, refractory_s=result["refractory_s"])
        for path in sorted(negatives.glob("*.wav")):
            detector.reset()
            from speechkit.runtime.audio import read_audio

            for det in run_detector(detector, read_audio(path)[0], 1600):
                counts[det["keyword"]] += 1
        return counts

    for keyword, threshold in result["thresholds"].items():
        counts = false_alarms({keyword: threshold, **{k: 1.01 for k in result["thresholds"] if k != keyword}})
        assert counts[keyword] <= 3, (keyword, threshold, counts)
        assert result["false_alarms"][keyword] <= 3
        # the budget binds: a clearly lower threshold breaks it (so the pick is not needlessly high)
        lower = {keyword: threshold - 0.05, **{k: 1.01 for k in result["thresholds"] if k != keyword}}
        assert false_alarms(lower)[keyword] > 3
    # the detector picks the file up by default, with the calibrated settings
    detector = KeywordDetector(model)
    assert detector.thresholds == result["thresholds"]


def test_calibration_errors(tmp_path, model_path):
    from speechkit.runtime.calibrate import calibrate

    (tmp_path / "empty").mkdir()
    with pytest.raises(AudioError, match="no .wav"):
        calibrate(model_path, tmp_path / "empty", out=tmp_path / "t.json")
    with pytest.raises(AudioError, match="no such audio file or folder"):
        calibrate(model_path, tmp_path / "missing", out=tmp_path / "t.json")


# -- eval-stream -------------------------------------------------------------------------------


def test_match_detections_hand_made_case():
    from speechkit.runtime.eval_stream import Event, match_detections, stream_metrics

    events = [Event("yes", 1.0, 1.5), Event("no", 3.0, 3.5), Event("yes", 5.0, 5.5)]
    detections = [
        {"time": 0.6, "keyword": "yes", "score": 0.9},   # hits event 0 (within tolerance 0.5)
        {"time": 1.2, "keyword": "yes", "score": 0.9},   # second detection of event 0: false alarm
        {"time": 3.2, "keyword": "yes", "score": 0.9},   # wrong keyword: false alarm
        {"time": 6.1, "keyword": "yes", "score": 0.9},   # beyond end + tolerance: false alarm
    ]
    hit, false_alarms = match_detections(detections, events, tolerance_s=0.5)
    assert hit == [True, False, False]
    assert [d["time"] for d in false_alarms] == [1.2, 3.2, 6.1]
    metrics = stream_metrics(detections, events, hours=0.5, tolerance_s=0.5)
    assert metrics["recall"] == pytest.approx(1 / 3) and metrics["false_alarms_per_hour"] == pytest.approx(6.0)


def test_eval_stream_recall_false_alarms_and_det_png(tmp_path, model_path):
    from speechkit.audio import save_audio

    audio_events = EVENTS + [("yes", 7.5, 7.9)]  # the last one is not labelled: a false alarm
    save_audio(tmp_path / "stream.wav", tone_stream(audio_events, 9.0), RATE)
    labelled = [{"keyword": k, "start": s, "end": e} for k, s, e in EVENTS] + [{"keyword": "no", "start": 6.0, "end": 6.4}]
    (tmp_path / "events.json").write_text(json.dumps(labelled))
    result = speechkit_cli(
        "eval-stream", "--model", str(model_path), "--audio", str(tmp_path / "stream.wav"),
        "--events", str(tmp_path / "events.json"), "--det-png", str(tmp_path / "det.png"),
    )
    assert result.returncode == 0, result.stderr.decode()
    report = json.loads(result.stdout)
    assert report["recall"] == pytest.approx(3 / 4)  # the labelled "no" at 6 s is not in the audio
    assert report["false_alarms"] == 1
    assert report["false_alarms_per_hour"] == pytest.approx(1 / (9.0 / 3600), rel=1e-3)
    assert report["per_keyword"]["yes"]["recall"] == 1.0 and report["per_keyword"]["no"]["recall"] == 0.5
    assert (tmp_path / "det.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_eval_stream_det_sweep_is_monotonic_in_misses(tmp_path, model_path):
    from speechkit.audio import save_audio
    from speechkit.runtime.eval_stream import evaluate_stream

    save_audio(tmp_path / "s.wav", tone_stream(EVENTS, 6.0), RATE)
    (tmp_path / "e.json").write_text(json.dumps([{"keyword": k, "start": s, "end": e} for k, s, e in EVENTS]))
    result = evaluate_stream(model_path, tmp_path / "s.wav", tmp_path / "e.json")
    misses = [p["miss_rate"] for p in result["det"]]
    assert misses[0] == 0.0 and misses[-1] >= misses[0]
    assert all(b >= a for a, b in zip(misses, misses[1:]))


def test_eval_stream_rejects_bad_events(tmp_path, model_path):
    from speechkit.runtime.eval_stream import load_events

    bad = tmp_path / "bad.json"
    for content, message in (
        ("{}", "expected a JSON list"),
        ('[{"keyword": "yes", "start": 2}]', "entry 0"),
        ('[{"keyword": "maybe", "start": 1, "end": 2}]', "not one of the model's keywords"),
        ('[{"keyword": "yes", "start": 3, "end": 2}]', "start <= end"),
        ("not json", "not valid JSON"),
    ):
        bad.write_text(content)
        with pytest.raises(SpeechkitError, match=message):
            load_events(bad, ["yes", "no"])


# -- demo CLI ----------------------------------------------------------------------------------


def test_demo_kws_file_and_stdin_print_json_lines(tmp_path, model_path):
    from speechkit.audio import save_audio

    audio = tone_stream(EVENTS, 6.0)
    save_audio(tmp_path / "stream.wav", audio, RATE)
    from_file = speechkit_cli("demo", "kws", "--model", str(model_path), "--input", str(tmp_path / "stream.wav"))
    assert from_file.returncode == 0, from_file.stderr.decode()
    assert from_file.stderr == b""  # not a TTY: no live display
    lines = [json.loads(line) for line in from_file.stdout.decode().splitlines()]
    assert [d["keyword"] for d in lines] == ["yes", "no", "yes"]
    assert set(lines[0]) == {"time", "keyword", "score"}
    for det, (_, start, end) in zip(lines, EVENTS):
        assert start - 0.2 <= det["time"] <= end

    # raw s16le stereo at 8 kHz on stdin
    import soxr

    low = soxr.resample(audio, RATE, 8000)
    pcm = (np.clip(np.stack([low, low], axis=1), -1, 1) * 32767).astype("<i2").tobytes()
    from_stdin = speechkit_cli("demo", "kws", "--model", str(model_path), "--input", "-", "--rate", "8000", "--channels", "2", stdin=pcm)
    assert from_stdin.returncode == 0, from_stdin.stderr.decode()
    piped = [json.loads(line) for line in from_stdin.stdout.decode().splitlines()]
    assert [d["keyword"] for d in piped] == ["yes", "no", "yes"]
    assert np.allclose([d["time"] for d in piped], [d["time"] for d in lines], atol=0.11)


def test_demo_kws_user_errors_are_one_line(tmp_path, model_path):
    bad_audio = tmp_path / "bad.wav"
    bad_audio.write_bytes(b"not audio at all")
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"garbage")
    scene = tone_model(tmp_path / "scene.onnx", task="scene")
    cases = [
        (["--model", str(tmp_path / "missing.onnx"), "--input", str(bad_audio)], "no such model file"),
        (["--model", str(corrupt), "--input", str(bad_audio)], "not a loadable ONNX model"),
        (["--model", str(scene), "--input", str(bad_audio)], "is a 'scene' model, expected 'kws'"),
        (["--model", str(model_path), "--input", str(bad_audio)], "cannot read audio"),
        (["--model", str(model_path), "--input", str(tmp_path / "nope.wav")], "no such audio file"),
        (["--model", str(model_path), "--input", "-", "--threshold", "yes=high"], "--threshold"),
    ]
    for args, message in cases:
        result = speechkit_cli("demo", "kws", *args, stdin=b"")
        err = result.stderr.decode()
        assert result.returncode == 2, err
        assert err.startswith("speechkit: error: ") and message in err and err.count("\n") == 1, err


# -- clip classifier (any task) and `speechkit classify` ---------------------------------------


def test_clip_classifier_windows_long_files_and_pads_short_ones(tmp_path):
    from speechkit.runtime import ClipClassifier, KwsModel

    scene = tone_model(tmp_path / "scene.onnx", task="scene")
    classifier = ClipClassifier(scene)
    assert (classifier.task, classifier.labels, classifier.clip_samples) == ("scene", LABELS, CLIP)
    x = np.arange(2 * CLIP + 100, dtype=np.float32)
    windows = classifier.windows(x)  # two clips, then the file's last clip (overlapping)
    assert windows.shape == (3, CLIP) and windows[2][-1] == x[-1] and windows[1][0] == CLIP
    short = classifier.windows(np.ones(100, np.float32))
    assert short.shape == (1, CLIP) and short[0, :100].all() and not short[0, 100:].any()
    # 0.3 s of "no" then 1.2 s of "yes": the average over the windows says "yes"
    audio = tone_stream([("no", 0.0, 0.3), ("yes", 0.3, 1.5)], 1.5, noise=0.0)
    result = classifier.classify(audio)
    assert result["label"] == "yes" and result["windows"] == 3
    assert result["score"] == max(result["probabilities"].values()) and 0.5 < result["score"] <= 1.0
    assert sum(result["probabilities"].values()) == pytest.approx(1.0, abs=1e-3)
    assert ClipClassifier(scene, tasks=("scene", "kws")).task == "scene"
    for make in (lambda: ClipClassifier(scene, tasks=("kws",)), lambda: KwsModel(scene)):
        with pytest.raises(ModelFileError, match="is a 'scene' model, expected 'kws'$"):
            make()


def test_classify_cli_prints_one_json_line_per_file(tmp_path):
    import soundfile as sf

    scene = tone_model(tmp_path / "scene.onnx", task="scene")
    files = []
    for name, keyword in (("a.wav", "yes"), ("b.wav", "no")):
        audio = tone_stream([(keyword, 0.1, 1.9)], 2.0)
        # 8 kHz stereo: the classifier resamples and mixes down
        sf.write(tmp_path / name, np.stack([audio, audio], 1)[::2], RATE // 2)
        files.append(tmp_path / name)
    result = speechkit_cli("classify", "--model", str(scene), *map(str, files))
    assert result.returncode == 0, result.stderr.decode()
    lines = [json.loads(line) for line in result.stdout.decode().splitlines()]
    assert [(d["file"], d["label"]) for d in lines] == [(str(files[0]), "yes"), (str(files[1]), "no")]
    assert all(set(d) == {"file", "label", "score"} and 0.5 < d["score"] <= 1.0 for d in lines)
    errors = [
        (["--model", str(scene), str(tmp_path / "missing.wav")], "no such audio file"),
        (["--model", str(tmp_path / "none.onnx"), str(files[0])], "no such model file"),
        (["--model", str(scene), "--task", "kws", str(files[0])], "is a 'scene' model, expected 'kws'"),
    ]
    for args, message in errors:
        result = speechkit_cli("classify", *args)
        err = result.stderr.decode()
        assert result.returncode == 2 and err.startswith("speechkit: error: ") and message in err and err.count("\n") == 1, err


def test_demo_modes_are_declared_by_runtime_modules():
    """`speechkit demo kws|asr` come from `DEMO_MODE` in runtime modules (a new mode: see
    tests/unit/test_cli_discovery.py, which adds one without touching speechkit/cli)."""
    from speechkit.cli.main import build_parser
    from speechkit.runtime.demo import demo_modes
    from speechkit.runtime.kws_demo import run_kws_demo

    assert [m.name for m in demo_modes()][:2] == ["kws", "asr"]
    args = build_parser().parse_args(["demo", "kws", "--model", "m.onnx", "--input", "-"])
    assert args.func is run_kws_demo and args.input == "-"
