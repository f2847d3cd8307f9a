"""The one text normalisation of speechkit: what a transcript looks like to every ASR part.

Training targets, the tokenizer's training text, WER references and hypotheses all go through
:func:`normalize_text`, so a model is never scored against text it could not have produced.

The normal form is the LibriSpeech one: upper-case letters ``A-Z``, the apostrophe (only next
to a letter, as in ``DON'T``, ``'TIS``, ``JAMES'``) and single spaces. LibriSpeech transcripts
are already in this form and come through unchanged (the function is idempotent). Other text is
mapped as follows:

* Unicode compatibility forms are folded (NFKC) and accents stripped (``café`` -> ``CAFE``);
  ``ß``, ``æ``, ``œ``, ``ø`` etc. are spelled out; typographic apostrophes become ``'``.
* Numbers are spelled as words: ``42`` -> ``FORTY TWO``, ``1,250`` -> ``ONE THOUSAND TWO
  HUNDRED FIFTY``, ``3.5`` -> ``THREE POINT FIVE``, ``21st`` -> ``TWENTY FIRST``, ``7:30`` ->
  ``SEVEN THIRTY`` (``7:05`` -> ``SEVEN OH FIVE``, ``7:00`` -> ``SEVEN O'CLOCK``). All numbers
  are read as cardinals (``1995`` -> ``ONE THOUSAND NINE HUNDRED NINETY FIVE``, not as a year):
  one predictable rule is better than a guess.
* A few symbols are read out: ``%`` PERCENT, ``&`` AND, ``+`` PLUS, ``=`` EQUALS, ``@`` AT,
  ``$5`` FIVE DOLLARS, ``$2.50`` TWO DOLLARS FIFTY CENTS (likewise ``£``, ``€``).
* Punctuation (Unicode categories ``P*``, e.g. ``.,;:!?"()-#*``) becomes a word break.

Anything else (letters of other scripts, emoji, symbols such as ``~ < > | ^``) has no spelling in this
alphabet, and :func:`normalize_text` raises :class:`~speechkit.errors.SpeechkitError` naming the
utterance and the characters, instead of silently training on a corrupted transcript.
"""

from __future__ import annotations

import re
import unicodedata

from speechkit.errors import SpeechkitError

#: The characters of the normal form, apart from the space.
ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ'"

_ONES = (
    "ZERO ONE TWO THREE FOUR FIVE SIX SEVEN EIGHT NINE TEN ELEVEN TWELVE THIRTEEN FOURTEEN "
    "FIFTEEN SIXTEEN SEVENTEEN EIGHTEEN NINETEEN"
).split()
_TENS = "_ _ TWENTY THIRTY FORTY FIFTY SIXTY SEVENTY EIGHTY NINETY".split()
_SCALES = ((10**12, "TRILLION"), (10**9, "BILLION"), (10**6, "MILLION"), (1000, "THOUSAND"))
_ORDINAL_WORDS = {
    "ONE": "FIRST", "TWO": "SECOND", "THREE": "THIRD", "FIVE": "FIFTH", "EIGHT": "EIGHTH",
    "NINE": "NINTH", "TWELVE": "TWELFTH",
}
_SYMBOL_WORDS = {"%": "PERCENT", "&": "AND", "+": "PLUS", "=": "EQUALS", "@": "AT"}
_CURRENCY_WORDS = {  # symbol: (unit, units, hundredth)
    "$": ("DOLLAR", "DOLLARS", "CENTS"), "£": ("POUND", "POUNDS", "PENCE"), "€": ("EURO", "EUROS", "CENTS"),
}
# Letters that NFKD does not decompose into A-Z + combining marks.
_LETTER_SPELLINGS = {
    "ß": "SS", "Æ": "AE", "Œ": "OE", "Ø": "O", "Đ": "D", "Ð": "D", "Þ": "TH", "Ł": "L", "Ħ": "H",
    "ı": "I",
}
_APOSTROPHES = "\u2019\u2018\u02bc\u0060\u00b4\u2032"
_MAX_NUMBER = 10**15

_NUMBER = r"\d+(?:,\d{3})*(?:\.\d+)?"
_CURRENCY_RE = re.compile(r"([$£€])\s?(" + _NUMBER + ")")
_TIME_RE = re.compile(r"\b(\d{1,2}):(\d{2})\b")
_ORDINAL_RE = re.compile(r"\b(\d+)(ST|ND|RD|TH)\b")
_NUMBER_RE = re.compile(_NUMBER)


def integer_to_words(number: int) -> str:
    """Spell a non-negative integer in upper-case English words (short scale, no "AND").

    Example:
        >>> integer_to_words(1250)
        'ONE THOUSAND TWO HUNDRED FIFTY'
    """
    if number < 0 or number >= _MAX_NUMBER:
        raise ValueError(f"cannot spell {number}: supported range is 0 to {_MAX_NUMBER - 1}")
    if number < 20:
        return _ONES[number]
    if number < 100:
        tens, ones = divmod(number, 10)
        return _TENS[tens] + ("" if ones == 0 else " " + _ONES[ones])
    if number < 1000:
        hundreds, rest = divmod(number, 100)
        return _ONES[hundreds] + " HUNDRED" + ("" if rest == 0 else " " + integer_to_words(rest))
    for scale, name in _SCALES:
        if number >= scale:
            head, rest = divmod(number, scale)
            return integer_to_words(head) + " " + name + ("" if rest == 0 else " " + integer_to_words(rest))
    raise AssertionError("unreachable")


def ordinal_to_words(number: int) -> str:
    """Spell an ordinal: ``21`` -> ``TWENTY FIRST``, ``100`` -> ``ONE HUNDREDTH``."""
    words = integer_to_words(number).split()
    last = words[-1]
    if last in _ORDINAL_WORDS:
        words[-1] = _ORDINAL_WORDS[last]
    elif last.endswith("Y"):
        words[-1] = last[:-1] + "IETH"
    else:
        words[-1] = last + "TH"
    return " ".join(words)


def _number_to_words(text: str) -> str:
    """Spell ``1,250`` or ``3.25`` (digits after the point, and of huge numbers, one by one)."""
    whole, _, fraction = text.replace(",", "").partition(".")
    if int(whole) < _MAX_NUMBER:
        words = integer_to_words(int(whole))
    else:  # a digit string too long to be a quantity (an id, a phone number): digit by digit
        words = " ".join(_ONES[int(d)] for d in whole)
    if fraction:
        words += " POINT " + " ".join(_ONES[int(d)] for d in fraction)
    return words


def _spell_numbers(text: str) -> str:
    """Replace currency amounts, clock times, ordinals and numbers by words (upper-case input)."""

    def currency(match: re.Match) -> str:
        singular, plural, hundredth = _CURRENCY_WORDS[match.group(1)]
        whole, _, fraction = match.group(2).replace(",", "").partition(".")
        if len(fraction) != 2:  # not an amount with cents: read the number as it is
            unit = singular if match.group(2) == "1" else plural
            return f" {_number_to_words(match.group(2))} {unit} "
        words = f"{integer_to_words(int(whole))} {singular if int(whole) == 1 else plural}"
        if int(fraction):
            words += f" {integer_to_words(int(fraction))} {hundredth}"
        return f" {words} "

    def clock(match: re.Match) -> str:
        hours, minutes = int(match.group(1)), int(match.group(2))
        if minutes == 0:
            return f" {integer_to_words(hours)} O'CLOCK "
        if minutes < 10:
            return f" {integer_to_words(hours)} OH {integer_to_words(minutes)} "
        return f" {integer_to_words(hours)} {integer_to_words(minutes)} "

    text = _CURRENCY_RE.sub(currency, text)
    text = _TIME_RE.sub(clock, text)
    text = _ORDINAL_RE.sub(lambda m: f" {ordinal_to_words(int(m.group(1)))} ", text)
    return _NUMBER_RE.sub(lambda m: f" {_number_to_words(m.group(0))} ", text)


def _fold_letters(text: str) -> str:
    """Strip accents and spell letters that have no accent-free form (upper-case input)."""
    text = "".join(_LETTER_SPELLINGS.get(ch, ch) for ch in text)
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


def _map_characters(text: str) -> tuple[str, list[str]]:
    """Map every character to the alphabet, a space, or a spoken symbol; collect the rest."""
    out, unmappable = [], []
    for ch in text:
        if "A" <= ch <= "Z" or ch == "'":
            out.append(ch)
        elif ch in _SYMBOL_WORDS:
            out.append(f" {_SYMBOL_WORDS[ch]} ")
        elif ch.isspace() or unicodedata.category(ch).startswith(("P", "C")):
            # Punctuation and control/format characters (e.g. zero-width space) break words.
            out.append(" ")
        else:
            unmappable.append(ch)
    return "".join(out), unmappable


def _clean_apostrophes(text: str) -> str:
    """Keep an apostrophe only next to a letter: ``'TIS``, ``DON'T``, ``JAMES'`` but not `` ' ``."""
    words = []
    for word in text.split():
        word = re.sub(r"'{2,}", "'", word)
        if word.strip("'"):
            words.append(word)
    return " ".join(words)


def normalize_text(text: str, utterance_id: str | None = None) -> str:
    """Bring a transcript to the normal form (see the module docstring).

    Args:
        text: a transcript in any case, with punctuation, digits, accents.
        utterance_id: named in the error message when the text cannot be mapped
            (a cut or file id).

    Returns:
        The normalised text: ``A-Z``, ``'`` and single spaces, no leading/trailing space
        (empty if the text had no words).

    Raises:
        SpeechkitError: the text holds characters with no spelling in the alphabet.

    Example:
        >>> normalize_text("Set a timer for 5 minutes, please!")
        'SET A TIMER FOR FIVE MINUTES PLEASE'
    """
    upper = unicodedata.normalize("NFKC", text)
    for ch in _APOSTROPHES:
        upper = upper.replace(ch, "'")
    upper = _fold_letters(upper.upper())
    mapped, unmappable = _map_characters(_spell_numbers(upper))
    if unmappable:
        where = f"the transcript of {utterance_id!r}" if utterance_id else "a transcript"
        chars = ", ".join(f"{ch!r} (U+{ord(ch):04X})" for ch in dict.fromkeys(unmappable))
        raise SpeechkitError(
            f"cannot normalise {where} ({text[:80]!r}): {chars}: no spelling in the "
            f"letters A-Z and the apostrophe; fix the transcript or drop the utterance"
        )
    return _clean_apostrophes(mapped)
