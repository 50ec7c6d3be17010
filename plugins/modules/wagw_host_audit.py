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
    C(CDR-WRITE) no call record lost, i.e. no failed write of a CDR row in the journal (which
    keeps the log retention); C(RET-LOGFILES) the oldest file in Asterisk's log directory; C(RET-JOURNAL) journald's
    C(MaxRetentionSec) and its oldest entry; C(RET-EVIDENCE) each evidence file present and its last run recent;
    C(TLS-CERT) each certificate readable and valid for at least its I(min_days) more days;
    C(TLS-PROTO) each TLS endpoint accepts exactly the allowed protocol versions and no TLS 1.2
    cipher outside the allowed list (handshakes with the host's C(openssl s_client));
    C(BAK-LAST) the newest encrypted backup of the bridge's database at most I(max_age_hours) old;
    C(BAK-BUCKET) the backup bucket versioned, encrypted by default, and its backups expiring at
    their retention (a lifecycle rule for the prefix, non-current versions expiring too);
    C(CON-LEDGER) the consent ledger readable, with its counts (rows by action, people by their
    latest opt-in state, call permissions valid, expired or rejected) and never an identity."
  - The host's state (services, retention timers, file modes, listening sockets, firewall) is not
    read here; C(playbooks/audit.yml) checks it with the pytest-testinfra tests in
    C(tests/host_state/), through testinfra's Ansible backend.
  - An age is within its limit when it is at most I(limit_days) plus I(grace_days) days, as a
    daily run leaves records up to a day older than the limit until it next runs.
options:
  call_records:
    description: Asterisk's CDR file (rows as roles/asterisk writes them; the start is column 2, UTC) and its limit.
    type: dict
    suboptions:
      path: {description: The CDR file., type: path, required: true}
      limit_days: {description: Days a call record may be kept., type: int, required: true}
  cdr_write_failures:
    description:
      - How the media node's journal shows a call record that could not be written (a lost CDR
        row), for example the file unwritable or the process out of descriptors.
      - Read-only, at C(err) priority and above; it runs in check mode too.
    type: dict
    suboptions:
      identifier: {description: The syslog identifier Asterisk logs under., type: str, required: true}
      pattern: {description: "Text of the error message (the dialplan's FILE() append logs C(Unable to open '<path>' for appending: <reason>))", type: str, required: true}
  log_files:
    description: A log directory whose files (not its subdirectories) must be younger than the limit.
    type: dict
    suboptions:
      path: {description: The directory., type: path, required: true}
      limit_days: {description: Days a log file may be kept after its last write., type: int, required: true}
  journal_limit_days:
    description: The log retention journald must enforce (C(MaxRetentionSec)); unset skips the control.
    type: int
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
  ledger:
    description:
      - The bridge's consent ledger, counted by I(command) (C(wagw-bridge ledger-status), whose JSON
        holds counts only). Read-only; it runs in check mode too.
    type: dict
    suboptions:
      command: {description: The command (argv) that prints the counts., type: list, elements: str, required: true}
extends_documentation_fragment:
  - wagw.gateway.wagw_module
author:
  - wa-voip-gateway
"""

EXAMPLES = r"""
- name: Read the evidence of a media node
  wagw.gateway.wagw_host_audit:
    call_records: {path: /var/log/asterisk/cdr-custom/wagw.csv, limit_days: 90}
    cdr_write_failures: {identifier: asterisk, pattern: "Unable to open '/var/log/asterisk/cdr-custom/wagw.csv' for appending"}
    log_files: {path: /var/log/asterisk, limit_days: 7}
    journal_limit_days: 7
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
    ledger:
      command: [/usr/local/sbin/wagw-bridge, ledger-status]
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
"""

import csv
import datetime as dt
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


def cdr_write_control(module: AnsibleModule, failures: dict) -> dict:
    """Failed CDR writes in the journal: each one is a call record lost for good."""
    control = {"id": "CDR-WRITE", "title": "no call record lost (no failed CDR write in the journal)",
               "object": f"journal of {failures['identifier']}", "passed": False, "failures": 0, "last": None}
    rc, out, err = module.run_command([module.get_bin_path("journalctl", required=True), "--quiet", "--no-pager",
                                       "--identifier", failures["identifier"], "--priority", "err",
                                       "--output", "json", "--output-fields", "MESSAGE"])
    if rc != 0:
        control["detail"] = f"journal not readable: {(err or out).strip()[-300:]}"
        return control
    found = []
    for line in out.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        message = entry.get("MESSAGE")
        if isinstance(message, str) and failures["pattern"] in message:
            # the message from the pattern on: without Asterisk's thread and call ids
            found.append((int(entry["__REALTIME_TIMESTAMP"]) / 1e6, message[message.index(failures["pattern"]):]))
    if not found:
        control.update(passed=True, detail="no failed CDR write in the journal")
        return control
    when, message = found[-1]
    control.update(failures=len(found), last=_iso(when),
                   detail=f"{len(found)} failed CDR write{'s' if len(found) > 1 else ''}; the last: {message.strip()}")
    return control


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


def ledger_control(module: AnsibleModule, ledger: dict) -> dict:
    control = {"id": "CON-LEDGER", "title": "consent ledger readable, its counts", "object": "consent ledger",
               "passed": False}
    rc, out, err = module.run_command(ledger["command"])
    try:
        counts = json.loads(out) if rc == 0 else None
    except ValueError:
        counts = None
    if not isinstance(counts, dict) or "people_by_opt_in" not in counts:
        control["detail"] = f"no counts from {' '.join(ledger['command'])}: {(err or out).strip()[-300:]}"
        return control
    people, permissions = counts["people_by_opt_in"], counts.get("call_permissions", {})
    control.update(passed=True, object=f"consent ledger ({counts.get('purpose', '?')})", counts=counts,
                   detail=(f"{sum(counts.get('ledger_rows', {}).values())} rows; people: "
                           f"{people.get('confirmed', 0)} confirmed, {people.get('requested', 0)} pending, "
                           f"{people.get('revoked', 0)} revoked; call permissions: {permissions.get('valid', 0)} "
                           f"valid, {permissions.get('expired', 0)} expired, {permissions.get('rejected', 0)} rejected"))
    return control


def main() -> None:
    limit = {"path": {"type": "path", "required": True}, "limit_days": {"type": "int", "required": True}}
    module = AnsibleModule(
        argument_spec={
            "call_records": {"type": "dict", "options": limit},
            "cdr_write_failures": {"type": "dict", "options": {
                "identifier": {"type": "str", "required": True}, "pattern": {"type": "str", "required": True}}},
            "log_files": {"type": "dict", "options": limit},
            "journal_limit_days": {"type": "int"},
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
            "backup": {"type": "dict", "options": {
                "command": {"type": "list", "elements": "str", "required": True},
                "prefix": {"type": "str", "required": True},
                "expiration_days": {"type": "int", "required": True},
                "max_age_hours": {"type": "int", "default": 26}}},
            "ledger": {"type": "dict", "options": {
                "command": {"type": "list", "elements": "str", "required": True}}},
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
    if p["cdr_write_failures"]:
        controls.append(cdr_write_control(module, p["cdr_write_failures"]))
    if p["log_files"]:
        oldest, count = files_oldest(Path(p["log_files"]["path"]))
        controls.append(_age_control("RET-LOGFILES", "log files within their retention", p["log_files"]["path"],
                                     oldest=oldest, limit_days=p["log_files"]["limit_days"],
                                     grace_days=p["grace_days"], now=now, detail=f"{count} files"))
    if p["journal_limit_days"] is not None:
        controls.append(journal_control(module, p["journal_limit_days"], p["grace_days"], now))
    controls += [evidence_control(Path(path), p["evidence_max_age_days"], now) for path in p["evidence_files"]]
    controls += [certificate_control(module, c["path"], c["min_days"], now) for c in p["certificates"]]
    controls += [tls_control(module, e, p["tls_protocols"], p["tls_ciphers"]) for e in p["tls_endpoints"]]
    if p["backup"]:
        controls += backup_controls(module, p["backup"])
    if p["ledger"]:
        controls.append(ledger_control(module, p["ledger"]))
    module.exit_json(changed=False, passed=all(c["passed"] for c in controls), controls=controls)


if __name__ == "__main__":
    main()
