"""The toolkit as the collection wagw.gateway: the tarball an MSP pins holds what a run needs and
nothing of the checkout's state, installs offline, documents every plugin, and runs the
pre-flight check on its own (no checkout on any path)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import yaml

from conftest import COLLECTION, ROOT
from wagw import FilterModule
from wagw import _tests as jinja_tests

BIN = Path(sys.executable).parent
GALAXY = yaml.safe_load((ROOT / "galaxy.yml").read_text())
TARBALL = f"{GALAXY['namespace']}-{GALAXY['name']}-{GALAXY['version']}.tar.gz"


def plugin_names(kind: str) -> list[str]:
    """The plugins the code defines (not the documentation files, which are what is checked)."""
    if kind == "filter":
        return sorted(FilterModule().filters())
    if kind == "test":
        # the Jinja tests, as plugins/filter/wagw.py loads them from plugins/test/wagw.py
        return sorted(jinja_tests.TestModule().tests())
    folder = ROOT / "plugins" / {"module": "modules", "vars": "vars"}[kind]
    return sorted(p.stem for p in folder.glob("*.py"))


def env_of(installed: dict[str, Path]) -> dict[str, str]:
    return dict(os.environ, ANSIBLE_CONFIG=str(installed["config"]), ANSIBLE_COLLECTIONS_PATH=str(installed["collections"]),
                ANSIBLE_NOCOLOR="1")


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The collection built from the checkout and installed offline into an empty folder; an
    ansible.cfg that knows nothing of the checkout but the collection's vars plugins."""
    tmp = tmp_path_factory.mktemp("collection")
    collections = tmp / "collections"
    config = tmp / "ansible.cfg"
    config.write_text("[defaults]\nvars_plugins_enabled = host_group_vars, "
                      f"{COLLECTION}.wagw_role_parameters, {COLLECTION}.wagw_layers\n")
    folders = {"tmp": tmp, "collections": collections, "config": config}
    # Not the checkout's ansible.cfg (make exports it): ansible-galaxy would find the checkout as
    # wagw.gateway already installed and skip the tarball.
    for command in (["build", "--output-path", str(tmp), str(ROOT)],
                    ["install", "--offline", "-p", str(collections), str(tmp / TARBALL)]):
        done = subprocess.run([str(BIN / "ansible-galaxy"), "collection", *command], capture_output=True, text=True,
                              env=env_of(folders), cwd=tmp, check=False, timeout=300)
        assert done.returncode == 0, done.stdout + done.stderr
    # the tarball's copy (galaxy.yml became MANIFEST.json), not a link to the checkout
    assert (collections / "ansible_collections" / "wagw" / "gateway" / "galaxy.yml").exists() is False
    assert (collections / "ansible_collections" / "wagw" / "gateway" / "MANIFEST.json").is_file()
    return folders


def test_the_tarball_holds_the_toolkit_and_none_of_the_checkouts_state(installed: dict[str, Path]) -> None:
    with tarfile.open(installed["tmp"] / TARBALL) as tar:
        names = set(tar.getnames())
        manifest = json.load(tar.extractfile("MANIFEST.json"))  # type: ignore[arg-type]
    assert manifest["collection_info"]["version"] == GALAXY["version"]
    for needed in ("roles/kamailio/tasks/main.yml", "playbooks/site.yml", "playbooks/schema/client.yml",
                   "plugins/modules/wagw_files.py", "plugins/filter/wagw_sip_accounts.yml", "meta/runtime.yml",
                   "bridge/pyproject.toml", "LICENSE", "CHANGELOG.md"):
        assert needed in names, needed
    state = [n for n in names if n.split("/")[0] in {".venv", ".collections", ".git", ".audit", ".ansible", ".cache"}
             or "/.venv/" in n or "__pycache__" in n or n.startswith("inventories/clients/")]
    assert state == []


@pytest.mark.parametrize("kind", ["module", "filter", "test", "vars"])
def test_every_plugin_is_documented_from_the_installed_collection(installed: dict[str, Path], kind: str) -> None:
    names = plugin_names(kind)
    listed = subprocess.run([str(BIN / "ansible-doc"), "-t", kind, "--json", "-l", COLLECTION], capture_output=True,
                            text=True, env=env_of(installed), cwd=installed["tmp"], check=True, timeout=120)
    assert sorted(json.loads(listed.stdout)) == sorted(f"{COLLECTION}.{name}" for name in names)
    doc = subprocess.run([str(BIN / "ansible-doc"), "-t", kind, "--json", *(f"{COLLECTION}.{name}" for name in names)],
                         capture_output=True, text=True, env=env_of(installed), cwd=installed["tmp"], check=True,
                         timeout=120)
    documented = json.loads(doc.stdout)
    for name in names:
        entry = documented[f"{COLLECTION}.{name}"]["doc"]
        assert entry.get("name", entry.get("module")) == name
        assert entry["short_description"]
        # read from the installed copy, not from the checkout
        assert str(installed["collections"]) in entry["filename"], entry["filename"]


def test_the_installed_collection_checks_a_client_on_its_own(installed: dict[str, Path], example_inventory: Path,
                                                             tmp_path: Path) -> None:
    """validate.yml from the tarball: its filters, tests and vars plugins by their full names; a
    broken route still fails there with the rule's message."""
    env = env_of(installed) | {"WAGW_SECRETS_DIR": str(tmp_path / "secrets")}
    command = [str(BIN / "ansible-playbook"), "-i", str(example_inventory / "hosts.yml"), f"{COLLECTION}.validate"]
    ok = subprocess.run(command, capture_output=True, text=True, env=env, cwd=installed["tmp"], check=False, timeout=300)
    assert ok.returncode == 0, ok.stdout[-3000:] + ok.stderr[-3000:]
    routing = example_inventory / "group_vars" / "all" / "routing.yml"
    data = yaml.safe_load(routing.read_text())
    data["wagw_routes"][0]["destinations"] = ["+4930555000999"]
    routing.write_text(yaml.safe_dump(data))
    broken = subprocess.run(command, capture_output=True, text=True, env=env, cwd=installed["tmp"], check=False,
                            timeout=300)
    assert broken.returncode != 0
    assert "Meta's terms disallow the PSTN" in broken.stdout, broken.stdout[-3000:]
