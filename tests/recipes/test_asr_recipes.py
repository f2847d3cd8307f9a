"""ASR recipes: synth -> prepare -> tokenizer -> fit -> average -> transcribe / eval-asr end to end on a
small folder in the real LibriSpeech layout. (Every recipe YAML is instantiated in ``test_every_recipe.py``.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from lhotse import CutSet

from speechkit.cli.lightning_cli import run_lightning_cli
from speechkit.cli.main import main

REPO = Path(__file__).resolve().parents[2]
LIBRISPEECH = REPO / "recipes/librispeech/asr_conformer_ctc"
TINY_ENCODER = [
    "--model.init_args.encoder.init_args.dim", "32", "--model.init_args.encoder.init_args.num_layers", "2",
    "--model.init_args.encoder.init_args.num_heads", "2", "--model.init_args.encoder.init_args.ffn_dim", "64",
    "--model.init_args.encoder.init_args.subsampling_channels", "8",
]


def _speechkit(*args: str) -> None:
    assert main(list(args)) == 0, args


@pytest.mark.trains
def test_librispeech_recipe_end_to_end_on_synthetic_corpus(tmp_path, capsys):
    corpus, manifests, lang = tmp_path / "LibriSpeech", tmp_path / "manifests", tmp_path / "bpe.model"
    _speechkit("synth", "librispeech", str(corpus), "--subsets", "train-clean-100,dev-clean", "--speakers", "2",
               "--utterances-per-speaker", "6", "--text", "commands", "--seed", "3")
    assert sorted((corpus / "dev-clean").rglob("*.trans.txt"))
    _speechkit("prepare", "librispeech", str(corpus), str(manifests), "--num-jobs", "1")
    train, dev = manifests / "cuts_train-clean-100.jsonl.gz", manifests / "cuts_dev-clean.jsonl.gz"
    _speechkit("tokenizer", "train", str(train), "--vocab-size", "40", "--out", str(lang))
    root = tmp_path / "run"
    _speechkit(
        "fit", "--config", str(LIBRISPEECH / "config.yaml"), "--config", str(LIBRISPEECH / "streaming_320ms.yaml"),
        "--data.init_args.train_manifests", json.dumps([str(train)]),
        "--data.init_args.valid_manifests", json.dumps([str(dev)]),
        "--data.init_args.test_manifests", json.dumps([str(dev)]),
        "--data.init_args.tokenizer_path", str(lang), "--data.init_args.max_duration", "20",
        "--data.init_args.num_workers", "0", "--data.init_args.min_seconds", "0.5",
        "--trainer.precision", "32-true", "--trainer.accelerator", "cpu", "--trainer.devices", "1",
        "--trainer.max_epochs", "2", "--trainer.default_root_dir", str(root), "--trainer.enable_progress_bar", "false",
        "--model.init_args.cmvn_utterances", "10", *TINY_ENCODER,
    )
    ckpt_dir = next(root.rglob("checkpoints"))
    names = {p.name for p in ckpt_dir.iterdir()}
    assert {"epoch-000.ckpt", "epoch-001.ckpt", "last.ckpt"} <= names and any(n.startswith("best-") for n in names)
    averaged = tmp_path / "avg.ckpt"
    _speechkit("average-checkpoints", "--last", "2", str(ckpt_dir), "--out", str(averaged))
    capsys.readouterr()
    flacs = sorted(str(p) for p in (corpus / "dev-clean").rglob("*.flac"))[:3]
    _speechkit("transcribe", str(averaged), *flacs, "--chunk-ms", "320")
    assert len(capsys.readouterr().out.splitlines()) == 3
    for data in (str(corpus / "dev-clean"), str(dev)):
        _speechkit("eval-asr", "--model", str(averaged), "--data", data, "--chunk-ms", "640")
        result = json.loads(capsys.readouterr().out)
        assert result["num_utterances"] == 12 and result["decoding"]["chunk_ms"] == 640
        assert {"wer", "substitutions", "deletions", "insertions", "rtf", "worst"} <= set(result)


@pytest.mark.slow
@pytest.mark.trains
def test_asr_recipe_runs_under_two_process_ddp(tmp_path):
    """lhotse's sampler shards batches over 2 gloo processes; both stop at the same step."""
    corpus, manifests, lang = tmp_path / "LibriSpeech", tmp_path / "manifests", tmp_path / "bpe.model"
    _speechkit("synth", "librispeech", str(corpus), "--subsets", "train-clean-100,dev-clean", "--speakers", "2",
               "--utterances-per-speaker", "8", "--text", "commands")
    _speechkit("prepare", "librispeech", str(corpus), str(manifests), "--num-jobs", "1")
    train, dev = manifests / "cuts_train-clean-100.jsonl.gz", manifests / "cuts_dev-clean.jsonl.gz"
    _speechkit("tokenizer", "train", str(train), "--vocab-size", "40", "--out", str(lang))
    proc = subprocess.run(
        [sys.executable, "-m", "speechkit", "fit", "--config", str(REPO / "recipes/synthetic/asr/commands.yaml"),
         "--data.init_args.train_manifests", json.dumps([str(train)]),
         "--data.init_args.valid_manifests", json.dumps([str(dev)]),
         "--data.init_args.tokenizer_path", str(lang), "--data.init_args.max_duration", "10",
         "--data.init_args.num_workers", "0", "--trainer.max_epochs", "1",
         "--trainer.default_root_dir", str(tmp_path / "run"), "--trainer.enable_progress_bar", "false",
         "--trainer.accelerator", "cpu", "--trainer.devices", "2", "--trainer.strategy", "ddp", *TINY_ENCODER],
        cwd=REPO, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=600, check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    single = run_lightning_cli([
        "--config", str(REPO / "recipes/synthetic/asr/commands.yaml"),
        "--data.init_args.train_manifests", json.dumps([str(train)]),
        "--data.init_args.valid_manifests", json.dumps([str(dev)]),
        "--data.init_args.tokenizer_path", str(lang), "--data.init_args.max_duration", "10",
    ], run=False)
    batches_one_process = len(single.datamodule.train_dataloader())
    assert ckpt["global_step"] == pytest.approx(batches_one_process / 2, abs=1)


@pytest.mark.trains
def test_asr_quickstart_tiny_run(tmp_path):
    """The quickstart's steps at toy sizes: held-out voices, three decodings, summary files."""
    from speechkit.quickstart.asr import AsrQuickstartOptions, run

    out = tmp_path / "qs"
    summary = run(AsrQuickstartOptions(out=out, speakers=4, utterances_per_speaker=5, dev_speakers=2,
                                       test_speakers=4, epochs=1, jobs=1, cross_speakers=2))
    assert [r["chunk_ms"] for r in summary["results"]] == [0, 640, 320]
    # The cross-engine set: pico speakers at 320 ms, an engine the default (espeak-ng) never trains on.
    cross = summary["cross_engine"]
    assert summary["engines"] == "espeak" and cross["engine"] == "pico" and cross["held_out_engine"]
    assert cross["set"] == "pico (engine never trained on)" and cross["chunk_ms"] == 320
    assert cross["wer"] == json.loads((out / "eval_pico_320ms.json").read_text())["wer"] and cross["num_utterances"] == 20
    engines_of = lambda subset: {s["voice"].get("engine", "espeak") for s in json.loads(  # noqa: E731
        (out / "corpus" / f"synth_info_{subset}.json").read_text())["speakers"]}
    assert engines_of("test-other") == {"pico"} and engines_of("test-clean") == {"espeak"}
    # One epoch teaches nothing to assert on: check the bookkeeping instead (WER = errors / words,
    # the same figure in the summary and in each eval file).
    for r, name in zip(summary["results"], ("eval_full.json", "eval_640ms.json", "eval_320ms.json")):
        scored = json.loads((out / name).read_text())
        errors = scored["substitutions"] + scored["deletions"] + scored["insertions"]
        assert scored["ref_words"] > 0 and r["wer"] == scored["wer"] == pytest.approx(errors / scored["ref_words"])
        assert scored["num_utterances"] == summary["heldout_utterances"] and r["rtf"] > 0
    assert json.loads((out / "summary.json").read_text()) == summary
    assert {"eval_full.json", "eval_640ms.json", "eval_320ms.json", "bpe.model"} <= {p.name for p in out.iterdir()}
    assert {p.name for p in (out / "corpus").iterdir()} >= {"train-clean-100", "dev-clean", "test-clean"}
    train = json.loads((out / "corpus" / "synth_info_train-clean-100.json").read_text())["speakers"]
    test = {str(s["id"]): s["voice"] for s in
            json.loads((out / "corpus" / "synth_info_test-clean.json").read_text())["speakers"]}
    seen = {(s["voice"]["language"], s["voice"]["variant"]) for s in train}
    heldout = {c.supervisions[0].speaker for c in CutSet.from_file(out / "manifests" / "cuts_heldout.jsonl.gz")}
    assert heldout and len(heldout) == summary["heldout_speakers"]
    assert all((test[s]["language"], test[s]["variant"]) not in seen for s in heldout)
    assert Path(summary["checkpoint"]).is_file()
    # shipped: the streaming artifact, and the demo's output on the recording of held-out voices
    assert Path(summary["onnx"]["path"]).is_file() and summary["onnx"]["parity_max_diff"] <= 1e-4
    assert summary["demo"]["utterances"] == min(6, len(heldout))
    lines = (out / "demo_output.jsonl").read_text().splitlines()
    assert len(lines) == summary["demo"]["finals"] and all(json.loads(x)["final"] for x in lines)
    assert len((out / "demo_reference.txt").read_text().splitlines()) == summary["demo"]["utterances"]
