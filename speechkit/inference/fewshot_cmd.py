"""Few-shot KWS tools: ``speechkit eval-fewshot`` and ``speechkit enroll-keyword``.

    speechkit eval-fewshot --checkpoint runs/.../best.ckpt --manifests data/synth_fewshot_sc_manifests
    speechkit eval-fewshot --model emb.onnx --manifests DIR --episodes 1000 --ways 5 --shots 1,5 --json
    speechkit enroll-keyword --model emb.onnx --name hello --audio a.wav b.wav c.wav d.wav e.wav --out hello.json
    speechkit enroll-keyword ... --negatives talk/ --fa-per-hour 0.5     # also calibrate its threshold
    speechkit demo kws --model emb.onnx --enroll hello.json lights.json --input mic

``eval-fewshot`` embeds every clip of the test split once (checkpoint: PyTorch; ``--model``:
onnxruntime), then scores fixed episodes (:class:`speechkit.data.episodes.EpisodeSampler`, seed
``--seed``) in numpy with the model's open-set rule (:mod:`speechkit.runtime.fewshot`): closed-set
accuracy of the known queries and AUROC of the unknown-query score, each a mean over episodes
with a 95 % confidence interval (1.96 standard errors).
"""

from __future__ import annotations

import json
from pathlib import Path

#: position in ``speechkit --help``: after the ASR tools.
ORDER = 62


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "eval-fewshot", help="few-shot KWS: N-way K-shot accuracy and open-set AUROC over test episodes",
        description="Closed-set accuracy and open-set AUROC (95% CIs) of a few-shot KWS checkpoint or embedding "
        "artifact on fixed episodes of a splitGSC folder's test classes.",
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", type=Path, help="a FewShotKwsTask checkpoint of `speechkit fit`")
    src.add_argument("--model", type=Path, help="an embedding .onnx of `speechkit export` (fewshot-kws)")
    p.add_argument("--manifests", type=Path, required=True, help="splitGSC folder (prepare speech-commands --split fewshot)")
    p.add_argument("--split", default="test", choices=("test", "valid"), help="classes to evaluate (default test)")
    p.add_argument("--episodes", type=int, default=1000, help="episodes (default 1000)")
    p.add_argument("--ways", type=int, default=5, help="classes per episode (default 5)")
    p.add_argument("--shots", default="1,5", help="comma-separated shot counts (default 1,5)")
    p.add_argument("--queries", type=int, default=5, help="known queries per class (default 5)")
    p.add_argument("--unknown", type=int, default=5, help="open-set queries per episode (default 5)")
    p.add_argument("--seed", type=int, default=0, help="episode seed (default 0)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    p.set_defaults(func=_run_eval)

    e = subparsers.add_parser(
        "enroll-keyword", help="few-shot KWS: make a prototype file for a new word from a few recordings",
        description="Find the word in each recording (VAD + energy), embed the 1 s clips with the few-shot "
        "embedding model and write the prototype file that `speechkit demo kws --enroll` reads.",
    )
    e.add_argument("--model", type=Path, required=True, help="embedding .onnx (fewshot-kws) of `speechkit export`")
    e.add_argument("--name", required=True, help="the word's name, reported by the detector")
    e.add_argument("--audio", type=Path, nargs="+", required=True, help="recordings (mono, the model's rate), one word each")
    e.add_argument("--out", type=Path, default=None, help="prototype file (default: NAME.prototype.json)")
    e.add_argument("--negatives", type=Path, default=None,
                   help="keyword-free audio (file or folder) to calibrate the word's threshold on")
    e.add_argument("--fa-per-hour", type=float, default=0.5, help="false-alarm budget of the calibration (default 0.5)")
    e.set_defaults(func=_run_enroll)


def parse_shots(text: str) -> list[int]:
    """``"1,5"`` -> ``[1, 5]``.

    Raises:
        SpeechkitError: not positive integers.
    """
    from speechkit.errors import SpeechkitError

    try:
        shots = sorted({int(x) for x in text.split(",") if x.strip()})
    except ValueError:
        shots = []
    if not shots or shots[0] < 1:
        raise SpeechkitError(f"--shots {text!r}: expected positive integers, e.g. 1,5")
    return shots


def evaluate_fewshot(embed, rule, manifests: Path, split: str = "test", episodes: int = 1000, ways: int = 5,
                     shots=(1, 5), queries: int = 5, unknown: int = 5, seed: int = 0, sample_rate: int = 16000,
                     clip_samples: int = 16000) -> dict:
    """Episode metrics of an embedding function on a splitGSC split.

    Args:
        embed: ``fn(clips (M, S)) -> (M, D)`` numpy embeddings.
        rule: :class:`speechkit.runtime.fewshot.OpenSetRule`.

    Returns:
        ``{"split", "ways", "episodes", "classes", "results": {"<k>-shot": metrics}}`` (percent).
    """
    import numpy as np

    from speechkit.data.episodes import EpisodeSampler
    from speechkit.data.fewshot_datamodule import FEWSHOT_HINT, ClipStore
    from speechkit.data.manifests import cuts_path, read_cuts
    from speechkit.runtime.fewshot import episode_metrics

    store = ClipStore(read_cuts(cuts_path(manifests, split), hint=FEWSHOT_HINT), None, sample_rate, clip_samples)
    sampler = EpisodeSampler(store.targets, ways, max(shots), queries, unknown, seed=seed, num_episodes=episodes)
    eps = list(sampler)
    used = np.unique(np.concatenate([ep.items for ep in eps]))
    computed = embed(store.clips(used))
    emb = np.zeros((len(store.cuts), computed.shape[1]), np.float32)
    emb[used] = computed
    results = {f"{k}-shot": episode_metrics(emb, eps, rule, shots=k) for k in shots}
    return {"split": split, "ways": ways, "episodes": episodes, "classes": len(store.labels),
            "queries": queries, "unknown": unknown, "results": results}


def format_table(report: dict, title: str) -> str:
    """The eval-fewshot table."""
    lines = [f"{title}: {report['ways']}-way, {report['episodes']} episodes over {report['classes']} {report['split']} "
             f"classes ({report['queries']} queries/class, {report['unknown']} unknown queries/episode)",
             f"{'setting':<10} {'accuracy %':>18} {'AUROC %':>18}"]
    for name, m in report["results"].items():
        lines.append(f"{name:<10} {m['acc']:>9.2f} ± {m['acc_ci95']:<6.2f} {m['auroc']:>9.2f} ± {m['auroc_ci95']:<6.2f}")
    return "\n".join(lines)


def _run_eval(args) -> int:
    shots = parse_shots(args.shots)
    if args.checkpoint is not None:
        from speechkit.runtime.fewshot import FEWSHOT_TASK, OpenSetRule
        from speechkit.tasks import load_task

        task = load_task(args.checkpoint, expected=(FEWSHOT_TASK,))
        embed, rule = task.embed_clips, OpenSetRule(task.open_set_config())
        rate, clip, title = task.sample_rate, task.clip_samples, str(args.checkpoint)
    else:
        from speechkit.runtime.fewshot import EmbeddingModel

        model = EmbeddingModel(args.model)
        embed, rule, rate, clip, title = model.embed, model.rule, model.sample_rate, model.clip_samples, str(args.model)
    report = evaluate_fewshot(embed, rule, args.manifests, args.split, args.episodes, args.ways, shots,
                              args.queries, args.unknown, args.seed, rate, clip)
    report["model"] = title
    print(json.dumps(report) if args.json else format_table(report, title))
    return 0


def _run_enroll(args) -> int:
    from speechkit.runtime.fewshot import EmbeddingModel, calibrate_enrollment, enroll

    model = EmbeddingModel(args.model)
    out = args.out or Path(f"{args.name.strip().replace(' ', '_')}.prototype.json")
    data = enroll(model, args.name, args.audio, out)
    print(f"wrote {out}: {data['name']!r} from {data['recordings']} recording(s) (model {model.path.name}, id {model.model_id})")
    if args.negatives is not None:
        threshold = calibrate_enrollment(model.path, [out], args.negatives, args.fa_per_hour)[data["name"]]
        print(f"calibrated threshold {threshold:.4f} at {args.fa_per_hour:g} false alarms/hour on {args.negatives}")
    return 0
