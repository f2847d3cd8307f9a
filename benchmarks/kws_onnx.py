"""KWS on ONNX Runtime: latency fp32 vs int8 vs torch eager, streaming CPU cost, sizes, a peer.

Usage:
    python benchmarks/kws_onnx.py [--widths 1,8] [--repeats 200] [--stream-seconds 60]
    python benchmarks/kws_onnx.py --peer [--model kws.onnx]    # + PocketSphinx on a synthesized stream
    python benchmarks/kws_onnx.py --widths 1 --stateful-only   # only the windowed vs stateful comparison

Prints, per BC-ResNet width (random weights: latency does not depend on them):
  * latency of one 1 s window (batch 1, front-end included, 1 thread, median) for torch eager,
    ONNX Runtime fp32 and ONNX Runtime int8 (static, calibrated on synthetic audio);
  * CPU seconds per audio second of the streaming ``KeywordDetector`` (100 ms hop, smoothing 3),
    fp32 and int8;
  * file sizes of the ``.onnx`` and ``.ort`` artifacts;
  * for BC-ResNet-1, in the same run: the windowed detector (the clip artifact re-run on the
    last 1 s every 100 ms hop) against the stateful streaming detector
    (``StreamingBCResNet``-1 exported by ``speechkit.export.kws_streaming``: only the new
    frames each call), both evaluating every 100 ms, the stateful one called on 100 to 500 ms
    of audio at a time (``call_ms``: CPU vs latency; the evaluations are the same): CPU
    seconds per audio second, per-call latency, file size; and the stateful graph with
    onnxruntime's STFT front-end instead of the DFT-as-matmul one (``--frontend-profile``).
Every CPU figure is the best of ``--trials`` runs (``time.thread_time``/``process_time``): on a
shared machine the minimum is the least disturbed measurement.
With ``--peer``: recall and false alarms per hour of PocketSphinx keyphrase spotting (its
bundled US English model, several ``kws_threshold`` values) on a stream synthesized with
espeak-ng, and of speechkit's detector on the same stream when ``--model`` (a KWS model
trained on the synthetic corpus, e.g. by ``speechkit quickstart``) is given.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from speechkit.export.clip_classifier import export_clip_classifier, quantize_clip_classifier
from speechkit.export.kws_streaming import export_streaming_kws
from speechkit.export.onnx_export import convert_to_ort
from speechkit.frontends import LogMel
from speechkit.models.kws import BCResNet, StreamingBCResNet
from speechkit.runtime import KeywordDetector, KwsModel, StreamingKwsModel

RATE = 16000


def synthetic_audio(num: int, samples: int, seed: int = 0) -> np.ndarray:
    """(num, samples) float32: noise at several levels with tones and chirps, for calibration."""
    rng = np.random.default_rng(seed)
    t = np.arange(samples) / RATE
    audio = rng.standard_normal((num, samples)) * rng.uniform(0.002, 0.05, (num, 1))
    for row in audio:
        f0, f1 = rng.uniform(150, 3000, 2)
        envelope = np.exp(-0.5 * ((t - rng.uniform(0.2, 0.8)) / rng.uniform(0.05, 0.25)) ** 2)
        row += rng.uniform(0.05, 0.5) * envelope * np.sin(2 * np.pi * (f0 + (f1 - f0) * t / 2) * t)
    return np.clip(audio, -1, 1).astype(np.float32)


def build(width: float, num_classes: int = 12) -> tuple[LogMel, BCResNet]:
    torch.manual_seed(0)
    frontend, model = LogMel.bcresnet(), BCResNet(num_classes=num_classes, width=width)
    model.train()
    with torch.no_grad():  # realistic BatchNorm statistics, so int8 ranges are meaningful
        model(frontend(torch.from_numpy(synthetic_audio(32, RATE, seed=1)))[0])
    return frontend, model.eval()


def median_ms(fn, repeats: int, warmup: int = 10) -> tuple[float, float]:
    """Median wall-clock and CPU (this thread) milliseconds per call.

    With one thread the work runs in the calling thread, so its CPU time is the latency a
    phone core would see; wall time also counts waits for the CPU on a shared machine.
    """
    for _ in range(warmup):
        fn()
    wall, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.thread_time()
        fn()
        wall.append(1000 * (time.perf_counter() - start))
        cpu.append(1000 * (time.thread_time() - start_cpu))
    return statistics.median(wall), statistics.median(cpu)


def streaming_cpu_per_audio_second(
    model_path: Path, seconds: float, hop_ms: float = 100.0, trials: int = 1, call_ms: float | None = None
) -> float:
    """CPU seconds per audio second of the detector (1 ORT thread), best of ``trials``.

    Opens either KWS artifact (the windowed clip classifier or the stateful ``*_stream.onnx``);
    the audio arrives in chunks of ``call_ms`` (default ``hop_ms``), which for the stateful one
    is also the audio per model call; evaluations are every ``hop_ms`` either way.
    """
    detector = KeywordDetector(model_path, thresholds=0.9, hop_ms=hop_ms, smoothing=3, num_threads=1,
                               thresholds_file=False, call_ms=call_ms)
    audio = synthetic_audio(int(seconds), RATE, seed=2).reshape(-1)
    chunk = int(round((call_ms or hop_ms) * RATE / 1000))
    best = float("inf")
    for _ in range(trials):
        detector.reset()
        start = time.process_time()
        for i in range(0, len(audio), chunk):
            detector.accept_waveform(audio[i : i + chunk], RATE)
        best = min(best, time.process_time() - start)
    return best / (len(audio) / RATE)


def best_call_ms(model: StreamingKwsModel, frames: int, repeats: int, trials: int) -> float:
    """CPU ms of one stateful call on ``frames`` new frames (caches carried), best of ``trials`` medians."""
    audio = synthetic_audio(1, frames * model.hop_length, seed=5)[0]
    model.reset()
    return min(median_ms(lambda: model.logits(audio), repeats)[1] for _ in range(trials))


#: Audio per call of the stateful detector (evaluations stay every 100 ms).
STATEFUL_CALLS_MS = (100, 200, 300, 400, 500)


def bench_stateful(workdir: Path, stream_seconds: float, repeats: int, trials: int, frontend_profile: bool) -> dict:
    """Windowed BC-ResNet-1 detector vs stateful StreamingBCResNet-1 detector, measured in one run."""
    frontend, clip_model = build(1.0)
    clip_path = workdir / "kws_bcresnet1_window.onnx"
    export_clip_classifier(frontend, clip_model, [f"k{i}" for i in range(12)], RATE, RATE, clip_path, task_name="kws")
    stream_frontend, stream_model = build_streaming()
    stream_path = workdir / "kws_bcresnet1_stream.onnx"
    labels = ["_unknown_"] + [f"k{i}" for i in range(11)]
    export_streaming_kws(stream_frontend, stream_model, labels, RATE, RATE, stream_path)
    clip, clip_audio = KwsModel(clip_path), synthetic_audio(1, RATE, seed=4)
    result = {
        "windowed_cpu": streaming_cpu_per_audio_second(clip_path, stream_seconds, 100.0, trials),
        "windowed_call_ms": min(median_ms(lambda: clip.logits(clip_audio), repeats)[1] for _ in range(trials)),
        "windowed_kB": clip_path.stat().st_size / 1e3,
        "stateful_kB": stream_path.stat().st_size / 1e3,
        "stateful_params": sum(p.numel() for p in stream_model.parameters()),
        "hops": {},
    }
    model = StreamingKwsModel(stream_path)
    for call in STATEFUL_CALLS_MS:
        result["hops"][call] = {
            "cpu": streaming_cpu_per_audio_second(stream_path, stream_seconds, 100.0, trials, call_ms=call),
            "call_ms": best_call_ms(model, call // 10, repeats, trials),
        }
    if frontend_profile:  # the same graph with onnxruntime's STFT kernel as the front-end
        import speechkit.export.kws_streaming as kws_streaming

        stft_path = workdir / "kws_bcresnet1_stream_stft.onnx"
        original = kws_streaming.graph_frontend
        kws_streaming.graph_frontend = lambda frontend: None
        try:
            export_streaming_kws(stream_frontend, stream_model, labels, RATE, RATE, stft_path)
        finally:
            kws_streaming.graph_frontend = original
        stft = StreamingKwsModel(stft_path)
        result["stft"] = {call: {"cpu": streaming_cpu_per_audio_second(stft_path, stream_seconds, 100.0, trials, call_ms=call),
                                 "call_ms": best_call_ms(stft, call // 10, repeats, trials)} for call in STATEFUL_CALLS_MS}
    return result


def build_streaming(num_classes: int = 12) -> tuple[LogMel, StreamingBCResNet]:
    """StreamingBCResNet-1 with an uncentred front-end and BatchNorm statistics from synthetic audio."""
    torch.manual_seed(0)
    frontend, model = LogMel(center=False), StreamingBCResNet(num_classes=num_classes, width=1)
    model.train()
    with torch.no_grad():
        model(frontend(torch.from_numpy(synthetic_audio(32, RATE, seed=1)))[0])
    return frontend, model.eval()


def print_stateful(r: dict) -> None:
    print("\nStreaming detectors, BC-ResNet-1, 1 thread, an evaluation every 100 ms, smoothing 3 (one run; best of trials)")
    print(f"{'detector':<50}{'CPU s / audio s':>16}{'ms / call':>11}{'vs windowed':>13}")
    print(f"{'windowed (1 s clip re-run every 100 ms)':<50}{r['windowed_cpu']:>16.4f}{r['windowed_call_ms']:>11.3f}{1.0:>12.2f}x")
    for call, h in r["hops"].items():
        name = f"stateful, {call} ms of audio a call ({call // 10} frames)"
        print(f"{name:<50}{h['cpu']:>16.4f}{h['call_ms']:>11.3f}{h['cpu'] / r['windowed_cpu']:>12.2f}x")
    for call, h in r.get("stft", {}).items():
        name = f"stateful, ORT STFT front-end, {call} ms a call"
        print(f"{name:<50}{h['cpu']:>16.4f}{h['call_ms']:>11.3f}{h['cpu'] / r['windowed_cpu']:>12.2f}x")
    print(f"sizes: windowed {r['windowed_kB']:.1f} kB, stateful {r['stateful_kB']:.1f} kB "
          f"(StreamingBCResNet-1: {r['stateful_params']:,} parameters)")


def bench_width(width: float, repeats: int, stream_seconds: float, workdir: Path) -> dict:
    frontend, model = build(width)
    labels = [f"k{i}" for i in range(12)]
    fp32 = workdir / f"kws_bcresnet{width:g}.onnx"
    int8 = workdir / f"kws_bcresnet{width:g}_int8.onnx"
    export_clip_classifier(frontend, model, labels, RATE, RATE, fp32, task_name="kws")
    quantize_clip_classifier(fp32, int8, synthetic_audio(128, RATE, seed=3))
    clip = synthetic_audio(1, RATE, seed=4)
    wrapper_input = torch.from_numpy(clip)
    with torch.inference_mode():
        eager = median_ms(lambda: model(frontend(wrapper_input)[0]), repeats)
    sessions = {name: KwsModel(path, num_threads=1) for name, path in (("fp32", fp32), ("int8", int8))}
    result = {
        "model": f"BC-ResNet-{width:g}",
        "params": sum(p.numel() for p in model.parameters()),
        "torch_eager_ms": eager,
        **{f"ort_{name}_ms": median_ms(lambda s=s: s.logits(clip), repeats) for name, s in sessions.items()},
        **{f"stream_cpu_{name}": streaming_cpu_per_audio_second(path, stream_seconds) for name, path in (("fp32", fp32), ("int8", int8))},
    }
    for name, path in (("fp32", fp32), ("int8", int8)):
        result[f"onnx_{name}_kB"] = path.stat().st_size / 1e3
        result[f"ort_{name}_kB"] = convert_to_ort(path).stat().st_size / 1e3
    return result


def print_table(rows: list[dict]) -> None:
    print("\nLatency per 1 s window, batch 1, 1 thread, front-end included: median ms wall / CPU")
    print(f"{'model':<15}{'params':>9}{'torch eager':>16}{'ORT fp32':>16}{'ORT int8':>16}")
    for r in rows:
        cells = "".join(f"{r[k][0]:>9.2f} /{r[k][1]:>5.2f}" for k in ("torch_eager_ms", "ort_fp32_ms", "ort_int8_ms"))
        print(f"{r['model']:<15}{r['params']:>9,}{cells}")
    print("\nStreaming detector, 100 ms hop: CPU seconds per audio second (1 thread)")
    print(f"{'model':<15}{'fp32':>10}{'int8':>10}")
    for r in rows:
        print(f"{r['model']:<15}{r['stream_cpu_fp32']:>10.4f}{r['stream_cpu_int8']:>10.4f}")
    print("\nSizes (kB)")
    print(f"{'model':<15}{'.onnx fp32':>12}{'.onnx int8':>12}{'.ort fp32':>11}{'.ort int8':>11}")
    for r in rows:
        print(f"{r['model']:<15}{r['onnx_fp32_kB']:>12.1f}{r['onnx_int8_kB']:>12.1f}{r['ort_fp32_kB']:>11.1f}{r['ort_int8_kB']:>11.1f}")


# -- peer: PocketSphinx keyphrase spotting -----------------------------------------------------


def pocketsphinx_detections(audio: np.ndarray, keywords: list[str], threshold: float, workdir: Path) -> tuple[list[dict], float]:
    """Keyphrase spotting with PocketSphinx's default English model; (detections, CPU s)."""
    from pocketsphinx import Decoder

    kws_file = workdir / "keyphrases.txt"
    kws_file.write_text("".join(f"{k} /{threshold:g}/\n" for k in keywords))
    decoder = Decoder(kws=str(kws_file), samprate=RATE, loglevel="FATAL")
    pcm = (np.clip(audio, -1, 1) * 32767).astype("<i2")
    detections, utt_start, chunk = [], 0, RATE // 10
    start = time.process_time()
    decoder.start_utt()
    for i in range(0, len(pcm), chunk):
        decoder.process_raw(pcm[i : i + chunk].tobytes(), False, False)
        if decoder.hyp() is not None:  # a keyphrase fired: read its times, restart (as its docs do)
            for seg in decoder.seg():
                centre = utt_start / RATE + (seg.start_frame + seg.end_frame) / 200.0  # 100 frames/s
                detections.append({"time": round(centre, 3), "keyword": seg.word.strip(), "score": float(seg.prob)})
            decoder.end_utt()
            decoder.start_utt()
            utt_start = i + chunk
    decoder.end_utt()
    return detections, time.process_time() - start


def run_peer(model: Path | None, keywords: list[str], num_keywords: int, workdir: Path) -> None:
    from speechkit.audio import save_audio
    from speechkit.data.synth.stream import synth_keyword_stream
    from speechkit.data.synth.voices import sample_speakers
    from speechkit.runtime.eval_stream import Event, evaluate_stream, stream_metrics

    if model is not None:
        keywords = [k for k in KwsModel(model).labels if not k.startswith("_")]
    stream = synth_keyword_stream(keywords, sample_speakers(8, seed=9001), num_keywords=num_keywords, seed=7)
    hours = stream.duration_s / 3600
    events = [Event(e["keyword"], e["start"], e["end"]) for e in stream.events]
    print(f"\nPeer comparison on a synthesized stream: {stream.duration_s / 60:.1f} min, "
          f"{len(events)} keywords ({', '.join(keywords)}), 8 held-out espeak-ng voices, noise at 10-30 dB SNR")
    print(f"{'system':<40}{'recall':>8}{'FA/h':>10}{'CPU s/audio s':>15}")
    try:
        import pocketsphinx  # noqa: F401
    except ImportError:
        print("PocketSphinx not installed (pip install pocketsphinx): peer skipped")
    else:
        for threshold in (1e-1, 1e-3, 1e-5, 1e-10, 1e-20, 1e-30):
            detections, cpu = pocketsphinx_detections(stream.audio, keywords, threshold, workdir)
            m = stream_metrics(detections, events, hours)
            print(f"{'PocketSphinx kws_threshold=' + format(threshold, 'g'):<40}{m['recall']:>8.3f}"
                  f"{m['false_alarms_per_hour']:>10.1f}{cpu / stream.duration_s:>15.4f}")
    if model is None:
        print("speechkit: pass --model (a KWS .onnx trained on the synthetic corpus) to score it on the same stream")
        return
    save_audio(workdir / "stream.wav", stream.audio, RATE)
    (workdir / "events.json").write_text(json.dumps(stream.events))
    for threshold in (None, 0.5, 0.7, 0.9):
        start = time.process_time()
        result = evaluate_stream(model, workdir / "stream.wav", workdir / "events.json", thresholds=threshold)
        cpu = time.process_time() - start
        name = f"speechkit {model.name} " + ("calibrated/default" if threshold is None else f"threshold={threshold}")
        print(f"{name:<40}{result['recall']:>8.3f}{result['false_alarms_per_hour']:>10.1f}{cpu / stream.duration_s:>15.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--widths", default="1,8", help="BC-ResNet widths (default 1,8)")
    parser.add_argument("--repeats", type=int, default=200, help="timed runs per latency figure")
    parser.add_argument("--stream-seconds", type=float, default=60.0, help="audio streamed per CPU figure")
    parser.add_argument("--peer", action="store_true", help="also run PocketSphinx on a synthesized stream")
    parser.add_argument("--model", type=Path, default=None, help="trained KWS .onnx for the peer comparison")
    parser.add_argument("--peer-keywords", default="yes,no,up,down,left,right,on,off,stop,go")
    parser.add_argument("--peer-events", type=int, default=60, help="keyword occurrences in the peer stream")
    parser.add_argument("--trials", type=int, default=3, help="runs per streaming CPU figure (the best is kept)")
    parser.add_argument("--stateful-only", action="store_true", help="only the windowed vs stateful comparison")
    parser.add_argument("--frontend-profile", action="store_true",
                        help="also time the stateful graph with onnxruntime's STFT front-end")
    args = parser.parse_args()
    torch.set_num_threads(1)
    import onnxruntime

    print(f"torch {torch.__version__}, onnxruntime {onnxruntime.__version__}, 1 thread")
    with tempfile.TemporaryDirectory() as scratch:
        workdir = Path(scratch)
        if not args.stateful_only:
            rows = [bench_width(float(w), args.repeats, args.stream_seconds, workdir) for w in args.widths.split(",")]
            print_table(rows)
        print_stateful(bench_stateful(workdir, args.stream_seconds, args.repeats, args.trials, args.frontend_profile))
        if args.peer:
            run_peer(args.model, args.peer_keywords.split(","), args.peer_events, workdir)


if __name__ == "__main__":
    main()
