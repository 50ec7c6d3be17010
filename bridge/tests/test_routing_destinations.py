"""Route destinations: the business's phones (``phone:<name>``) and PBX extensions
(``pbx:<extension>``), never a phone number. A WhatsApp call never reaches the PSTN (Meta's
terms), so a routing table that names one is refused when it is loaded: at start, on reload
(the table in use stays) and by ``doctor``."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from conftest import INTERNAL_TOKEN, FakeClock, make_settings
from wagw_bridge.app import create_app
from wagw_bridge.cli import doctor_checks
from wagw_bridge.config import Settings
from wagw_bridge.routing import RoutesError, RoutingTable

AUTH = {"Authorization": f"Bearer {INTERNAL_TOKEN}"}
NUMBER = "+4930123456"
# Wednesday 2025-03-05 10:00 Berlin: inside the weekday window of table() below.
WEEKDAY_10 = datetime(2025, 3, 5, 9, 0, tzinfo=UTC)
SUNDAY_10 = datetime(2025, 3, 9, 9, 0, tzinfo=UTC)

PSTN = [
    "+4930123456",
    "030123456",
    "4930123456",
    "tel:+4930123456",
    "sip:+4930123456@carrier.example",
    "PJSIP/x@carrier",
    "PJSIP/+4930555001@carrier",
]
NOT_A_DESTINATION = [
    "",
    "empfang",
    "phone:",
    "phone:Empfang",
    "phone:1st",
    "phone:emp-fang",
    "phone:" + "a" * 33,
    "pbx:",
    "pbx:21a",
    "pbx:" + "1" * 21,
    "fax:21",
    "phone:empfang&pbx:21",
    "phone:empfang\npbx:21",
]


def table(default: list[Any], window: list[Any]) -> dict[str, Any]:
    return {
        "timezone": "Europe/Berlin",
        "numbers": {
            NUMBER: {
                "destinations": default,
                "windows": [
                    {
                        "days": ["mon", "tue", "wed", "thu", "fri"],
                        "start": "08:00",
                        "end": "18:00",
                        "destinations": window,
                    }
                ],
            }
        },
    }


def refusal(data: dict[str, Any]) -> str:
    with pytest.raises(RoutesError) as excinfo:
        RoutingTable.from_data(data)
    return str(excinfo.value)


@pytest.mark.parametrize("dest", PSTN + NOT_A_DESTINATION)
def test_a_default_destination_that_is_no_phone_or_pbx_is_refused(dest: str) -> None:
    message = refusal(table(["phone:empfang", dest], ["pbx:21"]))
    assert message == (
        f"routes.numbers[{NUMBER}]: invalid destination {dest!r}: phone:<name> or "
        "pbx:<extension>, never a phone number (no PSTN on a WhatsApp call)"
    )


@pytest.mark.parametrize("dest", PSTN)
def test_a_window_destination_that_is_a_phone_number_is_refused(dest: str) -> None:
    message = refusal(table(["phone:empfang"], ["pbx:21", dest]))
    assert message.startswith(f"routes.numbers[{NUMBER}].windows[0]: invalid destination {dest!r}")
    assert "no PSTN" in message


def test_a_number_as_an_integer_is_refused() -> None:
    """YAML reads an unquoted +4930123456 as the integer 4930123456."""
    message = refusal(table([4930123456], []))
    assert "invalid destination '4930123456'" in message
    assert "no PSTN" in message


def test_a_list_of_destinations_is_checked_too() -> None:
    """The short form ``"+49...": [destinations]`` is held to the same rule."""
    message = refusal({"numbers": {NUMBER: ["PJSIP/x@carrier"]}})
    assert "invalid destination 'PJSIP/x@carrier'" in message
    assert "no PSTN" in message


@pytest.mark.parametrize(
    ("suffix", "text"),
    [
        (".yaml", f'numbers:\n  "{NUMBER}":\n    destinations: ["+4930123456"]\n'),
        (".yaml", f'numbers:\n  "{NUMBER}":\n    destinations: [+4930123456]\n'),
        (".json", json.dumps(table(["phone:empfang"], ["PJSIP/x@carrier"]))),
    ],
    ids=["yaml", "yaml unquoted", "json window"],
)
def test_a_routes_file_with_a_phone_number_is_refused(
    tmp_path: Path, suffix: str, text: str
) -> None:
    path = tmp_path / f"routes{suffix}"
    path.write_text(text)
    with pytest.raises(RoutesError, match=r"never a phone number \(no PSTN on a WhatsApp call\)"):
        RoutingTable.load(str(path))


@pytest.mark.parametrize(
    "dest",
    [
        "phone:empfang",
        "phone:a",
        "phone:werkstatt_2",
        "phone:" + "a" * 32,
        "pbx:21",
        "pbx:*21",
        "pbx:0",
        "pbx:**610",
        "pbx:" + "9" * 8,
    ],
)
def test_phones_and_pbx_extensions_are_destinations(dest: str) -> None:
    routes = RoutingTable.from_data(table([dest], ["phone:empfang", dest]))
    assert routes.lookup(NUMBER, SUNDAY_10) == ((dest,), "default")
    assert routes.lookup(NUMBER, WEEKDAY_10) == (("phone:empfang", dest), "window:0")


@pytest.mark.parametrize("dest", ["pbx:0301234567", "pbx:00491701234567", "pbx:" + "9" * 9])
def test_pbx_outside_lines_and_long_extensions_are_refused(dest: str) -> None:
    with pytest.raises(RoutesError, match="never a phone number"):
        RoutingTable.from_data(table([dest], []))


def test_destinations_are_stripped() -> None:
    routes = RoutingTable.from_data(table([" pbx:21 "], []))
    assert routes.lookup(NUMBER, SUNDAY_10) == (("pbx:21",), "default")


def test_no_destinations_are_allowed() -> None:
    routes = RoutingTable.from_data(table([], []))
    assert routes.lookup(NUMBER, WEEKDAY_10) == ((), "window:0")


def _settings(tmp_path: Path, data: dict[str, Any]) -> tuple[Settings, Path]:
    """Settings whose routes file holds ``data`` (make_settings writes the shared ROUTES to
    routes.json, hence another name)."""
    path = tmp_path / "own-routes.json"
    path.write_text(json.dumps(data))
    return make_settings(str(tmp_path / "bridge.sqlite3"), tmp_path, routes_file=str(path)), path


def _client(tmp_path: Path, data: dict[str, Any]) -> tuple[TestClient, Path]:
    settings, path = _settings(tmp_path, data)
    clock = FakeClock(WEEKDAY_10.timestamp())
    return TestClient(create_app(settings, clock=clock)), path


def test_route_answers_phones_and_pbx_extensions(tmp_path: Path) -> None:
    client, _ = _client(
        tmp_path, table(["pbx:21"], ["phone:empfang", "pbx:*21", "phone:werkstatt"])
    )
    with client:
        r = client.get("/internal/route", params={"number": NUMBER}, headers=AUTH)
        assert r.status_code == 200
        assert r.json() == {
            "number": NUMBER,
            "destinations": ["phone:empfang", "pbx:*21", "phone:werkstatt"],
            "matched": "window:0",
            "timezone": "Europe/Berlin",
        }
        t = client.get("/internal/route", params={"number": NUMBER, "format": "text"}, headers=AUTH)
        assert t.status_code == 200
        assert t.text == "phone:empfang&pbx:*21&phone:werkstatt"


def test_the_bridge_does_not_start_with_a_phone_number_in_its_routes(tmp_path: Path) -> None:
    settings, _ = _settings(tmp_path, table(["+4930123456"], []))
    with pytest.raises(RoutesError, match="no PSTN"):
        create_app(settings)


def test_a_reload_with_a_phone_number_keeps_the_table_in_use(tmp_path: Path) -> None:
    client, path = _client(tmp_path, table(["pbx:21"], ["phone:empfang"]))
    with client:
        rt = client.app.state.runtime  # type: ignore[attr-defined]
        path.write_text(json.dumps(table(["pbx:21"], ["PJSIP/x@carrier"])))
        with pytest.raises(RoutesError, match="no PSTN"):
            rt.reload_routes()
        t = client.get("/internal/route", params={"number": NUMBER, "format": "text"}, headers=AUTH)
        assert t.text == "phone:empfang"


def test_doctor_fails_a_routes_file_with_a_phone_number(tmp_path: Path) -> None:
    settings, _ = _settings(tmp_path, table(["phone:empfang"], ["+4930123456"]))
    checks = {check: (level, detail) for level, check, detail in doctor_checks(settings)}
    level, detail = checks["routes"]
    assert level == "fail"
    assert "invalid destination '+4930123456'" in detail
    assert "no PSTN" in detail
