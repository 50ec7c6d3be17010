"""playbooks/report.yml: the Art. 30 record, the controls of an audit run and the data-flow
diagram, rendered from a client inventory and an audit run's evidence (as playbooks/audit.yml
writes it), in Markdown and HTML with the diagram's SVG embedded."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

from conftest import ROOT


def report(inventory: Path, audit_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1",
               WAGW_SECRETS_DIR=str(audit_dir.parent / "secrets"))
    return subprocess.run([str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(inventory / "hosts.yml"),
                           str(ROOT / "playbooks" / "report.yml"), "-e", f"audit_dir={audit_dir}", *args],
                          capture_output=True, text=True, env=env, cwd=ROOT, check=False, timeout=120)


def test_the_record_and_the_data_flow_come_from_the_inventory(example_inventory: Path, tmp_path: Path) -> None:
    client = example_inventory / "group_vars" / "all" / "client.yml"
    settings = yaml.safe_load(client.read_text())
    settings["wagw_client"]["legal_name"] = "Meier & <Söhne> GmbH"
    settings["wagw_client"]["bsp"] = {"name": "BSP Beispiel GmbH", "purpose": "WhatsApp Business API access",
                                      "country": "CH", "dpa_date": "2026-02-01", "transfer_mechanism": "adequacy"}
    client.write_text(yaml.safe_dump(settings, allow_unicode=True))
    (example_inventory / "group_vars" / "all" / "retention.yml").write_text(
        "wagw_retention: {call_record_days: 30, log_days: 5}\n")
    result = report(example_inventory, tmp_path / "audit")
    assert result.returncode == 0, result.stdout + result.stderr
    folder = tmp_path / "audit" / "example" / "record"
    markdown = (folder / "report.md").read_text()
    assert "| Controller (Art. 30(1)(a)) | Beispiel Sanitaer GmbH |" in markdown
    assert "| Art. 6(1)(a) consent | customers who opted in |" in markdown
    assert "| BSP Beispiel GmbH (BSP) | WhatsApp Business API access | CH | 2026-02-01 | adequacy decision (Art. 45) |" \
        in markdown
    assert "| call records | media nodes: Asterisk's CDR file; bridge: call events | 30 days |" in markdown
    assert "| 5 days | journald MaxRetentionSec" in markdown
    assert "| consent proof (after revocation or last use) | bridge database | 1095 days |" in markdown
    assert "No audit run yet." in markdown
    html = (folder / "report.html").read_text()
    assert "<h1>Audit report: Meier &amp; &lt;Söhne&gt; GmbH" in html
    assert "<Söhne>" not in html
    # the diagram, drawn by graphviz and embedded: the host's cluster, its services and data
    assert html.count("<svg") == 1
    assert "<?xml" not in html
    dot = (folder / "dataflow.dot").read_text()
    assert 'subgraph "cluster_demo_gateway"' in dot
    assert '"demo_gateway_cdr" [label="CDR file\\ncall records: 30 days"' in dot
    assert 'meta_sip -> "demo_gateway_kamailio"' in dot
    assert '"demo_gateway_asterisk" -> "demo_gateway_bridge"' in dot


def test_an_audit_run_with_a_failed_control_fails_the_report(example_inventory: Path, tmp_path: Path) -> None:
    run = tmp_path / "audit" / "example" / "20261201T020000Z"
    run.mkdir(parents=True)
    older = tmp_path / "audit" / "example" / "20261130T020000Z"
    older.mkdir()
    controls = [{"id": "RET-CDR", "object": "/var/log/asterisk/cdr-custom/wagw.csv", "passed": False,
                 "oldest": "2026-08-01T00:00:00Z", "limit_days": 90, "detail": "3 rows"},
                {"id": "TLS-PROTO", "object": "nginx webhook 127.0.0.1:443", "passed": True,
                 "detail": "offers TLSv1.2, TLSv1.3"}]
    (run / "demo-gateway.json").write_text(json.dumps({"client": "example", "host": "demo-gateway",
                                                       "passed": False, "controls": controls}))
    (older / "demo-gateway.json").write_text(json.dumps({"client": "example", "host": "demo-gateway",
                                                         "passed": True, "controls": []}))
    result = report(example_inventory, tmp_path / "audit", "-e", "wagw_report_fail=true")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "client example: failed demo-gateway RET-CDR /var/log/asterisk/cdr-custom/wagw.csv" in \
        " ".join(result.stdout.split())
    markdown = (run / "report.md").read_text()
    assert "| demo-gateway | RET-CDR | `/var/log/asterisk/cdr-custom/wagw.csv` | **FAIL** | 3 rows (oldest " \
        "2026-08-01T00:00:00Z, limit 90 days) |" in markdown
    assert "| demo-gateway | TLS-PROTO | `nginx webhook 127.0.0.1:443` | pass | offers TLSv1.2, TLSv1.3 |" in markdown
    assert not (older / "report.md").exists()
    # without wagw_report_fail (the report alone) it renders and passes
    assert report(example_inventory, tmp_path / "audit").returncode == 0
