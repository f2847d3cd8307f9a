"""``speechkit align``: word times of a LibriSpeech folder by CTC forced alignment.

    speechkit align --model runs/qs_asr/asr.onnx --corpus corpus/LibriSpeech --out alignments
    speechkit prepare libriword corpus/LibriSpeech data/libriword --alignments alignments

Writes one TextGrid per utterance in the Montreal Forced Aligner layout
(``OUT/<subset>/<speaker>/<chapter>/<utt>.TextGrid``, a ``words`` tier), the format
``speechkit prepare libriword --alignments`` reads for MFA's alignments too. Importing this module
registers the checkpoint loader (:mod:`speechkit.inference.ctc_align`).
"""

from __future__ import annotations

from speechkit.inference import ctc_align  # registers .ckpt in the aligner loaders

#: position in ``speechkit --help``: after the ASR tools (60).
ORDER = 62


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "align", help="word times of a LibriSpeech folder by CTC forced alignment (TextGrids, MFA layout)",
        description="Force-align every transcript of a LibriSpeech-layout folder with an ASR model (CTC Viterbi) "
        "and write OUT/<subset>/<speaker>/<chapter>/<utt>.TextGrid with a 'words' tier.",
    )
    p.add_argument("--model", required=True, help="ASR model: .ckpt checkpoint, or .onnx/.ort artifact")
    p.add_argument("--corpus", required=True, metavar="LIBRISPEECH_DIR", help="folder holding the subset folders")
    p.add_argument("--out", required=True, metavar="DIR", help="where the TextGrids go")
    p.add_argument("--tokenizer", default=None,
                   help="the model's sentencepiece model (default: the checkpoint's own, or bpe.model beside an "
                   "artifact; else the artifact's token list)")
    p.add_argument("--subsets", nargs="+", default=None, metavar="SUBSET", help="subsets (default: all present)")
    p.add_argument("--num-jobs", type=int, default=1, help="threads (default: %(default)s)")
    p.set_defaults(func=_run)


def _run(args) -> int:
    print(ctc_align.align_corpus(args.model, args.corpus, args.out, args.tokenizer, args.subsets, args.num_jobs,
                                 progress=True))
    return 0
