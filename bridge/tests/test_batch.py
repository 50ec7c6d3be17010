"""Group commit: one batch of deliveries stored as one transaction (SQLite and PostgreSQL).

The writer hands a batch of ingest work to ``Domain.ingest_batch``, which writes all raw
payloads and all events with one statement each (PostgreSQL: one round trip). These tests pin
what that must not change: per delivery, exactly the new events are stored and counted, a key
repeated inside one batch is new once, and consent is decided once per new event, in order.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from conftest import make_settings, text_message
from wagw_bridge.db import Database, DBError, GroupCommitWriter, Tx, run_items
from wagw_bridge.events import parse_delivery
from wagw_bridge.observability import Pseudonymizer
from wagw_bridge.service import Domain, IngestResult, IngestWork


@pytest.fixture
def store(database: str, tmp_path: Path) -> Any:
    settings = make_settings(database, tmp_path)
    db = Database(settings.database, settings.sqlite_synchronous)
    now = int(time.time())
    db.migrate(now)
    conn = db.connect()
    domain = Domain(settings, Pseudonymizer(settings.pseudonym_key.encoded()))

    def work(payload: Any) -> IngestWork:
        text = json.dumps(payload)
        raw_id = hashlib.sha256(text.encode()).hexdigest()
        return domain.ingest_work(parse_delivery(payload, now), raw_id, text, now)

    def batch(*works: IngestWork) -> list[IngestResult]:
        results: list[IngestResult] = db.run(conn, lambda tx: run_items(tx, works), lazy=True)
        return results

    def count(table: str, where: str = "") -> int:
        sql = f"SELECT COUNT(*) FROM {table}" + (f" WHERE {where}" if where else "")
        return int(db.run(conn, lambda tx: tx.one(sql))[0])

    yield work, batch, count
    db.close_all()
    conn.close()


def test_batch_with_duplicate_and_new_stores_the_new_one(store: Any) -> None:
    work, batch, count = store
    old = text_message("Hallo")
    assert batch(work(old))[0].stored == 1
    new = text_message("Noch eine Frage")
    redelivered, fresh = batch(work(old), work(new))
    assert (redelivered.stored, redelivered.duplicates) == (0, 1)
    assert redelivered.kinds == [("message", False)]
    assert (fresh.stored, fresh.duplicates) == (1, 0)
    assert fresh.kinds == [("message", True)]
    assert count("event") == 2
    assert count("raw_payload") == 2


def test_key_repeated_inside_one_batch_is_new_once(store: Any) -> None:
    work, batch, count = store
    payload = text_message("Hallo")
    # the same message twice, and once more inside a differently serialised delivery
    again = json.loads(json.dumps(payload))
    again["entry"][0]["id"] = "another-entry-id"
    first, second, third = batch(work(payload), work(payload), work(again))
    assert (first.stored, first.duplicates) == (1, 0)
    assert (second.stored, second.duplicates) == (0, 1)
    assert (third.stored, third.duplicates) == (0, 1)
    assert count("event") == 1
    assert count("raw_payload") == 2  # two distinct bodies


def test_consent_in_one_batch_decided_in_order_once(store: Any) -> None:
    work, batch, count = store
    start = text_message("START")
    confirm = text_message("JA")
    results = batch(work(start), work(start), work(confirm))
    assert [[action for action, _ in r.ledger] for r in results] == [
        ["requested"],
        [],
        ["confirmed"],
    ]
    assert count("consent_ledger", "action = 'requested'") == 1
    assert count("consent_ledger", "action = 'confirmed'") == 1
    assert count("outbox") == 1  # one confirmation request, not two
    assert count("event") == 2


def test_empty_delivery_in_a_batch(store: Any) -> None:
    work, batch, count = store
    empty = {"object": "whatsapp_business_account", "entry": []}
    results = batch(work(empty), work(text_message("Hallo")))
    assert (results[0].events, results[0].stored) == (0, 0)
    assert results[1].stored == 1
    assert count("raw_payload") == 2


class _Deadlock(Exception):
    sqlstate = "40P01"


def commit_batch(tmp_path: Path, runner: Callable[[Tx, Any], list[str]], items: int) -> list[Any]:
    """Hand ``items`` work items whose batch runner is ``runner`` to a real writer's batch commit."""
    db = Database(str(tmp_path / "w.sqlite3"))
    db.migrate(int(time.time()))

    class Item:
        run_batch = staticmethod(runner)

        def __call__(self, tx: Tx) -> str:
            return runner(tx, [self])[0]

    async def main() -> list[Any]:
        writer = GroupCommitWriter(db)
        await writer.start()
        try:
            return writer._commit_batch_locked([Item() for _ in range(items)])
        finally:
            await writer.stop()

    return asyncio.run(main())


def test_writer_retries_a_batch_that_hit_a_deadlock(tmp_path: Path) -> None:
    """A batch aborted by a deadlock runs again as one batch, not one item at a time."""
    calls: list[int] = []

    def runner(tx: Tx, items: Any) -> list[str]:
        calls.append(len(items))
        if len(calls) == 1:
            raise _Deadlock("deadlock detected")
        tx.execute("SELECT 1")
        return [f"ok{i}" for i in range(len(items))]

    assert commit_batch(tmp_path, runner, 3) == ["ok0", "ok1", "ok2"]
    assert calls == [3, 3]


def test_writer_runs_other_failures_one_by_one(tmp_path: Path) -> None:
    calls: list[int] = []

    def runner(tx: Tx, items: Any) -> list[str]:
        calls.append(len(items))
        if len(items) > 1:
            raise DBError("one bad item")
        return ["ok"]

    assert commit_batch(tmp_path, runner, 2) == ["ok", "ok"]
    assert calls == [2, 1, 1]
