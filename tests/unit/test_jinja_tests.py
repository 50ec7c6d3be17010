"""The Jinja tests of plugins/test/wagw.py: the single-value rules the client check and the roles
share (E.164, addresses and networks, phone account names, age public keys)."""

from __future__ import annotations

import importlib.util

import pytest

from conftest import ROOT

_spec = importlib.util.spec_from_file_location("wagw_tests", ROOT / "plugins" / "test" / "wagw.py")
assert _spec is not None
assert _spec.loader is not None
rules = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(rules)


@pytest.mark.parametrize(("value", "ok"), [
    ("+4930555000100", True), ("+1234567", True), ("+123456789012345", True),
    ("4930555000100", False), ("+0301234567", False), ("+123456", False), ("+1234567890123456", False),
    ("+49 30 555", False), ("", False), (4930555000100, False),
])
def test_e164(value: object, ok: bool) -> None:
    assert rules.wagw_e164(value) is ok


@pytest.mark.parametrize(("value", "ok"), [
    ("192.0.2.10", True), ("2001:db8::1", True), ("192.0.2.0/24", False), ("999.1.1.1", False),
    ("sip.example", False), ("", False),
])
def test_ip_address(value: str, ok: bool) -> None:
    assert rules.wagw_ip_address(value) is ok


@pytest.mark.parametrize(("value", "ok"), [
    ("192.0.2.0/24", True), ("192.0.2.7/24", True), ("192.0.2.10", True), ("0.0.0.0/0", True),
    ("2001:db8::/32", True), ("2001:db8::/128", True),
    ("192.0.2.0/33", False), ("2001:db8::/129", False), ("300.0.2.0/24", False), ("192.0.2/24", False),
    ("10.0.0.0/-1", False), ("any", False), ("", False),
])
def test_network(value: str, ok: bool) -> None:
    assert rules.wagw_network(value) is ok


@pytest.mark.parametrize(("value", "ok"), [
    ("empfang", True), ("buero_2", True), ("a" * 32, True),
    ("a" * 33, False), ("Empfang", False), ("2empfang", False), ("030123", False), ("", False),
])
def test_phone_name(value: str, ok: bool) -> None:
    assert rules.wagw_phone_name(value) is ok


AGE_KEY = "age1" + "qyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqs3290gq"


@pytest.mark.parametrize(("value", "ok"), [
    (AGE_KEY, True), (AGE_KEY[:-1], False), (AGE_KEY + "q", False), (AGE_KEY.upper(), False),
    (AGE_KEY[:-1] + "b", False), ("AGE-SECRET-KEY-1" + "Q" * 58, False), ("", False), (None, False),
])
def test_age_recipient(value: object, ok: bool) -> None:
    assert rules.wagw_age_recipient(value) is ok
