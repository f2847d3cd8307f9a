"""Personalized keyword spotting (PK-MTL, Yang et al. 2022): a BC-ResNet split into a shared
encoder and keyword/speaker branches with cosine classifiers, its baselines, and the Task
Representation Module. Networks take features ``(B, T, F)``; ``forward`` returns keyword logits.
"""

from speechkit.models.personal.network import (
    SYSTEMS,
    BCResNetEncoder,
    Branch,
    CosineClassifier,
    PersonalKwsNet,
    PersonalOutputs,
)
from speechkit.models.personal.trm import TaskRepresentationModule

__all__ = ["SYSTEMS", "BCResNetEncoder", "Branch", "CosineClassifier", "PersonalKwsNet", "PersonalOutputs",
           "TaskRepresentationModule"]
