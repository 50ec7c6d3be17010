# The mapping from a client inventory (wagw_*) to the roles' parameters, at the lowest
# precedence an inventory has, so that the inventory always wins.
from __future__ import annotations

DOCUMENTATION = r"""
name: wagw_role_parameters
short_description: The roles' parameters derived from a client inventory, below every inventory value
description:
  - Loads C(playbooks/role_parameters/*.yml) of the toolkit (one file per role, templates over the
    client's C(wagw_*) settings) as variables of the group C(all), at inventory parse time.
  - They rank as "inventory file group vars" in Ansible's variable precedence, above role defaults
    and below everything an inventory sets (C(group_vars/all), C(group_vars/<group>),
    C(host_vars)), so any role parameter can be overridden in a client inventory. A key the
    inventory file itself sets for C(all) is left to it.
  - Play C(vars_files) (what this replaces) rank above the whole inventory and could not be
    overridden from it.
options:
  stage:
    description: Inventory parse time only (see the vars_plugin_staging fragment); fixed.
    type: str
    default: inventory
    choices: [inventory]
"""

from pathlib import Path
from typing import Any

from ansible.errors import AnsibleParserError
from ansible.inventory.group import Group
from ansible.plugins.vars import BaseVarsPlugin
from ansible.utils.vars import combine_vars

PARAMETERS_DIR = Path(__file__).resolve().parents[2] / "playbooks" / "role_parameters"


class VarsModule(BaseVarsPlugin):
    is_stateless = True

    @staticmethod
    def parameters(loader: Any) -> dict[str, Any]:
        """Every role parameter of playbooks/role_parameters/, as the templates written there."""
        data: dict[str, Any] = {}
        for found in sorted(PARAMETERS_DIR.glob("*.yml")):
            # Templates over the inventory, evaluated when a task reads them.
            new = loader.load_from_file(str(found), cache="all", unsafe=True, trusted_as_template=True)
            if not isinstance(new, dict):
                raise AnsibleParserError(f"{found}: expected a mapping of role parameters")
            data = combine_vars(data, new)
        return data

    def get_vars(self, loader: Any, path: str, entities: Any, cache: bool = True) -> dict[str, Any]:
        super().get_vars(loader, path, entities)
        for entity in entities if isinstance(entities, list) else [entities]:
            if isinstance(entity, Group) and entity.name == "all":
                # The inventory file's own vars for all: not overridden.
                return {key: value for key, value in self.parameters(loader).items() if key not in entity.vars}
        return {}
