"""Objectives, kept apart from the networks (docs/ARCHITECTURE.md contract 3).

Every loss is an ``nn.Module`` called as ``loss(outputs, batch) -> (loss, stats)``.

* :class:`CrossEntropyLoss` (:mod:`.classification`): classifiers (KWS).
* :class:`CTCLoss` (:mod:`.ctc`): CTC for ASR.
* :mod:`.asr_kd`: streaming-ASR distillation terms (feature, attention relation, APC, token KD).
"""

from speechkit.losses.asr_kd import ApcLoss, AttentionRelationLoss, FeatureLoss, TokenKdLoss
from speechkit.losses.classification import CrossEntropyLoss
from speechkit.losses.ctc import CTCLoss

__all__ = ["CrossEntropyLoss", "CTCLoss", "FeatureLoss", "AttentionRelationLoss", "ApcLoss", "TokenKdLoss"]
