"""The keyword-spotting quickstart: synthesize -> prepare -> train -> test -> export -> stream.

Every artifact goes into one new run folder (``runs/quickstart`` or ``--out``), never over an
earlier run:

```
<run>/corpus/            synthetic Speech Commands layout (espeak-ng voices)
<run>/manifests/         lhotse cuts + labels.json
<run>/train/             Lightning logs, checkpoints/best-*.ckpt, last.ckpt, confusion_matrix.png
<run>/kws.onnx           exported model (+ kws_int8.onnx)
<run>/stream.wav         held-out voices saying sentences and keywords; stream_events.json
<run>/summary.json       the figures printed at the end
```
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from speechkit.plugins import Subcommand
from speechkit.quickstart import new_run_dir, recipe_path, timed

DEFAULT_KEYWORDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")


@dataclass
class QuickstartOptions:
    keywords: tuple[str, ...] = DEFAULT_KEYWORDS
    out: Path | None = None
    speakers: int = 400
    clips_per_word: int = 2
    unknown_ratio: float = 2.0
    epochs: int = 15
    seed: int = 0
    stream_keywords: int = 40
    timings: dict = field(default_factory=dict)


def run(opts: QuickstartOptions) -> dict:
    """Run the quickstart; return the summary dict (also written to ``summary.json``)."""
    from speechkit.fileio import write_json_atomic

    run_dir = new_run_dir(opts.out, "quickstart")
    started = time.time()
    _say(f"run folder: {run_dir}")
    corpus, manifests = _data(opts, run_dir)
    ckpt, test_acc, num_params = _train(opts, run_dir, manifests)
    summary = {
        "keywords": list(opts.keywords),
        "run_dir": str(run_dir),
        "test_accuracy": test_acc,
        "num_params": num_params,
        "checkpoint": str(ckpt),
    }
    summary.update(_ship(opts, run_dir, ckpt, manifests))
    summary["wall_time_s"] = round(time.time() - started, 1)
    summary["timings_s"] = opts.timings
    write_json_atomic(run_dir / "summary.json", summary)
    print_summary(summary)
    return summary


def _data(opts: QuickstartOptions, run_dir: Path) -> tuple[Path, Path]:
    from speechkit.data.corpora.speech_commands import prepare_speech_commands
    from speechkit.data.synth.speech_commands import keyword_folder, synth_speech_commands

    corpus, manifests = run_dir / "corpus", run_dir / "manifests"
    with timed(opts.timings, "synth"):
        _say(f"synthesizing {opts.speakers} espeak-ng speakers x {len(opts.keywords)} keywords + unknown words ...")
        synth_speech_commands(
            corpus, words=list(opts.keywords), num_speakers=opts.speakers,
            unknown_words=unknown_material(opts.keywords, opts.seed),
            clips_per_word=opts.clips_per_word, seed=opts.seed, jobs=2, progress=True,
        )
    with timed(opts.timings, "prepare"):
        summary = prepare_speech_commands(
            corpus, manifests, keywords=[keyword_folder(k) for k in opts.keywords], seed=opts.seed,
            unknown_ratio=opts.unknown_ratio,
        )
        _say(summary)
    return corpus, manifests


def unknown_material(keywords, seed: int, num_phrases: int = 30) -> list[str]:
    """Non-keyword material: the other Speech Commands words plus short phrases cut from the
    package's sentences (none containing a keyword), so ``_unknown_`` also covers running
    speech, which is what a detector hears most of the time."""
    import numpy as np

    from speechkit.data.synth.speech_commands import ALL_WORDS
    from speechkit.data.synth.stream import negative_sentences

    words = [w for w in ALL_WORDS if w not in keywords]
    rng = np.random.default_rng([seed, 0xF4A6])
    sentences = negative_sentences(keywords)
    phrases: set[str] = set()
    while len(phrases) < num_phrases:
        tokens = [t.strip(".,;:!?\"'").lower() for t in str(rng.choice(sentences)).split()]
        tokens = [t for t in tokens if t.isalpha()]
        if len(tokens) >= 2:
            start = int(rng.integers(0, len(tokens) - 1))
            phrases.add(" ".join(tokens[start : start + 2]))
    return words + sorted(phrases)


def _train(opts: QuickstartOptions, run_dir: Path, manifests: Path) -> tuple[Path, float, int]:
    from speechkit.tasks.training import lightning_cli

    args = [
        "--config", str(recipe_path("synthetic/kws/config.yaml")),
        "--data.init_args.manifest_dir", str(manifests),
        "--trainer.default_root_dir", str(run_dir / "train"),
        "--trainer.max_epochs", str(opts.epochs),
        "--seed_everything", str(opts.seed),
    ]
    import os

    import torch

    if "OMP_NUM_THREADS" not in os.environ:
        # One intra-op thread trains this small model about as fast as two, and the data
        # worker takes the second core; two threads collapse when other work shares the CPU.
        torch.set_num_threads(1)
    with timed(opts.timings, "train"):
        cli = lightning_cli(args, run=False)
        cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    with timed(opts.timings, "test"):
        results = cli.trainer.test(cli.model, datamodule=cli.datamodule, ckpt_path="best", verbose=False)
    ckpt = Path(cli.trainer.checkpoint_callback.best_model_path)
    num_params = sum(p.numel() for p in cli.model.model.parameters())
    return ckpt, float(results[0]["test/acc"]), int(num_params)


def _ship(opts: QuickstartOptions, run_dir: Path, ckpt: Path, manifests: Path) -> dict:
    """Export to ONNX (+ int8), calibrate thresholds on negative speech, run the detector and
    the demo over a stream spoken by voices held out of training, and score it."""
    from speechkit.export.clip_classifier import ClipExportOptions, export_clip_artifacts
    from speechkit.export.gate import QualityGateError
    from speechkit.export.onnx_export import checkpoint_model_config
    from speechkit.tasks import load_task

    out: dict = {}
    onnx_path = run_dir / "kws.onnx"
    with timed(opts.timings, "export"):
        task = load_task(ckpt, expected=("kws",))
        try:
            result = export_clip_artifacts(
                task, onnx_path, ClipExportOptions(int8=True), model_config=checkpoint_model_config(ckpt), log=_say,
            )
        except QualityGateError as exc:  # the fp32 file is written before the int8 gate runs
            _say(f"int8 model not kept: {exc}")
            result = {"onnx": onnx_path, "int8": None}
    out["onnx"] = str(result["onnx"])
    out["onnx_kb"] = round(onnx_path.stat().st_size / 1024, 1)
    if result.get("int8"):
        out["onnx_int8"] = str(result["int8"])
        out["onnx_int8_kb"] = round(Path(result["int8"]).stat().st_size / 1024, 1)
        report = result["int8_report"]
        out["int8_accuracy"] = report.int8 / 100.0  # the gate works in percent
    with timed(opts.timings, "stream"):
        out.update(_stream_eval(opts, run_dir, onnx_path))
    return out


def _stream_eval(opts: QuickstartOptions, run_dir: Path, onnx_path: Path) -> dict:
    import contextlib

    from speechkit.audio import save_audio
    from speechkit.data.synth.speech_commands import keyword_folder
    from speechkit.data.synth.stream import synth_keyword_stream, synth_negative_stream, write_stream
    from speechkit.data.synth.voices import sample_speakers
    from speechkit.runtime.calibrate import calibrate
    from speechkit.runtime.demo import run_demo
    from speechkit.runtime.eval_stream import evaluate_stream

    # Voices drawn with another seed: accent/variant/pitch/rate combinations unseen in training.
    voices = sample_speakers(12, seed=opts.seed + 7919)
    _say("synthesizing negative speech (no keywords) for threshold calibration ...")
    negatives = run_dir / "negatives.wav"
    save_audio(negatives, synth_negative_stream(opts.keywords, voices, num_sentences=80, seed=opts.seed + 1), 16000)
    calib = calibrate(onnx_path, negatives, fa_per_hour=0.5)
    _say(f"thresholds for <= 0.5 false alarms/hour on {calib['negative_hours'] * 60:.1f} min of negatives: "
         + ", ".join(f"{k} {v:.2f}" for k, v in calib["thresholds"].items()))
    _say(f"synthesizing a stream with {opts.stream_keywords} keywords among sentences (held-out voices) ...")
    stream = synth_keyword_stream(opts.keywords, voices, num_keywords=opts.stream_keywords, seed=opts.seed + 2)
    for event in stream.events:  # events name the model's labels ("hey computer" -> "hey_computer")
        event["keyword"] = keyword_folder(event["keyword"])
    wav, events = run_dir / "stream.wav", run_dir / "stream_events.json"
    write_stream(stream, wav, events)
    scores = evaluate_stream(onnx_path, wav, events, det_png=run_dir / "det_curve.png")
    _say(f"demo: speechkit demo kws --model {onnx_path} --input {wav}")
    detections = run_dir / "demo_detections.jsonl"
    with open(detections, "w") as handle, contextlib.redirect_stdout(handle):
        run_demo("kws", ["--model", str(onnx_path), "--input", str(wav)])
    for line in detections.read_text().splitlines()[:3]:
        print(f"    {line}")
    return {
        "stream_wav": str(wav),
        "stream_minutes": round(stream.duration_s / 60, 2),
        "stream_recall": scores["recall"],
        "stream_false_alarms_per_hour": scores["false_alarms_per_hour"],
        "demo_detections": str(detections),
    }


def print_summary(summary: dict) -> None:
    rows = [
        ("keywords", ", ".join(summary["keywords"])),
        ("test accuracy (held-out voices)", f"{summary['test_accuracy']:.2%}"),
        ("parameters", f"{summary['num_params']:,}"),
    ]
    for key, label in (
        ("stream_recall", "stream recall"),
        ("stream_false_alarms_per_hour", "stream false alarms / hour"),
        ("onnx_kb", "ONNX fp32 size (KB)"),
        ("onnx_int8_kb", "ONNX int8 size (KB)"),
        ("int8_accuracy", "int8 test accuracy"),
    ):
        if key in summary:
            value = summary[key]
            rows.append((label, f"{value:.2%}" if key in ("stream_recall", "int8_accuracy") else f"{value:g}"))
    rows += [
        ("wall time", f"{summary['wall_time_s'] / 60:.1f} min"),
        ("checkpoint", summary["checkpoint"]),
    ]
    for key, label in (("onnx", "ONNX model"), ("onnx_int8", "ONNX int8 model"), ("stream_wav", "test stream")):
        if key in summary:
            rows.append((label, summary[key]))
    rows.append(("everything", summary["run_dir"]))
    width = max(len(r[0]) for r in rows)
    print("\n== speechkit quickstart: summary ==")
    for label, value in rows:
        print(f"  {label:<{width}}  {value}")


def _say(text: str) -> None:
    print(f"[quickstart] {text}", flush=True)


def add_arguments(p) -> None:
    """The KWS quickstart's own options (besides ``--out``, ``--speakers``, ``--epochs``, ``--seed``)."""
    p.add_argument("--keywords", default=None, help="comma-separated keywords (default: the 10 Speech Commands words)")
    p.add_argument("--stream-keywords", type=int, default=None, help="keyword occurrences in the test stream (default 40)")


def main(args) -> int:
    """``speechkit quickstart [kws]`` (arguments from :mod:`speechkit.cli.quickstart_cmd`)."""
    from speechkit.errors import SpeechkitError

    opts = QuickstartOptions(seed=args.seed, out=args.out)
    if getattr(args, "keywords", None):
        words = tuple(w.strip().lower() for w in args.keywords.split(",") if w.strip())
        if not words:
            raise SpeechkitError("--keywords: give at least one keyword")
        opts.keywords = words
    if getattr(args, "speakers", None) is not None:
        opts.speakers = args.speakers
    if getattr(args, "epochs", None) is not None:
        opts.epochs = args.epochs
    if getattr(args, "stream_keywords", None) is not None:
        opts.stream_keywords = args.stream_keywords
    run(opts)
    return 0


QUICKSTART = Subcommand(
    "kws", "synthesize speech, train, test, export and stream a keyword spotter", add_arguments, main,
    description="Synthesize a Speech Commands-style corpus with espeak-ng, train BC-ResNet-1, test it on "
    "held-out voices, export it to ONNX and run the streaming detector over a synthesized stream.",
    order=10,
)

__all__ = ["QuickstartOptions", "run", "main", "DEFAULT_KEYWORDS", "QUICKSTART"]
