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


def run_module(module: str, args: dict[str, Any], *flags: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Runs one of plugins/modules on the controller with ``ansible localhost -m`` and the
    project's ansible.cfg; returns the module's result."""
    run_env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_STDOUT_CALLBACK="json",
                   ANSIBLE_LOAD_CALLBACK_PLUGINS="1", **(env or {}))
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "ansible"), "localhost", "-m", module,
         "-a", json.dumps(args), *flags],
        capture_output=True, text=True, env=run_env, cwd=ROOT, check=False, timeout=120)
    # The JSON document comes first; ansible.cfg's profile_tasks prints its table after it.
    out, _ = json.JSONDecoder().raw_decode(proc.stdout[proc.stdout.index("{"):])
    result: dict[str, Any] = out["plays"][0]["tasks"][0]["hosts"]["localhost"]
    return result


@pytest.fixture
def example_inventory(tmp_path: Path) -> Path:
    """A writable copy of the embedded example inventory."""
    dest = tmp_path / "inventory"
    shutil.copytree(ROOT / "inventories" / "example", dest)
    return dest


def run_validate(inventory: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """Runs playbooks/validate.yml against an inventory on the controller."""
    env = dict(os.environ)
    env["ANSIBLE_CONFIG"] = str(ROOT / "ansible.cfg")
    env["WAGW_SECRETS_DIR"] = str(tmp_path / "secrets")
    env["ANSIBLE_NOCOLOR"] = "1"
    bindir = Path(sys.executable).parent
    return subprocess.run(
        [str(bindir / "ansible-playbook"), "-i", str(inventory / "hosts.yml"),
         str(ROOT / "playbooks" / "validate.yml")],
        capture_output=True, text=True, env=env, cwd=ROOT, check=False, timeout=120,
    )
