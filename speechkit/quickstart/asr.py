"""The speech recognition quickstart: synthesize -> prepare -> tokenizer -> train -> decode -> ship.

A command recogniser (smart home, timers, weather, media, calls, shopping lists, numbers and
times; about 650 words) learned from scratch on synthetic speech in minutes on a laptop CPU
(``--engines``: espeak-ng voices (the default), SVOX Pico's recorded speakers, or a weighted mix
such as ``espeak:3,pico:1``), then decoded
on held-out synthetic speakers at full context and at 640 ms and 320 ms chunks, and at 320 ms on
a second engine's test set (the cross-engine proxy, below).

Cross-engine proxy. The test set ``test-other`` is spoken by SVOX Pico speakers (speaker
settings never used in training). When the training engines leave pico out (``--engines
espeak``, the default), it measures an engine never heard; when they include pico, it is
reported as "pico (seen engine, unseen speakers)": a weaker claim, said so in the summary.
``benchmarks/asr_proxy.py`` trains without each engine in turn for the true held-out-engine
figure.
General dictation cannot be learned from scratch in minutes on a CPU; the LibriSpeech recipe
(``recipes/librispeech/asr_conformer_ctc``) is the way there.

Every artifact goes into one new run folder (``runs/quickstart-asr`` or ``--out``), never over
an earlier run::

    <run>/corpus/        synthetic LibriSpeech layout: train-clean-100 (training voices),
                         dev-clean (validation voices), test-clean (held-out espeak-ng voices),
                         test-other (SVOX Pico speakers: the cross-engine set), and
                         synth_info_<subset>.json (the voices and rooms of each subset)
    <run>/manifests/     lhotse cuts; cuts_heldout.jsonl.gz = the test voices whose espeak-ng
                         accent + variant combination never occurs in training
    <run>/bpe.model      sentencepiece units (blank = id 0)
    <run>/train/         Lightning logs, checkpoints/best-*.ckpt (lowest dev WER), last.ckpt
    <run>/eval_*.json    eval-asr results per decoding setting (held-out espeak-ng voices)
    <run>/eval_pico_320ms.json  eval-asr on the pico set, 320 ms chunks
    <run>/asr.onnx       the streaming ONNX artifact (320 ms chunks) and asr_int8.onnx
    <run>/demo.wav       held-out voices saying commands with pauses; demo_reference.txt
    <run>/demo_output.jsonl  what ``speechkit demo asr --input demo.wav`` printed
    <run>/summary.json   the figures printed at the end
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from speechkit.plugins import Subcommand
from speechkit.quickstart import new_run_dir, recipe_path, timed

RECIPE = "synthetic/asr/commands.yaml"
#: Decoding settings of the final table: full context, then 640 ms and 320 ms chunks.
CHUNK_MS = (0, 640, 320)
#: Chunk of the shipped streaming artifact.
SHIP_CHUNK_MS = 320
#: The demo recording: this many held-out utterances (one per voice) with pauses between them.
DEMO_UTTERANCES = 6
DEMO_PAUSE_S = 2.0
#: The cross-engine test set: this engine's speakers in the ``test-other`` subset.
CROSS_ENGINE = "pico"


@dataclass
class AsrQuickstartOptions:
    """Sizes of the quickstart (the defaults fit the 20-minute target on 2 CPU cores).

    Attributes:
        out: run folder (default: a new ``runs/quickstart-asr[-N]``).
        speakers: training speakers (voices).
        utterances_per_speaker: training utterances per speaker.
        dev_speakers, test_speakers: validation and held-out speakers (10 utterances each).
        epochs: training epochs.
        vocab_size: sentencepiece units. A small vocabulary (64: letters and the commonest
            pieces) leaves the blank-only plateau of CTC training several times sooner than
            128 or 256 units in our tuning runs.
        seed: synthesis, split and training seed.
        engines: speech engines of the training and validation speakers (``espeak``,
            ``pico``, or a weighted mix ``espeak:3,pico:1``; see
            :func:`speechkit.data.synth.voices.sample_speakers`). The held-out test voices are
            always espeak-ng; the cross-engine set always pico.
        cross_speakers: pico speakers of the cross-engine test set (10 utterances each).
        synth_cache, no_synth_cache: where synthesized utterances are cached (default
            ``~/.cache/speechkit/synth``), or no cache.
    """

    out: Path | None = None
    speakers: int = 300
    utterances_per_speaker: int = 24
    dev_speakers: int = 6
    test_speakers: int = 24
    epochs: int = 10
    vocab_size: int = 64
    seed: int = 0
    jobs: int = 2
    #: espeak-ng only by default: in the one small ablation run (benchmarks/asr_proxy.py, README)
    #: the espeak:3,pico:1 mix had not begun to learn (held-out WER 0.998) when espeak-only had
    #: (0.915), so the mix is not yet shown to keep learning intact; ``--engines espeak:3,pico:1``.
    engines: str = "espeak"
    cross_speakers: int = 12
    synth_cache: Path | None = None
    no_synth_cache: bool = False
    timings: dict = field(default_factory=dict)


def cross_engine_label(engines: str) -> str:
    """How the pico test set is named in the summary: held out, or seen with other speakers."""
    from speechkit.data.synth.voices import parse_engine_mix

    if CROSS_ENGINE in parse_engine_mix(engines):
        return f"{CROSS_ENGINE} (seen engine, unseen speakers)"
    return f"{CROSS_ENGINE} (engine never trained on)"


def run(opts: AsrQuickstartOptions) -> dict:
    """Run the quickstart; return the summary dict (also written to ``summary.json``)."""
    from speechkit.data.synth.engines import configure_synthesis
    from speechkit.fileio import write_json_atomic

    # Checks the engines first (installed, not reserved for evaluation) and sets up the cache.
    configure_synthesis(f"{opts.engines},{CROSS_ENGINE},espeak", opts.synth_cache, use_cache=not opts.no_synth_cache)
    run_dir = new_run_dir(opts.out, "quickstart-asr")
    started = time.time()
    _say(f"run folder: {run_dir}")
    manifests, heldout_speakers = _data(opts, run_dir)
    tokenizer_path = _tokenizer(opts, run_dir, manifests)
    ckpt, num_params = _train(opts, run_dir, manifests, tokenizer_path)
    results = _evaluate(opts, run_dir, ckpt, manifests / "cuts_heldout.jsonl.gz")
    cross = _evaluate_cross_engine(opts, run_dir, ckpt, manifests / "cuts_test-other.jsonl.gz")
    shipped = _ship(opts, run_dir, ckpt, manifests / "cuts_heldout.jsonl.gz")
    summary = {
        "run_dir": str(run_dir),
        "checkpoint": str(ckpt),
        "num_params": num_params,
        "heldout_utterances": results[0]["num_utterances"],
        "heldout_speakers": heldout_speakers,
        "engines": opts.engines,
        "cross_engine": cross,
        "results": [
            {"setting": _label(r["decoding"]["chunk_ms"]), "chunk_ms": r["decoding"]["chunk_ms"],
             "wer": r["wer"], "rtf": r["rtf"], "threads": r["threads"]}
            for r in results
        ],
        **shipped,
    }
    summary["wall_time_s"] = round(time.time() - started, 1)
    summary["timings_s"] = dict(opts.timings)
    write_json_atomic(run_dir / "summary.json", summary)
    print_summary(summary)
    return summary


def _data(opts: AsrQuickstartOptions, run_dir: Path) -> tuple[Path, int]:
    """Synthesize the three subsets, prepare manifests, and write the held-out manifest.

    Returns:
        ``(manifest folder, held-out speakers)``.
    """
    from speechkit.data.corpora.librispeech import prepare_librispeech
    from speechkit.data.synth.librispeech import synth_librispeech

    corpus, manifests = run_dir / "corpus", run_dir / "manifests"
    with timed(opts.timings, "synth"):
        _say(f"synthesizing spoken commands: {opts.speakers} training voices x {opts.utterances_per_speaker} "
             f"utterances and {opts.dev_speakers} dev voices ({opts.engines}), {opts.test_speakers} test voices "
             f"(espeak-ng) and {opts.cross_speakers} {CROSS_ENGINE} test voices ...")
        # One call per subset (each has its own speaker count and engines), each in a folder of
        # its own that is then moved into corpus/; distinct seeds give distinct voices.
        parts = [("train-clean-100", opts.speakers, opts.utterances_per_speaker, opts.engines),
                 ("dev-clean", opts.dev_speakers, 10, opts.engines), ("test-clean", opts.test_speakers, 10, "espeak"),
                 ("test-other", opts.cross_speakers, 10, CROSS_ENGINE)]
        info = {}
        corpus.mkdir(parents=True)
        for k, (subset, speakers, utts, engines) in enumerate(parts):
            staging = run_dir / f".synth-{subset}"
            summary = synth_librispeech(staging, subsets=[subset], num_speakers=speakers,
                                        utterances_per_speaker=utts, text="commands", seed=opts.seed * 1000 + k,
                                        jobs=opts.jobs, progress=True, engines=engines)
            (staging / subset).rename(corpus / subset)
            (staging / "synth_info.json").rename(corpus / f"synth_info_{subset}.json")
            shutil.rmtree(staging)
            info[subset] = json.loads((corpus / f"synth_info_{subset}.json").read_text())
            _say(f"{subset}: {summary['num_utterances']} utterances, {summary['audio_seconds'] / 60:.1f} min of audio")
    with timed(opts.timings, "prepare"):
        prepare_librispeech(corpus, manifests, subsets=[p[0] for p in parts], num_jobs=2)
        kept, total = write_heldout_manifest(
            manifests / "cuts_test-clean.jsonl.gz", manifests / "cuts_heldout.jsonl.gz",
            train_voices=[s["voice"] for s in info["train-clean-100"]["speakers"]],
            test_speakers=info["test-clean"]["speakers"],
        )
        _say(f"held-out test voices: {kept} of {total} test speakers have an accent + variant never used in training")
    return manifests, kept


def write_heldout_manifest(test_cuts: Path, out: Path, train_voices: list[dict], test_speakers: list[dict]) -> tuple[int, int]:
    """Keep the test cuts of speakers whose (accent, variant) pair no training voice has.

    Args:
        test_cuts: the prepared test manifest.
        out: the manifest to write.
        train_voices: ``synth_info.json`` voice dicts of the training speakers.
        test_speakers: ``synth_info.json`` speaker entries (``id``, ``voice``) of the test subset.

    Returns:
        ``(held-out speakers, test speakers)``.

    Raises:
        SpeechkitError: no test speaker is held out (use more test speakers).
    """
    from speechkit.data.manifests import read_cuts, write_cuts
    from speechkit.errors import SpeechkitError

    seen = {(v["language"], v["variant"]) for v in train_voices}
    heldout = {str(s["id"]) for s in test_speakers if (s["voice"]["language"], s["voice"]["variant"]) not in seen}
    if not heldout:
        raise SpeechkitError("no test speaker has an accent + variant unseen in training; add test speakers")
    cuts = read_cuts(test_cuts).filter(lambda c: c.supervisions[0].speaker in heldout)
    write_cuts(cuts, out)
    return len(heldout), len(test_speakers)


def _tokenizer(opts: AsrQuickstartOptions, run_dir: Path, manifests: Path) -> Path:
    from speechkit.text import train_tokenizer_from_manifests

    path = run_dir / "bpe.model"
    tokenizer = train_tokenizer_from_manifests([manifests / "cuts_train-clean-100.jsonl.gz"], path, opts.vocab_size)
    _say(f"tokenizer: {tokenizer.vocab_size} sentencepiece units -> {path}")
    return path


def _train(opts: AsrQuickstartOptions, run_dir: Path, manifests: Path, tokenizer_path: Path) -> tuple[Path, int]:
    from speechkit.tasks.training import lightning_cli

    args = [
        "--config", str(recipe_path(RECIPE)),
        "--data.init_args.train_manifests", json.dumps([str(manifests / "cuts_train-clean-100.jsonl.gz")]),
        "--data.init_args.valid_manifests", json.dumps([str(manifests / "cuts_dev-clean.jsonl.gz")]),
        "--data.init_args.test_manifests", json.dumps([str(manifests / "cuts_heldout.jsonl.gz")]),
        "--data.init_args.tokenizer_path", str(tokenizer_path),
        "--trainer.default_root_dir", str(run_dir / "train"),
        "--trainer.max_epochs", str(opts.epochs),
        "--seed_everything", str(opts.seed),
    ]
    with timed(opts.timings, "train"):
        cli = lightning_cli(args, run=False)
        num_params = sum(p.numel() for p in cli.model.parameters())
        _say(f"training the xs Conformer-CTC ({num_params / 1e6:.2f} M parameters) for {opts.epochs} epochs ...")
        cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    best = cli.trainer.checkpoint_callback.best_model_path
    return Path(best or run_dir / "train" / "checkpoints" / "last.ckpt"), int(num_params)


def _evaluate(opts: AsrQuickstartOptions, run_dir: Path, ckpt: Path, heldout: Path) -> list[dict]:
    from speechkit.fileio import write_json_atomic
    from speechkit.inference.asr import DecodeOptions, evaluate, load_recognizer, read_eval_set

    results = []
    with timed(opts.timings, "decode"):
        recognizer = load_recognizer(ckpt)
        utterances = read_eval_set(heldout)
        audios = [u.load(recognizer.sample_rate) for u in utterances]
        for chunk_ms in CHUNK_MS:
            result = evaluate(recognizer, utterances, DecodeOptions(chunk_ms=chunk_ms), audios=audios)
            write_json_atomic(run_dir / f"eval_{'full' if not chunk_ms else f'{chunk_ms}ms'}.json", result)
            _say(f"held-out WER, {_label(chunk_ms)}: {result['wer']:.2%}")
            results.append(result)
    return results


def _evaluate_cross_engine(opts: AsrQuickstartOptions, run_dir: Path, ckpt: Path, cross: Path) -> dict:
    """WER at :data:`SHIP_CHUNK_MS` on the pico test set (``eval_pico_320ms.json``)."""
    from speechkit.data.synth.voices import parse_engine_mix
    from speechkit.fileio import write_json_atomic
    from speechkit.inference.asr import DecodeOptions, evaluate, load_recognizer, read_eval_set

    label = cross_engine_label(opts.engines)
    with timed(opts.timings, "decode"):
        recognizer = load_recognizer(ckpt)
        result = evaluate(recognizer, read_eval_set(cross), DecodeOptions(chunk_ms=SHIP_CHUNK_MS))
    write_json_atomic(run_dir / f"eval_{CROSS_ENGINE}_{SHIP_CHUNK_MS}ms.json", result)
    _say(f"{label} WER, {_label(SHIP_CHUNK_MS)}: {result['wer']:.2%}")
    return {"set": label, "engine": CROSS_ENGINE, "held_out_engine": CROSS_ENGINE not in parse_engine_mix(opts.engines),
            "chunk_ms": SHIP_CHUNK_MS, "wer": result["wer"], "num_utterances": result["num_utterances"],
            "speakers": opts.cross_speakers}


def _ship(opts: AsrQuickstartOptions, run_dir: Path, ckpt: Path, heldout: Path) -> dict:
    """Export the streaming artifact (+ int8, gated on held-out WER), then run the demo on a
    recording of held-out voices and score its final results against the reference."""
    from speechkit.export.asr_export import export_asr
    from speechkit.export.asr_int8 import write_int8
    from speechkit.export.gate import QualityGateError

    onnx_path = run_dir / "asr.onnx"
    with timed(opts.timings, "export"):
        _say(f"exporting the streaming ONNX artifact ({SHIP_CHUNK_MS} ms chunks, + int8) ...")
        report = export_asr(ckpt, onnx_path, streaming=True, chunk_ms=SHIP_CHUNK_MS)
        try:  # the int8 model is kept only if it passes the WER gate on the held-out voices
            int8 = write_int8(onnx_path, heldout)
        except QualityGateError as exc:  # keep going with fp32: the gate's message says why
            _say(f"int8 model not written: {exc}")
            int8 = None
    gate = int8 and int8["gate"]
    out = {
        "onnx": {"path": str(onnx_path), "size_bytes": report["size_bytes"], "parity_max_diff": report["parity_max_diff"]},
        "int8": None if not int8 else {
            "path": int8["path"], "size_bytes": int8["size_bytes"],
            # WER fractions, as the rest of the summary (the gate reports percent)
            "fp32_wer": gate and gate["fp32"] / 100, "int8_wer": gate and gate["int8"] / 100},
    }
    with timed(opts.timings, "demo"):
        out["demo"] = _demo(opts, run_dir, onnx_path, heldout)
    return out


def _demo(opts: AsrQuickstartOptions, run_dir: Path, onnx_path: Path, heldout: Path) -> dict:
    """``speechkit demo asr --input demo.wav`` (:func:`speechkit.runtime.demo.run_demo`) on held-out
    utterances joined by pauses longer than the endpoint's trailing silence."""
    import contextlib
    import io

    import numpy as np

    from speechkit.audio import save_audio
    from speechkit.data.manifests import read_cuts
    from speechkit.fileio import write_text_atomic
    from speechkit.metrics.wer import corpus_word_errors
    from speechkit.runtime.demo import run_demo
    from speechkit.text import normalize_text

    sr = 16000
    cuts = sorted(read_cuts(heldout), key=lambda c: c.id)
    # the first utterance of each of the first DEMO_UTTERANCES held-out speakers: voices take turns
    chosen = [next(c for c in cuts if c.supervisions[0].speaker == spk)
              for spk in sorted({c.supervisions[0].speaker for c in cuts})][:DEMO_UTTERANCES]
    pause = np.zeros(int(DEMO_PAUSE_S * sr), np.float32)
    pieces, references = [pause[: sr // 2]], []
    for cut in chosen:
        pieces += [cut.load_audio()[0].astype(np.float32), pause]
        references.append(normalize_text(cut.supervisions[0].text))
    wav = run_dir / "demo.wav"
    save_audio(wav, np.concatenate(pieces), sr)
    write_text_atomic(run_dir / "demo_reference.txt", "\n".join(references) + "\n")
    _say(f"speechkit demo asr --model {onnx_path.name} --input {wav.name}  ({len(chosen)} utterances, "
         f"{len(chosen)} held-out voices)")
    output = io.StringIO()
    # stdout as a user's pipe would get it; no live line (a user's `> file` has none either)
    with contextlib.redirect_stdout(output), contextlib.redirect_stderr(io.StringIO()):
        run_demo("asr", ["--model", str(onnx_path), "--input", str(wav)])
    stdout = output.getvalue()
    write_text_atomic(run_dir / "demo_output.jsonl", stdout)
    finals = [json.loads(line) for line in stdout.splitlines() if line.strip()]
    for final, ref in zip(finals, references + [""] * len(finals)):
        print(f"    {final['time']:6.2f} s  {final['text']!r:<48}  (said: {ref!r})")
    # Score the words of all finals against all references: an endpoint in the wrong place
    # splits or merges results but is not a recognition error.
    errors = corpus_word_errors([" ".join(references)], [" ".join(f["text"] for f in finals)])
    return {"utterances": len(chosen), "finals": len(finals), "wer": errors.wer,
            "exact": sum(f["text"] == r for f, r in zip(finals, references)) if len(finals) == len(references) else None}


def _label(chunk_ms: int) -> str:
    return "full context" if not chunk_ms else f"{chunk_ms} ms chunks"


def print_summary(summary: dict) -> None:
    print("\n== speechkit quickstart asr: summary ==")
    print(f"  held-out espeak-ng voices: {summary['heldout_speakers']} speakers, "
          f"{summary['heldout_utterances']} utterances (accent + variant never used in training)")
    print(f"  {'decoding':<16} {'WER':>7} {'RTF':>8}")
    for row in summary["results"]:
        print(f"  {row['setting']:<16} {row['wer']:>7.2%} {row['rtf']:>8.4f}")
    cross = summary.get("cross_engine")
    if cross:
        print(f"  trained on engines {summary['engines']}; cross-engine set: {cross['set']}, "
              f"{cross['speakers']} speakers, {cross['num_utterances']} utterances")
        print(f"  {_label(cross['chunk_ms']):<16} {cross['wer']:>7.2%}   ({cross['engine']})")
        if not cross["held_out_engine"]:
            print(f"  (training heard {cross['engine']}; benchmarks/asr_proxy.py gives the held-out-engine figure)")
    threads = summary["results"][0]["threads"] if summary["results"] else "?"
    steps = ", ".join(f"{k} {v:.0f} s" for k, v in summary["timings_s"].items())
    onnx, int8, demo = summary["onnx"], summary["int8"], summary["demo"]
    rows = [
        ("parameters", f"{summary['num_params']:,}"),
        ("ONNX (streaming)", f"{onnx['path']} ({onnx['size_bytes'] / 1e6:.1f} MB, {SHIP_CHUNK_MS} ms chunks, "
                             f"parity {onnx['parity_max_diff']:.1g})"),
        ("int8", "not written (failed the WER gate)" if not int8 else
                 f"{int8['path']} ({int8['size_bytes'] / 1e6:.1f} MB); held-out WER fp32 "
                 f"{int8['fp32_wer']:.2%} -> int8 {int8['int8_wer']:.2%}"),
        ("demo", f"{demo['finals']} final results for {demo['utterances']} spoken commands, WER {demo['wer']:.2%}"
                 + (f", {demo['exact']} exact" if demo["exact"] is not None else "")),
        ("RTF", f"compute seconds per audio second, greedy search, {threads} thread(s)"),
        ("wall time", f"{summary['wall_time_s'] / 60:.1f} min ({steps})"),
        ("checkpoint", summary["checkpoint"]),
        ("everything", summary["run_dir"]),
    ]
    width = max(len(label) for label, _ in rows)
    for label, value in rows:
        print(f"  {label:<{width}}  {value}")


def main(args) -> int:
    """``speechkit quickstart asr`` (arguments from :mod:`speechkit.cli.quickstart_cmd`)."""
    run(options_from_args(args))
    return 0


def options_from_args(args) -> AsrQuickstartOptions:
    """:class:`AsrQuickstartOptions` from ``speechkit quickstart asr`` arguments.

    ``--engines``, ``--synth-cache`` and ``--no-synth-cache`` are shared with the KWS quickstart
    (it adds them to the common parser; a second ``add_argument`` would clash).

    Raises:
        SpeechkitError: ``--engines`` names an unknown or reserved engine or a bad weight.
    """
    from speechkit.data.synth.voices import parse_engine_mix

    opts = AsrQuickstartOptions(out=args.out, seed=args.seed)
    if getattr(args, "speakers", None) is not None:
        opts.speakers = args.speakers
    if getattr(args, "epochs", None) is not None:
        opts.epochs = args.epochs
    if getattr(args, "engines", None):
        parse_engine_mix(args.engines)  # a bad spec fails here, before anything is written
        opts.engines = args.engines
    if getattr(args, "synth_cache", None):
        opts.synth_cache = Path(args.synth_cache)
    opts.no_synth_cache = bool(getattr(args, "no_synth_cache", False))
    return opts


def _say(text: str) -> None:
    print(f"[quickstart asr] {text}", flush=True)


QUICKSTART = Subcommand(
    "asr", "synthesize speech, train, decode and ship a streaming command recognizer",
    lambda parser: None, main,
    description="Synthesize a LibriSpeech-style corpus of spoken commands (--engines: espeak-ng voices, the "
    "default for asr, or a mix with SVOX Pico such as espeak:3,pico:1), train a CTC conformer, decode held-out espeak-ng voices at full context and in chunks and a "
    "pico test set at 320 ms, export a streaming ONNX model and run the live demo.",
    order=20,
)

__all__ = ["AsrQuickstartOptions", "QUICKSTART", "cross_engine_label", "main", "options_from_args", "run",
           "write_heldout_manifest"]
