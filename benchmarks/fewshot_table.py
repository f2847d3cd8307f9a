"""Few-shot KWS table: ProtoNet vs D-ProtoNets vs D-ProtoNets + AuxSL, BC-ResNet-1 and -8.

Trains each system with the synthetic recipe (``recipes/synthetic/fewshot``: ``config.yaml``
plus the method's and the width's overlays, the same schedule for all), then evaluates the last
checkpoint on fixed 5-way episodes of the held-out test classes, spoken by held-out speakers,
1- and 5-shot (``speechkit eval-fewshot``'s code: accuracy and open-set AUROC with 95 % CIs).
Prints one table (and writes JSON with ``--json``). Nothing is asserted.

Data (built on first use under ``--data``): synthetic splitGSC, the 35 GSC v2 words from
``--speakers`` espeak-ng speakers (25 % of them only in valid, 25 % only in test:
``prepare speech-commands --split fewshot --heldout-speakers``), and synthetic LibriWord (60
other frequent words, training-pool voices) standing in for LibriWord.

    OMP_NUM_THREADS=1 nice -n 5 python benchmarks/fewshot_table.py --epochs 4 --episodes-per-epoch 50
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "speechkit" / "recipes" / "synthetic" / "fewshot"
LIBRIWORD_WORDS = (
    "that,with,this,have,from,your,they,will,just,like,about,what,when,more,were,their,there,which,time,been,"
    "would,people,some,also,them,other,than,good,only,after,first,into,know,make,over,think,then,could,back,"
    "these,want,because,well,said,most,much,very,where,even,should,here,need,really,work,year,being,going,"
    "before,made,still"
).split(",")
METHODS = {"protonet": ["protonet.yaml"], "dprotonet": ["dprotonet.yaml"], "dprotonet+auxsl": []}
WIDTHS = {1: [], 8: ["bcresnet8.yaml"]}


def build_data(root: Path, speakers: int) -> tuple[Path, Path]:
    """The synthetic splitGSC and LibriWord manifest folders (built once)."""
    from speechkit.data.corpora import prepare_speech_commands
    from speechkit.data.corpora.speech_commands import V2_WORDS
    from speechkit.data.synth.speech_commands import synth_speech_commands

    sc, sc_m = root / "synth_fewshot_sc", root / "synth_fewshot_sc_manifests"
    lw, lw_m = root / "synth_libriword", root / "synth_libriword_manifests"
    if not (sc_m / "labels.json").is_file():
        if not sc.exists():
            synth_speech_commands(sc, words=V2_WORDS, unknown_words=[], num_speakers=speakers, clips_per_word=2,
                                  validation_percent=25, testing_percent=25, background_seconds=0)
        prepare_speech_commands(sc, sc_m, split="fewshot", heldout_speakers=True, num_jobs=1)
    if not (lw_m / "labels.json").is_file():
        if not lw.exists():
            synth_speech_commands(lw, words=LIBRIWORD_WORDS, unknown_words=[], num_speakers=24, clips_per_word=1,
                                  voice_pool="train", background_seconds=0)
        prepare_speech_commands(lw, lw_m, classes="all", silence_ratio=0, num_jobs=1)
    return sc_m, lw_m


def train_and_eval(width: int, method: str, sc: Path, lw: Path, out: Path, args) -> dict:
    from speechkit.inference.fewshot_cmd import evaluate_fewshot
    from speechkit.runtime.fewshot import OpenSetRule
    from speechkit.tasks.training import lightning_cli

    configs = ["config.yaml"] + METHODS[method] + WIDTHS[width]
    argv = [a for c in configs for a in ("--config", str(RECIPE / c))] + [
        "--data.init_args.manifest_dir", str(sc), "--trainer.max_epochs", str(args.epochs),
        "--trainer.default_root_dir", str(out), "--data.init_args.episodes_per_epoch", str(args.episodes_per_epoch),
        "--data.init_args.val_episodes", str(args.val_episodes), "--trainer.enable_progress_bar", "false", "--trainer.logger", "false",
    ]
    if method == "dprotonet+auxsl":
        argv += ["--data.init_args.aux_manifest_dir", str(lw)]
    cli = lightning_cli(argv, run=False)
    start = time.perf_counter()
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    seconds = time.perf_counter() - start
    task = cli.model.cpu().eval()
    report = evaluate_fewshot(task.embed_clips, OpenSetRule(task.open_set_config()), sc, "test", args.test_episodes,
                              5, (1, 5), 5, 5, 0, task.sample_rate, task.clip_samples)
    params = sum(p.numel() for p in task.model.parameters())
    val = {k: float(v) for k, v in cli.trainer.callback_metrics.items() if k.startswith("val/")}
    return {"width": width, "method": method, "params": params, "train_s": round(seconds, 1), "val": val,
            "steps": int(cli.trainer.global_step), **report["results"]}


def format_rows(rows: list[dict]) -> str:
    head = (f"{'model':<12} {'method':<16} {'params':>7} {'1-shot acc':>15} {'1-shot AUROC':>15} "
            f"{'5-shot acc':>15} {'5-shot AUROC':>15} {'train s':>8}")
    lines = [head, "-" * len(head)]
    for r in rows:
        cells = [f"{r[s][m]:6.2f} ± {r[s][m + '_ci95']:4.2f}" for s in ("1-shot", "5-shot") for m in ("acc", "auroc")]
        lines.append(f"BC-ResNet-{r['width']:<2} {r['method']:<16} {r['params']:>7} {cells[0]:>15} {cells[1]:>15} "
                     f"{cells[2]:>15} {cells[3]:>15} {r['train_s']:>8.0f}")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=REPO / "data" / "fewshot_bench")
    p.add_argument("--out", type=Path, default=REPO / "runs" / "fewshot_bench")
    p.add_argument("--speakers", type=int, default=40)
    p.add_argument("--widths", default="1,8")
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--episodes-per-epoch", type=int, default=50)
    p.add_argument("--val-episodes", type=int, default=10)
    p.add_argument("--test-episodes", type=int, default=1000)
    p.add_argument("--json", type=Path, default=None, help="write the rows here as they are measured")
    p.add_argument("--merge", type=Path, nargs="+", default=None,
                   help="print one table from the --json files of earlier (e.g. parallel) runs and exit")
    args = p.parse_args(argv)
    if args.merge:
        rows = [r for path in args.merge for r in json.loads(path.read_text())]
        rows.sort(key=lambda r: (r["width"], list(METHODS).index(r["method"])))
        print(format_rows(rows))
        return 0
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    sc, lw = build_data(args.data, args.speakers)
    rows = []
    for width in (int(w) for w in args.widths.split(",")):
        for method in args.methods.split(","):
            rows.append(train_and_eval(width, method, sc, lw, args.out / f"w{width}_{method}", args))
            print(format_rows(rows[-1:]).splitlines()[-1], file=sys.stderr, flush=True)
            if args.json:
                args.json.write_text(json.dumps(rows, indent=1))
    print(f"synthetic splitGSC (held-out speakers in test), 5-way, {args.test_episodes} test episodes, "
          f"5 queries/class + 5 unknown; training {args.epochs} x {args.episodes_per_epoch} episodes of the recipe")
    print(format_rows(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
