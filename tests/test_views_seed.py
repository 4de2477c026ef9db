"""The seed's expected answers (fixtures/README.md), through the views."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from ledger.sqlite_store import SqliteStore
from projections import views
from tests.factories import DEPLOYMENT, at, ledger, plain, run, seed_commands

TROOPS = "troops.deployed"
CASUALTIES = "casualties.killed_or_wounded"
STATUS = "deployment.status"
FALL = "ap-2025-04-28.troops-fall-2024"
EXTRA = "ap-2025-04-28.troops-additional-early-2025"


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SqliteStore]:
    path: Path = tmp_path_factory.mktemp("seed") / "l.db"
    with ledger(path) as store:
        run(store, *seed_commands())
        yield store


def test_troops_before_any_statement_have_no_estimate(seeded: SqliteStore) -> None:
    view = views.quantity_view(seeded.reader(), DEPLOYMENT, TROOPS, at(seeded, "2023-12"))
    assert view.estimate is None
    assert view.basis == []
    assert view.spread is None
    assert view.claimants == []


def test_troops_in_february_2025_are_the_fall_figure(seeded: SqliteStore) -> None:
    view = views.quantity_view(seeded.reader(), DEPLOYMENT, TROOPS, at(seeded, "2025-02"))
    assert plain(view.estimate) == {"low": 10000, "high": 12000, "best": None}
    assert view.basis == [FALL]
    assert plain(view.spread) == {"low": 10000, "high": 12000}


@pytest.mark.parametrize("as_of", ["2025-03", "2025-03-01", "2025-04-28", None])
def test_troops_from_march_2025_add_the_increment(seeded: SqliteStore, as_of: str | None) -> None:
    view = views.quantity_view(seeded.reader(), DEPLOYMENT, TROOPS, at(seeded, as_of))
    assert plain(view.estimate) == {"low": 13000, "high": 15000, "best": None}
    assert view.basis == [FALL, EXTRA]
    # the spread counts totals only
    assert plain(view.spread) == {"low": 10000, "high": 12000}
    assert [c.claimant for c in view.claimants] == ["kr-intel", "ua-intel", "us-intel"]
    assert {c.assertion_id for c in view.claimants} == {FALL}


def test_the_quantity_view_encodes_to_the_contract_json(seeded: SqliteStore) -> None:
    view = views.quantity_view(seeded.reader(), DEPLOYMENT, TROOPS, at(seeded, "2025-03"))
    body = msgspec.json.decode(msgspec.json.encode(view))
    assert list(body) == [
        "subject",
        "property",
        "as_of",
        "known_at",
        "seq",
        "version",
        "estimate",
        "basis",
        "spread",
        "claimants",
    ]
    assert body["as_of"] == "2025-03"
    assert body["known_at"] is None
    assert body["seq"] == 27
    assert body["version"] == 10
    assert body["claimants"][0] == {
        "claimant": "kr-intel",
        "low": 10000,
        "high": 12000,
        "best": None,
        "stated_at": "2024",
        "assertion_id": FALL,
    }


def test_casualties_spread_and_latest_baseline(seeded: SqliteStore) -> None:
    view = views.quantity_view(seeded.reader(), DEPLOYMENT, CASUALTIES, at(seeded))
    assert plain(view.spread) == {"low": 1200, "high": 4000}
    assert {c.claimant: c.low for c in view.claimants} == {
        "kr-jcs": 4000,
        "ua-zelenskyy": 4000,
        "us-gov": 1200,
    }
    # Zelenskyy and the U.S. share 2025-04-28; the U.S. figure has the higher seq
    assert plain(view.estimate) == {"low": 1200, "high": 1200, "best": 1200}
    assert view.basis == ["ap-2025-04-28.casualties-us-gov"]


@pytest.mark.parametrize("as_of", ["2025-03", "2025-04-27"])
def test_casualties_before_the_end_of_april_are_the_joint_chiefs(
    seeded: SqliteStore, as_of: str
) -> None:
    view = views.quantity_view(seeded.reader(), DEPLOYMENT, CASUALTIES, at(seeded, as_of))
    assert [c.claimant for c in view.claimants] == ["kr-jcs"]
    assert plain(view.estimate) == {"low": 4000, "high": 4000, "best": 4000}


def test_deployment_is_unreported_before_2024(seeded: SqliteStore) -> None:
    view = views.status_view(seeded.reader(), DEPLOYMENT, STATUS, at(seeded, "2023"))
    assert (view.status, view.since, view.by, view.basis, view.history) == (
        "unreported",
        None,
        [],
        [],
        [],
    )


@pytest.mark.parametrize("as_of", ["2024", "2024-11-30", "2025-04-27", "2025-04-27T23:59:59Z"])
def test_deployment_is_reported_until_the_confirmation(seeded: SqliteStore, as_of: str) -> None:
    view = views.status_view(seeded.reader(), DEPLOYMENT, STATUS, at(seeded, as_of))
    assert view.status == "reported"
    assert view.since == "2024"
    assert view.by == ["kr-intel", "ua-intel", "us-intel"]
    assert view.basis == ["ap-2025-04-28.deployment-reported"]


@pytest.mark.parametrize("as_of", ["2025-04-28", "2025-04-28T00:00:00Z", "2025", None])
def test_deployment_is_confirmed_from_the_28th(seeded: SqliteStore, as_of: str | None) -> None:
    view = views.status_view(seeded.reader(), DEPLOYMENT, STATUS, at(seeded, as_of))
    assert view.status == "confirmed"
    assert view.since == "2025-04-28"
    assert view.by == ["kp-cmc", "kp-kim-jong-un"]
    assert plain(view.history) == [
        {
            "status": "reported",
            "since": "2024",
            "assertion_id": "ap-2025-04-28.deployment-reported",
        },
        {
            "status": "confirmed",
            "since": "2025-04-28",
            "assertion_id": "ap-2025-04-28.deployment-confirmed-cmc",
        },
    ]
    body = msgspec.json.decode(msgspec.json.encode(view))
    assert list(body) == [
        "subject",
        "property",
        "as_of",
        "known_at",
        "seq",
        "version",
        "status",
        "since",
        "by",
        "basis",
        "history",
    ]


def test_timeline_walks_the_subject_in_statement_order(seeded: SqliteStore) -> None:
    view = views.timeline(seeded.reader(), DEPLOYMENT, at(seeded))
    items = [
        (i.assertion.assertion_id, i.kind, plain(i.before), plain(i.after)) for i in view.items
    ]
    assert items[0] == (FALL, "quantity", None, {"low": 10000, "high": 12000, "best": None})
    assert items[1] == ("ap-2025-04-28.deployment-reported", "status", "unreported", "reported")
    assert items[2] == (
        EXTRA,
        "quantity",
        {"low": 10000, "high": 12000, "best": None},
        {"low": 13000, "high": 15000, "best": None},
    )
    stated = [i.assertion.stated_at for i in view.items]
    assert stated[:4] == ["2024", "2024", "2025-03", "2025-03"]
    assert len(view.items) == 10
    assert view.version == 10
    # both confirmations were stated on 2025-04-28: each shows the status before that day
    # and on it, never one the view did not give at any time
    confirmed = [i for i in view.items if i.property == STATUS][-2:]
    assert [(i.before, i.after) for i in confirmed] == [
        ("reported", "confirmed"),
        ("reported", "confirmed"),
    ]


def test_timeline_honours_as_of(seeded: SqliteStore) -> None:
    view = views.timeline(seeded.reader(), DEPLOYMENT, at(seeded, "2025-02"))
    assert [i.assertion.assertion_id for i in view.items] == [
        FALL,
        "ap-2025-04-28.deployment-reported",
    ]


def test_subjects_sources_and_assertions_list(seeded: SqliteStore) -> None:
    conn = seeded.reader()
    subjects = views.list_subjects(conn, at(seeded))
    assert [s.subject for s in subjects.items] == [DEPLOYMENT, "north-korea.russia-relations"]
    first = subjects.items[0]
    assert first.assertions == 10
    assert first.version == 10
    assert first.property_kinds[TROOPS] == "quantity"
    assert first.property_kinds[STATUS] == "status"
    assert first.properties == sorted(first.properties)
    sources = views.list_sources(conn, at(seeded), limit=100)
    assert len(sources.items) == 13
    assert sources.next is None
    assert [s.id for s in sources.items] == sorted(s.id for s in sources.items)
    listed = views.list_assertions(conn, at(seeded), claimant="ua-intel")
    assert [a.assertion_id for a in listed.items] == [
        FALL,
        "ap-2025-04-28.deployment-reported",
        "ap-2025-04-28.battlefield-experience",
        "ap-2025-04-28.kursk-strategy-key",
    ]


def test_property_view_picks_the_kind(seeded: SqliteStore) -> None:
    conn = seeded.reader()
    assert isinstance(views.property_view(conn, DEPLOYMENT, TROOPS, at(seeded)), views.QuantityView)
    assert isinstance(views.property_view(conn, DEPLOYMENT, STATUS, at(seeded)), views.StatusView)
    assert views.property_view(conn, DEPLOYMENT, "nothing.here", at(seeded)) is None
