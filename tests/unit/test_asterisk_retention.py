"""roles/asterisk/files/wagw-asterisk-retention: call records and log files past their limit
are deleted, nothing else is touched, no row Asterisk writes meanwhile is lost, and each run
appends its evidence."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from importlib.machinery import SourceFileLoader
from importlib.util import module_from_spec, spec_from_loader
from pathlib import Path
from types import ModuleType

import pytest

from conftest import ROOT

SCRIPT = ROOT / "roles" / "asterisk" / "files" / "wagw-asterisk-retention"
NOW = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)


@pytest.fixture
def retention() -> ModuleType:
    # a script without the .py suffix: loaded by an explicit loader
    loader = SourceFileLoader("wagw_asterisk_retention", str(SCRIPT))
    module = module_from_spec(spec_from_loader(loader.name, loader))
    loader.exec_module(module)
    return module


def row(uniqueid: str, days_ago: float) -> bytes:
    start = (NOW - dt.timedelta(days=days_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return (f'"{uniqueid}","{start}","","{start}","wa-1a2b","+4930555000100","phone:empfang",3,0,'
            f'"NO ANSWER",0,0,0,0,"inbound",""\n').encode()


def test_rows_past_the_limit_go_and_the_rest_stays_byte_for_byte(retention: ModuleType, tmp_path: Path) -> None:
    cdr = tmp_path / "wagw.csv"
    cdr.write_bytes(row("a", 120) + row("b", 91) + b"not,a,row\n" + row("c", 89) + row("d", 0.1))
    cdr.chmod(0o640)
    result = retention.purge_call_records(cdr, 90, NOW)
    assert cdr.read_bytes() == b"not,a,row\n" + row("c", 89) + row("d", 0.1)
    assert oct(cdr.stat().st_mode & 0o777) == "0o640"
    assert result["deleted"] == 2
    assert result["remaining"] == 3
    assert result["unreadable"] == 1
    assert result["oldest_remaining"] == (NOW - dt.timedelta(days=89)).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_nothing_to_delete_leaves_the_file_alone(retention: ModuleType, tmp_path: Path) -> None:
    cdr = tmp_path / "wagw.csv"
    cdr.write_bytes(row("c", 10))
    inode = cdr.stat().st_ino
    assert retention.purge_call_records(cdr, 90, NOW)["deleted"] == 0
    assert cdr.stat().st_ino == inode


def test_a_row_written_to_the_old_file_during_the_purge_is_kept(retention: ModuleType, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    cdr = tmp_path / "wagw.csv"
    cdr.write_bytes(row("old", 200) + row("kept", 1))
    # Asterisk opened the file (by path) before it was replaced and writes its row now.
    asterisk = cdr.open("ab")

    def late_write(_seconds: float) -> None:
        asterisk.write(row("late", 0))
        asterisk.close()

    monkeypatch.setattr(retention.time, "sleep", late_write)
    result = retention.purge_call_records(cdr, 90, NOW)
    assert cdr.read_bytes() == row("kept", 1) + row("late", 0)
    assert result["remaining"] == 2


def test_old_log_files_go_directories_and_recent_files_stay(retention: ModuleType, tmp_path: Path) -> None:
    (tmp_path / "cdr-custom").mkdir()
    old, recent = tmp_path / "messages.log.1", tmp_path / "full"
    old.write_text("old")
    recent.write_text("recent")
    eight_days = (NOW - dt.timedelta(days=8)).timestamp()
    os.utime(old, (eight_days, eight_days))
    result = retention.purge_log_files(tmp_path, 7, NOW)
    assert not old.exists()
    assert recent.exists()
    assert (tmp_path / "cdr-custom").is_dir()
    assert (result["deleted"], result["remaining"]) == (1, 1)


def test_a_run_appends_its_evidence_without_numbers(tmp_path: Path) -> None:
    cdr, evidence, logs = tmp_path / "wagw.csv", tmp_path / "evidence.jsonl", tmp_path / "logs"
    logs.mkdir()
    old = (dt.datetime.now(dt.UTC) - dt.timedelta(days=100)).strftime("%Y-%m-%dT%H:%M:%SZ")
    cdr.write_text(f'"x","{old}","","{old}","wa-1","+4930555000100","phone:a",0,0,"NO ANSWER",0,0,0,0,"inbound",""\n')
    for _ in range(2):
        proc = subprocess.run([sys.executable, str(SCRIPT), "--cdr-file", str(cdr), "--cdr-days", "90",
                               "--log-dir", str(logs), "--log-days", "7", "--evidence", str(evidence)],
                              capture_output=True, text=True, check=True)
        assert "+4930555000100" not in proc.stdout
    lines = [json.loads(line) for line in evidence.read_text().splitlines()]
    assert [line["classes"]["call_records"]["deleted"] for line in lines] == [1, 0]
    assert lines[0]["classes"]["call_records"]["limit_days"] == 90
    assert lines[0]["classes"]["logs"]["limit_days"] == 7
