"""``speechkit kd-student``: the plain streaming student of a distillation checkpoint (issue 13).

    speechkit kd-student runs/synthetic/asr_kd/layer_kd_aux_apc/checkpoints/last.ckpt student.ckpt
    speechkit export student.ckpt student.onnx --streaming --chunk-ms 320

The auxiliary branches and the teacher exist only in training; the written checkpoint is an
``asr-ctc`` one (:func:`speechkit.tasks.asr_kd.write_student_checkpoint`) that transcribes,
evaluates and exports with no teacher file.
"""

from __future__ import annotations

from pathlib import Path

#: position in ``speechkit --help``: after the ASR tools (60).
ORDER = 61


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "kd-student", help="write the plain streaming student of a distillation (AsrKdTask) checkpoint",
        description="Drop the training-only auxiliary branches and the teacher reference of an AsrKdTask "
        "checkpoint: the result is a plain asr-ctc checkpoint for transcribe, eval-asr and export.",
    )
    p.add_argument("checkpoint", metavar="KD_CKPT", help="checkpoint of `speechkit fit` with recipes/*/asr_kd/")
    p.add_argument("out", type=Path, metavar="OUT_CKPT", help="the student checkpoint to write")
    p.set_defaults(func=_run)


def _run(args) -> int:
    from speechkit.tasks.asr_kd import write_student_checkpoint

    out = write_student_checkpoint(args.checkpoint, args.out)
    print(f"Wrote {out}: the streaming student of {args.checkpoint} (asr-ctc; no branches, no teacher).")
    return 0
