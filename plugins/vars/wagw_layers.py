# The client's settings layered: the MSP's defaults, then the client's groups, then the host,
# merged recursively where a setting is a dict (Ansible alone would replace the whole dict).
from __future__ import annotations

DOCUMENTATION = r"""
name: wagw_layers
short_description: A client's settings merged over the MSP's shared defaults and under host values
description:
  - Ansible replaces a dict variable as a whole when a higher layer sets it again, so a shared
    default of C(wagw_tls) would either vanish or replace the client's whole C(wagw_tls). This
    plugin merges the layers of each host instead, lowest first.
  - >-
    0. The product's defaults, the C(default)s of C(playbooks/schema/client.yml) (the schema the
    pre-flight check validates with): a key a setting leaves out takes its default; a dict the
    schema gives a default (C(wagw_retention), C(wagw_capacity), C(wagw_meta.calling)) exists even
    when no layer writes it. A setting no layer writes and without a default stays undefined
    (C(wagw_pbx), C(wagw_phones) mean something by being there).
  - 1. The MSP's defaults (every C(*.yml) of the MSP defaults folder, in name order).
  - 2. The inventory's group C(all) (inventory file, then C(group_vars/all/)).
  - 3. The host's other groups in Ansible's group order (depth, priority, name), each inventory
    file then C(group_vars/<group>/).
  - 4. The host (inventory file, then C(host_vars/<host>/)).
  - A C(wagw_*) setting that is a dict in two layers is merged key by key, recursively; any other
    value (a list, a string, a number, a variable not named C(wagw_*)) of a higher layer
    replaces the lower one, as in Ansible. A variable set only in the MSP's defaults is used as
    if the client's inventory set it for C(all).
  - The result ranks as the host's inventory C(host_vars); extra vars, facts and play vars still
    win. C(ansible-inventory --host <host>) shows the merged values. Within one layer's folder the
    files replace each other, as in Ansible.
  - The MSP defaults folder is C(_msp/) next to the client folders (the parent of the inventory's
    folder, so C(~/wagw-clients/_msp/) for C(~/wagw-clients/<client>/hosts.yml)), or the folder
    that C(WAGW_MSP_DEFAULTS) names. It is optional; C(WAGW_MSP_DEFAULTS="") switches it off.
    It holds no secrets (it is shared by every client; the pre-flight check refuses clear-text
    secrets of production clients wherever they are written).
  - >-
    Structure-only mode (C(WAGW_STRUCTURE_ONLY=1), with C(host_group_vars) not enabled, as
    C(scripts/wagw-fleet --structure-only) runs it): the plugin reads C(group_vars/) and
    C(host_vars/) itself and needs no vault password. A vault-encrypted file is skipped, an
    inline C(!vault) value and every C(vault_*) variable the settings refer to but no readable
    file defines stand for a placeholder, and C(wagw_structure_only) is true, so that
    C(playbooks/validate.yml) checks the structure and the rules and leaves the secrets' values
    alone.
options:
  stage:
    description:
      - Both stages, fixed. At inventory parse time the merged values become the host's own
        (C(ansible-inventory) shows them); when a task runs, C(host_group_vars) reads the
        inventory's C(host_vars) again, and this plugin, enabled after it, merges again on top.
    type: str
    default: all
    choices: [all]
"""

import copy
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ansible.errors import AnsibleParserError
from ansible.inventory.group import Group
from ansible.inventory.helpers import sort_groups
from ansible.inventory.host import Host
from ansible.parsing.vault import EncryptedString, is_encrypted_file
from ansible.plugins.loader import vars_loader
from ansible.plugins.vars import BaseVarsPlugin
from ansible.utils.vars import merge_hash

MSP_FOLDER = "_msp"
SCHEMA = Path(__file__).resolve().parents[2] / "playbooks" / "schema" / "client.yml"
SETTING_PREFIX = "wagw_"
_ABSENT = object()
# What a secret reads as in a structure-only check: long enough for the rules on secrets' length.
VAULTED = "(vaulted: not read by a structure-only check)"
VAULT_REFERENCE = re.compile(r"\bvault_[A-Za-z0-9_]+")


def structure_only() -> bool:
    return os.environ.get("WAGW_STRUCTURE_ONLY", "") not in ("", "0", "false", "no")


def _without_secrets(value: Any) -> Any:
    """Inline vault values as the placeholder (their ciphertext cannot be opened here)."""
    if isinstance(value, EncryptedString):
        return VAULTED
    if isinstance(value, Mapping):
        return {key: _without_secrets(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_without_secrets(item) for item in value]
    return value


def _references(value: Any) -> set[str]:
    """vault_* variables a value's templates name."""
    if isinstance(value, str):
        return set(VAULT_REFERENCE.findall(value)) if "{{" in value else set()
    if isinstance(value, Mapping):
        return set().union(*(_references(item) for item in value.values()))
    if isinstance(value, list):
        return set().union(*(_references(item) for item in value))
    return set()


def msp_defaults_dir(inventory_dir: str) -> Path | None:
    """The MSP's defaults folder of an inventory, if there is one."""
    configured = os.environ.get("WAGW_MSP_DEFAULTS")
    if configured is not None:
        return Path(configured).expanduser() if configured else None
    return Path(inventory_dir).resolve().parent / MSP_FOLDER


def with_defaults(value: Any, option: Mapping[str, Any]) -> Any:
    """A setting with the schema's defaults where it leaves keys out, as validate_argument_spec
    fills them in (suboptions of dicts and of lists of dicts)."""
    suboptions = option.get("options")
    if not suboptions:
        return value
    if isinstance(value, list):
        return [with_defaults(item, {"options": suboptions}) for item in value]
    if not isinstance(value, Mapping):
        return value
    result = dict(value)
    for key, sub in suboptions.items():
        if key in result:
            result[key] = with_defaults(result[key], sub)
        elif "default" in sub:
            result[key] = with_defaults(copy.deepcopy(sub["default"]), sub)
    return result


def layer_over(lower: dict[str, Any], upper: Mapping[str, Any]) -> dict[str, Any]:
    """upper over lower: wagw_* dicts merged recursively, everything else replaced."""
    result = dict(lower)
    for key, value in upper.items():
        below = result.get(key)
        if key.startswith(SETTING_PREFIX) and isinstance(value, Mapping) and isinstance(below, Mapping):
            result[key] = merge_hash(below, value, recursive=True, list_merge="replace")
        else:
            result[key] = value
    return result


class VarsModule(BaseVarsPlugin):
    is_stateless = True

    def _msp_defaults(self, loader: Any, inventory_dir: str) -> dict[str, Any]:
        folder = msp_defaults_dir(inventory_dir)
        data: dict[str, Any] = {}
        if folder is None or not folder.is_dir():
            return data
        for found in sorted([*folder.glob("*.yml"), *folder.glob("*.yaml")]):
            new = loader.load_from_file(str(found), cache="all", unsafe=True, trusted_as_template=True)
            if new is None:
                continue
            if not isinstance(new, Mapping):
                raise AnsibleParserError(f"{found}: the MSP's defaults must be a mapping of variables")
            data = layer_over(data, new)
        return data

    @staticmethod
    def _readable_files(loader: Any, path: str, entity: Host | Group) -> dict[str, Any]:
        """group_vars/host_vars of an entity as host_group_vars reads them, less vault-encrypted files."""
        folder = Path(path).resolve() / ("host_vars" if isinstance(entity, Host) else "group_vars")
        data: dict[str, Any] = {}
        if not folder.is_dir():
            return data
        for found in loader.find_vars_files(str(folder), entity.name):
            with open(found, "rb") as handle:
                if is_encrypted_file(handle):
                    continue
            new = loader.load_from_file(found, cache="all", unsafe=True, trusted_as_template=True)
            if new:
                # files of one folder replace each other's variables, as in host_group_vars
                data = {**data, **new}
        return _without_secrets(data)

    # Parsed once per process: the loader's cache hands out a deep copy of the whole schema on
    # every call, and this runs for every host on every task (it made runs 4x slower).
    _schema_options: Mapping[str, Any] | None = None

    @classmethod
    def _schema(cls, loader: Any) -> Mapping[str, Any]:
        if cls._schema_options is None:
            cls._schema_options = loader.load_from_file(str(SCHEMA))["argument_specs"]["client"]["options"]
        return cls._schema_options

    def get_vars(self, loader: Any, path: str, entities: Any, cache: bool = True) -> dict[str, Any]:
        super().get_vars(loader, path, entities)
        # (the implicit localhost is in no group of the inventory: its vars stay Ansible's)
        hosts = [host for host in (entities if isinstance(entities, list) else [entities])
                 if isinstance(host, Host) and not getattr(host, "implicit", False)]
        if not hosts:
            return {}
        structure = structure_only()
        schema = self._schema(loader)

        def files(entity: Host | Group) -> dict[str, Any]:
            if structure:
                return self._readable_files(loader, path, entity)
            # (enabled, so already loaded: getting it here adds no plugin to the loader's cache)
            return vars_loader.get("ansible.builtin.host_group_vars").get_vars(loader, path, entity)

        # The derived role parameters sit in group all's vars since inventory parse time; they rank
        # below the MSP's defaults, so they are not an inventory layer here.
        derived = vars_loader.get("wagw.gateway.wagw_role_parameters").parameters(loader)
        msp = self._msp_defaults(loader, path)
        data: dict[str, Any] = {}
        for host in hosts:
            groups = host.get_groups()
            ordered = [g for g in groups if g.name == "all"] + sort_groups([g for g in groups if g.name != "all"])
            layers = [msp]
            for entity in [*ordered, host]:
                inline = {key: value for key, value in entity.get_vars().items()
                          if entity.name != "all" or derived.get(key, _ABSENT) != value}
                layers += [_without_secrets(inline) if structure else inline, files(entity)]
            merged: dict[str, Any] = {}
            for layer in layers:
                merged = layer_over(merged, layer)
            # Layer 0, the product's defaults, filled in last: they never replace a layer's value.
            defaulted = {name: with_defaults(merged[name] if name in merged else copy.deepcopy(option["default"]), option)
                         for name, option in schema.items() if name in merged or "default" in option}
            merged |= defaulted
            # Only what differs from Ansible's own replacing: the MSP's variables and the merged
            # settings. Everything else stays where Ansible puts it.
            if structure:
                # Everything the readable files say (host_group_vars is off), and the secrets
                # they refer to as placeholders.
                missing = _references(merged) - set(merged)
                data |= dict.fromkeys(sorted(missing), VAULTED) | merged | {"wagw_structure_only": True}
                continue
            data |= defaulted | {key: value for key, value in merged.items()
                                 if key in msp or (key.startswith(SETTING_PREFIX) and isinstance(value, Mapping)
                                                   and sum(isinstance(layer.get(key), Mapping) for layer in layers) > 1)}
        return data
