"""Domain logic run inside storage transactions: ingest, consent ledger, GDPR, retention.

Consent ledger rules (append-only; the current state is derived from the latest entry by
``occurred_at``, then ``id``):

* opt-in keyword (``START``) or opt-in button -> ``requested`` + a confirmation request is
  queued to the user (outbox), unless consent is already ``confirmed``;
* confirm keyword (``JA``/``YES``) or confirm button -> ``confirmed`` only while a request is
  pending and not older than ``confirmation_window_hours`` (a bare "JA" is not consent);
* stop keyword (``STOP``) or opt-out button -> ``revoked`` (if requested/confirmed), and an
  acknowledgement is queued;
* call permission replies are kept as their own records (``call_permission``), with expiry.
  A temporary permission without ``expiration_timestamp`` expires 7 days after the reply
  (Meta: temporary permissions last 168 hours).

Every ledger row keeps subject (E.164), subject_hash, time, channel, wording version, purpose
and the dedupe key of the source event, so it serves as proof.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from .config import Settings
from .db import Tx
from .events import Event
from .observability import Pseudonymizer

TEMPORARY_PERMISSION_SECONDS = 7 * 24 * 3600
OPTIN_ACTIONS = ("requested", "confirmed", "revoked")


# One encoder for every row: json.dumps() with these arguments builds a new one per call.
_ENCODER = json.JSONEncoder(separators=(",", ":"), sort_keys=True, default=str)


def dumps(obj: Any) -> str:
    return _ENCODER.encode(obj)


RAW_COLUMNS = ("id", "received_at", "body")
EVENT_COLUMNS = (
    "dedupe_key",
    "kind",
    "data_class",
    "subject_hash",
    "business_number",
    "ref_id",
    "status",
    "direction",
    "occurred_at",
    "received_at",
    "payload_id",
    "data",
)


@dataclass(frozen=True)
class OutboundMessage:
    recipient: str  # E.164
    kind: str  # optin_request | optout_ack | optin_ack
    body: dict[str, Any]  # Graph API /messages request body
    source_event: str
    business_number: str | None = None  # E.164 the user wrote to; it answers


class MessageSender(Protocol):
    """Where outbound WhatsApp messages go. Called inside the ingest transaction."""

    def send(self, tx: Tx, msg: OutboundMessage, subject_hash: str, now: int) -> None: ...


class OutboxSender:
    """Default sender: records the Graph API request in the ``outbox`` table (state queued).

    Sending happens outside the webhook's transaction: ``wagw-bridge dispatch``
    (:mod:`wagw_bridge.dispatch`) posts queued rows to ``/{phone-number-id}/messages``.
    """

    def send(self, tx: Tx, msg: OutboundMessage, subject_hash: str, now: int) -> None:
        tx.insert_ignore(
            "outbox",
            {
                "subject_hash": subject_hash,
                "recipient": msg.recipient,
                "kind": msg.kind,
                "body": dumps(msg.body),
                "state": "queued",
                "source_event": msg.source_event,
                "business_number": msg.business_number,
                "created_at": now,
            },
        )


class IngestWork:
    """One delivery's rows, built outside the transaction. Called with a transaction it stores
    that delivery alone; the group-commit writer hands a batch of them to ``run_batch``."""

    __slots__ = ("domain", "events", "hashes", "now", "raw", "rows")

    def __init__(
        self,
        domain: Domain,
        events: list[Event],
        hashes: list[str | None],
        rows: list[tuple[Any, ...]],
        raw: tuple[str, int, str],
        now: int,
    ) -> None:
        self.domain = domain
        self.events = events
        self.hashes = hashes
        self.rows = rows
        self.raw = raw
        self.now = now

    @property
    def run_batch(self) -> Callable[[Tx, Sequence[IngestWork]], list[IngestResult]]:
        return self.domain.ingest_batch

    def __call__(self, tx: Tx) -> IngestResult:
        return self.domain.ingest_batch(tx, [self])[0]


@dataclass
class IngestResult:
    events: int
    stored: int
    duplicates: int
    kinds: list[tuple[str, bool]]
    ledger: list[tuple[str, str]]  # (action, pseudonym) for logging


class Domain:
    def __init__(
        self, settings: Settings, pseudo: Pseudonymizer, sender: MessageSender | None = None
    ) -> None:
        self.s = settings
        self.pseudo = pseudo
        self.sender: MessageSender = sender or OutboxSender()

    # ----------------------------------------------------------------- ingest
    def ingest_work(self, events: list[Event], raw_id: str, body: str, now: int) -> IngestWork:
        # Rows are built here, by the caller, and not in the transaction: with several worker
        # processes the transactions of all of them run one at a time, so only SQL goes there.
        hashes = [self.pseudo.subject_hash(ev.subject) if ev.subject else None for ev in events]
        rows = [
            (
                ev.dedupe_key[:512],
                ev.kind,
                ev.data_class,
                shash,
                ev.business_number,
                ev.ref_id,
                ev.status,
                ev.direction,
                ev.occurred_at,
                now,
                raw_id,
                dumps(ev.data),
            )
            for ev, shash in zip(events, hashes, strict=True)
        ]
        return IngestWork(self, events, hashes, rows, (raw_id, now, body), now)

    def ingest_batch(self, tx: Tx, works: Sequence[IngestWork]) -> list[IngestResult]:
        """Store the deliveries of one group-commit batch: all raw payloads with one statement,
        all events with one (see :meth:`Tx.insert_each_ignore`), then the consent ledger for
        the events that were new, in delivery order. The same rows and ledger entries as one
        delivery after the other (nothing here reads ``event`` or ``raw_payload``)."""
        with tx.pipeline():  # PostgreSQL: BEGIN and both INSERTs in one round trip
            tx.insert_many_ignore("raw_payload", RAW_COLUMNS, [w.raw for w in works])
            new_flags = tx.insert_each_ignore(
                "event", EVENT_COLUMNS, [row for w in works for row in w.rows]
            )
        results: list[IngestResult] = []
        pos = 0
        for w in works:
            res = IngestResult(len(w.events), 0, 0, [], [])
            for ev, shash in zip(w.events, w.hashes, strict=True):
                new = new_flags[pos]
                pos += 1
                res.kinds.append((ev.kind, new))
                if not new:
                    res.duplicates += 1
                    continue
                res.stored += 1
                if ev.kind == "status" and ev.ref_id:
                    self._track_delivery(tx, ev)
                if ev.subject and shash:
                    action = self._apply_consent(tx, ev, ev.subject, shash, w.now)
                    if action:
                        res.ledger.append((action, shash[:16]))
            results.append(res)
        return results

    @staticmethod
    def _track_delivery(tx: Tx, ev: Event) -> None:
        """A status webhook about a message of ours (its wamid) updates that outbox row: the
        proof that the confirmation request reached the user. Statuses may arrive out of
        order; the latest by Meta's timestamp wins."""
        error = None
        errors = ev.data.get("errors") if isinstance(ev.data, dict) else None
        if ev.status == "failed" and isinstance(errors, list) and errors:
            first = errors[0] if isinstance(errors[0], dict) else {}
            error = f"delivery failed: code {first.get('code')}: {first.get('title', '')}"[:200]
        tx.execute(
            "UPDATE outbox SET delivery_status = ?, delivery_status_at = ?,"
            " last_error = COALESCE(?, last_error)"
            " WHERE wamid = ? AND COALESCE(delivery_status_at, 0) <= ?",
            (ev.status, ev.occurred_at, error, ev.ref_id, ev.occurred_at),
        )

    def _intent(self, ev: Event) -> str | None:
        s = self.s
        if ev.button_id is not None:
            bid = ev.button_id.upper()
            if bid in s.stop_button_ids:
                return "stop"
            if bid in s.confirm_button_ids:
                return "confirm"
            if bid in s.optin_button_ids:
                return "optin"
        if ev.text:
            if ev.text in s.stop_keywords:
                return "stop"
            if ev.text in s.confirm_keywords:
                return "confirm"
            if ev.text in s.optin_keywords:
                return "optin"
        return None

    def _apply_consent(self, tx: Tx, ev: Event, subject: str, shash: str, now: int) -> str | None:
        if ev.kind == "call_permission":
            p = ev.permission
            expires = p.get("expires_at")
            if p.get("response") == "accept" and not p.get("is_permanent") and not expires:
                expires = ev.occurred_at + TEMPORARY_PERMISSION_SECONDS
            tx.insert_ignore(
                "call_permission",
                {
                    "subject_hash": shash,
                    "subject": subject,
                    "business_number": ev.business_number,
                    "response": str(p.get("response"))[:32],
                    "is_permanent": 1 if p.get("is_permanent") else 0,
                    "expires_at": expires,
                    "response_source": p.get("response_source"),
                    "channel": ev.channel or "whatsapp-call-permission",
                    "source_event": ev.dedupe_key,
                    "occurred_at": ev.occurred_at,
                    "recorded_at": now,
                },
            )
            return f"call_permission:{p.get('response')}"
        if ev.kind != "message":
            return None
        intent = self._intent(ev)
        if intent is None:
            return None
        tx.lock_subject(shash)
        state, since = self.optin_state(tx, shash)
        channel = ev.channel or "whatsapp"
        evidence = {
            "message_id": ev.ref_id,
            "matched": ev.button_id if ev.button_id is not None else ev.text,
            "business_number": ev.business_number,
        }
        if intent == "stop":
            if state not in ("requested", "confirmed"):
                return None
            self._append(tx, shash, subject, "revoked", channel, ev, now, evidence)
            self._send(
                tx, subject, shash, "optout_ack", self._text_body(subject, "STOP ok"), ev, now
            )
            return "revoked"
        if intent == "optin":
            if state == "confirmed":
                return None
            self._append(tx, shash, subject, "requested", channel, ev, now, evidence)
            self._send(tx, subject, shash, "optin_request", self._confirm_body(subject), ev, now)
            return "requested"
        # confirm
        window = self.s.confirmation_window_hours * 3600
        if state != "requested" or since is None or ev.occurred_at - since > window:
            return None
        self._append(tx, shash, subject, "confirmed", channel, ev, now, evidence)
        return "confirmed"

    def _append(
        self,
        tx: Tx,
        shash: str,
        subject: str | None,
        action: str,
        channel: str,
        ev: Event | None,
        now: int,
        evidence: dict[str, Any] | None,
        source: str | None = None,
        occurred_at: int | None = None,
    ) -> None:
        tx.insert_ignore(
            "consent_ledger",
            {
                "subject_hash": shash,
                "subject": subject,
                "action": action,
                "purpose": self.s.consent_purpose,
                "channel": channel,
                "wording_version": self.s.wording_version,
                "source_event": source or (ev.dedupe_key if ev else "manual"),
                "occurred_at": occurred_at or (ev.occurred_at if ev else now),
                "recorded_at": now,
                "evidence": dumps(evidence) if evidence else None,
            },
        )

    def _send(
        self,
        tx: Tx,
        subject: str,
        shash: str,
        kind: str,
        body: dict[str, Any],
        ev: Event,
        now: int,
    ) -> None:
        msg = OutboundMessage(subject, kind, body, ev.dedupe_key, ev.business_number)
        self.sender.send(tx, msg, shash, now)

    def _confirm_body(self, subject: str) -> dict[str, Any]:
        s = self.s
        return {
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": subject.lstrip("+"),
            "type": "interactive",
            "interactive": {
                "type": "button",
                "body": {"text": s.optin_wording[:1024]},
                "action": {
                    "buttons": [
                        {
                            "type": "reply",
                            "reply": {
                                "id": s.confirm_button_ids[0],
                                "title": s.confirm_keywords[0],
                            },
                        },
                        {
                            "type": "reply",
                            "reply": {"id": s.stop_button_ids[0], "title": s.stop_keywords[0]},
                        },
                    ]
                },
            },
            "biz_opaque_callback_data": f"wording:{s.wording_version}",
        }

    @staticmethod
    def _text_body(subject: str, text: str) -> dict[str, Any]:
        return {
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": subject.lstrip("+"),
            "type": "text",
            "text": {"body": text},
        }

    # ----------------------------------------------------------------- queries
    def optin_state(self, tx: Tx, shash: str) -> tuple[str, int | None]:
        row = tx.one(
            "SELECT action, occurred_at FROM consent_ledger WHERE subject_hash = ? AND purpose = ?"
            " ORDER BY occurred_at DESC, id DESC LIMIT 1",
            (shash, self.s.consent_purpose),
        )
        if row is None:
            return "none", None
        return str(row[0]), int(row[1])

    def latest_permission(self, tx: Tx, shash: str, business: str | None) -> dict[str, Any] | None:
        sql = (
            "SELECT response, is_permanent, expires_at, occurred_at, business_number"
            " FROM call_permission WHERE subject_hash = ?"
        )
        params: list[Any] = [shash]
        if business:
            sql += " AND business_number = ?"
            params.append(business)
        row = tx.one(sql + " ORDER BY occurred_at DESC, id DESC LIMIT 1", params)
        if row is None:
            return None
        return {
            "response": row[0],
            "is_permanent": bool(row[1]),
            "expires_at": row[2],
            "occurred_at": row[3],
            "business_number": row[4],
        }

    def consent_decision(
        self, tx: Tx, shash: str, now: int, business: str | None = None
    ) -> dict[str, Any]:
        state, since = self.optin_state(tx, shash)
        perm = self.latest_permission(tx, shash, business)
        reason = "ok"
        if state == "none":
            reason = "no-opt-in"
        elif state == "requested":
            reason = "opt-in-pending"
        elif state == "revoked":
            reason = "opt-in-revoked"
        elif perm is None:
            reason = "no-call-permission"
        elif perm["response"] != "accept":
            reason = "call-permission-rejected"
        elif not perm["is_permanent"] and (perm["expires_at"] is None or perm["expires_at"] <= now):
            reason = "call-permission-expired"
        return {
            "allow": reason == "ok",
            "reason": reason,
            "opt_in": {"state": state, "since": since},
            "call_permission": perm,
        }

    # ----------------------------------------------------------------- GDPR
    def export(self, tx: Tx, subject: str, now: int) -> dict[str, Any]:
        shash = self.pseudo.subject_hash(subject)

        def rows(sql: str) -> list[dict[str, Any]]:
            cur = tx.execute(sql, (shash,))
            names = [d[0] for d in cur.description]  # type: ignore[attr-defined]
            return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]

        events = rows(
            "SELECT id, dedupe_key, kind, data_class, business_number, ref_id, status, direction,"
            " occurred_at, received_at, payload_id, data FROM event WHERE subject_hash = ?"
            " ORDER BY occurred_at, id"
        )
        for ev in events:
            ev["data"] = json.loads(ev["data"])
        payload_ids = sorted({e["payload_id"] for e in events if e["payload_id"]})
        raws = []
        for pid in payload_ids:
            r = tx.one("SELECT id, received_at, body FROM raw_payload WHERE id = ?", (pid,))
            if r is not None:
                raws.append({"id": r[0], "received_at": r[1], "body": json.loads(r[2])})
        ledger = rows(
            "SELECT id, subject, action, purpose, channel, wording_version, source_event,"
            " occurred_at, recorded_at, evidence FROM consent_ledger WHERE subject_hash = ?"
            " ORDER BY occurred_at, id"
        )
        for entry in ledger:
            entry["evidence"] = json.loads(entry["evidence"]) if entry["evidence"] else None
        perms = rows(
            "SELECT id, subject, business_number, response, is_permanent, expires_at,"
            " response_source, channel, source_event, occurred_at, recorded_at"
            " FROM call_permission WHERE subject_hash = ? ORDER BY occurred_at, id"
        )
        outbox = rows(
            "SELECT id, recipient, business_number, kind, body, state, source_event, created_at,"
            " sent_at, attempts, last_error, wamid, delivery_status, delivery_status_at"
            " FROM outbox WHERE subject_hash = ? ORDER BY id"
        )
        for msg in outbox:
            msg["body"] = json.loads(msg["body"])
        return {
            "subject": subject,
            "subject_hash": shash,
            "generated_at": now,
            "consent": self.consent_decision(tx, shash, now),
            "consent_ledger": ledger,
            "call_permissions": perms,
            "events": events,
            "raw_payloads": raws,
            "outbox": outbox,
        }

    def erase(self, tx: Tx, subject: str, now: int) -> dict[str, int]:
        """Art. 17 erasure. Consent proof (ledger, call permissions) is kept, pseudonymised."""
        shash = self.pseudo.subject_hash(subject)
        counts: dict[str, int] = {}
        counts["raw_payloads_deleted"] = tx.execute(
            "DELETE FROM raw_payload WHERE id IN"
            " (SELECT payload_id FROM event WHERE subject_hash = ? AND payload_id IS NOT NULL)",
            (shash,),
        ).rowcount
        counts["events_deleted"] = tx.execute(
            "DELETE FROM event WHERE subject_hash = ?", (shash,)
        ).rowcount
        counts["outbox_deleted"] = tx.execute(
            "DELETE FROM outbox WHERE subject_hash = ?", (shash,)
        ).rowcount
        tx.lock_subject(shash)
        state, since = self.optin_state(tx, shash)
        counts["consent_revoked"] = 0
        if state in ("requested", "confirmed"):
            self._append(
                tx, shash, None, "revoked", "erasure-request", None, now,
                {"reason": "GDPR Art. 17 erasure request"}, source=f"erasure:{now}",
                occurred_at=max(now, since or now),  # never sorts before the consent it ends
            )  # fmt: skip
            counts["consent_revoked"] = 1
        counts["consent_records_pseudonymised"] = tx.execute(
            "UPDATE consent_ledger SET subject = NULL WHERE subject_hash = ? AND subject IS NOT NULL",
            (shash,),
        ).rowcount
        counts["call_permissions_pseudonymised"] = tx.execute(
            "UPDATE call_permission SET subject = NULL WHERE subject_hash = ? AND subject IS NOT NULL",
            (shash,),
        ).rowcount
        return counts

    # ----------------------------------------------------------------- retention
    def purge(
        self, tx: Tx, now: int, raw_days: int, call_days: int, consent_days: int
    ) -> dict[str, int]:
        day = 86400
        raw_cut, call_cut, consent_cut = (
            now - raw_days * day,
            now - call_days * day,
            now - (consent_days * day),
        )
        out: dict[str, int] = {}
        out["raw_payloads"] = tx.execute(
            "DELETE FROM raw_payload WHERE received_at < ?", (raw_cut,)
        ).rowcount
        out["raw_events"] = tx.execute(
            "DELETE FROM event WHERE data_class = 'raw' AND received_at < ?", (raw_cut,)
        ).rowcount
        out["outbox"] = tx.execute("DELETE FROM outbox WHERE created_at < ?", (raw_cut,)).rowcount
        out["call_records"] = tx.execute(
            "DELETE FROM event WHERE data_class = 'call' AND received_at < ?", (call_cut,)
        ).rowcount
        # Consent proof: a subject's chain goes once its latest entry is not 'confirmed'
        # (revoked, or a request never confirmed) and that entry is older than the period.
        candidates = tx.all(
            "SELECT subject_hash, purpose, MAX(occurred_at) FROM consent_ledger"
            " GROUP BY subject_hash, purpose HAVING MAX(occurred_at) < ?",
            (consent_cut,),
        )
        consent = 0
        for shash, purpose, _last in candidates:
            latest = tx.one(
                "SELECT action FROM consent_ledger WHERE subject_hash = ? AND purpose = ?"
                " ORDER BY occurred_at DESC, id DESC LIMIT 1",
                (shash, purpose),
            )
            if latest is not None and latest[0] != "confirmed":
                consent += tx.execute(
                    "DELETE FROM consent_ledger WHERE subject_hash = ? AND purpose = ?",
                    (shash, purpose),
                ).rowcount
        out["consent_proof"] = consent
        out["call_permissions"] = tx.execute(
            "DELETE FROM call_permission WHERE"
            " (expires_at IS NOT NULL AND expires_at < ?)"
            " OR (response <> 'accept' AND occurred_at < ?)"
            " OR EXISTS (SELECT 1 FROM call_permission later"
            "   WHERE later.subject_hash = call_permission.subject_hash"
            "   AND COALESCE(later.business_number, '') = COALESCE(call_permission.business_number, '')"
            "   AND later.occurred_at > call_permission.occurred_at AND later.occurred_at < ?)",
            (consent_cut, consent_cut, consent_cut),
        ).rowcount
        return out
