"""Outbox dispatcher against the fake Graph API (tests/fake_graph_api.py), on both engines.

The double opt-in's confirmation request is queued by the webhook and must reach the user:
these tests post a real opt-in webhook, run the dispatcher over real HTTP against the fake, and
check what Meta would have received and what the outbox row records.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from conftest import (
    BUSINESS,
    INTERNAL_TOKEN,
    USER,
    Bridge,
    FakeClock,
    envelope,
    free_port,
    make_settings,
    status_update,
)
from fake_graph_api import FakeGraphAPI, graph_error
from wagw_bridge.cli import doctor_checks
from wagw_bridge.config import ConfigError, Settings
from wagw_bridge.db import SCHEMA_V1, SCHEMA_VERSION, Database
from wagw_bridge.dispatch import LEASE_MARGIN_SECONDS, Dispatcher, backoff, classify

TOKEN = "EAAG-test-access-token"
PNID = "100000000000001"


@pytest.fixture
def graph() -> Iterator[tuple[FakeGraphAPI, str]]:
    api = FakeGraphAPI(TOKEN)
    server = api.serve()
    yield api, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def dispatcher_for(
    bridge: Bridge, url: str, tmp_path: Path, clock: FakeClock, **over: Any
) -> Dispatcher:
    settings: Settings = bridge.rt.settings
    raw = {
        "access_token": TOKEN,
        "graph_api_url": url,
        "phone_number_ids": f"+{BUSINESS}={PNID}",
        **over,
    }
    return Dispatcher(make_settings(settings.database, tmp_path, **raw), clock=clock)


def opt_in(bridge: Bridge, text: str = "START") -> None:
    msg = {
        "from": USER,
        "id": f"wamid.in.{text}.{bridge.clock()}",
        "timestamp": str(int(bridge.clock())),
        "type": "text",
        "text": {"body": text},
    }
    value = {"contacts": [{"wa_id": USER, "profile": {"name": "Kundin"}}], "messages": [msg]}
    assert bridge.post(envelope("messages", value)).status_code == 200


def outbox(bridge: Bridge) -> list[tuple[Any, ...]]:
    return bridge.rt.reader.run(
        lambda tx: tx.all(
            "SELECT kind, state, attempts, next_attempt_at, last_error, wamid, business_number"
            " FROM outbox ORDER BY id"
        )
    )


def test_confirmation_request_reaches_meta(
    bridge: Bridge, graph: tuple[FakeGraphAPI, str], tmp_path: Path, clock: FakeClock
) -> None:
    api, url = graph
    opt_in(bridge)
    assert [r[:3] for r in outbox(bridge)] == [("optin_request", "queued", 0)]
    d = dispatcher_for(bridge, url, tmp_path, clock)
    assert d.run_once() == {"sent": 1, "retry": 0, "failed": 0}
    assert len(api.requests) == 1
    req = api.requests[0]
    assert req["phone_number_id"] == PNID
    assert req["headers"]["authorization"] == f"Bearer {TOKEN}"
    assert req["body"]["to"] == USER
    assert req["body"]["type"] == "interactive"
    titles = [b["reply"]["title"] for b in req["body"]["interactive"]["action"]["buttons"]]
    assert titles == ["JA", "STOP"]
    kind, state, attempts, _, error, wamid, business = outbox(bridge)[0]
    assert (kind, state, attempts, error, business) == (
        "optin_request",
        "sent",
        1,
        None,
        "+" + BUSINESS,
    )
    assert wamid.startswith("wamid.FAKE")
    # nothing left to send: a second round posts nothing
    assert d.run_once() == {"sent": 0, "retry": 0, "failed": 0}
    assert len(api.requests) == 1
    d.close()


def test_server_error_is_retried_after_backoff(
    bridge: Bridge, graph: tuple[FakeGraphAPI, str], tmp_path: Path, clock: FakeClock
) -> None:
    api, url = graph
    api.script.append((500, graph_error(131000, "Something went wrong")))
    opt_in(bridge)
    d = dispatcher_for(bridge, url, tmp_path, clock)
    assert d.run_once()["retry"] == 1
    _, state, attempts, next_at, error, wamid, _ = outbox(bridge)[0]
    assert (state, attempts, wamid) == ("queued", 1, None)
    assert next_at == int(clock()) + backoff(1)
    assert "HTTP 500 code 131000" in error
    # not due yet: nothing is posted
    assert d.run_once() == {"sent": 0, "retry": 0, "failed": 0}
    assert len(api.requests) == 1
    clock.advance(backoff(1))
    assert d.run_once()["sent"] == 1
    assert outbox(bridge)[0][1:3] == ("sent", 2)
    d.close()


@pytest.mark.parametrize(
    ("status", "code", "outcome"),
    [
        (400, 131047, "failed"),  # re-engagement: more than 24 h since the user wrote
        (400, 131026, "failed"),  # message undeliverable
        (429, 130429, "queued"),  # rate limit hit
        (400, 131056, "queued"),  # pair rate limit
        (401, 190, "queued"),  # token expired: waits for the operator
    ],
)
def test_graph_errors_fail_or_wait_by_their_code(
    bridge: Bridge,
    graph: tuple[FakeGraphAPI, str],
    tmp_path: Path,
    clock: FakeClock,
    status: int,
    code: int,
    outcome: str,
) -> None:
    api, url = graph
    api.script.append((status, graph_error(code, "scripted")))
    opt_in(bridge)
    d = dispatcher_for(bridge, url, tmp_path, clock)
    d.run_once()
    _, state, attempts, _, error, _, _ = outbox(bridge)[0]
    assert (state, attempts) == (outcome, 1)
    assert f"code {code}" in error
    d.close()


def test_wrong_token_waits_and_gives_up_after_max_attempts(
    bridge: Bridge, graph: tuple[FakeGraphAPI, str], tmp_path: Path, clock: FakeClock
) -> None:
    api, url = graph
    opt_in(bridge)
    d = dispatcher_for(
        bridge, url, tmp_path, clock, access_token="wrong-token", dispatch_max_attempts=3
    )
    for _ in range(3):
        d.run_once()
        clock.advance(backoff(3))
    _, state, attempts, _, error, _, _ = outbox(bridge)[0]
    assert (state, attempts) == ("failed", 3)
    assert error.startswith("gave up after 3 attempts: HTTP 401 code 190")
    assert api.requests == []  # the fake records only authorised requests
    d.close()


def test_unreachable_api_is_retried(bridge: Bridge, tmp_path: Path, clock: FakeClock) -> None:
    opt_in(bridge)
    d = dispatcher_for(bridge, f"http://127.0.0.1:{free_port()}", tmp_path, clock)
    assert d.run_once()["retry"] == 1
    _, state, _, _, error, _, _ = outbox(bridge)[0]
    assert state == "queued"
    assert "ConnectionRefused" in error or "URLError" in error
    d.close()


def test_interrupted_send_goes_out_again_after_its_lease(
    bridge: Bridge, graph: tuple[FakeGraphAPI, str], tmp_path: Path, clock: FakeClock
) -> None:
    api, url = graph
    opt_in(bridge)
    d = dispatcher_for(bridge, url, tmp_path, clock)
    # another dispatcher claimed the row and died before its answer: the lease still runs
    claim_time = int(clock())
    d._claim(claim_time)
    assert outbox(bridge)[0][1] == "sending"
    assert d.run_once()["sent"] == 0  # a row under lease is not claimed twice
    clock.advance(d.s.dispatch_timeout + LEASE_MARGIN_SECONDS)
    assert d.run_once()["sent"] == 1
    assert len(api.requests) == 1
    d.close()


def test_two_dispatchers_send_each_message_once(
    bridge: Bridge, graph: tuple[FakeGraphAPI, str], tmp_path: Path, clock: FakeClock
) -> None:
    """Two bridge hosts on one database: every queued message goes out exactly once."""
    api, url = graph
    users = [f"49170{n:07d}" for n in range(12)]
    for user in users:
        value = {
            "contacts": [{"wa_id": user, "profile": {"name": "K"}}],
            "messages": [
                {
                    "from": user,
                    "id": f"wamid.in.{user}",
                    "timestamp": str(int(clock())),
                    "type": "text",
                    "text": {"body": "START"},
                }
            ],
        }
        assert bridge.post(envelope("messages", value)).status_code == 200
    assert len(outbox(bridge)) == 12
    first = dispatcher_for(bridge, url, tmp_path, clock)
    second = dispatcher_for(bridge, url, tmp_path, clock)
    with ThreadPoolExecutor(2) as pool:
        counts = list(pool.map(lambda d: d.run_once(), [first, second]))
    assert sum(c["sent"] for c in counts) == 12
    assert sorted(r["body"]["to"] for r in api.requests) == users
    assert {r[1] for r in outbox(bridge)} == {"sent"}
    first.close()
    second.close()


@pytest.mark.parametrize(
    ("over", "message"),
    [
        ({"access_token": ""}, "WAGW_BRIDGE_ACCESS_TOKEN"),
        ({"phone_number_ids": ""}, "PHONE_NUMBER_IDS is empty"),
        ({"phone_number_ids": "4930123456=abc"}, "is not +E164=PHONE_NUMBER_ID"),
        ({"graph_api_url": "ftp://graph"}, "http(s)://"),
    ],
)
def test_dispatcher_settings_are_checked(tmp_path: Path, over: dict[str, str], message: str):
    raw = {"access_token": TOKEN, "phone_number_ids": f"+{BUSINESS}={PNID}", **over}
    with pytest.raises(ConfigError, match=re.escape(message)):
        Dispatcher(make_settings(str(tmp_path / "db.sqlite3"), tmp_path, **raw))


def test_access_token_never_shows(tmp_path: Path) -> None:
    s = make_settings(str(tmp_path / "db.sqlite3"), tmp_path, access_token=TOKEN)
    assert TOKEN not in repr(s)
    assert s.redacted()["access_token"] == "set"


def test_classify() -> None:
    ok = {"messaging_product": "whatsapp", "messages": [{"id": "wamid.X"}]}
    assert classify(200, ok).wamid == "wamid.X"
    assert classify(200, {"messages": []}).state == "retry"
    assert classify(502, None).state == "retry"
    assert classify(400, graph_error(100, "Invalid parameter")).state == "failed"
    assert classify(403, None).state == "failed"
    assert [backoff(n) for n in (1, 2, 3, 20)] == [5, 10, 20, 3600]


def test_v1_database_is_migrated_and_its_queue_sent(
    graph: tuple[FakeGraphAPI, str], tmp_path: Path
) -> None:
    """An outbox row queued under schema v1 (no business number) goes out after the upgrade."""
    api, url = graph
    path = tmp_path / "v1.sqlite3"
    conn = sqlite3.connect(path)
    for stmt in SCHEMA_V1:
        conn.execute(stmt.format(id_pk="INTEGER PRIMARY KEY AUTOINCREMENT", bigint="INTEGER"))
    conn.execute("INSERT INTO schema_version VALUES (1, 0)")
    body = json.dumps(
        {"messaging_product": "whatsapp", "to": USER, "type": "text", "text": {"body": "hi"}}
    )
    conn.execute(
        "INSERT INTO outbox (subject_hash, recipient, kind, body, state, source_event, created_at)"
        " VALUES ('h', ?, 'optout_ack', ?, 'queued', 'e1', 0)",
        ("+" + USER, body),
    )
    conn.commit()
    conn.close()
    assert Database(str(path)).migrate(1) == (1, SCHEMA_VERSION)
    d = Dispatcher(
        make_settings(
            str(path),
            tmp_path,
            access_token=TOKEN,
            graph_api_url=url,
            phone_number_ids=f"+{BUSINESS}={PNID}",
        ),
        clock=FakeClock(),
    )
    assert d.run_once()["sent"] == 1  # one configured number: it sends what has none
    assert api.requests[0]["body"]["text"] == {"body": "hi"}
    d.close()


def test_doctor_reports_the_outbox(
    bridge: Bridge, graph: tuple[FakeGraphAPI, str], tmp_path: Path, clock: FakeClock
) -> None:
    api, url = graph
    opt_in(bridge)
    checks = {c: (lv, d) for lv, c, d in doctor_checks(bridge.rt.settings)}
    assert checks["outbox"] == ("warn", "1 queued; no access token: 1 message(s) not sent")
    api.script.append((400, graph_error(131047, "Re-engagement message")))
    d = dispatcher_for(bridge, url, tmp_path, clock)
    d.run_once()
    checks = {c: (lv, d) for lv, c, d in doctor_checks(d.s)}
    assert checks["outbox"] == ("warn", "1 failed; see last_error in the outbox table")
    d.close()


def send_confirmation(bridge: Bridge, url: str, tmp_path: Path, clock: FakeClock) -> str:
    """Opt in, let a dispatcher send the confirmation request; Meta's message id of it."""
    opt_in(bridge)
    d = dispatcher_for(bridge, url, tmp_path, clock)
    d.run_once()
    d.close()
    return str(outbox(bridge)[0][5])


def delivery(bridge: Bridge) -> tuple[Any, ...]:
    return tuple(
        bridge.rt.reader.run(
            lambda tx: tx.one("SELECT delivery_status, delivery_status_at, last_error FROM outbox")
        )
    )


def test_status_webhooks_record_the_delivery(
    bridge: Bridge, graph: tuple[FakeGraphAPI, str], tmp_path: Path, clock: FakeClock
) -> None:
    wamid = send_confirmation(bridge, graph[1], tmp_path, clock)
    t = int(clock())
    assert bridge.post(status_update(wamid, "delivered", ts=t + 2)).status_code == 200
    assert delivery(bridge) == ("delivered", t + 2, None)
    # out of order: "sent" (earlier) arrives after "delivered" and changes nothing
    assert bridge.post(status_update(wamid, "sent", ts=t + 1)).status_code == 200
    assert delivery(bridge) == ("delivered", t + 2, None)
    assert bridge.post(status_update(wamid, "read", ts=t + 9)).status_code == 200
    assert delivery(bridge)[0] == "read"
    # a status about a message that is not ours touches nothing
    assert bridge.post(status_update("wamid.OTHER", "failed", ts=t + 20)).status_code == 200
    assert delivery(bridge)[0] == "read"


def test_failed_delivery_keeps_metas_error(
    bridge: Bridge, graph: tuple[FakeGraphAPI, str], tmp_path: Path, clock: FakeClock
) -> None:
    wamid = send_confirmation(bridge, graph[1], tmp_path, clock)
    failed = status_update(wamid, "failed", ts=int(clock()) + 5)
    failed["entry"][0]["changes"][0]["value"]["statuses"][0]["errors"] = [
        {"code": 131026, "title": "Message undeliverable"}
    ]
    assert bridge.post(failed).status_code == 200
    status, _, error = delivery(bridge)
    assert status == "failed"
    assert error == "delivery failed: code 131026: Message undeliverable"


def test_metrics_show_the_outbox(
    bridge: Bridge, graph: tuple[FakeGraphAPI, str], tmp_path: Path, clock: FakeClock
) -> None:
    api, url = graph
    opt_in(bridge)
    clock.advance(30)

    def scrape() -> str:
        return bridge.client.get(
            "/metrics", headers={"Authorization": f"Bearer {INTERNAL_TOKEN}"}
        ).text

    text = scrape()
    assert 'wagw_outbox_messages{state="queued"} 1' in text
    assert 'wagw_outbox_messages{state="failed"} 0' in text
    assert "wagw_outbox_oldest_queued_age_seconds 30" in text
    api.script.append((400, graph_error(131047, "Re-engagement message")))
    d = dispatcher_for(bridge, url, tmp_path, clock)
    d.run_once()
    d.close()
    text = scrape()
    assert 'wagw_outbox_messages{state="queued"} 0' in text
    assert 'wagw_outbox_messages{state="failed"} 1' in text
    assert "wagw_outbox_oldest_queued_age_seconds 0" in text
