"""What a person may type where a name, a reason or a whole number is asked for.

The rule depends on no Unicode version: an emoji newer than the running Python's tables,
a private-use character (rare CJK) and the joiners and tags that emoji, flags and many
scripts need are all accepted. Refused: control characters, the line and paragraph
separators, surrogates, and the invisible characters that can disguise a text (zero-width
space, word joiner and the other invisible operators, the byte order mark, the soft
hyphen and the grapheme joiner) or reorder it on screen (every explicit direction mark,
embedding, override and isolate).
"""

from __future__ import annotations

import unicodedata

MAX_WHOLE = 2**63 - 1
"""SQLite's largest integer: no seq, version, count or limit is larger."""

_REFUSED_CATEGORIES = frozenset({"Cc", "Cs", "Zl", "Zp"})
_DISGUISING = frozenset(
    "\u061c\u200b\u200e\u200f\ufeff"
    + "\u00ad\u034f\u17b4\u17b5\u180e"  # soft hyphen, grapheme joiner, invisible vowels
    + "".join(map(chr, range(0x202A, 0x202F)))  # embeddings and overrides
    + "".join(map(chr, range(0x2060, 0x2070)))  # word joiner, invisible operators, isolates
)
_BLANK = frozenset({"Zs", "Mn", "Me", "Cf"})
_FILLERS = frozenset("\u115f\u1160\u3164\uffa0\u2800")  # letters and symbols drawn as blanks


def one_line_problem(text: str) -> str | None:
    """Why `text` is not one printable, non-blank line, naming the first character at
    fault; None when it is."""
    for ch in text:
        if unicodedata.category(ch) in _REFUSED_CATEGORIES or ch in _DISGUISING:
            # a lone surrogate is what Python makes of a byte that is not UTF-8 (a file
            # name, an environment variable): no JSON body can carry one
            fallback = "not UTF-8 text" if "\ud800" <= ch <= "\udfff" else "a control character"
            name = unicodedata.name(ch, fallback)
            return (
                f"U+{ord(ch):04X} ({name}) is not allowed: one printable line, without "
                "control, invisible or direction characters"
            )
    if is_blank(text):
        return BLANK
    return None


BLANK = "must not be blank (spaces and invisible characters only)"


def is_blank(text: str) -> bool:
    """Whether `text` shows nothing: spaces, marks and invisible characters only."""
    return all(ch.isspace() or ch in _FILLERS or unicodedata.category(ch) in _BLANK for ch in text)


def whole_number(text: str) -> int | None:
    """ASCII digits as a whole number up to :data:`MAX_WHOLE`, or None (`int()` would also
    take other scripts' digits, `_`, spaces and a sign); thousands of digits are refused
    before `int()` sees them."""
    if not text.isascii() or not text.isdigit():
        return None
    digits = text.lstrip("0") or "0"
    if len(digits) > len(str(MAX_WHOLE)) or int(digits) > MAX_WHOLE:
        return None
    return int(digits)


PLAIN_WHOLE = f"digits 0-9, no leading 0, at most {MAX_WHOLE}"
"""What :func:`plain_whole_number` takes, in words."""


def plain_whole_number(text: str) -> int | None:
    """:func:`whole_number` without leading zeros, as a number is written in a query or a
    header the API reads (`007` is refused: readers differ on what it means)."""
    return None if text.startswith("0") and text != "0" else whole_number(text)


def counted(count: int, noun: str) -> str:
    """`count` and `noun`, plural unless it is one: "1 event", "0 events", "27 events"."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"
