"""Racing writers over HTTP: every race has exactly one winner and appends exactly once.

The requests are gathered on one event loop against the app in process; the store runs
every write on its writer thread, where group commit puts many of them in one
transaction, so the losers meet the winner's append inside the same batch.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import httpx
import pytest

from ledger.sqlite_store import SqliteStore
from tests import api_helpers
from tests.api_helpers import (
    DEPLOYMENT,
    TROOPS,
    Ledger,
    all_events,
    assertion_body,
    check_chain,
    source_body,
)
from tests.reliability import head, live

template, ledger = api_helpers.template, api_helpers.ledger

RACERS = 64
FALL_2024 = "ap-2025-04-28.troops-fall-2024"


async def _gather(*requests: Any) -> list[httpx.Response]:
    return list(await asyncio.gather(*requests))


async def _whole(client: httpx.AsyncClient, ledger: Ledger) -> None:
    """The log is gap-free and chains, and the audit replays it to the same tables."""
    check_chain(await all_events(client, ledger))  # type: ignore[arg-type]
    audit = await client.post("/v1/audit", headers=ledger.auth("auditor"))
    assert audit.status_code == 200
    assert audit.json()["ok"], audit.json()["problems"]


async def test_one_if_match_winner(ledger: Ledger, monkeypatch: pytest.MonkeyPatch) -> None:
    batches: list[int] = []
    try_batch = SqliteStore._try_batch

    def counted(self: SqliteStore, batch: list[Any]) -> Any:
        batches.append(len(batch))
        return try_batch(self, batch)

    monkeypatch.setattr(SqliteStore, "_try_batch", counted)
    async with live(ledger) as client:
        view = await client.get(
            f"/v1/subjects/{DEPLOYMENT}/estimates/{TROOPS}", headers=ledger.auth("reader")
        )
        etag = view.headers["etag"]
        before = await head(client, ledger)
        headers = {**ledger.auth("writer"), "If-Match": etag}
        bodies = [assertion_body(quote=f"racer {i}") for i in range(RACERS)]
        answers = await _gather(
            *(client.post("/v1/assertions", json=b, headers=headers) for b in bodies)
        )
        statuses = Counter(a.status_code for a in answers)
        assert statuses == {201: 1, 412: RACERS - 1}
        assert all(
            a.headers["content-type"].startswith("application/problem+json")
            for a in answers
            if a.status_code == 412
        )
        after = await head(client, ledger)
        assert after["size"] == before["size"] + 1
        [won] = [a for a in answers if a.status_code == 201]
        assert won.json()["seq"] == after["size"]
        assert max(batches) > 1  # the racers really met in the writer's queue
        await _whole(client, ledger)


async def test_one_idempotency_key_appends_once(ledger: Ledger) -> None:
    async with live(ledger) as client:
        before = await head(client, ledger)
        headers = {**ledger.auth("writer"), "Idempotency-Key": "retry-storm-1"}
        body = assertion_body(quote="sent once, retried 63 times")
        answers = await _gather(
            *(client.post("/v1/assertions", json=body, headers=headers) for _ in range(RACERS))
        )
        assert {a.status_code for a in answers} == {201}
        assert len({a.content for a in answers}) == 1  # the first answer, byte for byte
        assert (await head(client, ledger))["size"] == before["size"] + 1

        other = assertion_body(quote="another body under the same key")
        reused = await client.post("/v1/assertions", json=other, headers=headers)
        assert reused.status_code == 422
        assert (await head(client, ledger))["size"] == before["size"] + 1
        await _whole(client, ledger)


async def test_one_retraction_wins(ledger: Ledger) -> None:
    async with live(ledger) as client:
        before = await head(client, ledger)
        answers = await _gather(
            *(
                client.post(
                    f"/v1/assertions/{FALL_2024}/retract",
                    json={"reason": f"entered twice ({i})"},
                    headers=ledger.auth("writer"),
                )
                for i in range(RACERS)
            )
        )
        assert Counter(a.status_code for a in answers) == {201: 1, 409: RACERS - 1}
        assert (await head(client, ledger))["size"] == before["size"] + 1
        detail = await client.get(f"/v1/assertions/{FALL_2024}", headers=ledger.auth("reader"))
        assert detail.json()["retracted"] is not None
        await _whole(client, ledger)


async def test_one_owner_per_client_chosen_id_and_source(ledger: Ledger) -> None:
    async with live(ledger) as client:
        before = await head(client, ledger)
        writer = ledger.auth("writer")
        same_id = await _gather(
            *(
                client.post(
                    "/v1/assertions",
                    json=assertion_body(assertion_id="contested-id", quote=f"claim {i}"),
                    headers=writer,
                )
                for i in range(RACERS // 2)
            )
        )
        assert Counter(a.status_code for a in same_id) == {201: 1, 409: RACERS // 2 - 1}

        same_source = await _gather(
            *(client.post("/v1/sources", json=source_body(), headers=writer) for _ in range(16))
        )
        assert Counter(a.status_code for a in same_source) == {201: 1, 200: 15}
        clashing = await _gather(
            *(
                client.post(
                    "/v1/sources", json=source_body(id="fr-dgse", name=f"n{i}"), headers=writer
                )
                for i in range(16)
            )
        )
        assert Counter(a.status_code for a in clashing) == {201: 1, 409: 15}
        assert (await head(client, ledger))["size"] == before["size"] + 3
        await _whole(client, ledger)


def test_opening_a_ledger_while_another_store_appends_never_calls_it_broken(
    tmp_path: Any,
) -> None:
    """The start-up check reads the tail, the tip and the Merkle frontier in one snapshot:
    a commit by another writer between two of those reads (a server appending while the
    command line opens the file) once looked like a payload past the head, and the
    second store refused every append."""
    import threading

    from tests.factories import ledger as open_ledger
    from tests.factories import quantity, run, seed_commands

    path = tmp_path / "l.db"
    stop = threading.Event()
    with open_ledger(path) as busy:
        run(busy, *seed_commands())

        def append() -> None:
            n = 0
            while not stop.is_set():
                n += 1
                run(busy, quantity(n, n + 1, stated_at="2025", subject="s", claimants=("ap",)))

        writers = [threading.Thread(target=append) for _ in range(2)]
        for writer in writers:
            writer.start()
        refusals = []
        try:
            for _ in range(40):
                with open_ledger(path) as other:
                    refusals.append(other.write_refusal)
        finally:
            stop.set()
            for writer in writers:
                writer.join()
        assert busy.size() > 100  # the other store did append throughout
    assert refusals == [None] * 40
