"""ASR that hears voices it never met: engines x augmentation ablation on two proxy sets (issue 12).

For each row (training engines x augmentation group), train the ``commands.yaml`` Conformer-CTC
(``speechkit fit``, the same recipe as ``speechkit quickstart asr``) on synthetic spoken commands
and score the last checkpoint at 320 ms chunks (``speechkit eval-asr --set ... --chunk-ms 320``)
on two proxy sets that training never heard:

* ``pico``: SVOX Pico speakers saying commands. A held-out *engine* for the rows trained on
  espeak-ng only; for the rows that train on pico it is "seen engine, unseen speakers" (the
  table says which).
* ``espeak_heldout``: espeak-ng voices of the held-out accents and variant families
  (``speechkit.data.synth.voices.voice_pool("heldout")``); the espeak-ng training speakers come
  from the ``train`` pool. For the pico-only row it is a held-out engine.

Rows: engines ``espeak`` (espeak-ng train pool), ``espeak+pico`` (3/4 of the espeak-ng speakers
and 1/4 of the pico speakers: the same number of speakers as the other rows), ``pico``; each with
augmentation ``none`` and ``all`` (every name of :data:`speechkit.data.augment.AUGMENTATIONS`,
each with probability ``--augment-p``, in the ASR data loader). Data, tokenizer (one for all rows,
trained on both engines' training transcripts) and finished rows are kept under ``--out`` and
reused by later runs.

Usage::

    python benchmarks/asr_proxy.py --out runs/asr_proxy [--speakers 120] [--utterances-per-speaker 20]
        [--epochs 6] [--proxy-speakers 12] [--rows espeak/none,espeak/all,...] [--augment-p 0.5]

Writes ``<out>/proxy_table.json`` and ``<out>/proxy_table.md`` and prints the markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

from speechkit.data.augment import AUGMENTATIONS

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "recipes" / "synthetic" / "asr" / "commands.yaml"
CHUNK_MS = 320
#: LibriSpeech subset names used as folders (``speechkit prepare librispeech`` reads only these).
SUBSETS = {
    "espeak_train": "train-clean-100",  # espeak-ng, train voice pool
    "pico_train": "train-clean-360",  # SVOX Pico
    "dev": "dev-clean",  # espeak-ng train pool + pico, a few speakers (validation only; last.ckpt is scored)
    "espeak_heldout": "test-clean",  # espeak-ng, held-out accents and variant families
    "pico": "test-other",  # SVOX Pico, speakers never used in training
}
ENGINE_ROWS = ("espeak", "espeak+pico", "pico")
AUG_ROWS = {"none": [], "all": list(AUGMENTATIONS)}


def _synth(corpus: Path, key: str, speakers: int, utterances: int, engines: str, pool: str, seed: int,
           jobs: int) -> None:
    from speechkit.data.synth.librispeech import synth_librispeech

    subset = SUBSETS[key]
    if (corpus / subset).is_dir():
        return
    staging = corpus.parent / f".synth-{subset}"
    shutil.rmtree(staging, ignore_errors=True)
    synth_librispeech(staging, subsets=[subset], num_speakers=speakers, utterances_per_speaker=utterances,
                      text="commands", seed=seed, jobs=jobs, progress=True, voice_pool=pool, engines=engines)
    corpus.mkdir(parents=True, exist_ok=True)
    (staging / subset).rename(corpus / subset)
    (staging / "synth_info.json").rename(corpus / f"synth_info_{subset}.json")
    shutil.rmtree(staging)


def build_data(args: argparse.Namespace, out: Path) -> dict:
    """Corpora, manifests, the row manifests and the tokenizer; everything reused if present."""
    from speechkit.data.corpora.librispeech import prepare_librispeech
    from speechkit.data.manifests import read_cuts, write_cuts
    from speechkit.text import train_tokenizer_from_manifests

    corpus, manifests = out / "corpus", out / "manifests"
    started = time.time()
    s = args.seed * 1000
    _synth(corpus, "espeak_train", args.speakers, args.utterances_per_speaker, "espeak", "train", s + 1, args.jobs)
    _synth(corpus, "pico_train", args.speakers, args.utterances_per_speaker, "pico", "all", s + 2, args.jobs)
    _synth(corpus, "dev", 3, 5, "espeak:2,pico:1", "train", s + 3, args.jobs)
    _synth(corpus, "espeak_heldout", args.proxy_speakers, 10, "espeak", "heldout", s + 4, args.jobs)
    _synth(corpus, "pico", args.proxy_speakers, 10, "pico", "all", s + 5, args.jobs)
    synth_s = time.time() - started
    path = {k: manifests / f"cuts_{v}.jsonl.gz" for k, v in SUBSETS.items()}
    if not all(p.is_file() for p in path.values()):
        prepare_librispeech(corpus, manifests, subsets=list(SUBSETS.values()), num_jobs=args.jobs)
    mix = manifests / "cuts_train_espeak+pico.jsonl.gz"
    if not mix.is_file():
        # 3/4 of the espeak-ng speakers + 1/4 of the pico speakers: as many speakers as the other rows.
        parts = []
        for key, share in (("espeak_train", 0.75), ("pico_train", 0.25)):
            cuts = read_cuts(path[key])
            speakers = sorted({c.supervisions[0].speaker for c in cuts})
            keep = set(speakers[: max(1, round(share * len(speakers)))])
            parts += [c for c in cuts if c.supervisions[0].speaker in keep]
        from lhotse import CutSet

        write_cuts(CutSet.from_cuts(parts), mix)
    tokenizer = out / "bpe.model"
    if not tokenizer.is_file():
        train_tokenizer_from_manifests([path["espeak_train"], path["pico_train"]], tokenizer, args.vocab_size)
    return {
        "train": {"espeak": [path["espeak_train"]], "pico": [path["pico_train"]], "espeak+pico": [mix]},
        "dev": path["dev"], "sets": {"pico": path["pico"], "espeak_heldout": path["espeak_heldout"]},
        "tokenizer": tokenizer, "synth_s": round(synth_s, 1),
    }


def train_row(engines: str, aug: str, args: argparse.Namespace, data: dict, out: Path) -> dict:
    """Fit one row (``speechkit fit``), then ``speechkit eval-asr`` its last checkpoint on both sets."""
    name = f"{engines}/{aug}"
    row_dir = out / "rows" / f"{engines}_{aug}"
    result_path = row_dir / "result.json"
    if result_path.is_file():
        return json.loads(result_path.read_text())
    shutil.rmtree(row_dir, ignore_errors=True)
    row_dir.mkdir(parents=True)
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    cli = [sys.executable, "-m", "speechkit.cli.main"]
    started = time.time()
    fit = [
        *cli, "fit", "--config", str(RECIPE),
        "--data.init_args.train_manifests", json.dumps([str(p) for p in data["train"][engines]]),
        "--data.init_args.valid_manifests", json.dumps([str(data["dev"])]),
        "--data.init_args.test_manifests", json.dumps([str(data["sets"]["pico"])]),
        "--data.init_args.tokenizer_path", str(data["tokenizer"]),
        "--data.init_args.augmentations", json.dumps(AUG_ROWS[aug]),
        "--data.init_args.augment_p", str(args.augment_p),
        "--trainer.default_root_dir", str(row_dir / "train"),
        "--trainer.max_epochs", str(args.epochs), "--seed_everything", str(args.seed),
        "--trainer.enable_progress_bar", "false",
    ]  # fmt: skip
    with open(row_dir / "fit.log", "w") as log:
        subprocess.run(fit, check=True, env=env, stdout=log, stderr=subprocess.STDOUT)
    fit_s = time.time() - started
    ckpt = next((row_dir / "train").rglob("last.ckpt"), None)
    if ckpt is None:
        raise SystemExit(f"{name}: no last.ckpt under {row_dir / 'train'} (see {row_dir / 'fit.log'})")
    sets = ",".join(f"{k}={v}" for k, v in data["sets"].items())
    evaluation = row_dir / "eval.json"
    with open(row_dir / "eval.log", "w") as log:
        subprocess.run([*cli, "eval-asr", "--model", str(ckpt), "--set", sets, "--chunk-ms", str(CHUNK_MS),
                        "--out", str(evaluation)], check=True, env=env, stdout=log, stderr=subprocess.STDOUT)
    table = json.loads(evaluation.read_text())
    wers = {row["set"]: row["results"][0]["wer"] for row in table["rows"]}
    result = {"row": name, "engines": engines, "augmentations": AUG_ROWS[aug], "fit_s": round(fit_s, 1),
              "wer_320ms": wers, "checkpoint": str(ckpt)}
    result_path.write_text(json.dumps(result, indent=2))
    return result


def _set_note(set_name: str, engines: str) -> str:
    trained = engines.split("+")
    if set_name == "pico":
        return "held-out engine" if "pico" not in trained else "seen engine"
    return "held-out engine" if "espeak" not in trained else "held-out families"


def markdown(results: list[dict]) -> str:
    lines = ["| training engines | augmentation | pico commands WER @320 ms | espeak-ng held-out families WER @320 ms "
             "| fit s |", "|---|---|---|---|---|"]
    for r in results:
        w = r["wer_320ms"]
        lines.append(f"| {r['engines']} | {'all' if r['augmentations'] else 'none'} | "
                     f"{w['pico']:.2%} ({_set_note('pico', r['engines'])}) | "
                     f"{w['espeak_heldout']:.2%} ({_set_note('espeak_heldout', r['engines'])}) | {r['fit_s']:.0f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("runs/asr_proxy"), help="data and rows go here (reused)")
    p.add_argument("--speakers", type=int, default=120, help="training speakers per engine (and per row)")
    p.add_argument("--utterances-per-speaker", type=int, default=20)
    p.add_argument("--proxy-speakers", type=int, default=12, help="speakers of each proxy set (10 utterances each)")
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--vocab-size", type=int, default=64)
    p.add_argument("--augment-p", type=float, default=0.5, help="probability of each augmentation per utterance")
    p.add_argument("--rows", default=None,
                   help="comma-separated ENGINES/AUG rows (default all six): ENGINES in espeak, espeak+pico, pico; "
                        "AUG in none, all")  # fmt: skip
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--jobs", type=int, default=2, help="synthesis worker processes")
    args = p.parse_args(argv)

    everything = [f"{e}/{a}" for e in ENGINE_ROWS for a in AUG_ROWS]
    wanted = args.rows.split(",") if args.rows else everything
    unknown = [r for r in wanted if r not in everything]
    if unknown:
        raise SystemExit(f"unknown rows {unknown}; expected some of {everything}")
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    data = build_data(args, out)
    results = []
    for row in wanted:
        engines, aug = row.split("/")
        print(f"[asr_proxy] row {row} ...", flush=True)
        results.append(train_row(engines, aug, args, data, out))
        print(f"[asr_proxy]   {json.dumps(results[-1]['wer_320ms'])} (fit {results[-1]['fit_s']:.0f} s)", flush=True)
    table = markdown(results)
    summary = {
        "command": " ".join(sys.argv),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.platform()}",
        "scale": {k: getattr(args, k) for k in ("speakers", "utterances_per_speaker", "proxy_speakers", "epochs",
                                                 "vocab_size", "augment_p", "seed")},  # fmt: skip
        "synth_s": data["synth_s"], "wall_s": round(time.time() - started, 1), "rows": results,
    }
    (out / "proxy_table.json").write_text(json.dumps(summary, indent=2))
    (out / "proxy_table.md").write_text(table + "\n")
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
