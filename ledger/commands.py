"""Write-side commands: what a caller asks the ledger to do, validated at the edge.

The CLI's import lines and the HTTP bodies are these same structs, so both refuse bad
input the same way. Single-field rules are msgspec constraints (also published in the
OpenAPI schema); rules that tie fields together are in each struct's `problems()`.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from ledger.codec import MAX_SAFE_INT
from ledger.errors import FieldError
from ledger.events import AssertionRecorded, Mode, Qualifier, Rank, Reliability, StatusValue
from ledger.text import BLANK, is_blank
from ledger.times import TIME_PATTERN, TimeFormatError, nanos_past, parse_time

NO_NUL = r"^[^\u0000]*$"

# msgspec matches a pattern with Python's `re.search`, where `$` also matches before a
# final newline, so "gb-mod\n" would pass `^[a-z0-9._-]+$`; END refuses that newline (and
# reads the same in the JSON Schema's ECMA-262 regexes, where `$` is only the end).
END = r"$(?!\n)"
SOURCE_ID = r"^[a-z0-9][a-z0-9._-]{0,63}" + END
SUBJECT = r"^[a-z0-9][a-z0-9.-]{0,127}" + END
PROPERTY = r"^[a-z0-9][a-z0-9._-]{0,127}" + END
ASSERTION_ID = r"^[a-z0-9][a-z0-9._-]{0,127}" + END


def published(pattern: str) -> str:
    """`pattern` as the JSON Schema shows it: in ECMA-262 `$` is already only the end, and
    validators built on RE2 (Go, Rust) cannot compile a lookahead."""
    return pattern.removesuffix(END) + "$"


def checked(pattern: str, description: str | None = None, max_length: int | None = None) -> Meta:
    """A string's pattern, checked as written and published as :func:`published` says."""
    schema = {"extra": {"pattern": published(pattern)}}
    return Meta(
        pattern=pattern, description=description, max_length=max_length, extra_json_schema=schema
    )


SourceId = Annotated[str, checked(SOURCE_ID, "source id, a slug")]
Subject = Annotated[str, checked(SUBJECT, "subject slug")]
Property = Annotated[str, checked(PROPERTY, "property slug with dots")]
AssertionId = Annotated[str, checked(ASSERTION_ID, "assertion id")]
# A name that refers to one the ledger may already hold: before END, the patterns let one
# trailing newline through, so a ledger may hold "gb-mod\n", and such a name must stay
# reachable (to read, cite, retract, rank or supersede). New names take the strict rule.
REF_END = r"\n?" + END
SOURCE_ID_REF = SOURCE_ID.removesuffix(END) + REF_END
SUBJECT_REF = SUBJECT.removesuffix(END) + REF_END
PROPERTY_REF = PROPERTY.removesuffix(END) + REF_END
ASSERTION_ID_REF = ASSERTION_ID.removesuffix(END) + REF_END
KIND = r"^[a-z][a-z0-9_-]{0,63}" + END
COUNTRY = r"^[A-Z]{2}" + END
URL = r"^https?://[^\s\u0000]+" + END
# A name a person reads in a list (a source's, a publisher's): not blank, and without
# control characters or the bidirectional overrides and isolates that make text display
# as something other than what it holds (U+202E turns "abc" around on screen).
_HIDDEN = r"\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069"
LABEL = rf"^[^{_HIDDEN}]*[^\s{_HIDDEN}][^{_HIDDEN}]*" + END
# a reason may run over lines, but says something
REASON = r"^[^\u0000]*[^\s\u0000][^\u0000]*" + END
SHA256 = r"^[0-9a-f]{64}" + END
_SLUG_CHARS = "a-z, 0-9, '.', '_' and '-'"
_FIRST = "starting with a letter or digit"
_SOURCE_ID_WORDS = f"1 to 64 of {_SLUG_CHARS}, {_FIRST}"
_SUBJECT_WORDS = f"1 to 128 of a-z, 0-9, '.' and '-', {_FIRST}"
_PROPERTY_WORDS = f"1 to 128 of {_SLUG_CHARS}, {_FIRST}"  # an assertion id's rule too
SLUG_WORDS = {
    SOURCE_ID: _SOURCE_ID_WORDS,
    SOURCE_ID_REF: _SOURCE_ID_WORDS,
    SUBJECT: _SUBJECT_WORDS,
    SUBJECT_REF: _SUBJECT_WORDS,
    PROPERTY: _PROPERTY_WORDS,
    PROPERTY_REF: _PROPERTY_WORDS,
    KIND: "1 to 64 of a-z, 0-9, '_' and '-', starting with a letter",
    COUNTRY: "two capital letters (ISO 3166-1 alpha-2, e.g. GB)",
    URL: "an http:// or https:// address without spaces",
    SHA256: "64 hexadecimal digits, lower case",
    NO_NUL: "text without NUL characters (U+0000)",
    LABEL: "a name that is not blank, without control characters (U+0000-U+001F, "
    "U+007F-U+009F) or bidirectional overrides (U+202A-U+202E, U+2066-U+2069)",
    REASON: "text that is not blank, without NUL characters (U+0000)",
}
"""What a pattern asks, in words, for messages (a regex is no answer to a person). Keyed
by the pattern, which the field's name in the message completes: a property and an
assertion id share theirs."""


def in_words(message: str) -> str:
    """msgspec's message for a name that breaks its pattern, with the rule in words."""
    for pattern, words in SLUG_WORDS.items():
        quoted = f"Expected `str` matching regex {pattern!r}"
        if message.startswith(quoted):
            return f"expected {words}{message[len(quoted) :]}"
    return message


SourceIdRef = Annotated[str, checked(SOURCE_ID_REF, "a registered source's id")]
SubjectRef = Annotated[str, checked(SUBJECT_REF, "subject slug")]
PropertyRef = Annotated[str, checked(PROPERTY_REF, "property slug with dots")]
AssertionIdRef = Annotated[str, checked(ASSERTION_ID_REF, "an assertion's id")]
Count = Annotated[int, Meta(ge=0, le=MAX_SAFE_INT)]
Time = Annotated[
    str,
    Meta(
        pattern=TIME_PATTERN,
        description="YYYY, YYYY-MM, YYYY-MM-DD or an RFC 3339 date-time (no offset = UTC)",
    ),
]
Name = Annotated[str, checked(LABEL, max_length=200)]
Kind = Annotated[str, checked(KIND, "e.g. intelligence, military")]
Country = Annotated[str, checked(COUNTRY, "ISO 3166-1 alpha-2 code")]
Reason = Annotated[str, checked(REASON, max_length=2000)]
Quote = Annotated[str, Meta(min_length=1, max_length=4000, pattern=NO_NUL)]
Note = Annotated[str, Meta(max_length=4000, pattern=NO_NUL)]
Url = Annotated[str, checked(URL, max_length=2000)]
Sha256 = Annotated[str, checked(SHA256)]
Credibility = Annotated[int, Meta(ge=1, le=6)]


def _after(first: str, last: str) -> bool:
    """Whether period `first` begins after period `last` ends, to the nanosecond."""
    a, b = parse_time(first), parse_time(last)
    b_nanos = nanos_past(last) if b.precision == "instant" else 999
    return (a.start, nanos_past(first)) > (b.end, b_nanos)


def _time_problem(field: str, text: str | None) -> list[FieldError]:
    if text is None:
        return []
    try:
        parse_time(text)
    except TimeFormatError as exc:
        return [FieldError(field, str(exc))]
    return []


def blank_problem(field: str, text: object) -> list[FieldError]:
    """A name or reason that shows nothing (spaces and invisible characters, which a
    pattern cannot tell from letters) says nothing."""
    if isinstance(text, str) and is_blank(text):
        return [FieldError(field, BLANK)]
    return []


class Command(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    """Base of every command: unknown fields are refused."""

    def problems(self) -> list[FieldError]:
        return []


class RegisterSource(Command, frozen=True):
    id: SourceId
    name: Name
    kind: Kind
    country: Country | None = None
    reliability: Reliability | None = None

    def problems(self) -> list[FieldError]:
        return blank_problem("name", self.name)


class SourceChanges(Command, frozen=True):
    """The body of a source update: at least one field. A field left out stays as it is;
    `null` removes `country` or `reliability` (a name and a kind cannot be removed)."""

    name: Name | msgspec.UnsetType = msgspec.UNSET
    kind: Kind | msgspec.UnsetType = msgspec.UNSET
    country: Country | msgspec.UnsetType | None = msgspec.UNSET
    reliability: Reliability | msgspec.UnsetType | None = msgspec.UNSET

    def problems(self) -> list[FieldError]:
        given = (self.name, self.kind, self.country, self.reliability)
        if all(v is msgspec.UNSET for v in given):
            return [FieldError("body", "name at least one of name, kind, country, reliability")]
        return blank_problem("name", self.name)


class UpdateSource(Command, frozen=True):
    id: SourceIdRef
    changes: SourceChanges


class ValueIn(Command, frozen=True):
    """`{low, high, best?}` for a quantity or `{status}` for a status."""

    low: Count | None = None
    high: Count | None = None
    best: Count | None = None
    status: StatusValue | None = None

    def problems(self) -> list[FieldError]:
        quantity = (self.low, self.high, self.best)
        if self.status is not None:
            if any(v is not None for v in quantity):
                return [FieldError("value", "give either low/high/best or status, not both")]
            return []
        errors = [
            FieldError(f"value.{name}", "Required field is missing")
            for name, v in (("low", self.low), ("high", self.high))
            if v is None
        ]
        if errors or self.low is None or self.high is None:
            return errors or [FieldError("value", "give low and high, or status")]
        if self.low > self.high:
            return [FieldError("value", "low must not exceed high")]
        if self.best is not None and not self.low <= self.best <= self.high:
            return [FieldError("value.best", "best must lie between low and high")]
        return []


class DocumentIn(Command, frozen=True):
    publisher: Name
    published_at: Time
    url: Url | None = None
    title: Annotated[str, Meta(max_length=1000, pattern=NO_NUL)] | None = None
    retrieved_at: Time | None = None
    sha256: Sha256 | None = None

    def problems(self) -> list[FieldError]:
        return (
            blank_problem("document.publisher", self.publisher)
            + _time_problem("document.published_at", self.published_at)
            + _time_problem("document.retrieved_at", self.retrieved_at)
        )


ModeIn = Annotated[Mode, Meta(description='quantities only; "total" when absent or null')]
QualifierIn = Annotated[Qualifier, Meta(description='"about" when absent or null')]


class RecordAssertion(Command, frozen=True):
    subject: Subject
    property: Property
    value: ValueIn
    claimants: Annotated[list[SourceIdRef], Meta(min_length=1, max_length=20)]
    stated_at: Time
    document: DocumentIn
    quote: Quote
    assertion_id: AssertionId | None = None
    mode: ModeIn | None = None
    qualifier: QualifierIn | None = None
    valid_from: Time | None = None
    valid_to: Time | None = None
    credibility: Credibility | None = None
    supersedes: AssertionIdRef | None = None
    note: Note | None = None

    def problems(self) -> list[FieldError]:
        # each rule looks only at fields of the right type: when the edge judges the rules
        # beside fields that are already named bad, those hold None or their raw value
        errors: list[FieldError] = []
        value = self.value if isinstance(self.value, ValueIn) else None
        if value is not None:
            errors += value.problems()
        if isinstance(self.document, DocumentIn):
            errors += self.document.problems()
        errors += blank_problem("quote", self.quote)  # "the words that carry the claim"
        if value is not None and value.status is not None and self.mode is not None:
            errors.append(FieldError("mode", "mode applies to quantities only"))
        claimants = self.claimants if isinstance(self.claimants, list) else []
        if len(set(claimants)) != len(claimants):
            errors.append(FieldError("claimants", "a claimant is named twice"))
        for name in ("stated_at", "valid_from", "valid_to"):
            text = getattr(self, name)
            errors += _time_problem(name, text if isinstance(text, str) else None)
        unparsed = {e.field for e in errors}
        if (
            isinstance(self.valid_from, str)
            and isinstance(self.valid_to, str)
            and not unparsed & {"valid_from", "valid_to"}
            and _after(self.valid_from, self.valid_to)
        ):
            errors.append(FieldError("valid_from", "valid_from must not be after valid_to"))
        if self.supersedes is not None and self.supersedes == self.assertion_id:
            errors.append(FieldError("supersedes", "an assertion cannot supersede itself"))
        return errors


class RetractAssertion(Command, frozen=True):
    assertion_id: AssertionIdRef
    reason: Reason

    def problems(self) -> list[FieldError]:
        return blank_problem("reason", self.reason)


class RankAssertion(Command, frozen=True):
    assertion_id: AssertionIdRef
    rank: Rank
    reason: Reason

    def problems(self) -> list[FieldError]:
        return blank_problem("reason", self.reason)


class RecordPrepared(msgspec.Struct, frozen=True, forbid_unknown_fields=True, gc=False):
    """A checked :class:`RecordAssertion` already turned into the event it records, by
    :func:`ledger.domain.prepare_assertion`, before any of the ledger's state is read.

    What the API sends its writer process instead of the command: the writer decodes the
    event as it will store it, without the command's field checks (they ran where the body
    was decoded), and judges only what needs the ledger's state (:func:`ledger.domain.decide`).
    """

    event: AssertionRecorded
    chosen_id: bool
    """The caller named the assertion's id, so it must not be taken already."""


AnyCommand = (
    RegisterSource
    | UpdateSource
    | RecordAssertion
    | RecordPrepared
    | RetractAssertion
    | RankAssertion
)


# ---- the lines of a `ledger import` file: the same fields, tagged by `record` ----


class SourceLine(RegisterSource, frozen=True, tag_field="record", tag="source"):
    pass


class AssertionLine(RecordAssertion, frozen=True, tag_field="record", tag="assertion"):
    pass


class PreparedLine(RecordPrepared, frozen=True, tag_field="record", tag="assertion"):
    """An assertion line already turned into the event it records, as
    :class:`RecordPrepared`: how an import's reader hands it on, so it is neither checked
    nor built again where it is appended."""


class RetractionLine(RetractAssertion, frozen=True, tag_field="record", tag="retraction"):
    pass


class RankLine(RankAssertion, frozen=True, tag_field="record", tag="rank"):
    pass


ImportLine = SourceLine | AssertionLine | RetractionLine | RankLine
IMPORT_LINE_TYPES: dict[str, type[ImportLine]] = {
    "source": SourceLine,
    "assertion": AssertionLine,
    "retraction": RetractionLine,
    "rank": RankLine,
}
PreparedImportLine = SourceLine | PreparedLine | RetractionLine | RankLine
"""An import line as its reader hands it on: an assertion prepared, the rest as decoded."""
RecordKind = Literal["source", "assertion", "retraction", "rank"]
