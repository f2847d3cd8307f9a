"""Kaldi fbank options as plain JSON, and their kaldi-native-fbank counterpart.

The streaming ASR ONNX artifact stores the feature settings as JSON in its metadata
(``feature``); a phone app or :mod:`speechkit.runtime` builds ``knf.FbankOptions`` from it and
computes features with ``knf.OnlineFbank``. The dict layout is the one of
``knf.FbankOptions.as_dict()`` (nested ``frame_opts`` / ``mel_opts``), so the names are the
kaldi-native-fbank (and Kaldi) option names.

This module imports neither torch nor numpy. :func:`knf_options_from_dict` is the runtime's
(:mod:`speechkit.runtime.fbank_options`, which may not import frontends), re-exported here.
"""

from __future__ import annotations

from typing import Any

# One implementation of the reverse direction, in the torch-free runtime (which may not import
# frontends); re-exported here beside the function that writes the dict it reads.
from speechkit.runtime.fbank_options import knf_options_from_dict  # noqa: F401

# Kaldi's window names (feature-window.cc); kaldi-native-fbank accepts the same strings.
KALDI_WINDOW_TYPES = ("hamming", "hanning", "povey", "rectangular", "sine", "blackman")


def fbank_options_dict(
    sample_rate: int = 16000,
    num_mel_bins: int = 80,
    frame_length_ms: float = 25.0,
    frame_shift_ms: float = 10.0,
    preemph_coeff: float = 0.97,
    remove_dc_offset: bool = True,
    window_type: str = "povey",
    snip_edges: bool = True,
    dither: float = 0.0,
    low_freq: float = 20.0,
    high_freq: float = 0.0,
    energy_floor: float = 0.0,
    round_to_power_of_two: bool = True,
    blackman_coeff: float = 0.42,
) -> dict[str, Any]:
    """Kaldi fbank options as a JSON-serialisable dict in ``knf.FbankOptions.as_dict()`` layout.

    Args: the Kaldi options of the same names (``sample_rate`` is ``frame_opts.samp_freq`` in
    Hz, ``num_mel_bins`` is ``mel_opts.num_bins``; ``low_freq``/``high_freq`` in Hz, a
    ``high_freq`` <= 0 is an offset from the Nyquist frequency).

    Returns:
        ``{"frame_opts": {...}, "mel_opts": {...}, "use_energy": False, "energy_floor": ...,
        "use_log_fbank": True, "use_power": True}``: log mel energies of the power spectrum,
        no energy coefficient, as :class:`speechkit.frontends.Fbank` computes them.

    Example:
        >>> opts = fbank_options_dict(num_mel_bins=80)
        >>> opts["frame_opts"]["samp_freq"], opts["frame_opts"]["frame_shift_ms"], opts["mel_opts"]["num_bins"]
        (16000.0, 10.0, 80)
        >>> import json
        >>> json.loads(json.dumps(opts)) == opts  # plain JSON: it goes into the ONNX metadata
        True
    """
    return {
        "frame_opts": {
            "samp_freq": float(sample_rate),
            "frame_length_ms": float(frame_length_ms),
            "frame_shift_ms": float(frame_shift_ms),
            "dither": float(dither),
            "preemph_coeff": float(preemph_coeff),
            "remove_dc_offset": bool(remove_dc_offset),
            "window_type": str(window_type),
            "round_to_power_of_two": bool(round_to_power_of_two),
            "blackman_coeff": float(blackman_coeff),
            "snip_edges": bool(snip_edges),
        },
        "mel_opts": {
            "num_bins": int(num_mel_bins),
            "low_freq": float(low_freq),
            "high_freq": float(high_freq),
        },
        "use_energy": False,
        "energy_floor": float(energy_floor),
        "use_log_fbank": True,
        "use_power": True,
    }
