"""plugins/modules/wagw_files.py, run by ansible itself on the controller (real files in a
temporary directory): change detection, idempotence, check mode, diff, secrets, validation."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

from conftest import run_module as run


def run_module(args: dict[str, Any], *flags: str) -> dict[str, Any]:
    return run("wagw_files", args, *flags)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def spec(tmp_path: Path) -> dict[str, Any]:
    return {
        "directories": [{"path": str(tmp_path / "etc"), "mode": "0750"}],
        "files": [
            {"path": str(tmp_path / "etc" / "a.conf"), "content": "a = 1\n", "mode": "0640"},
            {"path": str(tmp_path / "etc" / "b.conf"), "content": "b = 2\n", "mode": "0600"},
        ],
    }


def test_writes_everything_once_then_changes_nothing(tmp_path: Path) -> None:
    first = run_module(spec(tmp_path))
    assert first["changed"] is True
    assert first["changed_paths"] == [str(tmp_path / p) for p in ("etc", "etc/a.conf", "etc/b.conf")]
    assert (tmp_path / "etc" / "a.conf").read_text() == "a = 1\n"
    assert mode(tmp_path / "etc") == 0o750
    assert mode(tmp_path / "etc" / "b.conf") == 0o600
    second = run_module(spec(tmp_path))
    assert second["changed"] is False, second
    assert second["changed_paths"] == []


def test_reports_only_the_file_that_differs(tmp_path: Path) -> None:
    run_module(spec(tmp_path))
    (tmp_path / "etc" / "b.conf").write_text("edited by hand\n")
    (tmp_path / "etc" / "a.conf").chmod(0o644)
    result = run_module(spec(tmp_path))
    assert result["changed_paths"] == [str(tmp_path / "etc" / "a.conf"), str(tmp_path / "etc" / "b.conf")]
    assert (tmp_path / "etc" / "b.conf").read_text() == "b = 2\n"
    assert mode(tmp_path / "etc" / "a.conf") == 0o640


def test_check_mode_tells_the_truth_and_writes_nothing(tmp_path: Path) -> None:
    run_module(spec(tmp_path))
    changed = spec(tmp_path)
    changed["files"][0]["content"] = "a = 42\n"
    result = run_module(changed, "--check", "--diff")
    assert result["changed_paths"] == [str(tmp_path / "etc" / "a.conf")]
    assert result["diff"][0]["before"] == "a = 1\n"
    assert result["diff"][0]["after"] == "a = 42\n"
    assert (tmp_path / "etc" / "a.conf").read_text() == "a = 1\n"
    fresh = run_module(spec(tmp_path / "fresh"), "--check")
    assert fresh["changed"] is True
    assert not (tmp_path / "fresh").exists()


def test_a_secret_never_reaches_the_diff_and_force_false_keeps_it(tmp_path: Path) -> None:
    secret = {"files": [{"path": str(tmp_path / "salt"), "secret": "salt", "mode": "0640", "force": False}],
              "secrets": {"salt": "s3cr3t-salt\nline two\n"}}
    created = run_module(secret, "--diff", "-vvv")
    assert created["changed"] is True
    assert "s3cr3t" not in json.dumps(created)  # neither in the diff nor in the invocation
    assert created["invocation"]["module_args"]["secrets"] == {"salt": "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER"}
    assert mode(tmp_path / "salt") == 0o640
    secret["secrets"]["salt"] = "another-salt\n"
    secret["files"][0]["mode"] = "0600"
    kept = run_module(secret, "--diff")
    assert (tmp_path / "salt").read_text() == "s3cr3t-salt\nline two\n"
    assert kept["changed_paths"] == [str(tmp_path / "salt")]  # the mode only
    assert mode(tmp_path / "salt") == 0o600
    assert "another" not in json.dumps(kept)


def test_failed_validation_keeps_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "checked.conf"
    target.write_text("good\n")
    bad = {"files": [{"path": str(target), "content": "bad\n", "validate": "grep -q good %s"}]}
    result = run_module(bad)
    assert result.get("failed") is True
    assert "validation of the new" in result["msg"]
    assert target.read_text() == "good\n"
    assert [p.name for p in tmp_path.iterdir()] == ["checked.conf"]  # no temporary file left
    good = {"files": [{"path": str(target), "content": "good again\n", "validate": "grep -q good %s"}]}
    assert run_module(good)["changed"] is True
    assert target.read_text() == "good again\n"


def test_labels_name_only_what_changed_and_absent_removes(tmp_path: Path) -> None:
    (tmp_path / "old-site").symlink_to(tmp_path / "nowhere")
    args = {
        "defaults": {"mode": "0644", "label": "restart"},
        "files": [
            {"path": str(tmp_path / "main.conf"), "content": "main\n"},
            {"path": str(tmp_path / "list.txt"), "content": "a\n", "label": "reload-list"},
        ],
        "absent": [str(tmp_path / "old-site")],
    }
    first = run_module(args)
    assert first["changed_labels"] == ["restart", "reload-list"]
    assert not (tmp_path / "old-site").is_symlink()
    args["files"][1]["content"] = "a\nb\n"
    second = run_module(args, "--check", "--diff")
    assert second["changed_labels"] == ["reload-list"]
    assert second["changed_paths"] == [str(tmp_path / "list.txt")]
    assert (tmp_path / "list.txt").read_text() == "a\n"  # check mode
    third = run_module(args)
    assert third["changed_labels"] == ["reload-list"]
    assert run_module(args)["changed_labels"] == []


def test_a_rewritten_file_keeps_its_owner_and_mode_when_the_spec_sets_none(tmp_path: Path) -> None:
    target = tmp_path / "kept.conf"
    target.write_text("old\n")
    target.chmod(0o644)
    # the ids of an unprivileged account (nobody), to see the owner kept
    os.chown(target, 65534, 65534)
    result = run_module({"files": [{"path": str(target), "content": "new\n"}]})
    assert result["changed"] is True
    assert target.read_text() == "new\n"
    assert mode(target) == 0o644
    assert (target.stat().st_uid, target.stat().st_gid) == (65534, 65534)
    # a mode of its own is applied, the owner still kept
    result = run_module({"files": [{"path": str(target), "content": "newer\n", "mode": "0640"}]})
    assert mode(target) == 0o640
    assert target.stat().st_uid == 65534


def test_a_new_file_without_a_mode_is_private(tmp_path: Path) -> None:
    target = tmp_path / "new.conf"
    run_module({"files": [{"path": str(target), "content": "x\n"}]})
    assert mode(target) == 0o600
