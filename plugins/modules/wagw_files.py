#!/usr/bin/python
# Copyright: (c) 2026, wa-voip-gateway
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Several directories and files of one service in one module run."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: wagw_files
short_description: Ensure several directories and whole-content files in one module run
description:
  - Creates directories and writes files whose complete content is given (typically rendered
    on the controller with C(lookup('ansible.builtin.template', ...))), with owner, group and
    mode, in one module run on the host.
  - Why it exists. Each module run costs about 0.3-0.5 s of Python start-up on the host
    (AnsiballZ imports C(ansible.module_utils.basic) from a zip, without bytecode), and
    C(ansible.builtin.template) costs two runs (stat, then copy or file) even when nothing
    changes. A role that writes its files as one task per handler group re-runs in a
    fraction of the time, with the same change detection.
  - Directories are handled before files, in the given order; missing parents are created
    with mode 0755. A file's content is compared byte for byte and replaced atomically
    (temporary file in the same directory, then rename); owner, group and mode are applied
    afterwards when they differ.
  - Stops at the first failure; files written before it stay written (each one atomically).
options:
  directories:
    description: Directories that must exist.
    type: list
    elements: dict
    default: []
    suboptions:
      path:
        description: Absolute path of the directory.
        type: path
        required: true
      label:
        description: As O(files[].label).
        type: str
      owner:
        description: Owner name; left unchanged when omitted.
        type: str
      group:
        description: Group name; left unchanged when omitted.
        type: str
      mode:
        description: Mode as an octal string, for example C("0750").
        type: raw
  defaults:
    description: Owner, group and mode of the files, and the label of the files and directories, that do not set their own.
    type: dict
    default: {}
    suboptions:
      owner:
        description: Owner name.
        type: str
      group:
        description: Group name.
        type: str
      mode:
        description: Mode as an octal string.
        type: raw
      label:
        description: Label (see O(files[].label)).
        type: str
  files:
    description: Files with their complete content.
    type: list
    elements: dict
    default: []
    suboptions:
      path:
        description: Absolute path of the file. A symbolic link at this path is replaced by the file.
        type: path
        required: true
      content:
        description:
          - The complete content. Exactly one of O(files[].content) and O(files[].secret) is required.
        type: str
      secret:
        description:
          - Name of an entry of O(secrets) that is the complete content (a file with a
            password, a token, a salt). Its content never appears in the diff (which only says
            that it changed) nor in the task's recorded arguments.
        type: str
      owner:
        description: Owner name; left unchanged when omitted.
        type: str
      group:
        description: Group name; left unchanged when omitted.
        type: str
      mode:
        description:
          - Mode as an octal string, for example C("0640"). Left unchanged when omitted; a new
            file without one is C(0600).
        type: raw
      label:
        description:
          - A free name for what the file's change needs (for example the handler to run);
            the labels of the changed files are returned in RV(changed_labels), so that one
            task can serve several handlers that test them.
        type: str
      force:
        description:
          - When C(false) an existing file keeps its content (a secret generated once, a log
            file); only owner, group and mode are enforced.
        type: bool
        default: true
      validate:
        description:
          - Command that checks the new content before it replaces the file; C(%s) is the
            path of the temporary file. Not run in check mode.
        type: str
  secrets:
    description:
      - Contents of files that hold secrets, by a name that O(files[].secret) refers to.
      - A top-level C(no_log) option, so the task needs no C(no_log) and the other files keep
        their diff. (Not a no_log suboption, because AnsibleModule masks nested values in the
        host's log by matching them against the repr of the option, which misses multi-line
        values.)
    type: dict
    default: {}
  absent:
    description:
      - Paths of files or symbolic links that must not exist (a distribution's default
        site, a file an older version wrote). Removed after the files are written.
    type: list
    elements: path
    default: []
extends_documentation_fragment:
  - wagw.gateway.wagw_module
author:
  - wa-voip-gateway
"""

EXAMPLES = r"""
- name: Write the files whose change needs a restart
  wagw.gateway.wagw_files:
    directories:
      - path: /etc/systemd/system/kamailio.service.d
        owner: root
        group: root
        mode: "0755"
    files:
      - path: /etc/systemd/system/kamailio.service.d/50-wagw.conf
        content: "{{ lookup('ansible.builtin.template', 'systemd-override.conf.j2') }}"
        owner: root
        group: root
        mode: "0644"
      - path: /etc/kamailio/kamailio.cfg
        content: "{{ lookup('ansible.builtin.template', 'kamailio.cfg.j2') }}"
        owner: root
        group: kamailio
        mode: "0640"
        validate: kamailio -c -f %s
  notify: Restart kamailio

- name: Generate a salt once, keep it afterwards
  wagw.gateway.wagw_files:
    files:
      - path: /etc/asterisk/extensions_wagw_secret.conf
        secret: salt
        group: asterisk
        mode: "0640"
        force: false
    secrets:
      salt: "WAGW_PSEUDONYM_SALT = {{ lookup('ansible.builtin.password', '/dev/null', length=32) }}\n"
"""

RETURN = r"""
changed_labels:
  description: The distinct labels of the directories and files in RV(changed_paths), in order.
  returned: always
  type: list
  elements: str
  sample: [reload-dialplan]
changed_paths:
  description: Paths of the directories and files that were (or in check mode would be) created, changed or removed.
  returned: always
  type: list
  elements: str
  sample: [/etc/kamailio/kamailio.cfg]
"""

import os
import stat
import tempfile

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.text.converters import to_bytes, to_native


def _attributes(module: AnsibleModule, spec: dict, path: str) -> dict:
    return module.load_file_common_arguments({"path": path, **{key: spec.get(key) for key in ("owner", "group", "mode")}})


def _ensure_directory(module: AnsibleModule, spec: dict, diffs: list) -> bool:
    path = spec["path"]
    changed = False
    if not os.path.isdir(path):
        if os.path.lexists(path):
            module.fail_json(msg=f"{path} exists and is not a directory")
        changed = True
        diffs.append({"before_header": path, "after_header": path,
                      "before": {"path": path, "state": "absent"},
                      "after": {"path": path, "state": "directory"}})
        if module.check_mode:
            return True
        os.makedirs(path, mode=0o755)
    diff: dict = {"before_header": path, "after_header": path, "before": {}, "after": {}}
    if module.check_mode and changed:
        return True
    if module.set_fs_attributes_if_different(_attributes(module, spec, path), False, diff):
        changed = True
        diffs.append(diff)
    return changed


def _read(path: str) -> bytes | None:
    if not os.path.isfile(path) or os.path.islink(path):
        return None
    with open(path, "rb") as handle:
        return handle.read()


def _validate(module: AnsibleModule, command: str, tmp: str, path: str) -> None:
    if "%s" not in command:
        module.fail_json(msg=f"validate for {path} must contain %s: {command}")
    rc, out, err = module.run_command(command % tmp)
    if rc != 0:
        module.fail_json(msg=f"validation of the new {path} failed ({command}): {err or out}",
                         rc=rc, stdout=out, stderr=err)


def _keep_attributes(spec: dict, old: os.stat_result, tmp: str) -> None:
    """Gives the replacement the owner, group and mode of the file it replaces, where the spec
    sets none of its own (the temporary file is root's and 0600)."""
    if spec.get("mode") is None:
        os.chmod(tmp, stat.S_IMODE(old.st_mode))
    os.chown(tmp, old.st_uid if spec.get("owner") is None else -1, old.st_gid if spec.get("group") is None else -1)


def _write(module: AnsibleModule, spec: dict, data: bytes) -> None:
    path = spec["path"]
    directory = os.path.dirname(path)
    if not os.path.isdir(directory):
        module.fail_json(msg=f"the directory of {path} does not exist")
    old = os.stat(path) if os.path.isfile(path) else None
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".wagw_files.")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        # mkstemp creates 0600; owner and mode are set before the rename, so the file is
        # never readable by others for a moment (AnsibleModule.atomic_move would apply the
        # umask to a new file first).
        if old is not None:
            _keep_attributes(spec, old, tmp)
        module.set_fs_attributes_if_different(_attributes(module, spec, tmp), False)
        if spec.get("validate"):
            _validate(module, spec["validate"], tmp, path)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _ensure_file(module: AnsibleModule, spec: dict, diffs: list) -> bool:
    path = spec["path"]
    secret = spec["secret"] is not None
    if secret and spec["secret"] not in module.params["secrets"]:
        module.fail_json(msg=f"{path}: no entry {spec['secret']!r} in secrets")
    text = str(module.params["secrets"][spec["secret"]]) if secret else spec["content"]
    data = to_bytes(text, errors="surrogate_or_strict")
    current = _read(path)
    if os.path.isdir(path):
        module.fail_json(msg=f"{path} is a directory")
    write = current is None or (spec["force"] and current != data)
    if write:
        if secret:
            diffs.append({"before_header": path, "after_header": path,
                          "before": "" if current is None else "(secret content)\n",
                          "after": "(secret content, changed)\n"})
        else:
            diffs.append({"before_header": path, "after_header": path,
                          "before": "" if current is None else to_native(current, errors="surrogate_or_replace"),
                          "after": text})
        if module.check_mode:
            return True
        _write(module, spec, data)
    diff: dict = {"before_header": path, "after_header": path, "before": {}, "after": {}}
    if module.set_fs_attributes_if_different(_attributes(module, spec, path), False, diff) and not write:
        diffs.append(diff)
        return True
    return write


def _ensure_absent(module: AnsibleModule, path: str, diffs: list) -> bool:
    if not os.path.lexists(path):
        return False
    if os.path.isdir(path) and not os.path.islink(path):
        module.fail_json(msg=f"{path} is a directory; absent removes files and links only")
    diffs.append({"before_header": path, "after_header": path,
                  "before": {"path": path, "state": "present"}, "after": {"path": path, "state": "absent"}})
    if not module.check_mode:
        os.unlink(path)
    return True


def main() -> None:
    owner_spec = {"owner": {"type": "str"}, "group": {"type": "str"}, "mode": {"type": "raw"}}
    module = AnsibleModule(
        argument_spec={
            "directories": {"type": "list", "elements": "dict", "default": [], "options": {
                "path": {"type": "path", "required": True}, "label": {"type": "str"}, **owner_spec}},
            "defaults": {"type": "dict", "default": {}, "options": {**owner_spec, "label": {"type": "str"}}},
            "files": {"type": "list", "elements": "dict", "default": [], "options": {
                "path": {"type": "path", "required": True},
                "content": {"type": "str"},
                "secret": {"type": "str"},
                "force": {"type": "bool", "default": True},
                "validate": {"type": "str"},
                "label": {"type": "str"},
                **owner_spec},
                "mutually_exclusive": [["content", "secret"]],
                "required_one_of": [["content", "secret"]]},
            "secrets": {"type": "dict", "default": {}, "no_log": True},
            "absent": {"type": "list", "elements": "path", "default": []},
        },
        supports_check_mode=True,
    )
    paths = [spec["path"] for spec in module.params["directories"] + module.params["files"]]
    for path in paths + module.params["absent"]:
        if not os.path.isabs(path):
            module.fail_json(msg=f"path must be absolute: {path}")
    defaults = module.params["defaults"] or {}
    for spec in module.params["files"]:
        for key in ("owner", "group", "mode"):
            if spec[key] is None:
                spec[key] = defaults.get(key)
    for spec in module.params["directories"] + module.params["files"]:
        if spec["label"] is None:
            spec["label"] = defaults.get("label")
    diffs: list = []
    changed_paths = [spec["path"] for spec in module.params["directories"]
                     if _ensure_directory(module, spec, diffs)]
    changed_paths += [spec["path"] for spec in module.params["files"]
                      if _ensure_file(module, spec, diffs)]
    changed_paths += [path for path in module.params["absent"] if _ensure_absent(module, path, diffs)]
    labels = {spec["path"]: spec["label"] for spec in module.params["directories"] + module.params["files"]}
    changed_labels = list(dict.fromkeys(labels[path] for path in changed_paths if labels.get(path)))
    result: dict = {"changed": bool(changed_paths), "changed_paths": changed_paths, "changed_labels": changed_labels}
    if module._diff:
        result["diff"] = diffs
    module.exit_json(**result)


if __name__ == "__main__":
    main()
