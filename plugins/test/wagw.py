"""Jinja tests of the toolkit: rules that the client check and several roles apply, stated once."""
# Each test's documentation is plugins/test/<name>.yml (ansible-doc -t test wagw.gateway.<name>).

from __future__ import annotations

import ipaddress
import re

E164_RE = re.compile(r"^\+[1-9][0-9]{6,14}$")
PHONE_NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
# age's X25519 recipient: "age1" and 58 characters of bech32's alphabet (no 1, b, i, o)
AGE_RECIPIENT_RE = re.compile(r"^age1[02-9ac-hj-np-z]{58}$")


def wagw_e164(value: object) -> bool:
    return isinstance(value, str) and E164_RE.match(value) is not None


def wagw_ip_address(value: object) -> bool:
    try:
        ipaddress.ip_address(str(value))
    except ValueError:
        return False
    return isinstance(value, str)


def wagw_network(value: object) -> bool:
    try:
        ipaddress.ip_network(str(value), strict=False)
    except ValueError:
        return False
    return isinstance(value, str)


def wagw_phone_name(value: object) -> bool:
    return isinstance(value, str) and PHONE_NAME_RE.match(value) is not None


def wagw_age_recipient(value: object) -> bool:
    return isinstance(value, str) and AGE_RECIPIENT_RE.match(value) is not None


class TestModule:
    def tests(self) -> dict:
        return {"wagw_e164": wagw_e164, "wagw_ip_address": wagw_ip_address, "wagw_network": wagw_network,
                "wagw_phone_name": wagw_phone_name, "wagw_age_recipient": wagw_age_recipient}
