"""kaldi-native-fbank options from the JSON an artifact stores (torch-free, numpy-free).

An ASR artifact's ``feature`` metadata holds the Kaldi fbank options in
``knf.FbankOptions.as_dict()`` layout (written by
:func:`speechkit.frontends.kaldi_options.fbank_options_dict` at export). The runtime turns it
back into ``knf.FbankOptions`` here, the one place that does, and computes features with
``knf.OnlineFbank``. ``kaldi_native_fbank`` is imported only when called.
"""

from __future__ import annotations

from typing import Any


def knf_options_from_dict(options: dict[str, Any]) -> Any:
    """Build ``kaldi_native_fbank.FbankOptions`` from a dict in ``FbankOptions.as_dict()`` layout.

    Every key present is set on the options object (nested dicts on ``frame_opts`` /
    ``mel_opts``); absent keys keep kaldi-native-fbank's defaults. Setting attributes one by one,
    rather than ``FbankOptions.from_dict``, works with partial dicts and older releases.

    Args:
        options: e.g. ``json.loads(metadata["feature"])``.

    Returns:
        A ``knf.FbankOptions`` ready for ``knf.OnlineFbank(opts)``.

    Raises:
        ValueError: a key that ``knf.FbankOptions`` does not have (a typo or a newer layout),
            named in the message.

    Example:
        >>> opts = knf_options_from_dict({"frame_opts": {"samp_freq": 8000.0, "snip_edges": False},
        ...                               "mel_opts": {"num_bins": 40}})
        >>> opts.mel_opts.num_bins, opts.frame_opts.snip_edges, opts.frame_opts.samp_freq
        (40, False, 8000.0)
        >>> knf_options_from_dict({"frame_opts": {"samp_frq": 8000}})
        Traceback (most recent call last):
        ...
        ValueError: unknown kaldi-native-fbank option 'frame_opts.samp_frq'
    """
    import kaldi_native_fbank as knf  # lazy: the runtime may not need it at import time

    opts = knf.FbankOptions()
    for key, value in options.items():
        if key in ("frame_opts", "mel_opts"):
            if not isinstance(value, dict):
                raise ValueError(f"fbank option {key!r} must be a dict, got {value!r}")
            sub = getattr(opts, key)
            for sub_key, sub_value in value.items():
                _set_option(sub, f"{key}.{sub_key}", sub_key, sub_value)
        else:
            _set_option(opts, key, key, value)
    return opts


def _set_option(target: Any, full_name: str, name: str, value: Any) -> None:
    if name.startswith("_") or callable(getattr(target, name, None)) or not hasattr(target, name):
        raise ValueError(f"unknown kaldi-native-fbank option {full_name!r}")
    setattr(target, name, value)
