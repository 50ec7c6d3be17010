#!/usr/bin/python
# Copyright: (c) 2026, wa-voip-gateway
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Meta's SIP password of a WhatsApp business number, from the Graph API into an ansible-vault file."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: wagw_meta_sip_password
short_description: Copy Meta's SIP password of a business number into the client's vault
description:
  - Meta generates one SIP password per business phone number and app; the gateway's SIP edge
    answers Meta's digest challenges with it. The module reads it
    (C(GET /{version}/{phone-number-id}/settings?include_sip_credentials=true), documented
    response C(calling.sip.servers[] = {app_id, hostname, sip_user_password}), see
    U(https://developers.facebook.com/documentation/business-messaging/whatsapp/calling/sip#include-sip-user-password))
    and stores it under O(vault_key) in an ansible-vault encrypted YAML file (a whole-file
    vault such as C(group_vars/all/vault.yml)), keeping the file's other keys.
  - The password never appears in the module's result, diff, warnings or messages, and is
    registered as a no_log value at once, so Ansible masks it wherever it could show.
    The file is rewritten (new salt) only when the password differs from the stored one;
    the file's comments are not kept when it is rewritten.
  - Check mode reads Meta and the vault file and reports whether the password would change;
    it writes nothing. Before SIP is configured on the number (a first C(--check) run, where
    M(wagw_meta_calling) configured nothing), check mode reports a change instead of failing.
  - Runs on the controller (C(delegate_to=localhost)); encrypts and decrypts with Ansible's own
    C(VaultLib) (C(ansible.parsing.vault)), run in the controller's Python beside the module,
    the vault password passed over a pipe.
options:
  phone_number_id:
    description: Meta's ID of the business phone number.
    type: str
    required: true
  number:
    description: The number in E.164, only for messages.
    type: str
  app_id:
    description:
      - ID of the Meta app whose token this is; Meta keeps a password per number and app and
        lists each server with its C(app_id). Without it, the only server listed is used.
    type: str
  vault_file:
    description: The ansible-vault encrypted YAML file (created with mode 0600 if missing).
    type: path
    required: true
  vault_key:
    description: The key of the password in that file, for example C(vault_wagw_sip_password_4930555000100).
    type: str
    required: true
  vault_id:
    description: Vault ID label the file is encrypted with (C(default) writes a 1.1 header without label).
    type: str
    default: default
  vault_password_file:
    description:
      - File with the vault password, or an executable vault password client script (as
        C(ansible-playbook --vault-password-file)). One of this and O(vault_password) is required.
    type: path
  vault_password:
    description: The vault password itself.
    type: str
extends_documentation_fragment:
  - wagw.gateway.wagw_module
  - wagw.gateway.wagw_graph
author:
  - wa-voip-gateway
"""

EXAMPLES = r"""
- name: Meta's SIP password of the number into the client's vault
  wagw.gateway.wagw_meta_sip_password:
    phone_number_id: "100000000000001"
    number: "+4930555000100"
    app_id: "{{ wagw_meta.app_id }}"
    access_token: "{{ wagw_meta.access_token }}"
    vault_file: "{{ inventory_dir }}/group_vars/all/vault.yml"
    vault_key: vault_wagw_sip_password_4930555000100
    vault_id: beispiel
    vault_password_file: ~/.vault/beispiel
  delegate_to: localhost
"""

RETURN = r"""
vault_file:
  description: The vault file.
  returned: always
  type: str
  sample: inventories/beispiel/group_vars/all/vault.yml
vault_key:
  description: The key written (or that would be written).
  returned: always
  type: str
  sample: vault_wagw_sip_password_4930555000100
sip_hostname:
  description: The SIP server (of this app) the password belongs to; never the password.
  returned: when Meta lists a server
  type: str
  sample: sip.beispiel-sanitaer.example
"""

import json
import os
import sys
import tempfile

import yaml
from ansible.module_utils.basic import AnsibleModule
from ansible_collections.wagw.gateway.plugins.module_utils.wagw_graph import (
    GRAPH_ARGUMENT_SPEC,
    GraphClient,
    GraphError,
    describe,
)

# Ansible's VaultLib belongs to the controller's ansible package, which a module cannot import
# next to the ansible.module_utils of its AnsiballZ payload; the module therefore runs this in
# the controller's Python (its own interpreter, isolated from the payload). Secrets travel over
# stdin and stdout only, never in the command line.
VAULT_HELPER = r"""
import json, sys
req = json.loads(sys.stdin.read())
try:
    from ansible.parsing.dataloader import DataLoader
    from ansible.parsing.vault import VaultLib, VaultSecret, get_file_vault_secret
except ImportError as exc:
    print(json.dumps({"error": "import", "detail": str(exc)}))
    sys.exit(0)
vault_id = req["vault_id"]
try:
    if req.get("password") is not None:
        secret = VaultSecret(req["password"].encode())
    else:
        secret = get_file_vault_secret(filename=req["password_file"], vault_id=vault_id, loader=DataLoader())
        secret.load()
except Exception as exc:
    print(json.dumps({"error": "secret", "detail": "%s: %s" % (type(exc).__name__, exc)}))
    sys.exit(0)
vault = VaultLib(secrets=[(vault_id, secret)])
try:
    if req["op"] == "decrypt":
        out = {"text": vault.decrypt(req["text"].encode()).decode()}
    else:
        label = None if vault_id == "default" else vault_id
        out = {"text": vault.encrypt(req["text"], secret=secret, vault_id=label).decode()}
except Exception as exc:
    out = {"error": req["op"], "detail": type(exc).__name__}
print(json.dumps(out))
"""


def _vault(module: AnsibleModule, op: str, text: str) -> str:
    """Decrypts or encrypts ``text`` with ansible's VaultLib and the module's vault secret."""
    request = {"op": op, "text": text, "vault_id": module.params["vault_id"],
               "password": module.params["vault_password"], "password_file": module.params["vault_password_file"]}
    rc, out, err = module.run_command([sys.executable, "-I", "-c", VAULT_HELPER], data=json.dumps(request),
                                      binary_data=True)
    try:
        answer = json.loads(out)
    except ValueError:
        module.fail_json(msg=f"ansible's vault library failed in {sys.executable} (rc {rc}): {err[-500:]}")
    error, detail = answer.get("error"), answer.get("detail", "")
    if error == "import":
        module.fail_json(msg=f"ansible's vault library is not importable by {sys.executable} ({detail}); run the "
                             "module on the controller with its Python (ansible_python_interpreter: "
                             "'{{ ansible_playbook_python }}')")
    if error == "secret":
        module.fail_json(msg=f"cannot load the vault password for vault id {module.params['vault_id']}: {detail}")
    if error == "decrypt":
        module.fail_json(msg=f"cannot decrypt {module.params['vault_file']} with vault id {module.params['vault_id']}: "
                             f"{detail} (wrong vault password or vault id?)")
    if error:
        module.fail_json(msg=f"cannot encrypt {module.params['vault_file']}: {detail}")
    return answer["text"]


def _read_vault(module: AnsibleModule, path: str) -> dict:
    if not os.path.exists(path):
        return {}
    with open(path, "rb") as f:
        raw = f.read()
    if not raw.strip():
        return {}
    if not raw.lstrip().startswith(b"$ANSIBLE_VAULT;"):
        module.fail_json(msg=f"{path} is not an ansible-vault encrypted file; refusing to touch it "
                             "(encrypt it with ansible-vault encrypt, or name a new file)")
    plain = _vault(module, "decrypt", raw.decode("ascii", errors="replace"))
    data = yaml.safe_load(plain) if plain.strip() else {}
    if data is None:
        return {}
    if not isinstance(data, dict):
        module.fail_json(msg=f"{path} does not hold a YAML mapping; refusing to rewrite it")
    return data


def _write_vault(module: AnsibleModule, path: str, data: dict) -> None:
    text = yaml.safe_dump(data, default_flow_style=False, sort_keys=False, explicit_start=True, width=1000)
    encrypted = _vault(module, "encrypt", text)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, mode=0o700, exist_ok=True)
    new = not os.path.exists(path)
    fd, tmp = tempfile.mkstemp(prefix=".wagw-vault-", dir=directory)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(encrypted)
        os.chmod(tmp, 0o600)
        module.atomic_move(tmp, path)  # keeps the mode of an existing file
        if new:
            os.chmod(path, 0o600)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            **GRAPH_ARGUMENT_SPEC,
            "phone_number_id": {"type": "str", "required": True},
            "number": {"type": "str"},
            "app_id": {"type": "str"},
            "vault_file": {"type": "path", "required": True},
            "vault_key": {"type": "str", "required": True, "no_log": False},
            "vault_id": {"type": "str", "default": "default"},
            "vault_password_file": {"type": "path", "no_log": False},
            "vault_password": {"type": "str", "no_log": True},
        },
        required_one_of=[("vault_password_file", "vault_password")],
        mutually_exclusive=[("vault_password_file", "vault_password")],
        supports_check_mode=True,
    )
    params = module.params
    number_id, key, path = params["phone_number_id"], params["vault_key"], params["vault_file"]
    subject = (f"WhatsApp number {params['number']} (phone number id {number_id})" if params["number"]
               else f"WhatsApp phone number id {number_id}")
    result: dict = {"changed": False, "vault_file": path, "vault_key": key}

    client = GraphClient.from_module(params)
    try:
        settings = client.get(f"{number_id}/settings", {"include_sip_credentials": "true"})
    except GraphError as exc:
        module.fail_json(msg=describe(exc, subject, "reading the SIP password"), graph_error=exc.error,
                         http_status=exc.status, **result)
    servers = ((settings.get("calling") or {}).get("sip") or {}).get("servers") or []
    # Every password Meta sent is masked from here on, whichever server it belongs to.
    for server in servers:
        if isinstance(server, dict) and server.get("sip_user_password"):
            module.no_log_values.add(str(server["sip_user_password"]))
    app_id = params["app_id"]
    ours = [s for s in servers if isinstance(s, dict) and (app_id is None or str(s.get("app_id")) == str(app_id))]
    if len(ours) != 1 or not ours[0].get("sip_user_password"):
        why = (f"Meta lists no SIP server of app {app_id or '(any)'} on the number" if not ours
               else f"Meta lists {len(ours)} SIP servers; set app_id to pick this app's" if len(ours) > 1
               else "Meta returned no sip_user_password (does the token belong to the app that configured SIP?)")
        if module.check_mode and not ours:
            module.warn(f"{subject}: {why}; a real run reads the password once wagw_meta_calling configured SIP")
            result["changed"] = True
            module.exit_json(**result)
        module.fail_json(msg=f"{subject}: cannot read the SIP password: {why}. Configure SIP on the number first "
                             "(wagw_meta_calling with sip.hostname)", **result)
    password = str(ours[0]["sip_user_password"])
    result["sip_hostname"] = ours[0].get("hostname")

    data = _read_vault(module, path)
    for value in data.values():  # the file's other secrets stay masked too
        if isinstance(value, str) and value:
            module.no_log_values.add(value)
    stored = data.get(key)
    result["changed"] = stored != password
    if module._diff:
        what = f"Meta's SIP password of {params['number'] or number_id} (not shown)"
        before = ("(absent)" if key not in data else "(this password)" if stored == password
                  else "(another value, not shown)")
        result["diff"] = {"before_header": f"{path} (vault)", "after_header": f"{path} (vault)",
                          "before": f"{key}: {before}\n", "after": f"{key}: {what if result['changed'] else before}\n"}
    if result["changed"] and not module.check_mode:
        data[key] = password
        _write_vault(module, path, data)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
