"""Text for synthetic corpora: normalisation, a command grammar, and sentence sources.

* Transcripts are written by :func:`speechkit.text.normalize_text`, the one normalisation
  used everywhere (LibriSpeech style: upper-case letters, apostrophes, numbers as words).
* :class:`CommandGrammar` expands a small template language (``speechkit/resources/
  commands_grammar.txt``) into many distinct spoken commands.
* :func:`get_text_source` returns a sampler for ``sentences`` (the package's sentence list),
  ``commands`` (the grammar) or ``general`` (word sequences from wordfreq's 5000 most common
  English words, mixed with the sentences).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from importlib import resources

import numpy as np

from speechkit.errors import SpeechkitError
from speechkit.text.normalize import integer_to_words, normalize_text

TEXT_SOURCES: tuple[str, ...] = ("sentences", "commands", "general")

def number_to_words(n: int) -> str:
    """``115`` -> ``"one hundred fifteen"``: lower case, as espeak-ng should read it."""
    return integer_to_words(n).lower()


# -- command grammar ---------------------------------------------------------------------------
# A node is one of: ("word", str) | ("seq", [nodes]) | ("alt", [nodes]) | ("opt", node)
#                 | ("ref", slot name) | ("range", low, high)
_TOKEN = re.compile(
    r"\$[A-Za-z_][A-Za-z_0-9]*|@range\(\s*\d+\s*,\s*\d+\s*\)|[()\[\]|]|[^\s()\[\]|$@]+"
)


class CommandGrammar:
    """Templates with slots that expand into spoken commands.

    The format, one definition or template per line (``#`` starts a comment)::

        $device = lights | lamp | (ceiling | floor) fan      # a slot: alternatives
        $minutes = @range(1, 59)                             # numbers 1..59 as words
        turn (on | off) the $device [please]                 # a template

    ``(a | b)`` chooses, ``[x]`` is optional, ``$name`` refers to a slot (slots may use slots).
    Numbers in templates are written as words by :func:`normalize_text` afterwards.
    """

    def __init__(self, text: str, source: str = "<grammar>") -> None:
        self.source = source
        self.slots: dict[str, tuple] = {}
        self.templates: list[tuple] = []
        for line_no, raw in enumerate(text.splitlines(), 1):
            line = raw.split("#", 1)[0].strip()
            if not line:
                continue
            where = f"{source}:{line_no}"
            match = re.fullmatch(r"\$([A-Za-z_][A-Za-z_0-9]*)\s*=\s*(.+)", line)
            if match:
                self.slots[match.group(1)] = _parse(match.group(2), where)
            else:
                self.templates.append(_parse(line, where))
        if not self.templates:
            raise SpeechkitError(f"{source}: grammar has no templates")
        for name in sorted(self._references()):
            if name not in self.slots:
                raise SpeechkitError(f"{source}: slot ${name} is used but never defined")

    @classmethod
    def from_resource(cls) -> CommandGrammar:
        """The grammar shipped with speechkit (``resources/commands_grammar.txt``)."""
        return _packaged_grammar()

    def count(self) -> int:
        """Number of utterances the grammar can produce (counting repeats from overlaps)."""
        return sum(self._count(t) for t in self.templates)

    def sample(self, rng: np.random.Generator) -> str:
        """A random command (raw text): a template chosen uniformly, then its choices."""
        template = self.templates[int(rng.integers(len(self.templates)))]
        return " ".join(self._sample(template, rng).split())

    def expand(self, limit: int | None = None) -> Iterator[str]:
        """All commands in template order (raw text); stops after ``limit``."""
        produced = 0
        for template in self.templates:
            for words in self._expand(template):
                yield " ".join(words)
                produced += 1
                if limit is not None and produced >= limit:
                    return

    def vocabulary(self) -> set[str]:
        """The distinct words the grammar can produce (after normalisation)."""
        words: set[str] = set()
        stack = list(self.templates) + list(self.slots.values())
        while stack:
            node = stack.pop()
            kind = node[0]
            if kind == "word":
                words.update(normalize_text(node[1]).split())
            elif kind in ("seq", "alt"):
                stack.extend(node[1])
            elif kind == "opt":
                stack.append(node[1])
            elif kind == "range":
                for n in range(node[1], node[2] + 1):
                    words.update(number_to_words(n).upper().split())
        return words

    # -- internals
    def _references(self) -> set[str]:
        names: set[str] = set()
        stack = list(self.templates) + list(self.slots.values())
        while stack:
            node = stack.pop()
            if node[0] == "ref":
                names.add(node[1])
            elif node[0] in ("seq", "alt"):
                stack.extend(node[1])
            elif node[0] == "opt":
                stack.append(node[1])
        return names

    def _count(self, node, depth: int = 0) -> int:
        if depth > 50:
            raise SpeechkitError(f"{self.source}: slots refer to each other in a cycle")
        kind = node[0]
        if kind == "word":
            return 1
        if kind == "seq":
            return int(np.prod([self._count(n, depth + 1) for n in node[1]], dtype=object))
        if kind == "alt":
            return sum(self._count(n, depth + 1) for n in node[1])
        if kind == "opt":
            return 1 + self._count(node[1], depth + 1)
        if kind == "ref":
            return self._count(self.slots[node[1]], depth + 1)
        return node[2] - node[1] + 1  # range

    def _sample(self, node, rng: np.random.Generator) -> str:
        kind = node[0]
        if kind == "word":
            return node[1]
        if kind == "seq":
            return " ".join(self._sample(n, rng) for n in node[1])
        if kind == "alt":
            return self._sample(node[1][int(rng.integers(len(node[1])))], rng)
        if kind == "opt":
            return self._sample(node[1], rng) if rng.random() < 0.5 else ""
        if kind == "ref":
            return self._sample(self.slots[node[1]], rng)
        return number_to_words(int(rng.integers(node[1], node[2] + 1)))

    def _expand(self, node) -> Iterator[list[str]]:
        kind = node[0]
        if kind == "word":
            yield [node[1]]
        elif kind == "seq":
            yield from self._expand_seq(node[1])
        elif kind == "alt":
            for child in node[1]:
                yield from self._expand(child)
        elif kind == "opt":
            yield []
            yield from self._expand(node[1])
        elif kind == "ref":
            yield from self._expand(self.slots[node[1]])
        else:
            for n in range(node[1], node[2] + 1):
                yield [number_to_words(n)]

    def _expand_seq(self, nodes: list) -> Iterator[list[str]]:
        if not nodes:
            yield []
            return
        for head in self._expand(nodes[0]):
            for tail in self._expand_seq(nodes[1:]):
                yield head + tail


def _parse(text: str, where: str):
    tokens = _TOKEN.findall(text)
    node, pos = _parse_alt(tokens, 0, where)
    if pos != len(tokens):
        raise SpeechkitError(f"{where}: unexpected {tokens[pos]!r} in grammar line")
    return node


def _parse_alt(tokens: list[str], pos: int, where: str):
    options = []
    seq, pos = _parse_seq(tokens, pos, where)
    options.append(seq)
    while pos < len(tokens) and tokens[pos] == "|":
        seq, pos = _parse_seq(tokens, pos + 1, where)
        options.append(seq)
    return (options[0] if len(options) == 1 else ("alt", options)), pos


def _parse_seq(tokens: list[str], pos: int, where: str):
    items = []
    while pos < len(tokens) and tokens[pos] not in ("|", ")", "]"):
        token = tokens[pos]
        if token in ("(", "["):
            inner, pos = _parse_alt(tokens, pos + 1, where)
            closing = ")" if token == "(" else "]"
            if pos >= len(tokens) or tokens[pos] != closing:
                raise SpeechkitError(f"{where}: missing {closing!r} in grammar line")
            items.append(inner if token == "(" else ("opt", inner))
        elif token.startswith("$"):
            items.append(("ref", token[1:]))
        elif token.startswith("@range"):
            low, high = (int(v) for v in re.findall(r"\d+", token))
            if high < low:
                raise SpeechkitError(f"{where}: {token} is empty")
            items.append(("range", low, high))
        else:
            items.append(("word", token))
        pos += 1
    if not items:
        raise SpeechkitError(f"{where}: empty alternative in grammar line")
    return (items[0] if len(items) == 1 else ("seq", items)), pos


@functools.lru_cache(maxsize=1)
def _packaged_grammar() -> CommandGrammar:
    path = resources.files("speechkit") / "resources" / "commands_grammar.txt"
    return CommandGrammar(path.read_text(encoding="utf-8"), source="commands_grammar.txt")


# -- sentence sources ------------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def load_sentences() -> tuple[str, ...]:
    """The package's English sentences (``resources/sentences.txt``), raw text, one each."""
    path = resources.files("speechkit") / "resources" / "sentences.txt"
    lines = path.read_text(encoding="utf-8").splitlines()
    return tuple(s.strip() for s in lines if s.strip() and not s.lstrip().startswith("#"))


#: Words left out of the wordfreq vocabulary: profanity and slurs that rank in the top 5000,
#: abbreviations that espeak-ng would spell out letter by letter (so the audio would not match
#: the transcript), and contraction fragments ("don", "ll").
_BLOCKLIST = frozenset(
    [
        "fuck",
        "fucking",
        "fucked",
        "fucker",
        "shit",
        "shitty",
        "bitch",
        "bitches",
        "ass",
        "asshole",
        "damn",
        "dick",
        "cock",
        "pussy",
        "cunt",
        "nigga",
        "nigger",
        "fag",
        "faggot",
        "retard",
        "retarded",
        "slut",
        "whore",
        "porn",
        "sex",
        "sexy",
        "rape",
        "bastard",
        "piss",
        "tits",
        "boobs",
        "penis",
        "vagina",
        "cum",
        "dildo",
        "crap",
        "suck",
        "butt",
        "nazi",
        "isis",
        "lmao",
        "lol",
        "haha",
        "wtf",
        "usa",
        "etc",
        "inc",
        "iii",
        "dna",
        "ceo",
        "fbi",
        "nba",
        "feb",
        "jan",
        "nov",
        "oct",
        "aug",
        "sept",
        "dec",
        "sec",
        "vol",
        "min",
        "abc",
        "gop",
        "tho",
        "con",
        "com",
        "del",
        "des",
        "los",
        "las",
        "rep",
        "corp",
        "dont",
        "don",
    ]
)
#: The two-letter words kept (most two-letter strings in wordfreq are abbreviations).
_TWO_LETTER_WORDS = frozenset(
    [
        "am",
        "an",
        "as",
        "at",
        "be",
        "by",
        "do",
        "go",
        "he",
        "hi",
        "if",
        "in",
        "is",
        "it",
        "me",
        "my",
        "no",
        "of",
        "oh",
        "ok",
        "on",
        "or",
        "so",
        "to",
        "up",
        "us",
        "we",
    ]
)


def _is_speakable_word(word: str) -> bool:
    if not re.fullmatch(r"[a-z]+('[a-z]+)?", word) or word in _BLOCKLIST:
        return False
    if len(word) == 1:
        return word in ("a", "i")
    if len(word) == 2:
        return word in _TWO_LETTER_WORDS
    return re.search(r"[aeiouy]", word) is not None


@functools.lru_cache(maxsize=1)
def general_vocabulary(size: int = 5000) -> tuple[tuple[str, ...], np.ndarray]:
    """wordfreq's most common English words that read as words, with sampling weights.

    Returns:
        ``(words, probabilities)``; probabilities fall with rank as ``1 / (rank + 20) ** 0.8``
        so that sentences are not all "the of and" but common words stay common.
    """
    import wordfreq

    words = [w for w in wordfreq.top_n_list("en", size) if _is_speakable_word(w)]
    ranks = np.arange(len(words), dtype=np.float64)
    weights = 1.0 / (ranks + 20.0) ** 0.8
    return tuple(words), weights / weights.sum()


class TextSource:
    """Draws normalised (LibriSpeech-style) sentences from one of :data:`TEXT_SOURCES`."""

    def __init__(self, name: str) -> None:
        if name not in TEXT_SOURCES:
            raise SpeechkitError(f"unknown text source {name!r}; expected one of {TEXT_SOURCES}")
        self.name = name
        self._sentences = load_sentences()
        self._grammar = CommandGrammar.from_resource() if name == "commands" else None
        self._vocab = general_vocabulary() if name == "general" else None

    def sample(self, rng: np.random.Generator) -> str:
        """One utterance's text, normalised (``A-Z``, ``'`` and spaces), never empty."""
        if self.name == "commands":
            raw = self._grammar.sample(rng)
        elif self.name == "general" and rng.random() < 0.5:
            words, probs = self._vocab
            length = int(rng.integers(5, 16))
            raw = " ".join(words[i] for i in rng.choice(len(words), size=length, p=probs))
        else:
            raw = self._sentences[int(rng.integers(len(self._sentences)))]
        text = normalize_text(raw)
        return text if text else "HELLO"


def get_text_source(name: str) -> TextSource:
    """A :class:`TextSource` for ``sentences``, ``commands`` or ``general``."""
    return TextSource(name)
