"""Every module in plugins/modules documents itself in parseable YAML (ansible-doc, the
argument checks of ansible-lint and readers depend on it)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

from conftest import ROOT

MODULES = sorted((ROOT / "plugins" / "modules").glob("*.py"))


@pytest.mark.parametrize("module", MODULES, ids=[m.stem for m in MODULES])
def test_documentation_examples_and_return_parse(module: Path) -> None:
    blocks = {node.targets[0].id: node.value.value for node in ast.parse(module.read_text()).body
              if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name)
              and node.targets[0].id in {"DOCUMENTATION", "EXAMPLES", "RETURN"}}
    assert set(blocks) == {"DOCUMENTATION", "EXAMPLES", "RETURN"}
    doc = yaml.safe_load(blocks["DOCUMENTATION"])
    assert doc["module"] == module.stem
    assert doc["attributes"]["check_mode"]["support"] == "full"
    assert isinstance(yaml.safe_load(blocks["EXAMPLES"]), list)
    assert isinstance(yaml.safe_load(blocks["RETURN"]), dict)
