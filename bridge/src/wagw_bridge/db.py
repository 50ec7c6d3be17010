"""Storage: one code path for SQLite (default) and PostgreSQL.

All SQL is written once with ``?`` placeholders and portable types; :class:`Dialect` rewrites
placeholders for psycopg and supplies the few DDL fragments that differ. Both engines support
``INSERT ... ON CONFLICT DO NOTHING``, which gives exactly-once storage of webhook events.

Writes go through :class:`GroupCommitWriter`: one writer thread owns one connection; concurrent
requests queue their work and each batch runs in a single transaction, after whose COMMIT every
waiting request is answered. Reads use per-thread connections (SQLite WAL lets readers run
beside the writer).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import queue
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

log = logging.getLogger("wagw_bridge.db")

T = TypeVar("T")
SCHEMA_VERSION = 3


class DBError(Exception):
    """Storage failure (connection, SQL)."""


class Cursor(Protocol):
    rowcount: int

    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...


@dataclass(frozen=True)
class Dialect:
    name: str
    placeholder: str
    id_pk: str
    bigint: str

    def sql(self, text: str) -> str:
        if self.placeholder == "?":
            return text
        return text.replace("%", "%%").replace("?", self.placeholder)


SQLITE = Dialect("sqlite", "?", "INTEGER PRIMARY KEY AUTOINCREMENT", "INTEGER")
POSTGRES = Dialect("postgresql", "%s", "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY", "BIGINT")

# Schema v1. Times are integer Unix seconds (UTC) in both engines.
# data_class drives retention: 'raw' (payload-level data, default 7 d), 'call' (call records,
# default 90 d); consent proof lives in consent_ledger / call_permission.
SCHEMA_V1 = [
    """CREATE TABLE IF NOT EXISTS schema_version (
        version {bigint} NOT NULL,
        applied_at {bigint} NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS raw_payload (
        id TEXT PRIMARY KEY,
        received_at {bigint} NOT NULL,
        body TEXT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS event (
        id {id_pk},
        dedupe_key TEXT NOT NULL UNIQUE,
        kind TEXT NOT NULL,
        data_class TEXT NOT NULL,
        subject_hash TEXT,
        business_number TEXT,
        ref_id TEXT,
        status TEXT,
        direction TEXT,
        occurred_at {bigint} NOT NULL,
        received_at {bigint} NOT NULL,
        payload_id TEXT,
        data TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS event_subject ON event (subject_hash)",
    "CREATE INDEX IF NOT EXISTS event_class_time ON event (data_class, received_at)",
    """CREATE TABLE IF NOT EXISTS consent_ledger (
        id {id_pk},
        subject_hash TEXT NOT NULL,
        subject TEXT,
        action TEXT NOT NULL,
        purpose TEXT NOT NULL,
        channel TEXT NOT NULL,
        wording_version TEXT NOT NULL,
        source_event TEXT NOT NULL,
        occurred_at {bigint} NOT NULL,
        recorded_at {bigint} NOT NULL,
        evidence TEXT,
        UNIQUE (source_event, action, purpose)
    )""",
    "CREATE INDEX IF NOT EXISTS consent_subject ON consent_ledger (subject_hash, purpose)",
    """CREATE TABLE IF NOT EXISTS call_permission (
        id {id_pk},
        subject_hash TEXT NOT NULL,
        subject TEXT,
        business_number TEXT,
        response TEXT NOT NULL,
        is_permanent INTEGER NOT NULL,
        expires_at {bigint},
        response_source TEXT,
        channel TEXT NOT NULL,
        source_event TEXT NOT NULL UNIQUE,
        occurred_at {bigint} NOT NULL,
        recorded_at {bigint} NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS call_permission_subject ON call_permission (subject_hash)",
    """CREATE TABLE IF NOT EXISTS outbox (
        id {id_pk},
        subject_hash TEXT NOT NULL,
        recipient TEXT NOT NULL,
        kind TEXT NOT NULL,
        body TEXT NOT NULL,
        state TEXT NOT NULL,
        source_event TEXT NOT NULL,
        created_at {bigint} NOT NULL,
        sent_at {bigint},
        UNIQUE (source_event, kind)
    )""",
    "CREATE INDEX IF NOT EXISTS outbox_subject ON outbox (subject_hash)",
]
# v2: the outbox dispatcher's bookkeeping (wagw_bridge.dispatch), the sending number and the
# delivery status Meta reports for a sent message.
SCHEMA_V2 = [
    "ALTER TABLE outbox ADD COLUMN business_number TEXT",
    "ALTER TABLE outbox ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE outbox ADD COLUMN next_attempt_at {bigint}",
    "ALTER TABLE outbox ADD COLUMN last_error TEXT",
    "ALTER TABLE outbox ADD COLUMN wamid TEXT",
    # Meta's status webhooks for a sent message: sent | delivered | read | failed, and when.
    "ALTER TABLE outbox ADD COLUMN delivery_status TEXT",
    "ALTER TABLE outbox ADD COLUMN delivery_status_at {bigint}",
    "CREATE INDEX IF NOT EXISTS outbox_due ON outbox (state, next_attempt_at)",
    "CREATE INDEX IF NOT EXISTS outbox_wamid ON outbox (wamid)",
]
# v3 (issue 13): a person is known by phone number and/or business-scoped user ID (BSUID).
# identity: one row per identifier (keyed hash; the clear value until erasure) and the person
# it belongs to now (``person``: the key of the person, a keyed hash too). An identifier
# without a row is a person of its own whose key is its hash. identity_link: append-only proof
# of why identifiers were taken as one person (both in one delivery) or parted (number or BSUID
# change). consent_ledger / call_permission rows carry the person they were decided for (kept
# in step when two persons are found to be one) and the privacy/imprint URLs of the wording.
# consent_use: business-initiated calls, each a use of the consent (retention counts from the
# last use, §7a UWG).
SCHEMA_V3 = [
    """CREATE TABLE IF NOT EXISTS identity (
        hash TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        value TEXT,
        person TEXT NOT NULL,
        first_seen {bigint} NOT NULL,
        retired_at {bigint},
        source_event TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS identity_person ON identity (person)",
    """CREATE TABLE IF NOT EXISTS identity_link (
        id {id_pk},
        hash_a TEXT NOT NULL,
        hash_b TEXT NOT NULL,
        kind TEXT NOT NULL,
        source_event TEXT NOT NULL,
        occurred_at {bigint} NOT NULL,
        recorded_at {bigint} NOT NULL,
        UNIQUE (source_event, hash_a, hash_b, kind)
    )""",
    "CREATE INDEX IF NOT EXISTS identity_link_a ON identity_link (hash_a)",
    "CREATE INDEX IF NOT EXISTS identity_link_b ON identity_link (hash_b)",
    """CREATE TABLE IF NOT EXISTS consent_use (
        id {id_pk},
        person TEXT NOT NULL,
        subject_hash TEXT NOT NULL,
        ref_id TEXT NOT NULL,
        used_at {bigint} NOT NULL,
        recorded_at {bigint} NOT NULL,
        UNIQUE (ref_id, person)
    )""",
    "CREATE INDEX IF NOT EXISTS consent_use_person ON consent_use (person)",
    "ALTER TABLE consent_ledger ADD COLUMN person TEXT",
    "ALTER TABLE consent_ledger ADD COLUMN privacy_url TEXT",
    "ALTER TABLE consent_ledger ADD COLUMN imprint_url TEXT",
    "UPDATE consent_ledger SET person = subject_hash",
    "CREATE INDEX IF NOT EXISTS consent_person ON consent_ledger (person, purpose)",
    "ALTER TABLE call_permission ADD COLUMN person TEXT",
    "UPDATE call_permission SET person = subject_hash",
    "CREATE INDEX IF NOT EXISTS call_permission_person ON call_permission (person)",
]
MIGRATIONS: dict[int, list[str]] = {1: SCHEMA_V1, 2: SCHEMA_V2, 3: SCHEMA_V3}


class Tx:
    """A connection inside a transaction, with dialect-neutral execute()."""

    def __init__(self, conn: Any, dialect: Dialect, begin: str | None = None) -> None:
        self.conn = conn
        self.dialect = dialect
        # A BEGIN not sent yet: it goes with the first statement (see Database.begin).
        self.pending_begin = begin

    def _start(self) -> None:
        if self.pending_begin is not None:
            begin, self.pending_begin = self.pending_begin, None
            self.conn.execute(begin)

    def pipeline(self) -> contextlib.AbstractContextManager[Any]:
        """PostgreSQL: statements inside are sent together and answered in one round trip
        (psycopg pipeline mode; a fetch inside waits for the answers so far). SQLite: nothing."""
        if self.dialect is POSTGRES:
            cm: contextlib.AbstractContextManager[Any] = self.conn.pipeline()
            return cm
        return contextlib.nullcontext()

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Cursor:
        self._start()
        cur: Cursor = self.conn.execute(self.dialect.sql(sql), tuple(params))
        return cur

    def one(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self.execute(sql, params).fetchone()

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        return self.execute(sql, params).fetchall()

    def lock_subject(self, subject_hash: str) -> None:  # a person's key is a hash too
        """Serialise the consent decisions about one subject until this transaction ends.

        A decision reads the subject's latest ledger entry and appends the next one. SQLite runs
        one write transaction at a time (across processes too), which is enough. PostgreSQL runs
        the workers' transactions side by side: a transaction-scoped advisory lock keyed by the
        subject hash makes the second one wait and then read the first one's entry.
        """
        if self.dialect is POSTGRES:
            self.execute("SELECT pg_advisory_xact_lock(?)", (int(subject_hash[:15], 16),))

    def insert_ignore(self, table: str, row: dict[str, Any]) -> bool:
        """INSERT ... ON CONFLICT DO NOTHING; True if the row was new."""
        cols = tuple(row)
        self._start()
        cur: Cursor = self.conn.execute(self._insert_sql(table, cols), tuple(row.values()))
        return cur.rowcount == 1

    def insert_many_ignore(
        self, table: str, cols: tuple[str, ...], rows: Sequence[Sequence[Any]]
    ) -> None:
        """INSERT ... ON CONFLICT DO NOTHING of many rows, in order, when nobody needs to know
        which rows were new: one ``executemany`` (PostgreSQL: pipelined, one round trip)."""
        if not rows:
            return
        self._start()
        sql = self._insert_sql(table, cols)
        if self.dialect is SQLITE:
            self.conn.executemany(sql, rows)
        else:
            self.conn.cursor().executemany(sql, rows)

    def insert_each_ignore(
        self, table: str, cols: tuple[str, ...], rows: Sequence[Sequence[Any]]
    ) -> list[bool]:
        """INSERT ... ON CONFLICT DO NOTHING of many rows, in order; per row True if it was new
        (a key repeated within ``rows`` is new at its first occurrence only).

        SQLite: one cached statement stepped per row (in-process: no round trips; measured
        faster than one multi-row ``VALUES`` statement).
        PostgreSQL: one pipelined ``executemany ... RETURNING`` (one round trip for all rows
        instead of one per row) whose result sets say which rows were inserted.
        """
        if not rows:
            return []
        self._start()
        sql = self._insert_sql(table, cols)
        if self.dialect is SQLITE:
            execute = self.conn.execute
            return [execute(sql, row).rowcount == 1 for row in rows]
        cur = self.conn.cursor()
        cur.executemany(sql + " RETURNING 1", rows, returning=True)
        flags: list[bool] = []
        while True:
            flags.append(cur.fetchone() is not None)
            if not cur.nextset():
                break
        if len(flags) != len(rows):  # pragma: no cover  (a driver that merged result sets)
            raise DBError(f"expected {len(rows)} results from {table}, got {len(flags)}")
        return flags

    def _insert_sql(self, table: str, cols: tuple[str, ...]) -> str:
        key = (table, cols, self.dialect.placeholder)
        sql = _INSERT_SQL.get(key)
        if sql is None:
            sql = self.dialect.sql(
                f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' for _ in cols)})"
                " ON CONFLICT DO NOTHING"
            )
            _INSERT_SQL[key] = sql
        return sql


# INSERT statements by (table, columns, placeholder): built once, not per row.
_INSERT_SQL: dict[tuple[str, tuple[str, ...], str], str] = {}


@dataclass
class Database:
    """Connection factory plus schema management for one DSN/path."""

    target: str
    sqlite_synchronous: str = "FULL"
    _conns: list[Any] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _writer_fd: int | None = None

    @property
    def dialect(self) -> Dialect:
        if self.target.startswith(("postgresql://", "postgres://")):
            return POSTGRES
        return SQLITE

    def connect(self) -> Any:
        try:
            if self.dialect is POSTGRES:
                import psycopg  # noqa: PLC0415  (optional dependency)

                conn: Any = psycopg.connect(self.target, autocommit=True, connect_timeout=10)
            else:
                if self.target != ":memory:":
                    Path(self.target).parent.mkdir(parents=True, exist_ok=True)
                conn = sqlite3.connect(
                    self.target, isolation_level=None, check_same_thread=False, timeout=30
                )
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute(f"PRAGMA synchronous={self.sqlite_synchronous.upper()}")
                conn.execute("PRAGMA foreign_keys=ON")
                conn.execute("PRAGMA busy_timeout=30000")
        except ImportError as exc:
            raise DBError(
                "PostgreSQL DSN configured but psycopg is not installed "
                "(pip install 'wagw-bridge[postgres]')"
            ) from exc
        except Exception as exc:
            raise DBError(f"cannot open database: {type(exc).__name__}: {exc}") from exc
        with self._lock:
            self._conns.append(conn)
        return conn

    @contextlib.contextmanager
    def writer_lock(self) -> Iterator[None]:
        """Exclusive between the group-commit writers of all processes on one SQLite file.

        SQLite lets one write transaction run at a time; a second process that finds the
        database locked polls in its busy handler with sleeps of up to 100 ms, which showed as
        a p99 of ~200 ms with two workers. A blocking ``flock`` on a lock file beside the
        database hands the turn over as soon as the other writer commits. PostgreSQL and
        ``:memory:`` need none (row locks, one connection).
        """
        if self.dialect is not SQLITE or self.target == ":memory:":
            yield
            return
        if self._writer_fd is None:
            self._writer_fd = os.open(
                self.target + "-writer.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600
            )
        fd = self._writer_fd
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)

    def close_all(self) -> None:
        with self._lock:
            conns, self._conns = self._conns, []
        if self._writer_fd is not None:
            fd, self._writer_fd = self._writer_fd, None
            os.close(fd)
        for conn in conns:
            try:
                conn.close()
            except Exception:  # noqa: S112
                continue

    # -- transactions -------------------------------------------------------
    def begin(self, conn: Any, lazy: bool = False) -> Tx:
        """Start a transaction. ``lazy`` (PostgreSQL): BEGIN is sent with the transaction's
        first statement instead of in a round trip of its own (inside :meth:`Tx.pipeline`,
        with the statements that follow it too)."""
        if self.dialect is SQLITE:
            conn.execute("BEGIN IMMEDIATE")
        elif lazy:
            return Tx(conn, self.dialect, begin="BEGIN")
        else:
            conn.execute("BEGIN")
        return Tx(conn, self.dialect)

    def run(self, conn: Any, fn: Callable[[Tx], T], lazy: bool = False) -> T:
        """Run fn in one transaction on conn; commit, or roll back and re-raise."""
        tx = self.begin(conn, lazy)
        try:
            result = fn(tx)
        except BaseException:
            if tx.pending_begin is None:
                conn.execute("ROLLBACK")
            raise
        if tx.pending_begin is None:  # else nothing was executed: no transaction to end
            conn.execute("COMMIT")
        return result

    # -- schema -------------------------------------------------------------
    def schema_version(self, conn: Any) -> int:
        tx = Tx(conn, self.dialect)
        try:
            row = tx.one("SELECT MAX(version) FROM schema_version")
        except Exception:
            return 0
        return int(row[0] or 0)

    @staticmethod
    def schema_version_tx(tx: Tx) -> int:
        row = tx.one("SELECT MAX(version) FROM schema_version")
        return int(row[0] or 0)

    def migrate(self, now: int) -> tuple[int, int]:
        """Create/upgrade the schema. Returns (version before, version after)."""
        conn = self.connect()
        try:
            before = self.schema_version(conn)

            def apply(tx: Tx) -> None:
                for version in sorted(MIGRATIONS):
                    if version <= before:
                        continue
                    for stmt in MIGRATIONS[version]:
                        tx.execute(
                            stmt.format(id_pk=self.dialect.id_pk, bigint=self.dialect.bigint)
                        )
                    tx.execute(
                        "INSERT INTO schema_version (version, applied_at) VALUES (?, ?)",
                        (version, now),
                    )

            if before < SCHEMA_VERSION:
                self.run(conn, apply)
            return before, self.schema_version(conn)
        finally:
            conn.close()


class GroupCommitWriter:
    """Batch concurrent write work items into one transaction per batch.

    Each ``submit(fn)`` returns once the transaction that ran ``fn`` has committed, so a caller
    that answers HTTP 200 after ``await submit(...)`` has durable data behind its answer.
    If a batch fails, its items are retried one transaction each, so one bad item fails alone.

    The writer is one thread that owns the connection: it takes the first queued item, then the
    cross-process writer lock (:meth:`Database.writer_lock`), and only then drains the queue,
    so everything that arrived while another process was committing joins this batch. The next
    batch starts as soon as a commit is done, without waiting for the event loop; results go
    back to the loop with one ``call_soon_threadsafe`` per batch.
    """

    def __init__(self, db: Database, batch_max: int = 512) -> None:
        self.db = db
        self.batch_max = batch_max
        self._queue: queue.SimpleQueue[tuple[Callable[[Tx], Any], asyncio.Future[Any]] | None] = (
            queue.SimpleQueue()
        )
        self._conn: Any = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._running = False
        self.on_batch: Callable[[int], None] | None = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._conn = await asyncio.to_thread(self.db.connect)
        self._loop = loop
        self._thread = threading.Thread(target=self._run, name="wagw-writer", daemon=True)
        self._thread.start()
        self._running = True

    async def stop(self) -> None:
        """Commit what is queued, then stop the thread and close the connection."""
        if self._thread is not None:
            self._running = False
            self._queue.put(None)
            await asyncio.to_thread(self._thread.join)
            self._thread = None
        if self._conn is not None:
            conn, self._conn = self._conn, None
            await asyncio.to_thread(conn.close)

    async def submit(self, fn: Callable[[Tx], T]) -> T:
        if not self._running:
            raise DBError("writer is not running")
        fut: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queue.put((fn, fut))
        return await fut

    def _run(self) -> None:
        q = self._queue
        while True:
            item = q.get()
            if item is None:
                return
            batch = [item]
            stop = False
            with self.db.writer_lock():
                while len(batch) < self.batch_max:
                    try:
                        nxt = q.get_nowait()
                    except queue.Empty:
                        break
                    if nxt is None:
                        stop = True
                        break
                    batch.append(nxt)
                try:
                    results = self._commit_batch_locked([fn for fn, _ in batch])
                except Exception as exc:
                    results = [exc] * len(batch)
            assert self._loop is not None
            try:
                self._loop.call_soon_threadsafe(self._deliver, batch, results)
            except RuntimeError:  # the loop is closed: nobody is waiting any more
                return
            if stop:
                return

    def _deliver(
        self, batch: list[tuple[Callable[[Tx], Any], asyncio.Future[Any]]], results: list[Any]
    ) -> None:
        for (_, fut), res in zip(batch, results, strict=True):
            if fut.done():
                continue
            if isinstance(res, BaseException):
                fut.set_exception(res)
            else:
                fut.set_result(res)
        if self.on_batch is not None:
            self.on_batch(len(batch))

    def _reconnect(self) -> None:
        with contextlib.suppress(Exception):
            self._conn.close()
        self._conn = self.db.connect()

    def _commit_batch_locked(self, fns: list[Callable[[Tx], Any]]) -> list[Any]:
        for attempt in range(1 + BATCH_RETRIES):
            try:
                return self.db.run(self._conn, lambda tx: run_items(tx, fns), lazy=True)
            except Exception as exc:
                if attempt < BATCH_RETRIES and _retryable(exc):
                    # Two workers' batches locked the same new keys in opposite orders
                    # (PostgreSQL aborted one): the whole batch again, then one by one.
                    log.info("batch of %d hit %s, retrying", len(fns), type(exc).__name__)
                    continue
                log.warning("batch of %d failed, retrying one by one: %s", len(fns), exc)
                if _connection_broken(self._conn):
                    try:
                        self._reconnect()
                    except DBError as exc2:
                        return [exc2] * len(fns)
                break
        results: list[Any] = []
        for fn in fns:
            try:
                results.append(self.db.run(self._conn, fn, lazy=True))
            except Exception as exc:
                results.append(exc)
        return results


BATCH_RETRIES = 2
# SQLSTATEs after which the same transaction may well pass: deadlock, serialization failure.
_RETRY_SQLSTATES = frozenset({"40P01", "40001"})


def _retryable(exc: BaseException) -> bool:
    return getattr(exc, "sqlstate", None) in _RETRY_SQLSTATES


def run_items(tx: Tx, fns: Sequence[Callable[[Tx], Any]]) -> list[Any]:
    """Run work items in order in one transaction; their results in the same order.

    A run of consecutive items with the same ``run_batch`` (an attribute: a callable taking the
    transaction and those items, returning their results) is handed to it at once, so that it
    can write their rows with a few statements instead of a few per item (see
    :meth:`wagw_bridge.service.Domain.ingest_batch`). Other items are called one by one.
    """
    out: list[Any] = []
    i, n = 0, len(fns)
    while i < n:
        runner = getattr(fns[i], "run_batch", None)
        if runner is None:
            out.append(fns[i](tx))
            i += 1
            continue
        j = i + 1
        while j < n and getattr(fns[j], "run_batch", None) == runner:
            j += 1
        out.extend(runner(tx, fns[i:j]))
        i = j
    return out


def _connection_broken(conn: Any) -> bool:
    closed = getattr(conn, "closed", False)
    return bool(closed)


class Reader:
    """Per-thread read connections, used from asyncio via to_thread."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._local = threading.local()

    def _conn(self) -> Any:
        conn = getattr(self._local, "conn", None)
        if conn is None or _connection_broken(conn):
            conn = self.db.connect()
            self._local.conn = conn
        return conn

    def run(self, fn: Callable[[Tx], T]) -> T:
        conn = self._conn()
        try:
            # One read transaction: multi-statement look-ups see one consistent snapshot.
            conn.execute("BEGIN")
            try:
                result = fn(Tx(conn, self.db.dialect))
            finally:
                conn.execute("COMMIT")
            return result
        except Exception:
            self._local.conn = None
            with contextlib.suppress(Exception):
                conn.close()
            raise

    async def arun(self, fn: Callable[[Tx], T]) -> T:
        return await asyncio.to_thread(self.run, fn)
