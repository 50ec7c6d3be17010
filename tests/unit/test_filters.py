"""The filters that turn the client inventory into role parameters."""

from __future__ import annotations

import pytest

from wagw import wagw_route_destinations, wagw_route_windows, wagw_sip_accounts, wagw_unmatched


def test_sip_accounts_renames_the_password_key() -> None:
    numbers = [{"number": "+4930555000100", "phone_number_id": "1", "sip_password": "s3cret"}]
    assert wagw_sip_accounts(numbers) == [{"number": "+4930555000100", "password": "s3cret"}]


def test_sip_accounts_rejects_an_item_without_password() -> None:
    with pytest.raises(ValueError, match="sip_password"):
        wagw_sip_accounts([{"number": "+4930555000100"}])


def test_unmatched_lists_only_numbers_no_pattern_allows() -> None:
    patterns = [r"^\+49([2-8][0-9]{2}|9(0[1-9]|[1-9][0-9]))[0-9]{3,11}$"]
    values = ["+4930123456", "+49900123456", "+4412345678"]
    assert wagw_unmatched(values, patterns) == ["+49900123456", "+4412345678"]


def test_unmatched_is_empty_when_all_match() -> None:
    assert wagw_unmatched(["+4930123456"], [r"^\+4930"]) == []


ROUTES = [
    {"whatsapp_number": "+4930555000100", "destinations": ["+4930123456"],
     "windows": [{"days": ["mon"], "start": "08:00", "end": "18:00",
                  "destinations": ["+4930123457", "+4930123456"]}]},
    {"whatsapp_number": "+4930555000101", "destinations": ["+4930123458"]},
]


def test_route_windows_are_flat_with_number_and_index() -> None:
    windows = wagw_route_windows(ROUTES)
    assert [(w["whatsapp_number"], w["index"], w["start"]) for w in windows] == [("+4930555000100", 0, "08:00")]


def test_route_destinations_include_windows_once() -> None:
    assert wagw_route_destinations(ROUTES) == ["+4930123456", "+4930123458", "+4930123457"]
