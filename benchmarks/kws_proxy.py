"""Voices never heard: the held-out-family proxy and the augmentation ablation table (issue 11).

For each configuration (row), train BC-ResNet-1 KWS on a synthetic Speech Commands corpus
spoken by the TRAIN voice families in training rooms, export it to ONNX, and score it on the
PROXY, built from what training never had: the held-out accents and variant families
(``speechkit.data.synth.voices.voice_pool("heldout")``) in held-out shoebox rooms through
held-out microphones (``speechkit.data.synth.effects``, room pool ``"heldout"``):

* clip accuracy on a held-out-family corpus in the Speech Commands layout (every keyword clip
  and every other-word clip, the latter scored as ``_unknown_``);
* clip accuracy on another engine's voices (SVOX Pico, ``proxy_pico/``): a held-out engine when
  ``--engines`` leaves pico out of training (the default, espeak-ng only); and on Piper's neural
  voice of a recorded person (``proxy_piper/``, needs the ``[voices]`` extra), never trained on;
* stream recall and false alarms per hour on a held-out-family keyword stream, after
  calibrating per-keyword thresholds (<= 0.5 FA/h) on held-out-family keyword-free speech,
  as the quickstart does (``speechkit calibrate`` + ``speechkit eval-stream``).

Rows: ``none``, each augmentation alone, ``all`` together, and with ``--extra-recipe PATH`` a
row trained from that recipe (its own config file, the same data, epochs and overrides).
Data (training corpus + manifests, proxy corpus, proxy streams) is built once under ``--out``
and reused by every row and by later runs; a row whose ``result.json`` exists is not retrained.

Usage::

    python benchmarks/kws_proxy.py --out runs/kws_proxy [--speakers 400] [--epochs 15]
        [--proxy-speakers 40] [--rows none,pitch,all] [--extra-recipe recipes/.../config.yaml]
        [--engines espeak:3,pico:1]

Writes ``<out>/proxy_table.json`` and ``<out>/proxy_table.md`` and prints the markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from speechkit.data.augment import AUGMENTATIONS

KEYWORDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "synthetic" / "kws" / "config.yaml"


def build_data(args: argparse.Namespace, out: Path) -> dict:
    """Training corpus + manifests (train pools) and the proxy (held-out pools); reused if present."""
    from speechkit.audio import save_audio
    from speechkit.data.corpora.speech_commands import prepare_speech_commands
    from speechkit.data.synth.speech_commands import synth_speech_commands
    from speechkit.data.synth.stream import synth_keyword_stream, synth_negative_stream, write_stream
    from speechkit.data.synth.voices import sample_speakers
    from speechkit.quickstart.kws import unknown_material

    timings = {}
    tag = engine_tag(args.engines)
    corpus, manifests = out / f"train_corpus{tag}", out / f"train_manifests{tag}"
    if not (manifests / "labels.json").is_file():
        start = time.time()
        if not corpus.is_dir():
            synth_speech_commands(
                corpus, words=list(KEYWORDS), num_speakers=args.speakers, seed=args.seed,
                unknown_words=unknown_material(KEYWORDS, args.seed), clips_per_word=args.clips_per_word,
                jobs=args.jobs, progress=True, voice_pool="train", room_pool="train", engines=args.engines,
            )  # fmt: skip
        prepare_speech_commands(corpus, manifests, keywords=list(KEYWORDS), seed=args.seed, unknown_ratio=2.0)
        timings["train_data_s"] = round(time.time() - start, 1)
    proxy = out / "proxy_corpus"
    if not proxy.is_dir():
        start = time.time()
        # Every proxy speaker's clips are scored, so no split is needed (all go to "train").
        # Unknown material: the other 25 Speech Commands words (scored as ``_unknown_``).
        _proxy_corpus(args, proxy, args.seed + 1009, voice_pool="heldout")
        timings["proxy_corpus_s"] = round(time.time() - start, 1)
    # Another engine's voices: SVOX Pico (two recorded speakers, many rates, pitches and speed
    # factors), in held-out rooms. A held-out engine only when --engines leaves pico out.
    pico_proxy = out / "proxy_pico"
    if not pico_proxy.is_dir():
        start = time.time()
        _proxy_corpus(args, pico_proxy, args.seed + 2003, engines="pico")
        timings["pico_proxy_s"] = round(time.time() - start, 1)
    stream_wav, events, negatives = out / "proxy_stream.wav", out / "proxy_stream_events.json", out / "proxy_negatives.wav"
    if not (stream_wav.is_file() and events.is_file() and negatives.is_file()):
        start = time.time()
        voices = sample_speakers(12, seed=args.seed + 7919, pool="heldout")
        save_audio(
            negatives,
            synth_negative_stream(KEYWORDS, voices, num_sentences=args.negative_sentences, seed=args.seed + 1,
                                  room_pool="heldout"),
            16000,
        )  # fmt: skip
        stream = synth_keyword_stream(
            KEYWORDS, voices, num_keywords=args.stream_keywords, seed=args.seed + 2, room_pool="heldout"
        )
        write_stream(stream, stream_wav, events)
        timings["proxy_streams_s"] = round(time.time() - start, 1)
    # A neural voice of a recorded person (Piper, en_US-joe-medium): never a training engine here.
    piper_proxy = out / "proxy_piper"
    if not piper_proxy.is_dir():
        start = time.time()
        _proxy_corpus(args, piper_proxy, args.seed + 3001, engines="piper")
        timings["piper_proxy_s"] = round(time.time() - start, 1)
    return {"manifests": manifests, "proxy": proxy, "pico_proxy": pico_proxy, "piper_proxy": piper_proxy, "stream": stream_wav, "events": events,
            "negatives": negatives, "timings": timings}  # fmt: skip


def _proxy_corpus(args: argparse.Namespace, folder: Path, seed: int, **voices) -> None:
    """One scored proxy corpus in held-out rooms and microphones: every speaker's clips (no split),
    ``voices`` = ``voice_pool=`` and/or ``engines=`` of ``synth_speech_commands``."""
    from speechkit.data.synth.speech_commands import synth_speech_commands

    synth_speech_commands(
        folder, words=list(KEYWORDS), num_speakers=args.proxy_speakers, seed=seed, clips_per_word=1,
        validation_percent=0.0, testing_percent=0.0, background_seconds=0.0, jobs=args.jobs,
        progress=True, room_pool="heldout", **voices,
    )  # fmt: skip


def engine_tag(engines: str) -> str:
    """Folder suffix of a training-engine mix: '' for espeak-ng only (the original layout)."""
    return "" if engines == "espeak" else "_" + engines.replace(",", "+").replace(":", "x")


def clip_accuracy(onnx_path: Path, proxy: Path) -> dict:
    """Accuracy of the exported model on every clip of the proxy corpus (keywords + unknown)."""
    from speechkit.runtime.audio import read_audio
    from speechkit.runtime.classifier import ClipClassifier

    model = ClipClassifier(onnx_path)
    labels = list(model.labels)
    clips, targets = [], []
    for folder in sorted(p for p in proxy.iterdir() if p.is_dir() and not p.name.startswith("_")):
        target = folder.name if folder.name in labels else "_unknown_"
        for wav in sorted(folder.glob("*.wav")):
            audio, _ = read_audio(wav, model.sample_rate)
            clips.append(np.pad(audio, (0, max(0, model.clip_samples - audio.size)))[: model.clip_samples])
            targets.append(labels.index(target))
    batch = np.stack(clips)
    predicted = np.concatenate([np.argmax(model.logits(batch[i : i + 64]), axis=1) for i in range(0, len(batch), 64)])
    targets_np = np.asarray(targets)
    is_kw = np.isin(targets_np, [labels.index(k) for k in KEYWORDS if k in labels])
    correct = predicted == targets_np
    # The class balance of the training corpus's test split (``prepare ... unknown_ratio=2``):
    # unknown clips subsampled (seeded) to 2x the mean count per keyword.
    unknown_idx = np.flatnonzero(~is_kw)
    keep = int(min(unknown_idx.size, 2 * is_kw.sum() / max(1, len(np.unique(targets_np[is_kw])))))
    unknown_kept = np.random.default_rng(0).choice(unknown_idx, size=keep, replace=False)
    balanced = np.concatenate([np.flatnonzero(is_kw), unknown_kept])
    return {
        "clip_acc": round(float(np.mean(correct[balanced])), 4),
        "keyword_clip_acc": round(float(np.mean(correct[is_kw])), 4),
        "unknown_clip_acc": round(float(np.mean(correct[~is_kw])), 4),
        "clips": int(balanced.size),
    }


def train_row(name: str, args: argparse.Namespace, data: dict, out: Path, recipe: Path, augs: list[str]) -> dict:
    """Fit + export one row (subprocesses: ``speechkit fit``, ``speechkit export``); score it."""
    from speechkit.runtime.calibrate import calibrate
    from speechkit.runtime.eval_stream import evaluate_stream

    name = f"{name}{engine_tag(args.engines)}"
    row_dir = out / "rows" / name
    result_path = row_dir / "result.json"
    if result_path.is_file():
        return json.loads(result_path.read_text())
    row_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(RECIPE.parents[3]), env.get("PYTHONPATH")]))
    started = time.time()
    fit = [
        sys.executable, "-m", "speechkit.cli.main", "fit", "--config", str(recipe),
        "--data.init_args.manifest_dir", str(data["manifests"]),
        "--trainer.default_root_dir", str(row_dir / "train"),
        "--trainer.max_epochs", str(args.epochs), "--seed_everything", str(args.seed),
        "--trainer.enable_progress_bar", "false",
        "--data.init_args.augmentations", json.dumps(augs),
        "--data.init_args.augment_p", str(args.augment_p),
    ]  # fmt: skip
    log = open(row_dir / "fit.log", "w")
    subprocess.run(fit, check=True, env=env, stdout=log, stderr=subprocess.STDOUT)
    fit_s = time.time() - started
    ckpts = sorted((row_dir / "train").rglob("best-*.ckpt")) or sorted((row_dir / "train").rglob("last.ckpt"))
    if not ckpts:
        raise SystemExit(f"{name}: no checkpoint under {row_dir / 'train'} (see {row_dir / 'fit.log'})")
    onnx_path = row_dir / "kws.onnx"
    subprocess.run([sys.executable, "-m", "speechkit.cli.main", "export", str(ckpts[-1]), str(onnx_path)],
                   check=True, env=env, stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
    result = {"row": name, "augmentations": augs, "recipe": str(recipe), "fit_s": round(fit_s, 1),
              "engines": args.engines}
    result.update(clip_accuracy(onnx_path, data["proxy"]))
    pico = clip_accuracy(onnx_path, data["pico_proxy"])
    result.update({"pico_clip_acc": pico["clip_acc"], "pico_keyword_clip_acc": pico["keyword_clip_acc"]})
    piper = clip_accuracy(onnx_path, data["piper_proxy"])
    result.update({"piper_clip_acc": piper["clip_acc"], "piper_keyword_clip_acc": piper["keyword_clip_acc"]})
    calib = calibrate(onnx_path, data["negatives"], fa_per_hour=0.5)
    scores = evaluate_stream(onnx_path, data["stream"], data["events"])
    result.update({
        "stream_recall": scores["recall"], "stream_fa_per_hour": scores["false_alarms_per_hour"],
        "stream_events": scores["events"], "stream_hours": scores["hours"],
        "negative_hours": calib["negative_hours"], "thresholds": calib["thresholds"],
    })  # fmt: skip
    result["row_s"] = round(time.time() - started, 1)
    result_path.write_text(json.dumps(result, indent=2))
    return result


def markdown(results: list[dict]) -> str:
    lines = [
        "| row | training engines | augmentations | proxy clip acc | proxy keyword-clip acc | pico clip acc | "
        "piper clip acc | stream recall | stream FA/h | fit s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        augs = ", ".join(r["augmentations"]) or "-"
        pico = f"{r['pico_clip_acc']:.2%}" if "pico_clip_acc" in r else "-"
        piper = f"{r['piper_clip_acc']:.2%}" if "piper_clip_acc" in r else "-"
        lines.append(
            f"| {r['row']} | {r.get('engines', 'espeak')} | {augs} | {r['clip_acc']:.2%} | {r['keyword_clip_acc']:.2%} | "
            f"{pico} | {piper} | {r['stream_recall']:.2f} | {r['stream_fa_per_hour']:.1f} | {r['fit_s']:.0f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("runs/kws_proxy"), help="data and rows go here (reused)")
    p.add_argument("--speakers", type=int, default=400, help="training-corpus speakers (train pools)")
    p.add_argument("--clips-per-word", type=int, default=2, help="keyword takes per training speaker")
    p.add_argument("--proxy-speakers", type=int, default=40, help="held-out-family speakers of the proxy clips")
    p.add_argument("--stream-keywords", type=int, default=40, help="keywords in the held-out-family stream")
    p.add_argument("--negative-sentences", type=int, default=80, help="sentences of held-out-family negatives")
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--augment-p", type=float, default=0.5, help="probability of each augmentation per clip")
    p.add_argument("--rows", default=None,
                   help="comma-separated rows (default: none, each augmentation, all): e.g. none,pitch,all")  # fmt: skip
    p.add_argument("--extra-recipe", type=Path, default=None, help="also train this recipe (row 'extra')")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--jobs", type=int, default=2, help="synthesis worker processes")
    p.add_argument("--engines", default="espeak",
                   help="speech engines of the training corpus (espeak, or a mix such as espeak:3,pico:1); "
                        "rows are named with a suffix for mixes. 'pico clip acc' is a held-out-engine figure "
                        "only when pico is not among them")
    args = p.parse_args(argv)

    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    data = build_data(args, out)
    rows = {"none": [], **{a: [a] for a in AUGMENTATIONS}, "all": list(AUGMENTATIONS)}
    wanted = args.rows.split(",") if args.rows else list(rows)
    unknown = [r for r in wanted if r not in rows]
    if unknown:
        raise SystemExit(f"unknown rows {unknown}; expected some of {list(rows)}")
    results = []
    for name in wanted:
        print(f"[kws_proxy] row {name} ...", flush=True)
        results.append(train_row(name, args, data, out, RECIPE, rows[name]))
        print(f"[kws_proxy]   {json.dumps({k: results[-1][k] for k in ('clip_acc', 'stream_recall', 'stream_fa_per_hour')})}", flush=True)
    if args.extra_recipe is not None:
        print(f"[kws_proxy] row extra ({args.extra_recipe}) ...", flush=True)
        results.append(train_row("extra", args, data, out, args.extra_recipe, []))
    table = markdown(results)
    summary = {
        "command": " ".join(sys.argv),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.platform()}",
        "scale": {k: getattr(args, k) for k in ("speakers", "clips_per_word", "proxy_speakers", "stream_keywords",
                                                 "negative_sentences", "epochs", "augment_p", "seed", "engines")},  # fmt: skip
        "data_timings_s": data["timings"],
        "wall_s": round(time.time() - started, 1),
        "rows": results,
    }
    (out / "proxy_table.json").write_text(json.dumps(summary, indent=2))
    (out / "proxy_table.md").write_text(table + "\n")
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
