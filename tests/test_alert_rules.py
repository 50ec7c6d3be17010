"""The alert rules of monitoring/prometheus against promtool (Debian's, scripts/promtool.sh):
valid rules, and their unit tests (wagw.rules.test.yml) pass, and a wrong expectation fails."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
RULES = ROOT / "monitoring/prometheus"


def promtool(*args: str, cwd: Path = RULES) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(ROOT / "scripts/promtool.sh"), *args], cwd=cwd, capture_output=True, text=True,
                          check=False, timeout=300)


def test_the_rules_are_valid() -> None:
    result = promtool("check", "rules", "wagw.rules.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    alerts = [rule["alert"] for group in yaml.safe_load((RULES / "wagw.rules.yml").read_text())["groups"]
              for rule in group["rules"]]
    assert f"SUCCESS: {len(alerts)} rules found" in result.stdout, result.stdout


def test_each_alert_fires_when_it_should_and_not_before() -> None:
    result = promtool("test", "rules", "wagw.rules.test.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout
    # every alert of the rules file has a unit test
    tested = {case["alertname"] for test in yaml.safe_load((RULES / "wagw.rules.test.yml").read_text())["tests"]
              for case in test["alert_rule_test"]}
    alerts = {rule["alert"] for group in yaml.safe_load((RULES / "wagw.rules.yml").read_text())["groups"]
              for rule in group["rules"]}
    assert alerts == tested, alerts ^ tested


def test_a_wrong_expectation_fails(tmp_path: Path) -> None:
    # the media node alert expected one minute early, while it is still pending
    tests = yaml.safe_load((RULES / "wagw.rules.test.yml").read_text())
    case = next(c for t in tests["tests"] for c in t["alert_rule_test"]
                if c["alertname"] == "WagwMediaNodeInactive" and c["exp_alerts"])
    case["eval_time"] = "2m"
    tests["rule_files"] = [str(RULES / "wagw.rules.yml")]
    (tmp_path / "wrong.test.yml").write_text(yaml.safe_dump(tests))
    result = promtool("test", "rules", "wrong.test.yml", cwd=tmp_path)
    assert result.returncode != 0, result.stdout
    assert "WagwMediaNodeInactive" in result.stdout + result.stderr
