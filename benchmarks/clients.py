"""Pre-flight check and report of 100 scaffolded clients through scripts/wagw-fleet (issue:
validate and render 100 scaffolded clients, print the time per client).

One client is scaffolded with playbooks/new_client.yml and completed the way an MSP would (imprint,
DPO, a number, a route, a phone; secrets as references to its vault), then copied to 100 clients
with their own ids, host names and vault password files. The fleet runner then runs
playbooks/validate.yml for each client, then playbooks/report.yml (the client's Art. 30 record
and data-flow diagram rendered as Markdown, HTML and SVG), and, as the baseline measured in the same run, a playbook
with one no-op task on the same inventories and vaults: what any ansible-playbook run costs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
CLIENTS = int(os.environ.get("WAGW_BENCH_CLIENTS", "100"))
NOOP = "- hosts: gateway:bridge\n  gather_facts: false\n  tasks:\n    - ansible.builtin.meta: noop\n"


def edit(path: Path, change) -> None:
    data = yaml.safe_load(path.read_text())
    change(data)
    path.write_text("---\n" + yaml.safe_dump(data, sort_keys=False, allow_unicode=True))


def complete(folder: Path) -> None:
    """What the MSP fills in after the scaffold (docs/msp.md); secrets reference the vault."""
    all_vars = folder / "group_vars" / "all"
    def client(d: dict) -> None:
        d["wagw_client"].update(imprint_url="https://praxis.example/impressum",
                                dpo_contact="datenschutz@praxis.example")
        d["wagw_client"]["processors"][0]["dpa_date"] = "2026-01-15"

    edit(all_vars / "client.yml", client)

    def whatsapp(d: dict) -> None:
        d["wagw_whatsapp"].update(waba_id="100000000000010", source_networks=["203.0.113.0/24"], numbers=[
            {"number": "+4930555000100", "phone_number_id": "100000000000001",
             "sip_password": "{{ vault_wagw_bridge_internal_token }}"}])

    edit(all_vars / "whatsapp.yml", whatsapp)

    def routing(d: dict) -> None:
        d["wagw_routes"] = [{"whatsapp_number": "+4930555000100", "destinations": ["phone:empfang"]}]
        d["wagw_phones"]["accounts"] = [{"name": "empfang", "password": "{{ vault_wagw_bridge_pseudonym_key }}"}]

    edit(all_vars / "routing.yml", routing)


def scaffold(client_id: str, clients: Path, vaults: Path, *args: str,
             production: bool = False) -> subprocess.CompletedProcess[str]:
    """playbooks/new_client.yml for one client; production answers the questions a production
    client needs (SIP domain, webhook host, ACME contact). args: more -e values or flags."""
    answers = ["-e", f"client_sip_domain=sip.{client_id}.example", "-e", f"client_webhook_host=hooks.{client_id}.example",
               "-e", "client_acme_email=it@praxis.example"] if production else []
    return subprocess.run(
        [str(BIN / "ansible-playbook"), str(ROOT / "playbooks" / "new_client.yml"),
         "-e", f"client_id={client_id}", "-e", f"clients_dir={clients}", "-e", f"vault_dir={vaults}",
         "-e", "client_legal_name=Praxis Test", *answers, *args],
        capture_output=True, text=True, cwd=ROOT, check=False, timeout=300,
        env=dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1"))


def copy(template: Path, vault_dir: Path, client_id: str) -> None:
    folder = template.parent / client_id
    shutil.copytree(template, folder)
    old = template.name
    for name in ("hosts.yml", "group_vars/all/client.yml"):
        path = folder / name
        path.write_text(path.read_text().replace(old, client_id))
    shutil.copy(vault_dir / old, vault_dir / client_id)


def fleet(clients: Path, vaults: Path, playbook: Path) -> tuple[float, str]:
    env = dict(os.environ, WAGW_CLIENTS_DIR=str(clients), WAGW_VAULT_DIR=str(vaults))
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "wagw-fleet"), "--playbook", str(playbook)],
                          capture_output=True, text=True, env=env, check=False)
    elapsed = time.perf_counter() - started
    summary = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else proc.stderr
    if proc.returncode != 0:
        raise SystemExit(f"fleet run of {playbook.name} failed: {summary}\n{proc.stdout[-2000:]}")
    return elapsed, summary


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="wagw-bench-clients-") as tmp:
        clients, vaults = Path(tmp) / "clients", Path(tmp) / "vault"
        made = scaffold("bench-000", clients, vaults, production=True)
        if made.returncode != 0:
            raise SystemExit(f"scaffold failed:\n{made.stdout[-2000:]}{made.stderr[-2000:]}")
        template = clients / "bench-000"
        complete(template)
        for index in range(1, CLIENTS):
            copy(template, vaults, f"bench-{index:03d}")
        noop = Path(tmp) / "noop.yml"
        noop.write_text(NOOP)
        base, base_summary = fleet(clients, vaults, noop)
        check, check_summary = fleet(clients, vaults, ROOT / "playbooks" / "validate.yml")
        render, render_summary = fleet(clients, vaults, ROOT / "playbooks" / "report.yml")
        reports = len(list(clients.glob(".audit/*/record/report.html")))
    print(f"clients: {CLIENTS} (one ansible-playbook run each, through scripts/wagw-fleet)")
    print(f"baseline, a no-op playbook: {base:.1f} s, {base / CLIENTS:.2f} s per client  [{base_summary}]")
    print(f"validate.yml (pre-flight):  {check:.1f} s, {check / CLIENTS:.2f} s per client  [{check_summary}]")
    print(f"report.yml (render):        {render:.1f} s, {render / CLIENTS:.2f} s per client  [{render_summary}; "
          f"{reports} report.html]")
    print(f"ratio validate / no-op: {check / base:.2f}x, report / no-op: {render / base:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
