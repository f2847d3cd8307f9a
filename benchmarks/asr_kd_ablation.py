"""The streaming-ASR distillation ablation (issue 13): five streaming students, one teacher, one table.

Usage:
    OMP_NUM_THREADS=1 python benchmarks/asr_kd_ablation.py --steps 600 --speakers 40
    python benchmarks/asr_kd_ablation.py --teacher runs/synthetic/asr_kd/teacher/checkpoints/last.ckpt \\
        --data runs/asr_kd_ablation --steps 3000 --accelerator gpu

Steps:

1. Data: the ASR quickstart's synthetic spoken commands (:mod:`speechkit.quickstart.asr`:
   ``--speakers`` training voices, held-out test voices whose espeak-ng accent + variant never
   occurs in training), built once under ``--out`` (or reused with ``--data``).
2. Teacher: unless ``--teacher`` names a checkpoint, the xs Conformer-CTC trained at full
   context (``recipes/synthetic/asr_kd/config.yaml`` + ``teacher.yaml``) for ``--teacher-steps``.
3. Students: the five systems of ``recipes/synthetic/asr_kd/`` (scratch, token KD, layer KD
   direct, layer KD through auxiliary layers, auxiliary + APC), each for exactly ``--steps``
   optimizer steps on the same data, seed and schedule.
4. Each student's plain checkpoint (:func:`speechkit.tasks.asr_kd.write_student_checkpoint`,
   branches dropped) is decoded on the held-out voices at 320 ms and 640 ms chunks (and full
   context), greedy CTC through the one text rule, as ``speechkit eval-asr`` does.

Prints one table (WER per system and chunk size, the teacher's full-context WER, training wall
time, student parameters and training-time parameters with the branches) and writes it, with
the settings, to ``<out>/ablation.json``. Nothing is asserted: the numbers are what they are.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

SYSTEMS = [
    ("scratch", []),
    ("token KD", ["token_kd.yaml"]),
    ("layer KD direct", ["layer_kd_direct.yaml"]),
    ("layer KD aux", ["layer_kd_aux.yaml"]),
    ("aux + APC", ["layer_kd_aux_apc.yaml"]),
]
CHUNKS_MS = (320, 640, 0)


def get_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, default=Path("runs/asr_kd_ablation"), help="run folder (data, runs, table)")
    p.add_argument("--data", type=Path, default=None, help="reuse the data of an earlier run folder")
    p.add_argument("--teacher", type=Path, default=None, help="teacher checkpoint (asr-ctc); default: train one")
    p.add_argument("--steps", type=int, default=600, help="optimizer steps per student (default 600)")
    p.add_argument("--teacher-steps", type=int, default=None, help="teacher steps (default: --steps)")
    p.add_argument("--speakers", type=int, default=40, help="training voices x 24 utterances (default 40)")
    p.add_argument("--test-speakers", type=int, default=16, help="test voices (held-out ones are kept)")
    p.add_argument("--warmup-fraction", type=float, default=0.35,
                   help="linear warm-up as a fraction of each run's steps, cosine decay after (default 0.35)")
    p.add_argument("--systems", default=",".join(name for name, _ in SYSTEMS), help="comma-separated subset")
    p.add_argument("--accelerator", default="cpu", help="Lightning accelerator (cpu, gpu, auto)")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def build_data(args) -> tuple[Path, Path]:
    """(manifest folder, tokenizer) of the quickstart's synthetic commands, made once."""
    from speechkit.quickstart.asr import AsrQuickstartOptions, _data, _tokenizer

    run_dir = args.data or args.out / "data"
    manifests, tokenizer = run_dir / "manifests", run_dir / "bpe.model"
    if not (manifests / "cuts_heldout.jsonl.gz").is_file():
        run_dir.mkdir(parents=True, exist_ok=True)
        opts = AsrQuickstartOptions(out=run_dir, speakers=args.speakers, dev_speakers=2,
                                    test_speakers=args.test_speakers, seed=args.seed)
        _data(opts, run_dir)
    if not tokenizer.is_file():
        _tokenizer(AsrQuickstartOptions(), run_dir, manifests)
    return manifests, tokenizer


def fit(configs: list[str], root: Path, manifests: Path, tokenizer: Path, steps: int, args, extra=()) -> tuple[Path, float, object]:
    """Fit one recipe chain for exactly ``steps`` steps; returns (checkpoint, seconds, task)."""
    from speechkit.tasks.training import RECIPES_DIR, lightning_cli

    recipe = RECIPES_DIR / "synthetic/asr_kd"
    max_epochs = 1000  # the step budget ends training; warm-up = --warmup-fraction of the steps, cosine after
    argv = [a for c in ["config.yaml", *configs] for a in ("--config", str(recipe / c))] + [
        "--data.init_args.train_manifests", json.dumps([str(manifests / "cuts_train-clean-100.jsonl.gz")]),
        "--data.init_args.valid_manifests", json.dumps([str(manifests / "cuts_dev-clean.jsonl.gz")]),
        "--data.init_args.test_manifests", json.dumps([str(manifests / "cuts_heldout.jsonl.gz")]),
        "--data.init_args.tokenizer_path", str(tokenizer), "--data.init_args.num_workers", "0",
        "--trainer.default_root_dir", str(root), "--trainer.max_steps", str(steps),
        "--trainer.max_epochs", str(max_epochs), "--trainer.limit_val_batches", "2",
        "--trainer.enable_progress_bar", "false", "--trainer.accelerator", args.accelerator,
        "--trainer.devices", "1", "--model.init_args.optim.warmup_epochs", str(args.warmup_fraction * max_epochs),
        "--seed_everything", str(args.seed), *extra,
    ]
    cli = lightning_cli(argv, run=False)
    started = time.time()
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    seconds = time.time() - started
    ckpt = root / "final.ckpt"
    cli.trainer.save_checkpoint(ckpt)
    return ckpt, seconds, cli.model


def heldout_wers(ckpt: Path, manifests: Path, chunks_ms=CHUNKS_MS) -> dict[int, float]:
    """WER (%) of a plain ``asr-ctc`` checkpoint on the held-out voices per chunk (0 = full context)."""
    from speechkit.inference.asr import DecodeOptions, evaluate, load_recognizer, read_eval_set

    recognizer = load_recognizer(ckpt)
    utterances = read_eval_set(manifests / "cuts_heldout.jsonl.gz")
    audios = [u.load(recognizer.sample_rate) for u in utterances]
    return {ms: 100 * evaluate(recognizer, utterances, DecodeOptions(chunk_ms=ms), audios=audios)["wer"]
            for ms in chunks_ms}


def count(module) -> int:
    return sum(p.numel() for p in module.parameters())


def format_table(rows: list[dict]) -> str:
    head = (f"{'system':<18} {'WER 320ms':>9} {'WER 640ms':>9} {'WER full':>8} {'train s':>8} "
            f"{'params':>8} {'train params':>12}")
    lines = [head, "-" * len(head)]
    for r in rows:
        w = r["wer"]
        lines.append(f"{r['system']:<18} {w['320']:>9.2f} {w['640']:>9.2f} {w['0']:>8.2f} {r['train_s']:>8.0f} "
                     f"{r['params'] / 1e6:>7.2f}M {r['train_params'] / 1e6:>11.2f}M")
    return "\n".join(lines)


def main(argv=None) -> int:
    from speechkit.tasks.asr_kd import write_student_checkpoint

    args = get_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    manifests, tokenizer = build_data(args)
    rows = []
    teacher = args.teacher
    if teacher is None:
        teacher, seconds, task = fit(["teacher.yaml"], args.out / "teacher", manifests, tokenizer,
                                     args.teacher_steps or args.steps, args)
        params = count(task.encoder) + count(task.ctc_head)
        rows.append({"system": "teacher (full ctx)", "wer": {str(k): v for k, v in heldout_wers(teacher, manifests).items()},
                     "train_s": seconds, "params": params, "train_params": params})
        print(format_table(rows), flush=True)
    wanted = [s.strip() for s in args.systems.split(",")]
    for name, configs in SYSTEMS:
        if name not in wanted:
            continue
        root = args.out / name.replace(" ", "_").replace("+", "plus")
        ckpt, seconds, task = fit(configs, root, manifests, tokenizer, args.steps, args,
                                  ["--model.init_args.teacher_checkpoint", str(teacher)] if configs else [])
        student = write_student_checkpoint(ckpt, root / "student.ckpt")
        rows.append({"system": name, "wer": {str(k): v for k, v in heldout_wers(student, manifests).items()},
                     "train_s": seconds, "params": count(task.encoder) + count(task.ctc_head),
                     "train_params": count(task)})
        print(format_table(rows), flush=True)
    settings = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    (args.out / "ablation.json").write_text(json.dumps({"settings": settings, "rows": rows}, indent=1))
    print(f"\nsettings: {json.dumps(settings)}")
    print(format_table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
