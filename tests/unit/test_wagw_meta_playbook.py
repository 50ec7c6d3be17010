"""playbooks/meta.yml with a copy of the example inventory plus the wagw_meta keys, against
tests/fake_meta_graph.py: the first run configures Meta's side and vaults the SIP password
(before that password is in the vault, as on a new client), the second changes nothing."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import yaml
from ansible.parsing.vault import VaultLib, VaultSecret
from fake_meta_graph import DEFAULT_APP_ID, DEFAULT_APP_SECRET, DEFAULT_TOKEN, FakeMetaGraph, running

from conftest import ROOT

NUMBER_ID = "100000000000001"
WABA_ID = "100000000000010"
KEY = "vault_wagw_sip_password_4930555000100"


def edit(inventory: Path, name: str, change) -> None:
    path = inventory / "group_vars" / "all" / name
    data = yaml.safe_load(path.read_text())
    change(data)
    path.write_text("---\n" + yaml.safe_dump(data, sort_keys=False))


def playbook(inventory: Path, tmp_path: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), WAGW_SECRETS_DIR=str(tmp_path / "secrets"),
               ANSIBLE_NOCOLOR="1", ANSIBLE_LOG_PATH=str(tmp_path / "ansible.log"))
    return subprocess.run(
        [str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(inventory / "hosts.yml"),
         "--vault-id", f"example@{tmp_path / 'vault-pass'}", str(ROOT / "playbooks" / "meta.yml"), *flags],
        capture_output=True, text=True, env=env, cwd=ROOT, check=False, timeout=300)


def recap(proc: subprocess.CompletedProcess[str]) -> dict[str, int]:
    match = re.search(r"^demo-gateway\s+:\s+(.*)$", proc.stdout, re.MULTILINE)
    assert match, proc.stdout + proc.stderr
    return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", match.group(1))}


def test_meta_playbook_configures_once_then_changes_nothing(example_inventory: Path, tmp_path: Path) -> None:
    (tmp_path / "vault-pass").write_text("example vault password\n")
    # The demo generates the app secret per run directory; here it is the fake app's.
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "bridge_app_secret").write_text(DEFAULT_APP_SECRET + "\n")
    vault_file = example_inventory / "group_vars" / "all" / "vault.yml"
    fake = FakeMetaGraph()
    fake.add_number(NUMBER_ID, messaging_limit=2000)
    with running(fake) as url:
        (example_inventory / "group_vars" / "all" / "meta.yml").write_text(yaml.safe_dump({"wagw_meta": {
            "app_id": DEFAULT_APP_ID, "access_token": DEFAULT_TOKEN, "graph_api_url": url,
            "graph_api_version": "v23.0", "retry_delay": 0.01,
            "calling": {"call_icon_visibility": "DEFAULT", "callback_permission_status": "ENABLED"},
            "sip_password_vault": {"file": str(vault_file), "vault_id": "example",
                                   "password_file": str(tmp_path / "vault-pass")},
        }}))
        # As for a new client: the number's SIP password refers to the vault key meta.yml fills.
        edit(example_inventory, "whatsapp.yml", lambda d: d["wagw_whatsapp"].update(
            audio_codecs=["pcma", "opus"],
            numbers=[{**d["wagw_whatsapp"]["numbers"][0], "sip_password": "{{ " + KEY + " }}"}]))
        edit(example_inventory, "routing.yml", lambda d: d["wagw_routes"][0].update(
            destinations=[], windows=[{"days": ["mon", "tue", "wed", "thu", "fri"], "start": "08:00",
                                       "end": "18:00", "destinations": ["phone:empfang"]}]))

        first = playbook(example_inventory, tmp_path, "--diff")
        assert first.returncode == 0, first.stdout + first.stderr
        assert recap(first)["changed"] == 3, first.stdout
        paths = [p["path"] for p in fake.posts()]
        assert paths == [f"/v23.0/{DEFAULT_APP_ID}/subscriptions", f"/v23.0/{WABA_ID}/subscribed_apps",
                         f"/v23.0/{NUMBER_ID}/settings"]
        subscription = fake.posts()[0]["body"]
        assert subscription["callback_url"] == "https://hooks.beispiel-sanitaer.example/webhook"
        assert subscription["verify_token"] == (tmp_path / "secrets" / "bridge_verify_token").read_text().strip()
        calling = fake.posts()[2]["body"]["calling"]
        assert calling["sip"] == {"status": "ENABLED",
                                  "servers": [{"hostname": "sip.beispiel-sanitaer.example", "port": 5061}]}
        assert calling["srtp_key_exchange_protocol"] == "SDES"
        assert calling["audio"] == {"additional_codecs": ["PCMA"]}
        assert calling["call_hours"]["timezone_id"] == "Europe/Berlin"
        assert len(calling["call_hours"]["weekly_operating_hours"]) == 5
        password = fake.sip_password(NUMBER_ID)
        vault = VaultLib(secrets=[("example", VaultSecret(b"example vault password"))])
        assert yaml.safe_load(vault.decrypt(vault_file.read_bytes())) == {KEY: password}
        assert password not in first.stdout + first.stderr + (tmp_path / "ansible.log").read_text()

        fake.log.clear()
        second = playbook(example_inventory, tmp_path, "--diff")
        assert second.returncode == 0, second.stdout + second.stderr
        assert recap(second)["changed"] == 0, second.stdout
        assert fake.posts() == []
        assert password not in second.stdout + second.stderr

        check = playbook(example_inventory, tmp_path, "--check", "--diff")
        assert recap(check)["changed"] == 0, check.stdout
