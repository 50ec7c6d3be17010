"""plugins/modules/wagw_host_audit: each control judges live evidence against its limit
(one day of grace for a daily run) and changes nothing."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

from conftest import run_module

NOW = dt.datetime.now(dt.UTC)


def stamp(days_ago: float) -> str:
    return (NOW - dt.timedelta(days=days_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")


def cdr(path: Path, *ages: float) -> Path:
    path.write_text("".join(f'"u{i}","{stamp(age)}","","{stamp(age)}","wa-1","+4930555000100","phone:a",0,0,'
                            f'"NO ANSWER",0,0,0,0,"inbound",""\n' for i, age in enumerate(ages)))
    return path


def controls(result: dict) -> dict[str, dict]:
    assert result.get("changed") is False, result
    return {c["id"]: c for c in result["controls"]}


def test_call_records_within_the_limit_and_its_grace_day(tmp_path: Path) -> None:
    path = cdr(tmp_path / "wagw.csv", 90.5, 3)
    within = controls(run_module("wagw_host_audit", {"call_records": {"path": str(path), "limit_days": 90}}))
    assert within["RET-CDR"]["passed"]
    assert within["RET-CDR"]["detail"] == "2 rows"
    path = cdr(tmp_path / "wagw.csv", 92, 3)
    result = run_module("wagw_host_audit", {"call_records": {"path": str(path), "limit_days": 90}}, "--check")
    beyond = controls(result)["RET-CDR"]
    assert not beyond["passed"]
    assert not result["passed"]
    assert 91.9 < beyond["oldest_age_days"] < 92.1
    assert "+4930555000100" not in json.dumps(result)


def test_an_old_log_file_fails_and_a_missing_directory_has_nothing_to_keep(tmp_path: Path) -> None:
    old = tmp_path / "messages.log.1"
    old.write_text("x")
    ten_days = (NOW - dt.timedelta(days=10)).timestamp()
    os.utime(old, (ten_days, ten_days))
    found = controls(run_module("wagw_host_audit", {"log_files": {"path": str(tmp_path), "limit_days": 7}}))
    assert not found["RET-LOGFILES"]["passed"]
    empty = controls(run_module("wagw_host_audit",
                                {"log_files": {"path": str(tmp_path / "none"), "limit_days": 7}}))
    assert empty["RET-LOGFILES"]["passed"]


def test_evidence_must_show_a_recent_run(tmp_path: Path) -> None:
    fresh, stale, missing = tmp_path / "fresh.jsonl", tmp_path / "stale.jsonl", tmp_path / "missing.jsonl"
    fresh.write_text(json.dumps({"time": stamp(3), "classes": {}}) + "\n"
                     + json.dumps({"time": stamp(0.5), "classes": {"logs": {"deleted": 2}}}) + "\n")
    stale.write_text(json.dumps({"time": stamp(3), "classes": {}}) + "\n")
    result = run_module("wagw_host_audit", {"evidence_files": [str(fresh), str(stale), str(missing)]})
    by_file = {c["object"]: c for c in result["controls"]}
    assert by_file[str(fresh)]["passed"]
    assert by_file[str(fresh)]["runs"] == 2
    assert by_file[str(fresh)]["classes"] == {"logs": {"deleted": 2}}
    assert not by_file[str(stale)]["passed"]
    assert not by_file[str(missing)]["passed"]
    assert by_file[str(missing)]["detail"].startswith("not readable")


def certificate(path: Path, days: int) -> Path:
    subprocess.run([shutil.which("openssl") or "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", str(path.with_suffix(".key")), "-out", str(path), "-days", str(days),
                    "-subj", "/CN=sip.beispiel.example"], check=True, capture_output=True)
    return path


def test_a_certificate_must_be_valid_for_its_minimum_days(tmp_path: Path) -> None:
    good, soon = certificate(tmp_path / "good.pem", 60), certificate(tmp_path / "soon.pem", 5)
    broken = tmp_path / "broken.pem"
    broken.write_text("-----BEGIN CERTIFICATE-----\nnot one\n-----END CERTIFICATE-----\n")
    result = run_module("wagw_host_audit", {"certificates": [
        {"path": str(good)}, {"path": str(soon)}, {"path": str(soon), "min_days": 4}, {"path": str(broken)}]})
    assert result.get("changed") is False, result
    good_c, soon_c, soon_ok, broken_c = result["controls"]
    assert {c["id"] for c in result["controls"]} == {"TLS-CERT"}
    assert good_c["passed"]
    assert 59.9 < good_c["days_left"] <= 60
    assert good_c["detail"] == "subject=CN=sip.beispiel.example"
    assert not soon_c["passed"]
    assert soon_c["min_days"] == 14
    assert soon_ok["passed"]
    assert not broken_c["passed"]
    assert broken_c["detail"].startswith("not a readable certificate")
    assert not result["passed"]


def tls_server(tmp_path: Path, port: int, *options: str) -> subprocess.Popen[bytes]:
    cert = certificate(tmp_path / f"server-{port}.pem", 30)
    server = subprocess.Popen([shutil.which("openssl") or "openssl", "s_server", "-accept", f"127.0.0.1:{port}",
                               "-cert", str(cert), "-key", str(cert.with_suffix(".key")), "-quiet", *options],
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(50):
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return server
        time.sleep(0.1)
    server.kill()
    raise AssertionError("openssl s_server did not start")


def test_a_tls_endpoint_must_offer_only_the_allowed_protocols_and_ciphers(tmp_path: Path) -> None:
    policy = ["ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-ECDSA-CHACHA20-POLY1305"]
    strict = tls_server(tmp_path, 47061, "-no_tls1", "-no_tls1_1", "-cipher", ":".join(policy))
    # the kind of server an old default leaves: TLS 1.0 and 1.1, CBC ciphers
    loose = tls_server(tmp_path, 47443, "-cipher", "ALL:@SECLEVEL=0")
    try:
        result = run_module("wagw_host_audit", {
            "tls_endpoints": [{"name": "strict", "port": 47061}, {"name": "loose", "port": 47443}],
            "tls_protocols": ["TLSv1.2", "TLSv1.3"], "tls_ciphers": policy})
    finally:
        strict.kill()
        loose.kill()
    good, bad = result["controls"]
    assert good["passed"], good
    assert good["detail"] == "offers TLSv1.2, TLSv1.3"
    assert good["accepted"]["TLSv1.2"] in policy
    assert not bad["passed"]
    assert bad["detail"].startswith("TLSv1 accepted; TLSv1.1 accepted; TLS 1.2 cipher "), bad
    assert bad["detail"].endswith(" outside the allowed list")


def backup_status(tmp_path: Path, status: dict | None, rc: int = 0) -> list[str]:
    """A command that prints what `wagw-bridge backup-status` prints (bridge/tests/test_backup.py
    reads a real bucket with it), or fails like it does without the bucket."""
    script = tmp_path / "status.py"
    script.write_text(f"import sys; print({json.dumps(json.dumps(status))}); sys.exit({rc})")
    return [sys.executable, str(script)]


def test_backups_must_be_recent_and_expire_at_their_retention(tmp_path: Path) -> None:
    good = {"bucket": "b", "prefix": "bridge/", "count": 3, "versioning": "Enabled", "default_encryption": "AES256",
            "latest": {"key": "bridge/bridge-20261201T031500Z.sqlite3.age", "age_hours": 5.2},
            "lifecycle": [{"id": "wagw-backup-retention", "status": "Enabled", "prefix": "bridge/",
                           "expiration_days": 30, "noncurrent_days": 1}]}

    def judge(status: dict | None, rc: int = 0, **declared: object) -> dict[str, dict]:
        backup = {"command": backup_status(tmp_path, status, rc), "prefix": "bridge/", "expiration_days": 30,
                  **declared}
        return controls(run_module("wagw_host_audit", {"backup": backup}, "--check"))

    found = judge(good)
    assert found["BAK-LAST"]["passed"], found
    assert found["BAK-BUCKET"]["passed"], found
    assert found["BAK-BUCKET"]["object"] == "s3://b/bridge/"
    assert not judge(good, max_age_hours=4)["BAK-LAST"]["passed"]
    assert judge({**good, "latest": None, "count": 0})["BAK-LAST"]["detail"] == "no backup in the bucket"
    # a rule for another retention, an unversioned bucket, no expiry of old versions, a disabled rule
    rule = good["lifecycle"][0]
    for worse in ({"lifecycle": [{**rule, "expiration_days": 365}]}, {"versioning": "Suspended"},
                  {"lifecycle": [{**rule, "noncurrent_days": None}]}, {"lifecycle": [{**rule, "status": "Disabled"}]},
                  {"lifecycle": [{**rule, "prefix": "other/"}]}, {"default_encryption": None}):
        bucket = judge({**good, **worse})["BAK-BUCKET"]
        assert not bucket["passed"], worse
    assert "(declared 30)" in judge({**good, "lifecycle": []})["BAK-BUCKET"]["detail"]
    broken = judge(None, rc=1)
    assert not broken["BAK-LAST"]["passed"]
    assert not broken["BAK-BUCKET"]["passed"]
    assert broken["BAK-LAST"]["detail"].startswith("no status from ")


def test_the_ledger_control_shows_counts_and_fails_without_them(tmp_path: Path) -> None:
    counts = {"purpose": "whatsapp_calls", "ledger_rows": {"requested": 3, "confirmed": 2, "revoked": 1},
              "people_by_opt_in": {"requested": 1, "confirmed": 1, "revoked": 1},
              "call_permissions": {"valid": 1, "expired": 1, "rejected": 1}}
    found = controls(run_module("wagw_host_audit", {"ledger": {"command": backup_status(tmp_path, counts)}},
                                "--check"))["CON-LEDGER"]
    assert found["passed"], found
    assert found["counts"] == counts
    assert found["detail"] == ("6 rows; people: 1 confirmed, 1 pending, 1 revoked; "
                               "call permissions: 1 valid, 1 expired, 1 rejected")
    broken = controls(run_module("wagw_host_audit", {"ledger": {"command": backup_status(tmp_path, None, 1)}},
                                 "--check"))["CON-LEDGER"]
    assert not broken["passed"]
    assert broken["detail"].startswith("no counts from ")


def test_a_failed_cdr_write_in_the_journal_fails_the_control(tmp_path: Path) -> None:
    # journalctl as on a media node: this machine keeps no journal, so a stand-in prints the
    # entries journalctl --output=json would (the message of Asterisk's FILE(), as logged
    # through syslog) and records how the module asked for them.
    def journal(*messages: str) -> dict[str, str]:
        bindir = tmp_path / "bin"
        bindir.mkdir(exist_ok=True)
        lines = [json.dumps({"__REALTIME_TIMESTAMP": str(1796160000_000000 + i * 1_000_000), "MESSAGE": m})
                 for i, m in enumerate(messages)]
        (tmp_path / "entries.jsonl").write_text("".join(f"{line}\n" for line in lines))
        stand_in = bindir / "journalctl"
        stand_in.write_text(f'#!/bin/sh\necho "$@" > {tmp_path}/argv\ncat {tmp_path}/entries.jsonl\n')
        stand_in.chmod(0o755)
        return {"PATH": f"{bindir}:{os.environ['PATH']}"}

    cdr_file = "/var/log/asterisk/cdr-custom/wagw.csv"
    declared = {"cdr_write_failures": {"identifier": "asterisk", "pattern": f"Unable to open '{cdr_file}' for appending"}}
    lost = f"Unable to open '{cdr_file}' for appending: Too many open files"
    env = journal("ERROR[4711][C-00000001]: func_env.c:1180 in file_write: " + lost,
                  "ERROR[4712]: res_rtp_asterisk.c:8000 in rtp_allocate: Unable to allocate RTP socket",
                  "ERROR[4714][C-00000003]: func_env.c:1180 in file_write: Unable to open '/tmp/other' for appending: x",
                  "ERROR[4713][C-00000002]: func_env.c:1180 in file_write: " + lost)
    found = controls(run_module("wagw_host_audit", declared, "--check", env=env))["CDR-WRITE"]
    assert not found["passed"], found
    assert found["failures"] == 2
    assert found["detail"] == f"2 failed CDR writes; the last: {lost}"
    assert found["last"] == "2026-12-01T21:20:03Z"
    # only Asterisk's errors are read
    assert (tmp_path / "argv").read_text().split()[:7] == ["--quiet", "--no-pager", "--identifier", "asterisk",
                                                          "--priority", "err", "--output"]
    clean = controls(run_module("wagw_host_audit", declared, "--check", env=journal("ERROR[1]: other: no CDR")))
    assert clean["CDR-WRITE"]["passed"]
    assert clean["CDR-WRITE"]["detail"] == "no failed CDR write in the journal"
