"""plugins/modules/wagw_meta_calling.py, run by ansible on the controller against
tests/fake_meta_graph.py on loopback: the request bodies, idempotence, check mode and diff,
retries on throttling and 5xx, Meta's refusals as clear messages, and the conversion of the
bridge's business-hours windows into Meta's call hours."""

from __future__ import annotations

import datetime
import importlib.util
from collections.abc import Iterator
from typing import Any

import pytest
from fake_meta_graph import DEFAULT_APP_ID, DEFAULT_TOKEN, FakeMetaGraph, running

from conftest import ROOT, run_module

NUMBER_ID = "100000000000001"
NUMBER = "+4930555000100"


def load_calling_module() -> Any:
    """The module's Python, for the pure conversion functions (its module_utils importable from
    the collection, conftest's sys.path)."""
    spec = importlib.util.spec_from_file_location("wagw_meta_calling", ROOT / "plugins/modules/wagw_meta_calling.py")
    assert spec
    assert spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


CALLING = load_calling_module()


@pytest.fixture
def meta() -> Iterator[tuple[FakeMetaGraph, str]]:
    fake = FakeMetaGraph()
    fake.add_number(NUMBER_ID, messaging_limit=2000)
    with running(fake) as url:
        yield fake, url


def args(url: str, **extra: Any) -> dict[str, Any]:
    return {
        "graph_api_url": url, "access_token": DEFAULT_TOKEN, "retry_delay": 0.01,
        "phone_number_id": NUMBER_ID, "number": NUMBER, "app_id": DEFAULT_APP_ID,
        "call_icon_visibility": "DEFAULT", "callback_permission_status": "ENABLED",
        "srtp_key_exchange_protocol": "SDES", "additional_codecs": ["PCMA"],
        "sip": {"hostname": "sip.beispiel-sanitaer.example", "port": 5061},
        "business_hours": {"timezone": "Europe/Berlin", "destinations": [], "windows": [
            {"days": ["mon", "tue", "wed", "thu", "fri"], "start": "08:00", "end": "18:00",
             "destinations": ["phone:empfang"]},
            {"days": ["sat"], "start": "09:00", "end": "13:00", "destinations": ["phone:werkstatt"]},
        ]},
        **extra,
    }


WEEKDAY_HOURS = [{"day_of_week": day, "open_time": "0800", "close_time": "1800"}
                 for day in ("MONDAY", "TUESDAY", "WEDNESDAY", "THURSDAY", "FRIDAY")]
SATURDAY = [{"day_of_week": "SATURDAY", "open_time": "0900", "close_time": "1300"}]


def test_first_run_posts_the_documented_body_then_nothing(meta: tuple[FakeMetaGraph, str]) -> None:
    fake, url = meta
    first = run_module("wagw_meta_calling", args(url))
    assert first["changed"] is True, first
    posts = fake.posts()
    assert [p["path"] for p in posts] == [f"/v23.0/{NUMBER_ID}/settings"]
    assert posts[0]["body"] == {"calling": {
        "status": "ENABLED",
        "call_icon_visibility": "DEFAULT",
        "callback_permission_status": "ENABLED",
        "srtp_key_exchange_protocol": "SDES",
        "audio": {"additional_codecs": ["PCMA"]},
        "sip": {"status": "ENABLED", "servers": [{"hostname": "sip.beispiel-sanitaer.example", "port": 5061}]},
        "call_hours": {"status": "ENABLED", "timezone_id": "Europe/Berlin",
                       "weekly_operating_hours": WEEKDAY_HOURS + SATURDAY, "holiday_schedule": []},
    }}
    assert fake.sip_password(NUMBER_ID)  # Meta generated the SIP password for number + app
    fake.log.clear()
    second = run_module("wagw_meta_calling", args(url))
    assert second["changed"] is False, second
    assert second["request"] == {}
    assert [e["method"] for e in fake.log] == ["GET"]


def test_only_the_differing_keys_are_posted(meta: tuple[FakeMetaGraph, str]) -> None:
    fake, url = meta
    run_module("wagw_meta_calling", args(url))
    fake.log.clear()
    changed = run_module("wagw_meta_calling", args(url, additional_codecs=["PCMU", "PCMA"],
                                                   srtp_key_exchange_protocol="DTLS"))
    assert changed["changed"] is True
    assert fake.posts()[0]["body"] == {"calling": {"srtp_key_exchange_protocol": "DTLS",
                                                   "audio": {"additional_codecs": ["PCMA", "PCMU"]}}}


def test_check_mode_posts_nothing_and_shows_the_diff(meta: tuple[FakeMetaGraph, str]) -> None:
    fake, url = meta
    result = run_module("wagw_meta_calling", args(url), "--check", "--diff")
    assert result["changed"] is True
    assert fake.posts() == []
    assert '"status": "DISABLED"' in result["diff"]["before"]
    assert '"srtp_key_exchange_protocol": "DTLS"' in result["diff"]["before"]  # Meta's default, not returned
    assert '"srtp_key_exchange_protocol": "SDES"' in result["diff"]["after"]
    assert '"hostname": "sip.beispiel-sanitaer.example"' in result["diff"]["after"]
    assert NUMBER in result["diff"]["after_header"]
    assert result["request"]["calling"]["status"] == "ENABLED"
    assert fake.numbers[NUMBER_ID]["calling"] == {"status": "DISABLED"}


def test_throttling_and_server_errors_are_retried(meta: tuple[FakeMetaGraph, str]) -> None:
    fake, url = meta
    fake.throttle = 2  # HTTP 429, Graph error 130429
    fake.server_errors = 2  # HTTP 503, then 500
    result = run_module("wagw_meta_calling", args(url))
    assert result["changed"] is True, result
    statuses = [e["status"] for e in fake.log]
    assert statuses == [429, 429, 503, 500, 200, 200]
    fake.log.clear()
    fake.throttle = [4, 80007, 17, 32, 613]  # Graph's rate-limit codes, answered with HTTP 400
    assert run_module("wagw_meta_calling", args(url))["changed"] is False
    assert [e["status"] for e in fake.log] == [400] * 5 + [200]


def test_throttling_that_outlasts_the_retries_fails_clearly(meta: tuple[FakeMetaGraph, str]) -> None:
    fake, url = meta
    fake.throttle = 10
    result = run_module("wagw_meta_calling", args(url, retries=2))
    assert result["failed"] is True
    assert f"WhatsApp number {NUMBER} (phone number id {NUMBER_ID})" in result["msg"]
    assert "after 3 attempts" in result["msg"]
    assert "130429" in result["msg"]


def test_an_expired_token_fails_clearly_without_retries(meta: tuple[FakeMetaGraph, str]) -> None:
    fake, url = meta
    fake.token_expired = True
    result = run_module("wagw_meta_calling", args(url))
    assert result["failed"] is True
    assert NUMBER in result["msg"]
    assert "Meta refused the access token (Graph error 190" in result["msg"]
    assert "Session has expired" in result["msg"]
    assert "wagw_meta.access_token" in result["msg"]
    assert len(fake.log) == 1  # not retried
    assert DEFAULT_TOKEN not in str(result)


def test_meta_refuses_calling_below_the_messaging_limit(meta: tuple[FakeMetaGraph, str]) -> None:
    fake, url = meta
    fake.messaging_limits[NUMBER_ID] = 1000
    result = run_module("wagw_meta_calling", args(url))
    assert result["failed"] is True
    assert f"WhatsApp number {NUMBER} (phone number id {NUMBER_ID})" in result["msg"]
    assert "Meta refuses to enable calling on this number" in result["msg"]
    assert "(Graph error 138015, calling cannot be enabled): Calling APIs cannot be enabled for this phone number" in result["msg"]
    assert "messaging limit of at least 2000" in result["msg"]
    assert result["graph_error"]["code"] == 138015


def test_invalid_parameter_and_generic_error_are_explained(meta: tuple[FakeMetaGraph, str]) -> None:
    fake, url = meta
    bad = run_module("wagw_meta_calling", args(url, business_hours={
        "timezone": "UTC", "windows": [{"days": ["mon"], "start": "08:00", "end": "09:00",
                                        "destinations": ["phone:empfang"]}]}))
    assert bad["failed"] is True
    assert "Meta refused a parameter (Graph error 100, invalid parameter)" in bad["msg"]
    assert "Timezone is invalid" in bad["msg"]
    fake.generic_error = 1
    generic = run_module("wagw_meta_calling", args(url))
    assert "Graph error 131000, something went wrong" in generic["msg"]
    assert NUMBER in generic["msg"]


def test_too_many_intervals_a_day_fail_before_any_request(meta: tuple[FakeMetaGraph, str]) -> None:
    fake, url = meta
    windows = [{"days": ["mon"], "start": f"{h:02d}:00", "end": f"{h:02d}:30", "destinations": ["phone:a"]}
               for h in (8, 10, 12)]
    result = run_module("wagw_meta_calling", args(url, business_hours={"timezone": "Europe/Berlin",
                                                                        "windows": windows}))
    assert result["failed"] is True
    assert "mon has 3 open intervals (0800-0830, 1000-1030, 1200-1230)" in result["msg"]
    assert NUMBER in result["msg"]
    assert fake.log == []


def test_sip_servers_of_other_apps_are_left_alone_and_reported(meta: tuple[FakeMetaGraph, str]) -> None:
    fake, url = meta
    run_module("wagw_meta_calling", args(url))
    fake.numbers[NUMBER_ID]["servers"]["123"] = {"hostname": "old.example", "port": 5061}
    result = run_module("wagw_meta_calling", args(url))
    assert result["changed"] is False
    assert any("other apps (123)" in w for w in result.get("warnings", []))


# --- the conversion of the bridge's windows (pure functions) ---------------------------------

TODAY = datetime.date(2026, 6, 1)


def hours(destinations: list[str], *windows: tuple[list[str], str, str, list[str]], holidays=()) -> dict:
    return {"timezone": "Europe/Berlin", "destinations": destinations, "holidays": list(holidays),
            "windows": [{"days": d, "start": s, "end": e, "destinations": dest} for d, s, e, dest in windows]}


def test_a_route_that_rings_outside_its_windows_is_always_open() -> None:
    assert CALLING.call_hours_from(hours(["phone:a"], (["mon"], "08:00", "18:00", ["phone:b"])), TODAY) == {
        "status": "DISABLED"}


def test_an_empty_window_closes_and_the_first_match_wins() -> None:
    # Lunch break: the closed window comes first, so it wins over the day window.
    result = CALLING.call_hours_from(hours([], (["mon"], "12:00", "13:00", []),
                                           (["mon"], "08:00", "18:00", ["phone:a"])), TODAY)
    assert result["weekly_operating_hours"] == [
        {"day_of_week": "MONDAY", "open_time": "0800", "close_time": "1200"},
        {"day_of_week": "MONDAY", "open_time": "1300", "close_time": "1800"}]


def test_overlapping_windows_merge_and_24_00_closes_at_2359() -> None:
    result = CALLING.call_hours_from(hours([], (["tue"], "08:00", "14:00", ["phone:a"]),
                                           (["tue"], "12:00", "24:00", ["phone:b"])), TODAY)
    assert result["weekly_operating_hours"] == [{"day_of_week": "TUESDAY", "open_time": "0800",
                                                 "close_time": "2359"}]


def test_a_window_past_midnight_continues_on_the_next_day() -> None:
    result = CALLING.call_hours_from(hours([], (["sun"], "22:00", "02:00", ["phone:a"])), TODAY)
    assert result["weekly_operating_hours"] == [
        {"day_of_week": "MONDAY", "open_time": "0000", "close_time": "0200"},
        {"day_of_week": "SUNDAY", "open_time": "2200", "close_time": "2359"}]


def test_past_holidays_are_left_out_and_the_rest_kept() -> None:
    result = CALLING.call_hours_from(hours([], (["mon"], "08:00", "18:00", ["phone:a"]), holidays=[
        {"date": "2026-01-01", "start": "00:00", "end": "24:00"},
        {"date": "2026-12-25", "start": "00:00", "end": "24:00"}]), TODAY)
    assert result["holiday_schedule"] == [{"date": "2026-12-25", "start_time": "0000", "end_time": "2359"}]


def test_a_route_that_never_rings_is_refused() -> None:
    with pytest.raises(CALLING.HoursError, match="rings nobody at any time"):
        CALLING.call_hours_from(hours([], (["mon"], "08:00", "18:00", [])), TODAY)


def test_metas_time_formats_compare_equal() -> None:
    current = {"status": "ENABLED", "timezone_id": "Europe/Berlin", "weekly_operating_hours": [
        {"day_of_week": "MONDAY", "open_time": "08:00", "close_time": 1800}], "holiday_schedule": [
        {"date": "2025-01-01", "start_time": "0000", "end_time": "2359"}]}
    assert CALLING.normalize_call_hours(current, TODAY) == CALLING.call_hours_from(
        hours([], (["mon"], "08:00", "18:00", ["phone:a"])), TODAY)
