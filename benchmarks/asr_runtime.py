"""Streaming ASR on ONNX Runtime: speed, latency, memory, size, WER fp32 vs int8, PocketSphinx peer.

Usage:
    python benchmarks/asr_runtime.py [--presets xs,s] [--chunk-ms 160,320,640] [--utterances 20]
    python benchmarks/asr_runtime.py --checkpoint runs/quickstart-asr/train/checkpoints/best-*.ckpt --chunk-ms 320  # + WER

For each preset (random weights: speed does not depend on them) or the given checkpoint, and
each chunk size, the streaming artifact is exported (fp32, and int8 by dynamic quantization) and
run by :class:`speechkit.runtime.asr.StreamingRecognizer` in a fresh torch-free process with one
onnxruntime thread, on utterances synthesized with espeak-ng by held-out synthetic speakers
(a speaker seed no corpus uses), fed in 100 ms blocks as from a microphone:

* RTF: compute seconds per audio second (features, encoder, greedy search, endpointing);
* algorithmic latency: audio a chunk's first frame waits for: the chunk, the subsampling's
  right context (3 feature frames) and the fbank window's overhang, ``(chunk_frames - 1) * 10
  + 25`` ms;
* first output: stream start to the first chunk's log-probabilities (that audio plus compute);
* first partial (checkpoint only): speech onset to the first non-empty partial, compute included;
* peak RSS of the recognizing process; model file sizes;
* WER fp32 and int8 (checkpoint only).

PocketSphinx (``pip install pocketsphinx``, its bundled US English model) decodes the same
audio as the peer a user would pick instead: its WER and RTF (one thread) are printed beside.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

RATE = 16000
ONSET_S = 0.5  # silence before each utterance: the speech onset
HELD_OUT_SPEAKER_SEED = 90210
TARGET_RTF, TARGET_INT8_RATIO = 0.03, 0.30


def synth_eval_set(folder: Path, count: int, text_source: str = "commands") -> list[dict]:
    """``count`` utterances (0.5 s silence, speech, 1 s silence) as wavs; their normalised texts.

    ``text_source``: ``commands`` (the quickstart model's domain) or ``sentences`` (the package's
    general English sentences, 4-14 words).
    """
    from speechkit.audio import save_audio
    from speechkit.data.synth.espeak import synthesize
    from speechkit.data.synth.text import get_text_source, load_sentences
    from speechkit.data.synth.voices import sample_speakers
    from speechkit.text import normalize_text

    rng = np.random.default_rng(HELD_OUT_SPEAKER_SEED)
    sentences = [s for s in load_sentences() if 4 <= len(s.split()) <= 14]
    source = get_text_source("commands") if text_source == "commands" else None
    items = []
    for k, voice in enumerate(sample_speakers(count, seed=HELD_OUT_SPEAKER_SEED)):
        text = source.sample(rng) if source is not None else sentences[int(rng.integers(len(sentences)))]
        speech = synthesize(text, voice, RATE, seed=k)
        audio = np.concatenate([np.zeros(int(ONSET_S * RATE)), speech, np.zeros(RATE)]).astype(np.float32)
        save_audio(folder / f"utt{k:03d}.wav", audio, RATE)
        items.append({"wav": str(folder / f"utt{k:03d}.wav"), "text": normalize_text(text), "seconds": len(audio) / RATE})
    return items


def export_preset(preset: str, chunk_ms: int, out: Path, vocab_size: int = 500) -> dict:
    """Random-weight preset -> streaming fp32 + int8 artifacts (parity-checked)."""
    import torch

    from speechkit.export.asr_export import DEFAULT_LEFT_CONTEXT_FRAMES, export_streaming
    from speechkit.export.asr_int8 import quantize_asr
    from speechkit.export.asr_wrappers import asr_metadata
    from speechkit.frontends import Fbank
    from speechkit.models.asr import PRESETS, CTCHead
    from speechkit.runtime.chunking import chunk_size_from_ms

    torch.manual_seed(0)
    encoder, fbank = PRESETS[preset]().eval(), Fbank()
    head = CTCHead(encoder.output_dim, vocab_size).eval()
    tokens = ["<blk>", "<unk>"] + [f"\u2581w{i}" for i in range(vocab_size - 2)]
    chunk = chunk_size_from_ms(chunk_ms)
    left = max(1, DEFAULT_LEFT_CONTEXT_FRAMES // chunk)
    metadata = asr_metadata(encoder, head, tokens, fbank.kaldi_options(), RATE, chunk, left)
    export_streaming(encoder, head, metadata, out, chunk, left)
    int8 = quantize_asr(out, out.with_name(f"{out.stem}_int8.onnx"))
    return {"fp32": out, "int8": int8, "params": json.loads(metadata["model"])["num_params"]}


def export_checkpoint(task, chunk_ms: int, out: Path) -> dict:
    from speechkit.export.asr_export import export_asr_task

    report = export_asr_task(task, out, streaming=True, chunk_ms=chunk_ms, int8=True, force=True)
    return {"fp32": out, "int8": Path(report["int8"]["path"]), "params": sum(p.numel() for p in task.parameters())}


def run_worker(model: Path, eval_json: Path, partials: bool) -> dict:
    """Measure one artifact in a fresh process (torch-free, one thread): see :func:`worker`."""
    cmd = [sys.executable, __file__, "--worker", str(model), "--eval-json", str(eval_json)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(cmd + (["--partials"] if partials else []), capture_output=True, text=True, env=env,
                            check=False)
    if result.returncode != 0:
        raise RuntimeError(f"worker failed on {model}:\n{result.stderr}")
    return json.loads(result.stdout.splitlines()[-1])


def worker(model: str, eval_json: str, partials: bool) -> dict:
    """Stream every utterance through a StreamingRecognizer in 100 ms blocks; timings and texts."""
    import soundfile as sf

    from speechkit.runtime.asr import StreamingRecognizer

    recognizer = StreamingRecognizer(model, partials=True, num_threads=1)
    block = RATE // 10
    compute, audio_s, first_out, first_partial, texts = 0.0, 0.0, [], [], []
    for item in json.loads(Path(eval_json).read_text()):
        audio, _ = sf.read(item["wav"], dtype="float32")
        finals, seen_output, seen_partial = [], False, False
        for i in range(0, len(audio), block):
            start = time.perf_counter()
            results = recognizer.accept_waveform(audio[i : i + block], RATE)
            spent = time.perf_counter() - start
            compute += spent
            if not seen_output and recognizer.decoded_s > 0:
                seen_output = True
                first_out.append(1000 * (recognizer.time_s + spent))
            if partials and not seen_partial and any(r.text and not r.final for r in results):
                seen_partial = True
                first_partial.append(1000 * (recognizer.time_s - ONSET_S + spent))
            finals += [r.text for r in results if r.final]
        start = time.perf_counter()
        finals += [r.text for r in recognizer.input_finished() if r.final]
        compute += time.perf_counter() - start
        audio_s += len(audio) / RATE
        texts.append(" ".join(finals))
    return {
        "rtf": compute / audio_s, "first_out_ms": statistics.median(first_out),
        "first_partial_ms": statistics.median(first_partial) if first_partial else None,
        "peak_rss_mb": peak_rss_mb(), "texts": texts,
        "chunk_frames": recognizer.model.chunk_frames,
    }


def peak_rss_mb() -> float:
    """This process's peak resident memory. VmHWM belongs to the process's own address space;
    ``ru_maxrss`` would also count the parent's memory at fork time, which Linux carries over exec."""
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def wer(refs: list[str], hyps: list[str]) -> float:
    from speechkit.metrics.wer import corpus_word_errors

    return corpus_word_errors(refs, hyps).wer


def pocketsphinx_peer(items: list[dict]) -> dict:
    """WER and RTF of PocketSphinx's bundled US English model on the same utterances."""
    try:
        from pocketsphinx import Decoder
    except ImportError:
        return {"error": "pocketsphinx is not installed (pip install pocketsphinx)"}
    import soundfile as sf

    from speechkit.text import normalize_text

    decoder = Decoder(samprate=RATE, loglevel="FATAL")
    hyps, compute, audio_s = [], 0.0, 0.0
    for item in items:
        audio, _ = sf.read(item["wav"], dtype="int16")
        start = time.perf_counter()
        decoder.start_utt()
        decoder.process_raw(audio.tobytes(), full_utt=True)
        decoder.end_utt()
        compute += time.perf_counter() - start
        audio_s += len(audio) / RATE
        hyp = decoder.hyp()
        hyps.append(normalize_text(hyp.hypstr) if hyp is not None else "")
    return {"wer": wer([i["text"] for i in items], hyps), "rtf": compute / audio_s}


def fmt(value, pattern: str) -> str:
    return "-" if value is None else format(value, pattern)


def print_table(rows: list[dict], peer: dict, count: int) -> None:
    header = ("| model | chunk ms | algo latency ms | params M | fp32 MB | int8 MB (% of fp32) | RTF fp32 | RTF int8 "
              "| first output ms | first partial ms | peak RSS MB fp32/int8 | WER fp32 | WER int8 |")
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for r in rows:
        ratio = r["int8_mb"] / r["fp32_mb"]
        print(f"| {r['model']} | {r['chunk_ms']} | {r['algo_ms']} | {r['params'] / 1e6:.2f} | {r['fp32_mb']:.2f} | "
              f"{r['int8_mb']:.2f} ({100 * ratio:.0f}%) | {r['fp32']['rtf']:.4f} | {r['int8']['rtf']:.4f} | "
              f"{r['fp32']['first_out_ms']:.0f} | {fmt(r['fp32']['first_partial_ms'], '.0f')} | "
              f"{r['fp32']['peak_rss_mb']:.0f}/{r['int8']['peak_rss_mb']:.0f} | "
              f"{fmt(r.get('wer_fp32'), '.3f')} | {fmt(r.get('wer_int8'), '.3f')} |")
    if "error" in peer:
        print(f"\nPocketSphinx: {peer['error']}")
    else:
        print(f"\nPocketSphinx 5 (en-us, 1 thread) on the same {count} utterances: WER {peer['wer']:.3f}, RTF {peer['rtf']:.4f}")
    for r in rows:
        if r["model"] in ("xs", "checkpoint") and r["chunk_ms"] == 320:
            ratio = r["int8_mb"] / r["fp32_mb"]
            print(f"targets ({r['model']} @ 320 ms): RTF {r['fp32']['rtf']:.4f} <= {TARGET_RTF} "
                  f"{'met' if r['fp32']['rtf'] <= TARGET_RTF else 'NOT met'}; int8 {100 * ratio:.0f}% <= "
                  f"{100 * TARGET_INT8_RATIO:.0f}% of fp32 {'met' if ratio <= TARGET_INT8_RATIO else 'NOT met'}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--presets", default="xs,s", help="comma-separated encoder presets (xs, s, m); random weights")
    p.add_argument("--checkpoint", type=Path, default=None, help="an asr-ctc checkpoint instead of the presets (+ WER)")
    p.add_argument("--chunk-ms", default="160,320,640", help="comma-separated chunk sizes (multiples of 40 ms)")
    p.add_argument("--utterances", type=int, default=20, help="synthesized held-out utterances (default 20)")
    p.add_argument("--text", choices=("commands", "sentences"), default="commands",
                   help="what the held-out voices say: commands (the quickstart's domain, default) or sentences")
    p.add_argument("--no-peer", action="store_true", help="skip PocketSphinx")
    p.add_argument("--out", type=Path, default=None, help="also write the results as JSON")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    p.add_argument("--eval-json", default=None, help=argparse.SUPPRESS)
    p.add_argument("--partials", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.eval_json, args.partials)))
        return

    chunks = [int(c) for c in args.chunk_ms.split(",")]
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        items = synth_eval_set(scratch, args.utterances, args.text)
        eval_json = scratch / "eval.json"
        eval_json.write_text(json.dumps(items))
        refs = [i["text"] for i in items]
        task = None
        if args.checkpoint is not None:
            from speechkit.tasks import load_task

            task = load_task(args.checkpoint, expected=("asr-ctc",))
        rows = []
        for model_name in (["checkpoint"] if task is not None else args.presets.split(",")):
            for chunk_ms in chunks:
                out = scratch / f"{model_name}_{chunk_ms}.onnx"
                print(f"exporting {model_name} @ {chunk_ms} ms ...", file=sys.stderr, flush=True)
                files = export_checkpoint(task, chunk_ms, out) if task is not None else export_preset(model_name, chunk_ms, out)
                row = {"model": model_name, "chunk_ms": chunk_ms, "params": files["params"],
                       "fp32_mb": files["fp32"].stat().st_size / 1e6, "int8_mb": files["int8"].stat().st_size / 1e6}
                for precision in ("fp32", "int8"):
                    row[precision] = run_worker(files[precision], eval_json, partials=task is not None)
                    if task is not None:
                        row[f"wer_{precision}"] = wer(refs, row[precision]["texts"])
                row["algo_ms"] = (row["fp32"]["chunk_frames"] - 1) * 10 + 25
                rows.append(row)
        peer = {} if args.no_peer else pocketsphinx_peer(items)
    if args.no_peer:
        peer = {"error": "skipped (--no-peer)"}
    print_table(rows, peer, len(items))
    if args.out is not None:
        for row in rows:
            for precision in ("fp32", "int8"):
                row[precision].pop("texts")
        args.out.write_text(json.dumps({"rows": rows, "pocketsphinx": peer}, indent=2))


if __name__ == "__main__":
    main()
