"""User-facing errors.

Anything a user can cause (bad audio, a malformed corpus folder, a checkpoint of the wrong
model) raises a subclass of :class:`SpeechkitError` with a message that says what was wrong
and what was expected. The CLI prints such errors as one line and exits with status 2;
everything else is a bug and keeps its traceback.
"""


class SpeechkitError(Exception):
    """An error caused by the user's input; printed by the CLI as one line."""


class AudioError(SpeechkitError):
    """An audio file that cannot be used (missing, empty, corrupt, NaN, ...)."""


class CorpusError(SpeechkitError):
    """A corpus folder that does not have the expected layout."""


class ModelFileError(SpeechkitError):
    """A checkpoint or ONNX file that is missing, corrupt, or of the wrong model/task."""
