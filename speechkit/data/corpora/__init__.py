"""Corpus recipes: raw corpus folder -> lhotse cut manifests (see ``speechkit.data.manifests``).

Each recipe checks the folder layout first and raises :class:`speechkit.errors.CorpusError`
with the expected layout when it does not match, and validates audio headers so a corrupt file
is reported (:class:`speechkit.errors.AudioError`, naming it) before any training starts.

Each module also declares its ``speechkit prepare <corpus>`` sub-command as a module-level
``PREPARE =`` :class:`speechkit.plugins.Subcommand` (its own options and a runner; ``CORPUS_DIR
OUT_DIR --num-jobs`` are common to all). A new corpus is a new module here: the CLI finds it.
"""

from speechkit.data.corpora.librispeech import prepare_librispeech
from speechkit.data.corpora.speech_commands import prepare_speech_commands
from speechkit.data.corpora.tau2020 import prepare_tau2020_mobile

__all__ = ["prepare_librispeech", "prepare_speech_commands", "prepare_tau2020_mobile"]
