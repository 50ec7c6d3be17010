#!/usr/bin/python
# Copyright: (c) 2026, wa-voip-gateway
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Live evidence of a host's controls (GDPR Art. 5(1)(e) retention, Art. 32 certificates), in
one module run: changes nothing."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: wagw_host_audit
short_description: Read a host's live evidence (retention, certificates) and judge it against the declared limits
description:
  - Reads, on the host and without changing anything, what an auditor needs to see that the
    declared retention (the client's C(wagw_retention)) is enforced and the host's certificates
    are valid, and judges each control pass or fail. One module run per host;
    C(playbooks/audit.yml) calls it.
  - "Controls, each with a stable id: C(RET-CDR) the oldest call record in Asterisk's CDR file;
    C(RET-LOGFILES) the oldest file in Asterisk's log directory; C(RET-JOURNAL) journald's
    C(MaxRetentionSec) and its oldest entry; C(RET-TIMER) each retention timer enabled, active and
    its last run successful; C(RET-EVIDENCE) each evidence file present and its last run recent;
    C(TLS-CERT) each certificate readable and valid for at least its I(min_days) more days;
    C(TLS-PROTO) each TLS endpoint accepts exactly the allowed protocol versions and no TLS 1.2
    cipher outside the allowed list (handshakes with the host's C(openssl s_client));
    C(NET-FIREWALL) the loaded nftables input chain drops by default and accepts exactly the
    declared ports from exactly the declared sources (address sets compared as networks);
    C(BAK-LAST) the newest encrypted backup of the bridge's database at most I(max_age_hours) old;
    C(BAK-BUCKET) the backup bucket versioned, encrypted by default, and its backups expiring at
    their retention (a lifecycle rule for the prefix, non-current versions expiring too)."
  - An age is within its limit when it is at most I(limit_days) plus I(grace_days) days, as a
    daily run leaves records up to a day older than the limit until it next runs.
options:
  call_records:
    description: Asterisk's CDR file (rows as roles/asterisk writes them; the start is column 2, UTC) and its limit.
    type: dict
    suboptions:
      path: {description: The CDR file., type: path, required: true}
      limit_days: {description: Days a call record may be kept., type: int, required: true}
  log_files:
    description: A log directory whose files (not its subdirectories) must be younger than the limit.
    type: dict
    suboptions:
      path: {description: The directory., type: path, required: true}
      limit_days: {description: Days a log file may be kept after its last write., type: int, required: true}
  journal_limit_days:
    description: The log retention journald must enforce (C(MaxRetentionSec)); unset skips the control.
    type: int
  timers:
    description: Retention timers (C(name.timer)) that must be enabled and active; the service they start must not have failed.
    type: list
    elements: str
    default: []
  evidence_files:
    description: Evidence files (JSON lines) whose last run must be at most I(evidence_max_age_days) old.
    type: list
    elements: path
    default: []
  evidence_max_age_days:
    description: Age of the last evidence line that still counts as a working daily run.
    type: int
    default: 2
  grace_days:
    description: Days beyond a limit that a daily run may leave.
    type: int
    default: 1
  certificates:
    description: Certificates (PEM; the first one in the file is judged) that must still be valid for I(min_days) days.
    type: list
    elements: dict
    default: []
    suboptions:
      path: {description: The certificate file., type: path, required: true}
      min_days: {description: Days it must still be valid., type: int, default: 14}
  tls_endpoints:
    description: TLS listeners on the host to probe.
    type: list
    elements: dict
    default: []
    suboptions:
      name: {description: What listens (shown in the control's object)., type: str, required: true}
      port: {description: TCP port., type: int, required: true}
      address: {description: Address to connect to (a wildcard listener is probed on loopback)., type: str, default: 127.0.0.1}
      server_name: {description: SNI name to send; empty sends none., type: str, default: ''}
  tls_protocols:
    description: Protocol versions the endpoints must accept; every other one of TLSv1 to TLSv1.3 must be refused.
    type: list
    elements: str
    default: [TLSv1.2, TLSv1.3]
  tls_ciphers:
    description: The TLS 1.2 ciphers (OpenSSL names) an endpoint may offer; a handshake offering only others must fail.
    type: list
    elements: str
    default: []
  firewall:
    description: The inbound rules the host must have, as roles/common renders them into the nftables table I(table).
    type: dict
    suboptions:
      ports:
        description: Open ports as C(common_firewall_ports) declares them (port or range, proto, sources; no sources is any).
        type: list
        elements: dict
        required: true
      ssh_port: {description: The SSH port., type: int, default: 22}
      ssh_sources: {description: Networks allowed to SSH; empty is any., type: list, elements: str, default: []}
      table: {description: The inet table holding the input chain., type: str, default: wagw_filter}
  backup:
    description:
      - The bridge's backups, read live from their bucket by I(command) (C(wagw-bridge backup-status),
        whose JSON names the newest backup, the versioning, default encryption and lifecycle rules).
      - Read-only; it runs in check mode too.
    type: dict
    suboptions:
      command: {description: The command (argv) that prints the status., type: list, elements: str, required: true}
      prefix: {description: The key prefix the lifecycle rule must cover., type: str, required: true}
      expiration_days: {description: Days after which the lifecycle rule must expire a backup., type: int, required: true}
      max_age_hours: {description: Age of the newest backup that still counts as a working daily run., type: int, default: 26}
extends_documentation_fragment:
  - wagw.gateway.wagw_module
author:
  - wa-voip-gateway
"""

EXAMPLES = r"""
- name: Read the evidence of a media node
  wagw.gateway.wagw_host_audit:
    call_records: {path: /var/log/asterisk/cdr-custom/wagw.csv, limit_days: 90}
    log_files: {path: /var/log/asterisk, limit_days: 7}
    journal_limit_days: 7
    timers: [wagw-asterisk-retention.timer]
    evidence_files: [/var/lib/wagw/evidence/asterisk-retention.jsonl]
  register: host_audit

- name: Read the evidence of an edge's certificate
  wagw.gateway.wagw_host_audit:
    certificates:
      - {path: /etc/wagw/tls/sip.example.org/cert.pem, min_days: 14}
  register: host_audit

- name: Read the evidence of a bridge host's backups
  wagw.gateway.wagw_host_audit:
    backup:
      command: [/usr/local/sbin/wagw-bridge, backup-status]
      prefix: bridge/
      expiration_days: 30
  register: host_audit
"""

RETURN = r"""
passed:
  description: Whether every control passed.
  type: bool
  returned: always
controls:
  description: One item per control and object, in a stable order.
  type: list
  elements: dict
  returned: always
  sample:
    - id: RET-CDR
      title: call records within their retention
      object: /var/log/asterisk/cdr-custom/wagw.csv
      passed: true
      limit_days: 90
      oldest: "2026-11-30T10:00:00Z"
      oldest_age_days: 1.1
      detail: 12 rows
    - id: TLS-CERT
      title: certificate valid for its minimum days
      object: /etc/wagw/tls/sip.example.org/cert.pem
      passed: true
      not_after: "2027-02-28T12:00:00Z"
      days_left: 89.2
      min_days: 14
      detail: "subject=CN=sip.example.org"
    - id: NET-FIREWALL
      title: firewall accepts exactly the declared ports and sources
      object: inet wagw_filter input
      passed: false
      missing: []
      unexpected: ["tcp 8080 from any"]
      detail: "policy drop; 1 unexpected, 0 missing"
"""

import csv
import datetime as dt
import ipaddress
import json
import re
import subprocess
from pathlib import Path

from ansible.module_utils.basic import AnsibleModule

TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
DAY = 86400.0
SYSTEMD_UNITS = {"s": 1, "sec": 1, "second": 1, "seconds": 1, "min": 60, "m": 60, "minute": 60, "minutes": 60,
                 "h": 3600, "hr": 3600, "hour": 3600, "hours": 3600, "d": 86400, "day": 86400, "days": 86400,
                 "w": 604800, "week": 604800, "weeks": 604800, "month": 2629800, "months": 2629800,
                 "y": 31557600, "year": 31557600, "years": 31557600}


def _iso(epoch: float | None) -> str | None:
    return dt.datetime.fromtimestamp(epoch, dt.UTC).strftime(TIME_FORMAT) if epoch is not None else None


def _age_control(cid: str, title: str, obj: str, *, oldest: float | None, limit_days: int, grace_days: int,
                 now: float, detail: str) -> dict:
    age = None if oldest is None else round((now - oldest) / DAY, 2)
    return {"id": cid, "title": title, "object": obj, "limit_days": limit_days, "oldest": _iso(oldest),
            "oldest_age_days": age, "passed": age is None or age <= limit_days + grace_days, "detail": detail}


def cdr_oldest(path: Path) -> tuple[float | None, int]:
    oldest, rows = None, 0
    if not path.is_file():
        return None, 0
    with path.open(encoding="utf-8", errors="replace", newline="") as handle:
        for fields in csv.reader(handle):
            rows += 1
            try:
                start = dt.datetime.strptime(fields[1], TIME_FORMAT).replace(tzinfo=dt.UTC).timestamp()
            except (IndexError, ValueError):
                continue
            oldest = start if oldest is None else min(oldest, start)
    return oldest, rows


def files_oldest(path: Path) -> tuple[float | None, int]:
    times = [entry.stat().st_mtime for entry in path.iterdir() if entry.is_file() and not entry.is_symlink()] \
        if path.is_dir() else []
    return (min(times) if times else None), len(times)


def seconds(value: str) -> float | None:
    """systemd time span ("7day", "1w 2d", "604800") in seconds."""
    total, found = 0.0, False
    for number, unit in re.findall(r"([0-9.]+)\s*([a-z]*)", value.strip().lower()):
        if unit and unit not in SYSTEMD_UNITS:
            return None
        total += float(number) * SYSTEMD_UNITS.get(unit or "s", 1)
        found = True
    return total if found else None


def run(module: AnsibleModule, *argv: str) -> str:
    rc, out, _err = module.run_command(list(argv))
    return out if rc == 0 else ""


def journal_oldest(module: AnsibleModule) -> float | None:
    """Time of the oldest journal entry: journalctl prints oldest first, one line is enough."""
    journalctl = module.get_bin_path("journalctl", required=True)
    try:
        # journalctl from get_bin_path, fixed arguments; Popen to stop it after one line
        with subprocess.Popen([journalctl, "--quiet", "--no-pager", "--output=short-unix"],  # noqa: S603
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True) as reader:
            line = reader.stdout.readline() if reader.stdout else ""
            reader.kill()
    except OSError:
        return None
    match = re.match(r"^([0-9]+(?:\.[0-9]+)?)\s", line)
    return float(match.group(1)) if match else None


def journal_control(module: AnsibleModule, limit_days: int, grace_days: int, now: float) -> dict:
    config = run(module, "systemd-analyze", "cat-config", "systemd/journald.conf")
    values = re.findall(r"^\s*MaxRetentionSec\s*=\s*(\S+)", config, re.M)
    configured = seconds(values[-1]) if values else None
    control = _age_control("RET-JOURNAL", "journald keeps logs no longer than their retention", "journald",
                           oldest=journal_oldest(module), limit_days=limit_days, grace_days=grace_days, now=now,
                           detail=f"MaxRetentionSec={values[-1] if values else 'unset'}")
    control["configured_days"] = None if configured is None else round(configured / DAY, 2)
    control["passed"] = control["passed"] and configured is not None and configured <= limit_days * DAY
    return control


def timer_control(module: AnsibleModule, timer: str) -> dict:
    service = timer.removesuffix(".timer") + ".service"
    timer_props = dict(line.split("=", 1) for line in run(
        module, "systemctl", "show", timer, "--property=UnitFileState,ActiveState,LastTriggerUSec").splitlines()
        if "=" in line)
    service_props = dict(line.split("=", 1) for line in run(
        module, "systemctl", "show", service, "--property=Result,ExecMainStatus").splitlines() if "=" in line)
    passed = (timer_props.get("UnitFileState") == "enabled" and timer_props.get("ActiveState") == "active"
              and service_props.get("Result", "success") == "success")
    return {"id": "RET-TIMER", "title": "retention timer enabled, active, last run successful", "object": timer,
            "passed": passed,
            "detail": (f"{timer_props.get('UnitFileState', '?')}, {timer_props.get('ActiveState', '?')}, "
                       f"last triggered {timer_props.get('LastTriggerUSec') or 'never'}, "
                       f"last run {service_props.get('Result', '?')}")}


def evidence_control(path: Path, max_age_days: int, now: float) -> dict:
    control = {"id": "RET-EVIDENCE", "title": "retention runs leave evidence", "object": str(path),
               "passed": False, "last_run": None, "classes": {}}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        control["detail"] = f"not readable: {exc.strerror}"
        return control
    if not lines:
        control["detail"] = "no run recorded yet"
        return control
    try:
        last = json.loads(lines[-1])
        ran = dt.datetime.strptime(last["time"], TIME_FORMAT).replace(tzinfo=dt.UTC).timestamp()
    except (ValueError, KeyError, TypeError):
        control["detail"] = "last line is not a retention record"
        return control
    control.update(last_run=last["time"], classes=last.get("classes", {}), runs=len(lines),
                   passed=(now - ran) / DAY <= max_age_days,
                   detail=f"{len(lines)} runs, the last {round((now - ran) / DAY, 2)} days ago")
    return control


def certificate_control(module: AnsibleModule, path: str, min_days: int, now: float) -> dict:
    control = {"id": "TLS-CERT", "title": "certificate valid for its minimum days", "object": path,
               "min_days": min_days, "passed": False, "not_after": None, "days_left": None}
    # openssl's CLI: the hosts have it (ca-certificates needs it), a Python library they might not.
    rc, out, err = module.run_command([module.get_bin_path("openssl", required=True), "x509", "-noout",
                                       "-enddate", "-subject", "-nameopt", "RFC2253", "-in", path])
    end = re.search(r"^notAfter=(.+)$", out, re.M)
    if rc != 0 or not end:
        control["detail"] = f"not a readable certificate: {(err or out).strip().splitlines()[-1:] or ['?']}"
        return control
    expires = dt.datetime.strptime(" ".join(end.group(1).split()), "%b %d %H:%M:%S %Y %Z").replace(tzinfo=dt.UTC)
    left = round((expires.timestamp() - now) / DAY, 2)
    subject = re.search(r"^subject=(.*)$", out, re.M)
    control.update(not_after=expires.strftime(TIME_FORMAT), days_left=left, passed=left >= min_days,
                   detail=f"subject={subject.group(1).strip() if subject else '?'}")
    return control


TLS_VERSIONS = {"TLSv1": "-tls1", "TLSv1.1": "-tls1_1", "TLSv1.2": "-tls1_2", "TLSv1.3": "-tls1_3"}


def handshake(module: AnsibleModule, endpoint: dict, version: str, ciphers: str | None = None) -> str | None:
    """The cipher a handshake with this version (and TLS 1.2 cipher list) agreed on, or None."""
    argv = [module.get_bin_path("openssl", required=True), "s_client", "-connect",
            f"{endpoint['address']}:{endpoint['port']}", TLS_VERSIONS[version], "-brief"]
    if endpoint["server_name"]:
        argv += ["-servername", endpoint["server_name"]]
    # Security level 0: the client must be able to offer what the server has to refuse.
    argv += ["-cipher", f"{ciphers or 'ALL:COMPLEMENTOFALL'}:@SECLEVEL=0"]
    rc, out, err = module.run_command(argv, data="", binary_data=True)
    found = re.search(r"^Ciphersuite:\s*(\S+)", out + err, re.M)
    return found.group(1) if rc == 0 and found else None


def tls_control(module: AnsibleModule, endpoint: dict, protocols: list[str], ciphers: list[str]) -> dict:
    accepted = {version: handshake(module, endpoint, version) for version in TLS_VERSIONS}
    offered = sorted(v for v, cipher in accepted.items() if cipher)
    problems = [f"{v} accepted" for v in offered if v not in protocols]
    problems += [f"{v} refused" for v in protocols if v in TLS_VERSIONS and not accepted[v]]
    others = None
    if ciphers and "TLSv1.2" in protocols:
        # Everything but the allowed list: the server must find no cipher in common.
        others = handshake(module, endpoint, "TLSv1.2", "ALL:COMPLEMENTOFALL:" + ":".join(f"!{c}" for c in ciphers))
        if others:
            problems.append(f"TLS 1.2 cipher {others} outside the allowed list")
    return {"id": "TLS-PROTO", "title": "TLS endpoint offers only the allowed protocols and ciphers",
            "object": f"{endpoint['name']} {endpoint['address']}:{endpoint['port']}", "passed": not problems,
            "accepted": accepted, "detail": "; ".join(problems) or f"offers {', '.join(offered)}"}


def _networks(values: list) -> list[str]:
    """Sources as collapsed networks ("any" when empty); nft prints ranges and single addresses too."""
    nets: list = []
    for value in values:
        if isinstance(value, dict) and "prefix" in value:
            nets.append(ipaddress.ip_network(f"{value['prefix']['addr']}/{value['prefix']['len']}", strict=False))
        elif isinstance(value, dict) and "range" in value:
            first, last = (ipaddress.ip_address(a) for a in value["range"])
            nets += ipaddress.summarize_address_range(first, last)
        else:
            nets.append(ipaddress.ip_network(str(value), strict=False))
    if not nets:
        return ["any"]
    return [str(n) for version in (4, 6)
            for n in ipaddress.collapse_addresses(n for n in nets if n.version == version)]


def _rule_strings(ports: dict) -> set[str]:
    """(proto, port) -> sources, None for "any", as "proto port from networks"."""
    return {f"{proto} {port} from {' '.join(['any'] if None in found else _networks(found))}"
            for (proto, port), found in ports.items()}


def live_rules(ruleset: dict, table: str) -> tuple[str | None, set[str]]:
    """The input chain's policy and its accept rules as "proto port from sources" (a range as
    "10000-10999"), the sources of one port merged over its IPv4 and IPv6 rules."""
    policy, ports = None, {}
    for item in ruleset.get("nftables", []):
        chain, rule = item.get("chain"), item.get("rule")
        if chain and chain.get("table") == table and chain.get("name") == "input":
            policy = chain.get("policy")
        if not rule or rule.get("table") != table or rule.get("chain") != "input":
            continue
        exprs = rule.get("expr", [])
        if not any("accept" in e for e in exprs):
            continue
        proto = port = None
        sources: list = []
        for expr in exprs:
            match = expr.get("match", {})
            payload = match.get("left", {}).get("payload", {}) if isinstance(match.get("left"), dict) else {}
            right = match.get("right")
            if payload.get("field") == "dport":
                proto = payload.get("protocol")
                port = "-".join(str(p) for p in right["range"]) if isinstance(right, dict) and "range" in right \
                    else str(right)
            elif payload.get("field") == "saddr":
                sources += right["set"] if isinstance(right, dict) and "set" in right else [right]
        if proto and port:
            ports.setdefault((proto, port), []).extend(sources or [None])
    return policy, _rule_strings(ports)


def declared_rules(firewall: dict) -> set[str]:
    ports: dict = {("tcp", str(firewall["ssh_port"])): list(firewall["ssh_sources"]) or [None]}
    for rule in firewall["ports"]:
        ports.setdefault((rule["proto"], str(rule["port"])), []).extend(rule.get("sources") or [None])
    return _rule_strings(ports)


def firewall_control(module: AnsibleModule, firewall: dict) -> dict:
    control = {"id": "NET-FIREWALL", "title": "firewall accepts exactly the declared ports and sources",
               "object": f"inet {firewall['table']} input", "passed": False}
    rc, out, err = module.run_command([module.get_bin_path("nft", required=True), "-j", "list", "table", "inet",
                                       firewall["table"]])
    if rc != 0:
        control["detail"] = f"no such table: {err.strip()}"
        return control
    policy, live = live_rules(json.loads(out), firewall["table"])
    declared = declared_rules(firewall)
    control.update(policy=policy, missing=sorted(declared - live), unexpected=sorted(live - declared),
                   passed=policy == "drop" and live == declared,
                   detail=f"policy {policy}; {len(live - declared)} unexpected, {len(declared - live)} missing")
    return control


def backup_controls(module: AnsibleModule, backup: dict) -> list[dict]:
    last = {"id": "BAK-LAST", "title": "newest encrypted backup within its interval", "passed": False,
            "max_age_hours": backup["max_age_hours"]}
    bucket = {"id": "BAK-BUCKET", "title": "backup bucket versioned, encrypted, backups expire at their retention",
              "passed": False, "expiration_days": backup["expiration_days"]}
    rc, out, err = module.run_command(backup["command"])
    try:
        status = json.loads(out) if rc == 0 else None
    except ValueError:
        status = None
    if not isinstance(status, dict):
        detail = f"no status from {' '.join(backup['command'])}: {(err or out).strip()[-300:]}"
        return [dict(last, object="?", detail=detail), dict(bucket, object="?", detail=detail)]
    where = f"s3://{status.get('bucket')}/{status.get('prefix', '')}"
    latest = status.get("latest")
    last.update(object=where, latest=latest)
    if latest:
        last.update(passed=latest["age_hours"] <= backup["max_age_hours"],
                    detail=f"{status.get('count')} backups, the newest {latest['age_hours']} hours old")
    else:
        last["detail"] = "no backup in the bucket"
    rules = [r for r in status.get("lifecycle", []) if r.get("status") == "Enabled"
             and backup["prefix"].startswith(r.get("prefix") or "")]
    expiring = [r for r in rules if r.get("expiration_days") == backup["expiration_days"] and r.get("noncurrent_days")]
    bucket.update(object=where, versioning=status.get("versioning"), default_encryption=status.get("default_encryption"),
                  lifecycle=status.get("lifecycle", []),
                  passed=(status.get("versioning") == "Enabled" and bool(status.get("default_encryption"))
                          and bool(expiring)),
                  detail=(f"versioning {status.get('versioning')}, default encryption "
                          f"{status.get('default_encryption') or 'none'}, expiry after "
                          f"{[r.get('expiration_days') for r in rules] or 'never'} days "
                          f"(declared {backup['expiration_days']})"))
    return [last, bucket]


def main() -> None:
    limit = {"path": {"type": "path", "required": True}, "limit_days": {"type": "int", "required": True}}
    module = AnsibleModule(
        argument_spec={
            "call_records": {"type": "dict", "options": limit},
            "log_files": {"type": "dict", "options": limit},
            "journal_limit_days": {"type": "int"},
            "timers": {"type": "list", "elements": "str", "default": []},
            "evidence_files": {"type": "list", "elements": "path", "default": []},
            "evidence_max_age_days": {"type": "int", "default": 2},
            "grace_days": {"type": "int", "default": 1},
            "certificates": {"type": "list", "elements": "dict", "default": [], "options": {
                "path": {"type": "path", "required": True}, "min_days": {"type": "int", "default": 14}}},
            "tls_endpoints": {"type": "list", "elements": "dict", "default": [], "options": {
                "name": {"type": "str", "required": True}, "port": {"type": "int", "required": True},
                "address": {"type": "str", "default": "127.0.0.1"}, "server_name": {"type": "str", "default": ""}}},
            "tls_protocols": {"type": "list", "elements": "str", "default": ["TLSv1.2", "TLSv1.3"]},
            "tls_ciphers": {"type": "list", "elements": "str", "default": []},
            "firewall": {"type": "dict", "options": {
                "ports": {"type": "list", "elements": "dict", "required": True},
                "ssh_port": {"type": "int", "default": 22},
                "ssh_sources": {"type": "list", "elements": "str", "default": []},
                "table": {"type": "str", "default": "wagw_filter"}}},
            "backup": {"type": "dict", "options": {
                "command": {"type": "list", "elements": "str", "required": True},
                "prefix": {"type": "str", "required": True},
                "expiration_days": {"type": "int", "required": True},
                "max_age_hours": {"type": "int", "default": 26}}},
        },
        supports_check_mode=True,
    )
    p = module.params
    now = dt.datetime.now(dt.UTC).timestamp()
    controls = []
    if p["call_records"]:
        oldest, rows = cdr_oldest(Path(p["call_records"]["path"]))
        controls.append(_age_control("RET-CDR", "call records within their retention", p["call_records"]["path"],
                                     oldest=oldest, limit_days=p["call_records"]["limit_days"],
                                     grace_days=p["grace_days"], now=now, detail=f"{rows} rows"))
    if p["log_files"]:
        oldest, count = files_oldest(Path(p["log_files"]["path"]))
        controls.append(_age_control("RET-LOGFILES", "log files within their retention", p["log_files"]["path"],
                                     oldest=oldest, limit_days=p["log_files"]["limit_days"],
                                     grace_days=p["grace_days"], now=now, detail=f"{count} files"))
    if p["journal_limit_days"] is not None:
        controls.append(journal_control(module, p["journal_limit_days"], p["grace_days"], now))
    controls += [timer_control(module, timer) for timer in p["timers"]]
    controls += [evidence_control(Path(path), p["evidence_max_age_days"], now) for path in p["evidence_files"]]
    controls += [certificate_control(module, c["path"], c["min_days"], now) for c in p["certificates"]]
    controls += [tls_control(module, e, p["tls_protocols"], p["tls_ciphers"]) for e in p["tls_endpoints"]]
    if p["firewall"]:
        controls.append(firewall_control(module, p["firewall"]))
    if p["backup"]:
        controls += backup_controls(module, p["backup"])
    module.exit_json(changed=False, passed=all(c["passed"] for c in controls), controls=controls)


if __name__ == "__main__":
    main()
