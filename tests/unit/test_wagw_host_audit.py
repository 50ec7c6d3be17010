"""plugins/modules/wagw_host_audit: each control judges live evidence against its limit
(one day of grace for a daily run) and changes nothing."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
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
