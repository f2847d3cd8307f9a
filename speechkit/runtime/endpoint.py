"""Endpoint detection for streaming ASR: when is an utterance over (no torch, no numpy needed).

The rules are sherpa-onnx's (``sherpa-onnx/csrc/endpoint.h``, after Kaldi's
``online-endpoint.h``). A decoded frame is *silence* when the model's most likely unit there is
the CTC blank; the recognizer feeds each decoded chunk's frames to :class:`EndpointDetector`,
which tracks, since the start of the utterance,

* ``utterance_s``: decoded time,
* ``trailing_silence_s``: time since the last non-silent frame (all of it if none),
* ``contains_speech``: whether any frame was non-silent.

An endpoint is reached when any rule holds. A rule holds when ``trailing_silence_s >=
min_trailing_silence_s`` and ``utterance_s >= min_utterance_length_s``, and, if
``must_contain_speech``, the utterance had speech. The defaults, sherpa-onnx's:

======  ====================  ======================  ========================  =====================
rule    must_contain_speech   min_trailing_silence_s  min_utterance_length_s    meaning
======  ====================  ======================  ========================  =====================
1       False                 2.4                     0                         long silence, no text
2       True                  1.2                     0                         pause after speech
3       False                 0                       20                        utterance too long
======  ====================  ======================  ========================  =====================

Example:
    >>> detector = EndpointDetector(EndpointConfig(), frame_shift_s=0.04)
    >>> detector.accept([False] * 25 + [True] * 29)   # 1 s of speech, 1.16 s of silence
    >>> detector.detected()
    >>> detector.accept([True])                        # 1.2 s of trailing silence
    >>> detector.detected()
    'trailing silence after speech'
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class EndpointRule:
    """One endpoint rule (sherpa-onnx ``EndpointRule``).

    Attributes:
        must_contain_speech: the rule needs at least one non-silent frame in the utterance
            (sherpa-onnx ``must_contain_nonsilence``).
        min_trailing_silence_s: seconds of silence at the end of the utterance.
        min_utterance_length_s: seconds decoded since the utterance started.
        name: what the rule means, reported by :meth:`EndpointDetector.detected`.
    """

    must_contain_speech: bool
    min_trailing_silence_s: float
    min_utterance_length_s: float
    name: str = ""

    def holds(self, trailing_silence_s: float, utterance_s: float, contains_speech: bool) -> bool:
        """Whether the rule fires for this state of the utterance."""
        if self.must_contain_speech and not contains_speech:
            return False
        # A small epsilon so that 30 frames of 40 ms count as 1.2 s despite float rounding.
        eps = 1e-6
        return (
            trailing_silence_s + eps >= self.min_trailing_silence_s
            and utterance_s + eps >= self.min_utterance_length_s
        )


@dataclass(frozen=True)
class EndpointConfig:
    """The three rules; set a rule to ``None`` to disable it.

    Attributes:
        rule1: silence with no speech (default 2.4 s): resets the stream so a long silence
            does not build up an endless empty utterance.
        rule2: trailing silence after speech (default 1.2 s): the usual end of a sentence.
        rule3: maximum utterance length (default 20 s), whatever was decoded.
    """

    rule1: EndpointRule | None = field(
        default_factory=lambda: EndpointRule(False, 2.4, 0.0, "silence without speech"))
    rule2: EndpointRule | None = field(
        default_factory=lambda: EndpointRule(True, 1.2, 0.0, "trailing silence after speech"))
    rule3: EndpointRule | None = field(
        default_factory=lambda: EndpointRule(False, 0.0, 20.0, "maximum utterance length"))

    @classmethod
    def from_seconds(
        cls, trailing_silence_s: float = 1.2, no_speech_silence_s: float = 2.4, max_utterance_s: float = 20.0
    ) -> EndpointConfig:
        """The default rules with other times; a time ``<= 0`` disables its rule."""
        return cls(
            EndpointRule(False, no_speech_silence_s, 0.0, "silence without speech") if no_speech_silence_s > 0 else None,
            EndpointRule(True, trailing_silence_s, 0.0, "trailing silence after speech") if trailing_silence_s > 0 else None,
            EndpointRule(False, 0.0, max_utterance_s, "maximum utterance length") if max_utterance_s > 0 else None,
        )

    def rules(self) -> list[EndpointRule]:
        return [r for r in (self.rule1, self.rule2, self.rule3) if r is not None]


class EndpointDetector:
    """Counts decoded frames of the current utterance and applies :class:`EndpointConfig`.

    Args:
        config: the rules.
        frame_shift_s: seconds per decoded frame (0.04 for 10 ms features subsampled by 4).
    """

    def __init__(self, config: EndpointConfig, frame_shift_s: float) -> None:
        if frame_shift_s <= 0:
            raise ValueError(f"frame_shift_s must be positive, got {frame_shift_s}")
        self.config = config
        self.frame_shift_s = frame_shift_s
        self.reset()

    def reset(self) -> None:
        """Start a new utterance."""
        self.num_frames = 0
        self.trailing_silence_frames = 0
        self.contains_speech = False

    def accept(self, silence: Iterable[bool]) -> None:
        """Add decoded frames, ``True`` where a frame is silence (blank), in time order."""
        for is_silence in silence:
            self.num_frames += 1
            if is_silence:
                self.trailing_silence_frames += 1
            else:
                self.trailing_silence_frames = 0
                self.contains_speech = True

    @property
    def utterance_s(self) -> float:
        return self.num_frames * self.frame_shift_s

    @property
    def trailing_silence_s(self) -> float:
        return self.trailing_silence_frames * self.frame_shift_s

    def detected(self) -> str | None:
        """The name of the first rule that holds now, or ``None`` (no endpoint yet)."""
        for rule in self.config.rules():
            if rule.holds(self.trailing_silence_s, self.utterance_s, self.contains_speech):
                return rule.name or "endpoint"
        return None
