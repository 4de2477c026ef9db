"""Hostile input: each is answered with the right problem, appends nothing, and never a 5xx.

Bodies over the limit, deeply nested and huge JSON, invalid UTF-8 and NUL bytes, unknown
and server-owned fields, slugs that are too long, out-of-range numbers and pages, garbage
headers and paths, readers and strangers trying to write, and floods against the rate
limit. SQL in every text field is stored verbatim and harms nothing.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest

from tests import api_helpers
from tests.api_helpers import (
    DEPLOYMENT,
    TROOPS,
    Ledger,
    assertion_body,
    fields_of,
    problem,
    source_body,
)
from tests.reliability import LiveClient, head, live

template, ledger = api_helpers.template, api_helpers.ledger

FALL_2024 = "ap-2025-04-28.troops-fall-2024"
WRITES: list[tuple[str, str, dict[str, Any]]] = [
    ("POST", "/v1/sources", source_body()),
    ("PATCH", "/v1/sources/us-gov", {"name": "x"}),
    ("POST", "/v1/assertions", assertion_body()),
    ("POST", f"/v1/assertions/{FALL_2024}/retract", {"reason": "x"}),
    ("POST", f"/v1/assertions/{FALL_2024}/rank", {"rank": "deprecated", "reason": "x"}),
]
LISTS = ["/v1/assertions", "/v1/events", "/v1/sources", "/v1/subjects"]
SQL = "'); DROP TABLE events; -- \" OR 1=1; DELETE FROM payloads WHERE '1'='1"


def no_server_error(response: httpx.Response) -> httpx.Response:
    assert response.status_code < 500, response.text
    return response


async def unchanged(
    client: LiveClient, ledger: Ledger, attack: Callable[[], Awaitable[None]]
) -> None:
    """Run `attack`; the log's head must be the same after it."""
    before = await head(client, ledger)
    await attack()
    assert await head(client, ledger) == before


async def send(
    client: LiveClient, method: str, path: str, headers: dict[str, str], **kw: Any
) -> httpx.Response:
    return no_server_error(await client.request(method, path, headers=headers, **kw))


async def test_bodies_over_the_limit_are_413(ledger: Ledger) -> None:
    async with live(ledger, max_body_bytes=4096) as client:
        writer = {**ledger.auth("writer"), "Content-Type": "application/json"}

        async def attack() -> None:
            for method, path, body in WRITES:
                padded = {**body, "note": "x" * 5000} if "assertions" in path else body
                big = json.dumps(padded).encode() if "note" in padded else b" " * 5000
                answer = await send(client, method, path, writer, content=big)
                assert "4096" in problem(answer, 413)["detail"]

        await unchanged(client, ledger, attack)


async def test_deep_huge_and_broken_json_is_422(ledger: Ledger) -> None:
    nasty = [
        b"[" * 100_000 + b"]" * 100_000,
        b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
        json.dumps([0] * 200_000).encode(),
        json.dumps({f"k{i}": i for i in range(20_000)}).encode(),
        b"\xff\xfe\x00{",
        json.dumps(assertion_body(quote="QQ")).encode().replace(b"QQ", b"\xc3\x28"),
        json.dumps(assertion_body(quote="\ud800 lone surrogate")).encode(),
        b"",
        b"null",
        b'{"subject": ',
        b"NaN",
    ]
    async with live(ledger) as client:
        writer = {**ledger.auth("writer"), "Content-Type": "application/json"}

        async def attack() -> None:
            for method, path, _ in WRITES:
                for body in nasty:
                    answer = await send(client, method, path, writer, content=body)
                    assert fields_of(answer)

        await unchanged(client, ledger, attack)


async def test_unknown_and_server_owned_fields_are_named(ledger: Ledger) -> None:
    owned = {
        "seq": 1,
        "version": 1,
        "recorded_at": "2025-01-01T00:00:00.000000Z",
        "recorded_seq": 1,
        "hash": "00" * 32,
        "data_sha256": "00" * 32,
        "actor": "admin",
        "retracted": None,
        "superseded_by": None,
        "rank": {"rank": "preferred"},
        "bogus": True,
    }
    async with live(ledger) as client:
        writer = ledger.auth("writer")

        async def attack() -> None:
            for method, path, body in WRITES:
                answer = await send(client, method, path, writer, json={**body, **owned})
                assert set(owned) <= fields_of(answer), answer.text
            nested = assertion_body(document={"publisher": "p", "published_at": "2025", "x": 1})
            answer = await send(client, "POST", "/v1/assertions", writer, json=nested)
            assert "document.x" in fields_of(answer)

        await unchanged(client, ledger, attack)


async def test_nul_bytes_long_slugs_and_bad_numbers_are_422(ledger: Ledger) -> None:
    bad_assertions: list[tuple[dict[str, Any], str]] = [
        (assertion_body(quote="a\x00b"), "quote"),
        (assertion_body(note="a\x00b"), "note"),
        (
            assertion_body(document={"publisher": "a\x00", "published_at": "2025"}),
            "document.publisher",
        ),
        (assertion_body(subject="s" * 129), "subject"),
        (assertion_body(subject="Upper-Case"), "subject"),
        (assertion_body(property="p" * 129), "property"),
        (assertion_body(assertion_id="a" * 129), "assertion_id"),
        (assertion_body(claimants=["c" * 65]), "claimants[0]"),
        (assertion_body(claimants=["kr-intel"] * 21), "claimants"),
        (assertion_body(quote="q" * 4001), "quote"),
        (assertion_body(value={"low": 2**64, "high": 2**64}), "value.low"),
        (assertion_body(value={"low": 1.5, "high": 2}), "value.low"),
        (assertion_body(value={"low": -1, "high": 2}), "value.low"),
        (assertion_body(stated_at="2025-02-30"), "stated_at"),
        (assertion_body(stated_at="2025-01-01T00:00:00+99:00"), "stated_at"),
    ]
    async with live(ledger) as client:
        writer = ledger.auth("writer")

        async def attack() -> None:
            for body, field in bad_assertions:
                answer = await send(client, "POST", "/v1/assertions", writer, json=body)
                assert field in fields_of(answer), (field, answer.text)
            for body, field in [
                (source_body(id="x" * 65), "id"),
                (source_body(name="n\x00"), "name"),
                (source_body(name="n" * 201), "name"),
            ]:
                answer = await send(client, "POST", "/v1/sources", writer, json=body)
                assert field in fields_of(answer), (field, answer.text)
            for reason in ("r\x00", "r" * 2001, ""):
                path = f"/v1/assertions/{FALL_2024}/retract"
                answer = await send(client, "POST", path, writer, json={"reason": reason})
                assert "reason" in fields_of(answer)

        await unchanged(client, ledger, attack)


async def test_pages_params_headers_and_paths_out_of_range(ledger: Ledger) -> None:
    async with live(ledger) as client:
        reader, writer = ledger.auth("reader"), ledger.auth("writer")

        async def attack() -> None:
            for path in LISTS:
                for limit in ("100000", "0", "-1", "1e9", "abc"):
                    answer = await send(client, "GET", path, reader, params={"limit": limit})
                    assert "limit" in fields_of(answer), (path, limit, answer.text)
            for params in (
                {"seq": "-1"},
                {"seq": str(2**70)},
                {"as_of": "\x00"},
                {"known_at": "x"},
            ):
                view = f"/v1/subjects/{DEPLOYMENT}/estimates/{TROOPS}"
                assert fields_of(await send(client, "GET", view, reader, params=params))
            huge = await send(client, "GET", "/v1/events", reader, params={"after": str(2**70)})
            assert fields_of(huge) == {"after"}
            for params in ({"seq": "1", "size": str(2**70)}, {"seq": "0", "size": "1"}):
                answer = await send(client, "GET", "/v1/log/inclusion", reader, params=params)
                assert fields_of(answer)
            for header in ({"If-Match": "garbage"}, {"Idempotency-Key": "k" * 300}):
                answer = await send(
                    client, "POST", "/v1/assertions", {**writer, **header}, json=assertion_body()
                )
                assert fields_of(answer)
            for path, name in (
                ("/v1/assertions/%00", "assertion_id"),
                ("/v1/assertions/" + "a" * 5000, "assertion_id"),
                ("/v1/sources/%FF", "source_id"),
            ):
                assert fields_of(await send(client, "GET", path, reader)) == {name}
            retract = "/v1/assertions/%00%FF/retract"
            answer = await send(client, "POST", retract, writer, json={"reason": "x"})
            assert fields_of(answer) == {"assertion_id"}

        await unchanged(client, ledger, attack)


async def test_readers_and_strangers_cannot_write(ledger: Ledger) -> None:
    async with live(ledger, public_read=True) as client:

        async def attack() -> None:
            for method, path, body in WRITES:
                for role in ("reader", "auditor"):
                    answer = await send(client, method, path, ledger.auth(role), json=body)
                    problem(answer, 403)
                for role in ("revoked", "unknown"):
                    answer = await send(client, method, path, ledger.auth(role), json=body)
                    problem(answer, 401)
                problem(await send(client, method, path, {}, json=body), 401)
                bad_scheme = {"Authorization": "Basic " + ledger.tokens["writer"]}
                problem(await send(client, method, path, bad_scheme, json=body), 401)
            problem(await send(client, "POST", "/v1/audit", ledger.auth("reader")), 403)

        await unchanged(client, ledger, attack)


async def test_sql_in_every_text_field_is_stored_verbatim(ledger: Ledger) -> None:
    async with live(ledger) as client:
        writer, reader = ledger.auth("writer"), ledger.auth("reader")
        source = await client.post(
            "/v1/sources", json=source_body(id="sql-src", name=SQL, kind="military"), headers=writer
        )
        assert source.status_code == 201, source.text
        body = assertion_body(
            claimants=["sql-src"],
            quote=SQL,
            note=SQL,
            document={
                "publisher": SQL,
                "published_at": "2025-04-28",
                "title": SQL,
                "url": "https://example.org/?q=';DROP%20TABLE%20events;--",
            },
        )
        recorded = await client.post("/v1/assertions", json=body, headers=writer)
        assert recorded.status_code == 201, recorded.text
        assertion_id = recorded.json()["assertion_id"]
        ranked = await client.post(
            f"/v1/assertions/{assertion_id}/rank",
            json={"rank": "preferred", "reason": SQL},
            headers=writer,
        )
        assert ranked.status_code == 201
        back = (await client.get(f"/v1/assertions/{assertion_id}", headers=reader)).json()
        assert back["quote"] == back["note"] == back["document"]["title"] == SQL
        assert back["document"]["publisher"] == SQL
        assert back["rank"]["reason"] == SQL
        src = (await client.get("/v1/sources/sql-src", headers=reader)).json()
        assert src["name"] == SQL
        found = await client.get("/v1/assertions", params={"claimant": SQL}, headers=reader)
        assert fields_of(found) == {"claimant"}  # not a source id: refused, never run
        audit = await client.post("/v1/audit", headers=ledger.auth("auditor"))
        assert audit.json()["ok"], audit.json()["problems"]


async def test_floods_meet_the_rate_limit(ledger: Ledger) -> None:
    per_minute = 10
    async with live(ledger, rate_limit_per_minute=per_minute) as client:
        writer = ledger.auth("writer")
        before = await client.get("/v1/log/head", headers=ledger.auth("reader"))
        answers = [
            await client.post(
                "/v1/assertions", json=assertion_body(quote=f"flood {i}"), headers=writer
            )
            for i in range(3 * per_minute)
        ]
        codes = [a.status_code for a in answers]
        assert codes[:per_minute] == [201] * per_minute
        assert codes[per_minute:] == [429] * (2 * per_minute)
        for answer in answers[per_minute:]:
            problem(answer, 429)
            assert int(answer.headers["retry-after"]) >= 1
        reader_flood = [
            (await client.get("/v1/log/head", headers=ledger.auth("reader"))).status_code
            for _ in range(per_minute)
        ]
        assert 429 in reader_flood  # per key: the reader had spent one on `before`
        assert before.status_code == 200
        assert (await client.get("/v1/health")).status_code == 200  # never limited
        size = before.json()["size"]
        events = await client.get(
            "/v1/events", params={"after": size}, headers=ledger.auth("admin")
        )
        assert len(events.json()["items"]) == per_minute  # only the admitted ones appended


async def test_rotating_made_up_tokens_still_meet_the_limit(ledger: Ledger) -> None:
    per_minute = 5
    async with live(ledger, rate_limit_per_minute=per_minute) as client:
        codes = [
            (
                await client.get(
                    "/v1/log/head", headers={"Authorization": f"Bearer ldg_made-up-{i}"}
                )
            ).status_code
            for i in range(3 * per_minute)
        ]
        assert 429 in codes


def test_many_unknown_fields_get_a_bounded_answer() -> None:
    from ledger.commands import RegisterSource
    from ledger.errors import MAX_ERRORS, InvalidInput
    from ledger.validation import convert_all

    body = {"id": "x", "name": "X", "kind": "military"} | {f"f{i}": i for i in range(10_000)}
    with pytest.raises(InvalidInput) as caught:
        convert_all(body, RegisterSource)
    assert len(caught.value.errors) == MAX_ERRORS + 1
    assert caught.value.errors[-1].message == f"and {10_000 - MAX_ERRORS} more problems"


async def test_a_flood_of_query_parameters_or_repeated_keys_gets_a_bounded_answer(
    ledger: Ledger,
) -> None:
    """Every 422 names at most MAX_ERRORS fields and counts the rest exactly, whichever
    part of the request they come from: 5,000 unknown query parameters, 5,000 keys given
    twice, or both beside a bad body."""
    from ledger.errors import MAX_ERRORS

    many = 5_000
    flood = "&".join(f"p{i}=1" for i in range(many))
    twice = "{" + ",".join(f'"k{i}":1,"k{i}":1' for i in range(many)) + "}"
    writer = {**ledger.auth("writer"), "Content-Type": "application/json"}
    async with live(ledger) as client:

        async def attack() -> None:
            cases = [
                (await send(client, "GET", f"/v1/sources?{flood}", ledger.auth("reader")), many),
                (await send(client, "POST", "/v1/sources", writer, content=twice), None),
                (
                    await send(client, "POST", f"/v1/sources?{flood}", writer, content=twice),
                    None,
                ),
            ]
            counts = []
            for answer, expected in cases:
                errors = problem(answer, 422)["errors"]
                assert len(errors) == MAX_ERRORS + 1
                assert len(answer.content) < 20_000
                last = errors[-1]
                assert last["field"] == "body"
                hidden = int(last["message"].split()[1])
                assert last["message"] == f"and {hidden} more problems"
                counts.append(hidden + MAX_ERRORS)
                if expected is not None:
                    assert counts[-1] == expected
            # the body's problems (each repeated key, then its fields) are counted once in
            # the combined answer, beside every query parameter
            assert counts[2] == counts[1] + many

        await unchanged(client, ledger, attack)
