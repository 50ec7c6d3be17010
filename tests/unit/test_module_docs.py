"""Every module in plugins/modules documents itself in parseable YAML (ansible-doc, the
argument checks of ansible-lint and readers depend on it)."""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import COLLECTION, ROOT, run_module

MODULES = sorted((ROOT / "plugins" / "modules").glob("*.py"))


@pytest.mark.parametrize("module", MODULES, ids=[m.stem for m in MODULES])
def test_documentation_examples_and_return_parse(module: Path) -> None:
    blocks = {node.targets[0].id: node.value.value for node in ast.parse(module.read_text()).body
              if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name)
              and node.targets[0].id in {"DOCUMENTATION", "EXAMPLES", "RETURN"}}
    assert set(blocks) == {"DOCUMENTATION", "EXAMPLES", "RETURN"}
    doc = yaml.safe_load(blocks["DOCUMENTATION"])
    assert doc["module"] == module.stem
    assert "wagw.gateway.wagw_module" in doc["extends_documentation_fragment"]  # check mode and diff: full
    assert isinstance(yaml.safe_load(blocks["EXAMPLES"]), list)
    assert isinstance(yaml.safe_load(blocks["RETURN"]), dict)


@pytest.mark.parametrize("module", MODULES, ids=[m.stem for m in MODULES])
def test_documented_options_are_the_accepted_ones(module: Path) -> None:
    """ansible-doc (with the doc fragments merged) lists exactly the options the module's
    argument spec accepts: an option added in code but not in the docs, or the reverse, fails."""
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"))
    doc = subprocess.run([str(Path(sys.executable).parent / "ansible-doc"), "--json", f"{COLLECTION}.{module.stem}"],
                         capture_output=True, text=True, env=env, cwd=ROOT, check=True, timeout=120)
    options = json.loads(doc.stdout)[f"{COLLECTION}.{module.stem}"]["doc"]["options"]
    documented = set(options)
    attributes = json.loads(doc.stdout)[f"{COLLECTION}.{module.stem}"]["doc"]["attributes"]
    assert attributes["check_mode"]["support"] == attributes["diff_mode"]["support"] == "full"
    # AnsibleModule names every accepted option when it refuses an unknown one (after the
    # required ones are present).
    dummy = {"str": "wagw-dummy-value", "path": "/nonexistent", "int": 1, "float": 1.0, "bool": False, "list": [], "dict": {}}
    args = {name: dummy[spec.get("type", "str")] for name, spec in options.items() if spec.get("required")}
    result = run_module(module.stem, {**args, "wagw_no_such_option": 1})
    one_of = re.match(r"one of the following is required: (\w+)", result["msg"])
    if one_of:
        args[one_of.group(1)] = dummy[options[one_of.group(1)].get("type", "str")]
        result = run_module(module.stem, {**args, "wagw_no_such_option": 1})
    accepted = re.search(r"Supported parameters include: (.*)\.?$", result["msg"], re.M)
    assert accepted, result["msg"]
    names = {name.strip().split(" ")[0] for name in accepted.group(1).rstrip(".").split(",")}
    assert documented == names


@pytest.mark.parametrize("plugin", sorted((ROOT / "plugins" / "vars").glob("*.py")), ids=lambda p: p.stem)
def test_vars_plugins_document_themselves(plugin: Path) -> None:
    """A vars plugin's DOCUMENTATION is read whenever Ansible loads its plugins: YAML that does
    not parse stops every run, ansible-inventory included."""
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"))
    doc = subprocess.run([str(Path(sys.executable).parent / "ansible-doc"), "--json", "-t", "vars", f"{COLLECTION}.{plugin.stem}"],
                         capture_output=True, text=True, env=env, cwd=ROOT, check=True, timeout=120)
    documented = json.loads(doc.stdout)[f"{COLLECTION}.{plugin.stem}"]["doc"]
    assert documented["name"] == plugin.stem
    assert len(documented["description"]) >= 2
