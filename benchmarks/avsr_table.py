"""Audio-only vs AV concatenation vs AV + cross-modal attention + temporal-dynamics losses (issue 18).

Usage (the CPU run quoted in recipes/synthetic/avsr/README.md):

    speechkit synth lrs3 data/synth_lrs3/corpus --speakers 16 --test-speakers 6 --utterances-per-speaker 24
    speechkit prepare lrs3 data/synth_lrs3/corpus data/synth_lrs3/manifests --valid-utterances 40
    speechkit tokenizer train data/synth_lrs3/manifests/cuts_trainval.jsonl.gz --vocab-size 40 \\
        --out data/synth_lrs3/bpe.model
    for m in audio_only av_concat av_xmodal; do
        speechkit fit --config recipes/synthetic/avsr/$m.yaml --trainer.default_root_dir runs/$m; done
    python benchmarks/avsr_table.py --runs runs --manifests data/synth_lrs3/manifests \\
        --noise-dir data/synth_lrs3/corpus/musan/noise --out runs/avsr_table.json

Each system's ``last.ckpt`` (``runs/<system>/checkpoints/last.ckpt``) decodes the test split
(held-out voices and faces) clean and with babble (other test utterances) and with noise (the
MUSAN-layout folder) at each ``--snrs`` dB, mixed by :class:`speechkit.data.avsr_datamodule.AvsrDataModule`
(``eval_noise``, seeded per utterance, so every system hears the same noisy audio). Both AV
systems are also decoded video-only (audio features zeroed, as modality dropout trained them).
WER by the project's text rule (the task's ``greedy_texts``). Prints one table and writes it as
JSON. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

SYSTEMS = (("audio-only", "audio_only"), ("AV concat", "av_concat"), ("AV + xmodal + TD", "av_xmodal"))


def get_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--runs", type=Path, required=True, help="folder with audio_only/, av_concat/, av_xmodal/")
    p.add_argument("--manifests", type=Path, required=True, help="speechkit prepare lrs3 output (cuts_test)")
    p.add_argument("--noise-dir", type=Path, required=True, help="MUSAN-layout noise folder")
    p.add_argument("--snrs", default="10,5,0,-5", help="comma-separated SNRs in dB (default 10,5,0,-5)")
    p.add_argument("--split", default="test", help="manifest split to decode (default test)")
    p.add_argument("--out", type=Path, default=None, help="write the table as JSON here")
    return p.parse_args(argv)


def decode_wer(task, datamodule, split: str, modality: str) -> float:
    import torch

    from speechkit.metrics.wer import corpus_word_errors

    refs, hyps = [], []
    loader = datamodule.test_dataloader() if split == "test" else datamodule.val_dataloader()
    with torch.no_grad():
        for batch in loader:
            outputs = task.forward_batch(batch, modality)
            refs += batch["texts"]
            hyps += task.greedy_texts(outputs["log_probs"], outputs["log_prob_lens"])
    return 100.0 * corpus_word_errors(refs, hyps).wer


def main(argv=None) -> int:
    import torch

    from speechkit.data.avsr_datamodule import AvsrDataModule
    from speechkit.tasks import load_task

    args = get_args(argv)
    torch.set_num_threads(1)
    snrs = [float(s) for s in args.snrs.split(",") if s.strip()]
    conditions = [("clean", None, 0.0)] + [(f"{kind} {s:g} dB", kind, s) for kind in ("babble", "noise") for s in snrs]
    rows, start = [], time.perf_counter()
    manifest = str(args.manifests / f"cuts_{args.split}.jsonl.gz")
    for name, folder in SYSTEMS:
        ckpt = args.runs / folder / "checkpoints" / "last.ckpt"
        if not ckpt.is_file():
            print(f"skipping {name}: no {ckpt}")
            continue
        task = load_task(ckpt, ("avsr",))
        row = {"system": name, "checkpoint": str(ckpt)}
        for label, kind, snr in conditions:
            dm = AvsrDataModule(train_manifests=[manifest], valid_manifests=[manifest], test_manifests=[manifest],
                                tokenizer_path=task.tokenizer_path if Path(task.tokenizer_path).is_file()
                                else str(args.manifests.parent / "bpe.model"),
                                num_workers=0, max_duration=60.0, noise_dirs=[str(args.noise_dir)],
                                eval_noise=kind, eval_snr_db=snr)
            row[label] = decode_wer(task, dm, "test", "av")
        if task.encoder.use_video:
            row["video-only"] = decode_wer(task, dm, "test", "video")
        rows.append(row)
        print(json.dumps(row))
    labels = [c[0] for c in conditions] + ["video-only"]
    print("\nWER (%) on held-out voices and faces; " + f"{time.perf_counter() - start:.0f} s to decode")
    print("| system | " + " | ".join(labels) + " |")
    print("|---" * (len(labels) + 1) + "|")
    for row in rows:
        print(f"| {row['system']} | " + " | ".join(f"{row[k]:.1f}" if k in row else "-" for k in labels) + " |")
    if args.out is not None:
        from speechkit.fileio import write_json_atomic

        write_json_atomic(args.out, {"rows": rows, "snrs": snrs, "split": args.split})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
