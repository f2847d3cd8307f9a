"""Building blocks shared by several model families (no family imports another)."""

from speechkit.models.nn.norm import FreqNorm, ResNorm, SubSpectralNorm

__all__ = ["FreqNorm", "ResNorm", "SubSpectralNorm"]
