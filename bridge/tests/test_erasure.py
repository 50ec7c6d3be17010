"""Erasure leaves no clear number or BSUID in any text column of any table (SQLite and
PostgreSQL), and export finds the same rows; 3 MiB bodies; retention up to 5 years.

Payload shapes: Meta's webhook references (messages, system, user_preferences, calls;
"Business-scoped user IDs" for the ``user_id`` / ``from_user_id`` fields):
https://developers.facebook.com/documentation/business-messaging/whatsapp/business-scoped-user-ids
https://developers.facebook.com/documentation/business-messaging/whatsapp/webhooks/reference/messages/system/
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from conftest import (
    BUSINESS,
    USER,
    Bridge,
    call_event,
    call_permission_reply,
    envelope,
    sign,
    text_message,
    wamid,
)
from test_identity import BSUID, NEW_NUMBER, both_ids_message, number_change, username_message
from wagw_bridge.config import ConfigError
from wagw_bridge.service import TEXT_COLUMNS

OTHER = "491709999999"


def text_columns(bridge: Bridge) -> dict[str, list[str]]:
    """Every text column of every table, read from the database itself."""

    def read(tx: Any) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        if bridge.rt.db.dialect.name == "sqlite":
            tables = [
                r[0]
                for r in tx.all(
                    "SELECT name FROM sqlite_master WHERE type = 'table'"
                    " AND name NOT LIKE 'sqlite_%'"
                )
            ]
            for t in tables:
                cols = tx.all(f"PRAGMA table_info({t})")
                out[t] = [c[1] for c in cols if "TEXT" in str(c[2]).upper()]
        else:
            for t, c in tx.all(
                "SELECT table_name, column_name FROM information_schema.columns"
                " WHERE table_schema = 'public' AND data_type IN ('text', 'character varying')"
            ):
                out.setdefault(t, []).append(c)
        return {t: cols for t, cols in out.items() if cols}

    return bridge.rt.reader.run(read)


def rows_containing(bridge: Bridge, needles: list[str]) -> list[tuple[str, str, str]]:
    found = []
    for table, cols in text_columns(bridge).items():
        for col in cols:
            for needle in needles:
                rows = bridge.rt.reader.run(
                    lambda tx, t=table, c=col, n=needle: tx.all(
                        f"SELECT {c} FROM {t} WHERE {c} LIKE ?", (f"%{n}%",)
                    )
                )
                found.extend((table, col, str(r[0])[:80]) for r in rows)
    return found


def test_text_column_map_matches_the_schema(bridge: Bridge) -> None:
    schema = text_columns(bridge)
    schema.pop("schema_version", None)
    assert {t: sorted(c) for t, c in schema.items()} == {
        t: sorted(cols) for t, (_, cols) in TEXT_COLUMNS.items()
    }


def _everything_about_the_user(bridge: Bridge) -> None:
    now = int(bridge.clock())
    bridge.post(text_message("START", ts=now))
    bridge.post(both_ids_message("JA", ts=now + 1))
    bridge.post(call_permission_reply("accept", ts=now + 2, expires=now + 86400))
    bridge.post(username_message("Wann ruft ihr an?", ts=now + 3))
    bridge.post(call_event("wacid.ERASE1", "connect", ts=now + 4))
    # subject-less events: user preferences, an echo (unknown field), a system message
    prefs = envelope(
        "user_preferences",
        {
            "contacts": [{"profile": {"name": "Kundin"}, "wa_id": USER, "user_id": BSUID}],
            "user_preferences": [
                {
                    "wa_id": USER,
                    "user_id": BSUID,
                    "detail": "User requested to stop marketing messages",
                    "category": "marketing_messages",
                    "value": "stop",
                    "timestamp": now + 5,
                }
            ],
        },
    )
    prefs["entry"][0]["changes"][0]["value"]["user_preferences"][0].pop("wa_id")
    bridge.post(prefs)
    echo = envelope(
        "smb_message_echoes",
        {
            "message_echoes": [
                {
                    "from": BUSINESS,
                    "to": USER,
                    "id": wamid(),
                    "timestamp": str(now + 6),
                    "type": "text",
                    "text": {"body": "Wir rufen morgen an"},
                }
            ]
        },
    )
    bridge.post(echo)
    bridge.post(envelope("messages", {"errors": [{"code": 131000, "details": f"user {USER}"}]}))
    # another subject mentions the user's number and BSUID in a message
    bridge.post(text_message(f"Nummer von Kundin: +{USER}, id {BSUID}", frm=OTHER, ts=now + 7))
    bridge.post(text_message("START", frm=OTHER, ts=now + 8))


def test_erase_leaves_nothing_behind(bridge: Bridge) -> None:
    _everything_about_the_user(bridge)
    assert rows_containing(bridge, [USER, BSUID])  # it is all over the database
    data = bridge.rt.reader.run(
        lambda tx: bridge.rt.domain.export(tx, "+" + USER, int(bridge.clock()))
    )
    assert {e["kind"] for e in data["events"]} >= {"message", "call", "user_preference"}
    assert any(i["value"] == BSUID for i in data["identities"])
    conn = bridge.rt.db.connect()
    try:
        counts = bridge.rt.db.run(
            conn, lambda tx: bridge.rt.domain.erase(tx, "+" + USER, int(bridge.clock()))
        )
    finally:
        conn.close()
    assert counts["consent_revoked"] == 1
    assert counts["rows_redacted"] >= 1  # the other subject's message
    assert rows_containing(bridge, [USER, BSUID]) == []
    # consent proof stays, pseudonymised; the person can no longer be called
    assert bridge.count("consent_ledger", "subject IS NULL") >= 3
    assert bridge.consent(subject="+" + USER).json()["reason"] == "opt-in-revoked"
    # the other subject's data is still there (redacted where it named the user)
    h_other = bridge.rt.pseudo.subject_hash("+" + OTHER)
    assert bridge.count("event", "subject_hash = ?", (h_other,)) == 2
    assert bridge.consent(subject="+" + OTHER).json()["reason"] == "opt-in-pending"


def test_erase_by_new_number_reaches_the_old_one(bridge: Bridge) -> None:
    now = int(bridge.clock())
    bridge.post(text_message("START", ts=now))
    bridge.post(text_message("JA", ts=now + 1))
    bridge.post(number_change(USER, NEW_NUMBER, now + 10))
    bridge.post(text_message("Hallo", frm=NEW_NUMBER, ts=now + 20))
    conn = bridge.rt.db.connect()
    try:
        bridge.rt.db.run(
            conn, lambda tx: bridge.rt.domain.erase(tx, "+" + NEW_NUMBER, int(bridge.clock()))
        )
    finally:
        conn.close()
    assert rows_containing(bridge, [USER, NEW_NUMBER]) == []


def test_signed_batch_of_1000_updates(bridge: Bridge) -> None:
    """Meta batches up to 1000 updates in one delivery of up to 3 MB; about 2.4 MiB here."""
    assert bridge.rt.settings.max_body_bytes == 3 * 1024 * 1024
    now = int(bridge.clock())
    filler = "Bitte um Rückruf wegen der Rechnung. " * 62
    entries = [
        {
            "id": "102290129340398",
            "changes": [
                {
                    "field": "messages",
                    "value": {
                        "messaging_product": "whatsapp",
                        "metadata": {
                            "display_phone_number": BUSINESS,
                            "phone_number_id": "106540352242922",
                        },
                        "contacts": [{"profile": {"name": "K"}, "wa_id": f"4917{i:08d}"}],
                        "messages": [
                            {
                                "from": f"4917{i:08d}",
                                "id": f"wamid.BATCH{i:06d}",
                                "timestamp": str(now),
                                "type": "text",
                                "text": {"body": filler},
                            }
                        ],
                    },
                }
            ],
        }
        for i in range(1000)
    ]
    body = json.dumps({"object": "whatsapp_business_account", "entry": entries}).encode()
    assert 2.2 * 2**20 < len(body) < 3 * 2**20
    r = bridge.client.post("/webhook", content=body, headers={"X-Hub-Signature-256": sign(body)})
    assert r.status_code == 200, r.text
    assert r.json() == {"status": "ok", "events": 1000, "stored": 1000, "duplicates": 0}
    assert bridge.count("event") == 1000
    assert bridge.count("raw_payload") == 1


def test_consent_retention_up_to_five_years(tmp_path) -> None:
    from conftest import make_settings

    assert make_settings("x.sqlite3", tmp_path, retention_consent_days=1826)
    with pytest.raises(ConfigError, match="1826"):
        make_settings("x.sqlite3", tmp_path, retention_consent_days=1827)


def test_consent_proof_kept_from_last_use(bridge: Bridge) -> None:
    """A chain revoked long ago but used later (a business-initiated call) is kept for the
    period counted from that use (§7a UWG), then purged."""
    day = 86400
    start = int(bridge.clock())
    t0 = start - 1500 * day
    bridge.post(text_message("START", ts=t0))
    bridge.post(text_message("JA", ts=t0 + 1))
    bridge.post(text_message("STOP", ts=t0 + 2))
    call = call_event("wacid.USE1", "connect", ts=start - 1000 * day)
    call["entry"][0]["changes"][0]["value"]["calls"][0].update(
        {"direction": "BUSINESS_INITIATED", "from": BUSINESS, "to": USER}
    )
    bridge.post(call)

    def purge(days: int) -> dict[str, int]:
        conn = bridge.rt.db.connect()
        try:
            return bridge.rt.db.run(conn, lambda tx: bridge.rt.domain.purge(tx, start, 7, 90, days))
        finally:
            conn.close()

    assert purge(1095)["consent_proof"] == 0  # used 1000 days ago
    assert bridge.count("consent_ledger") == 3
    out = purge(900)
    assert (out["consent_proof"], out["consent_uses"]) == (3, 1)


def test_privacy_and_imprint_in_request_and_ledger(database: str, tmp_path, clock) -> None:
    from starlette.testclient import TestClient

    from conftest import make_settings
    from wagw_bridge.app import create_app

    s = make_settings(
        database,
        tmp_path,
        privacy_url="https://example.org/datenschutz",
        imprint_url="https://example.org/impressum",
        wording_version="v7",
        consent_purpose="whatsapp-calls-service",
    )
    with TestClient(create_app(s, clock=clock)) as c:
        b = Bridge(c, clock)
        b.post(text_message("START", ts=int(time.time())))
        body = json.loads(b.rt.reader.run(lambda tx: tx.one("SELECT body FROM outbox"))[0])
        text = body["interactive"]["body"]["text"]
        assert text.startswith(s.optin_wording)
        assert "https://example.org/datenschutz" in text
        assert "https://example.org/impressum" in text
        assert len(text) <= 1024
        row = b.rt.reader.run(
            lambda tx: tx.one(
                "SELECT wording_version, purpose, privacy_url, imprint_url FROM consent_ledger"
            )
        )
        assert tuple(row) == (
            "v7",
            "whatsapp-calls-service",
            "https://example.org/datenschutz",
            "https://example.org/impressum",
        )
