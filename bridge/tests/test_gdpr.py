"""Export (Art. 15), erase (Art. 17), retention purge per data class, and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import (
    APP_SECRET,
    INTERNAL_TOKEN,
    PSEUDONYM_KEY,
    USER,
    VERIFY_TOKEN,
    Bridge,
    call_event,
    call_permission_reply,
    text_message,
)
from wagw_bridge.cli import main
from wagw_bridge.db import SCHEMA_VERSION

DAY = 86400
OTHER = "491709999999"


def _consented(bridge: Bridge, frm: str = USER) -> int:
    now = int(bridge.clock())
    bridge.post(text_message("START", frm=frm, ts=now))
    bridge.post(text_message("JA", frm=frm, ts=now + 1))
    bridge.post(call_permission_reply("accept", frm=frm, ts=now + 2, expires=now + DAY))
    return now


def _domain_run(bridge: Bridge, fn):
    rt = bridge.rt
    conn = rt.db.connect()
    try:
        return rt.db.run(conn, fn)
    finally:
        conn.close()


def test_export_subject(bridge: Bridge) -> None:
    _consented(bridge)
    _consented(bridge, OTHER)
    bridge.post(call_event("wacid.X1", "connect"))
    data = _domain_run(
        bridge, lambda tx: bridge.rt.domain.export(tx, "+" + USER, int(bridge.clock()))
    )
    assert data["subject"] == "+" + USER
    assert [e["action"] for e in data["consent_ledger"]] == ["requested", "confirmed"]
    assert len(data["call_permissions"]) == 1
    assert {e["kind"] for e in data["events"]} == {"message", "call_permission", "call"}
    assert len(data["events"]) == 4
    assert len(data["raw_payloads"]) == 4
    assert data["outbox"][0]["kind"] == "optin_request"
    assert data["consent"]["allow"] is True
    assert OTHER not in json.dumps(data)


def test_erase_subject(bridge: Bridge) -> None:
    _consented(bridge)
    _consented(bridge, OTHER)
    h = bridge.rt.pseudo.subject_hash("+" + USER)
    counts = _domain_run(
        bridge, lambda tx: bridge.rt.domain.erase(tx, "+" + USER, int(bridge.clock()))
    )
    assert counts["events_deleted"] == 3
    assert counts["raw_payloads_deleted"] == 3
    assert counts["outbox_deleted"] == 1
    assert counts["consent_revoked"] == 1
    assert counts["consent_records_pseudonymised"] == 2
    assert counts["call_permissions_pseudonymised"] == 1
    assert bridge.count("event", "subject_hash = ?", (h,)) == 0
    # consent proof is kept, pseudonymised: no clear number left anywhere for this subject
    assert bridge.count("consent_ledger", "subject_hash = ?", (h,)) == 3
    assert bridge.count("consent_ledger", "subject = ?", ("+" + USER,)) == 0
    assert bridge.count("call_permission", "subject = ?", ("+" + USER,)) == 0
    raw = bridge.rt.reader.run(lambda tx: tx.all("SELECT body FROM raw_payload"))
    assert all(USER not in r[0] for r in raw)
    # the subject is no longer callable; the other subject is untouched
    assert bridge.consent().json()["reason"] == "opt-in-revoked"
    assert bridge.consent(subject="+" + OTHER).json()["allow"] is True
    assert (
        bridge.count("event", "subject_hash = ?", (bridge.rt.pseudo.subject_hash("+" + OTHER),))
        == 3
    )


def test_purge_by_class(bridge: Bridge) -> None:
    start = int(bridge.clock())
    # 100 days ago: a revoked consent chain, a call, and messages
    bridge.clock.t = start - 100 * DAY
    t0 = int(bridge.clock())
    bridge.post(text_message("START", frm=OTHER, ts=t0))
    bridge.post(text_message("JA", frm=OTHER, ts=t0 + 1))
    bridge.post(text_message("STOP", frm=OTHER, ts=t0 + 2))
    bridge.post(call_event("wacid.OLD", "connect", ts=t0))
    # 10 days ago: a call and a message
    bridge.clock.t = start - 10 * DAY
    bridge.post(call_event("wacid.MID", "connect", ts=int(bridge.clock())))
    bridge.post(text_message("hello", ts=int(bridge.clock())))
    # now: an active consent (never purged)
    bridge.clock.t = start
    _consented(bridge)

    def purge(consent_days: int):
        return _domain_run(
            bridge, lambda tx: bridge.rt.domain.purge(tx, start, 7, 90, consent_days)
        )

    counts = purge(3 * 365)
    assert counts["raw_payloads"] == 6
    assert counts["raw_events"] == 4  # 3 old messages + 1 ten-day-old message
    assert counts["call_records"] == 1  # only the 100-day-old call
    assert counts["outbox"] == 2  # optin request + optout ack of the old chain
    assert counts["consent_proof"] == 0  # revoked only 100 days ago: kept
    assert bridge.count("event", "data_class = 'call'") == 1
    assert bridge.count("consent_ledger") == 3 + 2
    # with a 30-day consent period the revoked chain goes, the active one stays
    counts = purge(30)
    assert counts["consent_proof"] == 3
    assert counts["raw_events"] == 0
    assert bridge.count("consent_ledger") == 2
    assert bridge.consent().json()["allow"] is True


# ----------------------------------------------------------------------------- CLI
@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, settings) -> str:
    for name, value in {
        "APP_SECRET": APP_SECRET,
        "VERIFY_TOKEN": VERIFY_TOKEN,
        "INTERNAL_TOKEN": INTERNAL_TOKEN,
        "PSEUDONYM_KEY": PSEUDONYM_KEY,
        "DATABASE": settings.database,
        "ROUTES_FILE": settings.routes_file,
    }.items():
        monkeypatch.setenv("WAGW_BRIDGE_" + name, value)
    monkeypatch.delenv("WAGW_BRIDGE_CONFIG", raising=False)
    return settings.database


def test_cli_doctor_fails_before_migrate(cli_env: str, capsys) -> None:
    assert main(["doctor"]) == 1
    assert "run migrate" in capsys.readouterr().out


def test_cli_cycle(cli_env: str, bridge: Bridge, capsys) -> None:
    # the bridge fixture already migrated the same database
    assert main(["migrate"]) == 0
    assert json.loads(capsys.readouterr().out)["schema_version"] == SCHEMA_VERSION == 3
    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    assert "all checks passed" in out
    assert APP_SECRET not in out
    assert INTERNAL_TOKEN not in out
    _consented(bridge)
    assert main(["export", "--subject", "+" + USER]) == 0
    exported = json.loads(capsys.readouterr().out)
    assert len(exported["consent_ledger"]) == 2
    assert main(["erase", "--subject", "0049 170 1234567"]) == 0
    erased = json.loads(capsys.readouterr().out)
    assert erased["events_deleted"] == 3
    assert USER not in json.dumps(erased)
    assert main(["purge", "--raw-days", "0"]) == 0
    purged = json.loads(capsys.readouterr().out)
    assert set(purged["deleted"]) == {
        "raw_payloads", "raw_events", "outbox", "call_records", "consent_proof", "consent_uses",
        "call_permissions", "identities", "identity_links",
    }  # fmt: skip
    assert purged["retention_days"]["raw"] == 0


def test_cli_missing_secrets(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys) -> None:
    for name in ("APP_SECRET", "VERIFY_TOKEN", "INTERNAL_TOKEN", "PSEUDONYM_KEY", "CONFIG"):
        monkeypatch.delenv("WAGW_BRIDGE_" + name, raising=False)
    monkeypatch.setenv("WAGW_BRIDGE_DATABASE", str(tmp_path / "x.sqlite3"))
    assert main(["doctor"]) == 1
    out = capsys.readouterr().out
    assert "WAGW_BRIDGE_APP_SECRET" in out
    assert main(["serve"]) == 2
    err = capsys.readouterr().err
    assert "missing required setting(s)" in err
    assert "WAGW_BRIDGE_PSEUDONYM_KEY" in err


def test_config_file_and_secret_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from wagw_bridge.config import ConfigError, Settings

    secret = tmp_path / "secret"
    secret.write_text("from-file-secret\n")
    cfg = tmp_path / "bridge.yml"
    cfg.write_text("database: /tmp/x.sqlite3\nretention_raw_days: 3\nstop_keywords: [halt, stop]\n")
    s = Settings.load(
        str(cfg),
        environ={"WAGW_BRIDGE_APP_SECRET_FILE": str(secret), "WAGW_BRIDGE_RETENTION_RAW_DAYS": "5"},
    )
    assert s.app_secret.get() == "from-file-secret"
    assert s.retention_raw_days == 5
    assert s.stop_keywords == ("HALT", "STOP")
    assert "from-file-secret" not in repr(s)
    cfg.write_text("no_such_setting: 1\n")
    with pytest.raises(ConfigError, match="no_such_setting"):
        Settings.load(str(cfg), environ={})


def test_cli_purge_appends_evidence_per_class(
    cli_env: str, bridge: Bridge, capsys, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Each purge leaves one JSON line (limit, deleted, oldest remaining per class) that
    outlives the journal; no number in it."""
    evidence = tmp_path / "evidence" / "bridge-retention.jsonl"
    evidence.parent.mkdir()
    monkeypatch.setenv("WAGW_BRIDGE_EVIDENCE_FILE", str(evidence))
    _consented(bridge)
    assert main(["purge"]) == 0
    assert main(["purge", "--consent-days", "0"]) == 0
    capsys.readouterr()
    runs = [json.loads(line) for line in evidence.read_text().splitlines()]
    assert len(runs) == 2
    assert runs[0]["run"] == "wagw-bridge-purge"
    assert set(runs[0]["classes"]) == {"raw_payloads", "call_records", "consent_proof"}
    first, second = runs[0]["classes"]["consent_proof"], runs[1]["classes"]["consent_proof"]
    assert first["limit_days"] == 3 * 365
    assert first["deleted"] == 0
    assert first["oldest_remaining"] is not None  # the active consent stays
    assert second["limit_days"] == 0
    assert USER not in evidence.read_text()
