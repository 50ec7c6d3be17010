"""Domain logic run inside storage transactions: ingest, consent ledger, GDPR, retention.

People and identifiers: a WhatsApp user is known by phone number and/or business-scoped user
ID (BSUID). Each identifier has a keyed hash; ``identity`` maps it to the person it belongs to
(an identifier without a row is a person of its own, keyed by its hash). A delivery that names
both identifiers of a user (``from`` and ``from_user_id``, ``wa_id`` and ``user_id``, ...)
links them: their persons become one, ledger and call permissions included (``identity_link``
keeps the proof). Every consent decision is about the person, whichever identifier it came
with: a STOP sent by a user with a username (BSUID only) revokes the consent that was given
from the phone number.

Consent ledger rules (append-only; the current state is the person's latest entry by
``occurred_at``, then ``id``):

* opt-in keyword (``START``) or opt-in button -> ``requested`` + a confirmation request is
  queued to the user (outbox), unless consent is already ``confirmed``;
* confirm keyword (``JA``/``YES``) or confirm button -> ``confirmed`` only while a request is
  pending and not older than ``confirmation_window_hours`` (a bare "JA" is not consent);
* stop keyword (``STOP``) or opt-out button -> ``revoked`` unless already revoked (also
  without a known consent: the identifier may later turn out to be a consenting person's),
  and an acknowledgement is queued if a consent was live;
* call permission replies are kept as their own records (``call_permission``), with expiry.
  A temporary permission without ``expiration_timestamp`` expires 7 days after the reply
  (Meta: temporary permissions last 168 hours);
* a number change (system message ``user_changed_number``) or BSUID change
  (``user_changed_user_id``, which Meta sends when the number changed) -> ``revoked``
  (channel ``number-change`` / ``user-id-change``) if a consent was live, an accepted call
  permission ends, the old identifiers leave the person (a number may be given to someone
  else) and the new ones join it: the person must opt in again (README: "Number changes").

Every ledger row keeps subject (the identifier it came with, E.164 or BSUID), subject_hash,
person, time, channel, wording version, purpose, privacy and imprint URLs and the dedupe key
of the source event, so it serves as proof.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from .config import Settings
from .db import Tx
from .events import Event
from .observability import Pseudonymizer, is_bsuid

TEMPORARY_PERMISSION_SECONDS = 7 * 24 * 3600
OPTIN_ACTIONS = ("requested", "confirmed", "revoked")
# Delivery statuses of a message, in the order they happen; "failed" is final.
STATUS_RANK = {"sent": 1, "delivered": 2, "read": 3, "failed": 4}
_RANK_SQL = (
    "CASE delivery_status WHEN 'sent' THEN 1 WHEN 'delivered' THEN 2 WHEN 'read' THEN 3"
    " WHEN 'failed' THEN 4 ELSE 0 END"
)
# Pairs (phone hash + BSUID hash) this process has linked already: a delivery from a known pair
# costs no statement. Bounded; cleared when full.
_LINK_CACHE_MAX = 100_000
ERASED = "[erased]"


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
# Every text column of every table, with the table's key: erasure and export search them all
# for the clear identifiers (tests/test_erasure.py checks this list against the schema).
TEXT_COLUMNS: dict[str, tuple[str, tuple[str, ...]]] = {
    "raw_payload": ("id", ("id", "body")),
    "event": (
        "id",
        (
            "dedupe_key",
            "kind",
            "data_class",
            "subject_hash",
            "business_number",
            "ref_id",
            "status",
            "direction",
            "payload_id",
            "data",
        ),
    ),
    "consent_ledger": (
        "id",
        (
            "subject_hash",
            "subject",
            "action",
            "purpose",
            "channel",
            "wording_version",
            "source_event",
            "evidence",
            "person",
            "privacy_url",
            "imprint_url",
        ),
    ),
    "call_permission": (
        "id",
        (
            "subject_hash",
            "subject",
            "business_number",
            "response",
            "response_source",
            "channel",
            "source_event",
            "person",
        ),
    ),
    "outbox": (
        "id",
        (
            "subject_hash",
            "recipient",
            "kind",
            "body",
            "state",
            "source_event",
            "business_number",
            "last_error",
            "wamid",
            "delivery_status",
        ),
    ),
    "identity": ("hash", ("hash", "kind", "value", "person", "source_event")),
    "identity_link": ("id", ("hash_a", "hash_b", "kind", "source_event")),
    "consent_use": ("id", ("person", "subject_hash", "ref_id")),
}


@dataclass(frozen=True)
class OutboundMessage:
    recipient: str  # E.164, or the BSUID of a user whose number Meta did not send
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

    __slots__ = ("bhashes", "domain", "events", "hashes", "now", "raw", "rows")

    def __init__(
        self,
        domain: Domain,
        events: list[Event],
        hashes: list[str | None],
        rows: list[tuple[Any, ...]],
        raw: tuple[str, int, str],
        now: int,
        bhashes: list[str | None] | None = None,
    ) -> None:
        self.domain = domain
        self.events = events
        self.hashes = hashes  # per event: the subject hash (phone if known, else BSUID)
        self.bhashes = bhashes  # per event: the BSUID's hash, when both identifiers came
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


def _identifier_pattern(identifier: str) -> re.Pattern[str]:
    """Where an identifier occurs in stored text: a number with or without ``+`` but not inside
    a longer digit string, a BSUID not inside a longer ID."""
    if is_bsuid(identifier):
        return re.compile(r"(?<![A-Za-z0-9.])" + re.escape(identifier) + r"(?![A-Za-z0-9])")
    return re.compile(r"(?<![0-9])\+?" + re.escape(identifier.lstrip("+")) + r"(?![0-9])")


def _needle(identifier: str) -> str:
    """The LIKE pattern that finds every candidate row (a superset; the regex decides)."""
    return "%" + (identifier if is_bsuid(identifier) else identifier.lstrip("+")) + "%"


class Domain:
    def __init__(
        self, settings: Settings, pseudo: Pseudonymizer, sender: MessageSender | None = None
    ) -> None:
        self.s = settings
        self.pseudo = pseudo
        self.sender: MessageSender = sender or OutboxSender()
        self._linked: set[str] = set()

    # ----------------------------------------------------------------- ingest
    def ingest_work(self, events: list[Event], raw_id: str, body: str, now: int) -> IngestWork:
        # Rows are built here, by the caller, and not in the transaction: with several worker
        # processes the transactions of all of them run one at a time, so only SQL goes there.
        subject_hash = self.pseudo.subject_hash
        hashes: list[str | None] = []
        bhashes: list[str | None] | None = None
        for i, ev in enumerate(events):
            if ev.subject:
                hashes.append(subject_hash(ev.subject))
                if ev.bsuid:
                    if bhashes is None:
                        bhashes = [None] * len(events)
                    bhashes[i] = subject_hash(ev.bsuid)
            elif ev.bsuid:
                hashes.append(subject_hash(ev.bsuid))
            else:
                hashes.append(None)
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
        return IngestWork(self, events, hashes, rows, (raw_id, now, body), now, bhashes)

    def ingest_batch(self, tx: Tx, works: Sequence[IngestWork]) -> list[IngestResult]:
        """Store the deliveries of one group-commit batch: all raw payloads with one statement,
        all events with one (see :meth:`Tx.insert_each_ignore`), then identities and the consent
        ledger for the events that were new, in delivery order. The same rows and ledger
        entries as one delivery after the other (nothing here reads ``event`` or
        ``raw_payload``)."""
        with tx.pipeline():  # PostgreSQL: BEGIN and both INSERTs in one round trip
            tx.insert_many_ignore("raw_payload", RAW_COLUMNS, [w.raw for w in works])
            new_flags = tx.insert_each_ignore(
                "event", EVENT_COLUMNS, [row for w in works for row in w.rows]
            )
        results: list[IngestResult] = []
        pos = 0
        for w in works:
            res = IngestResult(len(w.events), 0, 0, [], [])
            bhashes = w.bhashes
            for i, (ev, shash) in enumerate(zip(w.events, w.hashes, strict=True)):
                new = new_flags[pos]
                pos += 1
                res.kinds.append((ev.kind, new))
                if not new:
                    res.duplicates += 1
                    continue
                res.stored += 1
                if ev.kind == "status" and ev.ref_id:
                    self._track_delivery(tx, ev)
                if shash is None:
                    continue
                if bhashes is not None and bhashes[i] is not None:
                    self._link(tx, ev, shash, bhashes[i] or "", w.now)
                if ev.kind == "system":
                    action = self._identity_change(tx, ev, shash, w.now)
                else:
                    action = self._apply_consent(tx, ev, shash, w.now)
                if action:
                    res.ledger.append((action, shash[:16]))
                if ev.kind == "call_status" or (
                    ev.kind == "call" and ev.direction == "BUSINESS_INITIATED"
                ):
                    self._record_use(tx, ev, shash, w.now)
            results.append(res)
        return results

    def _track_delivery(self, tx: Tx, ev: Event) -> None:
        """A status webhook about a message of ours (its wamid) updates that outbox row: the
        proof that the confirmation request reached the user. Meta does not guarantee the
        order: the latest by Meta's timestamp wins, and at equal timestamps the later stage
        (sent < delivered < read); ``failed`` is final."""
        error = None
        errors = ev.data.get("errors") if isinstance(ev.data, dict) else None
        if ev.status == "failed" and isinstance(errors, list) and errors:
            first = errors[0] if isinstance(errors[0], dict) else {}
            error = f"delivery failed: code {first.get('code')}: {first.get('title', '')}"[:200]
        rank = STATUS_RANK.get(ev.status or "", 0)
        tx.execute(
            "UPDATE outbox SET delivery_status = ?, delivery_status_at = ?,"
            " last_error = COALESCE(?, last_error)"
            " WHERE wamid = ? AND COALESCE(delivery_status, '') <> 'failed'"
            " AND (? = 'failed' OR COALESCE(delivery_status_at, 0) < ?"
            f" OR (COALESCE(delivery_status_at, 0) = ? AND {_RANK_SQL} <= ?))",
            (
                ev.status,
                ev.occurred_at,
                error,
                ev.ref_id,
                ev.status,
                ev.occurred_at,
                ev.occurred_at,
                rank,
            ),
        )

    # ----------------------------------------------------------------- identities
    def person_of(self, tx: Tx, shash: str) -> str:
        """The key of the person an identifier (its hash) belongs to now."""
        row = tx.one("SELECT person FROM identity WHERE hash = ?", (shash,))
        return str(row[0]) if row is not None else shash

    def _lock_person(self, tx: Tx, shash: str) -> str:
        """Lock the identifier's person (PostgreSQL: advisory lock) and return its key, stable
        under the lock (a link may have moved the identifier meanwhile)."""
        person = self.person_of(tx, shash)
        while True:
            tx.lock_subject(person)
            again = self.person_of(tx, shash)
            if again == person:
                return person
            person = again

    def _merge(self, tx: Tx, old: str, new: str) -> None:
        """Two persons are one: everything of ``old`` becomes ``new``'s."""
        for table in ("identity", "consent_ledger", "call_permission", "consent_use"):
            tx.execute(f"UPDATE {table} SET person = ? WHERE person = ?", (new, old))

    def _set_identity(
        self,
        tx: Tx,
        shash: str,
        identifier: str,
        person: str,
        ev: Event,
        retired_at: int | None = None,
    ) -> None:
        tx.execute(
            "INSERT INTO identity (hash, kind, value, person, first_seen, retired_at,"
            " source_event) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (hash) DO UPDATE SET"
            " person = excluded.person, retired_at = excluded.retired_at,"
            " value = COALESCE(identity.value, excluded.value)",
            (
                shash,
                "bsuid" if is_bsuid(identifier) else "phone",
                identifier,
                person,
                ev.occurred_at,
                retired_at,
                ev.dedupe_key,
            ),
        )

    def _link_row(self, tx: Tx, a: str, b: str, kind: str, ev: Event, now: int) -> None:
        tx.insert_ignore(
            "identity_link",
            {
                "hash_a": a,
                "hash_b": b,
                "kind": kind,
                "source_event": ev.dedupe_key,
                "occurred_at": ev.occurred_at,
                "recorded_at": now,
            },
        )

    def _link(self, tx: Tx, ev: Event, phash: str, bhash: str, now: int) -> None:
        """A delivery named the user's number and BSUID together: one person."""
        key = phash + bhash
        if key in self._linked:
            return
        pa, pb = self.person_of(tx, phash), self.person_of(tx, bhash)
        for person in sorted({pa, pb}):
            tx.lock_subject(person)
        ra = tx.one("SELECT person FROM identity WHERE hash = ?", (phash,))
        rb = tx.one("SELECT person FROM identity WHERE hash = ?", (bhash,))
        if ra is None or rb is None or ra[0] != rb[0]:
            survivor = str(ra[0]) if ra is not None else phash
            other = str(rb[0]) if rb is not None else bhash
            assert ev.subject is not None
            assert ev.bsuid is not None
            if ra is None:
                self._set_identity(tx, phash, ev.subject, survivor, ev)
            if other != survivor:
                self._merge(tx, other, survivor)
            if rb is None:
                self._set_identity(tx, bhash, ev.bsuid, survivor, ev)
            self._link_row(tx, phash, bhash, "link", ev, now)
        if len(self._linked) >= _LINK_CACHE_MAX:
            self._linked.clear()
        self._linked.add(key)

    def _identity_change(self, tx: Tx, ev: Event, shash: str, now: int) -> str | None:
        """``user_changed_number`` / ``user_changed_user_id`` (see the module docstring)."""
        h = self.pseudo.subject_hash
        person = self._lock_person(tx, shash)
        new_ids = [i for i in (ev.new_subject, ev.new_bsuid) if i]
        new_hashes = [h(i) for i in new_ids]
        evidence = {
            "message_id": ev.ref_id,
            "system_type": ev.status,
            "new_identifiers": ["p:" + nh[:16] for nh in new_hashes],
        }
        action = None
        state, _ = self.optin_state(tx, person)
        if state in ("requested", "confirmed"):
            channel = ev.channel or "number-change"
            subject = ev.subject or ev.bsuid
            self._append(tx, person, shash, subject, "revoked", channel, ev, now, evidence)
            action = "revoked"
        perm = self.latest_permission(tx, person, None)
        if perm is not None and perm["response"] == "accept":
            self._permission_row(
                tx, person, shash, ev.subject or ev.bsuid, ev, now, response="ended",
                channel=ev.channel or "number-change", expires=ev.occurred_at,
            )  # fmt: skip
        # The old identifiers leave the person; each becomes a person of its own.
        old: list[tuple[str, str]] = [(h(i), i) for i in (ev.subject, ev.bsuid) if i]
        if ev.status == "user_changed_user_id":
            # Meta regenerates a BSUID when the user's number changed: the person's numbers
            # other than the one this message names are no longer theirs.
            keep = {h(i) for i in (ev.subject, ev.new_subject) if i}
            for row in tx.all(
                "SELECT hash, value FROM identity WHERE person = ? AND kind = 'phone'", (person,)
            ):
                if row[0] not in keep and row[1]:
                    old.append((str(row[0]), str(row[1])))
            old = [(oh, oi) for oh, oi in old if oh not in keep or is_bsuid(oi)]
        for old_hash, old_id in old:
            fresh = hashlib.sha256(f"{old_hash}:{ev.dedupe_key}".encode()).hexdigest()
            self._set_identity(tx, old_hash, old_id, fresh, ev, retired_at=ev.occurred_at)
            for nh in new_hashes:
                self._link_row(tx, old_hash, nh, ev.channel or "number-change", ev, now)
        for nh, ni in zip(new_hashes, new_ids, strict=True):
            self._set_identity(tx, nh, ni, person, ev)
        return action

    def _record_use(self, tx: Tx, ev: Event, shash: str, now: int) -> None:
        """A business-initiated call: a use of the consent (retention counts from it)."""
        if not ev.ref_id:
            return
        tx.insert_ignore(
            "consent_use",
            {
                "person": self.person_of(tx, shash),
                "subject_hash": shash,
                "ref_id": ev.ref_id,
                "used_at": ev.occurred_at,
                "recorded_at": now,
            },
        )

    # ----------------------------------------------------------------- consent
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

    def _permission_row(
        self,
        tx: Tx,
        person: str,
        shash: str,
        subject: str | None,
        ev: Event,
        now: int,
        response: str,
        channel: str,
        expires: int | None,
        is_permanent: bool = False,
        source: str | None = None,
    ) -> None:
        tx.insert_ignore(
            "call_permission",
            {
                "subject_hash": shash,
                "subject": subject,
                "person": person,
                "business_number": ev.business_number,
                "response": response[:32],
                "is_permanent": 1 if is_permanent else 0,
                "expires_at": expires,
                "response_source": source,
                "channel": channel,
                "source_event": ev.dedupe_key,
                "occurred_at": ev.occurred_at,
                "recorded_at": now,
            },
        )

    def _apply_consent(self, tx: Tx, ev: Event, shash: str, now: int) -> str | None:
        subject = ev.subject or ev.bsuid
        if ev.kind == "call_permission":
            p = ev.permission
            expires = p.get("expires_at")
            if p.get("response") == "accept" and not p.get("is_permanent") and not expires:
                expires = ev.occurred_at + TEMPORARY_PERMISSION_SECONDS
            self._permission_row(
                tx, self.person_of(tx, shash), shash, subject, ev, now,
                response=str(p.get("response")), channel=ev.channel or "whatsapp-call-permission",
                expires=expires, is_permanent=bool(p.get("is_permanent")),
                source=p.get("response_source"),
            )  # fmt: skip
            return f"call_permission:{p.get('response')}"
        if ev.kind != "message":
            return None
        intent = self._intent(ev)
        if intent is None:
            return None
        person = self._lock_person(tx, shash)
        state, since = self.optin_state(tx, person)
        channel = ev.channel or "whatsapp"
        evidence = {
            "message_id": ev.ref_id,
            "matched": ev.button_id if ev.button_id is not None else ev.text,
            "business_number": ev.business_number,
            "identifier": "bsuid" if ev.subject is None else "phone",
        }
        if intent == "stop":
            if state == "revoked":
                return None
            self._append(tx, person, shash, subject, "revoked", channel, ev, now, evidence)
            if state in ("requested", "confirmed"):
                body = self._text_body(ev, "STOP ok")
                self._send(tx, ev, shash, "optout_ack", body, now)
            return "revoked"
        if intent == "optin":
            if state == "confirmed":
                return None
            self._append(tx, person, shash, subject, "requested", channel, ev, now, evidence)
            self._send(tx, ev, shash, "optin_request", self._confirm_body(ev), now)
            return "requested"
        # confirm
        window = self.s.confirmation_window_hours * 3600
        if state != "requested" or since is None or ev.occurred_at - since > window:
            return None
        self._append(tx, person, shash, subject, "confirmed", channel, ev, now, evidence)
        return "confirmed"

    def _append(
        self,
        tx: Tx,
        person: str,
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
        s = self.s
        tx.insert_ignore(
            "consent_ledger",
            {
                "subject_hash": shash,
                "subject": subject,
                "person": person,
                "action": action,
                "purpose": s.consent_purpose,
                "channel": channel,
                "wording_version": s.wording_version,
                "privacy_url": s.privacy_url or None,
                "imprint_url": s.imprint_url or None,
                "source_event": source or (ev.dedupe_key if ev else "manual"),
                "occurred_at": occurred_at or (ev.occurred_at if ev else now),
                "recorded_at": now,
                "evidence": dumps(evidence) if evidence else None,
            },
        )

    def _send(
        self, tx: Tx, ev: Event, shash: str, kind: str, body: dict[str, Any], now: int
    ) -> None:
        recipient = ev.subject or ev.bsuid or ""
        msg = OutboundMessage(recipient, kind, body, ev.dedupe_key, ev.business_number)
        self.sender.send(tx, msg, shash, now)

    @staticmethod
    def _to(ev: Event) -> str:
        """Meta's ``to``: the number's digits, or the BSUID when Meta did not send the number
        (``to`` accepts both: "Business-scoped user IDs", "Send message requests")."""
        return ev.subject.lstrip("+") if ev.subject else (ev.bsuid or "")

    def confirmation_text(self) -> str:
        """The opt-in wording with the privacy and imprint URLs (interactive body: 1024 chars)."""
        s = self.s
        lines = []
        if s.privacy_url:
            lines.append(f"Datenschutz / Privacy: {s.privacy_url}")
        if s.imprint_url:
            lines.append(f"Impressum / Imprint: {s.imprint_url}")
        suffix = ("\n\n" + "\n".join(lines)) if lines else ""
        return s.optin_wording[: 1024 - len(suffix)] + suffix

    def _confirm_body(self, ev: Event) -> dict[str, Any]:
        s = self.s
        return {
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": self._to(ev),
            "type": "interactive",
            "interactive": {
                "type": "button",
                "body": {"text": self.confirmation_text()},
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

    def _text_body(self, ev: Event, text: str) -> dict[str, Any]:
        return {
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": self._to(ev),
            "type": "text",
            "text": {"body": text},
        }

    # ----------------------------------------------------------------- queries
    def optin_state(self, tx: Tx, person: str) -> tuple[str, int | None]:
        row = tx.one(
            "SELECT action, occurred_at FROM consent_ledger WHERE person = ? AND purpose = ?"
            " ORDER BY occurred_at DESC, id DESC LIMIT 1",
            (person, self.s.consent_purpose),
        )
        if row is None:
            return "none", None
        return str(row[0]), int(row[1])

    def latest_permission(self, tx: Tx, person: str, business: str | None) -> dict[str, Any] | None:
        sql = (
            "SELECT response, is_permanent, expires_at, occurred_at, business_number"
            " FROM call_permission WHERE person = ?"
        )
        params: list[Any] = [person]
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
        """May the business call the person this identifier (hash) belongs to?"""
        person = self.person_of(tx, shash)
        state, since = self.optin_state(tx, person)
        perm = self.latest_permission(tx, person, business)
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
    def _subject_scope(self, tx: Tx, identifier: str) -> tuple[set[str], dict[str, str], set[str]]:
        """Everything that identifies the person of ``identifier``: (hashes, clear identifiers
        by hash, person keys). The person's identifiers now and before a number or BSUID
        change (``identity_link``), so an erasure by the new number reaches the old one."""
        shash = self.pseudo.subject_hash(identifier)
        person = self.person_of(tx, shash)
        hashes = {shash, person}
        clear = {shash: identifier}
        persons = {person}
        for h, value in tx.all("SELECT hash, value FROM identity WHERE person = ?", (person,)):
            hashes.add(str(h))
            if value:
                clear[str(h)] = str(value)
        changes = ("number-change", "user-id-change")
        for _ in range(8):  # earlier identifiers, a few changes back
            found = False
            marks = ", ".join("?" for _ in hashes)
            for (old,) in tx.all(
                f"SELECT hash_a FROM identity_link WHERE kind IN (?, ?) AND hash_b IN ({marks})",
                (*changes, *sorted(hashes)),
            ):
                if old not in hashes:
                    hashes.add(str(old))
                    found = True
            if not found:
                break
        marks = ", ".join("?" for _ in hashes)
        for h, value in tx.all(
            f"SELECT hash, value FROM identity WHERE hash IN ({marks})", sorted(hashes)
        ):
            if value:
                clear[str(h)] = str(value)
        return hashes, clear, persons

    def _matches(
        self, tx: Tx, identifiers: Iterable[str]
    ) -> dict[tuple[str, str], dict[Any, set[str]]]:
        """Rows whose text columns hold one of the clear identifiers:
        {(table, column): {row key: {identifier, ...}}}."""
        out: dict[tuple[str, str], dict[Any, set[str]]] = {}
        for ident in identifiers:
            pattern = _identifier_pattern(ident)
            for table, (key, cols) in TEXT_COLUMNS.items():
                for col in cols:
                    for row_key, text in tx.all(
                        f"SELECT {key}, {col} FROM {table} WHERE {col} LIKE ?", (_needle(ident),)
                    ):
                        if text is not None and pattern.search(str(text)):
                            out.setdefault((table, col), {}).setdefault(row_key, set()).add(ident)
        return out

    def export(self, tx: Tx, subject: str, now: int) -> dict[str, Any]:
        """Art. 15: every row about the person of ``subject`` (an E.164 number or a BSUID):
        rows under any of its identifiers (linked, or before a number change) and every row
        whose text holds one of them (events without a subject, raw payloads, ...)."""
        shash = self.pseudo.subject_hash(subject)
        hashes, clear, persons = self._subject_scope(tx, subject)
        found = self._matches(tx, set(clear.values()))
        marks = ", ".join("?" for _ in hashes)
        pmarks = ", ".join("?" for _ in persons)
        hs, ps = sorted(hashes), sorted(persons)

        def rows(sql: str, params: Sequence[Any]) -> list[dict[str, Any]]:
            cur = tx.execute(sql, params)
            names = [d[0] for d in cur.description]  # type: ignore[attr-defined]
            return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]

        def keys(table: str) -> list[Any]:
            return sorted({k for (t, _), m in found.items() if t == table for k in m})

        event_ids = keys("event")
        extra = f" OR id IN ({', '.join('?' for _ in event_ids)})" if event_ids else ""
        events = rows(
            "SELECT id, dedupe_key, kind, data_class, subject_hash, business_number, ref_id,"
            " status, direction, occurred_at, received_at, payload_id, data FROM event"
            f" WHERE subject_hash IN ({marks}){extra} ORDER BY occurred_at, id",
            (*hs, *event_ids),
        )
        for ev in events:
            ev["data"] = json.loads(ev["data"])
        payload_ids = sorted(
            {e["payload_id"] for e in events if e["payload_id"]} | set(keys("raw_payload"))
        )
        raws = []
        for pid in payload_ids:
            r = tx.one("SELECT id, received_at, body FROM raw_payload WHERE id = ?", (pid,))
            if r is not None:
                raws.append({"id": r[0], "received_at": r[1], "body": json.loads(r[2])})
        ledger = rows(
            "SELECT id, subject_hash, subject, person, action, purpose, channel, wording_version,"
            " privacy_url, imprint_url, source_event, occurred_at, recorded_at, evidence"
            f" FROM consent_ledger WHERE person IN ({pmarks}) OR subject_hash IN ({marks})"
            " ORDER BY occurred_at, id",
            (*ps, *hs),
        )
        for entry in ledger:
            entry["evidence"] = json.loads(entry["evidence"]) if entry["evidence"] else None
        perms = rows(
            "SELECT id, subject_hash, subject, person, business_number, response, is_permanent,"
            " expires_at, response_source, channel, source_event, occurred_at, recorded_at"
            f" FROM call_permission WHERE person IN ({pmarks}) OR subject_hash IN ({marks})"
            " ORDER BY occurred_at, id",
            (*ps, *hs),
        )
        outbox_ids = keys("outbox")
        extra = f" OR id IN ({', '.join('?' for _ in outbox_ids)})" if outbox_ids else ""
        outbox = rows(
            "SELECT id, recipient, business_number, kind, body, state, source_event, created_at,"
            " sent_at, attempts, last_error, wamid, delivery_status, delivery_status_at"
            f" FROM outbox WHERE subject_hash IN ({marks}){extra} ORDER BY id",
            (*hs, *outbox_ids),
        )
        for msg in outbox:
            msg["body"] = json.loads(msg["body"])
        identities = rows(
            "SELECT hash, kind, value, person, first_seen, retired_at, source_event"
            f" FROM identity WHERE hash IN ({marks}) OR person IN ({pmarks}) ORDER BY first_seen",
            (*hs, *ps),
        )
        links = rows(
            "SELECT hash_a, hash_b, kind, source_event, occurred_at, recorded_at"
            f" FROM identity_link WHERE hash_a IN ({marks}) OR hash_b IN ({marks}) ORDER BY id",
            (*hs, *hs),
        )
        uses = rows(
            "SELECT person, subject_hash, ref_id, used_at, recorded_at FROM consent_use"
            f" WHERE person IN ({pmarks}) ORDER BY used_at",
            ps,
        )
        return {
            "subject": subject,
            "subject_hash": shash,
            "generated_at": now,
            "consent": self.consent_decision(tx, shash, now),
            "identities": identities,
            "identity_links": links,
            "consent_ledger": ledger,
            "call_permissions": perms,
            "consent_uses": uses,
            "events": events,
            "raw_payloads": raws,
            "outbox": outbox,
        }

    def erase(self, tx: Tx, subject: str, now: int) -> dict[str, int]:
        """Art. 17 erasure of the person of ``subject`` (an E.164 number or a BSUID).

        Deleted: its events (any of its identifiers, now or before a number change), every
        other event without a subject and every raw payload and outbox message whose text holds
        one of its identifiers. Kept as proof, pseudonymised (clear identifiers removed, keyed
        hashes kept): consent ledger, call permissions, identity links. Text of other rows that
        mentions an identifier (another subject's event, ...) has it replaced by ``[erased]``.
        """
        shash = self.pseudo.subject_hash(subject)
        hashes, clear, persons = self._subject_scope(tx, subject)
        hs, ps = sorted(hashes), sorted(persons)
        marks = ", ".join("?" for _ in hs)
        pmarks = ", ".join("?" for _ in ps)
        counts: dict[str, int] = {}
        counts["raw_payloads_deleted"] = tx.execute(
            "DELETE FROM raw_payload WHERE id IN (SELECT payload_id FROM event"
            f" WHERE subject_hash IN ({marks}) AND payload_id IS NOT NULL)",
            hs,
        ).rowcount
        counts["events_deleted"] = tx.execute(
            f"DELETE FROM event WHERE subject_hash IN ({marks})", hs
        ).rowcount
        counts["outbox_deleted"] = tx.execute(
            f"DELETE FROM outbox WHERE subject_hash IN ({marks})", hs
        ).rowcount
        person = self._lock_person(tx, shash)
        state, since = self.optin_state(tx, person)
        counts["consent_revoked"] = 0
        if state in ("requested", "confirmed"):
            self._append(
                tx, person, shash, None, "revoked", "erasure-request", None, now,
                {"reason": "GDPR Art. 17 erasure request"}, source=f"erasure:{now}",
                occurred_at=max(now, since or now),  # never sorts before the consent it ends
            )  # fmt: skip
            counts["consent_revoked"] = 1
        counts["consent_records_pseudonymised"] = tx.execute(
            "UPDATE consent_ledger SET subject = NULL WHERE subject IS NOT NULL"
            f" AND (subject_hash IN ({marks}) OR person IN ({pmarks}))",
            (*hs, *ps),
        ).rowcount
        counts["call_permissions_pseudonymised"] = tx.execute(
            "UPDATE call_permission SET subject = NULL WHERE subject IS NOT NULL"
            f" AND (subject_hash IN ({marks}) OR person IN ({pmarks}))",
            (*hs, *ps),
        ).rowcount
        counts["identities_pseudonymised"] = tx.execute(
            f"UPDATE identity SET value = NULL WHERE value IS NOT NULL AND hash IN ({marks})", hs
        ).rowcount
        # Whatever still holds a clear identifier: events without a subject (system messages,
        # user preferences, echoes, unknown shapes), raw payloads, mentions in other rows.
        counts["rows_redacted"] = 0
        for (table, col), found in self._matches(tx, set(clear.values())).items():
            key = TEXT_COLUMNS[table][0]
            for row_key, idents in found.items():
                if table in ("raw_payload", "outbox"):
                    n = tx.execute(f"DELETE FROM {table} WHERE {key} = ?", (row_key,)).rowcount
                    name = "raw_payloads_deleted" if table == "raw_payload" else "outbox_deleted"
                    counts[name] += n
                    continue
                if table == "event":
                    n = tx.execute(
                        "DELETE FROM event WHERE id = ? AND subject_hash IS NULL", (row_key,)
                    ).rowcount
                    if n:
                        counts["events_deleted"] += n
                        continue
                row = tx.one(f"SELECT {col} FROM {table} WHERE {key} = ?", (row_key,))
                if row is None or row[0] is None:
                    continue
                text = str(row[0])
                for ident in idents:
                    text = _identifier_pattern(ident).sub(ERASED, text)
                tx.execute(f"UPDATE {table} SET {col} = ? WHERE {key} = ?", (text, row_key))
                counts["rows_redacted"] += 1
        return counts

    # ----------------------------------------------------------------- retention
    def oldest_records(self, tx: Tx) -> dict[str, int | None]:
        """Time (epoch seconds) of the oldest record left in each retention class."""
        queries = {
            "raw_payloads": "SELECT MIN(received_at) FROM raw_payload",
            "call_records": "SELECT MIN(received_at) FROM event WHERE data_class = 'call'",
            "consent_proof": "SELECT MIN(occurred_at) FROM consent_ledger",
        }
        oldest: dict[str, int | None] = {}
        for name, query in queries.items():
            row = tx.one(query, ())
            oldest[name] = int(row[0]) if row is not None and row[0] is not None else None
        return oldest

    def ledger_counts(self, tx: Tx, now: int) -> dict[str, Any]:
        """Counts, never identities, for the audit's evidence: the ledger's rows by action, the
        people by their latest opt-in state, and the latest call permission per person and
        business number by what it allows now."""
        rows = {
            str(a): int(n)
            for a, n in tx.all(
                "SELECT action, COUNT(*) FROM consent_ledger GROUP BY action ORDER BY action", ()
            )
        }
        people = {
            str(a): int(n)
            for a, n in tx.all(
                "SELECT action, COUNT(*) FROM (SELECT action, ROW_NUMBER() OVER (PARTITION BY person"
                " ORDER BY occurred_at DESC, id DESC) AS latest FROM consent_ledger WHERE purpose = ?)"
                " states WHERE latest = 1 GROUP BY action ORDER BY action",
                (self.s.consent_purpose,),
            )
        }
        permissions = {"valid": 0, "expired": 0, "rejected": 0}
        for response, permanent, expires in tx.all(
            "SELECT response, is_permanent, expires_at FROM (SELECT response, is_permanent,"
            " expires_at, ROW_NUMBER() OVER (PARTITION BY person, COALESCE(business_number, '')"
            " ORDER BY occurred_at DESC, id DESC) AS latest FROM call_permission) perms"
            " WHERE latest = 1",
            (),
        ):
            if response != "accept":
                permissions["rejected"] += 1
            elif permanent or (expires is not None and int(expires) > now):
                permissions["valid"] += 1
            else:
                permissions["expired"] += 1
        return {
            "purpose": self.s.consent_purpose,
            "ledger_rows": rows,
            "people_by_opt_in": {state: people.get(state, 0) for state in OPTIN_ACTIONS},
            "call_permissions": permissions,
        }

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
        # Consent proof: a person's chain goes once its latest entry is not 'confirmed'
        # (revoked, or a request never confirmed) and both that entry and the last use of the
        # consent (a business-initiated call) are older than the period.
        candidates = tx.all(
            "SELECT person, purpose, MAX(occurred_at) FROM consent_ledger"
            " GROUP BY person, purpose HAVING MAX(occurred_at) < ?",
            (consent_cut,),
        )
        consent = 0
        for person, purpose, _last in candidates:
            latest = tx.one(
                "SELECT action FROM consent_ledger WHERE person = ? AND purpose = ?"
                " ORDER BY occurred_at DESC, id DESC LIMIT 1",
                (person, purpose),
            )
            if latest is None or latest[0] == "confirmed":
                continue
            used = tx.one("SELECT MAX(used_at) FROM consent_use WHERE person = ?", (person,))
            if used is not None and used[0] is not None and int(used[0]) >= consent_cut:
                continue
            consent += tx.execute(
                "DELETE FROM consent_ledger WHERE person = ? AND purpose = ?",
                (person, purpose),
            ).rowcount
        out["consent_proof"] = consent
        out["consent_uses"] = tx.execute(
            "DELETE FROM consent_use WHERE used_at < ? AND NOT EXISTS (SELECT 1 FROM"
            " consent_ledger c WHERE c.person = consent_use.person)",
            (consent_cut,),
        ).rowcount
        out["call_permissions"] = tx.execute(
            "DELETE FROM call_permission WHERE"
            " (expires_at IS NOT NULL AND expires_at < ?)"
            " OR (response <> 'accept' AND occurred_at < ?)"
            " OR EXISTS (SELECT 1 FROM call_permission later"
            "   WHERE later.person = call_permission.person"
            "   AND COALESCE(later.business_number, '') = COALESCE(call_permission.business_number, '')"
            "   AND later.occurred_at > call_permission.occurred_at AND later.occurred_at < ?)",
            (consent_cut, consent_cut, consent_cut),
        ).rowcount
        # Identifiers nothing refers to any more (no proof, no events), seen before the raw
        # period: the mapping goes too, then links between identifiers that are both gone.
        out["identities"] = tx.execute(
            "DELETE FROM identity WHERE first_seen < ?"
            " AND NOT EXISTS (SELECT 1 FROM consent_ledger c WHERE c.person = identity.person)"
            " AND NOT EXISTS (SELECT 1 FROM call_permission p WHERE p.person = identity.person)"
            " AND NOT EXISTS (SELECT 1 FROM consent_use u WHERE u.person = identity.person)"
            " AND NOT EXISTS (SELECT 1 FROM event e WHERE e.subject_hash = identity.hash)",
            (raw_cut,),
        ).rowcount
        out["identity_links"] = tx.execute(
            "DELETE FROM identity_link WHERE recorded_at < ?"
            " AND NOT EXISTS (SELECT 1 FROM identity i WHERE i.hash = identity_link.hash_a)"
            " AND NOT EXISTS (SELECT 1 FROM identity i WHERE i.hash = identity_link.hash_b)",
            (raw_cut,),
        ).rowcount
        return out
