"""speechkit: train, compress and ship on-device speech and audio models."""

__version__ = "0.1.0"
