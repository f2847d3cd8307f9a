"""``speechkit ssl-kmeans`` and ``speechkit probe``: the SSL family's tools (issue 16).

    speechkit ssl-kmeans --manifests data/synth_ssl/manifests/cuts_train-clean-100.jsonl.gz \\
        --clusters 50 --out data/synth_ssl/kmeans
    speechkit probe --upstream runs/synthetic/ssl/teacher/checkpoints/last.ckpt --upstream logmel \\
        --kws data/synth_sc/manifests --asr-train data/synth_ssl/manifests/cuts_train-clean-100.jsonl.gz \\
        --asr-test data/synth_ssl/manifests/cuts_test-clean.jsonl.gz \\
        --sid data/synth_ssl/manifests/cuts_train-clean-100.jsonl.gz

``ssl-kmeans`` fits HuBERT iteration 1's MFCC clusters and writes ``kmeans.pt`` (what
``SslPretrainTask``'s ``kmeans_path`` reads) and ``labels.npz`` (every utterance's 20 ms frame
labels, keyed by cut id). ``probe`` prints one Markdown table: one row per upstream.
"""

from __future__ import annotations

from pathlib import Path

#: position in ``speechkit --help``: after the distillation tools.
ORDER = 63


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "ssl-kmeans", help="fit HuBERT iteration-1 k-means on MFCC frames and write frame labels",
        description="Fit k-means (scikit-learn MiniBatchKMeans) on standardised MFCC + delta + delta-delta "
        "frames of the manifests' audio; write OUT/kmeans.pt (centroids) and OUT/labels.npz (20 ms labels).",
    )
    p.add_argument("--manifests", nargs="+", required=True, help="cuts_*.jsonl.gz files (LibriSpeech layout)")
    p.add_argument("--clusters", type=int, default=100, help="number of clusters K (default 100, as HuBERT)")
    p.add_argument("--fit-utterances", type=int, default=1000, help="utterances the clusters are fitted on")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_run_kmeans)

    q = subparsers.add_parser(
        "probe", help="SUPERB-style probes (KWS, ASR, speaker id) of frozen SSL encoders; prints one table",
        description="For each upstream (an SSL checkpoint, a fairseq/HF HuBERT, an exported .onnx feature "
        "extractor, 'logmel', or 'random:CKPT'), train a weighted layer sum + small head per task on "
        "frozen features and print accuracy / WER on the test sets.",
    )
    q.add_argument("--upstream", action="append", required=True, metavar="SPEC",
                   help="repeatable: checkpoint, HF folder, .onnx, 'logmel' or 'random:CKPT'; NAME=SPEC names the row")
    q.add_argument("--kws", default="", help="12-class Speech Commands manifest folder (speechkit prepare speech-commands)")
    q.add_argument("--asr-train", default="", help="cuts manifest the ASR probe trains on")
    q.add_argument("--asr-test", default="", help="cuts manifest the ASR probe is scored on")
    q.add_argument("--sid", default="", help="cuts manifest whose speakers are identified (utterances split)")
    q.add_argument("--epochs", type=int, default=40, help="KWS and SID head training epochs (default 40)")
    q.add_argument("--asr-epochs", type=int, default=20, help="ASR BiLSTM training epochs (default 20)")
    q.add_argument("--limit", type=int, default=0, help="at most this many training items per probe (0: all)")
    q.add_argument("--json", type=Path, default=None, help="also write the rows as JSON")
    q.set_defaults(func=_run_probe)


def _run_kmeans(args) -> int:
    import numpy as np
    from lhotse import combine

    from speechkit.data.asr_datamodule import pad_waveforms
    from speechkit.data.datamodules import load_cut_audio
    from speechkit.data.manifests import read_cuts
    from speechkit.fileio import atomic_path
    from speechkit.models.ssl.hubert import conv_output_lengths
    from speechkit.models.ssl.presets import hubert_preset
    from speechkit.tasks.ssl import MfccClusters

    sets = [read_cuts(m, hint="prepare it with `speechkit prepare librispeech`") for m in args.manifests]
    cuts = list(sets[0] if len(sets) == 1 else combine(*sets))
    clusters = MfccClusters(args.clusters)
    step = max(1, len(cuts) // max(args.fit_utterances, 1))
    frames = clusters.fit([load_cut_audio(c, 16000) for c in cuts[::step]], seed=args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    clusters.save(args.out / "kmeans.pt")
    conv = hubert_preset("base").conv_layers  # every preset has 320 samples per frame
    labels = {}
    for cut in cuts:
        audio = load_cut_audio(cut, 16000)
        batch, lens = pad_waveforms([audio])
        n = int(conv_output_lengths(lens, conv)[0])
        labels[cut.id] = clusters.labels(batch, lens, n)[0].numpy().astype(np.int16)
    with atomic_path(args.out / "labels.npz") as tmp, open(tmp, "wb") as f:
        np.savez_compressed(f, **labels)
    print(f"Fitted {args.clusters} clusters on {frames} MFCC frames; wrote {args.out / 'kmeans.pt'} and "
          f"{args.out / 'labels.npz'} ({len(labels)} utterances, 20 ms labels)")
    return 0


def _run_probe(args) -> int:
    from speechkit.fileio import write_json_atomic
    from speechkit.inference.probe import ProbeConfig, ProbeData, format_table, open_upstream, run_probes

    upstreams = []
    for spec in args.upstream:
        name, _, path = spec.partition("=") if "=" in spec and not Path(spec).exists() else (None, "", spec)
        upstreams.append(open_upstream(path, name))
    data = ProbeData(kws_dir=args.kws, asr_train=args.asr_train, asr_test=args.asr_test, sid_manifest=args.sid,
                     limit=args.limit)
    rows = run_probes(upstreams, data, ProbeConfig(epochs=args.epochs, asr_epochs=args.asr_epochs))
    print(format_table(rows))
    if args.json is not None:
        write_json_atomic(args.json, rows)
    return 0
