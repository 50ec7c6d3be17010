"""plugins/modules/wagw_retention_audit: each control judges live evidence against its limit
(one day of grace for a daily run) and changes nothing."""

from __future__ import annotations

import datetime as dt
import json
import os
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
    within = controls(run_module("wagw_retention_audit", {"call_records": {"path": str(path), "limit_days": 90}}))
    assert within["RET-CDR"]["passed"]
    assert within["RET-CDR"]["detail"] == "2 rows"
    path = cdr(tmp_path / "wagw.csv", 92, 3)
    result = run_module("wagw_retention_audit", {"call_records": {"path": str(path), "limit_days": 90}}, "--check")
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
    found = controls(run_module("wagw_retention_audit", {"log_files": {"path": str(tmp_path), "limit_days": 7}}))
    assert not found["RET-LOGFILES"]["passed"]
    empty = controls(run_module("wagw_retention_audit",
                                {"log_files": {"path": str(tmp_path / "none"), "limit_days": 7}}))
    assert empty["RET-LOGFILES"]["passed"]


def test_evidence_must_show_a_recent_run(tmp_path: Path) -> None:
    fresh, stale, missing = tmp_path / "fresh.jsonl", tmp_path / "stale.jsonl", tmp_path / "missing.jsonl"
    fresh.write_text(json.dumps({"time": stamp(3), "classes": {}}) + "\n"
                     + json.dumps({"time": stamp(0.5), "classes": {"logs": {"deleted": 2}}}) + "\n")
    stale.write_text(json.dumps({"time": stamp(3), "classes": {}}) + "\n")
    result = run_module("wagw_retention_audit", {"evidence_files": [str(fresh), str(stale), str(missing)]})
    by_file = {c["object"]: c for c in result["controls"]}
    assert by_file[str(fresh)]["passed"]
    assert by_file[str(fresh)]["runs"] == 2
    assert by_file[str(fresh)]["classes"] == {"logs": {"deleted": 2}}
    assert not by_file[str(stale)]["passed"]
    assert not by_file[str(missing)]["passed"]
    assert by_file[str(missing)]["detail"].startswith("not readable")
