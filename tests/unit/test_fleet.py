"""scripts/wagw-fleet: each client in its own ansible-playbook run (own inventory, own vault
id), one line per client, a fleet line, exit 1 when any client failed, the others still run."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import ROOT

BIN = Path(sys.executable).parent
# Fails where asked to, changes one thing, and proves isolation: a variable of client a is never
# seen by client b, and client b's vaulted variable is opened with its own vault id.
PLAYBOOK = """
- hosts: all
  gather_facts: false
  tasks:
    - ansible.builtin.assert:
        that:
          - only_in_a is not defined or client == 'a'
          - client != 'b' or vaulted_word == 'opened'
          - not (fail_me | default(false) | bool)
    - ansible.builtin.command: "true"
      changed_when: true
"""


def client(clients: Path, name: str, variables: dict) -> Path:
    folder = clients / name
    (folder / "group_vars" / "all").mkdir(parents=True)
    (folder / "hosts.yml").write_text(yaml.safe_dump(
        {"all": {"hosts": {f"{name}-host": {"ansible_connection": "local",
                                            "ansible_python_interpreter": sys.executable}}}}))
    (folder / "group_vars" / "all" / "main.yml").write_text(yaml.safe_dump({"client": name, **variables}))
    return folder


@pytest.fixture
def fleet(tmp_path: Path) -> dict[str, Path]:
    clients, vaults = tmp_path / "clients", tmp_path / "vault"
    vaults.mkdir()
    client(clients, "a", {"only_in_a": True})
    folder = client(clients, "b", {})
    (vaults / "b").write_text("b's own vault password\n")
    secret = folder / "group_vars" / "all" / "vault.yml"
    secret.write_text("vaulted_word: opened\n")
    subprocess.run([str(BIN / "ansible-vault"), "encrypt", "--vault-id", f"b@{vaults / 'b'}", str(secret)],
                   check=True, capture_output=True)
    playbook = tmp_path / "playbook.yml"
    playbook.write_text(PLAYBOOK)
    return {"clients": clients, "vaults": vaults, "playbook": playbook}


def run(fleet: dict[str, Path], *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, WAGW_CLIENTS_DIR=str(fleet["clients"]), WAGW_VAULT_DIR=str(fleet["vaults"]),
               ANSIBLE_INVENTORY="/nonexistent/another-client.yml")
    return subprocess.run([sys.executable, str(ROOT / "scripts" / "wagw-fleet"), "--playbook", str(fleet["playbook"]),
                           *args], capture_output=True, text=True, env=env, check=False, timeout=300)


def test_every_client_runs_alone_with_its_own_vault(fleet: dict[str, Path]) -> None:
    result = run(fleet)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert re.match(r"a +ok ", lines[0]), lines
    assert re.match(r"b +ok ", lines[1]), lines
    assert "hosts=1 ok=2 changed=1 unreachable=0 failed=0 rc=0" in lines[1]
    assert lines[2].startswith("fleet: 2 client(s), 2 ok, 0 failed; ok=4 changed=2"), lines
    # The whole output of each run is kept in the client's folder.
    logs = list((fleet["clients"] / "b" / "logs").glob("playbook-*.log"))
    assert len(logs) == 1
    assert "PLAY RECAP" in logs[0].read_text()


def test_a_failed_client_fails_the_fleet_and_the_others_still_run(fleet: dict[str, Path]) -> None:
    (fleet["clients"] / "a" / "group_vars" / "all" / "fail.yml").write_text("fail_me: true\n")
    result = run(fleet)
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert re.match(r"a +FAILED .* failed=1 ", lines[0]), lines
    assert " ok " in lines[1], lines
    assert "1 ok, 1 failed (a)" in lines[2], lines


def test_one_named_client_and_arguments_for_ansible_playbook(fleet: dict[str, Path]) -> None:
    result = run(fleet, "b", "--", "-e", "fail_me=true")
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stdout.startswith("b ")
    assert "fleet: 1 client(s), 0 ok, 1 failed (b)" in result.stdout


def test_an_unknown_client_is_named(fleet: dict[str, Path]) -> None:
    result = run(fleet, "a", "zahnarzt")
    assert result.returncode != 0
    assert "no client zahnarzt in" in result.stderr
    assert not (fleet["clients"] / "a" / "logs").exists()


def evidence(folder: Path, host: str, passed: bool, not_after: str | None) -> None:
    """A host's evidence as playbooks/audit.yml writes it (wagw_host_audit's controls)."""
    controls = [{"id": "RET-CDR", "passed": passed}]
    if not_after:
        controls.append({"id": "TLS-CERT", "passed": True, "not_after": not_after})
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{host}.json").write_text(json.dumps({"client": folder.parent.name, "host": host,
                                                     "passed": passed, "controls": controls}))


def test_each_client_line_shows_its_last_audit_and_certificate_expiry(fleet: dict[str, Path]) -> None:
    audits = fleet["clients"] / ".audit"
    evidence(audits / "a" / "20261101T020000Z", "a-edge", False, "2026-12-03T00:00:00Z")
    # the newer run counts: two hosts, both passed, the earlier of their certificates
    evidence(audits / "a" / "20261130T020000Z", "a-edge", True, "2027-01-30T12:00:00Z")
    evidence(audits / "a" / "20261130T020000Z", "a-bridge", True, "2027-02-15T12:00:00Z")
    result = run(fleet)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert re.search(r" audit=ok@20261130T020000Z cert=2027-01-30\(\d+d\) log=", lines[0]), lines
    assert " audit=none cert=? log=" in lines[1], lines
    evidence(audits / "b" / "20261201T020000Z", "b-gw", False, None)
    lines = run(fleet, "b").stdout.splitlines()
    assert " audit=FAILED@20261201T020000Z(RET-CDR) cert=? log=" in lines[0], lines
