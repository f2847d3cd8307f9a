"""ASR ONNX artifacts (contract 7) from a tiny random model: parity, metadata, states, int8, ORT.

Decoding real speech with the artifacts (the trained tiny model, the <=60-line reference
decoder, the int8 WER gate on a manifest) is in ``tests/unit/test_asr_runtime.py``.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from speechkit.errors import ModelFileError, SpeechkitError

NUM_BINS = 20
CHUNK_MS = 160  # 4 encoder frames


def tiny_task(root: Path):
    """An ``AsrCtcTask`` with a random 2-layer Conformer over 20 fbank bins and a 40-unit tokenizer."""
    from speechkit.frontends import Fbank
    from speechkit.models.asr import ConformerEncoder
    from speechkit.tasks.asr import AsrCtcTask
    from speechkit.text import train_tokenizer

    tokenizer = train_tokenizer(["TURN ON THE LIGHT", "OPEN THE DOOR", "PLAY SOME MUSIC"] * 4,
                                root / "units.model", vocab_size=40)
    torch.manual_seed(0)
    encoder = ConformerEncoder(NUM_BINS, dim=32, num_layers=2, num_heads=2, ffn_dim=64, conv_kernel_size=5,
                               subsampling_channels=8)
    # CMVN as if fbank log energies had mean -8 and spread 3: the parity inputs follow these.
    encoder.set_feature_stats(torch.linspace(-10, -6, NUM_BINS), torch.linspace(2, 4, NUM_BINS))
    task = AsrCtcTask(encoder, Fbank(num_mel_bins=NUM_BINS), vocab_size=tokenizer.vocab_size,
                      tokenizer_path=str(root / "units.model"), cmvn_utterances=0)
    return task.eval()


@pytest.fixture(scope="module")
def streaming(tmp_path_factory):
    """The streaming artifact, with a forced int8 copy (no test set) and ORT files."""
    from speechkit.export.asr_export import export_asr_task

    root = tmp_path_factory.mktemp("asr_export")
    task = tiny_task(root)
    report = export_asr_task(task, root / "asr.onnx", streaming=True, chunk_ms=CHUNK_MS, int8=True, force=True,
                             ort=True, left_chunks=3)
    return SimpleNamespace(task=task, root=root, path=root / "asr.onnx", report=report)


def features(frames: int, seed: int = 1) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.linspace(-10, -6, NUM_BINS) + 3.0 * torch.randn(1, frames, NUM_BINS, generator=gen)


def test_streaming_metadata_round_trip(streaming):
    from speechkit.export.onnx_export import read_metadata
    from speechkit.runtime.asr import ASR_METADATA, AsrModel

    task, metadata = streaming.task, read_metadata(streaming.path)
    assert set(ASR_METADATA) <= set(metadata)
    assert metadata["speechkit.task"] == "asr-ctc-streaming"
    assert json.loads(metadata["tokens"]) == task.tokenizer.tokens() and json.loads(metadata["tokens"])[0] == "<blk>"
    assert json.loads(metadata["feature"]) == task.frontend.kaldi_options()
    assert json.loads(metadata["feature"])["frame_opts"]["dither"] == 0.0
    assert metadata["sample_rate"] == "16000" and metadata["subsampling"] == "4"
    assert (metadata["chunk_frames"], metadata["shift_frames"], metadata["chunk_ms"]) == ("19", "16", "160")
    expected_states = [list(s.shape) for s in task.encoder.init_states(1, 4, 3)]
    assert json.loads(metadata["state_shapes"]) == expected_states == [[1, 2, 12, 64], [1, 2, 4, 32], [1]]
    model_info = json.loads(metadata["model"])
    assert model_info["class"] == "ConformerEncoder" and model_info["vocab_size"] == task.tokenizer.vocab_size
    assert model_info["num_params"] == sum(p.numel() for p in task.encoder.parameters()) + sum(
        p.numel() for p in task.ctc_head.parameters())
    # What the runtime reads from it, and the graph's inputs and outputs.
    model = AsrModel(streaming.path)
    assert (model.streaming, model.num_bins, model.chunk_frames, model.shift_frames) == (True, NUM_BINS, 19, 16)
    assert model.frame_shift_s == pytest.approx(0.04) and model.state_shapes == [tuple(s) for s in expected_states]
    inputs = {i.name: i.shape for i in model.session.get_inputs()}
    outputs = {o.name: o.shape for o in model.session.get_outputs()}
    assert inputs == {"features": [1, "frames", NUM_BINS], "cache_0": [1, 2, 12, 64], "cache_1": [1, 2, 4, 32], "cache_2": [1]}
    assert outputs == {"log_probs": [1, "out_frames", task.tokenizer.vocab_size], "next_cache_0": [1, 2, 12, 64],
                       "next_cache_1": [1, 2, 4, 32], "next_cache_2": [1]}


def test_streaming_artifact_with_carried_states_equals_masked_forward(streaming):
    """ONNX chunk by chunk, states fed back, == the chunk-masked full-sequence torch output."""
    from speechkit.runtime.asr import AsrModel, streaming_log_probs

    assert streaming.report["parity_max_diff"] <= 1e-4
    encoder, head = streaming.task.encoder, streaming.task.ctc_head
    model = AsrModel(streaming.path)
    # Every end condition of the chunk schedule (19-frame windows every 16): one window (7, 19), a
    # full last window (35), 3..6 frames left over (38: no last window), a 7-frame last window (39),
    # and streams over the 12-frame left context that are not multiples of the shift (233, 250).
    for frames in (233, 250, 19, 7, 35, 38, 39):
        feats = features(frames, seed=frames)
        with torch.no_grad():
            enc, enc_lens = encoder(feats, torch.tensor([frames]), chunk_size=4, left_chunks=3)
            reference = head(enc)[0, : int(enc_lens[0])].numpy()
        got = streaming_log_probs(model, feats[0].numpy())
        assert got.shape == reference.shape
        assert np.abs(got - reference).max() <= 1e-4, frames
    with torch.no_grad():  # the bounded left context matters, so the comparison is not vacuous
        unbounded = head(encoder(features(233, 233), torch.tensor([233]), chunk_size=4)[0])[0].numpy()
    assert np.abs(streaming_log_probs(model, features(233, 233)[0].numpy()) - unbounded).max() > 1e-3


def test_int8_and_ort_files(streaming):
    from speechkit.export.asr_export import format_report
    from speechkit.export.onnx_export import read_metadata
    from speechkit.runtime.asr import AsrModel, streaming_log_probs

    int8 = streaming.report["int8"]
    assert int8["gate"] is None and int8["forced"]  # --force without a test set
    int8_path = Path(int8["path"])
    assert int8_path.name == "asr_int8.onnx" and int8["size_bytes"] < streaming.report["size_bytes"]
    fp32_meta, int8_meta = read_metadata(streaming.path), read_metadata(int8_path)
    assert fp32_meta.items() <= int8_meta.items()  # the contract's keys and values, unchanged
    assert "int8 dynamic" in int8_meta["quantization"]
    ops = {n.op_type for n in __import__("onnx").load(str(int8_path)).graph.node}
    assert {"MatMulInteger", "DynamicQuantizeLinear"} <= ops
    feats = features(120)[0].numpy()
    fp32_lp = streaming_log_probs(AsrModel(streaming.path), feats)
    assert np.abs(streaming_log_probs(AsrModel(int8_path), feats) - fp32_lp).max() < 0.5
    assert [Path(p).name for p in streaming.report["ort"]] == ["asr.ort", "asr_int8.ort"]
    ort_model = AsrModel(streaming.report["ort"][0])  # metadata survives the ORT format
    np.testing.assert_allclose(streaming_log_probs(ort_model, feats), fp32_lp, atol=1e-4)
    lines = format_report(streaming.report)
    assert "parity with PyTorch" in lines[0] and any("not checked" in line for line in lines)


def test_int8_gate_refuses_a_wer_rise_unless_forced(streaming, monkeypatch):
    from speechkit.export import asr_int8
    from speechkit.export.asr_int8 import ASR_GATE, int8_gate, write_int8
    from speechkit.export.gate import QualityGateError

    wers = {}

    def fake_wer(path, manifest):
        return wers["int8" if "int8" in Path(path).name else "fp32"], 20

    wers.update(fp32=0.100, int8=0.115)  # +1.5 points
    assert (ASR_GATE.metric, ASR_GATE.higher_is_better, ASR_GATE.max_delta) == ("wer", False, 1.0)
    with pytest.raises(QualityGateError, match=r"wer on 20 items: fp32 10.00%, int8 11.50% \(rise 1.50 points, limit 1.00\)") as info:
        int8_gate(streaming.path, Path(streaming.report["int8"]["path"]), "test.jsonl.gz", wer_fn=fake_wer)
    assert "--force" in str(info.value) and "\n" not in str(info.value)
    forced = int8_gate(streaming.path, streaming.report["int8"]["path"], "t", force=True, wer_fn=fake_wer)
    assert not forced.passed and forced.forced and forced.delta == pytest.approx(1.5)
    wers.update(int8=0.108)
    assert int8_gate(streaming.path, streaming.report["int8"]["path"], "t", wer_fn=fake_wer).passed
    # Through write_int8 (what --int8 runs): a refused model is not written.
    out = streaming.root / "gate" / "asr.onnx"
    out.parent.mkdir()
    out.write_bytes(streaming.path.read_bytes())
    wers.update(int8=0.2)
    monkeypatch.setattr(asr_int8, "onnx_wer", fake_wer)
    with pytest.raises(QualityGateError, match="asr_int8.onnx: int8 quantization loses too much"):
        write_int8(out, "test.jsonl.gz")
    assert not (out.parent / "asr_int8.onnx").exists()
    with pytest.raises(SpeechkitError, match="pass --test-manifest, or --force"):
        write_int8(out, None)
    assert write_int8(out, "test.jsonl.gz", force=True)["gate"]["passed"] is False
    assert (out.parent / "asr_int8.onnx").exists()


def test_full_context_artifact_and_parity_gate(tmp_path, monkeypatch, capsys):
    import argparse

    from speechkit.export import artifact, asr_export
    from speechkit.export.onnx_export import ParityError, read_metadata
    from speechkit.runtime.asr import AsrModel

    task = tiny_task(tmp_path)
    # Through the exporter `speechkit export` dispatches asr-ctc checkpoints to.
    args = argparse.Namespace(output=tmp_path / "full.onnx", full_context=True, chunk_ms=320, left_chunks=None,
                              int8=False, force=False, ort=False, test_manifest=None, atol=1e-4, max_int8_drop=1.0)
    assert asr_export.export_asr_command(task, args) == 0
    printed = capsys.readouterr().out
    assert "asr-ctc: full context); parity with PyTorch: max |diff|" in printed and "(limit 0.0001)" in printed
    metadata = read_metadata(tmp_path / "full.onnx")
    assert metadata["speechkit.task"] == "asr-ctc"
    assert (metadata["chunk_frames"], metadata["shift_frames"], metadata["state_shapes"]) == ("0", "0", "[]")
    model = AsrModel(tmp_path / "full.onnx")
    for frames in (7, 133, 400):
        feats = features(frames, seed=frames)
        with torch.no_grad():
            reference = task.ctc_head(task.encoder(feats, torch.tensor([frames]))[0])[0].numpy()
        assert np.abs(model.run_full(feats[0].numpy()) - reference).max() <= 1e-4
    # The gate: a PyTorch reference 1e-3 away fails the export with the measured difference.
    real_check = artifact.check_parity
    monkeypatch.setattr(artifact, "check_parity",
                        lambda path, fn, inputs, atol: real_check(path, lambda x: fn(x) + 1e-3, inputs, atol))
    with pytest.raises(ParityError, match=r"'log_probs' differs from PyTorch by 0.001 .*allowed 0.0001"):
        asr_export.export_asr_task(task, tmp_path / "broken.onnx", streaming=False)
    assert not (tmp_path / "broken.onnx").exists()


def test_export_option_and_checkpoint_errors(tmp_path):
    from speechkit.export.asr_export import _task_parts, chunk_size_from_ms, export_asr
    from speechkit.frontends import LogMel

    assert (chunk_size_from_ms(320), chunk_size_from_ms(40), chunk_size_from_ms(640)) == (8, 1, 16)
    for bad in (300, 0, -40):
        with pytest.raises(SpeechkitError, match="multiple of 40 ms"):
            chunk_size_from_ms(bad)
    task = SimpleNamespace(encoder=tiny_task(tmp_path).encoder, ctc_head=None, frontend=LogMel())
    with pytest.raises(ModelFileError, match="needs the Kaldi fbank"):
        _task_parts(task)
    not_a_checkpoint = tmp_path / "model.ckpt"
    not_a_checkpoint.write_bytes(b"not a checkpoint")
    with pytest.raises(ModelFileError, match="model.ckpt"):
        export_asr(not_a_checkpoint, tmp_path / "out.onnx")


def test_onnx_recognizer_refuses_another_chunk_size(streaming):
    from speechkit.runtime.asr import AsrOnnxRecognizer

    recognizer = AsrOnnxRecognizer(streaming.path)
    assert recognizer.chunk_ms == CHUNK_MS and recognizer.sample_rate == 16000
    audio = np.zeros(8000, np.float32)
    assert recognizer.log_probs([audio], SimpleNamespace(chunk_ms=CHUNK_MS))[0].shape[1] == len(recognizer.tokens)
    with pytest.raises(SpeechkitError, match="exported for 160 ms chunks, cannot decode with --chunk-ms 320"):
        recognizer.log_probs([audio], SimpleNamespace(chunk_ms=320, left_chunks=-1))
    with pytest.raises(SpeechkitError, match="exported with 3 chunks of left context, cannot decode with --left-chunks 8"):
        recognizer.log_probs([audio], SimpleNamespace(chunk_ms=0, left_chunks=8))
    assert len(recognizer.log_probs([audio], SimpleNamespace(chunk_ms=0, left_chunks=3))) == 1


def test_asr_exporter_registers_itself_for_the_task(tmp_path):
    """``speechkit export`` finds the ASR exporter through the registry, with its options and gate."""
    import argparse

    from speechkit.export.registry import all_exporters, exporter_for

    exporter = exporter_for(tiny_task(tmp_path))
    assert exporter.name == "asr-ctc" and exporter in all_exporters()
    assert (exporter.gate.metric, exporter.gate.higher_is_better, exporter.gate.max_delta) == ("wer", False, 1.0)
    parser = argparse.ArgumentParser()
    exporter.add_arguments(parser)
    args = parser.parse_args(["--full-context", "--chunk-ms", "640", "--left-chunks", "2"])
    assert (args.full_context, args.streaming, args.chunk_ms, args.left_chunks) == (True, False, 640, 2)
    with pytest.raises(SystemExit):
        parser.parse_args(["--full-context", "--streaming"])
