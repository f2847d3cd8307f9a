"""Named HuBERT-style configurations and their parameter counts (pinned in tests/unit/test_hubert.py).

=================  ======  =====  =====  ======================================================
preset             D       FFN    L      parameters
=================  ======  =====  =====  ======================================================
``base``           768     3072   12     94.70 M with the 504-cluster pre-training head (the
                                         count the papers quote), 94.37 M without it
``starhubert``     432     976    12     22.31 M (STaR, ICASSP 2024; ARMHuBERT-S extractor)
``starhubert_l``   480     1024   12     26.63 M (STaRHuBERT-L)
``starhubert_6l``  432     976    6      our smaller preset: the 22.31 M student with 6 layers
``tiny_teacher``   128     512    4      synthetic recipe teacher (CPU, minutes)
``tiny_student``   96      384    4      synthetic recipe students
=================  ======  =====  =====  ======================================================

The student extractor (methods.md 5.3): (128,10,5), (256,1,1), (256,3,2) x 4, (D,1,1),
(D,2,2) x 2: 320 samples per frame like Base, thinner, and its output already D wide (no
projection). Example:

>>> from speechkit.models.ssl.hubert import HubertModel
>>> round(sum(p.numel() for p in HubertModel(hubert_preset("starhubert")).parameters()) / 1e6, 2)
22.31
"""

from __future__ import annotations

from speechkit.models.ssl.hubert import BASE_CONV_LAYERS, HubertConfig


def student_conv_layers(dim: int, first: int = 128, mid: int = 256) -> list[tuple[int, int, int]]:
    """The ARMHuBERT/STaR student extractor ending in ``dim`` channels (320 samples per frame)."""
    return [(first, 10, 5), (mid, 1, 1)] + [(mid, 3, 2)] * 4 + [(dim, 1, 1)] + [(dim, 2, 2)] * 2


PRESETS: dict[str, dict] = {
    "base": dict(conv_layers=list(BASE_CONV_LAYERS), dim=768, num_layers=12, num_heads=12, ffn_dim=3072),
    "starhubert": dict(conv_layers=student_conv_layers(432), dim=432, num_layers=12, num_heads=12, ffn_dim=976),
    "starhubert_l": dict(conv_layers=student_conv_layers(480), dim=480, num_layers=12, num_heads=12, ffn_dim=1024),
    "starhubert_6l": dict(conv_layers=student_conv_layers(432), dim=432, num_layers=6, num_heads=12, ffn_dim=976),
    "tiny_teacher": dict(conv_layers=[(32, 10, 5)] + [(64, 3, 2)] * 4 + [(64, 2, 2)] * 2, dim=128, num_layers=4,
                         num_heads=4, ffn_dim=512,
                         pos_conv_kernel=32, pos_conv_groups=8, final_dim=64),
    "tiny_student": dict(conv_layers=student_conv_layers(96, 16, 32), dim=96, num_layers=4, num_heads=4, ffn_dim=384,
                         pos_conv_kernel=32, pos_conv_groups=8, final_dim=64),
}


def hubert_preset(name: str, **overrides) -> HubertConfig:
    """The :class:`HubertConfig` of a preset, with fields overridden (e.g. ``num_classes=100``).

    Raises:
        ValueError: unknown preset name.
    """
    if name not in PRESETS:
        raise ValueError(f"unknown HuBERT preset {name!r}; expected one of {sorted(PRESETS)}")
    return HubertConfig(**{**PRESETS[name], **overrides})
