"""Shared fixtures: the repository root and a runner for playbooks on the controller."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "plugins" / "filter"))
# The checkout as the collection wagw.gateway (make setup links it), for the modules' imports of
# its module_utils
sys.path.insert(0, str(ROOT / ".collections"))
COLLECTION = "wagw.gateway"
# benchmarks/clients.py: the scaffold of a production client, shared by tests and the benchmark
sys.path.insert(0, str(ROOT / "benchmarks"))


def run_module(module: str, args: dict[str, Any], *flags: str, env: dict[str, str] | None = None,
               ansible: str | None = None) -> dict[str, Any]:
    """Runs one of plugins/modules (its short name; called as wagw.gateway.<name>) on the
    controller with ``ansible localhost -m`` (or the given command in its place) and the
    project's ansible.cfg; returns the module's result."""
    run_env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_STDOUT_CALLBACK="json",
                   ANSIBLE_LOAD_CALLBACK_PLUGINS="1", **(env or {}))
    proc = subprocess.run(
        [ansible or str(Path(sys.executable).parent / "ansible"), "localhost", "-m", f"{COLLECTION}.{module}",
         "-a", json.dumps(args), *flags],
        capture_output=True, text=True, env=run_env, cwd=ROOT, check=False, timeout=120)
    # The JSON document comes first; ansible.cfg's profile_tasks prints its table after it.
    out, _ = json.JSONDecoder().raw_decode(proc.stdout[proc.stdout.index("{"):])
    result: dict[str, Any] = out["plays"][0]["tasks"][0]["hosts"]["localhost"]
    return result


def resolved(hosts_file: Path, host: str, *names: str, args: tuple[str, ...] = (),
             env: dict[str, str] | None = None) -> dict[str, Any]:
    """The values a task on this host of this inventory sees for these variables (templated)."""
    run_env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_STDOUT_CALLBACK="json",
                   ANSIBLE_LOAD_CALLBACK_PLUGINS="1", **(env or {}))
    expr = "{" + ", ".join(f"'{n}': {n}" for n in names) + "}"
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "ansible"), host, "-i", str(hosts_file), "-c", "local", *args,
         "-m", "ansible.builtin.debug", "-a", json.dumps({"msg": "{{ " + expr + " }}"})],
        capture_output=True, text=True, env=run_env, cwd=ROOT, check=False, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # The JSON document comes first; ansible.cfg's profile_tasks prints its table after it.
    out, _ = json.JSONDecoder().raw_decode(proc.stdout[proc.stdout.index("{"):])
    msg: dict[str, Any] = out["plays"][0]["tasks"][0]["hosts"][host]["msg"]
    return msg


@pytest.fixture
def example_inventory(tmp_path: Path) -> Path:
    """A writable copy of the embedded example inventory."""
    dest = tmp_path / "inventory"
    shutil.copytree(ROOT / "inventories" / "example", dest)
    return dest


def run_validate(inventory: Path, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Runs playbooks/validate.yml against an inventory on the controller (args: more
    ansible-playbook arguments, such as a vault password file)."""
    env = dict(os.environ)
    env["ANSIBLE_CONFIG"] = str(ROOT / "ansible.cfg")
    env["WAGW_SECRETS_DIR"] = str(tmp_path / "secrets")
    env["ANSIBLE_NOCOLOR"] = "1"
    bindir = Path(sys.executable).parent
    return subprocess.run(
        [str(bindir / "ansible-playbook"), "-i", str(inventory / "hosts.yml"),
         str(ROOT / "playbooks" / "validate.yml"), *args],
        capture_output=True, text=True, env=env, cwd=ROOT, check=False, timeout=120,
    )


def vault_args(tmp_path: Path) -> list[str]:
    """The ansible-playbook arguments that open what vault() encrypted."""
    return ["--vault-password-file", str(tmp_path / "vault-pass")]


def vault(tmp_path: Path, *command: str) -> str:
    """Runs ansible-vault (encrypt FILE, encrypt_string ...) with a test password kept in
    tmp_path; returns its output."""
    password_file = tmp_path / "vault-pass"
    password_file.write_text("correct horse battery staple\n")
    bindir = Path(sys.executable).parent
    return subprocess.run([str(bindir / "ansible-vault"), *command, "--vault-password-file", str(password_file)],
                          capture_output=True, text=True, check=True).stdout
