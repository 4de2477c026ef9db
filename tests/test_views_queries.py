"""The status rules, the timeline, points in time and the listings, on small ledgers."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from ledger.errors import InvalidInput
from ledger.sqlite_store import SqliteStore
from projections import pit, views
from tests.factories import at, ledger, plain, quantity, retract, run, source, status


@pytest.fixture
def lg(tmp_path: Path) -> Iterator[SqliteStore]:
    with ledger(tmp_path / "l.db") as store:
        run(store, source("src-a"), source("src-b"), source("src-c"))
        yield store


def qview(
    store: SqliteStore, as_of: str | None = None, seq: int | None = None
) -> views.QuantityView:
    return views.quantity_view(store.reader(), "s", "troops", at(store, as_of, seq=seq))


def sview(store: SqliteStore, as_of: str | None = None, seq: int | None = None) -> views.StatusView:
    return views.status_view(store.reader(), "s", "deployment", at(store, as_of, seq=seq))


# ---- status ----


def test_status_follows_the_latest_decisive_claim(lg: SqliteStore) -> None:
    run(
        lg,
        status("reported", stated_at="2024-01", assertion_id="r1"),
        status("confirmed", stated_at="2024-03", assertion_id="c1", claimants=("src-b",)),
        status("denied", stated_at="2024-05", assertion_id="d1", claimants=("src-c",)),
        status("confirmed", stated_at="2024-07", assertion_id="c2", claimants=("src-b",)),
        status("confirmed", stated_at="2024-09", assertion_id="c3", claimants=("src-a",)),
        status("reported", stated_at="2024-10", assertion_id="r2"),
    )
    view = sview(lg)
    assert view.status == "confirmed"
    assert view.since == "2024-07"
    assert view.basis == ["c2", "c3"]
    assert view.by == ["src-a", "src-b"]
    assert [(h.status, h.since, h.assertion_id) for h in view.history] == [
        ("reported", "2024-01", "r1"),
        ("confirmed", "2024-03", "c1"),
        ("denied", "2024-05", "d1"),
        ("confirmed", "2024-07", "c2"),
    ]
    assert sview(lg, "2024-06").status == "denied"
    assert sview(lg, "2024-02").since == "2024-01"


def test_a_correction_stated_later_keeps_the_status_before_it_in_the_history(
    lg: SqliteStore,
) -> None:
    """d replaces c from 2024-06 on: before then the view said confirmed, so the history
    says so too, though c no longer counts at the head."""
    run(
        lg,
        status("reported", stated_at="2024-01", assertion_id="r"),
        status("confirmed", stated_at="2024-03", assertion_id="c", claimants=("src-b",)),
        status(
            "denied", stated_at="2024-06", assertion_id="d", claimants=("src-b",), supersedes="c"
        ),
    )
    view = sview(lg)
    assert (view.status, view.since, view.basis) == ("denied", "2024-06", ["d"])
    assert [(h.status, h.since, h.assertion_id) for h in view.history] == [
        ("reported", "2024-01", "r"),
        ("confirmed", "2024-03", "c"),
        ("denied", "2024-06", "d"),
    ]
    assert (sview(lg, "2024-04").status, sview(lg, "2024-04").basis) == ("confirmed", ["c"])
    # retracting the correction puts c back at the head, and the history follows
    run(lg, retract("d"))
    assert [(h.status, h.assertion_id) for h in sview(lg).history] == [
        ("reported", "r"),
        ("confirmed", "c"),
    ]


def test_a_change_a_correction_brings_is_dated_at_the_correction(lg: SqliteStore) -> None:
    """c2 corrects the denial d1: confirmed again from 2024-03, as the history says, which
    ran back to 2024-01 (c1, which counts again) and so was not oldest first. The view's
    own `since` stays the contract's: no denial counts, so confirmed since c1."""
    run(
        lg,
        status("confirmed", stated_at="2024-01", assertion_id="c1"),
        status("denied", stated_at="2024-02", assertion_id="d1", claimants=("src-b",)),
        status(
            "confirmed",
            stated_at="2024-03",
            assertion_id="c2",
            claimants=("src-b",),
            supersedes="d1",
        ),
    )
    view = sview(lg)
    assert [(h.status, h.since, h.assertion_id) for h in view.history] == [
        ("confirmed", "2024-01", "c1"),
        ("denied", "2024-02", "d1"),
        ("confirmed", "2024-03", "c2"),
    ]
    assert (view.status, view.since, view.basis) == ("confirmed", "2024-01", ["c1", "c2"])


def test_decisive_claims_at_the_same_time_are_disputed(lg: SqliteStore) -> None:
    run(
        lg,
        status("reported", stated_at="2024-01", assertion_id="r1"),
        status("confirmed", stated_at="2024-03-05", assertion_id="c1", claimants=("src-b",)),
        status("denied", stated_at="2024-03-05T00:00:00Z", assertion_id="d1", claimants=("src-c",)),
    )
    view = sview(lg)
    assert (view.status, view.since, view.basis, view.by) == (
        "disputed",
        "2024-03-05",
        ["c1", "d1"],
        ["src-b", "src-c"],
    )
    # the history moves between statement times, never through a passing state
    assert [(h.status, h.assertion_id) for h in view.history] == [
        ("reported", "r1"),
        ("disputed", "c1"),
    ]
    run(lg, status("denied", stated_at="2024-04", assertion_id="d2", claimants=("src-c",)))
    view = sview(lg)
    assert (view.status, view.since, view.basis) == ("denied", "2024-04", ["d2"])


def test_a_dispute_that_goes_on_is_disputed_since_it_began(lg: SqliteStore) -> None:
    """Both values stated again at a later time, with nothing between holding one alone:
    still the same dispute, since its first time, resting on both times' assertions."""
    run(
        lg,
        status("confirmed", stated_at="2025-01-10", assertion_id="c1", claimants=("src-a",)),
        status("denied", stated_at="2025-01-10", assertion_id="d1", claimants=("src-b",)),
        status("reported", stated_at="2025-03", assertion_id="r1", claimants=("src-c",)),
        status("confirmed", stated_at="2025-06-10", assertion_id="c2", claimants=("src-a",)),
        status("denied", stated_at="2025-06-10", assertion_id="d2", claimants=("src-b",)),
    )
    view = sview(lg)
    assert (view.status, view.since, view.basis) == (
        "disputed",
        "2025-01-10",
        ["c1", "d1", "c2", "d2"],
    )
    assert [(h.status, h.since) for h in view.history] == [("disputed", "2025-01-10")]
    # one value alone in between ends that dispute: the next one begins anew
    run(lg, status("denied", stated_at="2025-04", assertion_id="d-mid", claimants=("src-b",)))
    view = sview(lg)
    assert (view.status, view.since, view.basis) == ("disputed", "2025-06-10", ["c2", "d2"])
    assert [(h.status, h.since) for h in view.history] == [
        ("disputed", "2025-01-10"),
        ("denied", "2025-04"),
        ("disputed", "2025-06-10"),
    ]


def test_reported_since_the_first_live_report(lg: SqliteStore) -> None:
    run(
        lg,
        status("reported", stated_at="2024-05", assertion_id="r-late", claimants=("src-b",)),
        status("reported", stated_at="2024-02", assertion_id="r-early"),
    )
    view = sview(lg)
    assert (view.status, view.since, view.basis, view.by) == (
        "reported",
        "2024-02",
        ["r-early", "r-late"],
        ["src-a", "src-b"],
    )
    run(lg, retract("r-early"))
    assert sview(lg).since == "2024-05"


# ---- the timeline ----


def test_the_timeline_shows_what_a_correction_replaced(lg: SqliteStore) -> None:
    run(
        lg,
        quantity(100, 100, stated_at="2025-01", assertion_id="orig"),
        status("confirmed", stated_at="2025-02", assertion_id="conf"),
        quantity(120, 120, stated_at="2025-03", assertion_id="fix", supersedes="orig"),
    )
    view = views.timeline(lg.reader(), "s", at(lg))
    assert [(i.assertion.assertion_id, plain(i.before), plain(i.after)) for i in view.items] == [
        ("conf", "unreported", "confirmed"),
        (
            "fix",
            {"low": 100, "high": 100, "best": None},
            {"low": 120, "high": 120, "best": None},
        ),
    ]
    early = views.timeline(lg.reader(), "s", at(lg, "2025-02"))
    assert [i.assertion.assertion_id for i in early.items] == ["orig", "conf"]
    orig = early.items[0].assertion
    assert orig.superseded_by == "fix"  # known at the seq, whatever the as_of


def test_a_timeline_refuses_a_limit_out_of_range_as_the_listings_do(lg: SqliteStore) -> None:
    run(lg, quantity(100, 100, stated_at="2025-01"), quantity(110, 110, stated_at="2025-02"))
    for bad in (0, 1001):
        with pytest.raises(InvalidInput) as refused:
            views.timeline(lg.reader(), "s", at(lg), limit=bad)
        assert [e.field for e in refused.value.errors] == ["limit"]
    first = views.timeline(lg.reader(), "s", at(lg), limit=1)
    assert len(first.items) == 1
    assert first.next is not None


# ---- points in time ----


def test_known_at_is_the_seq_recorded_by_then(lg: SqliteStore) -> None:
    first = run(lg, quantity(100, 100, stated_at="2025-01", assertion_id="one"))
    run(lg, quantity(200, 200, stated_at="2025-02", assertion_id="two"))
    event = first.events[0]
    by_time = views.quantity_view(lg.reader(), "s", "troops", at(lg, known_at=event.recorded_at))
    by_seq = qview(lg, seq=event.seq)
    assert by_time.seq == event.seq
    assert by_time.known_at == event.recorded_at
    assert plain(by_time, frozenset({"known_at"})) == plain(by_seq, frozenset({"known_at"}))
    assert at(lg, known_at="2000-01-01T00:00:00Z").seq == 0
    assert at(lg, known_at="9999").seq == at(lg).seq


def test_a_reduced_known_at_stands_for_the_end_of_its_period(lg: SqliteStore) -> None:
    recorded = run(lg, quantity(1, 1, stated_at="2025", assertion_id="one")).events[0].recorded_at
    head = at(lg).seq
    # the day, month and year it was recorded in hold it (their first instant would not)
    for period in (recorded[:10], recorded[:7], recorded[:4]):
        assert at(lg, known_at=period).seq == head, period
        assert at(lg, known_at=period).known_at == period
    assert at(lg, known_at=str(int(recorded[:4]) - 1)).seq == 0


def test_a_known_at_reads_how_far_the_views_reach_and_its_seq_in_one_snapshot(
    lg: SqliteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An append committed between the two reads made the seq look past the views, and a
    view known at a recent time answered a false 503 "catching up" under appends."""
    run(lg, quantity(100, 100, stated_at="2025-01"))
    before = at(lg).seq
    real = pit.head_and_reach

    def then_an_append(conn: sqlite3.Connection) -> tuple[int, int]:
        found = real(conn)
        run(lg, quantity(500, 500, stated_at="2025-05"))  # committed by the writer meanwhile
        return found

    monkeypatch.setattr(pit, "head_and_reach", then_an_append)
    assert at(lg, known_at="9999").seq == before  # not ViewsBehind
    monkeypatch.undo()
    assert at(lg, known_at="9999").seq == before + 1


def test_bad_points_in_time_name_every_field(lg: SqliteStore) -> None:
    with pytest.raises(InvalidInput) as caught:
        at(lg, as_of="last fall", known_at="yesterday")
    assert {e.field for e in caught.value.errors} == {"as_of", "known_at"}
    head = at(lg).seq
    for kwargs in (
        {"known_at": "2025-01-01T00:00:00Z", "seq": 1},
        {"seq": -1},
        {"seq": head + 1},
    ):
        with pytest.raises(InvalidInput) as caught:
            at(lg, **kwargs)
        assert [e.field for e in caught.value.errors] == ["seq"]
    assert at(lg, seq=0).seq == 0
    assert at(lg, seq=head).seq == head


# ---- listings ----


def test_assertions_page_in_record_order(lg: SqliteStore) -> None:
    ids = [f"q{i}" for i in range(5)]
    for i, aid in enumerate(ids):
        run(lg, quantity(i, i, stated_at=f"2025-0{i + 1}", assertion_id=aid))
    run(lg, status("reported", stated_at="2025-01", assertion_id="st"))
    seen: list[str] = []
    cursor = None
    while True:
        page = views.list_assertions(lg.reader(), at(lg), prop="troops", limit=2, cursor=cursor)
        seen += [a.assertion_id for a in page.items]
        if page.next is None:
            break
        cursor = page.next
    assert seen == ids
    stated = views.list_assertions(lg.reader(), at(lg, "2025-02"), subject="s")
    assert [a.assertion_id for a in stated.items] == ["q0", "q1", "st"]
    early = views.list_assertions(lg.reader(), at(lg, seq=at(lg).seq - 3))
    assert [a.assertion_id for a in early.items] == ["q0", "q1", "q2"]
    for bad in ({"cursor": "abc"}, {"limit": 0}, {"limit": 1001}):
        with pytest.raises(InvalidInput):
            views.list_assertions(lg.reader(), at(lg), **bad)


def test_subjects_page_and_count_as_of_a_seq(lg: SqliteStore) -> None:
    run(lg, quantity(1, 1, stated_at="2025", subject="b-subject"))
    mid = at(lg).seq
    run(
        lg,
        quantity(1, 1, stated_at="2025", subject="a-subject"),
        status("reported", stated_at="2025", subject="b-subject", prop="seen"),
        quantity(1, 1, stated_at="2025", subject="c-subject"),
    )
    page = views.list_subjects(lg.reader(), at(lg), limit=2)
    assert [s.subject for s in page.items] == ["a-subject", "b-subject"]
    assert page.next == "b-subject"
    assert page.items[1].properties == ["seen", "troops"]
    assert page.items[1].assertions == 2
    assert page.items[1].version == 2
    rest = views.list_subjects(lg.reader(), at(lg), limit=2, cursor=page.next)
    assert [s.subject for s in rest.items] == ["c-subject"]
    assert rest.next is None
    then = views.list_subjects(lg.reader(), at(lg, seq=mid))
    assert [plain(s) for s in then.items] == [
        {
            "subject": "b-subject",
            "properties": ["troops"],
            "property_kinds": {"troops": "quantity"},
            "assertions": 1,
            "version": 1,
        }
    ]


def test_sources_keep_their_history(lg: SqliteStore) -> None:
    from ledger.commands import SourceChanges, UpdateSource

    registered = at(lg).seq
    run(lg, UpdateSource(id="src-b", changes=SourceChanges(reliability="E")))
    run(lg, UpdateSource(id="src-b", changes=SourceChanges(name="Renamed", country="KR")))
    now = views.get_source(lg.reader(), "src-b", at(lg))
    assert now is not None
    assert (now.name, now.reliability, now.country, now.version) == ("Renamed", "E", "KR", 3)
    assert [h.reliability for h in now.history] == ["B", "E", "E"]
    assert now.registered_seq == 2
    then = views.get_source(lg.reader(), "src-b", at(lg, seq=registered))
    assert then is not None
    assert (then.reliability, then.version) == ("B", 1)
    assert views.get_source(lg.reader(), "src-b", at(lg, seq=1)) is None
    assert views.get_source(lg.reader(), "nobody", at(lg)) is None
    page = views.list_sources(lg.reader(), at(lg), limit=2)
    assert [s.id for s in page.items] == ["src-a", "src-b"]
    assert page.next == "src-b"
    rest = views.list_sources(lg.reader(), at(lg), limit=2, cursor=page.next)
    assert [s.id for s in rest.items] == ["src-c"]
    assert rest.next is None
