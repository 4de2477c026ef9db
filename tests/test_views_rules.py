"""The quantity rules and assertion lifecycles (supersession, retraction, rank)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ledger.sqlite_store import SqliteStore
from projections import views
from tests.factories import at, ledger, plain, quantity, rank, retract, run, source


@pytest.fixture
def lg(tmp_path: Path) -> Iterator[SqliteStore]:
    with ledger(tmp_path / "l.db") as store:
        run(store, source("src-a"), source("src-b"), source("src-c"))
        yield store


def qview(
    store: SqliteStore, as_of: str | None = None, seq: int | None = None
) -> views.QuantityView:
    return views.quantity_view(store.reader(), "s", "troops", at(store, as_of, seq=seq))


def est(view: views.QuantityView) -> object:
    return plain(view.estimate)


# ---- baseline, ties, increments ----


def test_ties_on_stated_at_go_to_the_higher_seq(lg: SqliteStore) -> None:
    run(lg, quantity(100, 100, 100, stated_at="2025-03", assertion_id="first"))
    # the same first instant, written at another precision
    run(lg, quantity(200, 200, 200, stated_at="2025-03-01T00:00:00Z", assertion_id="second"))
    view = qview(lg)
    assert view.basis == ["second"]
    assert est(view) == {"low": 200, "high": 200, "best": 200}


def test_the_latest_stated_total_wins_whatever_the_record_order(lg: SqliteStore) -> None:
    run(lg, quantity(300, 300, stated_at="2025-06", assertion_id="later"))
    run(lg, quantity(100, 100, stated_at="2025-01", assertion_id="earlier"))
    assert qview(lg).basis == ["later"]
    assert qview(lg, "2025-05").basis == ["earlier"]


def test_increments_need_a_baseline(lg: SqliteStore) -> None:
    run(lg, quantity(50, 60, 55, stated_at="2025-02", mode="increment", assertion_id="inc"))
    view = qview(lg)
    assert view.estimate is None
    assert view.basis == []
    assert view.spread is None
    assert view.claimants == []


def test_increments_count_by_valid_time_when_both_are_given(lg: SqliteStore) -> None:
    run(
        lg,
        quantity(1000, 1000, 1000, stated_at="2025-03", valid_to="2024-11", assertion_id="base"),
        # starts on the first instant after November: counts
        quantity(
            10,
            10,
            10,
            stated_at="2025-01",
            mode="increment",
            valid_from="2024-12",
            assertion_id="dec",
        ),
        # starts inside the baseline's period: does not count, although stated later
        quantity(
            20,
            20,
            20,
            stated_at="2025-04",
            mode="increment",
            valid_from="2024-11-15",
            assertion_id="mid-nov",
        ),
    )
    view = qview(lg)
    assert view.basis == ["base", "dec"]
    assert est(view) == {"low": 1010, "high": 1010, "best": 1010}


def test_increments_count_by_statement_time_when_a_valid_time_is_missing(lg: SqliteStore) -> None:
    run(
        lg,
        quantity(1000, 1200, stated_at="2025-02", valid_to="2025-01", assertion_id="base"),
        quantity(5, 5, 5, stated_at="2025-01", mode="increment", assertion_id="before"),
        quantity(7, 8, 7, stated_at="2025-02", mode="increment", assertion_id="same-time"),
        quantity(30, 40, 35, stated_at="2025-03", mode="increment", assertion_id="after"),
    )
    view = qview(lg)
    assert view.basis == ["base", "after"]
    # the baseline has no best, so the sum has none
    assert est(view) == {"low": 1030, "high": 1240, "best": None}


def test_best_is_summed_when_every_part_has_one(lg: SqliteStore) -> None:
    run(
        lg,
        quantity(100, 200, 150, stated_at="2025-01", assertion_id="base"),
        quantity(10, 20, 15, stated_at="2025-02", mode="increment", assertion_id="i1"),
        quantity(1, 2, 1, stated_at="2025-03", mode="increment", assertion_id="i2"),
    )
    assert est(qview(lg)) == {"low": 111, "high": 222, "best": 166}
    assert qview(lg).basis == ["base", "i1", "i2"]
    run(lg, quantity(1, 1, None, stated_at="2025-04", mode="increment", assertion_id="i3"))
    assert est(qview(lg)) == {"low": 112, "high": 223, "best": None}


def test_claimants_show_their_latest_total_and_the_spread(lg: SqliteStore) -> None:
    run(
        lg,
        quantity(100, 100, stated_at="2025-01", claimants=("src-a", "src-b"), assertion_id="ab"),
        quantity(300, 400, stated_at="2025-02", claimants=("src-b",), assertion_id="b"),
        quantity(50, 60, stated_at="2025-03", claimants=("src-c",), mode="increment"),
    )
    view = qview(lg)
    assert [(c.claimant, c.assertion_id) for c in view.claimants] == [
        ("src-a", "ab"),
        ("src-b", "b"),
    ]
    assert plain(view.spread) == {"low": 100, "high": 400}


# ---- time zones and reduced precision ----


def test_offsets_order_by_the_instant_they_name(lg: SqliteStore) -> None:
    # 01:00 at +02:00 on 1 March is 23:00Z on 28 February: earlier than 23:30Z
    run(lg, quantity(200, 200, stated_at="2025-02-28T23:30:00Z", assertion_id="utc"))
    run(lg, quantity(100, 100, stated_at="2025-03-01T01:00:00+02:00", assertion_id="offset"))
    view = qview(lg)
    assert view.basis == ["utc"]
    assert {c.stated_at for c in view.claimants} == {"2025-02-28T23:30:00Z"}
    # a day's as_of is a UTC day: it holds the offset statement, made on the 28th in UTC
    assert qview(lg, "2025-02-28T23:15:00Z").basis == ["offset"]
    assert qview(lg, "2025-02-28").basis == ["utc"]


def test_a_reduced_as_of_means_the_end_of_its_period(lg: SqliteStore) -> None:
    run(lg, quantity(1, 1, stated_at="2025-03-31T23:59:59.999999Z", assertion_id="late-march"))
    assert qview(lg, "2025-03").basis == ["late-march"]
    assert qview(lg, "2025").basis == ["late-march"]
    assert qview(lg, "2025-03-31").basis == ["late-march"]
    assert qview(lg, "2025-03-31T23:59:59Z").basis == []
    assert qview(lg, "2025-02").basis == []


def test_a_reduced_stated_at_counts_from_its_first_instant(lg: SqliteStore) -> None:
    run(lg, quantity(1, 1, stated_at="2025-03", assertion_id="march"))
    assert qview(lg, "2025-03-01T00:00:00Z").basis == ["march"]
    assert qview(lg, "2025-02-28T23:59:59.999999Z").basis == []
    assert qview(lg, "2025-03-01T00:00:00Z").as_of == "2025-03-01T00:00:00Z"


# ---- supersession, retraction, rank ----


def test_a_correction_does_not_reach_back_before_its_statement(lg: SqliteStore) -> None:
    run(lg, quantity(100, 100, stated_at="2025-01", assertion_id="orig"))
    run(lg, quantity(120, 120, stated_at="2025-03", assertion_id="fix", supersedes="orig"))
    assert qview(lg).basis == ["fix"]
    assert [c.assertion_id for c in qview(lg).claimants] == ["fix"]
    assert qview(lg, "2025-02").basis == ["orig"]


def test_a_correction_stated_earlier_displaces_the_original_everywhere_after(
    lg: SqliteStore,
) -> None:
    run(lg, quantity(100, 100, stated_at="2025-03", assertion_id="orig"))
    run(lg, quantity(90, 90, stated_at="2025-01", assertion_id="fix", supersedes="orig"))
    assert qview(lg).basis == ["fix"]
    assert qview(lg, "2025-02").basis == ["fix"]


def test_retracting_the_correction_revives_the_original(lg: SqliteStore) -> None:
    run(lg, quantity(100, 100, stated_at="2025-01", assertion_id="orig"))
    fixed = run(lg, quantity(120, 120, stated_at="2025-02", assertion_id="fix", supersedes="orig"))
    run(lg, retract("fix"))
    assert qview(lg).basis == ["orig"]
    fixed_seq = fixed.events[0].seq
    assert qview(lg, seq=fixed_seq).basis == ["fix"]
    detail = views.assertion_detail(lg.reader(), "orig", at(lg))
    assert detail is not None
    assert detail.superseded_by is None
    earlier = views.assertion_detail(lg.reader(), "orig", at(lg, seq=fixed_seq))
    assert earlier is not None
    assert earlier.superseded_by == "fix"


def test_supersession_chains(lg: SqliteStore) -> None:
    run(
        lg,
        quantity(1, 1, stated_at="2025-01", assertion_id="v1"),
        quantity(2, 2, stated_at="2025-02", assertion_id="v2", supersedes="v1"),
        quantity(3, 3, stated_at="2025-03", assertion_id="v3", supersedes="v2"),
    )
    assert qview(lg).basis == ["v3"]
    assert qview(lg, "2025-02").basis == ["v2"]
    run(lg, retract("v3"))
    assert qview(lg).basis == ["v2"]  # v1 is still superseded by v2
    run(lg, rank("v2", "deprecated"))
    assert qview(lg).basis == ["v1"]  # a deprecated superseder lets the original stand
    v1 = views.assertion_detail(lg.reader(), "v1", at(lg))
    assert v1 is not None
    assert v1.superseded_by is None


def test_two_corrections_of_one_assertion(lg: SqliteStore) -> None:
    run(
        lg,
        quantity(1, 1, stated_at="2025-01", assertion_id="v1"),
        quantity(2, 2, stated_at="2025-02", assertion_id="fix-a", supersedes="v1"),
        quantity(3, 3, stated_at="2025-03", assertion_id="fix-b", supersedes="v1"),
    )
    detail = views.assertion_detail(lg.reader(), "v1", at(lg))
    assert detail is not None
    assert detail.superseded_by == "fix-b"
    run(lg, retract("fix-b"))
    detail = views.assertion_detail(lg.reader(), "v1", at(lg))
    assert detail is not None
    assert detail.superseded_by == "fix-a"
    assert qview(lg).basis == ["fix-a"]


def test_a_retraction_leaves_earlier_seqs_alone(lg: SqliteStore) -> None:
    recorded = run(lg, quantity(100, 100, stated_at="2025-01", assertion_id="gone"))
    retracted = run(lg, retract("gone", "typed into the wrong subject"))
    seq = recorded.events[0].seq
    assert qview(lg, seq=seq).basis == ["gone"]
    assert qview(lg).basis == []
    before = views.assertion_detail(lg.reader(), "gone", at(lg, seq=seq))
    after = views.assertion_detail(lg.reader(), "gone", at(lg))
    assert before is not None
    assert before.retracted is None
    assert after is not None
    assert after.retracted is not None
    assert plain(after.retracted) == {
        "seq": retracted.events[0].seq,
        "reason": "typed into the wrong subject",
        "recorded_at": retracted.events[0].recorded_at,
    }
    assert views.assertion_detail(lg.reader(), "gone", at(lg, seq=seq - 1)) is None


def test_deprecated_assertions_do_not_count(lg: SqliteStore) -> None:
    run(lg, quantity(100, 100, stated_at="2025-01", assertion_id="old"))
    run(lg, quantity(999, 999, stated_at="2025-02", assertion_id="disinfo", claimants=("src-b",)))
    ranked = run(lg, rank("disinfo", "deprecated", "planted story"))
    view = qview(lg)
    assert view.basis == ["old"]
    assert [c.claimant for c in view.claimants] == ["src-a"]
    assert qview(lg, seq=ranked.events[0].seq - 1).basis == ["disinfo"]
    detail = views.assertion_detail(lg.reader(), "disinfo", at(lg))
    assert detail is not None
    assert plain(detail.rank) == {
        "rank": "deprecated",
        "reason": "planted story",
        "seq": ranked.events[0].seq,
    }
    run(lg, rank("disinfo", "normal", "cleared"))
    assert qview(lg).basis == ["disinfo"]


def test_a_preferred_total_is_the_baseline_while_it_is_live(lg: SqliteStore) -> None:
    run(
        lg,
        quantity(100, 100, stated_at="2025-01", assertion_id="trusted"),
        quantity(500, 500, stated_at="2025-02", assertion_id="newer", claimants=("src-b",)),
        quantity(5, 5, stated_at="2025-03", mode="increment", assertion_id="inc"),
    )
    assert qview(lg).basis == ["newer", "inc"]
    run(lg, rank("trusted", "preferred"))
    view = qview(lg)
    assert view.basis == ["trusted", "inc"]
    assert est(view) == {"low": 105, "high": 105, "best": None}
    # claimants and spread are not affected by rank
    assert plain(view.spread) == {"low": 100, "high": 500}
    run(lg, retract("trusted"))
    assert qview(lg).basis == ["newer", "inc"]


def test_unranked_assertions_show_the_default_rank(lg: SqliteStore) -> None:
    run(lg, quantity(1, 1, stated_at="2025-01", assertion_id="x"))
    detail = views.assertion_detail(lg.reader(), "x", at(lg))
    assert detail is not None
    assert plain(detail.rank) == {"rank": "normal", "reason": None, "seq": None}
    assert views.assertion_detail(lg.reader(), "nope", at(lg)) is None
