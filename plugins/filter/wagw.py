"""Filters that turn the client inventory (what an MSP writes) into role parameters."""

from __future__ import annotations

import re

DOCUMENTATION_SIP_ACCOUNTS = """
name: wagw_sip_accounts
short_description: WhatsApp numbers of a client as SIP accounts
description:
  - Takes C(wagw_whatsapp.numbers) (items with C(number) and C(sip_password)) and returns
    items C({number, password}) as the kamailio and asterisk roles expect them.
"""


def wagw_sip_accounts(numbers: list[dict]) -> list[dict]:
    accounts = []
    for item in numbers:
        if "number" not in item or "sip_password" not in item:
            raise ValueError(
                "each wagw_whatsapp.numbers item needs 'number' and 'sip_password'"
            )
        accounts.append({"number": str(item["number"]), "password": str(item["sip_password"])})
    return accounts


def wagw_unmatched(values: list[str], patterns: list[str]) -> list[str]:
    """Values that match none of the regular expressions (re.search semantics)."""
    compiled = [re.compile(p) for p in patterns]
    return [v for v in values if not any(c.search(str(v)) for c in compiled)]


def wagw_route_windows(routes: list[dict]) -> list[dict]:
    """The weekly windows of all routes, flat, each with its route's number and position."""
    return [
        {"whatsapp_number": route.get("whatsapp_number"), "index": i, **window}
        for route in routes
        for i, window in enumerate(route.get("windows") or [])
    ]


def wagw_route_destinations(routes: list[dict]) -> list[str]:
    """Every landline a route may ring: its default destinations and those of its windows."""
    found = [str(d) for route in routes for d in route.get("destinations") or []]
    found += [str(d) for window in wagw_route_windows(routes) for d in window.get("destinations") or []]
    return list(dict.fromkeys(found))


class FilterModule:
    def filters(self) -> dict:
        return {
            "wagw_sip_accounts": wagw_sip_accounts,
            "wagw_unmatched": wagw_unmatched,
            "wagw_route_windows": wagw_route_windows,
            "wagw_route_destinations": wagw_route_destinations,
        }
