"""Using trained ASR models: loading, transcription and evaluation (:mod:`.inference`), WER (:mod:`.wer`).

Training lives in :mod:`speechkit.tasks.asr`; the torch-free streaming runtime in
:mod:`speechkit.runtime`.
"""
