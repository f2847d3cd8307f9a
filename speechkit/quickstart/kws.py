"""The keyword-spotting quickstart: synthesize -> prepare -> train on stream windows -> mine hard
negatives -> export -> calibrate -> stream.

The model is trained on windows cut the way the detector hears a stream
(:class:`speechkit.data.kws_stream.KWSStreamDataModule`: keywords at every position of the
window and labelled only when all of them is in it; keyword-free sentences, near-miss words
chosen by pronunciation similarity, partial keywords, noise, tones and music as negatives). Then
it runs the exported detector over long keyword-free speech, collects the windows that fire, and
trains on them (``hard_negative_rounds``), so false alarms are learned away rather than
thresholded away. Training speech comes only from the *training* voice families and rooms
(:func:`speechkit.data.synth.voices.voice_pool`); the test stream and the proxy clips come from
voice families and rooms held out of training entirely.

The default recipe (``synthetic/kws/stream_windows.yaml``) trains the fixed-window BC-ResNet-1
with ResNorm, which measured best here; ``--recipe synthetic/kws/stream.yaml`` trains the
stateful streaming BC-ResNet instead (per-frame targets; ``kws_stream.onnx`` is then what the
detector runs), which at this CPU budget still learns more slowly (``recipes/synthetic/kws/README.md``).

Every artifact goes into one new run folder (``runs/quickstart`` or ``--out``), never over an
earlier run:

```
<run>/corpus/            synthetic Speech Commands layout (training voice families)
<run>/manifests/         lhotse cuts + labels.json
<run>/negative_speech/   keyword-free running speech (training voices) for the training windows
<run>/hard_negatives/    round-<k>/: windows where the detector fired on keyword-free speech
<run>/train/             Lightning logs, checkpoints/best-*.ckpt, last.ckpt, confusion_matrix.png
<run>/kws.onnx           fixed-window model (+ kws_int8.onnx); with the streaming recipe also
                         kws_stream.onnx, the stateful artifact the detector then runs
<run>/kws[_stream].thresholds.json   thresholds calibrated on keyword-free speech (training voices)
<run>/stream.wav         held-out voice families saying sentences and keywords; stream_events.json
<run>/heldout_clips/     clips of held-out voice families (the proxy's clip accuracy)
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
    epochs: int = 9
    seed: int = 0
    stream_keywords: int = 60
    #: Minutes of keyword-free running speech synthesized for the training windows.
    negative_minutes: float = 20.0
    #: Rounds of: run the detector over fresh keyword-free speech, keep what fires, train on it.
    hard_negative_rounds: int = 1
    hard_negative_minutes: float = 20.0
    hard_negative_epochs: int = 2
    #: Minutes of keyword-free speech (training voices) the thresholds are calibrated on.
    calibration_minutes: float = 20.0
    #: Recipe (relative to the shipped recipes) that the model is trained with.
    recipe: str = "synthetic/kws/stream_windows.yaml"
    #: Speech engines the training speakers are dealt from (speechkit.data.synth.engines): espeak-ng
    #: voice families plus SVOX Pico's two recorded speakers, many times over through rate, pitch
    #: and speed factor. The held-out stream and clips stay espeak-ng families never trained on.
    engines: str = "espeak:3,pico:1"
    #: Cache synthesized utterances here (None: ~/.cache/speechkit/synth); see --no-synth-cache.
    synth_cache: Path | None = None
    no_synth_cache: bool = False
    timings: dict = field(default_factory=dict)


def run(opts: QuickstartOptions) -> dict:
    """Run the quickstart; return the summary dict (also written to ``summary.json``)."""
    from speechkit.data.synth.engines import configure_synthesis
    from speechkit.fileio import write_json_atomic

    started = time.time()
    configure_synthesis(opts.engines, opts.synth_cache, use_cache=not opts.no_synth_cache)
    run_dir = new_run_dir(opts.out, "quickstart")
    _say(f"run folder: {run_dir}")
    manifests, negative_speech = _data(opts, run_dir)
    cli = _fit(opts, run_dir, manifests, negative_speech)
    ckpt = Path(cli.trainer.checkpoint_callback.best_model_path)
    for round_k in range(1, opts.hard_negative_rounds + 1):
        ckpt = _hard_negative_round(opts, run_dir, cli, ckpt, round_k)
    with timed(opts.timings, "test"):
        results = cli.trainer.test(cli.model, datamodule=cli.datamodule, ckpt_path=str(ckpt), verbose=False)
    summary = {
        "keywords": list(opts.keywords),
        "run_dir": str(run_dir),
        "test_accuracy": float(results[0]["test/acc"]),
        "num_params": int(sum(p.numel() for p in cli.model.model.parameters())),
        "checkpoint": str(ckpt),
    }
    summary.update(_ship(opts, run_dir, ckpt))
    summary["wall_time_s"] = round(time.time() - started, 1)
    summary["timings_s"] = opts.timings
    write_json_atomic(run_dir / "summary.json", summary)
    print_summary(summary)
    return summary


def _data(opts: QuickstartOptions, run_dir: Path) -> tuple[Path, Path]:
    from speechkit.data.corpora.speech_commands import prepare_speech_commands
    from speechkit.data.synth.negatives import synth_running_speech
    from speechkit.data.synth.speech_commands import keyword_folder, synth_speech_commands
    from speechkit.data.synth.voices import sample_speakers

    corpus, manifests = run_dir / "corpus", run_dir / "manifests"
    with timed(opts.timings, "synth"):
        _say(f"synthesizing {opts.speakers} speakers ({opts.engines}; training voice families) x "
             f"{len(opts.keywords)} keywords + unknown and near-miss words ...")
        synth_speech_commands(
            corpus, words=list(opts.keywords), num_speakers=opts.speakers,
            unknown_words=unknown_material(opts.keywords, opts.seed),
            clips_per_word=opts.clips_per_word, seed=opts.seed, jobs=2, progress=True, voice_pool="train",
            room_pool="train", unknown_words_per_speaker=12, engines=opts.engines,
        )
        _say(f"synthesizing {opts.negative_minutes:g} min of keyword-free running speech (training voices) ...")
        negative_speech = run_dir / "negative_speech"
        synth_running_speech(
            negative_speech, opts.keywords, sample_speakers(60, seed=opts.seed + 101, pool="train", engines=opts.engines),
            minutes=opts.negative_minutes, seed=opts.seed + 101, jobs=2,
        )
    with timed(opts.timings, "prepare"):
        summary = prepare_speech_commands(
            corpus, manifests, keywords=[keyword_folder(k) for k in opts.keywords], seed=opts.seed,
            unknown_ratio=opts.unknown_ratio,
        )
        _say(summary)
    return manifests, negative_speech


def unknown_material(keywords, seed: int, num_phrases: int = 30) -> list[str]:
    """Non-keyword material: words that sound like a keyword (pronunciation-similarity rule of
    :func:`speechkit.data.synth.negatives.near_miss_words`), the other Speech Commands words, and
    short phrases cut from the package's sentences (none containing a keyword), so ``_unknown_``
    also covers near misses and running speech."""
    import numpy as np

    from speechkit.data.synth.negatives import near_miss_words
    from speechkit.data.synth.speech_commands import ALL_WORDS
    from speechkit.data.synth.stream import negative_sentences

    near = near_miss_words(list(keywords), seed=seed)
    words = [w for ws in near.values() for w in ws]
    words += [w for w in ALL_WORDS if w not in keywords]
    rng = np.random.default_rng([seed, 0xF4A6])
    sentences = negative_sentences(keywords)
    phrases: set[str] = set()
    while len(phrases) < num_phrases:
        tokens = [t.strip(".,;:!?\"'").lower() for t in str(rng.choice(sentences)).split()]
        tokens = [t for t in tokens if t.isalpha()]
        if len(tokens) >= 2:
            start = int(rng.integers(0, len(tokens) - 1))
            phrases.add(" ".join(tokens[start : start + 2]))
    keyword_set = {k.lower() for k in keywords}
    return list(dict.fromkeys(w for w in words + sorted(phrases) if w.lower() not in keyword_set))


def _threads() -> None:
    import os

    import torch

    if "OMP_NUM_THREADS" not in os.environ:
        # One intra-op thread trains this small model about as fast as two, and the data
        # worker takes the second core; two threads collapse when other work shares the CPU.
        torch.set_num_threads(1)


def _fit(opts: QuickstartOptions, run_dir: Path, manifests: Path, negative_speech: Path):
    from speechkit.tasks.training import lightning_cli

    args = [
        "--config", str(recipe_path(opts.recipe)),
        "--data.init_args.manifest_dir", str(manifests),
        "--data.init_args.negative_speech", f"[{negative_speech}]",
        "--data.init_args.hard_negative_dirs", f"[{run_dir / 'hard_negatives'}]",
        "--trainer.default_root_dir", str(run_dir / "train"),
        "--trainer.max_epochs", str(opts.epochs),
        "--seed_everything", str(opts.seed),
    ]
    _threads()
    with timed(opts.timings, "train"):
        cli = lightning_cli(args, run=False)
        cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    return cli


def _export(run_dir: Path, ckpt: Path, clip: bool, log=None) -> dict:
    """Export ``ckpt``: the stateful ``<run>/kws_stream.onnx`` and, with ``clip``, the fixed-window
    ``<run>/kws.onnx`` + its int8 twin (kept only if it passes the accuracy gate)."""
    from speechkit.export.clip_classifier import ClipExportOptions, export_clip_artifacts
    from speechkit.export.gate import QualityGateError
    from speechkit.export.kws_streaming import export_streaming_task, stream_path
    from speechkit.export.onnx_export import checkpoint_model_config
    from speechkit.tasks import load_task

    log = log or (lambda text: None)
    task = load_task(ckpt, expected=("kws",))
    config = checkpoint_model_config(ckpt)
    out: dict = {"onnx": run_dir / "kws.onnx", "int8": None}
    if clip:
        try:
            out.update(export_clip_artifacts(task, out["onnx"], ClipExportOptions(int8=True), model_config=config, log=log))
        except QualityGateError as exc:  # the fp32 file is written before the int8 gate runs
            _say(f"int8 model not kept: {exc}")
    if hasattr(task.model, "streaming_forward"):  # a streaming network: the stateful artifact too
        out["stream_onnx"] = stream_path(out["onnx"])
        export_streaming_task(task, out["stream_onnx"], model_config=config)
    elif not clip:
        out.update(export_clip_artifacts(task, out["onnx"], ClipExportOptions(int8=False), model_config=config, log=log))
    return out


def _detector_model(exported: dict) -> Path:
    """The artifact the detector runs: the stateful one if there is one, else the fixed-window one."""
    return Path(exported.get("stream_onnx") or exported["onnx"])


def _hard_negative_round(opts: QuickstartOptions, run_dir: Path, cli, ckpt: Path, round_k: int) -> Path:
    """Export, run the detector over fresh keyword-free speech (training voices), keep the
    windows that fire, and train ``hard_negative_epochs`` more epochs with them in the mix."""
    from speechkit.audio import save_audio
    from speechkit.data.hard_negatives import mine_hard_negatives
    from speechkit.data.synth.stream import synth_negative_stream
    from speechkit.data.synth.voices import sample_speakers

    with timed(opts.timings, f"hard_negatives_{round_k}"):
        exported = _export(run_dir, ckpt, clip=False)
        speech = run_dir / "hard_negatives" / f"speech-{round_k}.wav"
        speech.parent.mkdir(parents=True, exist_ok=True)
        voices = sample_speakers(40, seed=opts.seed + 1000 * round_k, pool="train", engines=opts.engines)
        sentences = max(10, int(opts.hard_negative_minutes * 60 / 3.0))
        _say(f"hard negatives, round {round_k}: {opts.hard_negative_minutes:g} min of keyword-free speech ...")
        save_audio(speech, synth_negative_stream(
            opts.keywords, voices, num_sentences=sentences, seed=opts.seed + 1000 * round_k, room_pool="train",
        ), 16000)
        mined = mine_hard_negatives(
            _detector_model(exported), [speech], run_dir / "hard_negatives" / f"round-{round_k}", seed=opts.seed + round_k,
            context_ms=cli.datamodule.context_samples * 1000.0 / cli.datamodule.sample_rate,
        )
        speech.unlink()  # the mined windows are what training needs; the long file is not
        _say(f"hard negatives, round {round_k}: {mined['count']} windows fired")
    with timed(opts.timings, f"hard_negative_train_{round_k}"):
        cli.trainer.fit_loop.max_epochs = cli.trainer.current_epoch + opts.hard_negative_epochs
        cli.trainer.fit(cli.model, datamodule=cli.datamodule, ckpt_path=str(_last_checkpoint(run_dir)))
    return Path(cli.trainer.checkpoint_callback.best_model_path)


def _last_checkpoint(run_dir: Path) -> Path:
    found = sorted((run_dir / "train").rglob("last.ckpt"), key=lambda p: p.stat().st_mtime)
    if not found:
        from speechkit.errors import SpeechkitError

        raise SpeechkitError(f"{run_dir / 'train'}: no last.ckpt to continue training from")
    return found[-1]


def _ship(opts: QuickstartOptions, run_dir: Path, ckpt: Path) -> dict:
    """Export (+ int8), calibrate thresholds on keyword-free speech of training voices, run the
    detector and the demo over a stream of held-out voice families, score held-out-family clips."""
    out: dict = {}
    with timed(opts.timings, "export"):
        result = _export(run_dir, ckpt, clip=True, log=_say)
    onnx_path, detector_path = Path(result["onnx"]), _detector_model(result)
    out["onnx"] = str(onnx_path)
    out["onnx_kb"] = round(onnx_path.stat().st_size / 1024, 1)
    if result.get("stream_onnx"):
        out["stream_onnx"] = str(detector_path)
        out["stream_onnx_kb"] = round(detector_path.stat().st_size / 1024, 1)
    if result.get("int8"):
        out["onnx_int8"] = str(result["int8"])
        out["onnx_int8_kb"] = round(Path(result["int8"]).stat().st_size / 1024, 1)
        out["int8_accuracy"] = result["int8_report"].int8 / 100.0  # the gate works in percent
    with timed(opts.timings, "stream"):
        out.update(_stream_eval(opts, run_dir, detector_path))
    with timed(opts.timings, "heldout_clips"):
        out.update(_heldout_clips(opts, run_dir, onnx_path))
    return out


def _stream_eval(opts: QuickstartOptions, run_dir: Path, model_path: Path) -> dict:
    import contextlib

    from speechkit.audio import save_audio
    from speechkit.data.synth.speech_commands import keyword_folder
    from speechkit.data.synth.stream import synth_keyword_stream, synth_negative_stream, write_stream
    from speechkit.data.synth.voices import sample_speakers
    from speechkit.runtime.calibrate import calibrate
    from speechkit.runtime.demo import run_demo
    from speechkit.runtime.eval_stream import evaluate_stream

    # Calibration: training voice families and rooms, but speakers and sentences not trained on.
    calib_voices = sample_speakers(40, seed=opts.seed + 4242, pool="train", engines=opts.engines)
    _say(f"synthesizing {opts.calibration_minutes:g} min of keyword-free speech for threshold calibration ...")
    negatives = run_dir / "negatives.wav"
    save_audio(negatives, synth_negative_stream(
        opts.keywords, calib_voices, num_sentences=max(10, int(opts.calibration_minutes * 20)),
        seed=opts.seed + 1, room_pool="train",
    ), 16000)
    calib = calibrate(model_path, negatives, fa_per_hour=1.0)
    _say(f"thresholds for <= 1 false alarm/hour on {calib['negative_hours'] * 60:.1f} min of negatives: "
         + ", ".join(f"{k} {v:.2f}" for k, v in calib["thresholds"].items()))
    # The test stream: voice families and rooms held out of training entirely.
    voices = sample_speakers(24, seed=opts.seed + 7919, pool="heldout")
    _say(f"synthesizing a stream with {opts.stream_keywords} keywords among sentences (held-out voice families) ...")
    stream = synth_keyword_stream(
        opts.keywords, voices, num_keywords=opts.stream_keywords, seed=opts.seed + 2, room_pool="heldout",
    )
    for event in stream.events:  # events name the model's labels ("hey computer" -> "hey_computer")
        event["keyword"] = keyword_folder(event["keyword"])
    wav, events = run_dir / "stream.wav", run_dir / "stream_events.json"
    write_stream(stream, wav, events)
    scores = evaluate_stream(model_path, wav, events, det_png=run_dir / "det_curve.png")
    _say(f"demo: speechkit demo kws --model {model_path} --input {wav}")
    detections = run_dir / "demo_detections.jsonl"
    with open(detections, "w") as handle, contextlib.redirect_stdout(handle):
        run_demo("kws", ["--model", str(model_path), "--input", str(wav)])
    for line in detections.read_text().splitlines()[:3]:
        print(f"    {line}")
    return {
        "stream_wav": str(wav),
        "stream_minutes": round(stream.duration_s / 60, 2),
        "stream_recall": scores["recall"],
        "stream_false_alarms_per_hour": scores["false_alarms_per_hour"],
        "stream_false_alarms": scores["false_alarms"],
        "stream_per_keyword": {
            k: {"recall": v["recall"], "false_alarms_per_hour": v["false_alarms_per_hour"],
                "hits": v["hits"], "events": v["events"]}
            for k, v in scores["per_keyword"].items()
        },
        "demo_detections": str(detections),
    }


def _heldout_clips(opts: QuickstartOptions, run_dir: Path, onnx_path: Path) -> dict:
    """Clip accuracy on speakers of voice families held out of training (the proxy's clip half)."""
    import numpy as np

    from speechkit.audio import load_audio
    from speechkit.data.synth.speech_commands import keyword_folder, synth_speech_commands
    from speechkit.runtime.kws import KwsModel

    folder = run_dir / "heldout_clips"
    synth_speech_commands(
        folder, words=list(opts.keywords), num_speakers=24, unknown_words=[], clips_per_word=1,
        seed=opts.seed + 31337, background_seconds=0, validation_percent=0, testing_percent=0,
        voice_pool="heldout", jobs=2,
    )
    model = KwsModel(onnx_path)
    correct = total = 0
    for keyword in opts.keywords:
        label = keyword_folder(keyword)
        files = sorted((folder / label).glob("*.wav"))
        if not files:
            continue
        clips = np.stack([load_audio(f, model.sample_rate) for f in files])
        predicted = model.probabilities(clips).argmax(-1)
        correct += int(sum(model.labels[i] == label for i in predicted))
        total += len(files)
    return {"heldout_family_clip_accuracy": correct / total if total else None, "heldout_family_clips": total}


_PERCENT = ("stream_recall", "int8_accuracy", "heldout_family_clip_accuracy")


def print_summary(summary: dict) -> None:
    rows = [
        ("keywords", ", ".join(summary["keywords"])),
        ("clip accuracy (held-out speakers)", f"{summary['test_accuracy']:.2%}"),
        ("parameters", f"{summary['num_params']:,}"),
    ]
    for key, label in (
        ("stream_recall", "stream recall"),
        ("stream_false_alarms_per_hour", "stream false alarms / hour"),
        ("onnx_kb", "ONNX fp32 size (KB)"),
        ("onnx_int8_kb", "ONNX int8 size (KB)"),
        ("int8_accuracy", "int8 test accuracy"),
        ("heldout_family_clip_accuracy", "clip accuracy (held-out voice families)"),
        ("stream_onnx_kb", "streaming ONNX size (KB)"),
    ):
        if key in summary:
            value = summary[key]
            rows.append((label, f"{value:.2%}" if key in _PERCENT else f"{value:g}"))
    for keyword, figures in (summary.get("stream_per_keyword") or {}).items():
        rows.append((f"  {keyword}", f"recall {figures['recall']:.0%} ({figures['hits']}/{figures['events']}), "
                                     f"{figures['false_alarms_per_hour']:g} false alarms/hour"))
    rows += [
        ("wall time", f"{summary['wall_time_s'] / 60:.1f} min"),
        ("checkpoint", summary["checkpoint"]),
    ]
    for key, label in (("onnx", "ONNX model"), ("onnx_int8", "ONNX int8 model"),
                       ("stream_onnx", "streaming ONNX model"), ("stream_wav", "test stream")):
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
    p.add_argument("--stream-keywords", type=int, default=None, help="keyword occurrences in the test stream (default 60)")
    p.add_argument("--recipe", default=None,
                   help="recipe under recipes/ to train with (default synthetic/kws/stream_windows.yaml; "
                        "synthetic/kws/stream.yaml trains the stateful streaming BC-ResNet)")
    p.add_argument("--negative-minutes", type=float, default=None,
                   help="minutes of keyword-free running speech synthesized for training (default 20)")
    p.add_argument("--hard-negative-rounds", type=int, default=None,
                   help="rounds of mining the detector's false alarms on keyword-free speech and training on them (default 1)")
    p.add_argument("--hard-negative-minutes", type=float, default=None,
                   help="minutes of keyword-free speech scanned per hard-negative round (default 20)")
    p.add_argument("--engines", default=None,
                   help="speech engines of the training voices: espeak, pico, or a weighted mix (default: "
                        "espeak:3,pico:1 for kws, espeak for asr); the KWS test stream stays held-out espeak-ng "
                        "families, the ASR quickstart adds a pico test set")
    p.add_argument("--synth-cache", default=None, metavar="DIR",
                   help="cache synthesized speech here (default ~/.cache/speechkit/synth)")
    p.add_argument("--no-synth-cache", action="store_true", help="synthesize everything, cache nothing")
    p.add_argument("--calibration-minutes", type=float, default=None,
                   help="minutes of keyword-free speech the thresholds are calibrated on (default 20)")


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
    if getattr(args, "recipe", None):
        opts.recipe = args.recipe
    if getattr(args, "engines", None):
        opts.engines = args.engines
    if getattr(args, "synth_cache", None):
        opts.synth_cache = Path(args.synth_cache)
    opts.no_synth_cache = bool(getattr(args, "no_synth_cache", False))
    for name in ("stream_keywords", "negative_minutes", "hard_negative_rounds", "hard_negative_minutes",
                 "calibration_minutes"):
        value = getattr(args, name, None)
        if value is not None:
            if value < 0 or (name == "stream_keywords" and value < 1):
                raise SpeechkitError(f"--{name.replace('_', '-')} must be {'>= 1' if name == 'stream_keywords' else '>= 0'}, got {value}")
            setattr(opts, name, value)
    run(opts)
    return 0


QUICKSTART = Subcommand(
    "kws", "synthesize speech, train, test, export and stream a keyword spotter", add_arguments, main,
    description="Synthesize a Speech Commands-style corpus with espeak-ng, train BC-ResNet-1, test it on "
    "held-out voices, export it to ONNX and run the streaming detector over a synthesized stream.",
    order=10,
)

__all__ = ["QuickstartOptions", "run", "main", "DEFAULT_KEYWORDS", "QUICKSTART"]
