"""Reading over HTTP: records, listings, the views of the seed, the log and its proofs.

The seed's expected answers are those of `fixtures/README.md`. The log's hashes and proofs
are checked with the verifier in `tests/api_helpers.py`, written from RFC 9162 and the
contract rather than taken from `ledger.merkle`.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import pytest_asyncio

from tests import api_helpers
from tests.api_helpers import (
    CASUALTIES,
    DEPLOYMENT,
    RELATIONS,
    ROOT,
    SEED_EVENTS,
    STATUS,
    TROOPS,
    Client,
    Ledger,
    all_events,
    assertion_body,
    check_chain,
    copy_ledger,
    fields_of,
    leaf_hash,
    make_ledger,
    merkle_root,
    problem,
    serve,
    verify_consistency,
    verify_inclusion,
)

template = api_helpers.template
pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest.fixture(scope="module")
def ledger(template: Ledger, tmp_path_factory: pytest.TempPathFactory) -> Ledger:
    """One copy of the seeded ledger for the module: nothing here appends."""
    return copy_ledger(template, tmp_path_factory.mktemp("reads"))


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def client(ledger: Ledger) -> AsyncIterator[Client]:
    async with serve(ledger) as started:
        yield started


FALL_2024 = "ap-2025-04-28.troops-fall-2024"
INCREMENT = "ap-2025-04-28.troops-additional-early-2025"
ESTIMATES = f"/v1/subjects/{DEPLOYMENT}/estimates"
STATUSES = f"/v1/subjects/{DEPLOYMENT}/statuses"


async def get(client: Client, ledger: Ledger, path: str, **params: Any) -> Any:
    response = await client.get(path, params=params, headers=ledger.auth("reader"))
    assert response.status_code == 200, response.text
    return response.json()


async def walk(client: Client, ledger: Ledger, path: str, **params: Any) -> list[Any]:
    """Every item of a paged listing, following `next`."""
    items: list[Any] = []
    cursor = None
    while True:
        page = await get(client, ledger, path, **params, **({"cursor": cursor} if cursor else {}))
        assert set(page) == {"items", "next", "as_of", "known_at", "seq"}
        assert (page["as_of"], page["known_at"]) == (params.get("as_of"), params.get("known_at"))
        if "seq" in params:
            assert page["seq"] == params["seq"]
        items += page["items"]
        if page["next"] is None:
            return items
        cursor = page["next"]


# ---- records and listings ----


async def test_assertion_detail(client: Client, ledger: Ledger) -> None:
    detail = await get(client, ledger, f"/v1/assertions/{FALL_2024}")
    assert detail["subject"] == DEPLOYMENT
    assert detail["property"] == TROOPS
    assert detail["value"] == {"low": 10000, "high": 12000}
    assert detail["claimants"] == ["us-intel", "kr-intel", "ua-intel"]
    assert (detail["stated_at"], detail["valid_from"], detail["valid_to"]) == (
        "2024",
        "2024-09",
        "2024-11",
    )
    assert detail["mode"] == "total"
    assert detail["qualifier"] == "about"
    assert detail["document"]["publisher"] == "Associated Press"
    assert detail["recorded_seq"] == 14
    assert detail["retracted"] is None
    assert detail["superseded_by"] is None
    assert detail["rank"] == {"rank": "normal", "reason": None, "seq": None}
    head = (await get(client, ledger, "/v1/log/head"))["size"]
    # read alone, it echoes the point in time it was read at, as every view does
    assert (detail["as_of"], detail["known_at"], detail["seq"]) == (None, None, head)
    then = await get(client, ledger, f"/v1/assertions/{FALL_2024}", seq=20)
    assert (then["as_of"], then["known_at"], then["seq"]) == (None, None, 20)
    listed = await get(client, ledger, "/v1/assertions", subject=DEPLOYMENT, limit=1)
    assert "known_at" not in listed["items"][0]  # a page echoes it once, not each item

    too_early = await client.get(
        f"/v1/assertions/{FALL_2024}", params={"seq": 13}, headers=ledger.auth("reader")
    )
    problem(too_early, 404)
    problem(await client.get("/v1/assertions/nope", headers=ledger.auth("reader")), 404)


async def test_list_assertions_filters_and_pages(client: Client, ledger: Ledger) -> None:
    everything = await walk(client, ledger, "/v1/assertions", limit=4)
    assert len(everything) == 14
    assert [a["recorded_seq"] for a in everything] == list(range(14, 28))
    assert everything == (await get(client, ledger, "/v1/assertions"))["items"]

    on_subject = await walk(client, ledger, "/v1/assertions", subject=RELATIONS, limit=1)
    assert len(on_subject) == 4
    assert {a["subject"] for a in on_subject} == {RELATIONS}
    troops = await walk(client, ledger, "/v1/assertions", property=TROOPS, limit=1)
    assert [a["assertion_id"] for a in troops] == [FALL_2024, INCREMENT]
    by_kr_intel = await walk(client, ledger, "/v1/assertions", claimant="kr-intel", limit=1)
    assert [a["assertion_id"] for a in by_kr_intel] == [
        FALL_2024,
        "ap-2025-04-28.deployment-reported",
    ]
    stated_by_2024 = await walk(client, ledger, "/v1/assertions", as_of="2024")
    assert {a["stated_at"] for a in stated_by_2024} == {"2024"}
    assert len(stated_by_2024) == 2
    recorded_by_16 = await walk(client, ledger, "/v1/assertions", seq=16)
    assert [a["recorded_seq"] for a in recorded_by_16] == [14, 15, 16]
    combined = await walk(
        client, ledger, "/v1/assertions", subject=DEPLOYMENT, claimant="ua-intel", as_of="2025-03"
    )
    assert [a["assertion_id"] for a in combined] == [FALL_2024, "ap-2025-04-28.deployment-reported"]

    bad = await client.get(
        "/v1/assertions", params={"cursor": "not-a-cursor"}, headers=ledger.auth("reader")
    )
    assert fields_of(bad) == {"cursor"}
    # a cursor past the point asked was given out by no page there (another log, or a
    # listing read later): refused as `after` past the head is, not answered empty
    for params in ({"cursor": "999999"}, {"seq": "16", "cursor": "20"}):
        past = await client.get("/v1/assertions", params=params, headers=ledger.auth("reader"))
        assert fields_of(past) == {"cursor"}, params
        assert "past the log position asked" in past.json()["errors"][0]["message"]
    edge = await get(client, ledger, "/v1/assertions", seq=16, cursor="16")
    assert (edge["items"], edge["next"]) == ([], None)


async def test_subjects(client: Client, ledger: Ledger) -> None:
    subjects = await walk(client, ledger, "/v1/subjects", limit=1)
    assert [s["subject"] for s in subjects] == [DEPLOYMENT, RELATIONS]
    deployment = subjects[0]
    assert {"subject", "properties", "assertions", "version"} <= set(deployment)
    assert deployment["properties"] == sorted(
        [TROOPS, CASUALTIES, STATUS, "battlefield-experience.gaining", "kursk-strategy.key-role"]
    )
    assert deployment["assertions"] == 10
    assert deployment["version"] == 10
    early = await get(client, ledger, "/v1/subjects", seq=14)
    assert early["items"] == [
        {
            **deployment,
            "properties": [TROOPS],
            "property_kinds": {TROOPS: "quantity"},
            "assertions": 1,
            "version": 1,
        }
    ]


async def test_sources(client: Client, ledger: Ledger) -> None:
    sources = await walk(client, ledger, "/v1/sources", limit=5)
    assert len(sources) == 13
    ids = [s["id"] for s in sources]
    assert ids == sorted(ids)
    assert (await get(client, ledger, "/v1/sources", limit=13))["next"] is None
    ap = await get(client, ledger, "/v1/sources/ap")
    head = (await get(client, ledger, "/v1/log/head"))["size"]
    assert (ap.pop("as_of"), ap.pop("known_at"), ap.pop("seq")) == (None, None, head)
    assert ap == next(s for s in sources if s["id"] == "ap")
    assert (ap["name"], ap["reliability"], ap["registered_seq"]) == ("Associated Press", "B", 13)

    assert [s["id"] for s in await walk(client, ledger, "/v1/sources", seq=2)] == [
        "kr-intel",
        "us-intel",
    ]
    known_at = ap["history"][0]["recorded_at"]
    assert len(await walk(client, ledger, "/v1/sources", known_at=known_at)) == 13
    then = await get(client, ledger, "/v1/sources/ap", known_at=known_at)
    page = await get(client, ledger, "/v1/sources", known_at=known_at, limit=1)
    assert (then["known_at"], then["seq"]) == (known_at, page["seq"])
    assert ap["registered_seq"] <= then["seq"] <= head
    before = await client.get("/v1/sources/ap", params={"seq": 12}, headers=ledger.auth("reader"))
    problem(before, 404)


# ---- the views of the seed ----


async def test_troop_estimates(client: Client, ledger: Ledger) -> None:
    now = await get(client, ledger, f"{ESTIMATES}/{TROOPS}")
    assert now["estimate"] == {"low": 13000, "high": 15000, "best": None}
    assert now["basis"] == [FALL_2024, INCREMENT]
    assert now["spread"] == {"low": 10000, "high": 12000}
    assert (now["as_of"], now["known_at"], now["seq"]) == (None, None, SEED_EVENTS)
    assert {c["claimant"] for c in now["claimants"]} == {"us-intel", "kr-intel", "ua-intel"}

    february = await get(client, ledger, f"{ESTIMATES}/{TROOPS}", as_of="2025-02")
    assert february["estimate"] == {"low": 10000, "high": 12000, "best": None}
    assert february["basis"] == [FALL_2024]
    assert february["as_of"] == "2025-02"
    assert february["spread"] == {"low": 10000, "high": 12000}
    march = await get(client, ledger, f"{ESTIMATES}/{TROOPS}", as_of="2025-03")
    assert march["estimate"] == now["estimate"]
    before_any = await get(client, ledger, f"{ESTIMATES}/{TROOPS}", as_of="2023")
    assert (before_any["estimate"], before_any["basis"], before_any["spread"]) == (None, [], None)
    assert before_any["claimants"] == []
    at_14 = await get(client, ledger, f"{ESTIMATES}/{TROOPS}", seq=14)
    assert at_14["estimate"] == {"low": 10000, "high": 12000, "best": None}
    assert (at_14["seq"], at_14["version"]) == (14, 1)


async def test_casualty_spread(client: Client, ledger: Ledger) -> None:
    view = await get(client, ledger, f"{ESTIMATES}/{CASUALTIES}")
    assert view["spread"] == {"low": 1200, "high": 4000}
    assert sorted((c["claimant"], c["low"], c["high"]) for c in view["claimants"]) == [
        ("kr-jcs", 4000, 4000),
        ("ua-zelenskyy", 4000, 4000),
        ("us-gov", 1200, 1200),
    ]
    march = await get(client, ledger, f"{ESTIMATES}/{CASUALTIES}", as_of="2025-03")
    assert march["spread"] == {"low": 4000, "high": 4000}


async def test_deployment_status(client: Client, ledger: Ledger) -> None:
    view = await get(client, ledger, f"{STATUSES}/{STATUS}")
    assert view["status"] == "confirmed"
    assert view["since"] == "2025-04-28"
    assert sorted(view["by"]) == ["kp-cmc", "kp-kim-jong-un"]
    assert [(h["status"], h["since"]) for h in view["history"]] == [
        ("reported", "2024"),
        ("confirmed", "2025-04-28"),
    ]
    earlier = await get(client, ledger, f"{STATUSES}/{STATUS}", as_of="2025-03")
    assert (earlier["status"], earlier["since"]) == ("reported", "2024")
    assert sorted(earlier["by"]) == ["kr-intel", "ua-intel", "us-intel"]
    nothing = await get(client, ledger, f"{STATUSES}/{STATUS}", as_of="2023")
    assert (nothing["status"], nothing["since"], nothing["history"]) == ("unreported", None, [])


async def test_a_view_of_the_other_kind_is_a_404(client: Client, ledger: Ledger) -> None:
    reader = ledger.auth("reader")
    problem(await client.get(f"{STATUSES}/{TROOPS}", headers=reader), 404)
    problem(await client.get(f"{ESTIMATES}/{STATUS}", headers=reader), 404)
    unclaimed = await get(client, ledger, f"{ESTIMATES}/not-yet-claimed")
    assert (unclaimed["estimate"], unclaimed["version"]) == (None, 10)


async def test_before_its_first_claim_a_property_has_no_kind(
    client: Client, ledger: Ledger
) -> None:
    """A view at a seq before the property's first claim answers as for a property never
    claimed, of either kind: what was recorded later does not change it."""
    reader = ledger.auth("reader")
    firsts = {}
    for prop in (TROOPS, STATUS):
        listed = await get(client, ledger, "/v1/assertions", subject=DEPLOYMENT, property=prop)
        firsts[prop] = min(item["recorded_seq"] for item in listed["items"])
    before = firsts[STATUS] - 1
    early = await get(client, ledger, f"{ESTIMATES}/{STATUS}", seq=str(before))
    never = await get(client, ledger, f"{ESTIMATES}/not-yet-claimed", seq=str(before))
    assert (early["estimate"], early["basis"], early["version"]) == (None, [], never["version"])
    problem(await client.get(f"{ESTIMATES}/{STATUS}?seq={firsts[STATUS]}", headers=reader), 404)
    troops_before = await get(client, ledger, f"{STATUSES}/{TROOPS}", seq=str(firsts[TROOPS] - 1))
    assert (troops_before["status"], troops_before["history"]) == ("unreported", [])
    problem(await client.get(f"{STATUSES}/{TROOPS}?seq={firsts[TROOPS]}", headers=reader), 404)


async def test_timeline(client: Client, ledger: Ledger) -> None:
    timeline = await get(client, ledger, f"/v1/subjects/{DEPLOYMENT}/timeline")
    assert (timeline["subject"], timeline["seq"], timeline["version"]) == (DEPLOYMENT, 27, 10)
    items = timeline["items"]
    assert len(items) == 10
    stated = [item["assertion"]["stated_at"] for item in items]
    assert stated[:2] == ["2024", "2024"]
    troops = [item for item in items if item["property"] == TROOPS]
    assert [(t["before"], t["after"]) for t in troops] == [
        (None, {"low": 10000, "high": 12000, "best": None}),
        ({"low": 10000, "high": 12000, "best": None}, {"low": 13000, "high": 15000, "best": None}),
    ]
    statuses = [(i["before"], i["after"]) for i in items if i["property"] == STATUS]
    assert statuses[0] == ("unreported", "reported")
    assert statuses[-1][1] == "confirmed"
    early = await get(client, ledger, f"/v1/subjects/{DEPLOYMENT}/timeline", as_of="2024")
    assert len(early["items"]) == 2


async def test_a_timeline_of_one_property(client: Client, ledger: Ledger) -> None:
    path = f"/v1/subjects/{DEPLOYMENT}/timeline"
    whole = await get(client, ledger, path)
    for prop in (TROOPS, STATUS, "not-yet-claimed"):
        part = await get(client, ledger, path, property=prop)
        assert part["items"] == [i for i in whole["items"] if i["property"] == prop]
        assert part["changes"] == [c for c in whole["changes"] if c["property"] == prop]
        assert {**part, "items": None, "changes": None} == {
            **whole,
            "items": None,
            "changes": None,
        }
    assert len((await get(client, ledger, path, property=TROOPS))["items"]) == 2
    bad = await client.get(path, params={"property": "a b"}, headers=ledger.auth("reader"))
    assert fields_of(bad) == {"property"}


async def test_a_timeline_in_pages_is_the_whole_timeline(client: Client, ledger: Ledger) -> None:
    """With `limit`, the timeline is paged like every list; without one it is whole."""
    path = f"/v1/subjects/{DEPLOYMENT}/timeline"
    whole = await get(client, ledger, path)
    assert whole["next"] is None
    assert len(whole["items"]) == 10
    for prop in (None, TROOPS, STATUS):
        filtered = {} if prop is None else {"property": prop}
        one = await get(client, ledger, path, **filtered)
        expected = one["items"]
        for limit in (1, 3, 9, 10, 11, 1000):
            items: list[Any] = []
            changes: list[Any] = []
            cursor: str | None = None
            pages = 0
            while pages <= len(expected):  # a cursor that does not move on fails here
                more = {} if cursor is None else {"cursor": cursor}
                page = await get(client, ledger, path, limit=limit, **filtered, **more)
                assert len(page["items"]) <= limit
                assert {**page, "items": None, "changes": None, "next": None} == {
                    **whole,
                    "items": None,
                    "changes": None,
                    "next": None,
                }
                items += page["items"]
                changes += page["changes"]
                pages += 1
                if page["next"] is None:
                    break
                assert len(page["items"]) == limit
                cursor = page["next"]
            else:
                pytest.fail(f"more pages than items: {prop}, limit {limit}")
            assert items == expected, (prop, limit)
            assert changes == one["changes"], (prop, limit)
            assert pages == max(1, -(-len(expected) // limit)), (prop, limit)


async def test_a_timeline_cursor_holds_its_place(template: Ledger, tmp_path: Path) -> None:
    """A cursor names a place in statement order: the page after it starts there even when
    assertions stated earlier (before 1970 too) are recorded meanwhile, and a malformed
    cursor or limit names its field. Appends, so on a copy of its own."""
    ledger = copy_ledger(template, tmp_path)
    path = f"/v1/subjects/{DEPLOYMENT}/timeline"
    async with serve(ledger) as client:
        first = await get(client, ledger, path, limit=4)
        rest = await get(client, ledger, path, cursor=first["next"])
        assert rest["next"] is None  # a cursor alone: every item after its place
        whole = await get(client, ledger, path)
        assert first["items"] + rest["items"] == whole["items"]
        for number, stated in enumerate(["2020", "1969-12-31T23:59:59.999999Z", "0001"]):
            posted = await client.post(
                "/v1/assertions",
                json=assertion_body(assertion_id=f"stated-early-{number}", stated_at=stated),
                headers=ledger.auth("writer"),
            )
            assert posted.status_code == 201, posted.text
        later = await get(client, ledger, path, cursor=first["next"])
        assert later["seq"] == rest["seq"] + 3
        assert [i["assertion"]["assertion_id"] for i in later["items"]] == [
            i["assertion"]["assertion_id"] for i in rest["items"]
        ]
        now = await get(client, ledger, path)
        early = [i["assertion"]["assertion_id"] for i in now["items"][:3]]
        assert early == ["stated-early-2", "stated-early-1", "stated-early-0"]
        paged: list[Any] = []
        cursor: str | None = None
        for _ in range(len(now["items"])):
            page = await get(
                client, ledger, path, limit=1, **({"cursor": cursor} if cursor else {})
            )
            paged += page["items"]
            cursor = page["next"]
            if cursor is None:
                break
        assert paged == now["items"]
        for bad in [
            "x",
            "1",
            "1.",
            ".1",
            "1.2.3",
            "1.-2",
            "1e3.4",
            "1" * 20 + ".1",
            "\u0661.\u0662",
        ]:
            response = await client.get(path, params={"cursor": bad}, headers=ledger.auth("reader"))
            assert fields_of(response) == {"cursor"}, bad
        for bad_limit in ["0", "1001", "-1", "x"]:
            response = await client.get(
                path, params={"limit": bad_limit}, headers=ledger.auth("reader")
            )
            assert fields_of(response) == {"limit"}, bad_limit


async def test_views_at_known_at_equal_views_at_seq(client: Client, ledger: Ledger) -> None:
    events = await all_events(client, ledger)
    for seq in (14, 15, 20, 27):
        recorded_at = events[seq - 1]["recorded_at"]
        if seq < len(events) and events[seq]["recorded_at"] == recorded_at:
            continue  # appended in the same instant as the next one
        for path in (f"{ESTIMATES}/{TROOPS}", f"{STATUSES}/{STATUS}"):
            by_time = await get(client, ledger, path, known_at=recorded_at)
            by_seq = await get(client, ledger, path, seq=seq)
            assert by_time["known_at"] == recorded_at
            assert {**by_time, "known_at": None} == by_seq


@pytest.mark.parametrize(
    ("params", "fields"),
    [
        ({"as_of": "last fall"}, {"as_of"}),
        ({"known_at": "yesterday"}, {"known_at"}),
        ({"seq": 999}, {"seq"}),
        ({"seq": -1}, {"seq"}),
        ({"seq": 3, "known_at": "2025-01-01T00:00:00Z"}, {"seq"}),
        ({"as_of": "2025-13", "known_at": "soon"}, {"as_of", "known_at"}),
    ],
)
async def test_bad_point_in_time_is_a_422(
    client: Client, ledger: Ledger, params: dict[str, Any], fields: set[str]
) -> None:
    response = await client.get(
        f"{ESTIMATES}/{TROOPS}", params=params, headers=ledger.auth("reader")
    )
    assert fields_of(response) == fields


MALFORMED_SLUGS = ("North-Korea", "a b", "x" * 300, "a\x00b", "\ufffd", "-lead", "a_b!")


@pytest.mark.parametrize("bad", MALFORMED_SLUGS)
@pytest.mark.parametrize(
    ("template_path", "fields"),
    [
        ("/v1/subjects/{bad}/estimates/troops.deployed", {"subject"}),
        ("/v1/subjects/north-korea.russia-deployment/estimates/{bad}", {"property"}),
        ("/v1/subjects/{bad}/statuses/{bad}", {"subject", "property"}),
        ("/v1/subjects/{bad}/timeline", {"subject"}),
        ("/v1/sources/{bad}", {"source_id"}),
        ("/v1/assertions/{bad}", {"assertion_id"}),
    ],
)
async def test_a_malformed_path_parameter_is_a_422_naming_it(
    client: Client, ledger: Ledger, template_path: str, fields: set[str], bad: str
) -> None:
    path = template_path.format(bad=quote(bad, safe=""))
    response = await client.get(path, headers=ledger.auth("reader"))
    assert fields_of(response) == fields
    assert "regex" not in response.text, "the rule is said in words"
    # an encoded slash splits the path before any route is chosen: no route, a 404
    split = await client.get(template_path.format(bad="a%2Fb"), headers=ledger.auth("reader"))
    problem(split, 404)


@pytest.mark.parametrize("bad", [*MALFORMED_SLUGS, "a/b"])
async def test_a_malformed_list_filter_is_a_422_naming_it(
    client: Client, ledger: Ledger, bad: str
) -> None:
    for name in ("subject", "property", "claimant"):
        response = await client.get(
            "/v1/assertions", params={name: bad}, headers=ledger.auth("reader")
        )
        assert fields_of(response) == {name}
    response = await client.get(
        "/v1/assertions",
        params={"subject": bad, "property": bad, "claimant": "ok", "limit": 0},
        headers=ledger.auth("reader"),
    )
    assert fields_of(response) == {"subject", "property", "limit"}


@pytest.mark.parametrize(
    "bad", ["5.0", "1e2", "+5", " 5", "0x10", "007", "\u0663", "99999999999999999999"]
)
async def test_a_whole_number_parameter_takes_digits_only(
    client: Client, ledger: Ledger, bad: str
) -> None:
    for path, name, more in [
        ("/v1/events", "after", {}),
        ("/v1/events", "limit", {}),
        ("/v1/assertions", "seq", {}),
        ("/v1/log/consistency", "from", {"to": "2"}),
    ]:
        params = {name: bad, **more}
        response = await client.get(path, params=params, headers=ledger.auth("reader"))
        assert fields_of(response) == {name}, (path, name)
    digits = await get(client, ledger, "/v1/events", after="3", limit="2")
    assert [e["seq"] for e in digits["items"]] == [4, 5]
    assert (await get(client, ledger, "/v1/events", after="0", limit="1"))["next"] == 1


@pytest.mark.parametrize("path", ["/v1/sources", "/v1/subjects"])
async def test_a_cursor_is_an_id_of_the_listing(client: Client, ledger: Ledger, path: str) -> None:
    for bad in [*MALFORMED_SLUGS, "a/b", ".."]:
        response = await client.get(path, params={"cursor": bad}, headers=ledger.auth("reader"))
        assert fields_of(response) == {"cursor"}, bad
    first = await get(client, ledger, path, limit=1)
    rest = await get(client, ledger, path, cursor=first["next"])
    assert rest["items"]
    assert rest["items"][0] != first["items"][0]


async def test_well_formed_names_nothing_holds_are_empty_answers(
    client: Client, ledger: Ledger
) -> None:
    """The slug rules refuse what can never exist; a name that could is answered."""
    view = await get(client, ledger, "/v1/subjects/nobody/estimates/troops.deployed")
    assert view["estimate"] is None
    assert view["basis"] == []
    listing = await get(client, ledger, "/v1/assertions", subject="nobody", claimant="nobody")
    assert listing["items"] == []
    missing = await client.get("/v1/sources/nobody", headers=ledger.auth("reader"))
    problem(missing, 404)


# ---- the log ----


async def test_events_pages_with_after_and_limit(client: Client, ledger: Ledger) -> None:
    first = await get(client, ledger, "/v1/events", limit=10)
    assert [e["seq"] for e in first["items"]] == list(range(1, 11))
    assert first["next"] == 10
    second = await get(client, ledger, "/v1/events", after=first["next"], limit=10)
    assert [e["seq"] for e in second["items"]] == list(range(11, 21))
    last = await get(client, ledger, "/v1/events", after=20, limit=10)
    assert [e["seq"] for e in last["items"]] == list(range(21, 28))
    assert last["next"] is None
    assert (await get(client, ledger, "/v1/events", after=27))["items"] == []
    default = await get(client, ledger, "/v1/events")
    assert len(default["items"]) == 27
    assert default["next"] is None
    event = default["items"][13]
    assert set(event) == {
        "seq",
        "type",
        "stream",
        "version",
        "recorded_at",
        "actor",
        "data",
        "data_sha256",
        "hash",
    }
    assert (event["type"], event["stream"], event["version"], event["actor"]) == (
        "AssertionRecorded",
        f"subject:{DEPLOYMENT}",
        1,
        "test",
    )


async def test_hash_chain_and_merkle_tree_verify_independently(
    client: Client, ledger: Ledger
) -> None:
    events = await all_events(client, ledger)
    check_chain(events)
    leaves = [leaf_hash(e) for e in events]
    head = await get(client, ledger, "/v1/log/head")
    assert head["size"] == len(events)
    assert head["root"] == merkle_root(leaves).hex()

    for size in (0, 1, 2, 7, 8, 13, 27, len(events)):
        root = merkle_root(leaves[:size])
        earlier = await get(client, ledger, "/v1/log/head", size=size)
        assert earlier == {"size": size, "root": root.hex()}, "the root at an earlier size"
        for seq in range(1, size + 1):
            proof = await get(client, ledger, "/v1/log/inclusion", seq=seq, size=size)
            assert (proof["seq"], proof["size"]) == (seq, size)
            assert proof["leaf_hash"] == leaves[seq - 1].hex()
            path = [bytes.fromhex(p) for p in proof["path"]]
            assert verify_inclusion(seq - 1, size, leaves[seq - 1], path, root), (seq, size)
            if path:
                wrong = [path[0][::-1], *path[1:]]
                assert not verify_inclusion(seq - 1, size, leaves[seq - 1], wrong, root)

    for old in (1, 2, 3, 4, 7, 8, 13, 26, 27):
        for new in (old, 8, 16, 27):
            if new < old:
                continue
            proof = await get(client, ledger, "/v1/log/consistency", **{"from": old, "to": new})
            assert (proof["from"], proof["to"]) == (old, new)
            path = [bytes.fromhex(p) for p in proof["path"]]
            old_root, new_root = merkle_root(leaves[:old]), merkle_root(leaves[:new])
            assert verify_consistency(old, new, old_root, new_root, path), (old, new)
            if path and old != new:
                assert not verify_consistency(old, new, new_root, old_root, path)


@pytest.mark.parametrize(
    ("path", "params", "fields"),
    [
        ("/v1/log/inclusion", {"seq": 3, "size": 28}, {"size"}),
        ("/v1/log/inclusion", {"seq": 9, "size": 8}, {"seq"}),
        ("/v1/log/inclusion", {"seq": 0, "size": 8}, {"seq"}),
        ("/v1/log/inclusion", {"size": 8}, {"seq"}),
        ("/v1/log/consistency", {"from": 3, "to": 99}, {"to"}),
        ("/v1/log/consistency", {"from": 9, "to": 8}, {"from"}),
        ("/v1/log/consistency", {"from": "one", "to": 8}, {"from"}),
        ("/v1/log/head", {"size": 29}, {"size"}),
        ("/v1/log/head", {"size": -1}, {"size"}),
        ("/v1/log/head", {"size": "08"}, {"size"}),
    ],
)
async def test_proof_parameters_out_of_range(
    client: Client, ledger: Ledger, path: str, params: dict[str, Any], fields: set[str]
) -> None:
    response = await client.get(path, params=params, headers=ledger.auth("reader"))
    assert fields_of(response) == fields


async def test_an_empty_log(tmp_path: Path) -> None:
    ledger = make_ledger(tmp_path, seed=False)
    async with serve(ledger) as client:
        head = await get(client, ledger, "/v1/log/head")
        assert head == {"size": 0, "root": hashlib.sha256(b"").hexdigest()}
        assert (await client.get("/v1/health")).json() == {"status": "ok", "seq": 0}
        assert await get(client, ledger, "/v1/events") == {"items": [], "next": None}


@pytest.mark.parametrize("role", ["auditor", "admin"])
async def test_audit(client: Client, ledger: Ledger, role: str) -> None:
    response = await client.post("/v1/audit", headers=ledger.auth(role))
    assert response.status_code == 200
    report = response.json()
    head = await get(client, ledger, "/v1/log/head")
    assert report == {  # the contract's fields, then verify's erased and notes
        "ok": True,
        "events": SEED_EVENTS,
        "root": head["root"],
        "first_bad_seq": None,
        "projections_match": True,
        "problems": [],
        "erased": 0,
        "notes": [],
    }


async def test_audit_takes_no_body(client: Client, ledger: Ledger) -> None:
    """The audit takes nothing; a body it is sent anyway is judged as a write's would be,
    not ignored, so a client that thinks it is passing options hears that it is not."""
    auth = ledger.auth("auditor")
    for empty in (b"", b"  \n", b"{}", b" { } "):
        answer = await client.post("/v1/audit", headers=auth, content=empty)
        assert answer.status_code == 200, empty
        assert answer.json()["ok"] is True
    options = await client.post("/v1/audit", headers=auth, json={"full": True, "from": 3})
    assert fields_of(options) == {"full", "from"}
    assert fields_of(await client.post("/v1/audit", headers=auth, content=b"{")) == {"body"}
    as_text = await client.post(
        "/v1/audit", headers={**auth, "Content-Type": "text/plain"}, content=b"full"
    )
    assert "text/plain" in problem(as_text, 415)["detail"]
    huge = await client.post("/v1/audit", headers=auth, content=b" " * (2 << 20))
    problem(huge, 413)
    # and the role comes first, as on every path
    problem(await client.post("/v1/audit", headers=ledger.auth("writer"), json={"x": 1}), 403)


async def test_unknown_paths_and_methods_are_problems(client: Client, ledger: Ledger) -> None:
    problem(await client.get("/v1/nothing-here", headers=ledger.auth("reader")), 404)
    problem(await client.delete("/v1/sources/ap", headers=ledger.auth("admin")), 405)


async def test_health_needs_no_token(client: Client) -> None:
    response = await client.get("/v1/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "seq": SEED_EVENTS}


# ---- the same answers as the command line ----

CLI_CASES: list[tuple[str, str, dict[str, str]]] = [
    (DEPLOYMENT, TROOPS, {"as_of": "2025-02"}),
    (DEPLOYMENT, TROOPS, {"as_of": "2025-03", "seq": "14"}),
    (DEPLOYMENT, CASUALTIES, {"seq": "20"}),
    (DEPLOYMENT, STATUS, {"as_of": "2025-04", "known_at": "KNOWN_AT"}),
]


async def test_point_in_time_answers_equal_the_cli(template: Ledger, tmp_path: Path) -> None:
    ledger = copy_ledger(template, tmp_path)
    async with serve(ledger) as client:
        known_at = (await all_events(client, ledger))[22]["recorded_at"]
    cases = [
        (s, p, {k: known_at if v == "KNOWN_AT" else v for k, v in params.items()})
        for s, p, params in CLI_CASES
    ]
    flags = {"as_of": "--as-of", "known_at": "--known-at", "seq": "--seq"}
    runs = [
        await asyncio.create_subprocess_exec(
            str(ROOT / ".venv" / "bin" / "ledger"),
            "state",
            subject,
            prop,
            *[arg for k, v in params.items() for arg in (flags[k], v)],
            "--db",
            str(ledger.db),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        for subject, prop, params in cases
    ]
    outputs = await asyncio.wait_for(asyncio.gather(*(r.communicate() for r in runs)), 30)
    async with serve(ledger) as client:
        for (subject, prop, params), run, (out, err) in zip(cases, runs, outputs, strict=True):
            assert run.returncode == 0, err.decode()
            kind = "statuses" if prop == STATUS else "estimates"
            view = await get(client, ledger, f"/v1/subjects/{subject}/{kind}/{prop}", **params)
            assert json.loads(out) == view, (subject, prop, params)


async def test_a_listing_held_at_its_first_pages_seq_never_shifts(
    client: Client, ledger: Ledger
) -> None:
    """Each page echoes the log position it was read at; passing it back holds every later
    page there, whatever is appended meanwhile."""
    first = await get(client, ledger, "/v1/assertions", limit=4)
    held = first["seq"]
    assert held == SEED_EVENTS
    posted = await client.post(
        "/v1/assertions",
        json={**assertion_body(), "assertion_id": "appended-while-paging"},
        headers=ledger.auth("writer"),
    )
    assert posted.status_code == 201
    ids = [a["assertion_id"] for a in first["items"]]
    cursor = first["next"]
    while cursor is not None:
        page = await get(client, ledger, "/v1/assertions", limit=4, seq=held, cursor=cursor)
        assert page["seq"] == held
        ids += [a["assertion_id"] for a in page["items"]]
        cursor = page["next"]
    assert "appended-while-paging" not in ids
    assert ids == [
        a["assertion_id"] for a in await walk(client, ledger, "/v1/assertions", seq=held)
    ]
    latest = await get(client, ledger, "/v1/subjects")
    assert latest["seq"] == held + 1


async def test_views_never_claim_a_seq_the_read_side_has_not_folded(
    client: Client, ledger: Ledger
) -> None:
    """Another process appending without the read side (an import, or one killed before
    its final fold) leaves the server's views behind the log: they answer at the seq they
    reflect, a point past it is a 503, and the server's next append folds the rest."""
    from ledger.service import execute_sync
    from ledger.sqlite_store import SqliteStore
    from tests.factories import quantity

    reader = ledger.auth("reader")
    before = (await get(client, ledger, "/v1/log/head"))["size"]
    importer = SqliteStore(ledger.db)  # the write model only, as an import appends
    try:
        for n in range(3):
            command = quantity(n, n + 1, stated_at="2025", subject="imported", claimants=("ap",))
            execute_sync(importer, command, "import")
    finally:
        importer.close()
    head = (await get(client, ledger, "/v1/log/head"))["size"]
    assert head == before + 3

    subjects = await get(client, ledger, "/v1/subjects")
    assert subjects["seq"] == before  # what the views hold, not the log's length
    assert "imported" not in {s["subject"] for s in subjects["items"]}
    view = await get(client, ledger, f"/v1/subjects/{DEPLOYMENT}/estimates/{TROOPS}")
    assert view["seq"] == before
    ahead = await client.get("/v1/subjects", params={"seq": head}, headers=reader)
    refused = problem(ahead, 503)
    assert f"up to seq {before} of {head}" in refused["detail"]
    assert refused["title"] == "Views catching up"  # not "unavailable for writes": a read

    posted = await client.post(
        "/v1/assertions", json=assertion_body(), headers=ledger.auth("writer")
    )
    assert posted.status_code == 201  # the server's writer folds what it finds first
    subjects = await get(client, ledger, "/v1/subjects")
    assert subjects["seq"] == head + 1
    assert "imported" in {s["subject"] for s in subjects["items"]}
