"""Personalized KWS tools: ``speechkit train-trm``, ``speechkit eval-personal``, ``speechkit enroll``.

    speechkit train-trm runs/synthetic/personal_pkmtl/checkpoints/last.ckpt pkmtl_trm.ckpt --epochs 50
    speechkit eval-personal --system pk-mtl=pkmtl_trm.ckpt --system vanilla=vanilla.ckpt \\
        --system vanilla+sv=vanilla.ckpt+speaker.ckpt --negatives data/synth_pk_read_manifests/cuts_test-clean.jsonl.gz \\
        --out-dir runs/synthetic/personal_eval
    speechkit enroll --model pkmtl.onnx --audio a.wav b.wav c.wav --out profile.json

``eval-personal`` scores each system on the held-out test speakers (the checkpoint's
``test_manifest_dir``, else its test split) over ``--splits`` random quadrant trial sets
(:mod:`speechkit.metrics.personal`), with SCM-GS's alpha searched on the validation speakers, and
prints one table (C-KWS accuracy and EER, TB/TO FRR at FAR 1 % / 10 % and EER, SV EER, realistic
FAR at FRR 1 % / 5 % against 1 s windows of read speech). It writes ``results.json`` and one DET
plot per system into ``--out-dir``.

Shapes: N clips, S samples, D embedding dim.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

#: position in ``speechkit --help``: after the ASR tools.
ORDER = 62


def register(subparsers) -> None:
    p = subparsers.add_parser("train-trm", help="personal KWS: train the TB/TO Task Representation Modules (stage 2)",
                              description="Freeze a PK-MTL (or naive MTL) checkpoint and train its TB and TO Task "
                              "Representation Modules with the angular prototypical loss on the training clips.")
    p.add_argument("checkpoint", type=Path, help="PersonalKwsTask checkpoint from `speechkit fit`")
    p.add_argument("out", type=Path, help="checkpoint to write (the input plus the TRMs)")
    p.add_argument("--epochs", type=int, default=50, help="epochs over the training embeddings (default 50, as the paper)")
    p.add_argument("--lr", type=float, default=1e-2, help="Adam learning rate (default 0.01)")
    p.add_argument("--batch-size", type=int, default=128, help="clips per batch (default 128)")
    p.set_defaults(func=_run_train_trm)

    p = subparsers.add_parser("eval-personal", help="personal KWS: TB/TO/SV table of several systems on held-out speakers",
                              description="Score systems on held-out speakers over random quadrant trial sets (ts-tk, nts-tk, "
                              "ts-ntk, nts-ntk) and print one table: C-KWS accuracy/EER, TB and TO FRR at FAR 1 % / 10 % "
                              "and EER, SV EER, realistic FAR at FRR 1 % / 5 % on read-speech windows.")
    p.add_argument("--system", action="append", required=True, metavar="NAME=CKPT[+SV_CKPT]",
                   help="a system: a PersonalKwsTask checkpoint, or a KWS checkpoint + a separate speaker-model "
                   "checkpoint joined by '+' (repeatable)")
    p.add_argument("--test-manifest-dir", type=Path, default=None,
                   help="prepared folder of the test speakers (default: the first checkpoint's test_manifest_dir)")
    p.add_argument("--valid-manifest", type=Path, default=None,
                   help="validation cuts for SCM-GS (default: cuts_valid of the first checkpoint's manifest_dir)")
    p.add_argument("--negatives", type=Path, default=None,
                   help="read-speech cuts (e.g. prepared LibriSpeech) cut into 1 s windows for the realistic FAR")
    p.add_argument("--max-windows", type=int, default=400, help="read-speech windows (default 400)")
    p.add_argument("--splits", type=int, default=10, help="random trial sets (default 10, as the paper)")
    p.add_argument("--pairs", type=int, default=400, help="trials per quadrant and split (default 400)")
    p.add_argument("--out-dir", type=Path, default=None, help="where results.json and the DET plots go")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_run_eval_personal)

    p = subparsers.add_parser("enroll", help="personal KWS: make a user's profile from recordings of the keyword",
                              description="Find the keyword in each recording (where the model's keyword posterior "
                              "peaks), average the speaker embeddings and write the profile JSON.")
    p.add_argument("--model", required=True, type=Path, help="personal-kws .onnx from `speechkit export`")
    p.add_argument("--audio", required=True, nargs="+", type=Path, help="recordings of the user saying the keyword")
    p.add_argument("--keyword", default=None, help="the keyword (default: the one the model hears most often)")
    p.add_argument("--out", type=Path, default=Path("profile.json"), help="profile to write (default profile.json)")
    p.set_defaults(func=_run_enroll)


# -- train-trm ---------------------------------------------------------------------------------


def _run_train_trm(args) -> int:
    from speechkit.tasks import load_task
    from speechkit.tasks.personal import PERSONAL_TASK, embed_clips, fit_trm, write_trm_checkpoint

    task = load_task(args.checkpoint, expected=(PERSONAL_TASK,))
    datamodule = _datamodule(task)
    loader = datamodule._loader("train", shuffle=False)
    embeddings = embed_clips(task, loader)
    classes = [task.labels.index(k) for k in _keywords(task.labels)]
    stats = fit_trm(task, embeddings, datamodule.speakers, classes, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr)
    out = write_trm_checkpoint(args.checkpoint, task, args.out)
    print(f"Wrote {out}: TRMs trained {args.epochs} epochs on {len(embeddings.labels)} training clips "
          f"(last-epoch loss TB {stats['loss_tb']:.3f}, TO {stats['loss_to']:.3f}).")
    return 0


def _datamodule(task, **overrides):
    """An unaugmented :class:`PersonalDataModule` over the checkpoint's data."""
    from speechkit.data.personal_datamodule import PersonalDataModule
    from speechkit.errors import SpeechkitError

    config = dict(getattr(task, "datamodule_config", None) or {})
    if not config.get("manifest_dir"):
        raise SpeechkitError("the checkpoint records no manifest_dir (train it with `speechkit fit`)")
    keep = {k: config[k] for k in ("manifest_dir", "test_manifest_dir", "sample_rate", "clip_seconds") if k in config}
    return PersonalDataModule(**{**keep, "batch_size": 64, "augment": False, **overrides})


def _keywords(labels: list[str]) -> list[str]:
    from speechkit.runtime.kws import keyword_labels

    return keyword_labels(labels)


# -- eval-personal -----------------------------------------------------------------------------


@dataclass
class PersonalEvaluation:
    """What :func:`evaluate_personal` measured.

    Attributes:
        rows: table rows (:func:`speechkit.metrics.personal.evaluate_system`), percent.
        curves: ``{system: {"<scoring> TB|TO": (positives, negatives)}}`` of split 0 (DET plots).
        trial_sets: the random splits over ``test`` (+ read-speech windows).
        test: ``{"audio" (N, S), "labels" (N,), "ids"}`` of the test clips then the windows
            (label -1).
    """

    rows: list[dict]
    curves: dict
    trial_sets: list
    test: dict


def evaluate_personal(systems: dict[str, list], test_manifest_dir: Path | None = None, valid_manifest: Path | None = None,
                      negatives: Path | None = None, max_windows: int = 400, splits: int = 10, pairs: int = 400,
                      seed: int = 0) -> PersonalEvaluation:
    """Score systems (``{name: [task] or [kws task, speaker task]}``) on held-out speakers.

    The test and validation clips come from the first task's data (its ``test_manifest_dir`` or
    test split; its ``manifest_dir``'s validation split) unless given.
    """
    from speechkit.metrics.personal import build_trials, evaluate_system, task_split, trial_scores

    first = next(iter(systems.values()))[0]
    datamodule = _datamodule(first, **({"test_manifest_dir": str(test_manifest_dir)} if test_manifest_dir else {}))
    labels = first.labels
    test = _clips(datamodule.test_cuts(), labels, first)
    valid = _clips(_read(valid_manifest or Path(datamodule.manifest_dir) / "cuts_valid.jsonl.gz"), labels, first)
    windows = _windows(_read(negatives), first, max_windows) if negatives else np.zeros((0, first.clip_samples), np.float32)
    classes = [labels.index(k) for k in _keywords(labels)]
    test = {"audio": np.concatenate([test["audio"], windows]),
            "labels": np.concatenate([test["labels"], -np.ones(len(windows), np.int64)]),
            "ids": test["ids"] + [""] * len(windows)}
    trial_sets = [build_trials(test["labels"], test["ids"], classes, pairs, seed + k) for k in range(splits)]
    valid_trials = build_trials(valid["labels"], valid["ids"], classes, pairs, seed + 1000)
    rows, curves = [], {}
    for name, tasks in systems.items():
        clip_set = _clip_set(tasks, test["audio"], test["labels"], test["ids"])
        valid_set = _clip_set(tasks, valid["audio"], valid["labels"], valid["ids"])
        scorings = _scorings(tasks)
        system_rows = evaluate_system(name, clip_set, trial_sets, scorings, (valid_set, valid_trials))
        rows += system_rows
        curves[name] = {}
        for scoring, row in zip(scorings, system_rows):
            for task_name in ("tb", "to"):
                kind = {"C-KWS": "kws", "SCM-M": "scm", "SCM-GS": "scm", "TRM": f"trm_{task_name}"}[scoring]
                alpha = row.get("alpha", {}).get(f"{task_name}_eer", 0.5)
                scores = trial_scores(clip_set, trial_sets[0], kind, alpha)
                curves[name][f"{scoring} {task_name.upper()}"] = task_split(scores, trial_sets[0].quadrant, task_name)
    return PersonalEvaluation(rows, curves, trial_sets, test)


def _run_eval_personal(args) -> int:
    from speechkit.errors import SpeechkitError
    from speechkit.metrics.personal import format_table, save_det_plot
    from speechkit.tasks import load_task
    from speechkit.tasks.personal import PERSONAL_TASK

    systems = {}
    for text in args.system:
        name, sep, paths = text.partition("=")
        if not sep or not paths:
            raise SpeechkitError(f"--system {text!r}: expected NAME=CKPT or NAME=KWS_CKPT+SV_CKPT")
        systems[name] = [load_task(p, expected=(PERSONAL_TASK,)) for p in paths.split("+")]
    result = evaluate_personal(systems, args.test_manifest_dir, args.valid_manifest, args.negatives, args.max_windows,
                               args.splits, args.pairs, args.seed)
    labels = result.test["labels"]
    print(f"{int((labels >= 0).sum())} test clips ({len({i for i in result.test['ids'] if i})} held-out speakers), "
          f"{int((labels < 0).sum())} read-speech windows, {args.splits} splits x {args.pairs} trials per quadrant; "
          "percent")
    print(format_table(result.rows))
    if args.out_dir is not None:
        from speechkit.fileio import write_json_atomic

        args.out_dir.mkdir(parents=True, exist_ok=True)
        write_json_atomic(args.out_dir / "results.json", result.rows)
        for name, system_curves in result.curves.items():
            save_det_plot(args.out_dir / f"det_{_slug(name)}.png", f"{name}: DET (split 0)", system_curves)
        print(f"wrote {args.out_dir / 'results.json'} and {len(result.curves)} DET plots")
    return 0


def _scorings(tasks) -> list[str]:
    net = tasks[0].model
    if len(tasks) == 2:
        return ["C-KWS", "SCM-M", "SCM-GS"]
    if not net.has_speaker_embedding:
        return ["C-KWS"]
    return ["C-KWS", "SCM-M", "SCM-GS"] + (["TRM"] if getattr(tasks[0], "trm_tb", None) is not None else [])


def _clip_set(tasks, audio: np.ndarray, labels: np.ndarray, ids: list[str]):
    """A :class:`~speechkit.metrics.personal.ClipSet` of one system (a second task: the separate SV model)."""
    from speechkit.errors import SpeechkitError
    from speechkit.metrics.personal import ClipSet

    kws_task = tasks[0]
    if kws_task.model.keyword_head is None:
        raise SpeechkitError("the first checkpoint of a system must be a KWS system (not the speaker model)")
    z_k, z_s, logits = _embed(kws_task, audio)
    if len(tasks) == 2:
        if tasks[1].model.speaker_head is None:
            raise SpeechkitError("the checkpoint after '+' must be a speaker model (system speaker, naive-mtl or pk-mtl)")
        z_s = _embed(tasks[1], audio)[1]
    trm = None
    if getattr(kws_task, "trm_tb", None) is not None and len(tasks) == 1:
        trm = {"tb": kws_task.trm_tb.weights(), "to": kws_task.trm_to.weights()}
    protos = kws_task.model.keyword_head.prototypes().detach().numpy()
    return ClipSet(z_k, z_s if z_s is not None else z_k, logits, labels, list(ids), protos, trm)


def _embed(task, audio: np.ndarray, batch: int = 64):
    import torch

    outs = []
    with torch.no_grad():
        for i in range(0, len(audio), batch):
            o = task.model.outputs(task.features(torch.from_numpy(audio[i : i + batch])))
            outs.append([None if t is None else t.numpy() for t in (o.keyword_embedding, o.speaker_embedding, o.keyword_logits)])
    return tuple(None if outs[0][k] is None else np.concatenate([o[k] for o in outs]) for k in range(3))


def _read(path: Path) -> list:
    from speechkit.data.manifests import read_cuts

    return list(read_cuts(path))


def _clips(cuts: list, labels: list[str], task) -> dict:
    """Fixed-length clips (centre crop / zero pad), class indices and speaker IDs of labelled cuts."""
    from speechkit.data.datamodules import fit_length, load_cut_audio
    from speechkit.data.manifests import cut_label
    from speechkit.data.personal_datamodule import cut_speaker

    audio = np.stack([fit_length(load_cut_audio(c, task.sample_rate), task.clip_samples) for c in cuts])
    return {"audio": audio.astype(np.float32), "labels": np.array([labels.index(cut_label(c)) for c in cuts]),
            "ids": [cut_speaker(c) for c in cuts]}


def _windows(cuts: list, task, max_windows: int) -> np.ndarray:
    """Consecutive clip-length windows of read speech, at most ``max_windows``."""
    from speechkit.data.datamodules import load_cut_audio

    out = []
    for cut in cuts:
        audio = load_cut_audio(cut, task.sample_rate)
        for start in range(0, len(audio) - task.clip_samples + 1, task.clip_samples):
            out.append(audio[start : start + task.clip_samples])
            if len(out) >= max_windows:
                return np.stack(out).astype(np.float32)
    return np.stack(out).astype(np.float32) if out else np.zeros((0, task.clip_samples), np.float32)


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)


# -- enroll ------------------------------------------------------------------------------------


def _run_enroll(args) -> int:
    from speechkit.runtime.personal import PersonalKwsModel, enroll_files

    model = PersonalKwsModel(args.model)
    profile = enroll_files(model, args.audio, args.keyword)
    profile.save(args.out)
    print(json.dumps({"profile": str(args.out), "keyword": profile.keyword, "clips": profile.clips}))
    return 0
