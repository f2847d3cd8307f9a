"""Personalized KWS table on synthetic speakers: vanilla, vanilla + SV, naive MTL and PK-MTL.

Trains the four systems of ``recipes/synthetic/personal`` (skipped where ``last.ckpt`` exists),
trains PK-MTL's TB/TO Task Representation Modules, scores every system on the held-out voices
(``speechkit eval-personal``: C-KWS accuracy, TB/TO FRR@FAR and EER, SV EER, realistic FAR on
read speech) and prints, besides, parameters and multiplications per 1 s of audio (the networks
only; the log-mel front-end is the same for all) and, when installed, resemblyzer 0.1.4's speaker
encoder (GE2E trained on real speech; Apache-2.0; ``pip install --no-deps resemblyzer==0.1.4``)
scored on the same SV trials. Nothing is asserted.

Usage (from the repository root; the data commands are in recipes/synthetic/personal/README.md)::

    OMP_NUM_THREADS=1 python benchmarks/personal_table.py --negatives data/synth_pk_read_manifests/cuts_test-clean.jsonl.gz
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

RECIPE = Path(__file__).resolve().parents[1] / "speechkit" / "recipes" / "synthetic" / "personal"
SYSTEMS = {"pk-mtl": None, "vanilla": "vanilla.yaml", "naive-mtl": "naive_mtl.yaml", "speaker": "speaker.yaml"}


def train(system: str, runs: Path, epochs: int | None) -> Path:
    """``speechkit fit`` of one system's recipe; returns its last checkpoint (reused if present)."""
    from speechkit.cli.lightning_cli import run_lightning_cli

    root = runs / f"personal_{system.replace('-', '_').replace('pk_mtl', 'pkmtl')}"
    last = root / "checkpoints" / "last.ckpt"
    if last.is_file():
        return last
    argv = ["--config", str(RECIPE / "config.yaml")]
    if SYSTEMS[system]:
        argv += ["--config", str(RECIPE / SYSTEMS[system])]
    argv += ["--trainer.default_root_dir", str(root)] + (["--trainer.max_epochs", str(epochs)] if epochs else [])
    cli = run_lightning_cli(argv, run=False)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    return last


def with_trm(checkpoint: Path, epochs: int) -> Path:
    """``speechkit train-trm`` (reused if the output exists)."""
    from speechkit.inference.personal_cmd import _datamodule, _keywords
    from speechkit.tasks import load_task
    from speechkit.tasks.personal import embed_clips, fit_trm, write_trm_checkpoint

    out = checkpoint.parent.parent / "pkmtl_trm.ckpt"
    if out.is_file():
        return out
    task = load_task(checkpoint)
    dm = _datamodule(task)
    embeddings = embed_clips(task, dm._loader("train", shuffle=False))
    fit_trm(task, embeddings, dm.speakers, [task.labels.index(k) for k in _keywords(task.labels)], epochs=epochs)
    return write_trm_checkpoint(checkpoint, task, out)


def multiplications(model: torch.nn.Module, feats: torch.Tensor, skip: tuple = ()) -> int:
    """Multiply-accumulates of one forward pass (Conv2d and Linear layers), skipping modules in ``skip``."""
    total = 0

    def hook(module, inputs, output):
        nonlocal total
        if isinstance(module, torch.nn.Conv2d):
            k = module.kernel_size[0] * module.kernel_size[1] * module.in_channels // module.groups
            total += output.numel() * k
        elif isinstance(module, torch.nn.Linear):
            total += output.numel() * module.in_features

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)) and not any(m is s for s in skip)]
    with torch.no_grad():
        model.eval().embeddings(feats) if hasattr(model, "embeddings") else model(feats)
        if getattr(model, "keyword_head", None) is not None:  # the cosine classifier: C x D per clip
            total += model.keyword_head.weight.numel()
    for h in handles:
        h.remove()
    return total


def cost_rows(tasks: dict) -> list[tuple[str, int, int]]:
    """(system, inference parameters, multiplications per 1 s) for each system."""
    rows = []
    for name, parts in tasks.items():
        feats = parts[0].features(torch.zeros(1, parts[0].clip_samples))
        params = sum(t.model.inference_parameters() for t in parts)
        mults = sum(multiplications(t.model, feats) for t in parts)
        rows.append((name, params, mults))
    return rows


def resemblyzer_sv_eer(evaluation) -> float | None:
    """SV EER (percent, mean over the splits) of resemblyzer 0.1.4 on the same ts-* / nts-* trials."""
    try:
        from resemblyzer import VoiceEncoder, preprocess_wav
    except ImportError:
        return None
    from speechkit.metrics.personal import task_split
    from speechkit.runtime.personal import equal_error_rate, unit

    encoder = VoiceEncoder("cpu", verbose=False)
    audio, labels = evaluation.test["audio"], evaluation.test["labels"]
    needed = sorted({int(i) for t in evaluation.trial_sets for i in np.concatenate([t.enrol, t.test])
                     if labels[int(i)] >= 0})
    emb = {}
    for i in needed:
        wav = preprocess_wav(audio[i], source_sr=16000)  # resemblyzer trims silence with webrtcvad
        emb[i] = encoder.embed_utterance(wav if len(wav) > 1600 else audio[i])
    eers = []
    for trials in evaluation.trial_sets:
        keep = labels[trials.test] >= 0
        scores = np.array([float(unit(emb[int(e)]) @ unit(emb[int(t)])) if k else 0.0
                           for e, t, k in zip(trials.enrol, trials.test, keep)])
        pos, neg = task_split(scores, trials.quadrant, "sv")
        eers.append(100 * equal_error_rate(pos, neg))
    return float(np.mean(eers))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=Path, default=Path("runs/synthetic"))
    p.add_argument("--epochs", type=int, default=None, help="override the recipe's max_epochs")
    p.add_argument("--trm-epochs", type=int, default=50)
    p.add_argument("--negatives", type=Path, default=None, help="read-speech cuts for the realistic FAR")
    p.add_argument("--splits", type=int, default=10)
    p.add_argument("--pairs", type=int, default=400)
    args = p.parse_args()

    from speechkit.inference.personal_cmd import evaluate_personal
    from speechkit.metrics.personal import format_table
    from speechkit.tasks import load_task

    start = time.time()
    ckpt = {system: train(system, args.runs, args.epochs) for system in SYSTEMS}
    trm = with_trm(ckpt["pk-mtl"], args.trm_epochs)
    tasks = {name: load_task(path) for name, path in {**ckpt, "pk-mtl": trm}.items()}
    systems = {"vanilla": [tasks["vanilla"]], "vanilla + SV": [tasks["vanilla"], tasks["speaker"]],
               "naive MTL": [tasks["naive-mtl"]], "PK-MTL": [tasks["pk-mtl"]]}
    evaluation = evaluate_personal(systems, negatives=args.negatives, splits=args.splits, pairs=args.pairs)
    labels = evaluation.test["labels"]
    print(f"{int((labels >= 0).sum())} test clips of {len({i for i in evaluation.test['ids'] if i})} held-out "
          f"voices, {int((labels < 0).sum())} read-speech windows; {args.splits} splits x {args.pairs} trials per "
          "quadrant; percent, means over the splits\n")
    print(format_table(evaluation.rows))
    print("\n| system | parameters (inference) | multiplications per 1 s |\n|---|---|---|")
    costs = cost_rows(systems)
    base = dict((n, (p, m)) for n, p, m in costs)["vanilla"]
    for name, params, mults in costs:
        print(f"| {name} | {params:,} ({100 * (params / base[0] - 1):+.1f} %) | {mults / 1e6:.2f} M "
              f"({100 * (mults / base[1] - 1):+.1f} %) |")
    rz = resemblyzer_sv_eer(evaluation)
    print("\nresemblyzer 0.1.4 (GE2E, real speech, Apache-2.0) SV EER on the same trials: "
          + (f"{rz:.2f} %" if rz is not None else "not installed (pip install --no-deps resemblyzer==0.1.4)"))
    print(f"\n({time.time() - start:.0f} s)")


if __name__ == "__main__":
    main()
