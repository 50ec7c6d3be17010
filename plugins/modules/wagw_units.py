#!/usr/bin/python
# Copyright: (c) 2026, wa-voip-gateway
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Several systemd units enabled and started in one module run."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: wagw_units
short_description: Enable and start several systemd units in one module run
description:
  - Makes sure each listed systemd unit is enabled at boot and, unless told otherwise,
    active now; does nothing for a unit that already is. One module run for all of them.
  - Why it exists. Each module run costs about 0.3-0.5 s of Python start-up on the host, and
    C(ansible.builtin.systemd_service) handles one unit per run and reads the unit's full
    property set each time; a service role that starts a daemon, a helper timer and its web
    front re-runs faster with one run. Restarts and reloads stay with
    C(ansible.builtin.systemd_service) in handlers.
  - Uses C(systemctl is-enabled), C(is-active), C(enable), C(disable), C(start) and C(stop).
options:
  units:
    description: The units, in the order they are handled.
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description: Unit name with its suffix, for example C(nginx.service) or C(wagw-bridge-purge.timer).
        type: str
        required: true
      enabled:
        description: Whether the unit starts at boot (C(true) enables it, C(false) disables it).
        type: bool
        default: true
      started:
        description:
          - Whether the unit must be active now (C(false) leaves it alone). Use C(false) for
            units with a start condition that may not hold, for example
            C(systemd-timesyncd) inside a container, which would otherwise be started on every run.
          - When unset, C(true) unless I(stopped) is set.
        type: bool
      stopped:
        description:
          - Stop the unit when it is active, for a unit the inventory switched off (for example
            the backup timer after C(wagw_backup) is removed), whose unit file may already be gone.
          - Excludes I(started=true).
        type: bool
        default: false
  daemon_reload:
    description: Run C(systemctl daemon-reload) first (unit files changed in this play); not reported as a change.
    type: bool
    default: false
extends_documentation_fragment:
  - wagw.gateway.wagw_module
author:
  - wa-voip-gateway
"""

EXAMPLES = r"""
- name: Start and enable the bridge, its retention timer and nginx
  wagw.gateway.wagw_units:
    units:
      - name: wagw-bridge.service
      - name: wagw-bridge-purge.timer
      - name: nginx.service
    daemon_reload: "{{ unit_files is changed }}"

- name: Stop and disable a timer switched off in the inventory
  wagw.gateway.wagw_units:
    units:
      - name: wagw-bridge-backup.timer
        enabled: false
        stopped: true

- name: Enable systemd-timesyncd (it does not start inside containers)
  wagw.gateway.wagw_units:
    units:
      - name: systemd-timesyncd.service
        started: false
"""

RETURN = r"""
changed_units:
  description: The units that were (or in check mode would be) enabled, disabled, started or stopped.
  returned: always
  type: list
  elements: str
  sample: [wagw-bridge.service]
started_units:
  description:
    - The units that were (or in check mode would be) started because they were not active.
    - They loaded the configuration as it is now, so a restart handler notified by a
      configuration change earlier in the same run can skip them.
  returned: always
  type: list
  elements: str
  sample: [asterisk.service]
"""

from ansible.module_utils.basic import AnsibleModule

# `systemctl is-enabled` states that need no `systemctl enable`.
ENABLED_STATES = {"enabled", "enabled-runtime", "static", "indirect", "generated", "alias", "linked", "linked-runtime"}


def _query(module: AnsibleModule, systemctl: str, verb: str, unit: str) -> str:
    _rc, out, err = module.run_command([systemctl, verb, unit])
    return (out or err).strip().splitlines()[0] if (out or err).strip() else "unknown"


def _run(module: AnsibleModule, systemctl: str, verb: str, unit: str) -> None:
    rc, out, err = module.run_command([systemctl, verb, unit])
    if rc != 0:
        module.fail_json(msg=f"systemctl {verb} {unit} failed: {err or out}", rc=rc, stdout=out, stderr=err)


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "units": {"type": "list", "elements": "dict", "required": True, "options": {
                "name": {"type": "str", "required": True},
                "enabled": {"type": "bool", "default": True},
                "started": {"type": "bool"},
                "stopped": {"type": "bool", "default": False},
            }},
            "daemon_reload": {"type": "bool", "default": False},
        },
        supports_check_mode=True,
    )
    systemctl = module.get_bin_path("systemctl", required=True)
    if module.params["daemon_reload"] and not module.check_mode:
        rc, out, err = module.run_command([systemctl, "daemon-reload"])
        if rc != 0:
            module.fail_json(msg=f"systemctl daemon-reload failed: {err or out}", rc=rc)
    changed_units: list[str] = []
    started_units: list[str] = []
    before: list[str] = []
    after: list[str] = []
    for unit in module.params["units"]:
        name = unit["name"]
        if unit["stopped"] and unit["started"]:
            module.fail_json(msg=f"{name}: stopped and started exclude each other")
        unit["started"] = not unit["stopped"] if unit["started"] is None else unit["started"]
        verbs = []
        enabled = _query(module, systemctl, "is-enabled", name)
        if enabled == "masked" and (unit["enabled"] or unit["started"]):
            module.fail_json(msg=f"{name} is masked; unmask it first")
        if unit["enabled"] and enabled not in ENABLED_STATES:
            verbs.append("enable")
        elif not unit["enabled"] and enabled in ("enabled", "enabled-runtime"):
            verbs.append("disable")
        active = _query(module, systemctl, "is-active", name) if unit["started"] or unit["stopped"] else "-"
        if unit["started"] and active != "active":
            verbs.append("start")
        if unit["stopped"] and active == "active":
            verbs.append("stop")
        before.append(f"{name}: {enabled}, {active}\n")
        boot = {"enable": "enabled", "disable": "disabled"}
        new_enabled = next((boot[verb] for verb in verbs if verb in boot), enabled)
        new_active = {"start": "active", "stop": "inactive"}
        after.append(f"{name}: {new_enabled}, {next((new_active[v] for v in verbs if v in new_active), active)}\n")
        if not verbs:
            continue
        changed_units.append(name)
        if "start" in verbs:
            started_units.append(name)
        if not module.check_mode:
            for verb in verbs:
                _run(module, systemctl, verb, name)
    result: dict = {"changed": bool(changed_units), "changed_units": changed_units, "started_units": started_units}
    if module._diff:
        result["diff"] = {"before": "".join(before), "after": "".join(after)}
    module.exit_json(**result)


if __name__ == "__main__":
    main()
