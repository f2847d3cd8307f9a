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

from speechkit.quickstart import recipe_path

DEFAULT_KEYWORDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")


@dataclass
class QuickstartOptions:
    keywords: tuple[str, ...] = DEFAULT_KEYWORDS
    out: Path | None = None
    speakers: int = 160
    clips_per_word: int = 2
    unknown_ratio: float = 2.0
    epochs: int = 15
    seed: int = 0
    stream_keywords: int = 40
    timings: dict = field(default_factory=dict)


def run(opts: QuickstartOptions) -> dict:
    """Run the quickstart; return the summary dict (also written to ``summary.json``)."""
    from speechkit.fileio import unique_run_dir, write_json_atomic

    run_dir = Path(opts.out) if opts.out else unique_run_dir("runs", "quickstart")
    if opts.out:
        run_dir.mkdir(parents=True, exist_ok=True)
        if any(run_dir.iterdir()):
            from speechkit.errors import SpeechkitError

            raise SpeechkitError(f"{run_dir}: folder is not empty; the quickstart never writes over an earlier run")
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
    with _timed(opts, "synth"):
        _say(f"synthesizing {opts.speakers} espeak-ng speakers x {len(opts.keywords)} keywords + unknown words ...")
        synth_speech_commands(
            corpus, words=list(opts.keywords), num_speakers=opts.speakers,
            clips_per_word=opts.clips_per_word, seed=opts.seed, jobs=2, progress=True,
        )
    with _timed(opts, "prepare"):
        summary = prepare_speech_commands(
            corpus, manifests, keywords=[keyword_folder(k) for k in opts.keywords], seed=opts.seed,
            unknown_ratio=opts.unknown_ratio,
        )
        _say(summary)
    return corpus, manifests


def _train(opts: QuickstartOptions, run_dir: Path, manifests: Path) -> tuple[Path, float, int]:
    from speechkit.cli.lightning_cli import run_lightning_cli

    args = [
        "--config", str(recipe_path("synthetic/kws/config.yaml")),
        "--data.init_args.manifest_dir", str(manifests),
        "--trainer.default_root_dir", str(run_dir / "train"),
        "--trainer.max_epochs", str(opts.epochs),
        "--seed_everything", str(opts.seed),
    ]
    with _timed(opts, "train"):
        cli = run_lightning_cli(args, run=False)
        cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    with _timed(opts, "test"):
        results = cli.trainer.test(cli.model, datamodule=cli.datamodule, ckpt_path="best", verbose=False)
    ckpt = Path(cli.trainer.checkpoint_callback.best_model_path)
    num_params = sum(p.numel() for p in cli.model.model.parameters())
    return ckpt, float(results[0]["test/acc"]), int(num_params)


def _ship(opts: QuickstartOptions, run_dir: Path, ckpt: Path, manifests: Path) -> dict:
    """Export to ONNX, then run the streaming detector over a stream of held-out voices."""
    return {}


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
    ):
        if key in summary:
            value = summary[key]
            rows.append((label, f"{value:.2%}" if key == "stream_recall" else f"{value:g}"))
    rows += [
        ("wall time", f"{summary['wall_time_s'] / 60:.1f} min"),
        ("checkpoint", summary["checkpoint"]),
    ]
    for key, label in (("onnx", "ONNX model"), ("stream_wav", "test stream")):
        if key in summary:
            rows.append((label, summary[key]))
    rows.append(("everything", summary["run_dir"]))
    width = max(len(r[0]) for r in rows)
    print("\n== speechkit quickstart: summary ==")
    for label, value in rows:
        print(f"  {label:<{width}}  {value}")


class _timed:
    def __init__(self, opts: QuickstartOptions, name: str) -> None:
        self.opts, self.name = opts, name

    def __enter__(self):
        self.start = time.time()

    def __exit__(self, *exc):
        self.opts.timings[self.name] = round(time.time() - self.start, 1)


def _say(text: str) -> None:
    print(f"[quickstart] {text}", flush=True)


__all__ = ["QuickstartOptions", "run", "DEFAULT_KEYWORDS"]
