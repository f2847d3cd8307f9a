"""Conformer-CTC speed in PyTorch: training throughput and decoding real-time factor per preset.

Usage:
    python benchmarks/asr_speed.py [--presets xs,s,m] [--device cpu|cuda] [--steps 5]
    python benchmarks/asr_speed.py --presets m --device cuda --batch 32 --seconds 15

For each preset (random weights: speed does not depend on them) and each attention context
(full, and 320 ms chunks = 8 encoder frames):

* training: audio seconds processed per second of a full training step (Kaldi fbank front-end,
  SpecAugment, encoder, CTC head, CTC loss, backward, fused AdamW step) on a batch of
  ``--batch`` utterances of ``--seconds`` s, with all the threads torch uses (printed), fp32 on
  the CPU and bf16 autocast on a GPU that supports it;
* decoding: real-time factor (compute seconds per audio second, lower is faster) of one
  ``--decode-seconds`` utterance at batch 1 with **one thread** on the CPU: features, encoder,
  greedy search to text (:func:`speechkit.decoding.ctc_text`, the text rule of every WER).
  Full context runs ``forward`` on the whole utterance; 320 ms runs the cached
  ``streaming_forward`` window by window of the runtime's chunk schedule
  (:class:`speechkit.runtime.chunking.ChunkSchedule`, 8 chunks of left context), as a phone would.

Prints a table; ``--json FILE`` also writes the numbers.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from speechkit.decoding import ctc_text
from speechkit.frontends import Fbank, SpecAugment
from speechkit.losses.ctc import CTCLoss
from speechkit.models.asr import PRESETS, CTCHead
from speechkit.runtime.chunking import ChunkSchedule
from speechkit.tasks.asr import use_fused_step

SAMPLE_RATE = 16000
VOCAB = 500
TOKENS = ["<blk>", "<unk>"] + [f"\u2581w{i}" for i in range(VOCAB - 2)]
CHUNK_FRAMES = 8  # 320 ms of 40 ms encoder frames
LEFT_CHUNKS = 8


def train_throughput(preset: str, chunk_size: int, args, device: str) -> float:
    """Audio seconds per second over ``args.steps`` timed training steps (after 2 warm-up steps)."""
    torch.manual_seed(0)
    encoder, head = PRESETS[preset]().to(device), CTCHead(PRESETS[preset]().output_dim, VOCAB).to(device)
    frontend, specaug, loss_fn = Fbank().to(device), SpecAugment(2, 27, 10, 40).to(device), CTCLoss()
    params = list(encoder.parameters()) + list(head.parameters())
    optimizer = torch.optim.AdamW(params, 1e-3)
    use_fused_step(optimizer)
    samples = int(args.seconds * SAMPLE_RATE)
    audio = 0.1 * torch.randn(args.batch, samples, device=device)
    audio_lens = torch.full((args.batch,), samples, device=device)
    tokens = torch.randint(1, VOCAB, (args.batch, int(args.seconds * 3)), device=device)  # ~3 units/s
    token_lens = torch.full((args.batch,), tokens.shape[1], device=device)
    bf16 = device == "cuda" and torch.cuda.is_bf16_supported()

    def step() -> None:
        with torch.no_grad():
            feats, feat_lens = frontend(audio, audio_lens)
        feats = specaug.train()(feats, feat_lens)
        with torch.autocast(device, dtype=torch.bfloat16, enabled=bf16):
            enc, enc_lens = encoder(feats, feat_lens, chunk_size, -1)
            log_probs = head(enc)
        loss, _ = loss_fn({"log_probs": log_probs, "log_prob_lens": enc_lens},
                          {"tokens": tokens, "token_lens": token_lens})
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for _ in range(2):
        step()
    _sync(device)
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    _sync(device)
    return args.steps * args.batch * args.seconds / (time.perf_counter() - start)


@torch.inference_mode()
def decode_rtf(preset: str, chunk_size: int, args) -> float:
    """Real-time factor of one utterance at batch 1, one CPU thread (median of 3 runs)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(0)
        encoder = PRESETS[preset]().eval()
        head, frontend = CTCHead(encoder.output_dim, VOCAB).eval(), Fbank().eval()
        audio = 0.1 * torch.randn(1, int(args.decode_seconds * SAMPLE_RATE))
        times = []
        for _ in range(3):
            start = time.perf_counter()
            feats, feat_lens = frontend(audio, torch.tensor([audio.shape[1]]))
            if chunk_size <= 0:
                enc, _ = encoder(feats, feat_lens)
                log_probs = head(enc)[0]
            else:
                log_probs = torch.cat(_streaming(encoder, head, feats[0], chunk_size))
            ctc_text(log_probs.numpy(), TOKENS)
            times.append(time.perf_counter() - start)
        return float(np.median(times)) / args.decode_seconds
    finally:
        torch.set_num_threads(threads)


def _streaming(encoder, head, feats: torch.Tensor, chunk_size: int) -> list[torch.Tensor]:
    """Feed (T, F) features window by window with carried states; return per-window log-probs."""
    states = encoder.init_states(1, chunk_size, LEFT_CHUNKS)
    outputs = []
    for window in ChunkSchedule.for_chunk_size(chunk_size).windows(feats.shape[0]):
        chunk = feats[window.start : window.end][None]
        out, _, states = encoder.streaming_forward(chunk, torch.tensor([chunk.shape[1]]), states)
        outputs.append(head(out)[0])
    return outputs


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", default="xs,s,m", help="comma-separated presets (default: xs,s,m)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=8, help="training utterances per batch (default: 8)")
    parser.add_argument("--seconds", type=float, default=10.0, help="seconds per training utterance (default: 10)")
    parser.add_argument("--steps", type=int, default=3, help="timed training steps (default: 3)")
    parser.add_argument("--decode-seconds", type=float, default=10.0, help="decoded utterance length (default: 10)")
    parser.add_argument("--json", default=None, help="also write the results to this JSON file")
    args = parser.parse_args()
    presets = [p.strip() for p in args.presets.split(",") if p.strip()]
    unknown = [p for p in presets if p not in PRESETS]
    if unknown:
        parser.error(f"unknown presets {unknown}; choose from {sorted(PRESETS)}")
    rows = []
    for preset in presets:
        params = sum(p.numel() for p in PRESETS[preset]().parameters())
        for chunk_size, label in ((-1, "full"), (CHUNK_FRAMES, "320 ms")):
            rows.append({
                "preset": preset, "params_m": round(params / 1e6, 2), "context": label,
                "train_audio_s_per_s": round(train_throughput(preset, chunk_size, args, args.device), 1),
                "decode_rtf_1thread": round(decode_rtf(preset, chunk_size, args), 4),
            })
            print(json.dumps(rows[-1]), flush=True)
    print(f"\nConformer-CTC speed ({args.device}, training with {torch.get_num_threads()} threads, "
          f"batch {args.batch} x {args.seconds:g} s; decoding 1 thread, {args.decode_seconds:g} s utterance)")
    print(f"{'preset':<7}{'params':>8}  {'context':<8}{'train audio s/s':>16}{'decode RTF (1 thread)':>23}")
    for r in rows:
        print(f"{r['preset']:<7}{r['params_m']:>7.2f}M  {r['context']:<8}{r['train_audio_s_per_s']:>16.1f}"
              f"{r['decode_rtf_1thread']:>23.4f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": args.device, "threads": torch.get_num_threads(), "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
