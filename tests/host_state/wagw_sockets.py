"""The socket comparison of the host-state control NET-SOCKETS: the sockets `ss -H -lntup` lists
(TCP listening, UDP bound) against the listeners the roles declare. Loopback sockets are left
out: no other host can reach them, and the firewall control covers what the network may reach."""

from __future__ import annotations

import ipaddress
import re

# "udp UNCONN 0 0 10.0.0.5:5080 0.0.0.0:* users:(("asterisk",pid=7,fd=12))"
LINE = re.compile(r"^(?P<proto>tcp|udp)\s+\S+\s+\d+\s+\d+\s+(?P<local>\S+)\s+\S+(?:\s+(?P<process>.*))?$")


def parse(output: str) -> list[dict]:
    """The listening sockets, loopback ones left out, as {proto, address, port, process}."""
    sockets = []
    for line in output.splitlines():
        match = LINE.match(line.strip())
        if not match:
            continue
        address, port = match["local"].rsplit(":", 1)
        address = address.strip("[]").split("%")[0]
        # ss prints a dual-stack wildcard as "*"
        address = "::" if address == "*" else address
        if ipaddress.ip_address(address).is_loopback:
            continue
        process = re.findall(r'\("([^"]+)"', match["process"] or "")
        sockets.append({"proto": match["proto"], "address": address, "port": int(port),
                        "process": ",".join(sorted(set(process))) or "?"})
    return sockets


def _ports(port: int | str) -> tuple[int, int]:
    first, _, last = str(port).partition("-")
    return int(first), int(last or first)


def _address(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    return ipaddress.ip_address(value.strip("[]"))


def matches(declared: dict, live: dict) -> bool:
    """Same protocol, address and process, the port within the declared one or range."""
    first, last = _ports(declared["port"])
    return (declared["proto"] == live["proto"] and first <= live["port"] <= last
            and _address(declared["address"]) == _address(live["address"])
            and declared.get("process", live["process"]) in live["process"].split(","))


def name(socket: dict) -> str:
    address = f"[{socket['address']}]" if ":" in socket["address"] else socket["address"]
    owner = socket.get("process") or socket.get("name")
    process = f" ({owner})" if owner else ""
    return f"{socket['proto']} {address}:{socket['port']}{process}"


def compare(declared: list[dict], live: list[dict]) -> tuple[list[str], list[str]]:
    """(unexpected live sockets, missing declared listeners); an optional listener (RTP ports,
    which exist during calls only) may be missing."""
    unexpected = [name(s) for s in live if not any(matches(d, s) for d in declared)]
    missing = [name(d) for d in declared if not d.get("optional") and not _address(d["address"]).is_loopback
               and not any(matches(d, s) for s in live)]
    return sorted(set(unexpected)), sorted(missing)
