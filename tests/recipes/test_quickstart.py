"""`speechkit quickstart` end to end at a tiny scale: every stage runs and lands in one run folder."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from speechkit.cli.main import main
from speechkit.data.manifests import read_cuts


@pytest.mark.trains
def test_quickstart_custom_wake_word_end_to_end(tmp_path, capsys):
    out = tmp_path / "run"
    status = main([
        "quickstart", "--keywords", "hey computer,stop", "--out", str(out),
        "--speakers", "10", "--epochs", "1", "--stream-keywords", "4",
        "--negative-minutes", "1", "--hard-negative-minutes", "1", "--calibration-minutes", "1",
    ])
    assert status == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["keywords"] == ["hey computer", "stop"]
    # One epoch teaches little (learning is asserted in test_kws_recipes.py): check that the
    # accuracy counts whole test clips of the prepared test split.
    num_test = len(read_cuts(out / "manifests" / "cuts_test.jsonl.gz"))
    correct = summary["test_accuracy"] * num_test
    assert num_test > 0 and abs(correct - round(correct)) < 1e-3
    assert summary["num_params"] > 0
    for key in ("onnx", "stream_wav", "demo_detections", "checkpoint"):
        assert Path(summary[key]).is_file() and Path(summary[key]).is_relative_to(out)
    assert (out / "kws.onnx").stat().st_size > 10_000
    assert (out / "kws.thresholds.json").is_file()  # calibrated on keyword-free speech
    assert set(summary["stream_per_keyword"]) == {"hey_computer", "stop"}
    assert summary["heldout_family_clips"] > 0 and (out / "hard_negatives" / "round-1" / "mined.json").is_file()
    labels = json.loads((out / "manifests" / "labels.json").read_text())
    assert set(labels) == {"_silence_", "_unknown_", "hey_computer", "stop"}
    assert (out / "corpus" / "hey_computer").is_dir()
    # training voices come from both engines (espeak:3,pico:1), and the synthesis went through the cache
    info = json.loads((out / "corpus" / "synth_info.json").read_text())
    assert info["engines"] == ["espeak", "pico"] and any(s["voice"]["engine"] == "pico" for s in info["speakers"])
    assert any(Path(os.environ["SPEECHKIT_SYNTH_CACHE"]).rglob("*.npy"))
    events = json.loads((out / "stream_events.json").read_text())
    assert len(events) == 4 and {e["keyword"] for e in events} <= {"hey_computer", "stop"}
    found = summary["stream_recall"] * len(events)  # recall counts whole keywords of the stream
    assert abs(found - round(found)) < 1e-6
    printed = capsys.readouterr().out
    assert "speechkit quickstart: summary" in printed and "clip accuracy (held-out voice families)" in printed
    assert "hey_computer" in printed and "false alarms/hour" in printed  # per-phrase figures


@pytest.mark.trains
def test_quickstart_with_the_streaming_recipe_runs_the_stateful_artifact(tmp_path):
    out = tmp_path / "run"
    status = main([
        "quickstart", "--keywords", "yes", "--out", str(out), "--recipe", "synthetic/kws/stream.yaml",
        "--speakers", "8", "--epochs", "1", "--stream-keywords", "3",
        "--negative-minutes", "0.5", "--hard-negative-minutes", "0.5", "--calibration-minutes", "0.5",
    ])
    assert status == 0
    summary = json.loads((out / "summary.json").read_text())
    # The stateful artifact is what mining, calibration, the stream and the demo ran.
    assert Path(summary["stream_onnx"]) == out / "kws_stream.onnx" and (out / "kws_stream.thresholds.json").is_file()
    assert (out / "kws.onnx").is_file() and json.loads((out / "hard_negatives" / "round-1" / "mined.json").read_text())[
        "model"].endswith("kws_stream.onnx")


def test_quickstart_never_writes_over_an_earlier_run(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "precious.txt").write_text("mine")
    assert main(["quickstart", "--out", str(out)]) == 2
    assert "not empty" in capsys.readouterr().err
    assert (out / "precious.txt").read_text() == "mine"
