"""Shared fixtures: tiny synthetic corpora written in the real layouts (espeak-ng voices)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

# Tests run on 2 shared cores: one intra-op thread per process keeps parallel work predictable.
os.environ.setdefault("OMP_NUM_THREADS", "1")
# `speechkit synth` and the quickstarts cache synthesized speech under $XDG_CACHE_HOME/speechkit/synth:
# tests keep theirs in a temporary folder, never in the user's home.
os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="speechkit-test-cache-")
os.environ.pop("SPEECHKIT_SYNTH_CACHE", None)

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def tiny_kws_corpus(tmp_path_factory) -> Path:
    """A synthetic Speech Commands folder: 2 keywords, 3 unknown words, 9 speakers."""
    from speechkit.data.synth.speech_commands import synth_speech_commands

    out = tmp_path_factory.mktemp("kws") / "speech_commands"
    synth_speech_commands(
        out, words=["yes", "no"], unknown_words=["cat", "dog", "tree"], num_speakers=9,
        clips_per_word=2, seed=0, background_seconds=5.0,
    )
    return out


@pytest.fixture(scope="session")
def tiny_kws_manifests(tiny_kws_corpus, tmp_path_factory) -> Path:
    """``tiny_kws_corpus`` prepared with ``--keywords yes,no`` (4 classes)."""
    from speechkit.data.corpora import prepare_speech_commands

    out = tmp_path_factory.mktemp("kws_manifests")
    prepare_speech_commands(tiny_kws_corpus, out, keywords=["yes", "no"], num_jobs=1)
    return out


@pytest.fixture(scope="session")
def separable_kws_manifests(tmp_path_factory) -> Path:
    """A toy KWS set a model must learn: tone "words" 600 Hz apart (200-2600 Hz, 0.5 s,
    ``fakes.make_speech_commands``), keywords ``yes``, ``no`` + 3 unknown words, 6 clips per word
    and split; 4 classes."""
    from fakes import make_speech_commands

    from speechkit.data.corpora import prepare_speech_commands

    corpus = make_speech_commands(tmp_path_factory.mktemp("tones") / "speech_commands",
                                  words=["yes", "no", "cat", "dog", "tree"], seconds=0.5, clips_per_speaker=6,
                                  step_hz=600.0)
    out = tmp_path_factory.mktemp("tone_manifests")
    prepare_speech_commands(corpus, out, keywords=["yes", "no"], num_jobs=1)
    return out


@pytest.fixture(scope="session")
def tau_manifests(tmp_path_factory) -> Path:
    """A tiny TAU Urban Acoustic Scenes 2020 Mobile folder, prepared (10 scene classes)."""
    from fakes import make_tau2020

    from speechkit.data.corpora import prepare_tau2020_mobile

    root = make_tau2020(tmp_path_factory.mktemp("tau") / "TAU-urban-acoustic-scenes-2020-mobile-development")
    out = tmp_path_factory.mktemp("tau_manifests")
    prepare_tau2020_mobile(root, out, num_jobs=1)
    return out
