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
    C(TLS-CERT) each certificate readable and valid for at least its I(min_days) more days."
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
extends_documentation_fragment:
  - wagw_module
author:
  - wa-voip-gateway
"""

EXAMPLES = r"""
- name: Read the evidence of a media node
  wagw_host_audit:
    call_records: {path: /var/log/asterisk/cdr-custom/wagw.csv, limit_days: 90}
    log_files: {path: /var/log/asterisk, limit_days: 7}
    journal_limit_days: 7
    timers: [wagw-asterisk-retention.timer]
    evidence_files: [/var/lib/wagw/evidence/asterisk-retention.jsonl]
  register: host_audit

- name: Read the evidence of an edge's certificate
  wagw_host_audit:
    certificates:
      - {path: /etc/wagw/tls/sip.example.org/cert.pem, min_days: 14}
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
    module.exit_json(changed=False, passed=all(c["passed"] for c in controls), controls=controls)


if __name__ == "__main__":
    main()
