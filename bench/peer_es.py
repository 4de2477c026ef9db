"""The peer's side of target 6: the same three jobs done with `eventsourcing` 9.5.6 on SQLite.

Only imported when eventsourcing is installed (`pip install eventsourcing==9.5.6`); it is
never a dependency of the ledger.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any
from uuid import UUID

from eventsourcing.application import Application  # type: ignore[import-not-found,unused-ignore]
from eventsourcing.domain import Aggregate, event  # type: ignore[import-not-found,unused-ignore]


class Claims(Aggregate):  # type: ignore[misc,unused-ignore]
    """A subject's property and the claims made about it, as an event-sourced aggregate."""

    def __init__(self, subject: str) -> None:
        self.subject = subject
        self.count = 0
        self.low = 0
        self.high = 0

    @event("Recorded")  # type: ignore[misc,untyped-decorator,unused-ignore]
    def record(self, claim: dict[str, Any]) -> None:
        self.count += 1
        value = claim.get("value") or {}
        if claim.get("mode") == "increment":
            self.low += value.get("low", 0)
            self.high += value.get("high", 0)
        elif "low" in value:
            self.low, self.high = value["low"], value["high"]


def open_app(path: Path) -> Any:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    env = {"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": str(path)}
    return Application(env=env)


def appends(path: Path, claims: list[dict[str, Any]], callers: int) -> tuple[Any, float]:
    """Each caller saves its own aggregate after every event; returns the app and seconds."""
    app = open_app(path)
    aggregates = [Claims(f"subject-{i}") for i in range(callers)]
    app.save(*aggregates)
    share = len(claims) // callers

    def caller(i: int) -> None:
        aggregate = aggregates[i]
        for claim in claims[i * share : (i + 1) * share]:
            aggregate.record(claim)
            app.save(aggregate)

    threads = [threading.Thread(target=caller, args=(i,)) for i in range(callers)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return app, time.perf_counter() - start


def read_all(app: Any) -> tuple[int, float]:
    """Every event of the log, decoded back into domain events."""
    start = time.perf_counter()
    count, after = 0, 1
    while True:
        page = app.recorder.select_notifications(start=after, limit=1000)
        if not page:
            break
        for notification in page:
            app.mapper.to_domain_event(notification)
        count += len(page)
        after = page[-1].id + 1
    return count, time.perf_counter() - start


def history(path: Path, claims: list[dict[str, Any]]) -> tuple[Any, UUID]:
    """One aggregate with one event per claim, saved 100 events at a time."""
    app = open_app(path)
    aggregate = Claims("subject-history")
    for i, claim in enumerate(claims, start=1):
        aggregate.record(claim)
        if i % 100 == 0:
            app.save(aggregate)
    app.save(aggregate)
    return app, aggregate.id


def state_at(app: Any, aggregate_id: UUID, version: int) -> float:
    start = time.perf_counter()
    app.repository.get(aggregate_id, version=version)
    return time.perf_counter() - start
