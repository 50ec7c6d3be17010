"""Shared fixtures: the repository root and a runner for playbooks on the controller."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "plugins" / "filter"))


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
