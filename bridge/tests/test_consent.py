"""Consent ledger: double opt-in, revocation, call permissions with expiry; consent look-up."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import (
    USER,
    Bridge,
    button_reply,
    call_permission_reply,
    template_button,
    text_message,
)
from wagw_bridge import cli
from wagw_bridge.config import Settings

HOUR = 3600


def state(bridge: Bridge) -> dict:
    r = bridge.consent()
    assert r.status_code == 200, r.text
    return r.json()


def ledger_actions(bridge: Bridge) -> list[str]:
    rows = bridge.rt.reader.run(
        lambda tx: tx.all("SELECT action FROM consent_ledger ORDER BY occurred_at, id")
    )
    return [r[0] for r in rows]


def test_full_double_opt_in_then_revocation(bridge: Bridge) -> None:
    now = int(bridge.clock())
    assert state(bridge)["reason"] == "no-opt-in"

    assert bridge.post(text_message("start", ts=now)).status_code == 200
    assert ledger_actions(bridge) == ["requested"]
    assert state(bridge)["reason"] == "opt-in-pending"
    # a confirmation request was queued for the user, with the configured wording version
    rows = bridge.rt.reader.run(lambda tx: tx.all("SELECT kind, body, recipient FROM outbox"))
    assert [r[0] for r in rows] == ["optin_request"]
    body = json.loads(rows[0][1])
    assert body["to"] == USER
    assert body["interactive"]["type"] == "button"
    assert rows[0][2] == "+" + USER

    assert bridge.post(text_message("Ja!", ts=now + 60)).status_code == 200
    assert ledger_actions(bridge) == ["requested", "confirmed"]
    st = state(bridge)
    assert st["opt_in"]["state"] == "confirmed"
    assert st["reason"] == "no-call-permission"  # opt-in alone does not allow calls
    assert st["allow"] is False

    # accepted call permission, temporary, expiring in 2 hours
    expires = now + 2 * HOUR
    bridge.post(call_permission_reply("accept", ts=now + 120, expires=expires))
    st = state(bridge)
    assert st["allow"] is True, st
    assert st["call_permission"]["expires_at"] == expires
    assert bridge.consent(fmt="text").text == "allow"

    # time passes beyond the expiry: deny
    bridge.clock.advance(3 * HOUR)
    st = state(bridge)
    assert st["allow"] is False
    assert st["reason"] == "call-permission-expired"
    assert bridge.consent(fmt="text").text == "deny"

    # renewed permission, then STOP revokes everything
    bridge.post(call_permission_reply("accept", ts=now + 4 * HOUR, expires=now + 100 * HOUR))
    assert state(bridge)["allow"] is True
    bridge.post(text_message("STOP", ts=now + 5 * HOUR))
    st = state(bridge)
    assert st["allow"] is False
    assert st["reason"] == "opt-in-revoked"
    assert ledger_actions(bridge) == ["requested", "confirmed", "revoked"]
    kinds = bridge.rt.reader.run(lambda tx: tx.all("SELECT kind FROM outbox ORDER BY id"))
    assert [k[0] for k in kinds] == ["optin_request", "optout_ack"]


def test_ledger_rows_are_proof(bridge: Bridge) -> None:
    now = int(bridge.clock())
    bridge.post(text_message("START", ts=now))
    bridge.post(text_message("YES", ts=now + 5))
    rows = bridge.rt.reader.run(
        lambda tx: tx.all(
            "SELECT subject, subject_hash, action, purpose, channel, wording_version, source_event,"
            " occurred_at FROM consent_ledger ORDER BY id"
        )
    )
    assert len(rows) == 2
    for row in rows:
        assert row[0] == "+" + USER
        assert row[1] == bridge.rt.pseudo.subject_hash("+" + USER)
        assert row[3] == "whatsapp-calls"
        assert row[4] == "whatsapp-keyword"
        assert row[5] == "v1"
        assert row[6].startswith("msg:wamid.")
    assert [r[7] for r in rows] == [now, now + 5]


def test_confirm_without_request_is_not_consent(bridge: Bridge) -> None:
    bridge.post(text_message("JA"))
    assert ledger_actions(bridge) == []
    assert state(bridge)["reason"] == "no-opt-in"


def test_confirmation_window(bridge: Bridge) -> None:
    now = int(bridge.clock())
    bridge.post(text_message("START", ts=now))
    bridge.post(text_message("JA", ts=now + 49 * HOUR))  # default window: 48 h
    assert ledger_actions(bridge) == ["requested"]
    assert state(bridge)["reason"] == "opt-in-pending"


def test_button_flow(bridge: Bridge) -> None:
    now = int(bridge.clock())
    bridge.post(button_reply("WAGW_OPTIN", "Anmelden", ts=now))
    bridge.post(button_reply("WAGW_CONFIRM", "Bestätigen", ts=now + 1))
    rows = bridge.rt.reader.run(lambda tx: tx.all("SELECT action, channel FROM consent_ledger"))
    assert sorted(rows) == [("confirmed", "whatsapp-button"), ("requested", "whatsapp-button")]
    bridge.post(call_permission_reply("accept", ts=now + 2, permanent=True))
    assert state(bridge)["allow"] is True
    bridge.clock.advance(400 * 24 * HOUR)  # permanent permission does not expire
    assert state(bridge)["allow"] is True
    bridge.post(template_button("WAGW_OPTOUT", "Abmelden", ts=now + 3))
    assert state(bridge)["reason"] == "opt-in-revoked"


def test_rejected_permission_denies(bridge: Bridge) -> None:
    now = int(bridge.clock())
    bridge.post(text_message("START", ts=now))
    bridge.post(text_message("JA", ts=now + 1))
    bridge.post(call_permission_reply("accept", ts=now + 2, expires=now + 10 * HOUR))
    bridge.post(call_permission_reply("reject", ts=now + 3))
    st = state(bridge)
    assert st["reason"] == "call-permission-rejected"
    assert bridge.count("call_permission") == 2


def test_temporary_permission_without_expiry_lasts_7_days(bridge: Bridge) -> None:
    now = int(bridge.clock())
    bridge.post(text_message("START", ts=now))
    bridge.post(text_message("JA", ts=now + 1))
    bridge.post(call_permission_reply("accept", ts=now + 2))
    assert state(bridge)["allow"] is True
    bridge.clock.advance(7 * 24 * HOUR + 10)
    assert state(bridge)["reason"] == "call-permission-expired"


def test_redelivered_consent_message_recorded_once(bridge: Bridge) -> None:
    payload = text_message("START")
    bridge.post(payload)
    bridge.post(payload)
    assert ledger_actions(bridge) == ["requested"]
    assert bridge.count("outbox") == 1


def test_other_subject_unaffected(bridge: Bridge) -> None:
    now = int(bridge.clock())
    other = "491709999999"
    bridge.post(text_message("START", ts=now))
    bridge.post(text_message("JA", ts=now + 1))
    bridge.post(call_permission_reply("accept", ts=now + 2, expires=now + HOUR))
    assert state(bridge)["allow"] is True
    r = bridge.consent(subject="+" + other)
    assert r.json()["reason"] == "no-opt-in"


@pytest.mark.parametrize(
    ("business", "allow"), [("+4930123456", True), ("+4930000000", False), (None, True)]
)
def test_permission_scoped_by_business(bridge: Bridge, business: str | None, allow: bool) -> None:
    now = int(bridge.clock())
    bridge.post(text_message("START", ts=now))
    bridge.post(text_message("JA", ts=now + 1))
    bridge.post(call_permission_reply("accept", ts=now + 2, expires=now + HOUR))
    params = {"business": business} if business else {}
    assert bridge.consent(**params).json()["allow"] is allow


def test_ledger_status_counts_without_identities(
    bridge: Bridge, settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`wagw-bridge ledger-status` (the audit's CON-LEDGER evidence): counts by action and by
    each person's latest state, the latest permission per person by what it allows now."""
    now = int(bridge.clock())
    confirmed, pending, revoked = USER, "491709990001", "491709990002"
    for number in (confirmed, pending, revoked):
        bridge.post(text_message("start", frm=number, ts=now))
    for number in (confirmed, revoked):
        bridge.post(text_message("Ja!", frm=number, ts=now + 60))
    bridge.post(text_message("stop", frm=revoked, ts=now + 120))
    bridge.post(call_permission_reply("accept", frm=confirmed, ts=now + 180, permanent=True))
    bridge.post(call_permission_reply("accept", frm=revoked, ts=now - 3600, expires=now - 1800))
    bridge.post(call_permission_reply("reject", frm=pending, ts=now + 60))
    config = tmp_path / "bridge.json"
    config.write_text(json.dumps({"database": settings.database}))

    assert cli.main(["--config", str(config), "ledger-status"]) == 0
    out = capsys.readouterr().out
    counts = json.loads(out)
    assert counts["ledger_rows"] == {"confirmed": 2, "requested": 3, "revoked": 1}
    assert counts["people_by_opt_in"] == {"requested": 1, "confirmed": 1, "revoked": 1}
    assert counts["call_permissions"] == {"valid": 1, "expired": 1, "rejected": 1}
    assert confirmed not in out
    assert pending not in out
