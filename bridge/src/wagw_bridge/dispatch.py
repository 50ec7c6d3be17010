"""Outbox dispatcher: sends the queued WhatsApp messages through Meta's Graph API.

The ingest transaction only *queues* messages (``outbox``, state ``queued``): the confirmation
request of the double opt-in and the acknowledgements. This process posts each one to
``{graph_api_url}/{graph_api_version}/{phone-number-id}/messages`` with the business's access
token and records the outcome on the row:

* ``sent``: Meta accepted it (``messages[0].id``, the wamid, is kept for the status webhooks);
* ``queued`` again with ``attempts`` + 1 and ``next_attempt_at`` (exponential backoff) for what
  may pass later: network errors, HTTP 5xx and 429, throttling and transient Graph error codes,
  and authorisation errors (an expired token is fixed by the operator, not by dropping messages);
* ``failed`` for what never passes (invalid parameter, re-engagement window closed, recipient
  not on WhatsApp, ...) and once ``dispatch_max_attempts`` is reached.

Several dispatchers may share one PostgreSQL database (several bridge hosts): each claims one
row at a time (``FOR UPDATE SKIP LOCKED``) and marks it ``sending`` with a lease
(``next_attempt_at`` = now + timeout + a minute). Delivery is at least once: a dispatcher that
dies between the POST and the update leaves the row ``sending``, and once its lease has run out
any dispatcher claims it again.
Log lines carry the subject's pseudonym, never the phone number.
"""

from __future__ import annotations

import json
import logging
import signal
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .config import ConfigError, Settings
from .db import POSTGRES, SCHEMA_VERSION, Database, Tx

log = logging.getLogger("wagw_bridge.dispatch")

# Graph API error codes worth another attempt (Meta's error-code reference for the Cloud API):
# throttling, temporary service errors, and authorisation/permission problems that an operator
# fixes (expired token, missing permission) -- the messages wait for the fix.
RETRY_CODES = frozenset(
    {
        0,  # AuthException
        1,  # API Unknown
        2,  # API Service (temporary)
        3,  # API Method (capability)
        4,  # API Too Many Calls
        10,  # permission denied
        190,  # access token expired / invalid
        200,  # permission error
        80007,  # rate limit issues (WABA)
        130429,  # rate limit hit (throughput)
        131000,  # something went wrong
        131016,  # service unavailable
        131048,  # spam rate limit hit
        131056,  # (business, consumer) pair rate limit hit
        133004,  # server temporarily unavailable
    }
)
BACKOFF_BASE_SECONDS = 5
BACKOFF_MAX_SECONDS = 3600
# A claimed row is someone's for the POST's timeout plus this; then it counts as interrupted.
LEASE_MARGIN_SECONDS = 60


@dataclass(frozen=True)
class Outcome:
    state: str  # sent | retry | failed
    detail: str
    wamid: str | None = None


def classify(status: int, body: Any) -> Outcome:
    """Turn a Graph API answer (HTTP status, decoded JSON or None) into an outcome."""
    if 200 <= status < 300:
        try:
            wamid = str(body["messages"][0]["id"])
        except (KeyError, IndexError, TypeError):
            return Outcome("retry", f"HTTP {status} without messages[0].id")
        return Outcome("sent", "accepted", wamid)
    err = body.get("error") if isinstance(body, dict) else None
    code = err.get("code") if isinstance(err, dict) else None
    message = str(err.get("message", ""))[:200] if isinstance(err, dict) else ""
    detail = f"HTTP {status}" + (f" code {code}: {message}" if code is not None else "")
    if status >= 500 or status == 429 or code in RETRY_CODES:
        return Outcome("retry", detail)
    return Outcome("failed", detail)


def backoff(attempts: int) -> int:
    """Seconds before attempt ``attempts + 1``: 5, 10, 20, ... capped at an hour."""
    return int(min(BACKOFF_MAX_SECONDS, BACKOFF_BASE_SECONDS * 2 ** max(0, attempts - 1)))


OUTBOX_STATES = ("queued", "sending", "sent", "failed")
# Messages one round sends at most before it looks again at once (rather than sleeping).
ROUND_LIMIT = 50


def outbox_counts(tx: Tx) -> dict[str, int]:
    """Outbox rows per state, every state present (0 when none): for doctor and /metrics."""
    counts = dict.fromkeys(OUTBOX_STATES, 0)
    for state, n in tx.all("SELECT state, COUNT(*) FROM outbox GROUP BY state"):
        counts[str(state)] = int(n)
    return counts


def parse_phone_number_ids(pairs: tuple[str, ...]) -> dict[str, str]:
    """``("+4930555000100=100000000000001", ...)`` -> {business number: phone-number-id}."""
    out: dict[str, str] = {}
    for pair in pairs:
        number, sep, pnid = pair.partition("=")
        if not sep or not number.startswith("+") or not pnid.isdigit():
            raise ConfigError(
                f"WAGW_BRIDGE_PHONE_NUMBER_IDS: {pair!r} is not +E164=PHONE_NUMBER_ID"
            )
        out[number] = pnid
    return out


Poster = Callable[[str, dict[str, str], bytes, float], tuple[int, Any]]


def http_request(
    method: str, url: str, headers: dict[str, str], data: bytes | None, timeout: float
) -> tuple[int, Any]:
    """Send one request; return (status, decoded JSON or None). Network errors raise OSError."""
    req = urllib.request.Request(url, data=data, headers=headers, method=method)  # noqa: S310
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310
            status, raw = resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, None


def http_post(url: str, headers: dict[str, str], data: bytes, timeout: float) -> tuple[int, Any]:
    """POST and return (status, decoded JSON or None); network errors raise OSError."""
    return http_request("POST", url, headers, data, timeout)


class Dispatcher:
    def __init__(
        self,
        settings: Settings,
        post: Poster = http_post,
        clock: Callable[[], float] = time.time,
    ) -> None:
        settings.require("access_token")
        if not settings.graph_api_url.startswith(("https://", "http://")):
            raise ConfigError("WAGW_BRIDGE_GRAPH_API_URL must be an http(s):// URL")
        self.s = settings
        self.ids = parse_phone_number_ids(settings.phone_number_ids)
        if not self.ids:
            raise ConfigError(
                "WAGW_BRIDGE_PHONE_NUMBER_IDS is empty: the dispatcher cannot tell from which "
                "phone-number-id to send"
            )
        self.post = post
        self.clock = clock
        self.db = Database(settings.database, settings.sqlite_synchronous)
        self._conn: Any = None
        self._headers = {
            "Authorization": f"Bearer {settings.access_token.get()}",
            "Content-Type": "application/json",
        }

    def _connection(self) -> Any:
        if self._conn is None:
            self._conn = self.db.connect()
        return self._conn

    def _run(self, fn: Callable[[Tx], Any]) -> Any:
        conn = self._connection()
        with self.db.writer_lock():
            return self.db.run(conn, fn)

    def _update(self, sql: str, params: tuple[Any, ...]) -> None:
        def update(tx: Tx) -> None:
            tx.execute(sql, params)

        self._run(update)

    def close(self) -> None:
        self.db.close_all()
        self._conn = None

    def _claim(self, now: int) -> tuple[Any, ...] | None:
        """The oldest due row, now ``sending`` under a lease; None when nothing is due."""
        lock = " FOR UPDATE SKIP LOCKED" if self.db.dialect is POSTGRES else ""
        lease = now + self.s.dispatch_timeout + LEASE_MARGIN_SECONDS

        def claim(tx: Tx) -> tuple[Any, ...] | None:
            row = tx.one(
                "SELECT id, subject_hash, business_number, body, attempts FROM outbox"
                " WHERE state IN ('queued', 'sending') AND COALESCE(next_attempt_at, 0) <= ?"
                " ORDER BY id LIMIT 1" + lock,
                (now,),
            )
            if row is None:
                return None
            tx.execute(
                "UPDATE outbox SET state = 'sending', next_attempt_at = ? WHERE id = ?",
                (lease, row[0]),
            )
            return tuple(row)

        found: tuple[Any, ...] | None = self._run(claim)
        return found

    def _send_one(self, business: str | None, body: str) -> Outcome:
        pnid = self.ids.get(business or "")
        if pnid is None and len(self.ids) == 1:
            pnid = next(iter(self.ids.values()))
        if pnid is None:
            return Outcome("retry", f"no phone-number-id configured for {business}")
        url = f"{self.s.graph_api_url.rstrip('/')}/{self.s.graph_api_version}/{pnid}/messages"
        try:
            status, answer = self.post(
                url, self._headers, body.encode("utf-8"), self.s.dispatch_timeout
            )
        except OSError as exc:
            return Outcome("retry", f"{type(exc).__name__}: {exc}"[:200])
        return classify(status, answer)

    def run_once(self, limit: int = ROUND_LIMIT) -> dict[str, int]:
        """Send what is due now; returns counts per outcome."""
        counts = {"sent": 0, "retry": 0, "failed": 0}
        for _ in range(limit):
            claimed = self._claim(int(self.clock()))
            if claimed is None:
                break
            row_id, shash, business, body, attempts = claimed
            outcome = self._send_one(business, body)
            tries = int(attempts or 0) + 1
            if outcome.state == "retry" and tries >= self.s.dispatch_max_attempts:
                outcome = Outcome("failed", f"gave up after {tries} attempts: {outcome.detail}")
            counts[outcome.state] += 1
            done = int(self.clock())
            if outcome.state == "sent":
                sql = (
                    "UPDATE outbox SET state = 'sent', sent_at = ?, wamid = ?, attempts = ?,"
                    " last_error = NULL WHERE id = ?"
                )
                params: tuple[Any, ...] = (done, outcome.wamid, tries, row_id)
            elif outcome.state == "retry":
                sql = (
                    "UPDATE outbox SET state = 'queued', attempts = ?, next_attempt_at = ?,"
                    " last_error = ? WHERE id = ?"
                )
                params = (tries, done + backoff(tries), outcome.detail, row_id)
            else:
                sql = (
                    "UPDATE outbox SET state = 'failed', attempts = ?, last_error = ? WHERE id = ?"
                )
                params = (tries, outcome.detail, row_id)
            self._update(sql, params)
            level = logging.INFO if outcome.state == "sent" else logging.WARNING
            log.log(
                level,
                "outbox message %s",
                outcome.state,
                extra={
                    "outbox_id": row_id,
                    "subject": "p:" + str(shash)[:16],
                    "attempt": tries,
                    "detail": outcome.detail,
                },
            )
        return counts

    def wait_for_schema(self, stop: threading.Event) -> bool:
        """The service migrates the schema at its start; this process only waits for it."""
        warned = False
        while not stop.is_set():
            version = self.db.schema_version(self._connection())
            if version >= SCHEMA_VERSION:
                return True
            if not warned:
                log.warning(
                    "waiting for the schema (the service migrates it)",
                    extra={"schema_version": version, "expected": SCHEMA_VERSION},
                )
                warned = True
            stop.wait(self.s.dispatch_interval)
        return False

    def run_forever(self, stop: threading.Event) -> None:
        if not self.wait_for_schema(stop):
            return
        log.info("dispatcher started", extra={"interval": self.s.dispatch_interval})
        while not stop.is_set():
            try:
                counts = self.run_once()
            except Exception:
                log.exception("dispatch round failed")
                counts = {}
            # A full round may have left more due rows: go again at once.
            if sum(counts.values()) < ROUND_LIMIT:
                stop.wait(self.s.dispatch_interval)
        self.close()


def run(settings: Settings) -> int:
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    Dispatcher(settings).run_forever(stop)
    return 0
