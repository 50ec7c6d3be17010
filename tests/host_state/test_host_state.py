"""Host-state controls, one test per host and declared object (conftest.py says where the
declarations come from). Their ids: HOST-SERVICE, RET-TIMER, HOST-FILE, NET-SOCKETS, NET-FIREWALL."""

from __future__ import annotations

import json
from collections.abc import Callable

import wagw_firewall
import wagw_sockets

from conftest import Hosts, declarations

Record = Callable[[str, object], None]


def test_service_runs(hosts: Hosts, service: tuple[str, str], record_property: Record) -> None:
    host, unit = service
    props = hosts.units(host).get(unit, {})
    state = f"{props.get('LoadState', '?')}, {props.get('UnitFileState') or '?'}, {props.get('ActiveState', '?')}"
    record_property("detail", state)
    assert props.get("LoadState") == "loaded", f"{unit} is not installed ({state})"
    assert props.get("UnitFileState") == "enabled", f"{unit} does not start at boot ({state})"
    assert props.get("ActiveState") == "active", f"{unit} is not running ({state})"


def test_timer_runs(hosts: Hosts, timer: tuple[str, str], record_property: Record) -> None:
    host, unit = timer
    units = hosts.units(host)
    props = units.get(unit, {})
    result = units.get(unit.removesuffix(".timer") + ".service", {}).get("Result", "?")
    state = (f"{props.get('UnitFileState') or '?'}, {props.get('ActiveState', '?')}, "
             f"last triggered {props.get('LastTriggerUSec') or 'never'}, last run {result}")
    record_property("detail", state)
    assert props.get("UnitFileState") == "enabled", f"{unit} does not start at boot ({state})"
    assert props.get("ActiveState") == "active", f"{unit} is not active ({state})"
    assert result == "success", f"the last run of {unit} failed ({state})"


def test_file_mode(hosts: Hosts, file_spec: tuple[str, dict], record_property: Record) -> None:
    host, spec = file_spec
    live = hosts.files(host).get(spec["path"])
    record_property("detail", live or "missing")
    assert live, f"{spec['path']} is missing"
    want = f"{int(spec['mode'], 8):04o} {spec['owner']}:{spec['group']}"
    assert live == want, f"{spec['path']} is {live}, declared {want}"


def test_listeners(hosts: Hosts, listeners: tuple[str, list], record_property: Record) -> None:
    host, declared = listeners
    live = wagw_sockets.parse(hosts(host).check_output("ss -H -lntup"))
    unexpected, missing = wagw_sockets.compare(declared, live)
    record_property("live", [wagw_sockets.name(s) for s in live])
    record_property("detail", f"{len(live)} sockets; {len(unexpected)} unexpected, {len(missing)} missing")
    assert not unexpected, f"unexpected listeners: {', '.join(unexpected)}"
    assert not missing, f"declared listeners missing: {', '.join(missing)}"


def test_firewall(hosts: Hosts, firewall: tuple[str, dict], record_property: Record) -> None:
    host, declared = firewall
    table = declared.get("table", "wagw_filter")
    listed = hosts(host).run(f"nft -j list table inet {table}")
    assert listed.rc == 0, f"no table inet {table}: {listed.stderr.strip()}"
    policy, live = wagw_firewall.live_rules(json.loads(listed.stdout), table)
    want = wagw_firewall.declared_rules(declared)
    missing, unexpected = sorted(want - live), sorted(live - want)
    record_property("detail", f"policy {policy}; {len(unexpected)} unexpected, {len(missing)} missing")
    record_property("missing", missing)
    record_property("unexpected", unexpected)
    assert policy == "drop", f"the input chain's policy is {policy}, not drop"
    assert not unexpected, f"accepted but not declared: {'; '.join(unexpected)}"
    assert not missing, f"declared but not accepted: {'; '.join(missing)}"


def test_every_host_declares_its_state() -> None:
    """A run without declarations would pass by testing nothing."""
    found = declarations()
    assert found, "no declared/<host>.json in the audit run"
    assert all(d.get("services") for d in found.values()), "a host declares no service"
