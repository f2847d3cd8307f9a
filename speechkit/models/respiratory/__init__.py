"""Respiratory-sound classifiers: the Audio Spectrogram Transformer (AST) and its checkpoint loader."""

from speechkit.models.respiratory.ast import AST, AstConfig
from speechkit.models.respiratory.checkpoint import load_ast_checkpoint

__all__ = ["AST", "AstConfig", "load_ast_checkpoint"]
