"""Internal API for Asterisk: bearer auth, routing table with time windows, text formats."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from conftest import INTERNAL_TOKEN, Bridge
from wagw_bridge.routing import RoutesError, RoutingTable

BERLIN = ZoneInfo("Europe/Berlin")
AUTH = {"Authorization": f"Bearer {INTERNAL_TOKEN}"}


def at(bridge: Bridge, *args: int) -> None:
    bridge.clock.t = datetime(*args, tzinfo=BERLIN).timestamp()


@pytest.mark.parametrize(
    "path", ["/internal/route?number=%2B4930123456", "/internal/consent?subject=%2B491701234567"]
)
@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": INTERNAL_TOKEN},
        {"Authorization": f"Basic {INTERNAL_TOKEN}"},
        {"Authorization": f"Bearer {INTERNAL_TOKEN}x"},
    ],
)
def test_internal_auth_required(bridge: Bridge, path: str, headers: dict[str, str]) -> None:
    r = bridge.client.get(path, headers=headers)
    assert r.status_code == 401
    assert r.headers["www-authenticate"].startswith("Bearer")
    assert bridge.client.get(path, headers=AUTH).status_code == 200


def test_route_within_window(bridge: Bridge) -> None:
    at(bridge, 2025, 3, 5, 10, 0)  # Wednesday 10:00 Berlin
    r = bridge.client.get("/internal/route", params={"number": "+4930123456"}, headers=AUTH)
    assert r.status_code == 200
    assert r.json() == {
        "number": "+4930123456",
        "destinations": ["phone:empfang", "phone:werkstatt"],
        "matched": "window:0",
        "timezone": "Europe/Berlin",
    }
    t = bridge.client.get(
        "/internal/route", params={"number": "+4930123456", "format": "text"}, headers=AUTH
    )
    assert t.text == "phone:empfang&phone:werkstatt"
    assert t.headers["content-type"].startswith("text/plain")


def test_route_outside_window_uses_default(bridge: Bridge) -> None:
    at(bridge, 2025, 3, 5, 18, 0)  # Wednesday 18:00: window end is exclusive
    r = bridge.client.get("/internal/route?number=%2B4930123456&format=text", headers=AUTH)
    assert r.text == "pbx:21"


def test_route_window_over_midnight_and_dst(bridge: Bridge) -> None:
    at(bridge, 2025, 3, 30, 1, 30)  # Sunday 01:30 (DST change day), Saturday's 22-02 window
    r = bridge.client.get("/internal/route?number=%2B4930123456&format=text", headers=AUTH)
    assert r.text == "pbx:*77"
    at(bridge, 2025, 3, 29, 23, 0)  # Saturday 23:00
    assert (
        bridge.client.get("/internal/route?number=%2B4930123456&format=text", headers=AUTH).text
        == "pbx:*77"
    )
    at(bridge, 2025, 3, 30, 2, 30 + 0)  # after the window (clock jumped to 03:30 CEST anyway)
    assert (
        bridge.client.get("/internal/route?number=%2B4930123456&format=text", headers=AUTH).text
        == "pbx:21"
    )


def test_route_unencoded_plus_and_unknown(bridge: Bridge) -> None:
    at(bridge, 2025, 3, 5, 10, 0)
    # '+' not percent-encoded (as CURL() may send it) arrives as a space
    r = bridge.client.get("/internal/route?number=+4930123456", headers=AUTH)
    assert r.status_code == 200
    unknown = bridge.client.get("/internal/route?number=%2B4989000000&format=text", headers=AUTH)
    assert unknown.status_code == 404
    assert unknown.text == ""
    assert (
        bridge.client.get("/internal/route?number=%2B4989000000", headers=AUTH).status_code == 404
    )
    empty = bridge.client.get("/internal/route?number=%2B4940111222&format=text", headers=AUTH)
    assert empty.status_code == 200
    assert empty.text == "none"  # distinguishable from no answer at all
    empty_json = bridge.client.get("/internal/route?number=%2B4940111222", headers=AUTH)
    assert empty_json.json()["destinations"] == []


@pytest.mark.parametrize(
    "query", ["", "number=", "number=abc", "number=%2B12", "number=%2B4930123456&format=xml"]
)
def test_route_bad_request(bridge: Bridge, query: str) -> None:
    assert bridge.client.get(f"/internal/route?{query}", headers=AUTH).status_code == 400


@pytest.mark.parametrize(
    "query",
    [
        "",
        "subject=nope",
        "subject=%2B491701234567&business=x",
        "subject=%2B491701234567&format=csv",
    ],
)
def test_consent_bad_request(bridge: Bridge, query: str) -> None:
    assert bridge.client.get(f"/internal/consent?{query}", headers=AUTH).status_code == 400


def test_consent_response_has_no_number(bridge: Bridge) -> None:
    r = bridge.client.get("/internal/consent?subject=%2B491701234567", headers=AUTH)
    assert "491701234567" not in r.text
    assert r.json()["subject"].startswith("p:")


def test_routes_file_validation() -> None:
    with pytest.raises(RoutesError):
        RoutingTable.from_data({"numbers": {"not-a-number": []}})
    with pytest.raises(RoutesError):
        RoutingTable.from_data({"numbers": {"+4930123456": {"windows": [{"start": "25:00"}]}}})
    with pytest.raises(RoutesError):
        RoutingTable.from_data({"timezone": "Mars/Olympus", "numbers": {}})
    with pytest.raises(RoutesError):
        RoutingTable.from_data({"numbers": {"+4930123456": ["a&b"]}})
