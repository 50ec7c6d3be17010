"""WAGW_BRIDGE_PERMISSION_CHECK=meta: before allow, Meta's current call permission
(``GET /{phone-number-id}/call_permissions?user_wa_id=...``, Calling API "Get current call
permission state":
https://developers.facebook.com/documentation/business-messaging/whatsapp/calling/reference/ )
asked of the fake Graph API (tests/fake_graph_api.py), on both engines.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from conftest import (
    BUSINESS,
    USER,
    Bridge,
    FakeClock,
    call_permission_reply,
    free_port,
    make_settings,
    text_message,
)
from fake_graph_api import FakeGraphAPI, graph_error
from test_identity import BSUID, both_ids_message
from wagw_bridge.app import create_app
from wagw_bridge.config import ConfigError
from wagw_bridge.permissions import interpret

TOKEN = "EAAG-test-access-token"
PNID = "100000000000001"


@pytest.fixture
def graph() -> Iterator[tuple[FakeGraphAPI, str]]:
    api = FakeGraphAPI(TOKEN)
    server = api.serve()
    yield api, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def checked_bridge(database: str, tmp_path: Path, clock: FakeClock, url: str, **over: Any):
    s = make_settings(
        database,
        tmp_path,
        permission_check="meta",
        access_token=TOKEN,
        graph_api_url=url,
        phone_number_ids=f"+{BUSINESS}={PNID}",
        **over,
    )
    return TestClient(create_app(s, clock=clock))


def test_revoked_at_meta_denies_although_the_ledger_allows(
    database: str, tmp_path: Path, clock: FakeClock, graph: tuple[FakeGraphAPI, str]
) -> None:
    api, url = graph
    with checked_bridge(database, tmp_path, clock, url) as c:
        bridge = Bridge(c, clock)
        ledger_allows(bridge)
        # the ledger allows (opt-in + accepted permission); Meta has none: deny
        st = bridge.consent().json()
        assert (st["allow"], st["reason"]) == (False, "meta-no-permission")
        assert st["meta_permission"]["status"] == "no_permission"
        assert api.permission_requests[-1] == {"phone_number_id": PNID, "user": USER}
        # Meta grants: allow; answers are cached
        api.set_permission(USER, "temporary", expiration_time=int(clock()) + 3600)
        clock.advance(61)
        assert bridge.consent(fmt="text").text == "allow"
        asked = len(api.permission_requests)
        api.set_permission(USER, "no_permission")  # revoked in WhatsApp's settings
        assert bridge.consent(fmt="text").text == "allow"  # cached (60 s)
        assert len(api.permission_requests) == asked
        clock.advance(61)
        st = bridge.consent().json()
        assert (st["allow"], st["reason"]) == (False, "meta-no-permission")
        # a call limit reached: deny
        api.set_permission(USER, "permanent", can_start_call=False)
        clock.advance(61)
        assert bridge.consent().json()["reason"] == "meta-call-limit"
        m = bridge.client.get("/metrics").text
        assert "wagw_permission_check_total{reason" not in m
        assert 'wagw_permission_check_total{result="meta-no-permission",source="meta"} 2' in m
        assert 'wagw_permission_check_total{result="ok",source="cache"} 1' in m


def test_meta_asked_by_bsuid(
    database: str, tmp_path: Path, clock: FakeClock, graph: tuple[FakeGraphAPI, str]
) -> None:
    api, url = graph
    with checked_bridge(database, tmp_path, clock, url) as c:
        bridge = Bridge(c, clock)
        now = ledger_allows(bridge)
        bridge.post(both_ids_message("Hallo", ts=now + 10))
        api.set_permission(BSUID, "permanent")
        assert bridge.consent(subject=BSUID, fmt="text").text == "allow"
        assert api.permission_requests[-1]["user"] == BSUID


def ledger_allows(bridge: Bridge) -> int:
    """Opt-in confirmed and a permanent call permission: the ledger alone would allow."""
    now = int(bridge.clock())
    bridge.post(text_message("START", ts=now))
    bridge.post(text_message("JA", ts=now + 1))
    bridge.post(call_permission_reply("accept", ts=now + 2, permanent=True))
    return now


def test_meta_unreachable_fails_closed(database: str, tmp_path: Path, clock: FakeClock) -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    with checked_bridge(database, tmp_path, clock, url) as c:
        bridge = Bridge(c, clock)
        ledger_allows(bridge)
        st = bridge.consent().json()
        assert (st["allow"], st["reason"]) == (False, "meta-unreachable")
        assert bridge.consent(fmt="text").text == "deny"
        m = bridge.client.get("/metrics").text
        assert 'wagw_permission_check_total{result="meta-unreachable",source="meta"} 2' in m


def test_meta_error_answer_fails_closed(
    database: str, tmp_path: Path, clock: FakeClock, graph: tuple[FakeGraphAPI, str]
) -> None:
    api, url = graph
    with checked_bridge(database, tmp_path, clock, url) as c:
        bridge = Bridge(c, clock)
        ledger_allows(bridge)
        api.set_permission(USER, "permanent")
        api.script.append((500, graph_error(131000, "Something went wrong")))
        assert bridge.consent().json()["reason"] == "meta-unreachable"
        assert bridge.consent().json()["allow"] is True  # not cached: asked again


def test_ledger_deny_does_not_ask_meta(
    database: str, tmp_path: Path, clock: FakeClock, graph: tuple[FakeGraphAPI, str]
) -> None:
    api, url = graph
    with checked_bridge(database, tmp_path, clock, url) as c:
        assert Bridge(c, clock).consent().json()["reason"] == "no-opt-in"
    assert api.permission_requests == []


def test_meta_check_needs_token_and_ids(tmp_path: Path, clock: FakeClock) -> None:
    s = make_settings(str(tmp_path / "x.sqlite3"), tmp_path, permission_check="meta")
    with pytest.raises(ConfigError, match="ACCESS_TOKEN"):
        create_app(s, clock=clock)
    with pytest.raises(ConfigError, match="PERMISSION_CHECK"):
        make_settings(str(tmp_path / "x.sqlite3"), tmp_path, permission_check="yes")


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        ({"permission": {"status": "temporary", "expiration_time": 2000}}, "ok"),
        ({"permission": {"status": "temporary", "expiration_time": 999}}, "meta-no-permission"),
        ({"permission": {"status": "permanent"}}, "ok"),
        ({"permission": {"status": "no_permission"}}, "meta-no-permission"),
        ({"error": {"code": 190}}, "meta-unreachable"),
        (None, "meta-unreachable"),
    ],
)
def test_interpret(answer: Any, reason: str) -> None:
    assert interpret(200, answer, 1000).reason == reason
