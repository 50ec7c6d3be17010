"""The host-state controls of the audit (docs/operations.md, "Audit"), as pytest-testinfra tests.

playbooks/audit.yml runs them once for all hosts of a client, on the controller:

    pytest -c tests/host_state/pytest.ini --junitxml=<run>/host-state.xml tests/host_state

with WAGW_AUDIT_RUN=<run>, the audit run's directory, holding:
- hosts.yml: how to reach each host (its connection variables, never a password), for
  testinfra's Ansible backend ("ansible://<host>");
- declared/<host>.json: what each role on the host declares in its tasks/audit.yml
  (host_state: services, timers, files, listeners, firewall).

Each test is one control on one object. Besides the JUnit XML, the results are written per host
to host-state/<host>.json in the shape of wagw_host_audit's controls, so that the evidence and
the report show them with the module's.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import testinfra

RUN = Path(os.environ.get("WAGW_AUDIT_RUN", "."))

# Test function -> the control's stable id and title (the ids the report and the docs name).
CONTROLS = {
    "test_service_runs": ("HOST-SERVICE", "service enabled and running"),
    "test_timer_runs": ("RET-TIMER", "retention timer enabled, active, last run successful"),
    "test_file_mode": ("HOST-FILE", "file owned and readable as declared"),
    "test_listeners": ("NET-SOCKETS", "listening sockets exactly the declared ones"),
    "test_firewall": ("NET-FIREWALL", "firewall accepts exactly the declared ports and sources"),
}
# Fixture name -> the key of the declaration, whether its items are tested one by one (or the
# whole declaration at once), and how a test's object is named.
ITEMS = {
    "service": ("services", True, str),
    "timer": ("timers", True, str),
    "file_spec": ("files", True, lambda f: f["path"]),
    "listeners": ("listeners", False, lambda _: "listening sockets"),
    "firewall": ("firewall", False, lambda f: f"inet {f.get('table', 'wagw_filter')} input"),
}


def declarations() -> dict[str, dict]:
    return {path.stem: json.loads(path.read_text(encoding="utf-8"))
            for path in sorted((RUN / "declared").glob("*.json"))}


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """One test per host and declared object ("aio:kamailio.service")."""
    for fixture, (key, each, name) in ITEMS.items():
        if fixture not in metafunc.fixturenames:
            continue
        cases = []
        for host, declared in declarations().items():
            value = declared.get(key)
            items = (value or []) if each else ([value] if value is not None else [])
            cases += [pytest.param((host, item), id=f"{host}:{name(item)}") for item in items]
        metafunc.parametrize(fixture, cases)


class Hosts:
    """testinfra hosts through the Ansible backend, and per host facts read in one command each
    (every command is one Ansible run where testinfra has no native backend, e.g. podman)."""

    def __init__(self) -> None:
        self._hosts: dict[str, Any] = {}
        self._units: dict[str, dict[str, dict[str, str]]] = {}
        self._files: dict[str, dict[str, str]] = {}

    def __call__(self, name: str) -> Any:
        if name not in self._hosts:
            self._hosts[name] = testinfra.get_host(f"ansible://{name}", ansible_inventory=str(RUN / "hosts.yml"))
        return self._hosts[name]

    def units(self, name: str) -> dict[str, dict[str, str]]:
        """systemctl's properties of every declared service and timer (and the timer's service)."""
        if name not in self._units:
            declared = declarations()[name]
            timers = declared.get("timers", [])
            units = declared.get("services", []) + timers + [t.removesuffix(".timer") + ".service" for t in timers]
            out = self(name).check_output(
                "systemctl show --property=Id,LoadState,ActiveState,SubState,UnitFileState,Result,"
                "LastTriggerUSec -- " + " ".join(units))
            found: dict[str, dict[str, str]] = {}
            for block in out.split("\n\n"):
                props = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
                if props.get("Id"):
                    found[props["Id"]] = props
            self._units[name] = found
        return self._units[name]

    def files(self, name: str) -> dict[str, str]:
        """Mode, owner and group ("0640 root:kamailio") of every declared file; a missing one is absent."""
        if name not in self._files:
            paths = [f["path"] for f in declarations()[name].get("files", [])]
            out = self(name).run("stat --format='%n|%a|%U:%G' -- " + " ".join(f"'{p}'" for p in paths)).stdout
            self._files[name] = {path: f"{int(mode, 8):04o} {owner}"
                                 for path, mode, owner in (line.split("|") for line in out.splitlines() if line)}
        return self._files[name]


@pytest.fixture(scope="session")
def hosts() -> Hosts:
    return Hosts()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    """Tag each result with its control id, host and object (JUnit properties and host-state/)."""
    outcome = yield
    report = outcome.get_result()
    function = getattr(item, "originalname", item.name)
    # a test that could not start (the host unreachable) fails its control too
    if function not in CONTROLS or not hasattr(item, "callspec") or not (
            report.when == "call" or (report.when == "setup" and report.failed)):
        return
    host, obj = item.callspec.id.split(":", 1)
    control, title = CONTROLS[function]
    extra = dict(item.user_properties)
    detail = extra.pop("detail", "")
    if report.failed:
        detail = (str(call.excinfo.value).splitlines() or ["failed"])[0][:500] if call.excinfo else "failed"
    result = {"id": control, "title": title, "object": obj, "passed": report.passed, "detail": detail, **extra}
    item.user_properties += [("control", control), ("host", host)]
    item.config.stash.setdefault(RESULTS, {}).setdefault(host, []).append(result)


RESULTS = pytest.StashKey[dict[str, list[dict]]]()


def pytest_sessionfinish(session: pytest.Session) -> None:
    """host-state/<host>.json: the controls of every declared host, also a host none of whose
    tests could run (its controls then say so)."""
    results = session.config.stash.get(RESULTS, {})
    out = RUN / "host-state"
    out.mkdir(exist_ok=True)
    for host in declarations():
        (out / f"{host}.json").write_text(json.dumps(results.get(host, []), indent=1), encoding="utf-8")
