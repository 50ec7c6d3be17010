"""The firewall comparison of the host-state control NET-FIREWALL: the nftables input chain as
`nft -j list table` prints it, against the ports and sources roles/common declares
(common_firewall_ports), both reduced to "proto port from networks" strings."""

from __future__ import annotations

import ipaddress


def networks(values: list) -> list[str]:
    """Sources as collapsed networks ("any" when empty); nft prints ranges and single addresses too."""
    nets: list = []
    for value in values:
        if isinstance(value, dict) and "prefix" in value:
            nets.append(ipaddress.ip_network(f"{value['prefix']['addr']}/{value['prefix']['len']}", strict=False))
        elif isinstance(value, dict) and "range" in value:
            first, last = (ipaddress.ip_address(a) for a in value["range"])
            nets += ipaddress.summarize_address_range(first, last)
        else:
            nets.append(ipaddress.ip_network(str(value), strict=False))
    if not nets:
        return ["any"]
    return [str(n) for version in (4, 6)
            for n in ipaddress.collapse_addresses(n for n in nets if n.version == version)]


def rule_strings(ports: dict) -> set[str]:
    """(proto, port) -> sources, None for "any", as "proto port from networks"."""
    return {f"{proto} {port} from {' '.join(['any'] if None in found else networks(found))}"
            for (proto, port), found in ports.items()}


def live_rules(ruleset: dict, table: str) -> tuple[str | None, set[str]]:
    """The input chain's policy and its accept rules as "proto port from sources" (a range as
    "10000-10999"), the sources of one port merged over its IPv4 and IPv6 rules."""
    policy, ports = None, {}
    for item in ruleset.get("nftables", []):
        chain, rule = item.get("chain"), item.get("rule")
        if chain and chain.get("table") == table and chain.get("name") == "input":
            policy = chain.get("policy")
        if not rule or rule.get("table") != table or rule.get("chain") != "input":
            continue
        exprs = rule.get("expr", [])
        if not any("accept" in e for e in exprs):
            continue
        proto = port = None
        sources: list = []
        for expr in exprs:
            match = expr.get("match", {})
            payload = match.get("left", {}).get("payload", {}) if isinstance(match.get("left"), dict) else {}
            right = match.get("right")
            if payload.get("field") == "dport":
                proto = payload.get("protocol")
                port = "-".join(str(p) for p in right["range"]) if isinstance(right, dict) and "range" in right \
                    else str(right)
            elif payload.get("field") == "saddr":
                sources += right["set"] if isinstance(right, dict) and "set" in right else [right]
        if proto and port:
            ports.setdefault((proto, port), []).extend(sources or [None])
    return policy, rule_strings(ports)


def declared_rules(firewall: dict) -> set[str]:
    ports: dict = {("tcp", str(firewall["ssh_port"])): list(firewall["ssh_sources"]) or [None]}
    for rule in firewall["ports"]:
        ports.setdefault((rule["proto"], str(rule["port"])), []).extend(rule.get("sources") or [None])
    return rule_strings(ports)

