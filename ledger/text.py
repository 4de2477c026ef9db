"""What a one-line text typed by a person (a name, a reason) may hold."""

from __future__ import annotations

import unicodedata

HIDDEN = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
"""Control, format (zero-width, direction, tag, soft hyphen), surrogate, private-use and
unassigned characters, and the line and paragraph separators: never in a one-line text."""

_BLANK = frozenset({"Zs", "Mn", "Me"})
_FILLERS = frozenset("\u115f\u1160\u3164\uffa0\u2800")  # letters and symbols drawn as blanks


def one_line_problem(text: str) -> str | None:
    """Why `text` is not one printable, non-blank line, or None when it is."""
    if any(unicodedata.category(ch) in HIDDEN for ch in text):
        return (
            "no control, invisible, direction, line-separator, private-use or unassigned "
            "characters (one printable line)"
        )
    if all(ch.isspace() or ch in _FILLERS or unicodedata.category(ch) in _BLANK for ch in text):
        return "must not be blank"
    return None
