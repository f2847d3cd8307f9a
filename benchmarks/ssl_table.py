"""The SSL compression table (issue 16): teacher vs STaR vs DistilHuBERT-style vs random student vs log-mel.

Usage (what was run for docs/methods/ssl.md, 2 shared CPU cores)::

    OMP_NUM_THREADS=1 nice -n 5 python benchmarks/ssl_table.py --out runs/ssl_table
    python benchmarks/ssl_table.py --out /work/ssl_run --reuse     # probe existing checkpoints only

Steps:

1. Data (skipped when ``--ls-manifests`` / ``--sc-manifests`` are given): ``speechkit synth
   librispeech`` train-clean-100 + dev-clean with the training voice families (16 speakers x 16
   utterances each) and test-clean with the held-out families (6 x 10), prepared with ``speechkit
   prepare librispeech``; ``speechkit synth speech-commands`` (40 speakers, test speakers held
   out) prepared as 12 classes.
2. Teacher: ``recipes/synthetic/ssl/teacher.yaml`` (HuBERT iteration 1 on MFCC k-means).
3. Students: ``star.yaml`` and ``star.yaml + distilhubert.yaml`` (+ ``armhubert.yaml`` with
   ``--armhubert``), the same student, data, seed and epochs.
4. Probes (:mod:`speechkit.inference.probe`): KWS accuracy on the held-out test speakers, ASR
   WER/CER on the held-out voices of test-clean, speaker identification on train-clean-100's
   speakers (held-out utterances); upstreams: the teacher, each student, the STaR student's
   architecture randomly initialised, and 80-bin log-mel.

Prints one Markdown table (parameters without pre-training heads, GMACs per second of audio) and
writes the rows to ``<out>/ssl_table.json``. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

RECIPES = Path(__file__).resolve().parents[1] / "speechkit" / "recipes" / "synthetic" / "ssl"


def get_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, default=Path("runs/ssl_table"), help="work folder (data, runs, table)")
    p.add_argument("--ls-manifests", type=Path, default=None, help="prepared LibriSpeech-layout manifests to reuse")
    p.add_argument("--sc-manifests", type=Path, default=None, help="prepared 12-class Speech Commands manifests to reuse")
    p.add_argument("--teacher-epochs", type=int, default=12)
    p.add_argument("--student-epochs", type=int, default=12)
    p.add_argument("--armhubert", action="store_true", help="also train and probe the ARMHuBERT-style student")
    p.add_argument("--reuse", action="store_true", help="reuse checkpoints already under --out/runs")
    p.add_argument("--probe-epochs", type=int, default=40)
    p.add_argument("--asr-epochs", type=int, default=20)
    return p.parse_args(argv)


def _run(cmd: list[str]) -> None:
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def build_data(out: Path) -> tuple[Path, Path]:
    data = out / "data"
    if not (data / "ls_manifests").exists():
        _run(["speechkit", "synth", "librispeech", str(data / "ls_train"), "--subsets", "train-clean-100,dev-clean",
              "--speakers", "16", "--utterances-per-speaker", "16", "--voice-pool", "train", "--seed", "1"])
        _run(["speechkit", "synth", "librispeech", str(data / "ls_test"), "--subsets", "test-clean", "--speakers", "6",
              "--utterances-per-speaker", "10", "--voice-pool", "heldout", "--seed", "2"])
        corpus = data / "ls_all"
        corpus.mkdir(parents=True, exist_ok=True)
        for subset, source in (("train-clean-100", "ls_train"), ("dev-clean", "ls_train"), ("test-clean", "ls_test")):
            link = corpus / subset
            if not link.exists():
                link.symlink_to((data / source / subset).resolve())
        _run(["speechkit", "prepare", "librispeech", str(corpus), str(data / "ls_manifests")])
    if not (data / "sc_manifests").exists():
        _run(["speechkit", "synth", "speech-commands", str(data / "sc_v1"), "--speakers", "40", "--clips-per-word", "1",
              "--unknown-clips-per-word", "1", "--testing-percent", "20", "--validation-percent", "10",
              "--background-seconds", "10", "--seed", "3"])
        _run(["speechkit", "prepare", "speech-commands", str(data / "sc_v1"), str(data / "sc_manifests"),
              "--classes", "12"])
    return data / "ls_manifests", data / "sc_manifests"


def fit(configs: list[str], root: Path, manifests: Path, epochs: int, extra: list[str] = ()) -> tuple[Path, float]:
    ckpt = root / "checkpoints" / "last.ckpt"
    data_args = []
    for key, subset in (("train", "train-clean-100"), ("valid", "dev-clean"), ("test", "test-clean")):
        data_args += [f"--data.init_args.{key}_manifests", json.dumps([str(manifests / f"cuts_{subset}.jsonl.gz")])]
    start = time.perf_counter()
    _run(["speechkit", "fit", *[a for c in configs for a in ("--config", str(RECIPES / c))], *data_args,
          "--trainer.default_root_dir", str(root), "--trainer.max_epochs", str(epochs),
          "--trainer.enable_progress_bar", "false", *extra])
    return ckpt, time.perf_counter() - start


def main(argv=None) -> int:
    args = get_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.ls_manifests is None or args.sc_manifests is None:
        ls, sc = build_data(args.out)
        args.ls_manifests, args.sc_manifests = args.ls_manifests or ls, args.sc_manifests or sc
    runs = args.out / "runs" / "synthetic" / "ssl"
    systems = [("STaR student", ["star.yaml"]), ("DistilHuBERT-style student", ["star.yaml", "distilhubert.yaml"])]
    if args.armhubert:
        systems.append(("ARMHuBERT-style student", ["star.yaml", "armhubert.yaml"]))
    teacher = runs / "teacher" / "checkpoints" / "last.ckpt"
    if not (args.reuse and teacher.is_file()):
        teacher, _ = fit(["teacher.yaml"], runs / "teacher", args.ls_manifests, args.teacher_epochs)
    students = []
    for name, configs in systems:
        folder = runs / Path(configs[-1]).stem
        ckpt = folder / "checkpoints" / "last.ckpt"
        if not (args.reuse and ckpt.is_file()):
            ckpt, _ = fit(configs, folder, args.ls_manifests, args.student_epochs,
                          ["--model.init_args.teacher_path", str(teacher)])
        students.append((name, ckpt))

    from speechkit.inference.probe import ProbeConfig, ProbeData, format_table, open_upstream, run_probes

    upstreams = [open_upstream(str(teacher), "HuBERT-style teacher")]
    upstreams += [open_upstream(str(ckpt), name) for name, ckpt in students]
    upstreams += [open_upstream(f"random:{students[0][1]}", "random-init student"), open_upstream("logmel")]
    data = ProbeData(kws_dir=str(args.sc_manifests), asr_train=str(args.ls_manifests / "cuts_train-clean-100.jsonl.gz"),
                     asr_test=str(args.ls_manifests / "cuts_test-clean.jsonl.gz"),
                     sid_manifest=str(args.ls_manifests / "cuts_train-clean-100.jsonl.gz"))
    start = time.perf_counter()
    rows = run_probes(upstreams, data, ProbeConfig(epochs=args.probe_epochs, asr_epochs=args.asr_epochs))
    table = format_table(rows)
    print(table)
    print(f"(probes: {time.perf_counter() - start:.0f} s)")
    (args.out / "ssl_table.json").write_text(json.dumps({"rows": rows, "settings": vars(args)}, default=str, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
