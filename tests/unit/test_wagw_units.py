"""plugins/modules/wagw_units.py, run by ansible on the controller against a stand-in
``systemctl`` (a shell script first on PATH that keeps each unit's enabled/active state in
files and logs every call): what it enables and starts, what it reports, check mode."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from conftest import run_module

# The subset of systemctl the module uses, with systemctl's own answers and exit codes.
FAKE_SYSTEMCTL = """#!/bin/sh
state="$FAKE_SYSTEMD_STATE"
echo "$*" >> "$state/calls"
case "$1" in
  daemon-reload) exit 0 ;;
  is-enabled) cat "$state/$2.enabled" 2>/dev/null || { echo disabled; exit 1; } ;;
  is-active) if [ -f "$state/$2.active" ]; then echo active; else echo inactive; exit 3; fi ;;
  enable) echo enabled > "$state/$2.enabled" ;;
  disable) echo disabled > "$state/$2.enabled" ;;
  start) touch "$state/$2.active" ;;
  stop) rm -f "$state/$2.active" ;;
  *) echo "unexpected: $*" >&2; exit 2 ;;
esac
"""


def systemd(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    bin_dir, state = tmp_path / "bin", tmp_path / "state"
    bin_dir.mkdir()
    state.mkdir()
    fake = bin_dir / "systemctl"
    fake.write_text(FAKE_SYSTEMCTL)
    fake.chmod(0o755)
    return state, {"PATH": f"{bin_dir}:{os.environ['PATH']}", "FAKE_SYSTEMD_STATE": str(state)}


def calls(state: Path) -> list[str]:
    path = state / "calls"
    lines = path.read_text().splitlines() if path.exists() else []
    path.unlink(missing_ok=True)
    return [line for line in lines if not line.startswith("is-")]


UNITS: dict[str, Any] = {"units": [{"name": "new.service"}, {"name": "running.service"},
                                  {"name": "helper.timer", "started": False}]}


def test_starts_and_enables_only_what_is_not_and_reports_what_it_started(tmp_path: Path) -> None:
    state, env = systemd(tmp_path)
    (state / "running.service.enabled").write_text("enabled\n")
    (state / "running.service.active").touch()
    first = run_module("wagw_units", UNITS, env=env)
    assert first["changed"] is True, first
    assert first["changed_units"] == ["new.service", "helper.timer"]
    assert first["started_units"] == ["new.service"]  # the timer is enabled, not started
    assert calls(state) == ["enable new.service", "start new.service", "enable helper.timer"]
    second = run_module("wagw_units", UNITS, env=env)
    assert second["changed"] is False, second
    assert second["changed_units"] == []
    assert second["started_units"] == []
    assert calls(state) == []


def test_check_mode_reports_the_start_and_does_nothing(tmp_path: Path) -> None:
    state, env = systemd(tmp_path)
    result = run_module("wagw_units", {**UNITS, "daemon_reload": True}, "--check", "--diff", env=env)
    assert result["started_units"] == ["new.service", "running.service"]
    assert "new.service: disabled, inactive" in result["diff"]["before"]
    assert "new.service: enabled, active" in result["diff"]["after"]
    assert calls(state) == []  # not even the daemon-reload
    assert not (state / "new.service.active").exists()


def test_stops_and_disables_a_unit_switched_off_and_leaves_a_missing_one_alone(tmp_path: Path) -> None:
    state, env = systemd(tmp_path)
    (state / "backup.timer.enabled").write_text("enabled\n")
    (state / "backup.timer.active").touch()
    off = {"units": [{"name": "backup.timer", "enabled": False, "stopped": True},
                     {"name": "gone.timer", "enabled": False, "stopped": True}]}
    checked = run_module("wagw_units", off, "--check", "--diff", env=env)
    assert checked["changed_units"] == ["backup.timer"], checked
    assert checked["diff"]["after"].startswith("backup.timer: disabled, inactive\n"), checked
    assert calls(state) == []
    first = run_module("wagw_units", off, env=env)
    assert first["changed_units"] == ["backup.timer"], first
    assert calls(state) == ["disable backup.timer", "stop backup.timer"]
    assert run_module("wagw_units", off, env=env)["changed"] is False
    both = run_module("wagw_units", {"units": [{"name": "x.timer", "stopped": True, "started": True}]}, env=env)
    assert both["failed"], both
    assert both["msg"] == "x.timer: stopped and started exclude each other"
