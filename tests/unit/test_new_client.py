"""playbooks/new_client.yml: a client's folder outside the toolkit, its own vault password and
vault id, generated secrets only ever encrypted, nothing overwritten on a second run."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from clients import scaffold

from conftest import ROOT

BIN = Path(sys.executable).parent


def recap(result: subprocess.CompletedProcess[str]) -> dict[str, int]:
    match = re.search(r"localhost\s+: ok=(\d+)\s+changed=(\d+)\s+unreachable=\d+\s+failed=(\d+)", result.stdout)
    assert match, result.stdout + result.stderr
    return {"ok": int(match[1]), "changed": int(match[2]), "failed": int(match[3])}


def vault_view(client_id: str, password_file: Path, path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "ansible-vault"), "view", "--vault-id", f"{client_id}@{password_file}", str(path)],
                          capture_output=True, text=True, check=False, timeout=60)


def test_two_clients_each_with_its_own_vault(tmp_path: Path) -> None:
    clients, vaults = tmp_path / "clients", tmp_path / "vaults"
    for client in ("zahnarzt-mueller", "kanzlei-schmidt"):
        assert recap(scaffold(client, clients, vaults))["failed"] == 0
    secrets = {}
    for client in ("zahnarzt-mueller", "kanzlei-schmidt"):
        folder = clients / client
        vault_file = folder / "group_vars/all/vault.yml"
        raw = vault_file.read_text()
        # encrypted as a whole, under the client's vault id; files 0600/0640, password 0600
        assert raw.startswith(f"$ANSIBLE_VAULT;1.2;AES256;{client}\n"), raw[:80]
        assert oct(vault_file.stat().st_mode & 0o777) == "0o600"
        assert oct((vaults / client).stat().st_mode & 0o777) == "0o600"
        view = vault_view(client, vaults / client, vault_file)
        assert view.returncode == 0, view.stderr
        secrets[client] = yaml.safe_load(view.stdout)
        assert len(secrets[client]["vault_wagw_bridge_internal_token"]) == 40
        # the generated values appear nowhere in clear text
        for value in (secrets[client]["vault_wagw_bridge_verify_token"], secrets[client]["vault_wagw_bridge_pseudonym_key"]):
            assert not [p for p in folder.rglob("*") if p.is_file() and value in p.read_text()]
        settings = yaml.safe_load((folder / "group_vars/all/client.yml").read_text())
        assert settings["wagw_client"]["id"] == client
        hosts = yaml.safe_load((folder / "hosts.yml").read_text())
        assert f"{client}-gw" in hosts["all"]["hosts"]
    # nothing shared: other secrets, and one client's password does not open the other's vault
    assert secrets["zahnarzt-mueller"] != secrets["kanzlei-schmidt"]
    wrong = vault_view("kanzlei-schmidt", vaults / "zahnarzt-mueller", clients / "kanzlei-schmidt/group_vars/all/vault.yml")
    assert wrong.returncode != 0


def test_a_second_run_changes_nothing_and_keeps_edits(tmp_path: Path) -> None:
    clients, vaults = tmp_path / "clients", tmp_path / "vaults"
    assert recap(scaffold("praxis-a", clients, vaults))["changed"] > 0
    edited = clients / "praxis-a/group_vars/all/routing.yml"
    edited.write_text(edited.read_text() + "# the MSP's edit\n")
    before = {p: p.read_bytes() for p in (clients / "praxis-a").rglob("*") if p.is_file()}
    password = (vaults / "praxis-a").read_bytes()
    assert recap(scaffold("praxis-a", clients, vaults))["changed"] == 0
    assert before == {p: p.read_bytes() for p in (clients / "praxis-a").rglob("*") if p.is_file()}
    assert (vaults / "praxis-a").read_bytes() == password


def test_check_mode_writes_nothing(tmp_path: Path) -> None:
    result = scaffold("praxis-b", tmp_path / "clients", tmp_path / "vaults", "--check")
    assert recap(result)["failed"] == 0
    assert not (tmp_path / "clients").exists()
    assert not (tmp_path / "vaults").exists()


@pytest.mark.parametrize(("client_id", "clients_dir", "message"), [
    ("Praxis_A", None, 'client_id "Praxis_A": lower-case letters, digits and -, 3 to 50 characters'),
    ("praxis-c", ROOT / "inventories" / "praxis", "is inside the toolkit repository"),
])
def test_bad_input_is_refused(tmp_path: Path, client_id: str, clients_dir: Path | None, message: str) -> None:
    result = scaffold(client_id, clients_dir or tmp_path / "clients", tmp_path / "vaults")
    assert recap(result)["failed"] == 1
    assert message in result.stdout, result.stdout
    assert not (ROOT / "inventories" / "praxis").exists()


def test_clients_inside_the_repository_are_ignored_by_git() -> None:
    git = shutil.which("git")
    assert git, "git is needed (the clone CI runs in)"
    ignored = subprocess.run([git, "check-ignore", "-q", "inventories/clients/x/group_vars/all/vault.yml"],
                             cwd=ROOT, check=False)
    assert ignored.returncode == 0
