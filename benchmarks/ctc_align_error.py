"""Word-boundary error of the CTC forced aligner against espeak-ng's true word times.

Usage:
    python benchmarks/ctc_align_error.py --model runs/qs_asr/asr.onnx \
        --train-info runs/qs_asr/corpus/synth_info_train-clean-100.json
    python benchmarks/ctc_align_error.py --model runs/qs_asr/train/checkpoints/best-009.ckpt
    python benchmarks/ctc_align_error.py --model M --corpus DIR --alignments DIR/alignments

Without ``--corpus`` it synthesizes a small LibriSpeech-layout corpus of held-out espeak-ng voices
(``speechkit synth librispeech --voice-pool heldout --word-times``: ``--speakers`` x
``--utterances``, ``--text`` commands by default, what the quickstart ASR model was trained on)
into ``--work``; with ``--train-info`` (a ``synth_info*.json`` of the model's training corpus)
speakers whose accent + variant pair was used in training are left out. Each utterance is aligned
with ``--model`` (``.onnx``/``.ort`` artifact, streaming or full context, or an ``asr-ctc``
checkpoint) through :func:`speechkit.runtime.ctc_aligner.open_aligner`, and its words are paired
with the TextGrid's (same words, in order).

Prints, for word starts, ends, both together, and word centres (the midpoint LibriWord centres its
clips on): the median and 95th percentile of the absolute
boundary error (ms), the mean signed error (positive: the aligner is late), and the share of
boundaries within 50 and 100 ms; and the alignment speed (audio seconds per second of features +
model + Viterbi, one thread). Nothing is asserted.
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import time
from pathlib import Path

import numpy as np

import speechkit.inference.ctc_align  # noqa: F401  (registers the .ckpt loader)
from speechkit.data.corpora.libriword import librispeech_utterances, read_alignments
from speechkit.runtime.ctc_aligner import open_aligner


def get_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="ASR model: .onnx/.ort artifact or .ckpt checkpoint")
    p.add_argument("--tokenizer", default=None, help="its sentencepiece model (default: bpe.model beside it)")
    p.add_argument("--corpus", default=None, help="LibriSpeech-layout folder (default: synthesize one)")
    p.add_argument("--alignments", default=None, help="true TextGrids (default: CORPUS/alignments)")
    p.add_argument("--work", default="runs/ctc_align_error", help="where a synthesized corpus goes")
    p.add_argument("--speakers", type=int, default=20, help="synthesized speakers (default: %(default)s)")
    p.add_argument("--utterances", type=int, default=8, help="utterances per speaker (default: %(default)s)")
    p.add_argument("--text", default="commands", help="synthesized text source (default: %(default)s)")
    p.add_argument("--seed", type=int, default=7, help="synthesis seed (default: %(default)s)")
    p.add_argument("--train-info", default=None, help="synth_info*.json of the model's training corpus")
    p.add_argument("--json", default=None, help="also write the numbers here")
    return p.parse_args(argv)


def synthesized_corpus(args) -> Path:
    """The corpus of held-out voices with true word times (made once; reused when present)."""
    from speechkit.data.synth.librispeech import synth_librispeech

    corpus = Path(args.work) / f"corpus_{args.text}_{args.speakers}x{args.utterances}_seed{args.seed}"
    if not corpus.is_dir():
        synth_librispeech(corpus, subsets=["test-clean"], num_speakers=args.speakers,
                          utterances_per_speaker=args.utterances, text=args.text, seed=args.seed,
                          voice_pool="heldout", engines="espeak", word_times=True)
    return corpus


def heldout_speakers(corpus: Path, train_info: str | None) -> set[str] | None:
    """Speaker ids whose (accent, variant) no training voice has; ``None``: no filter."""
    if not train_info:
        return None
    seen = {(s["voice"]["language"], s["voice"]["variant"]) for s in json.loads(Path(train_info).read_text())["speakers"]}
    info = json.loads((corpus / "synth_info.json").read_text())
    return {str(s["id"]) for s in info["speakers"] if (s["voice"]["language"], s["voice"]["variant"]) not in seen}


def pair_words(predicted, true) -> list[tuple]:
    """(predicted, true) word pairs with the same spelling, in order (difflib's matching blocks)."""
    a = [w.word.upper().strip(".,;:!?") for w in predicted]
    b = [w.word.upper().strip(".,;:!?") for w in true]
    pairs = []
    for block in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_matching_blocks():
        pairs += [(predicted[block.a + k], true[block.b + k]) for k in range(block.size)]
    return pairs


def summarize(errors_ms: np.ndarray) -> dict:
    absolute = np.abs(errors_ms)
    return {
        "n": int(errors_ms.size),
        "median_ms": float(np.median(absolute)),
        "p95_ms": float(np.percentile(absolute, 95)),
        "mean_signed_ms": float(np.mean(errors_ms)),
        "within_50ms": float(np.mean(absolute <= 50)),
        "within_100ms": float(np.mean(absolute <= 100)),
    }


def main(argv=None) -> dict:
    args = get_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    corpus = Path(args.corpus) if args.corpus else synthesized_corpus(args)
    alignments = Path(args.alignments) if args.alignments else corpus / "alignments"
    utterances = librispeech_utterances(corpus, num_jobs=1)
    keep = heldout_speakers(corpus, args.train_info)
    if keep is not None:
        utterances = [u for u in utterances if u.speaker in keep]
    truth, _ = read_alignments(utterances, alignments)
    aligner = open_aligner(args.model, args.tokenizer, num_threads=1)
    starts, ends, centres, seconds, audio_s, failed, words_true = [], [], [], 0.0, 0.0, 0, 0
    for utt in utterances:
        if utt.id not in truth:
            continue
        audio = utt.recording.load_audio()[0]
        begin = time.perf_counter()
        try:
            predicted = aligner.align(audio, utt.text)
        except Exception as exc:  # noqa: BLE001 - counted and reported, a benchmark goes on
            failed += 1
            print(f"  {utt.id}: {exc}")
            continue
        seconds += time.perf_counter() - begin
        audio_s += utt.recording.duration
        words_true += len(truth[utt.id])
        for p, t in pair_words(predicted, truth[utt.id]):
            starts.append(1000 * (p.start_s - t.start_s))
            ends.append(1000 * (p.end_s - t.end_s))
            centres.append(500 * (p.start_s + p.end_s - t.start_s - t.end_s))
    starts, ends = np.array(starts), np.array(ends)
    result = {
        "model": str(args.model),
        "corpus": str(corpus),
        "utterances": len(truth) - failed,
        "failed": failed,
        "speakers": len({u.speaker for u in utterances if u.id in truth}),
        "words_paired": int(starts.size),
        "words_true": words_true,
        "audio_min": audio_s / 60,
        "speed_x_realtime": audio_s / max(seconds, 1e-9),
        "start": summarize(starts),
        "end": summarize(ends),
        "both": summarize(np.concatenate([starts, ends])),
        "centre": summarize(np.array(centres)),
    }
    print_table(result)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return result


def print_table(r: dict) -> None:
    print(f"CTC forced alignment vs espeak-ng word events: {r['model']}")
    print(f"  corpus {r['corpus']}: {r['utterances']} utterances ({r['failed']} failed), {r['speakers']} speakers, "
          f"{r['audio_min']:.1f} min; {r['words_paired']} of {r['words_true']} true words paired")
    print(f"  {'boundary':<9} {'median |err|':>13} {'p95 |err|':>10} {'mean signed':>12} {'<=50 ms':>8} {'<=100 ms':>9}")
    for name in ("start", "end", "both", "centre"):
        s = r[name]
        print(f"  {name:<9} {s['median_ms']:>10.0f} ms {s['p95_ms']:>7.0f} ms {s['mean_signed_ms']:>+9.0f} ms "
              f"{100 * s['within_50ms']:>7.1f}% {100 * s['within_100ms']:>8.1f}%")
    print(f"  speed: {r['speed_x_realtime']:.0f}x real time (features + model + Viterbi, 1 thread)")


if __name__ == "__main__":
    main()
