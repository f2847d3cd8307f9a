"""Synthetic speech corpora from pip-installed speech engines: data for tests, demos and quickstarts, no downloads.

* :func:`synthesize` speaks a text with a :class:`Voice` on its engine
  (:mod:`~speechkit.data.synth.engines`: espeak-ng through ctypes from the ``espeakng-loader``
  wheel, SVOX Pico from ``ttspico``); :func:`sample_speakers` draws many distinct voices for a
  seed, from one engine or a mix.
* :mod:`~speechkit.data.synth.effects`: noise, reverberation and level, numpy only.
* :func:`synth_speech_commands` and :func:`synth_librispeech` write whole corpora in the
  layouts of Google Speech Commands and LibriSpeech (``speechkit synth ...`` on the command
  line), reproducible byte for byte from a seed.
* :mod:`~speechkit.data.synth.text`: transcript normalisation, the command grammar and the
  sentence sources.

A module that writes a corpus layout declares its ``speechkit synth <layout>`` sub-command as a
module-level ``SYNTH =`` :class:`speechkit.plugins.Subcommand` (``OUT``, ``--seed`` and ``--jobs``
are common to all); the CLI finds it.
"""

from speechkit.data.synth.engines import ENGINES, set_synth_cache, synthesize
from speechkit.data.synth.espeak import get_engine
from speechkit.data.synth.librispeech import LIBRISPEECH_SUBSETS, synth_librispeech
from speechkit.data.synth.speech_commands import (
    ALL_WORDS,
    AUXILIARY_WORDS,
    DEFAULT_COMMANDS,
    keyword_folder,
    synth_speech_commands,
)
from speechkit.data.synth.text import CommandGrammar, get_text_source, normalize_text
from speechkit.data.synth.voices import Voice, sample_speakers

__all__ = [
    "ENGINES",
    "set_synth_cache",
    "ALL_WORDS",
    "AUXILIARY_WORDS",
    "DEFAULT_COMMANDS",
    "LIBRISPEECH_SUBSETS",
    "CommandGrammar",
    "Voice",
    "get_engine",
    "get_text_source",
    "keyword_folder",
    "normalize_text",
    "sample_speakers",
    "synth_librispeech",
    "synth_speech_commands",
    "synthesize",
]
