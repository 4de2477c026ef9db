"""Names and reasons: one printable line, whatever the script, and whatever Unicode
version the running Python knows."""

from __future__ import annotations

import pytest

from ledger.errors import InvalidInput
from ledger.keys import checked_actor
from ledger.text import one_line_problem

ACCEPTED = [
    "analyst",
    "Zoë Ünal",
    "\u5206\u6790\u5458",  # CJK
    "\u0645\u0647\u062f\u06cc\u200c\u0632\u0627\u062f\u0647",  # Persian, with a ZWNJ
    "\U0001f468\u200d\U0001f469\u200d\U0001f467",  # a family: emoji joined by ZWJ
    "\U0001f3f4\U000e0067\U000e0062\U000e0073\U000e0063\U000e0074\U000e007f Ross",  # a flag
    "\U0001face moose",  # an emoji newer than Python 3.11's tables
    "\ue000 rare",  # private use (rare CJK)
    " spaces inside and around ",
]
REFUSED = {
    "a\nb": "U+000A",
    "alice\n": "U+000A",
    "\x1b[31mred": "U+001B",
    "line\u2028break": "U+2028 (LINE SEPARATOR)",
    "a\u200bb": "U+200B (ZERO WIDTH SPACE)",
    "\u202eevil": "U+202E (RIGHT-TO-LEFT OVERRIDE)",
    "\u2066isolate": "U+2066",
    "\u061cmark": "U+061C (ARABIC LETTER MARK)",
    "bom\ufeff": "U+FEFF",
    "   ": "must not be blank",
    "\u3164": "must not be blank",
    "\u200d\u0301": "must not be blank",
    "Zimmer\u00admann": "U+00AD (SOFT HYPHEN)",  # shows as "Zimmermann"
    "a\u034fb": "U+034F",
    "a\u180eb": "U+180E",
}


@pytest.mark.parametrize("text", ACCEPTED)
def test_any_script_emoji_flag_or_joiner_is_accepted(text: str) -> None:
    assert one_line_problem(text) is None
    assert checked_actor(text, "--actor") == text


@pytest.mark.parametrize(("text", "named"), REFUSED.items())
def test_control_invisible_direction_and_blank_text_is_refused_naming_why(
    text: str, named: str
) -> None:
    problem = one_line_problem(text)
    assert problem is not None
    assert named in problem
    with pytest.raises(InvalidInput) as caught:
        checked_actor(text, "--actor")
    assert [e.field for e in caught.value.errors] == ["--actor"]
    assert named in caught.value.errors[0].message


def test_a_name_is_at_most_100_characters() -> None:
    assert checked_actor("x" * 100, "--name") == "x" * 100
    with pytest.raises(InvalidInput, match=r"1\.\.100 characters, not 101"):
        checked_actor("x" * 101, "--name")
    with pytest.raises(InvalidInput, match=r"1\.\.100 characters, not 0"):
        checked_actor("", "--name")
