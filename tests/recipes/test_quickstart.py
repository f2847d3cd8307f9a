"""`speechkit quickstart` end to end at a tiny scale: every stage runs and lands in one run folder."""

from __future__ import annotations

import json
from pathlib import Path

from speechkit.cli.main import main


def test_quickstart_custom_wake_word_end_to_end(tmp_path, capsys):
    out = tmp_path / "run"
    status = main([
        "quickstart", "--keywords", "hey computer,stop", "--out", str(out),
        "--speakers", "10", "--epochs", "1", "--stream-keywords", "4",
    ])
    assert status == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["keywords"] == ["hey computer", "stop"]
    assert 0.0 <= summary["test_accuracy"] <= 1.0
    assert summary["num_params"] > 0
    for key in ("onnx", "stream_wav", "demo_detections", "checkpoint"):
        assert Path(summary[key]).is_file() and Path(summary[key]).is_relative_to(out)
    assert (out / "kws.onnx").stat().st_size > 10_000
    labels = json.loads((out / "manifests" / "labels.json").read_text())
    assert set(labels) == {"_silence_", "_unknown_", "hey_computer", "stop"}
    assert (out / "corpus" / "hey_computer").is_dir()
    events = json.loads((out / "stream_events.json").read_text())
    assert len(events) == 4 and {e["keyword"] for e in events} <= {"hey_computer", "stop"}
    assert 0.0 <= summary["stream_recall"] <= 1.0
    printed = capsys.readouterr().out
    assert "speechkit quickstart: summary" in printed and "test accuracy" in printed


def test_quickstart_never_writes_over_an_earlier_run(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "precious.txt").write_text("mine")
    assert main(["quickstart", "--out", str(out)]) == 2
    assert "not empty" in capsys.readouterr().err
    assert (out / "precious.txt").read_text() == "mine"
