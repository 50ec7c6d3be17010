"""plugins/vars/wagw_layers.py: product defaults (the schema's) -> the MSP's defaults -> client ->
host, merged recursively where a wagw_* setting is a dict; everything else replaced, as in Ansible."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml
from clients import complete, scaffold

from conftest import ROOT, resolved

BIN = Path(sys.executable).parent


def write_yaml(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data))


def layered_client(tmp_path: Path) -> Path:
    """One host in group media of client a, with a value for each layer."""
    clients = tmp_path / "clients"
    write_yaml(clients / "_msp" / "10-defaults.yml", {
        "wagw_tls": {"mode": "acme", "acme": {"email": "noc@msp.example", "directory": "https://acme.msp.example/dir"}},
        "wagw_retention": {"log_days": 5, "raw_payload_days": 3},
        "wagw_whatsapp": {"audio_codecs": ["opus", "pcma"]},
        "msp_scalar": "msp", "msp_only": "msp",
        # a role parameter: the MSP's value ranks above the one derived from the client's settings
        "asterisk_rtp_port_start": 30000,
        "plain_dict": {"from": "msp", "kept": "no"},
    })
    folder = clients / "a"
    write_yaml(folder / "hosts.yml", {"all": {"children": {"media": {"hosts": {"h1": {
        "ansible_python_interpreter": sys.executable}}}}}})
    write_yaml(folder / "group_vars" / "all" / "settings.yml", {
        "wagw_tls": {"acme": {"email": "it@a.example"}},
        "wagw_whatsapp": {"audio_codecs": ["opus"]},
        "msp_scalar": "client", "plain_dict": {"from": "client"}})
    write_yaml(folder / "group_vars" / "media" / "settings.yml", {"wagw_retention": {"call_record_days": 30}})
    write_yaml(folder / "host_vars" / "h1" / "settings.yml", {"wagw_retention": {"log_days": 3}})
    return folder


def test_each_layer_adds_to_the_settings_below_it(tmp_path: Path) -> None:
    folder = layered_client(tmp_path)
    values = resolved(folder / "hosts.yml", "h1", "wagw_tls", "wagw_retention", "wagw_whatsapp", "msp_scalar",
                      "msp_only", "plain_dict", "asterisk_rtp_port_start", "asterisk_rtp_port_end",
                      "wagw_retention_days")
    # dicts merged key by key: the MSP's directory stays, the client's email wins; the schema's
    # defaults fill in what no layer says (domains, challenge), never a whole dict that is not
    # there (acme.route53)
    assert values["wagw_tls"] == {"mode": "acme", "domains": [], "acme": {
        "email": "it@a.example", "directory": "https://acme.msp.example/dir", "challenge": "http-01"}}
    # schema -> MSP -> group media -> host
    assert values["wagw_retention"] == {"log_days": 3, "raw_payload_days": 3, "call_record_days": 30,
                                        "consent_proof_days": 1095, "backup_days": 30, "recording_days": 0}
    assert values["wagw_retention_days"] == values["wagw_retention"]
    # lists, scalars and dicts not named wagw_* are replaced, as Ansible does
    assert values["wagw_whatsapp"] == {"audio_codecs": ["opus"], "srtp_key_exchange": "SDES", "media_networks": []}
    assert values["msp_scalar"] == "client"
    assert values["msp_only"] == "msp"
    assert values["plain_dict"] == {"from": "client"}
    assert values["asterisk_rtp_port_start"] == 30000
    assert int(values["asterisk_rtp_port_end"]) == 30999


def test_the_msp_defaults_folder_can_be_named_or_switched_off(tmp_path: Path) -> None:
    folder = layered_client(tmp_path)
    elsewhere = tmp_path / "shared-defaults"
    write_yaml(elsewhere / "defaults.yml", {"wagw_retention": {"raw_payload_days": 2}})
    named = resolved(folder / "hosts.yml", "h1", "wagw_retention", env={"WAGW_MSP_DEFAULTS": str(elsewhere)})
    assert named["wagw_retention"] == {"log_days": 3, "raw_payload_days": 2, "call_record_days": 30,
                                       "consent_proof_days": 1095, "backup_days": 30, "recording_days": 0}
    off = resolved(folder / "hosts.yml", "h1", "wagw_retention", "wagw_tls", "msp_only is defined",
                   "wagw_pbx is defined", env={"WAGW_MSP_DEFAULTS": ""})
    assert off == {"wagw_retention": {"log_days": 3, "call_record_days": 30, "raw_payload_days": 7,
                                      "consent_proof_days": 1095, "backup_days": 30, "recording_days": 0},
                   "wagw_tls": {"acme": {"email": "it@a.example", "challenge": "http-01",
                                         "directory": "https://acme-v02.api.letsencrypt.org/directory"}, "domains": []},
                   "msp_only is defined": False, "wagw_pbx is defined": False}


def production_client(client_id: str, clients: Path, vaults: Path) -> None:
    made = scaffold(client_id, clients, vaults, production=True)
    assert made.returncode == 0, made.stdout + made.stderr
    complete(clients / client_id)


def fleet_validate(clients: Path, vaults: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, WAGW_CLIENTS_DIR=str(clients), WAGW_VAULT_DIR=str(vaults))
    return subprocess.run([sys.executable, str(ROOT / "scripts" / "wagw-fleet"), "--playbook", "playbooks/validate.yml"],
                          capture_output=True, text=True, env=env, check=False, timeout=600)


def test_two_scaffolded_clients_on_shared_msp_defaults(tmp_path: Path) -> None:
    clients, vaults = tmp_path / "clients", tmp_path / "vaults"
    for client in ("zahnarzt", "kanzlei"):
        production_client(client, clients, vaults)
    # The zahnarzt takes the MSP's log and payload days; the kanzlei keeps the scaffold's table
    # whole and its host sets a time zone of its own (one key, merged into the client's wagw_bridge).
    retention = clients / "zahnarzt" / "group_vars" / "all" / "retention.yml"
    table = yaml.safe_load(retention.read_text())
    del table["wagw_retention"]["log_days"], table["wagw_retention"]["raw_payload_days"]
    retention.write_text(yaml.safe_dump(table))
    write_yaml(clients / "kanzlei" / "host_vars" / "kanzlei-gw" / "local.yml", {"wagw_bridge": {"timezone": "Europe/Vienna"}})
    msp = clients / "_msp" / "defaults.yml"

    # Beyond the maximum of 14 days: only the client that inherits it fails, named with its key.
    write_yaml(msp, {"wagw_retention": {"log_days": 30, "raw_payload_days": 3}})
    result = fleet_validate(clients, vaults)
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert re.match(r"kanzlei +ok ", lines[0]), lines
    assert re.match(r"zahnarzt +FAILED ", lines[1]), lines
    log = Path(lines[1].rsplit("log=", 1)[1]).read_text()
    assert "client zahnarzt: wagw_retention.log_days is 30 days; allowed 1 to 14" in " ".join(log.split()), log[-3000:]

    write_yaml(msp, {"wagw_retention": {"log_days": 5, "raw_payload_days": 3}})
    result = fleet_validate(clients, vaults)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "fleet: 2 client(s), 2 ok, 0 failed" in result.stdout
    seen = {client: resolved(clients / client / "hosts.yml", f"{client}-gw", "wagw_retention_days", "webhook_bridge_timezone",
                             "wagw_client.id", args=("--vault-id", f"{client}@{vaults / client}"))
            for client in ("zahnarzt", "kanzlei")}
    assert seen["zahnarzt"] == {"wagw_client.id": "zahnarzt", "webhook_bridge_timezone": "Europe/Berlin",
                                "wagw_retention_days": {"call_record_days": 90, "log_days": 5, "raw_payload_days": 3,
                                                        "consent_proof_days": 1095, "backup_days": 30,
                                                        "recording_days": 0}}
    assert seen["kanzlei"] == {"wagw_client.id": "kanzlei", "webhook_bridge_timezone": "Europe/Vienna",
                               "wagw_retention_days": {"call_record_days": 90, "log_days": 7, "raw_payload_days": 7,
                                                       "consent_proof_days": 1095, "backup_days": 30,
                                                       "recording_days": 0}}


def test_a_structure_only_check_needs_no_vault_password(tmp_path: Path) -> None:
    clients, vaults = tmp_path / "clients", tmp_path / "vaults"
    production_client("zahnarzt", clients, vaults)
    (vaults / "zahnarzt").rename(tmp_path / "elsewhere")
    # an inline !vault value as well as the encrypted vault.yml
    routing = clients / "zahnarzt" / "group_vars" / "all" / "routing.yml"
    password = subprocess.run([str(BIN / "ansible-vault"), "encrypt_string", "--vault-id",
                               f"zahnarzt@{tmp_path / 'elsewhere'}", "a phone's password", "--name", "x"],
                              capture_output=True, text=True, check=True).stdout.split("x: ", 1)[1]
    routing.write_text(routing.read_text().replace("password: '{{ vault_wagw_bridge_pseudonym_key }}'",
                                                   "password: " + password.strip().replace("\n", "\n      ")))
    assert "!vault" in routing.read_text()
    env = dict(os.environ, WAGW_CLIENTS_DIR=str(clients), WAGW_VAULT_DIR=str(vaults))
    fleet = [sys.executable, str(ROOT / "scripts" / "wagw-fleet")]
    full = subprocess.run([*fleet, "--playbook", "playbooks/validate.yml"], capture_output=True, text=True, env=env,
                          check=False, timeout=300)
    assert full.returncode == 1, full.stdout
    structure = subprocess.run([*fleet, "--structure-only"], capture_output=True, text=True, env=env, check=False,
                               timeout=300)
    assert structure.returncode == 0, structure.stdout + structure.stderr
    log = Path(structure.stdout.splitlines()[0].rsplit("log=", 1)[1]).read_text()
    assert "client zahnarzt: structure-only check (no vault password)" in " ".join(log.split())
    # the rules still hold: a route to a number the client does not declare
    routes = yaml.safe_load(routing.read_text().replace("!vault |", "|"))
    routes["wagw_routes"][0]["whatsapp_number"] = "+4930555000999"
    routing.write_text(yaml.safe_dump(routes))
    broken = subprocess.run([*fleet, "--structure-only"], capture_output=True, text=True, env=env, check=False,
                            timeout=300)
    assert broken.returncode == 1, broken.stdout
    log = Path(broken.stdout.splitlines()[0].rsplit("log=", 1)[1]).read_text()
    assert "+4930555000999" in log
