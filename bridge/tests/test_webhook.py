"""POST/GET /webhook: signature, limits, parsing, exactly-once storage (SQLite and PostgreSQL)."""

from __future__ import annotations

import json

import pytest
from starlette.testclient import TestClient

from conftest import (
    APP_SECRET,
    USER,
    VERIFY_TOKEN,
    Bridge,
    call_event,
    envelope,
    make_settings,
    sign,
    status_update,
    text_message,
)
from wagw_bridge.app import create_app
from wagw_bridge.db import SCHEMA_VERSION


def test_handshake_ok(bridge: Bridge) -> None:
    r = bridge.client.get(
        "/webhook",
        params={
            "hub.mode": "subscribe",
            "hub.verify_token": VERIFY_TOKEN,
            "hub.challenge": "1158201444",
        },
    )
    assert r.status_code == 200
    assert r.text == "1158201444"
    assert r.headers["content-type"].startswith("text/plain")


@pytest.mark.parametrize(
    "params",
    [
        {"hub.mode": "subscribe", "hub.verify_token": "wrong", "hub.challenge": "1"},
        {"hub.mode": "subscribe", "hub.challenge": "1"},
        {"hub.mode": "unsubscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "1"},
        {},
    ],
)
def test_handshake_refused(bridge: Bridge, params: dict[str, str]) -> None:
    r = bridge.client.get("/webhook", params=params)
    assert r.status_code == 403
    assert "1" not in r.text.replace("verification", "")


def test_valid_signature_stored(bridge: Bridge) -> None:
    r = bridge.post(text_message("Hallo"))
    assert r.status_code == 200, r.text
    assert r.json() == {"status": "ok", "events": 1, "stored": 1, "duplicates": 0}
    assert bridge.count("event", "kind = 'message'") == 1
    assert bridge.count("raw_payload") == 1
    # the user's number is stored as a keyed hash, not in the indexed column
    h = bridge.rt.pseudo.subject_hash("+" + USER)
    assert bridge.count("event", "subject_hash = ?", (h,)) == 1


def test_flipped_byte_rejected_nothing_stored(bridge: Bridge) -> None:
    body = json.dumps(text_message("Hallo")).encode()
    header = sign(body)
    for i in (0, len(body) // 2, len(body) - 1):
        tampered = bytearray(body)
        tampered[i] ^= 0x01
        r = bridge.client.post(
            "/webhook", content=bytes(tampered), headers={"X-Hub-Signature-256": header}
        )
        assert r.status_code == 401
    assert bridge.stored_total() == 0


@pytest.mark.parametrize(
    "header",
    [None, "", "sha256=", "sha1=" + "a" * 40, "sha256=" + "z" * 64, "sha256=" + "a" * 63, "abc"],
)
def test_missing_or_malformed_header(bridge: Bridge, header: str | None) -> None:
    body = json.dumps(text_message("Hallo")).encode()
    headers = {} if header is None else {"X-Hub-Signature-256": header}
    r = bridge.client.post("/webhook", content=body, headers=headers)
    assert r.status_code == 401
    assert bridge.stored_total() == 0


def test_wrong_secret(bridge: Bridge) -> None:
    r = bridge.post(text_message("Hallo"), secret="not-the-app-secret")
    assert r.status_code == 401
    assert bridge.stored_total() == 0
    assert bridge.rt.metrics.value("wagw_webhook_rejected_total", reason="signature_mismatch") == 1


def test_uppercase_hex_signature_accepted(bridge: Bridge) -> None:
    body = json.dumps(text_message("Hallo")).encode()
    header = "sha256=" + sign(body)[7:].upper()
    assert (
        bridge.client.post(
            "/webhook", content=body, headers={"X-Hub-Signature-256": header}
        ).status_code
        == 200
    )


@pytest.mark.parametrize(
    "raw", [b"{not json", b"\xff\xfe\x00", b"", b'{"a": 1', b"[1,2]", b'"str"']
)
def test_malformed_json_400(bridge: Bridge, raw: bytes) -> None:
    r = bridge.post(None, raw=raw)
    assert r.status_code == 400
    assert bridge.stored_total() == 0


def test_body_over_limit_content_length(bridge: Bridge) -> None:
    limit = bridge.rt.settings.max_body_bytes
    body = b'{"pad": "' + b"x" * limit + b'"}'
    r = bridge.client.post("/webhook", content=body, headers={"X-Hub-Signature-256": sign(body)})
    assert r.status_code == 413
    assert bridge.stored_total() == 0


def test_body_over_limit_streamed(bridge: Bridge) -> None:
    """No Content-Length (chunked): the stream is cut off once it passes the limit."""
    limit = bridge.rt.settings.max_body_bytes
    body = b'{"pad": "' + b"x" * (limit + 10) + b'"}'

    def gen():
        for i in range(0, len(body), 8192):
            yield body[i : i + 8192]

    r = bridge.client.post("/webhook", content=gen(), headers={"X-Hub-Signature-256": sign(body)})
    assert r.status_code == 413
    assert bridge.stored_total() == 0


def test_configurable_limit(database: str, tmp_path, clock) -> None:
    s = make_settings(database, tmp_path, max_body_bytes=2048)
    with TestClient(create_app(s, clock=clock)) as c:
        body = json.dumps(text_message("x" * 3000)).encode()
        r = c.post("/webhook", content=body, headers={"X-Hub-Signature-256": sign(body)})
        assert r.status_code == 413
        body = json.dumps(text_message("x" * 100)).encode()
        r = c.post("/webhook", content=body, headers={"X-Hub-Signature-256": sign(body)})
        assert r.status_code == 200


def test_redelivery_stored_once(bridge: Bridge) -> None:
    payload = text_message("Hallo")
    first = bridge.post(payload)
    second = bridge.post(payload)
    assert first.status_code == second.status_code == 200
    assert second.json()["duplicates"] == 1
    assert second.json()["stored"] == 0
    assert bridge.count("event") == 1
    assert bridge.count("raw_payload") == 1
    # the same message inside a differently serialised delivery is still a duplicate
    third = bridge.post(None, raw=json.dumps(payload, indent=2).encode())
    assert third.status_code == 200
    assert third.json()["duplicates"] == 1
    assert bridge.count("event") == 1


def test_status_dedupe_by_id_and_value(bridge: Bridge) -> None:
    for status in ("sent", "delivered", "delivered", "read"):
        assert bridge.post(status_update("wamid.OUT1", status)).status_code == 200
    assert bridge.count("event", "kind = 'status'") == 3


def test_call_lifecycle(bridge: Bridge) -> None:
    cid = "wacid.ABGGFjFVU2AfAgo6V-Hc5eCgK5Gh"
    connect = call_event(cid, "connect", session={"sdp_type": "offer", "sdp": "v=0..."})
    terminate = call_event(
        cid,
        "terminate",
        status="COMPLETED",
        start_time="1671644824",
        end_time="1671644944",
        duration=120,
    )
    for payload in (connect, terminate, terminate):
        assert bridge.post(payload).status_code == 200
    assert bridge.count("event", "kind = 'call' AND data_class = 'call'") == 2
    h = bridge.rt.pseudo.subject_hash("+" + USER)
    assert bridge.count("event", "kind = 'call' AND subject_hash = ? AND ref_id = ?", (h, cid)) == 2
    data = bridge.rt.reader.run(
        lambda tx: tx.one("SELECT data FROM event WHERE status LIKE 'terminate%'")
    )[0]
    assert json.loads(data)["duration"] == 120
    sdp = bridge.rt.reader.run(
        lambda tx: tx.one("SELECT data FROM event WHERE status = 'connect'")
    )[0]
    assert "v=0" not in sdp  # SDP is not kept


@pytest.mark.parametrize(
    "payload",
    [
        {"object": "page", "entry": []},
        {"object": "whatsapp_business_account", "entry": "nope"},
        {"object": "whatsapp_business_account", "entry": [{"changes": [{"field": "x"}]}]},
        {"object": "whatsapp_business_account", "entry": [1, None, {"changes": [None]}]},
        envelope("account_update", {"event": "VERIFIED_ACCOUNT"}),
        envelope("messages", {"messages": [{"type": "sticker", "from": "not a number"}, 5]}),
        envelope("messages", {"errors": [{"code": 131000}]}),
        envelope("messages", {"messages": [{"id": {"nested": True}, "timestamp": "1e400"}]}),
        {},
    ],
)
def test_unknown_shapes_stored_harmlessly(bridge: Bridge, payload) -> None:
    r = bridge.post(payload)
    assert r.status_code == 200, r.text
    assert r.json()["stored"] >= 1
    assert bridge.post(payload).json()["stored"] == 0  # and still exactly once


def test_metrics_count(bridge: Bridge) -> None:
    bridge.post(text_message("a"))
    bridge.post(text_message("b"), secret="bad")
    r = bridge.client.get("/metrics")
    assert r.status_code == 200
    assert 'wagw_webhook_deliveries_total{result="stored"} 1' in r.text
    assert 'wagw_webhook_rejected_total{reason="signature_mismatch"} 1' in r.text
    assert "wagw_webhook_duration_seconds_count 2" in r.text


def test_healthz(bridge: Bridge) -> None:
    r = bridge.client.get("/healthz")
    assert r.status_code == 200
    assert r.json()["status"] == "ok"
    assert r.json()["schema_version"] == SCHEMA_VERSION == 3


def test_secret_not_in_openapi_or_logs(bridge: Bridge, caplog) -> None:
    bridge.post(text_message("a"), secret="bad")
    bridge.post(text_message("START"))
    text = bridge.client.get("/openapi.json").text + caplog.text
    assert APP_SECRET not in text
    assert USER not in caplog.text
