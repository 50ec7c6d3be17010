"""plugins/modules/wagw_meta_sip_password.py against tests/fake_meta_graph.py: Meta's SIP
password lands encrypted in the vault file, other keys stay, a second run changes nothing,
check mode writes nothing, and the password shows in no result, diff, output or log."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from ansible.parsing.vault import VaultLib, VaultSecret
from fake_meta_graph import DEFAULT_APP_ID, DEFAULT_TOKEN, FakeMetaGraph, running

from conftest import COLLECTION, ROOT

NUMBER_ID = "100000000000001"
NUMBER = "+4930555000100"
KEY = "vault_wagw_sip_password_4930555000100"
VAULT_PASSWORD = "correct horse battery staple"  # noqa: S105 (a test fixture)


@pytest.fixture
def meta() -> Iterator[tuple[FakeMetaGraph, str]]:
    fake = FakeMetaGraph()
    fake.add_number(NUMBER_ID)
    with running(fake) as url:
        # SIP configured on the number, as wagw_meta_calling leaves it: Meta generated a password.
        fake.handle("POST", f"/v23.0/{NUMBER_ID}/settings", {"authorization": f"Bearer {DEFAULT_TOKEN}",
                                                             "content-type": "application/json"},
                    json.dumps({"calling": {"status": "ENABLED", "sip": {"status": "ENABLED", "servers": [
                        {"hostname": "sip.beispiel-sanitaer.example", "port": 5061}]}}}).encode())
        fake.log.clear()
        yield fake, url


def run(module_args: dict[str, Any], tmp_path: Path, *flags: str) -> tuple[dict[str, Any], str]:
    """ansible localhost -m wagw.gateway.wagw_meta_sip_password, verbose, with a log file; the result and
    everything ansible printed or logged."""
    log = tmp_path / "ansible.log"
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_STDOUT_CALLBACK="json",
               ANSIBLE_LOAD_CALLBACK_PLUGINS="1", ANSIBLE_LOG_PATH=str(log), ANSIBLE_NOCOLOR="1")
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "ansible"), "localhost", "-m", f"{COLLECTION}.wagw_meta_sip_password",
         "-a", json.dumps(module_args), "-vvv", *flags],
        capture_output=True, text=True, env=env, cwd=ROOT, check=False, timeout=120)
    out, _ = json.JSONDecoder().raw_decode(proc.stdout[proc.stdout.index('{\n    "custom_stats"'):])
    result: dict[str, Any] = out["plays"][0]["tasks"][0]["hosts"]["localhost"]
    everything = proc.stdout + proc.stderr + (log.read_text() if log.exists() else "")
    return result, everything


def args(url: str, tmp_path: Path, **extra: Any) -> dict[str, Any]:
    secret_file = tmp_path / "vault-pass"
    secret_file.write_text(VAULT_PASSWORD + "\n")
    return {"graph_api_url": url, "access_token": DEFAULT_TOKEN, "retry_delay": 0.01,
            "phone_number_id": NUMBER_ID, "number": NUMBER, "app_id": DEFAULT_APP_ID,
            "vault_file": str(tmp_path / "group_vars" / "all" / "vault.yml"), "vault_key": KEY,
            "vault_id": "beispiel", "vault_password_file": str(secret_file), **extra}


def decrypt(path: Path) -> dict[str, Any]:
    vault = VaultLib(secrets=[("beispiel", VaultSecret(VAULT_PASSWORD.encode()))])
    return yaml.safe_load(vault.decrypt(path.read_bytes()))


def test_the_password_lands_encrypted_and_nowhere_else(meta: tuple[FakeMetaGraph, str], tmp_path: Path) -> None:
    fake, url = meta
    password = fake.sip_password(NUMBER_ID)
    assert password
    vault_file = tmp_path / "group_vars" / "all" / "vault.yml"
    first, output = run(args(url, tmp_path), tmp_path, "--diff")
    assert first["changed"] is True, first
    raw = vault_file.read_text()
    assert raw.startswith("$ANSIBLE_VAULT;1.2;AES256;beispiel\n")
    assert password not in raw
    assert decrypt(vault_file) == {KEY: password}
    assert oct(vault_file.stat().st_mode & 0o777) == "0o600"
    assert "(absent)" in first["diff"]["before"]
    assert "(not shown)" in first["diff"]["after"]
    assert password not in json.dumps(first)
    assert password not in output
    assert DEFAULT_TOKEN not in output
    assert VAULT_PASSWORD not in output
    assert (tmp_path / "ansible.log").stat().st_size > 0  # the log was written, without it
    assert [e["query"] for e in fake.log] == [{"include_sip_credentials": "true"}]

    before = vault_file.read_bytes()
    second, output = run(args(url, tmp_path), tmp_path, "--diff")
    assert second["changed"] is False, second
    assert vault_file.read_bytes() == before  # not even re-encrypted
    assert password not in output


def test_other_keys_stay_and_a_new_password_replaces_the_old(meta: tuple[FakeMetaGraph, str], tmp_path: Path) -> None:
    fake, url = meta
    vault_file = tmp_path / "group_vars" / "all" / "vault.yml"
    vault_file.parent.mkdir(parents=True)
    vault = VaultLib(secrets=[("beispiel", VaultSecret(VAULT_PASSWORD.encode()))])
    vault_file.write_bytes(vault.encrypt("---\nvault_wagw_meta_access_token: EAAother\n" + KEY + ": stale\n",
                                         vault_id="beispiel"))
    result, output = run(args(url, tmp_path), tmp_path, "--diff")
    assert result["changed"] is True
    assert "(another value, not shown)" in result["diff"]["before"]
    assert decrypt(vault_file) == {"vault_wagw_meta_access_token": "EAAother", KEY: fake.sip_password(NUMBER_ID)}
    assert "EAAother" not in output
    assert "stale" not in output


def test_check_mode_reports_and_writes_nothing(meta: tuple[FakeMetaGraph, str], tmp_path: Path) -> None:
    _fake, url = meta
    result, _ = run(args(url, tmp_path), tmp_path, "--check", "--diff")
    assert result["changed"] is True
    assert not (tmp_path / "group_vars").exists()


def test_check_mode_before_sip_is_configured_reports_a_change(tmp_path: Path) -> None:
    fake = FakeMetaGraph()
    fake.add_number(NUMBER_ID)
    with running(fake) as url:
        checked, _ = run(args(url, tmp_path), tmp_path, "--check")
        assert checked["changed"] is True
        assert any("wagw_meta_calling" in w for w in checked["warnings"])
        real, _ = run(args(url, tmp_path), tmp_path)
    assert real["failed"] is True
    assert f"WhatsApp number {NUMBER}" in real["msg"]
    assert "Meta lists no SIP server of app" in real["msg"]


def test_a_wrong_vault_password_fails_without_touching_the_file(meta: tuple[FakeMetaGraph, str],
                                                                tmp_path: Path) -> None:
    _fake, url = meta
    run(args(url, tmp_path), tmp_path)
    vault_file = tmp_path / "group_vars" / "all" / "vault.yml"
    before = vault_file.read_bytes()
    wrong = tmp_path / "wrong-pass"
    wrong.write_text("not it\n")
    result, _ = run(args(url, tmp_path, vault_password_file=str(wrong)), tmp_path)
    assert result["failed"] is True
    assert "cannot decrypt" in result["msg"]
    assert vault_file.read_bytes() == before


def test_an_expired_token_fails_clearly(meta: tuple[FakeMetaGraph, str], tmp_path: Path) -> None:
    fake, url = meta
    fake.token_expired = True
    result, output = run(args(url, tmp_path), tmp_path)
    assert result["failed"] is True
    assert f"WhatsApp number {NUMBER} (phone number id {NUMBER_ID}): reading the SIP password failed" in result["msg"]
    assert "Graph error 190" in result["msg"]
    assert DEFAULT_TOKEN not in output
