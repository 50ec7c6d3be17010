"""Jinja tests of the toolkit: rules that the client check and several roles apply, stated once."""

from __future__ import annotations

import ipaddress
import re

DOCUMENTATION_E164 = """
name: wagw_e164
short_description: An E.164 phone number as WhatsApp and Meta's SIP servers write it
description:
  - True for C(+) followed by 7 to 15 digits, the first not 0 (ITU-T E.164 allows up to 15; the
    shortest national numbers with country code have 7).
  - Used by the client check (playbooks/tasks/validate_client.yml) and the kamailio, asterisk and
    webhook_bridge roles, e.g. C(numbers | reject('wagw_e164')) or C(item.number is wagw_e164).
"""

DOCUMENTATION_IP_ADDRESS = """
name: wagw_ip_address
short_description: An IPv4 or IPv6 address (no prefix)
"""

DOCUMENTATION_NETWORK = """
name: wagw_network
short_description: An IPv4 or IPv6 address or network in CIDR notation (C(/0) to C(/32), C(/128))
description:
  - What a firewall rule and Kamailio's allow-lists take as a source; host bits after the prefix
    are allowed (C(192.0.2.7/24) means C(192.0.2.0/24)).
"""

DOCUMENTATION_PHONE_NAME = """
name: wagw_phone_name
short_description: A phone account name (SIP user of a phone registered to the edge)
description:
  - A lower-case letter, then up to 31 lower-case letters, digits and C(_); never a number, so a
    phone account cannot be mistaken for a PSTN destination.
"""

E164_RE = re.compile(r"^\+[1-9][0-9]{6,14}$")
PHONE_NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,31}$")


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


class TestModule:
    def tests(self) -> dict:
        return {"wagw_e164": wagw_e164, "wagw_ip_address": wagw_ip_address, "wagw_network": wagw_network,
                "wagw_phone_name": wagw_phone_name}
