"""People known by phone number and/or business-scoped user ID (BSUID), number changes,
keyword and permission-reply parsing, status order, value-level errors (SQLite and PostgreSQL).

Payloads follow Meta's documented shapes:

* BSUIDs in webhooks ("Business-scoped user IDs", sections "Incoming messages webhooks",
  "Status messages webhooks", "System status messages webhooks", "Calling API"):
  https://developers.facebook.com/documentation/business-messaging/whatsapp/business-scoped-user-ids
  -- a user with a username whom the business has not messaged in 30 days arrives with
  ``from: ""`` / ``wa_id: ""`` and only ``from_user_id`` / ``contacts[].user_id``;
* system messages ``user_changed_number`` / ``user_changed_user_id``:
  https://developers.facebook.com/documentation/business-messaging/whatsapp/webhooks/reference/messages/system/
* call permission replies (no message ``type`` in Meta's sample) and call terminate webhooks
  with value-level ``errors[]``: Calling API reference,
  https://developers.facebook.com/documentation/business-messaging/whatsapp/calling/reference/
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from conftest import (
    USER,
    Bridge,
    call_permission_reply,
    envelope,
    status_update,
    text_message,
    wamid,
)

BSUID = "DE.13491208655302741918"
NEW_NUMBER = "491709998887"
NEW_BSUID = "DE.99887766554433221100"
DAY = 86400


def _ts(ts: int | None) -> str:
    return str(ts if ts is not None else int(time.time()))


def username_message(body: str, ts: int | None = None, bsuid: str = BSUID) -> dict[str, Any]:
    """A text from a user with a username, number withheld (Meta's BSUID page example)."""
    return envelope(
        "messages",
        {
            "contacts": [
                {
                    "profile": {"name": "Kundin", "username": "@kundin", "country_code": "DE"},
                    "wa_id": "",
                    "user_id": bsuid,
                }
            ],
            "messages": [
                {
                    "from": "",
                    "from_user_id": bsuid,
                    "id": wamid(),
                    "timestamp": _ts(ts),
                    "type": "text",
                    "text": {"body": body},
                }
            ],
        },
    )


def both_ids_message(body: str, ts: int | None = None) -> dict[str, Any]:
    """A text naming the number and the BSUID (a user without username, or within 30 days)."""
    return envelope(
        "messages",
        {
            "contacts": [{"profile": {"name": "Kundin"}, "wa_id": USER, "user_id": BSUID}],
            "messages": [
                {
                    "from": USER,
                    "from_user_id": BSUID,
                    "id": wamid(),
                    "timestamp": _ts(ts),
                    "type": "text",
                    "text": {"body": body},
                }
            ],
        },
    )


def username_permission_reply(response: str, ts: int | None = None) -> dict[str, Any]:
    """Calling API "User calling permission request webhook" from a username user; Meta's
    sample has no message ``type``: the reply is recognised by ``interactive.type``."""
    reply = {"response": response, "is_permanent": False, "response_source": "user_action"}
    if response == "accept":
        reply["expiration_timestamp"] = str(int(time.time()) + DAY)
    return envelope(
        "messages",
        {
            "contacts": [{"profile": {"name": "Kundin"}, "wa_id": "", "user_id": BSUID}],
            "messages": [
                {
                    "from": "",
                    "from_user_id": BSUID,
                    "id": wamid(),
                    "timestamp": _ts(ts),
                    "context": {"from": "", "id": "wamid.gBGGFlaCmZ9plHrf2Mh-o"},
                    "interactive": {
                        "type": "call_permission_reply",
                        "call_permission_reply": reply,
                    },
                }
            ],
        },
    )


def number_change(old: str, new: str, ts: int) -> dict[str, Any]:
    return envelope(
        "messages",
        {
            "messages": [
                {
                    "from": old,
                    "id": wamid(),
                    "timestamp": str(ts),
                    "type": "system",
                    "system": {
                        "body": f"User Kundin changed from {old} to {new}",
                        "wa_id": new,
                        "type": "user_changed_number",
                    },
                }
            ]
        },
    )


def user_id_change(old: str, new: str, ts: int) -> dict[str, Any]:
    return envelope(
        "messages",
        {
            "messages": [
                {
                    "from": "",
                    "id": wamid(),
                    "timestamp": str(ts),
                    "type": "system",
                    "system": {
                        "body": f"User Kundin changed from {old} to {new}",
                        "wa_id": "",
                        "user_id": new,
                        "type": "user_changed_user_id",
                    },
                }
            ]
        },
    )


def consent_of(bridge: Bridge, subject: str) -> dict[str, Any]:
    r = bridge.consent(subject=subject)
    assert r.status_code == 200, r.text
    return r.json()


def consented_phone(bridge: Bridge, frm: str = USER) -> int:
    now = int(bridge.clock())
    assert bridge.post(text_message("START", frm=frm, ts=now)).status_code == 200
    assert bridge.post(text_message("JA", frm=frm, ts=now + 1)).status_code == 200
    bridge.post(call_permission_reply("accept", frm=frm, ts=now + 2, expires=now + DAY))
    assert consent_of(bridge, "+" + frm)["allow"] is True
    return now


def test_username_stop_denies_the_linked_number(bridge: Bridge) -> None:
    now = consented_phone(bridge)
    # a later delivery names both identifiers: one person
    assert bridge.post(both_ids_message("Danke", ts=now + 10)).status_code == 200
    assert consent_of(bridge, "+" + USER)["allow"] is True
    assert consent_of(bridge, BSUID)["allow"] is True  # Asterisk may only know the BSUID
    # the user adopts a username: number withheld, BSUID only
    r = bridge.post(username_message("STOP 🛑", ts=now + 20))
    assert r.status_code == 200
    st = consent_of(bridge, "+" + USER)
    assert (st["allow"], st["reason"]) == (False, "opt-in-revoked")
    assert bridge.consent(subject="+" + USER, fmt="text").text == "deny"
    rows = bridge.rt.reader.run(
        lambda tx: tx.all(
            "SELECT action, subject, channel FROM consent_ledger ORDER BY occurred_at, id"
        )
    )
    assert [r[0] for r in rows] == ["requested", "confirmed", "revoked"]
    assert rows[2][1] == BSUID  # recorded with the identifier it came with
    # the acknowledgement goes to the BSUID (Meta's "to" accepts it)
    acks = bridge.rt.reader.run(
        lambda tx: tx.all("SELECT recipient, body FROM outbox WHERE kind = 'optout_ack'")
    )
    assert [(a[0], json.loads(a[1])["to"]) for a in acks] == [(BSUID, BSUID)]


def test_username_reject_denies_the_linked_number(bridge: Bridge) -> None:
    now = consented_phone(bridge)
    bridge.post(both_ids_message("Hallo", ts=now + 10))
    bridge.post(username_permission_reply("reject", ts=now + 20))
    st = consent_of(bridge, "+" + USER)
    assert (st["allow"], st["reason"]) == (False, "call-permission-rejected")


def test_stop_before_the_link_still_counts(bridge: Bridge) -> None:
    """The BSUID's STOP arrives while nobody knows whose BSUID it is; a later delivery that
    names both identifiers makes it the person's: its latest entry is the revocation."""
    now = consented_phone(bridge)
    bridge.post(username_message("stop", ts=now + 20))
    assert consent_of(bridge, "+" + USER)["allow"] is True  # not linked yet
    bridge.post(both_ids_message("Hallo", ts=now + 30))
    assert consent_of(bridge, "+" + USER)["reason"] == "opt-in-revoked"
    links = bridge.rt.reader.run(lambda tx: tx.all("SELECT kind FROM identity_link"))
    assert [r[0] for r in links] == ["link"]


def test_username_user_full_opt_in(bridge: Bridge) -> None:
    now = int(bridge.clock())
    bridge.post(username_message("START", ts=now))
    bridge.post(username_message("ja 👍", ts=now + 5))
    bridge.post(username_permission_reply("accept", ts=now + 6))
    assert consent_of(bridge, BSUID)["allow"] is True
    body = bridge.rt.reader.run(
        lambda tx: tx.one("SELECT body FROM outbox WHERE kind = 'optin_request'")
    )[0]
    assert json.loads(body)["to"] == BSUID


@pytest.mark.parametrize(("text", "keyword"), [("ja 👍", "JA"), ("STOP 🛑", "STOP"), ("Ja!", "JA")])
def test_keywords_with_emoji_and_punctuation(text: str, keyword: str) -> None:
    from wagw_bridge.events import parse_delivery

    (ev,) = parse_delivery(text_message(text), int(time.time()))
    assert ev.text == keyword


def test_permission_reply_without_message_type(bridge: Bridge) -> None:
    now = consented_phone(bridge)
    payload = call_permission_reply("reject", ts=now + 5)
    del payload["entry"][0]["changes"][0]["value"]["messages"][0]["type"]
    bridge.post(payload)
    assert consent_of(bridge, "+" + USER)["reason"] == "call-permission-rejected"


def test_number_change_revokes_and_parts_the_old_number(bridge: Bridge) -> None:
    now = consented_phone(bridge)
    assert bridge.post(number_change(USER, NEW_NUMBER, now + 100)).status_code == 200
    old, new = consent_of(bridge, "+" + USER), consent_of(bridge, "+" + NEW_NUMBER)
    assert (old["allow"], new["allow"]) == (False, False)
    assert old["reason"] == "no-opt-in"  # the old number is nobody's consent any more
    assert new["reason"] == "opt-in-revoked"  # the person must opt in again
    rows = bridge.rt.reader.run(
        lambda tx: tx.all(
            "SELECT action, channel, subject, evidence FROM consent_ledger ORDER BY occurred_at, id"
        )
    )
    assert [(r[0], r[1]) for r in rows][-1] == ("revoked", "number-change")
    assert rows[-1][2] == "+" + USER
    assert json.loads(rows[-1][3])["system_type"] == "user_changed_number"
    # the new number opts in again; the old number's next holder is someone else
    bridge.post(text_message("START", frm=NEW_NUMBER, ts=now + 200))
    bridge.post(text_message("JA", frm=NEW_NUMBER, ts=now + 201))
    bridge.post(call_permission_reply("accept", frm=NEW_NUMBER, ts=now + 202, expires=now + DAY))
    assert consent_of(bridge, "+" + NEW_NUMBER)["allow"] is True
    assert consent_of(bridge, "+" + USER)["allow"] is False
    bridge.post(text_message("START", frm=USER, ts=now + 300))  # the recycled number
    assert consent_of(bridge, "+" + USER)["reason"] == "opt-in-pending"
    assert consent_of(bridge, "+" + NEW_NUMBER)["allow"] is True


def test_user_id_change_revokes(bridge: Bridge) -> None:
    now = int(bridge.clock())
    bridge.post(username_message("START", ts=now))
    bridge.post(username_message("JA", ts=now + 1))
    bridge.post(username_permission_reply("accept", ts=now + 2))
    assert consent_of(bridge, BSUID)["allow"] is True
    bridge.post(user_id_change(BSUID, NEW_BSUID, now + 50))
    assert consent_of(bridge, BSUID)["allow"] is False
    st = consent_of(bridge, NEW_BSUID)
    assert (st["allow"], st["reason"]) == (False, "opt-in-revoked")


def test_migration_from_v2_keeps_decisions(tmp_path, clock) -> None:
    """An existing v2 database (SQLite) migrates: ledger rows get their person."""
    from starlette.testclient import TestClient

    from conftest import make_settings
    from wagw_bridge.app import create_app
    from wagw_bridge.db import SCHEMA_V1, SCHEMA_V2, SCHEMA_VERSION, SQLITE, Database
    from wagw_bridge.observability import Pseudonymizer

    path = str(tmp_path / "v2.sqlite3")
    db = Database(path)
    conn = db.connect()
    for stmt in SCHEMA_V1 + SCHEMA_V2:
        conn.execute(stmt.format(id_pk=SQLITE.id_pk, bigint=SQLITE.bigint))
    now = int(clock())
    conn.execute("INSERT INTO schema_version VALUES (1, ?), (2, ?)", (now, now))
    settings = make_settings(path, tmp_path)
    h = Pseudonymizer(settings.pseudonym_key.encoded()).subject_hash("+" + USER)
    for i, action in enumerate(("requested", "confirmed")):
        conn.execute(
            "INSERT INTO consent_ledger (subject_hash, subject, action, purpose, channel,"
            " wording_version, source_event, occurred_at, recorded_at) VALUES"
            " (?, ?, ?, 'whatsapp-calls', 'whatsapp-keyword', 'v1', ?, ?, ?)",
            (h, "+" + USER, action, f"msg:old{i}", now + i, now + i),
        )
    conn.execute(
        "INSERT INTO call_permission (subject_hash, subject, business_number, response,"
        " is_permanent, expires_at, response_source, channel, source_event, occurred_at,"
        " recorded_at) VALUES (?, ?, NULL, 'accept', 1, NULL, 'user_action', 'x', 'msg:p', ?, ?)",
        (h, "+" + USER, now + 2, now + 2),
    )
    conn.close()
    with TestClient(create_app(settings, clock=clock)) as c:
        b = Bridge(c, clock)
        assert b.client.get("/healthz").json()["schema_version"] == SCHEMA_VERSION == 3
        assert consent_of(b, "+" + USER)["allow"] is True
        b.post(username_message("STOP", ts=now + 10))
        b.post(both_ids_message("Hallo", ts=now + 20))
        assert consent_of(b, "+" + USER)["reason"] == "opt-in-revoked"


# ----------------------------------------------------------------- statuses and errors
def _sent_request(bridge: Bridge, wamid_out: str) -> None:
    bridge.post(text_message("START"))
    bridge.rt.reader.run(lambda tx: None)
    conn = bridge.rt.db.connect()
    try:
        bridge.rt.db.run(
            conn, lambda tx: tx.execute("UPDATE outbox SET wamid = ?, state = 'sent'", (wamid_out,))
        )
    finally:
        conn.close()


def _delivery_status(bridge: Bridge) -> tuple[str, int]:
    row = bridge.rt.reader.run(
        lambda tx: tx.one("SELECT delivery_status, delivery_status_at FROM outbox")
    )
    return row[0], row[1]


def test_same_second_statuses_keep_the_later_stage(bridge: Bridge) -> None:
    """Meta does not guarantee the order of status webhooks (Status messages webhook
    reference); at equal timestamps sent < delivered < read, and failed is final."""
    out = "wamid.OUT-ORDER-1"
    _sent_request(bridge, out)
    t = int(bridge.clock())
    bridge.post(status_update(out, "delivered", ts=t))
    bridge.post(status_update(out, "sent", ts=t))  # late, same second
    assert _delivery_status(bridge) == ("delivered", t)
    bridge.post(status_update(out, "read", ts=t))
    assert _delivery_status(bridge) == ("read", t)
    bridge.post(status_update(out, "delivered", ts=t))  # a repeated key is not stored again
    assert _delivery_status(bridge) == ("read", t)
    failed = status_update(out, "failed", ts=t - 5)
    failed["entry"][0]["changes"][0]["value"]["statuses"][0]["errors"] = [
        {"code": 131026, "title": "Message undeliverable"}
    ]
    del failed["entry"][0]["changes"][0]["value"]["statuses"][0]["recipient_id"]  # to a BSUID
    bridge.post(failed)
    assert _delivery_status(bridge)[0] == "failed"
    out2 = "wamid.OUT-ORDER-1-later"
    bridge.post(status_update(out2, "read", ts=t + 50))  # another message: no effect
    assert _delivery_status(bridge)[0] == "failed"


def _terminate_with_error(call_id: str) -> dict[str, Any]:
    """Calling API "Call terminate webhook": errors[] beside calls[] in the same value."""
    return envelope(
        "calls",
        {
            "calls": [
                {
                    "id": call_id,
                    "to": USER,
                    "from": "4930123456",
                    "event": "terminate",
                    "direction": "BUSINESS_INITIATED",
                    "timestamp": str(int(time.time())),
                    "status": "FAILED",
                }
            ],
            "errors": [
                {
                    "code": 138006,
                    "message": "No approved call permission from the recipient",
                    "href": "https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes/",
                    "error_data": {"details": "No approved call permission"},
                }
            ],
        },
    )


def test_the_same_error_on_two_calls_is_two_rows(bridge: Bridge) -> None:
    for cid in ("wacid.FIRST", "wacid.SECOND"):
        r = bridge.post(_terminate_with_error(cid))
        assert r.json() == {"status": "ok", "events": 2, "stored": 2, "duplicates": 0}
    rows = bridge.rt.reader.run(
        lambda tx: tx.all(
            "SELECT ref_id, subject_hash, status FROM event WHERE kind = 'error' ORDER BY id"
        )
    )
    h = bridge.rt.pseudo.subject_hash("+" + USER)
    assert rows == [("wacid.FIRST", h, "code:138006"), ("wacid.SECOND", h, "code:138006")]
    assert bridge.post(_terminate_with_error("wacid.SECOND")).json()["duplicates"] == 2
