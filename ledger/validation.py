"""Edge validation that names every bad field, not only the first.

msgspec stops at the first error it meets. For a request an analyst has to fix, every
problem should be named at once, so :func:`convert_all` first tries the fast one-pass
decode and only on failure walks the fields one by one to collect each error.
"""

from __future__ import annotations

import functools
import json
import re
import typing
from collections import Counter
from collections.abc import Iterator
from typing import Any, TypeVar

import msgspec

from ledger.commands import in_words
from ledger.errors import FieldError, InvalidInput
from ledger.times import TIME_PATTERN, TimeFormatError, parse_time

T = TypeVar("T", bound=msgspec.Struct)


def _field_path(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _msgspec_error(exc: msgspec.ValidationError, base: str) -> FieldError:
    text = str(exc)
    where = ""
    if " - at `$" in text:
        text, _, where = text.rpartition(" - at `$")
        where = where.rstrip("`").lstrip(".")
    field = base
    if where:
        field = f"{base}.{where}" if base and not where.startswith("[") else base + where
        field = field.lstrip(".")
    if field in _FIGURES:  # null stands for "not given" there, which low and high must be
        text = text.replace("Expected `int | null`", "Expected `int`", 1)
    return FieldError(field or "body", in_words(text))


_FIGURES = frozenset({"value.low", "value.high"})
"""An assertion's figures that may not be left out: their type errors do not offer null."""


def _struct_errors(raw: Any, cls: type[msgspec.Struct], path: str) -> list[FieldError]:
    if not isinstance(raw, dict):
        return [FieldError(path or "body", "Expected an object")]
    errors: list[FieldError] = []
    info = msgspec.inspect.type_info(cls)
    assert isinstance(info, msgspec.inspect.StructType)
    known = {f.encode_name for f in info.fields}
    if info.tag_field is not None:
        known.add(info.tag_field)
    for key in raw:
        if key not in known:
            errors.append(FieldError(_field_path(path, str(key)), "Unknown field"))
    hints = msgspec.structs.fields(cls)
    for field, spec in zip(info.fields, hints, strict=True):
        name = field.encode_name
        here = _field_path(path, name)
        if name not in raw:
            if field.required:
                errors.append(FieldError(here, "Required field is missing"))
            continue
        value = raw[name]
        nested = spec.type if isinstance(spec.type, type) else None
        if nested is not None and issubclass(nested, msgspec.Struct):
            inner = _struct_errors(value, nested, here)
            if not inner:  # well-formed on its own: its cross-field rules may still fail
                inner = check_struct(msgspec.convert(value, nested, strict=True))
            else:  # its rules, judged on its fields that are right (they name full paths)
                named = {e.field for e in inner}
                inner += [e for e in _rules_beside(value, nested, []) if e.field not in named]
            errors.extend(inner)
            continue
        try:
            msgspec.convert(value, spec.type, strict=True)
        except msgspec.ValidationError as exc:
            error = _msgspec_error(exc, here)
            if isinstance(value, str) and _is_time(spec.type):
                try:
                    parse_time(value)
                except TimeFormatError as bad:
                    error = FieldError(here, str(bad))
            errors.extend(_list_errors(value, spec.type, here) or [error])
    return errors


def _list_errors(value: Any, tp: Any, here: str) -> list[FieldError]:
    """Every problem of a list of scalars (`claimants`): the list's own (its length) and
    each bad item's, where msgspec names only the first. Empty for anything else."""
    base, *metas = typing.get_args(tp) if typing.get_origin(tp) is typing.Annotated else (tp,)
    if not isinstance(value, list) or typing.get_origin(base) is not list:
        return []
    (item,) = typing.get_args(base)
    if isinstance(item, type) and issubclass(item, msgspec.Struct):
        return []
    errors: list[FieldError] = []
    try:
        msgspec.convert(value, typing.Annotated[list[Any], *metas] if metas else list[Any])
    except msgspec.ValidationError as exc:
        errors.append(_msgspec_error(exc, here))
    for i, x in enumerate(value):
        try:
            msgspec.convert(x, item, strict=True)
        except msgspec.ValidationError as exc:
            errors.append(_msgspec_error(exc, f"{here}[{i}]"))
    return errors


def _is_time(tp: Any) -> bool:
    """Whether `tp` (possibly Optional) is a string constrained to the time forms."""
    for arg in typing.get_args(tp):
        if isinstance(arg, msgspec.Meta) and arg.pattern == TIME_PATTERN:
            return True
        if typing.get_args(arg) and _is_time(arg):
            return True
    return False


def check_struct(obj: msgspec.Struct) -> list[FieldError]:
    """Cross-field rules a struct declares in a `problems()` method."""
    problems = getattr(obj, "problems", None)
    if problems is None:
        return []
    result: list[FieldError] = problems()
    return result


_ABSENT = msgspec.UNSET  # a field the body leaves out: never converts, never kept


def _top(field: str) -> str:
    """The top-level field an error names (`value` for `value.low`, `claimants[2]`)."""
    return field.split(".", 1)[0].split("[", 1)[0]


def _rules_beside(
    raw: Any, cls: type[msgspec.Struct], errors: list[FieldError]
) -> list[FieldError]:
    """The cross-field rules of a body with bad fields, judged on the rest of it.

    Struct constructors do not validate, so the struct is built from each field's converted
    value; a bad field holds its raw value if that is a scalar, else None, and the rules
    (each `problems()`) look only at values of the type they expect. A rule that names a
    field already named adds nothing, nor does a rule about the whole body once a field had
    to be stood in for; if the rules cannot run at all, only the field errors are reported.
    """
    if not isinstance(raw, dict) or getattr(cls, "problems", None) is None:
        return []
    named = {_top(e.field) for e in errors}
    info = msgspec.inspect.type_info(cls)
    assert isinstance(info, msgspec.inspect.StructType)
    values: dict[str, Any] = {}
    stood_in = False
    for field, spec in zip(info.fields, msgspec.structs.fields(cls), strict=True):
        value = raw.get(field.encode_name, _ABSENT)
        try:
            values[field.name] = msgspec.convert(value, spec.type, strict=True)
        except msgspec.ValidationError:
            # a bad scalar stays: a rule reading it names it (dropped below) or passes it
            # by; a bad list or object, or a missing required field, is None, so no rule
            # compares or walks an arbitrary structure; a missing optional one keeps its
            # default
            if isinstance(value, str | int | float | bool) or value is None:
                values[field.name] = value
            elif value is not _ABSENT or field.required:
                values[field.name] = None
                stood_in |= value is not _ABSENT  # a rule on the whole body would misjudge it
    try:
        found = check_struct(cls(**values))
    except (TypeError, AttributeError, ValueError, RecursionError):  # missing, wrong type
        return []
    return [e for e in found if _top(e.field) not in named and not (stood_in and e.field == "body")]


def convert_all(raw: Any, cls: type[T]) -> T:
    """Convert decoded JSON into `cls`, raising :class:`InvalidInput` naming every bad field."""
    try:
        obj = msgspec.convert(raw, cls, strict=True)
    except msgspec.ValidationError as exc:
        errors = _struct_errors(raw, cls, "") or [_msgspec_error(exc, "")]
        errors += _rules_beside(raw, cls, errors)
        raise InvalidInput(errors) from None  # the first MAX_ERRORS of them
    problems = check_struct(obj)
    if problems:
        raise InvalidInput(problems)
    return obj


@functools.lru_cache(maxsize=64)
def _typed(cls: type[Any]) -> msgspec.json.Decoder[Any]:
    return msgspec.json.Decoder(cls)


class _Object(dict[str, Any]):
    """A JSON object as :func:`repeated_keys` reads it: the keys given more than once."""

    repeated: list[str]


def _pairs(pairs: list[tuple[str, Any]]) -> _Object:
    obj = _Object(pairs)
    obj.repeated = (
        []
        if len(obj) == len(pairs)
        else [k for k, n in Counter(k for k, _ in pairs).items() if n > 1]
    )
    return obj


_pairs_decoder = json.JSONDecoder(object_pairs_hook=_pairs)


class _Repeated(Exception):
    pass


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise _Repeated
    return obj


_unique_decoder = json.JSONDecoder(object_pairs_hook=_unique)


def _repeated_in(value: Any, path: str) -> Iterator[str]:
    if isinstance(value, _Object):
        yield from (_field_path(path, key) for key in value.repeated)
        for key, item in value.items():
            yield from _repeated_in(item, _field_path(path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _repeated_in(item, f"{path}[{index}]")


def repeated_keys(data: bytes) -> list[FieldError]:
    """Every key a JSON document gives twice in one object, by its path.

    msgspec, like most parsers, keeps the last copy, and another reader of the same bytes
    may keep the first: a record whose meaning depends on the reader is refused. (A pass
    of the standard library's parser, ~5 us for an assertion; the document has already
    decoded, so it is valid JSON.)
    """
    try:
        text = data.decode()
        _unique_decoder.decode(text)
    except _Repeated:
        pass  # named below, in a slower pass that keeps each object's path
    except (ValueError, RecursionError):  # what msgspec took, json refuses: nothing to add
        return []
    else:
        return []
    tree = _pairs_decoder.decode(text)
    message = "given more than once in its object (give it once)"
    return [FieldError(field, message) for field in _repeated_in(tree, "")]


_HALF_PAIR = re.compile(rb"\\u[dD][89abAB][0-9a-fA-F]{2}(?!\\u[dD][c-fC-F][0-9a-fA-F]{2})")


def json_error(data: bytes, exc: ValueError) -> str:
    """What is wrong with JSON that did not decode, in words: msgspec's message, but for a
    `\\uD800`-`\\uDBFF` escape without its second half, which it calls truncated (or an
    unexpected end of a pair), by how much of the input follows it."""
    said = str(exc)
    if ("truncated" in said or "surrogate" in said) and _HALF_PAIR.search(data):
        return (
            "a \\uD800-\\uDBFF escape (the first half of a surrogate pair) has no second "
            "half: it is not text"
        )
    return said


def decode_all(data: bytes, cls: type[T]) -> T:
    """Decode JSON bytes into `cls`, naming every bad field on failure.

    A good body is decoded straight into `cls` in one pass; only a bad one is decoded
    again, into plain values, to name every field that is wrong.
    """
    try:
        obj: T = _typed(cls).decode(data)
    except (msgspec.DecodeError, RecursionError, ValueError):
        pass  # named below
    else:
        problems = repeated_keys(data) + check_struct(obj)
        if problems:
            raise InvalidInput(problems)
        return obj
    try:
        raw = msgspec.json.decode(data)
    except RecursionError:
        raise InvalidInput([FieldError("body", "Malformed JSON: nested too deeply")]) from None
    except ValueError as exc:  # msgspec.DecodeError, or UnicodeDecodeError on bad UTF-8
        message = f"Malformed JSON: {json_error(data, exc)}"
        raise InvalidInput([FieldError("body", message)]) from None
    try:
        return convert_all(raw, cls)
    except InvalidInput as bad:
        raise InvalidInput(repeated_keys(data) + bad.errors) from None
