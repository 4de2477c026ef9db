"""Appending over HTTP: sources, assertions, retractions, ranks, and how each can fail.

Every failure is a problem document, and a failed request appends nothing.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from ledger.erasure import EraseRequest, erase
from ledger.text import BLANK
from tests import api_helpers, factories
from tests.api_helpers import (
    DEPLOYMENT,
    TROOPS,
    Client,
    Ledger,
    all_events,
    assertion_body,
    fields_of,
    log_size,
    problem,
    serve,
    source_body,
)
from tests.reliability import head, live

# the fixtures every test here starts from
template, ledger, client = api_helpers.template, api_helpers.ledger, api_helpers.client

FALL_2024 = "ap-2025-04-28.troops-fall-2024"
INCREMENT = "ap-2025-04-28.troops-additional-early-2025"
RECORD_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
UUID7 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


async def last_event(client: Client, ledger: Ledger) -> dict[str, Any]:
    return (await all_events(client, ledger))[-1]


# ---- sources ----


async def test_register_source_then_again_then_differently(client: Client, ledger: Ledger) -> None:
    writer = ledger.auth("writer")
    size = await log_size(client, ledger)

    created = await client.post("/v1/sources", json=source_body(), headers=writer)
    assert created.status_code == 201
    receipt = created.json()
    assert set(receipt) == {"seq", "recorded_at", "hash"}
    assert receipt["seq"] == size + 1
    assert RECORD_TIME.match(receipt["recorded_at"])
    event = await last_event(client, ledger)
    assert (event["type"], event["stream"], event["version"]) == (
        "SourceRegistered",
        "source:gb-mod",
        1,
    )
    assert event["hash"] == receipt["hash"]
    assert event["actor"] == "writer"

    again = await client.post("/v1/sources", json=source_body(), headers=writer)
    assert again.status_code == 200
    assert again.json() == {"status": "unchanged"}
    other = await client.post(
        "/v1/sources", json=source_body(name="Defence Intelligence"), headers=writer
    )
    assert "already registered" in problem(other, 409)["detail"]
    assert await log_size(client, ledger) == size + 1

    one = await client.get("/v1/sources/gb-mod", headers=ledger.auth("reader"))
    assert one.status_code == 200
    assert one.json()["name"] == "UK Ministry of Defence"
    assert one.json()["registered_seq"] == size + 1


async def test_patch_source_appends_source_updated(client: Client, ledger: Ledger) -> None:
    reader = ledger.auth("reader")
    before = await log_size(client, ledger)

    changed = await client.patch(
        "/v1/sources/ua-zelenskyy", json={"reliability": "D"}, headers=ledger.auth("writer")
    )
    assert changed.status_code == 200
    assert changed.json()["seq"] == before + 1
    event = await last_event(client, ledger)
    assert event["type"] == "SourceUpdated"
    assert event["data"] == {"id": "ua-zelenskyy", "reliability": "D"}

    now = (await client.get("/v1/sources/ua-zelenskyy", headers=reader)).json()
    assert now["reliability"] == "D"
    assert now["version"] == 2
    assert [v["reliability"] for v in now["history"]] == ["C", "D"]
    then = await client.get("/v1/sources/ua-zelenskyy", params={"seq": before}, headers=reader)
    assert then.json()["reliability"] == "C"
    assert then.json()["version"] == 1

    unknown = await client.patch(
        "/v1/sources/nobody", json={"reliability": "D"}, headers=ledger.auth("writer")
    )
    problem(unknown, 404)
    empty = await client.patch("/v1/sources/ap", json={}, headers=ledger.auth("writer"))
    assert fields_of(empty) == {"body"}
    bad = await client.patch(
        "/v1/sources/ap", json={"reliability": "Z", "country": "usa"}, headers=ledger.auth("writer")
    )
    assert fields_of(bad) == {"reliability", "country"}
    assert await log_size(client, ledger) == before + 1


async def test_patch_null_removes_a_country_or_a_reliability(
    client: Client, ledger: Ledger
) -> None:
    reader, writer = ledger.auth("reader"), ledger.auth("writer")
    before = (await client.get("/v1/sources/ua-zelenskyy", headers=reader)).json()
    assert before["country"] == "UA"
    size = await log_size(client, ledger)

    cleared = await client.patch(
        "/v1/sources/ua-zelenskyy", json={"country": None, "kind": before["kind"]}, headers=writer
    )
    assert cleared.status_code == 200
    event = await last_event(client, ledger)
    assert event["data"] == {"id": "ua-zelenskyy", "cleared": ["country"]}  # kind unchanged
    now = (await client.get("/v1/sources/ua-zelenskyy", headers=reader)).json()
    assert (now["country"], now["reliability"], now["kind"]) == (
        None,
        before["reliability"],
        before["kind"],
    )
    assert [v["country"] for v in now["history"]] == ["UA", None]
    then = await client.get("/v1/sources/ua-zelenskyy", params={"seq": size}, headers=reader)
    assert then.json()["country"] == "UA"

    again = await client.patch("/v1/sources/ua-zelenskyy", json={"country": None}, headers=writer)
    assert again.json() == {"status": "unchanged"}
    back = await client.patch(
        "/v1/sources/ua-zelenskyy", json={"country": "UA", "reliability": None}, headers=writer
    )
    assert back.status_code == 200
    event = await last_event(client, ledger)
    assert event["data"] == {"id": "ua-zelenskyy", "country": "UA", "cleared": ["reliability"]}
    now = (await client.get("/v1/sources/ua-zelenskyy", headers=reader)).json()
    assert (now["country"], now["reliability"]) == ("UA", None)

    no_name = await client.patch(
        "/v1/sources/ua-zelenskyy", json={"name": None, "kind": None}, headers=writer
    )
    assert fields_of(no_name) == {"name", "kind"}
    assert await log_size(client, ledger) == size + 2
    audit = await client.post("/v1/audit", headers=ledger.auth("auditor"))
    assert audit.json()["ok"] is True
    assert audit.json()["projections_match"] is True


async def test_erasures_list_what_was_erased(client: Client, ledger: Ledger) -> None:
    reader = ledger.auth("reader")
    empty = await client.get("/v1/erasures", headers=reader)
    assert empty.json() == {"items": [], "next": None}
    events = [e for e in await all_events(client, ledger) if e["type"] == "AssertionRecorded"]
    chosen = events[:2]
    size = await log_size(client, ledger)
    with factories.ledger(ledger.db) as store:  # another writer on the file, as the CLI is
        for event in chosen:
            erase(store, EraseRequest(event["seq"], f"order {event['seq']}"), "dpo")
    seqs = [e["seq"] for e in chosen]
    # each erasure is logged: an event of its own on the subject's stream, in the chain
    logs = (await client.get("/v1/events", params={"after": size}, headers=reader)).json()
    assert [(e["type"], e["actor"], e["data"]) for e in logs["items"]] == [
        ("PayloadErased", "dpo", {"seq": seq, "reason": f"order {seq}"}) for seq in seqs
    ]
    assert [e["stream"] for e in logs["items"]] == [e["stream"] for e in chosen]

    first = await client.get("/v1/erasures", params={"limit": 1}, headers=reader)
    page = first.json()
    assert [i["seq"] for i in page["items"]] == seqs[:1]
    assert page["next"] == seqs[0]
    item = page["items"][0]
    data = chosen[0]["data"]
    assert (item["actor"], item["reason"]) == ("dpo", f"order {seqs[0]}")
    assert item["logged_seq"] == logs["items"][0]["seq"]
    assert item["erased_at"] == logs["items"][0]["recorded_at"]
    assert (item["assertion_id"], item["subject"], item["property"]) == (
        data["assertion_id"],
        data["subject"],
        data["property"],
    )
    rest = await client.get("/v1/erasures", params={"after": seqs[0]}, headers=reader)
    assert [i["seq"] for i in rest.json()["items"]] == seqs[1:]
    assert rest.json()["next"] is None

    erased = await client.get(
        "/v1/events", params={"after": seqs[0] - 1, "limit": 1}, headers=reader
    )
    assert erased.json()["items"][0]["data"] is None
    gone = await client.get(f"/v1/assertions/{data['assertion_id']}", headers=reader)
    problem(gone, 404)
    assert fields_of(await client.get("/v1/erasures?after=-1", headers=reader)) == {"after"}


# ---- assertions ----


async def test_record_assertion_returns_its_receipt(client: Client, ledger: Ledger) -> None:
    size = await log_size(client, ledger)
    response = await client.post(
        "/v1/assertions", json=assertion_body(), headers=ledger.auth("writer")
    )
    assert response.status_code == 201
    receipt = response.json()
    assert set(receipt) == {"assertion_id", "seq", "recorded_at", "hash"}
    assert UUID7.match(receipt["assertion_id"]), "the server names it with a UUIDv7"
    assert receipt["seq"] == size + 1
    assert RECORD_TIME.match(receipt["recorded_at"])
    event = await last_event(client, ledger)
    assert event["type"] == "AssertionRecorded"
    assert event["stream"] == f"subject:{DEPLOYMENT}"
    assert (event["seq"], event["recorded_at"], event["hash"]) == (
        receipt["seq"],
        receipt["recorded_at"],
        receipt["hash"],
    )
    assert event["data"]["assertion_id"] == receipt["assertion_id"]

    chosen = await client.post(
        "/v1/assertions",
        json=assertion_body(
            assertion_id="gb-mod.2025-05-01", stated_at="2025-05-01T09:30:00+03:00"
        ),
        headers=ledger.auth("writer"),
    )
    assert chosen.status_code == 201
    assert chosen.json()["assertion_id"] == "gb-mod.2025-05-01"
    detail = await client.get("/v1/assertions/gb-mod.2025-05-01", headers=ledger.auth("reader"))
    assert detail.json()["stated_at"] == "2025-05-01T09:30:00+03:00", "precision is echoed"


async def test_null_for_an_optional_field_is_leaving_it_out(client: Client, ledger: Ledger) -> None:
    """Every optional field of an assertion takes null as "not given", the two with a
    default (`mode`, `qualifier`) included, so one event is recorded either way."""
    optional = ("mode", "qualifier", "valid_from", "valid_to", "credibility", "supersedes", "note")
    given_null = assertion_body(assertion_id="nulls", **dict.fromkeys(optional))
    left_out = {k: v for k, v in assertion_body(assertion_id="absent").items() if k not in optional}
    for body in (given_null, left_out):
        response = await client.post("/v1/assertions", json=body, headers=ledger.auth("writer"))
        assert response.status_code == 201, response.text
    details = [
        (await client.get(f"/v1/assertions/{i}", headers=ledger.auth("reader"))).json()
        for i in ("nulls", "absent")
    ]
    assert (details[0]["qualifier"], details[0]["mode"]) == ("about", "total")
    own = {"assertion_id": "-", "recorded_seq": 0, "recorded_at": "-"}
    assert [{**d, **own} for d in details] == [{**details[1], **own}] * 2


async def test_a_taken_assertion_id_is_a_conflict(client: Client, ledger: Ledger) -> None:
    size = await log_size(client, ledger)
    taken = await client.post(
        "/v1/assertions", json=assertion_body(assertion_id=FALL_2024), headers=ledger.auth("writer")
    )
    assert FALL_2024 in problem(taken, 409)["detail"]
    assert await log_size(client, ledger) == size


INVALID_ASSERTIONS: list[tuple[str, dict[str, Any], set[str]]] = [
    ("unknown claimant", assertion_body(claimants=["nobody"]), {"claimants[0]"}),
    ("unknown supersedes", assertion_body(supersedes="no-such-assertion"), {"supersedes"}),
    ("unknown field", assertion_body(colour="red"), {"colour"}),
    ("server-owned fields", assertion_body(seq=3, hash="00" * 32), {"seq", "hash"}),
    ("status on a quantity", assertion_body(value={"status": "confirmed"}), {"value"}),
    ("quantity on a status", assertion_body(property="deployment.status"), {"value"}),
    ("statement time in words", assertion_body(stated_at="last fall"), {"stated_at"}),
    (
        "valid time backwards",
        assertion_body(valid_from="2025-03", valid_to="2025-01"),
        {"valid_from"},
    ),
    (
        "valid time backwards within one microsecond",
        assertion_body(
            valid_from="2025-03-01T10:00:00.0000009Z", valid_to="2025-03-01T10:00:00.0000001Z"
        ),
        {"valid_from"},
    ),
    ("low above high", assertion_body(value={"low": 5, "high": 1}), {"value"}),
    ("best outside", assertion_body(value={"low": 1, "high": 5, "best": 9}), {"value.best"}),
    ("negative count", assertion_body(value={"low": -1, "high": 5}), {"value.low"}),
    ("not a slug", assertion_body(subject="North Korea"), {"subject"}),
    (
        "missing fields",
        {"subject": DEPLOYMENT},
        {"property", "value", "claimants", "stated_at", "document", "quote"},
    ),
    (
        "several bad fields",
        assertion_body(
            colour="red", stated_at="last fall", quote="", credibility=9, claimants=[], mode="sum"
        ),
        {"colour", "stated_at", "quote", "credibility", "claimants", "mode"},
    ),
    (
        "several bad references",
        assertion_body(
            claimants=["nobody", "kr-intel", "ghost"],
            value={"status": "denied"},
            supersedes="no-such-assertion",
        ),
        {"claimants[0]", "claimants[2]", "value", "supersedes"},
    ),
    (
        "bad nested fields",
        assertion_body(document={"published_at": "yesterday", "url": "ftp://x"}),
        {"document.publisher", "document.published_at", "document.url"},
    ),
    (
        "a bad field beside a broken rule",
        assertion_body(quote="", valid_from="2026", valid_to="2025", claimants=["a", "a"]),
        {"quote", "valid_from", "claimants", "claimants[0]", "claimants[1]"},  # "a": unknown
    ),
    (
        "a broken rule beside a bad time",
        assertion_body(stated_at="last fall", valid_from="2026", valid_to="2025", seq=7),
        {"stated_at", "valid_from", "seq"},
    ),
    (
        "an impossible date beside a bad nested field",
        assertion_body(stated_at="2025-02-30", value={"low": 1, "high": 2**64}),
        {"stated_at", "value.high"},
    ),
    (
        "an impossible date beside a bad field of the same object",
        assertion_body(
            document={"publisher": "P", "published_at": "2025-02-30", "url": 5},
            value={"low": 9, "high": 3, "best": "many"},
        ),
        {"document.url", "document.published_at", "value.best", "value"},
    ),
    (
        "rules beside a missing object",
        {
            k: v
            for k, v in assertion_body(valid_from="2026", valid_to="2025").items()
            if k != "value"
        },
        {"value", "valid_from"},
    ),
    (
        "two broken rules",
        assertion_body(value={"low": 5, "high": 1}, valid_from="2026", valid_to="2025"),
        {"value", "valid_from"},
    ),
    # what the ledger holds is judged on the well-formed fields in the same answer
    (
        "an unknown claimant beside a bad time",
        assertion_body(claimants=["kr-intel", "nobody"], stated_at="yesterday"),
        {"claimants[1]", "stated_at"},
    ),
    (
        "the property's other kind beside an empty quote",
        assertion_body(value={"status": "confirmed"}, quote=""),
        {"value", "quote"},
    ),
    (
        "an unknown supersedes beside a bad credibility",
        assertion_body(supersedes="no-such-assertion", credibility=9),
        {"supersedes", "credibility"},
    ),
    (
        "a claimant list with a bad item: its well-formed items are looked up",
        assertion_body(claimants=["nobody", 5, "kr-intel", "UK MoD"], quote=""),
        {"claimants[0]", "claimants[1]", "claimants[3]", "quote"},
    ),
    (
        "a list of too many claimants: each well-formed one is still looked up",
        assertion_body(claimants=["kr-intel", "nobody"] + [f"s{i}" for i in range(20)]),
        {"claimants", "claimants[1]"} | {f"claimants[{i + 2}]" for i in range(20)},
    ),
    (
        "a mode on a status, even the default one",
        assertion_body(property="deployment.status", value={"status": "reported"}, mode="total"),
        {"mode"},
    ),
    (
        "an increment on a status",
        assertion_body(
            property="deployment.status", value={"status": "reported"}, mode="increment"
        ),
        {"mode"},
    ),
]


@pytest.mark.parametrize(
    ("body", "fields"),
    [pytest.param(body, fields, id=name) for name, body, fields in INVALID_ASSERTIONS],
)
async def test_an_invalid_assertion_names_every_bad_field(
    client: Client, ledger: Ledger, body: dict[str, Any], fields: set[str]
) -> None:
    head = (await client.get("/v1/log/head", headers=ledger.auth("reader"))).json()
    response = await client.post("/v1/assertions", json=body, headers=ledger.auth("writer"))
    assert fields_of(response) == fields
    assert (await client.get("/v1/log/head", headers=ledger.auth("reader"))).json() == head


async def test_a_bad_header_and_an_unknown_claimant_are_named_together(
    client: Client, ledger: Ledger
) -> None:
    headers = {**ledger.auth("writer"), "If-Match": "three"}
    body = assertion_body(claimants=["nobody"])
    response = await client.post("/v1/assertions", json=body, headers=headers)
    assert fields_of(response) == {"If-Match", "claimants[0]"}
    alone = await client.post("/v1/assertions", json=body, headers=ledger.auth("writer"))
    assert fields_of(alone) == {"claimants[0]"}  # the same words from the writer's rules
    assert problem(alone, 422)["errors"] == [
        e for e in problem(response, 422)["errors"] if e["field"] == "claimants[0]"
    ]


async def test_a_query_parameter_named_like_a_field_hides_no_body_problem(
    client: Client, ledger: Ledger
) -> None:
    body = assertion_body(claimants=["nobody"], value={"status": "confirmed"})
    for path in ("/v1/assertions?claimants=1&value=2", "/v1/assertions?x=1"):
        response = await client.post(path, json=body, headers=ledger.auth("writer"))
        assert {"claimants[0]", "value"} <= fields_of(response), path
    odd = {**body, "claimants.x": 1, "value[0]": 2}  # unknown keys named like fields
    response = await client.post("/v1/assertions", json=odd, headers=ledger.auth("writer"))
    assert fields_of(response) == {"claimants.x", "value[0]", "claimants[0]", "value"}


async def test_malformed_json_is_a_422_on_body(client: Client, ledger: Ledger) -> None:
    headers = {**ledger.auth("writer"), "Content-Type": "application/json"}
    response = await client.post("/v1/assertions", content=b'{"subject": ', headers=headers)
    assert fields_of(response) == {"body"}
    response = await client.post("/v1/assertions", content=b"[1, 2]", headers=headers)
    assert fields_of(response) == {"body"}
    # half a surrogate pair: not "truncated", as the JSON reader calls it, but what it is
    size = await log_size(client, ledger)
    half = json.dumps(assertion_body(quote="x \ud800 y")).encode()
    assert b"\\ud800" in half
    response = await client.post("/v1/assertions", content=half, headers=headers)
    assert problem(response, 422)["errors"] == [
        {
            "field": "body",
            "message": "Malformed JSON: a \\uD800-\\uDBFF escape (the first half of a "
            "surrogate pair) has no second half: it is not text",
        }
    ]
    assert await log_size(client, ledger) == size


async def test_retract(client: Client, ledger: Ledger) -> None:
    writer, reader = ledger.auth("writer"), ledger.auth("reader")
    size = await log_size(client, ledger)
    path = f"/v1/assertions/{INCREMENT}"

    first = await client.post(f"{path}/retract", json={"reason": "entered twice"}, headers=writer)
    assert first.status_code == 201
    receipt = first.json()
    assert set(receipt) == {"seq", "recorded_at", "hash"}
    assert receipt["seq"] == size + 1
    event = await last_event(client, ledger)
    assert event["type"] == "AssertionRetracted"
    assert event["stream"] == f"subject:{DEPLOYMENT}"

    detail = (await client.get(path, headers=reader)).json()
    assert detail["retracted"] == {
        "seq": receipt["seq"],
        "reason": "entered twice",
        "recorded_at": receipt["recorded_at"],
    }
    before = (await client.get(path, params={"seq": size}, headers=reader)).json()
    assert before["retracted"] is None
    estimate = await client.get(f"/v1/subjects/{DEPLOYMENT}/estimates/{TROOPS}", headers=reader)
    assert estimate.json()["estimate"] == {"low": 10000, "high": 12000, "best": None}

    twice = await client.post(f"{path}/retract", json={"reason": "again"}, headers=writer)
    assert "already retracted" in problem(twice, 409)["detail"]
    unknown = await client.post(
        "/v1/assertions/no-such-assertion/retract", json={"reason": "x"}, headers=writer
    )
    problem(unknown, 404)
    no_reason = await client.post(f"/v1/assertions/{FALL_2024}/retract", json={}, headers=writer)
    assert fields_of(no_reason) == {"reason"}
    for blank in ("", " ", "\n\t"):  # a reason says something; a ranking's too
        for what, body in (("retract", {}), ("rank", {"rank": "deprecated"})):
            refused = await client.post(
                f"/v1/assertions/{FALL_2024}/{what}", json={**body, "reason": blank}, headers=writer
            )
            [error] = problem(refused, 422)["errors"]
            assert error["field"] == "reason"
            assert error["message"].startswith("expected text that is not blank"), error
    assert await log_size(client, ledger) == size + 1


async def test_rank(client: Client, ledger: Ledger) -> None:
    writer, reader = ledger.auth("writer"), ledger.auth("reader")
    path = f"/v1/assertions/{FALL_2024}"
    assert (await client.get(path, headers=reader)).json()["rank"] == {
        "rank": "normal",
        "reason": None,
        "seq": None,
    }
    ranked = await client.post(
        f"{path}/rank", json={"rank": "deprecated", "reason": "disinformation"}, headers=writer
    )
    assert ranked.status_code == 201
    assert set(ranked.json()) == {"seq", "recorded_at", "hash"}
    assert (await last_event(client, ledger))["type"] == "AssertionRanked"
    assert (await client.get(path, headers=reader)).json()["rank"] == {
        "rank": "deprecated",
        "reason": "disinformation",
        "seq": ranked.json()["seq"],
    }
    view = await client.get(f"/v1/subjects/{DEPLOYMENT}/estimates/{TROOPS}", headers=reader)
    assert view.json()["estimate"] is None, "a deprecated baseline no longer counts"

    size = await log_size(client, ledger)
    bad = await client.post(f"{path}/rank", json={"rank": "best", "reason": ""}, headers=writer)
    assert fields_of(bad) == {"rank", "reason"}
    unknown = await client.post(
        "/v1/assertions/no-such-assertion/rank",
        json={"rank": "preferred", "reason": "x"},
        headers=writer,
    )
    problem(unknown, 404)
    assert await log_size(client, ledger) == size


async def test_a_malformed_id_in_a_write_path_is_named_with_the_body(
    client: Client, ledger: Ledger
) -> None:
    writer = ledger.auth("writer")
    size = await log_size(client, ledger)
    for path, body, fields in [
        ("/v1/assertions/No%20Such/retract", {"reason": "x"}, {"assertion_id"}),
        ("/v1/assertions/No%20Such/retract", {}, {"assertion_id", "reason"}),
        ("/v1/assertions/-x/rank", {"rank": "preferred", "reason": "x"}, {"assertion_id"}),
        ("/v1/assertions/-x/rank", {"rank": "best", "reason": "x"}, {"assertion_id", "rank"}),
    ]:
        assert fields_of(await client.post(path, json=body, headers=writer)) == fields
    for body, fields in [({"name": "X"}, {"source_id"}), ({"name": ""}, {"source_id", "name"})]:
        patched = await client.patch("/v1/sources/UK%20MoD", json=body, headers=writer)
        assert fields_of(patched) == fields
    assert await log_size(client, ledger) == size


async def test_a_write_header_given_twice_is_named(ledger: Ledger) -> None:
    """Over a real connection (the test client would join the copies into one line)."""
    auth = list(ledger.auth("writer").items())
    async with live(ledger) as client:
        size = (await head(client, ledger))["size"]
        for twice, field in [
            ([("If-Match", '"1"'), ("If-Match", '"2"')], "If-Match"),
            ([("Idempotency-Key", "a"), ("Idempotency-Key", "a")], "Idempotency-Key"),
            ([("Content-Type", "application/json")] * 2, "Content-Type"),
        ]:
            response = await client.post(
                "/v1/assertions",
                content=json.dumps(assertion_body(assertion_id="twice")),
                headers=[*auth, *twice],
            )
            assert fields_of(response) == {field}
        assert (await head(client, ledger))["size"] == size


@pytest.mark.parametrize("public_read", [False, True])
async def test_two_authorization_headers_are_a_401(ledger: Ledger, public_read: bool) -> None:
    """Parsers and proxies differ on which copy of a repeated header wins, so a request
    with two is refused whichever comes first: on the fast write path, on litestar's, and
    with anonymous reads open as well."""
    admin, reader = ledger.auth("admin")["Authorization"], ledger.auth("reader")["Authorization"]
    async with live(ledger, public_read=public_read) as client:
        size = (await head(client, ledger))["size"]
        for tokens in ([admin, reader], [reader, admin]):
            both = [("Authorization", t) for t in tokens]
            fast = await client.post("/v1/assertions", json=assertion_body(), headers=both)
            routed = await client.post(
                f"/v1/assertions/{FALL_2024}/rank",
                json={"rank": "preferred", "reason": "r"},
                headers=both,
            )
            read = await client.get("/v1/log/head", headers=both)
            for response in (fast, routed, read):
                assert response.headers["WWW-Authenticate"] == "Bearer"
                detail = problem(response, 401)["detail"]
                assert detail == "send one Authorization header, not several"
        assert (await head(client, ledger))["size"] == size


def _legacy_names(db: Path) -> None:
    """Names as versions before session 11 let them in: one trailing newline."""
    claims = [
        factories.quantity(
            low,
            low + 1,
            stated_at="2025-01",
            subject="old\n",
            prop="troops.deployed\n",
            claimants=("old-src\n",),
            assertion_id=f"{name}\n",
        )
        for low, name in ((1, "old-a"), (3, "old-b"))
    ]
    with factories.ledger(db) as store:
        factories.run(store, factories.source("old-src\n"), *claims)


async def test_names_an_earlier_version_let_in_stay_reachable(ledger: Ledger) -> None:
    """A trailing newline is refused in a new name, but a ledger may hold such names from
    before: each can still be read, listed, cited, retracted, ranked and superseded."""
    _legacy_names(ledger.db)
    reader, writer = ledger.auth("reader"), ledger.auth("writer")
    async with live(ledger) as client:

        async def ok(method: str, path: str, **kwargs: Any) -> Any:
            response = await client.request(method, path, **kwargs)
            assert response.status_code in (200, 201), (path, response.text)
            return response.json()

        assert (await ok("GET", "/v1/sources/old-src%0A", headers=reader))["id"] == "old-src\n"
        view = await ok("GET", "/v1/subjects/old%0A/estimates/troops.deployed%0A", headers=reader)
        assert view["basis"] == ["old-b\n"]
        timeline = await ok("GET", "/v1/subjects/old%0A/timeline", headers=reader)
        assert len(timeline["items"]) == 2
        cited = await ok("GET", "/v1/assertions?claimant=old-src%0A", headers=reader)
        assert len(cited["items"]) == 2
        subjects = await ok("GET", "/v1/subjects?limit=1", headers=reader)
        cursor = subjects["next"]
        assert await ok("GET", "/v1/subjects", params={"cursor": cursor}, headers=reader)
        await ok("POST", "/v1/assertions/old-b%0A/retract", json={"reason": "x"}, headers=writer)
        await ok(
            "POST",
            "/v1/assertions/old-a%0A/rank",
            json={"rank": "preferred", "reason": "x"},
            headers=writer,
        )
        body = assertion_body(
            assertion_id="new-a",
            subject="old",
            claimants=["old-src\n"],
        )
        await ok("POST", "/v1/assertions", json=body, headers=writer)
        for field, bad in [("subject", "fresh\n"), ("assertion_id", "fresh\n")]:
            refused = await client.post("/v1/assertions", json={**body, field: bad}, headers=writer)
            assert fields_of(refused) == {field}
        new_source = await client.post("/v1/sources", json=source_body(id="x\n"), headers=writer)
        assert fields_of(new_source) == {"id"}

        # an idempotency key's request is its method, path and body: a path that ends in a
        # newline must not pass for another path with a body that starts with one
        change = json.dumps({"name": "Renamed"})
        key = {**writer, "Idempotency-Key": "k1", "Content-Type": "application/json"}
        await ok("PATCH", "/v1/sources/old-src%0A", content=change, headers=key)
        other = await client.patch("/v1/sources/old-src", content="\n" + change, headers=key)
        assert fields_of(other) == {"Idempotency-Key"}


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("kind", "military\n", "starting with a letter"),
        ("country", "GB\n", "two capital letters"),
        ("id", "UK MoD", "1 to 64 of a-z"),
        ("name", "a\u0000b", "without control characters"),
        ("name", "", "not blank"),
        ("name", " \t ", "not blank"),
        ("name", "Daily\n", "without control characters"),
        ("name", "bell\u0007", "without control characters"),
        ("name", "Mo\u202eD KU", "bidirectional overrides"),
        ("name", "\u2066MoD\u2069", "bidirectional overrides"),
        ("name", "x" * 201, "length <= 200"),
    ],
)
async def test_a_bad_field_of_a_new_source_is_named_with_its_rule_in_words(
    client: Client, ledger: Ledger, field: str, value: str, words: str
) -> None:
    writer = ledger.auth("writer")
    response = await client.post("/v1/sources", json=source_body(**{field: value}), headers=writer)
    assert fields_of(response) == {field}
    message = response.json()["errors"][0]["message"]
    assert words in message
    assert "regex" not in message


async def test_each_name_of_an_assertion_is_refused_with_its_own_rule(
    client: Client, ledger: Ledger
) -> None:
    body = assertion_body(subject="Sub ject", property="Prop", assertion_id="A!")
    body["document"] = {**body["document"], "url": "ftp://x"}  # a copy: the dict is shared
    response = await client.post("/v1/assertions", json=body, headers=ledger.auth("writer"))
    messages = {e["field"]: e["message"] for e in response.json()["errors"]}
    assert "'.' and '-'" in messages["subject"]
    assert "'.', '_' and '-'" in messages["property"]
    assert "'.', '_' and '-'" in messages["assertion_id"]
    assert "http:// or https://" in messages["document.url"]
    assert not [m for m in messages.values() if "regex" in m or "assertion id" in m]


async def test_a_key_given_twice_in_a_body_is_named(client: Client, ledger: Ledger) -> None:
    """Parsers differ on which copy wins; the ledger takes neither and names the key."""
    writer = ledger.auth("writer")
    size = await log_size(client, ledger)
    body = json.dumps(assertion_body(assertion_id="twice"))[:-1]
    for extra, fields in [
        (', "quote": "another quote"}', {"quote"}),
        (', "quot\\u0065": "escaped"}', {"quote"}),
        (
            ', "document": {"publisher": "A", "published_at": "2025", "publisher": "B"}}',
            {"document", "document.publisher"},
        ),
        (', "quote": "", "subject": "x"}', {"quote", "subject"}),
    ]:
        response = await client.post(
            "/v1/assertions",
            content=body + extra,
            headers={**writer, "Content-Type": "application/json"},
        )
        assert fields_of(response) == fields, extra
    assert await log_size(client, ledger) == size


async def test_supersede_shows_in_the_detail(client: Client, ledger: Ledger) -> None:
    writer, reader = ledger.auth("writer"), ledger.auth("reader")
    correction = assertion_body(
        assertion_id="correction",
        supersedes=FALL_2024,
        claimants=["us-intel"],
        value={"low": 11000, "high": 12000},
        stated_at="2025-01",
    )
    recorded = await client.post("/v1/assertions", json=correction, headers=writer)
    assert recorded.status_code == 201
    old = (await client.get(f"/v1/assertions/{FALL_2024}", headers=reader)).json()
    assert old["superseded_by"] == "correction"
    earlier = await client.get(
        f"/v1/assertions/{FALL_2024}", params={"seq": recorded.json()["seq"] - 1}, headers=reader
    )
    assert earlier.json()["superseded_by"] is None
    new = (await client.get("/v1/assertions/correction", headers=reader)).json()
    assert new["supersedes"] == FALL_2024
    assert new["recorded_seq"] == recorded.json()["seq"]
    view = f"/v1/subjects/{DEPLOYMENT}/estimates/{TROOPS}"
    before = await client.get(view, params={"as_of": "2024-12"}, headers=reader)
    assert before.json()["basis"] == [FALL_2024], "a correction does not reach back"
    after = await client.get(view, params={"as_of": "2025-02"}, headers=reader)
    assert after.json()["basis"] == ["correction"]


# ---- nothing appended by a failed request ----

FAILING: list[tuple[str, str, str, Any, dict[str, str]]] = [
    # (role, method, path, body, extra headers)
    ("anonymous", "POST", "/v1/assertions", assertion_body(), {}),
    ("reader", "POST", "/v1/assertions", assertion_body(), {}),
    ("auditor", "POST", "/v1/sources", source_body(), {}),
    ("revoked", "PATCH", "/v1/sources/ap", {"name": "AP"}, {}),
    ("writer", "POST", "/v1/sources", source_body(id="ap"), {}),
    ("writer", "POST", "/v1/assertions", assertion_body(assertion_id=FALL_2024), {}),
    ("writer", "POST", "/v1/assertions", assertion_body(), {"If-Match": '"1"'}),
    ("writer", "POST", "/v1/assertions", assertion_body(), {"If-Match": "soon"}),
    ("writer", "POST", "/v1/assertions", assertion_body(stated_at="last fall"), {}),
    ("writer", "POST", "/v1/assertions/nope/retract", {"reason": "x"}, {}),
    ("writer", "POST", "/v1/assertions", {"quote": "x" * (1024 * 1024)}, {}),
    ("writer", "PATCH", "/v1/sources/nope", {"name": "x"}, {}),
    ("admin", "POST", "/v1/assertions", assertion_body(), {"Idempotency-Key": ""}),
]


@pytest.mark.parametrize(("role", "method", "path", "body", "extra"), FAILING)
async def test_a_failed_request_appends_nothing(
    client: Client,
    ledger: Ledger,
    role: str,
    method: str,
    path: str,
    body: Any,
    extra: dict[str, str],
) -> None:
    reader = ledger.auth("reader")
    head = (await client.get("/v1/log/head", headers=reader)).json()
    headers = {} if role == "anonymous" else ledger.auth(role)
    response = await client.request(method, path, json=body, headers={**headers, **extra})
    assert response.status_code >= 400
    problem(response, response.status_code)
    assert (await client.get("/v1/log/head", headers=reader)).json() == head


BLANKS = ["\u200b", "\u3164", "\ufeff\u2800", "\u00ad ", "\u200f\u061c", "\u115f\u034f"]
"""Texts that show nothing though a pattern of spaces sees letters in them."""


def _blank_writes(text: str) -> list[tuple[str, str, dict[str, Any], str]]:
    """Each write whose name, quote or reason is `text`: method, path, body, the field
    named."""
    document = {"publisher": text, "published_at": "2025"}
    return [
        ("POST", "/v1/assertions", assertion_body(quote=text), "quote"),
        ("POST", "/v1/sources", source_body(name=text), "name"),
        ("PATCH", "/v1/sources/kr-jcs", {"name": text}, "name"),
        ("POST", "/v1/assertions", assertion_body(document=document), "document.publisher"),
        ("POST", f"/v1/assertions/{INCREMENT}/retract", {"reason": text}, "reason"),
        (
            "POST",
            f"/v1/assertions/{INCREMENT}/rank",
            {"rank": "deprecated", "reason": text},
            "reason",
        ),
    ]


@pytest.mark.parametrize("text", BLANKS)
async def test_a_name_or_reason_that_shows_nothing_is_refused(
    client: Client, ledger: Ledger, text: str
) -> None:
    """A source's name, a publisher, a quote and a reason "may not be blank": invisible
    characters and fillers alone are blank too (they passed the patterns, which see only
    spaces; a quote has no pattern but its length, so spaces alone passed too)."""
    admin = ledger.auth("admin")
    head = (await client.get("/v1/log/head", headers=admin)).json()
    for method, path, body, field in _blank_writes(text):
        response = await client.request(method, path, json=body, headers=admin)
        assert fields_of(response) == {field}, (path, response.json())
        assert "must not be blank" in response.json()["errors"][0]["message"]
    spaces = await client.post("/v1/assertions", json=assertion_body(quote=" \t "), headers=admin)
    assert spaces.json()["errors"] == [{"field": "quote", "message": BLANK}]
    assert (await client.get("/v1/log/head", headers=admin)).json() == head
    shown = "UK \u00adMinistry"  # an invisible character among letters is not blank
    response = await client.post("/v1/sources", json=source_body(name=shown), headers=admin)
    assert response.status_code == 201


async def test_a_timelines_changes_keep_what_a_later_correction_replaced(
    client: Client, ledger: Ledger
) -> None:
    """c2 corrects c1 and is itself corrected by c3, each stated a month later: the items
    are the live assertions alone, but the changes give the value the view gives at each
    month, c2's included (a correction stated later does not reach back)."""
    subject = "delta"
    writer = ledger.auth("writer")
    for n, (month, low) in enumerate((("2025-01", 10), ("2025-02", 20), ("2025-03", 30)), 1):
        body = assertion_body(
            assertion_id=f"c{n}",
            subject=subject,
            stated_at=month,
            value={"low": low, "high": low},
            supersedes=f"c{n - 1}" if n > 1 else None,
        )
        assert (await client.post("/v1/assertions", json=body, headers=writer)).status_code == 201
    reader = ledger.auth("reader")
    timeline = (await client.get(f"/v1/subjects/{subject}/timeline", headers=reader)).json()
    live = [i["assertion"]["assertion_id"] for i in timeline["items"]]
    figures = {"low": 0, "high": 0, "best": None}
    assert timeline["changes"] == [
        {"property": TROOPS, "stated_at": month, "value": {**figures, "low": n, "high": n}}
        for month, n in (("2025-01", 10), ("2025-02", 20), ("2025-03", 30))
    ], live
    for change in timeline["changes"]:
        path = f"/v1/subjects/{subject}/estimates/{TROOPS}"
        view = await client.get(path, params={"as_of": change["stated_at"]}, headers=reader)
        assert view.json()["estimate"] == change["value"]


# ---- Idempotency-Key ----


async def test_idempotency_key_replays_the_first_answer(client: Client, ledger: Ledger) -> None:
    headers = {**ledger.auth("writer"), "Idempotency-Key": "import-42"}
    first = await client.post("/v1/assertions", json=assertion_body(), headers=headers)
    assert first.status_code == 201
    size = await log_size(client, ledger)

    again = await client.post("/v1/assertions", json=assertion_body(), headers=headers)
    assert again.status_code == first.status_code
    assert again.content == first.content
    assert await log_size(client, ledger) == size

    other = await client.post("/v1/assertions", json=assertion_body(quote="other"), headers=headers)
    assert fields_of(other) == {"Idempotency-Key"}
    assert await log_size(client, ledger) == size

    # the same key on another path is another request, so it is refused too
    elsewhere = await client.post("/v1/sources", json=source_body(), headers=headers)
    assert fields_of(elsewhere) == {"Idempotency-Key"}

    for bad in ("", "x" * 256, "a\tb"):
        refused = await client.post(
            "/v1/assertions",
            json=assertion_body(),
            headers={**ledger.auth("writer"), "Idempotency-Key": bad},
        )
        assert fields_of(refused) == {"Idempotency-Key"}

    source = {**ledger.auth("writer"), "Idempotency-Key": "source-1"}
    created = await client.post("/v1/sources", json=source_body(), headers=source)
    replay = await client.post("/v1/sources", json=source_body(), headers=source)
    assert (created.status_code, replay.status_code) == (201, 201)
    assert replay.content == created.content


async def test_idempotency_key_survives_a_restart(ledger: Ledger) -> None:
    headers = {**ledger.auth("writer"), "Idempotency-Key": "k-1"}
    async with serve(ledger) as client:
        first = await client.post("/v1/assertions", json=assertion_body(), headers=headers)
        assert first.status_code == 201
        size = await log_size(client, ledger)
    async with serve(ledger) as client:
        again = await client.post("/v1/assertions", json=assertion_body(), headers=headers)
        assert (again.status_code, again.content) == (201, first.content)
        other = await client.post("/v1/assertions", json=assertion_body(quote="x"), headers=headers)
        assert fields_of(other) == {"Idempotency-Key"}
        assert await log_size(client, ledger) == size


async def test_a_201_locates_what_it_recorded(client: Client, ledger: Ledger) -> None:
    """`Location` names the new assertion (a server-made id too) or source; a replayed
    answer carries it again, and what registered nothing (a 200, a refusal) carries none."""
    reader, writer = ledger.auth("reader"), ledger.auth("writer")
    keyed = {**writer, "Idempotency-Key": "located-1"}
    made = await client.post("/v1/assertions", json=assertion_body(), headers=keyed)
    assert made.status_code == 201
    made_id = made.json()["assertion_id"]
    assert made.headers["Location"] == f"/v1/assertions/{made_id}"
    found = await client.get(made.headers["Location"], headers=reader)
    assert (found.status_code, found.json()["assertion_id"]) == (200, made_id)
    replayed = await client.post("/v1/assertions", json=assertion_body(), headers=keyed)
    assert (replayed.content, replayed.headers["Location"]) == (
        made.content,
        made.headers["Location"],
    )

    chosen = await client.post(
        "/v1/assertions", json=assertion_body(assertion_id="chosen.id-1"), headers=writer
    )
    assert chosen.headers["Location"] == "/v1/assertions/chosen.id-1"
    taken = await client.post(
        "/v1/assertions", json=assertion_body(assertion_id="chosen.id-1"), headers=writer
    )
    problem(taken, 409)
    assert "Location" not in taken.headers

    source = await client.post("/v1/sources", json=source_body(id="located"), headers=writer)
    assert source.status_code == 201
    assert source.headers["Location"] == "/v1/sources/located"
    assert (await client.get(source.headers["Location"], headers=reader)).status_code == 200
    again = await client.post("/v1/sources", json=source_body(id="located"), headers=writer)
    assert again.status_code == 200
    assert "Location" not in again.headers


# ---- If-Match ----


async def test_if_match_takes_the_version_from_a_view(client: Client, ledger: Ledger) -> None:
    reader, writer = ledger.auth("reader"), ledger.auth("writer")
    view = await client.get(f"/v1/subjects/{DEPLOYMENT}/estimates/{TROOPS}", headers=reader)
    etag = view.headers["ETag"]
    assert etag == f'"{view.json()["version"]}"'
    status = await client.get(
        f"/v1/subjects/{DEPLOYMENT}/statuses/deployment.status", headers=reader
    )
    timeline = await client.get(f"/v1/subjects/{DEPLOYMENT}/timeline", headers=reader)
    assert status.headers["ETag"] == timeline.headers["ETag"] == etag

    fresh = await client.post(
        "/v1/assertions", json=assertion_body(), headers={**writer, "If-Match": etag}
    )
    assert fresh.status_code == 201
    size = await log_size(client, ledger)
    stale = await client.post(
        "/v1/assertions", json=assertion_body(), headers={**writer, "If-Match": etag}
    )
    assert str(view.json()["version"]) in problem(stale, 412)["detail"]
    assert await log_size(client, ledger) == size

    moved = await client.get(f"/v1/subjects/{DEPLOYMENT}/estimates/{TROOPS}", headers=reader)
    assert moved.headers["ETag"] == f'"{view.json()["version"] + 1}"'
    assert stale.headers["ETag"] == moved.headers["ETag"]  # what to read again and retry on
    retried = await client.post(
        "/v1/assertions",
        json=assertion_body(),
        headers={**writer, "If-Match": stale.headers["ETag"]},
    )
    assert retried.status_code == 201
    new_subject = await client.post(
        "/v1/assertions",
        json=assertion_body(subject="new-subject"),
        headers={**writer, "If-Match": 'W/"0"'},
    )
    assert new_subject.status_code == 201


async def test_if_match_beyond_any_version_is_a_422(client: Client, ledger: Ledger) -> None:
    writer = ledger.auth("writer")
    size = await log_size(client, ledger)
    largest = await client.post(
        "/v1/assertions", json=assertion_body(), headers={**writer, "If-Match": f'"{2**63 - 1}"'}
    )
    assert str(2**63 - 1) in problem(largest, 412)["detail"]
    for version in (str(2**63), str(2**64), str(10**40), "1" * 5000):
        beyond = await client.post(
            "/v1/assertions", json=assertion_body(), headers={**writer, "If-Match": f'"{version}"'}
        )
        assert fields_of(beyond) == {"If-Match"}, beyond.text
    padded = await client.post(
        "/v1/assertions",
        json=assertion_body(),
        headers={**writer, "If-Match": '"' + "0" * 5000 + '"'},
    )
    assert fields_of(padded) == {"If-Match"}, padded.text
    assert await log_size(client, ledger) == size


async def test_if_match_is_the_etag_as_written(client: Client, ledger: Ledger) -> None:
    """A version with a leading 0 or an unbalanced quote is refused, never taken for the
    ETag it resembles: `"01"` is not the subject's `"1"` (nor `"1` or `1"`)."""
    writer, reader = ledger.auth("writer"), ledger.auth("reader")
    view = await client.get(f"/v1/subjects/{DEPLOYMENT}/estimates/{TROOPS}", headers=reader)
    version = view.json()["version"]
    size = await log_size(client, ledger)
    for header in (
        f'"0{version}"',
        f"00{version}",
        f'W/"0{version}"',
        f'"{version}',
        f'{version}"',
    ):
        response = await client.post(
            "/v1/assertions", json=assertion_body(), headers={**writer, "If-Match": header}
        )
        assert fields_of(response) == {"If-Match"}, (header, response.text)
    assert await log_size(client, ledger) == size
    for form in ('"{}"', "{}", 'W/"{}"'):  # quoted, bare and weak: each the current version
        header = form.format(version)
        response = await client.post(
            "/v1/assertions", json=assertion_body(), headers={**writer, "If-Match": header}
        )
        assert response.status_code == 201, (header, response.text)
        version += 1
    assert await log_size(client, ledger) == size + 3


# ---- limits ----


async def test_a_body_over_one_mib_is_a_413(client: Client, ledger: Ledger) -> None:
    size = await log_size(client, ledger)
    body = assertion_body(note="x" * (1024 * 1024))
    response = await client.post("/v1/assertions", json=body, headers=ledger.auth("writer"))
    assert "1048576" in problem(response, 413)["detail"]
    assert await log_size(client, ledger) == size


@pytest.mark.parametrize("path", ["/v1/events", "/v1/assertions", "/v1/sources", "/v1/subjects"])
async def test_limit_is_1_to_1000(client: Client, ledger: Ledger, path: str) -> None:
    reader = ledger.auth("reader")
    for bad in ("1001", "0", "many"):
        response = await client.get(path, params={"limit": bad}, headers=reader)
        assert fields_of(response) == {"limit"}
    assert (await client.get(path, params={"limit": 1000}, headers=reader)).status_code == 200


async def _stream_version(client: Client, ledger: Ledger, stream: str) -> int:
    return int(max(e["version"] for e in await all_events(client, ledger) if e["stream"] == stream))


@pytest.mark.parametrize("what", ["assertion", "source"])
async def test_reading_one_assertion_or_source_gives_the_version_its_writes_match(
    client: Client, ledger: Ledger, what: str
) -> None:
    """The ETag of `GET /v1/assertions/{id}` is its subject's version and that of
    `GET /v1/sources/{id}` the source's, each as of the seq read at: what If-Match on a
    retraction, a ranking or a PATCH compares, so a client need not read a view first."""
    reader, writer = ledger.auth("reader"), ledger.auth("writer")
    if what == "assertion":
        path, stream = f"/v1/assertions/{INCREMENT}", f"subject:{DEPLOYMENT}"
        write, body = f"{path}/rank", {"rank": "preferred", "reason": "checked"}
    else:
        path, stream = "/v1/sources/ap", "source:ap"
        write, body = path, {"name": "The AP"}
    read = await client.get(path, headers=reader)
    assert read.headers["ETag"] == f'"{await _stream_version(client, ledger, stream)}"'
    head_only = await client.head(path, headers=reader)
    assert head_only.headers["ETag"] == read.headers["ETag"]
    before = read.json()["seq"]
    method = "POST" if what == "assertion" else "PATCH"
    done = await client.request(
        method, write, json=body, headers={**writer, "If-Match": read.headers["ETag"]}
    )
    assert done.status_code in (200, 201), done.text
    again = await client.request(
        method, write, json=body, headers={**writer, "If-Match": read.headers["ETag"]}
    )
    problem(again, 412)  # the read's version is stale now
    now = await client.get(path, headers=reader)
    assert int(now.headers["ETag"].strip('"')) == int(read.headers["ETag"].strip('"')) + 1
    assert again.headers["ETag"] == now.headers["ETag"], "a 412 names the version to retry on"
    then = await client.get(path, params={"seq": before}, headers=reader)
    assert then.headers["ETag"] == read.headers["ETag"], "as of the seq read at"


@pytest.mark.parametrize("write", ["retract", "rank", "update source", "register source"])
async def test_if_match_guards_every_write_on_its_stream(
    client: Client, ledger: Ledger, write: str
) -> None:
    """A client that sends a precondition is protected by it on every write, not only on
    a new assertion: a stale version is a 412 and appends nothing."""
    writer = ledger.auth("writer")
    if write in ("retract", "rank"):
        path = f"/v1/assertions/{INCREMENT}/{write}"
        body: dict[str, Any] = {"reason": "checked again"}
        body |= {"rank": "preferred"} if write == "rank" else {}
        stream, method = f"subject:{DEPLOYMENT}", "POST"
    elif write == "update source":
        path, body, stream, method = "/v1/sources/ap", {"name": "AP"}, "source:ap", "PATCH"
    else:
        path, body, stream, method = "/v1/sources", source_body(id="fresh"), "source:fresh", "POST"
    version = 0 if write == "register source" else await _stream_version(client, ledger, stream)
    size = await log_size(client, ledger)
    stale = await client.request(
        method, path, json=body, headers={**writer, "If-Match": f'"{version + 1}"'}
    )
    assert str(version) in problem(stale, 412)["detail"]
    assert await log_size(client, ledger) == size
    done = await client.request(
        method, path, json=body, headers={**writer, "If-Match": f'"{version}"'}
    )
    assert done.status_code in (200, 201), done.text
    assert await log_size(client, ledger) == size + 1
    assert await _stream_version(client, ledger, stream) == version + 1
