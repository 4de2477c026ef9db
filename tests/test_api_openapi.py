"""The published OpenAPI schema: open to all, complete, and equal to the committed snapshot.

`api/openapi.json` is the snapshot. After a deliberate change to the API, regenerate it with

    UPDATE_OPENAPI=1 .venv/bin/pytest tests/test_api_openapi.py

and commit it with the change.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from tests import api_helpers
from tests.api_helpers import ROOT, Client, Ledger, assertion_body, make_ledger, serve

template, ledger, client = api_helpers.template, api_helpers.ledger, api_helpers.client

SNAPSHOT = ROOT / "api" / "openapi.json"
METHODS = {"get", "post", "put", "patch", "delete"}
GUARDED = {"401", "403", "429"}
WRITES = {"413", "415", "422", "503", "507"}
# what each operation can answer beyond what every guarded read or write can
OWN_ERRORS = {
    "registerSource": {"409", "412"},
    "updateSource": {"404", "412"},
    "recordAssertion": {"409", "412"},
    "retractAssertion": {"404", "409", "412"},
    "rankAssertion": {"404", "412"},
    # a point past what the views have folded (an import appending beside): 503
    "getSource": {"404", "422", "503"},
    "getAssertion": {"404", "422", "503"},
    "getEstimate": {"404", "422", "503"},
    "getStatus": {"404", "422", "503"},
    "listSources": {"422", "503"},
    "listAssertions": {"422", "503"},
    "listSubjects": {"422", "503"},
    "getTimeline": {"422", "503"},
    "listEvents": {"422"},
    "listErasures": {"422"},
    "streamEvents": {"422"},
    "inclusionProof": {"422", "503"},  # 503: the stored Merkle tree failed a check
    "consistencyProof": {"422", "503"},
    "logHead": {"422", "503"},  # `size` past the log
    "audit": {"413", "415", "422"},  # a body it is sent anyway
}


@pytest.fixture
async def schema(tmp_path: Path) -> dict[str, Any]:
    ledger: Ledger = make_ledger(tmp_path, seed=False)
    client: Client
    async with serve(ledger) as client:
        response = await client.get("/schema/openapi.json")
        assert response.status_code == 200, "the schema needs no token"
        docs = await client.get("/schema/swagger")
        assert docs.status_code == 200
    loaded: dict[str, Any] = response.json()
    return loaded


def operations(schema: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method.upper(), path, operation)
        for path, item in schema["paths"].items()
        for method, operation in item.items()
        if method in METHODS
    ]


def test_every_operation_is_named_summarised_and_lists_its_errors(schema: dict[str, Any]) -> None:
    found = operations(schema)
    ids = [op["operationId"] for _, _, op in found]
    assert len(ids) == len(set(ids)), "operationIds are unique"
    assert set(ids) == {*OWN_ERRORS, "health"}
    for method, path, op in found:
        assert op.get("summary"), f"{method} {path} has no summary"
        name = op["operationId"]
        errors = {code for code in op["responses"] if code >= "400"}
        if name == "health":
            assert errors == set()
            assert "security" not in op
            continue
        want = (
            GUARDED | OWN_ERRORS[name] | (WRITES if method != "GET" and name != "audit" else set())
        )
        assert errors == want, f"{name}: {sorted(errors)} != {sorted(want)}"
        for code in errors:
            content = op["responses"][code]["content"]
            assert list(content) == ["application/problem+json"], (name, code)
        assert op["security"] == [{"bearer": []}], name
        headers = {p["name"] for p in op.get("parameters", []) if p["in"] == "header"}
        if method != "GET" and name != "audit":  # every write takes both
            assert {"Idempotency-Key", "If-Match"} <= headers, name
    assert schema["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    stream = schema["paths"]["/v1/events/stream"]["get"]["responses"]["200"]
    assert list(stream["content"]) == ["text/event-stream"]


def test_the_snapshot_is_the_live_schema(schema: dict[str, Any]) -> None:
    rendered = json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    if os.environ.get("UPDATE_OPENAPI") == "1":
        SNAPSHOT.write_text(rendered, encoding="utf-8")
    how = "regenerate it with: UPDATE_OPENAPI=1 .venv/bin/pytest tests/test_api_openapi.py"
    assert SNAPSHOT.is_file(), f"{SNAPSHOT.relative_to(ROOT)} is missing; {how}"
    committed = json.loads(SNAPSHOT.read_text(encoding="utf-8"))
    if committed != schema:
        changed = sorted(
            path
            for path in {*committed.get("paths", {}), *schema["paths"]}
            if committed.get("paths", {}).get(path) != schema["paths"].get(path)
        )
        pytest.fail(
            f"{SNAPSHOT.relative_to(ROOT)} differs from the live schema "
            f"(paths changed: {changed or 'none; components or info'}); {how}"
        )


def _patterns(node: Any) -> list[str]:
    if isinstance(node, dict):
        here = [node["pattern"]] if isinstance(node.get("pattern"), str) else []
        return here + [p for value in node.values() for p in _patterns(value)]
    if isinstance(node, list):
        return [p for item in node for p in _patterns(item)]
    return []


def test_published_patterns_need_no_lookaround(schema: dict[str, Any]) -> None:
    """Validators built on RE2 (Go, Rust) cannot compile a lookahead: the server checks
    `$(?!\\n)` (Python's `$` would take a final newline), the schema says `$`, which in
    ECMA-262 already means the end."""
    patterns = _patterns(schema)
    assert any("[a-z0-9][a-z0-9.-]{0,127}$" in p for p in patterns)
    assert not [p for p in patterns if "(?=" in p or "(?!" in p or "(?<" in p]


VALUES: list[dict[str, Any]] = [
    {"low": 1, "high": 2},
    {"low": 1, "high": 2, "best": None},
    {"low": 0, "high": 0, "best": 0},
    {"status": "confirmed"},
    {"low": None, "high": 2},
    {"low": -1, "high": 2},
    {"high": 2},
    {},
    {"status": "maybe"},
    {"low": 1, "high": 2, "extra": 3},
    {"low": 1.5, "high": 2},
]


async def test_the_schema_of_a_value_is_what_the_server_takes(
    client: Client, ledger: Ledger
) -> None:
    """A client made from the schema sends what the server takes: litestar's own schema of
    `value` had every field optional and nullable and no minimum. (What the schema cannot
    say, low <= best <= high, is left out of these bodies.)"""
    import jsonschema_rs  # schemathesis's, for the tests only

    published = await client.get("/schema/openapi.json")
    validator = jsonschema_rs.validator_for(published.json()["components"]["schemas"]["ValueIn"])
    writer = ledger.auth("writer")
    for n, value in enumerate(VALUES):
        body = assertion_body(subject=f"schema-{n}", property="x.value", value=value)
        answer = await client.post("/v1/assertions", json=body, headers=writer)
        assert answer.status_code in (201, 422), answer.text
        assert validator.is_valid(value) == (answer.status_code == 201), (value, answer.text)
        if value.get("low") == 1.5:  # the message does not offer null, which is refused
            assert answer.json()["errors"] == [
                {"field": "value.low", "message": "Expected `int`, got `float`"}
            ]
