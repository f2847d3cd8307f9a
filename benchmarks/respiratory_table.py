"""AST scratch CE vs + Patch-Mix CE vs + Patch-Mix CL on the synthetic respiratory corpus (issue 17).

Usage:
    OMP_NUM_THREADS=1 nice -n 5 python benchmarks/respiratory_table.py --patients 60 --epochs 30
    python benchmarks/respiratory_table.py --data runs/respiratory_table --epochs 30 --accelerator gpu

Steps:

1. Data: ``speechkit synth icbhi`` (``--patients`` synthetic patients, 35% held out for test,
   the ``Litt3200`` device used only by test patients; short cycles, ``--cycle-seconds``), then
   ``speechkit prepare icbhi`` with 2 s cycle clips and 15% of the training patients held out as
   validation (so the checkpoint is *not* picked on the test split). Reused with ``--data``.
2. The three systems of ``recipes/synthetic/respiratory/`` (config.yaml, + patchmix_ce.yaml,
   + patchmix_cl.yaml), each ``--epochs`` epochs from the same seed.
3. Each is tested at its last epoch and at its best validation-Score epoch.

Prints one table (Sp, Se, Score and the 2-class Score on the test patients, the Score on the
held-out device, parameters, training time) and writes it with the settings to
``<out>/table.json``. Nothing is asserted: the numbers are what they are. Synthetic data: the
table compares methods on this proxy, it says nothing about lung sounds.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

RECIPE = Path(__file__).resolve().parents[1] / "speechkit" / "recipes" / "synthetic" / "respiratory"
SYSTEMS = [("AST scratch CE", []), ("+ Patch-Mix CE", ["patchmix_ce.yaml"]), ("+ Patch-Mix CL", ["patchmix_cl.yaml"])]


def get_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, default=Path("runs/respiratory_table"), help="run folder")
    p.add_argument("--data", type=Path, default=None, help="reuse the data of an earlier run folder")
    p.add_argument("--patients", type=int, default=60, help="synthetic patients (default 60)")
    p.add_argument("--recordings", type=int, default=2, help="recordings per patient (default 2)")
    p.add_argument("--cycle-seconds", default="1.2,2.0", help="MIN,MAX breathing period (default 1.2,2.0)")
    p.add_argument("--epochs", type=int, default=30, help="epochs per system (default 30)")
    p.add_argument("--systems", default="0,1,2", help="comma-separated indices into the three systems")
    p.add_argument("--override", action="append", default=[], metavar="KEY=VALUE",
                   help="extra LightningCLI override for every system, e.g. model.init_args.specaugment=null")
    p.add_argument("--accelerator", default="cpu")
    p.add_argument("--seed", type=int, default=1)
    return p.parse_args(argv)


def build_data(args) -> Path:
    from speechkit.data.corpora.icbhi import prepare_icbhi
    from speechkit.data.synth.respiratory import synth_icbhi

    root = args.data or args.out
    corpus, manifests = root / "corpus", root / "manifests"
    if not (manifests / "labels.json").is_file():
        low, high = (float(x) for x in args.cycle_seconds.split(","))
        print(synth_icbhi(corpus, args.patients, args.recordings, (4, 8), (low, high), 35.0, "Litt3200", seed=0))
        print(prepare_icbhi(corpus, manifests, cycle_seconds=2.0, valid_percent=15.0))
    return manifests


def run_system(name: str, overlays: list[str], manifests: Path, args) -> dict:
    from speechkit.cli.lightning_cli import run_lightning_cli

    out = args.out / "runs" / name.replace(" ", "_").replace("+", "").strip("_")
    argv = ["--config", str(RECIPE / "config.yaml")]
    for overlay in overlays:
        argv += ["--config", str(RECIPE / overlay)]
    argv += ["--data.init_args.manifest_dir", str(manifests), "--trainer.max_epochs", str(args.epochs),
             "--trainer.default_root_dir", str(out), "--trainer.enable_progress_bar", "false",
             "--trainer.accelerator", args.accelerator, "--seed_everything", str(args.seed)]
    for item in args.override:
        key, _, value = item.partition("=")
        argv += [f"--{key}", value]
    cli = run_lightning_cli(argv, run=False)
    start = time.time()
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    seconds = time.time() - start
    row = {"system": name, "params": sum(p.numel() for p in cli.model.model.parameters()), "train_s": round(seconds)}
    for which in ("last", "best"):
        cli.trainer.test(cli.model, datamodule=cli.datamodule, ckpt_path=which, verbose=False)
        report = cli.model.test_report
        row[which] = {**{k: round(v, 2) for k, v in report.scores.items()},
                      "heldout_device": round(report.groups.get("Litt3200", {}).get("score", float("nan")), 2)}
    return row


def format_table(rows: list[dict]) -> str:
    head = ("| system | epoch | Sp | Se | Score | Score (2-class) | Score, held-out device | params | train s |\n"
            "|---|---|---|---|---|---|---|---|---|")
    lines = [head]
    for row in rows:
        for which in ("last", "best"):
            r = row[which]
            lines.append(f"| {row['system']} | {which} | {r['sp']:.2f} | {r['se']:.2f} | {r['score']:.2f} | "
                         f"{r['score_2cls']:.2f} | {r['heldout_device']:.2f} | {row['params']:,} | {row['train_s']} |")
    return "\n".join(lines)


def main(argv=None) -> None:
    args = get_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    manifests = build_data(args)
    rows = []
    for index in (int(i) for i in args.systems.split(",")):
        name, overlays = SYSTEMS[index]
        rows.append(run_system(name, overlays, manifests, args))
        print(format_table(rows), flush=True)
    table = format_table(rows)
    print(table)
    settings = {k: str(v) for k, v in vars(args).items()}
    (args.out / "table.json").write_text(json.dumps({"settings": settings, "rows": rows, "table": table}, indent=1))


if __name__ == "__main__":
    main()
