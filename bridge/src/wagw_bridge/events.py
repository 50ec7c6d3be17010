"""Turn one Meta webhook delivery into normalised events, each with a dedupe key.

Payload shapes (Cloud API, object ``whatsapp_business_account``, ``entry[].changes[]`` with
``field`` and ``value``), as documented by Meta:

* messages and message statuses:
  https://developers.facebook.com/documentation/business-messaging/whatsapp/webhooks/reference/messages
  (``value.messages[]`` with ``from``, ``id`` = ``wamid...``, ``timestamp``, ``type`` = text /
  button / interactive ...; ``value.statuses[]`` with ``id``, ``status``, ``timestamp``,
  ``recipient_id``)
* call lifecycle (field ``calls``: ``value.calls[]`` with ``id`` = ``wacid...``, ``from``,
  ``to``, ``event`` = connect / terminate, ``timestamp``, ``direction``; terminate adds
  ``status``, ``start_time``, ``end_time``, ``duration``) and call status webhooks
  (``value.statuses[]`` with ``type`` = ``call``, ``status`` RINGING / ACCEPTED / REJECTED):
  https://developers.facebook.com/documentation/business-messaging/whatsapp/calling/reference/
  https://developers.facebook.com/documentation/business-messaging/whatsapp/calling/user-initiated-calls
  https://developers.facebook.com/documentation/business-messaging/whatsapp/calling/business-initiated-calls/
* call permission replies: an incoming message whose ``interactive.type`` is
  ``call_permission_reply`` (Meta's sample carries no message ``type``: keyed on
  ``interactive.type`` alone) with ``call_permission_reply`` =
  {``response``: accept|reject, ``is_permanent``, ``expiration_timestamp``,
  ``response_source``: user_action|automatic}:
  Meta's "Obtain user call permissions" page (copy consulted:
  https://support.chatarchitect.com/books/meta-whatsapp/page/obtain-user-call-permissions-developer-documentation ;
  field types as in https://whatsappapijs.web.app/types/types.ServerInteractiveCallPermissionMessage.html)

* business-scoped user IDs (BSUIDs): every messages/calls webhook carries the user's BSUID
  (``messages[].from_user_id``, ``statuses[].recipient_user_id``, ``calls[].from_user_id`` /
  ``to_user_id``, ``contacts[].user_id``); the phone number (``from``, ``wa_id``,
  ``recipient_id``, ``to``) is empty or absent for a user with a username whom the business has
  not messaged in the last 30 days:
  https://developers.facebook.com/documentation/business-messaging/whatsapp/business-scoped-user-ids
  (copy consulted: the "Business-scoped user IDs" page, sections "Messages webhooks" and
  "Calling API"). An event then carries ``subject`` (E.164, may be None) and ``bsuid``.
* system messages (``type`` = ``system``, no ``contacts`` array): ``user_changed_number``
  (``from`` = the old number, ``system.wa_id`` = the new one) and ``user_changed_user_id``
  (``system.user_id`` = the new BSUID, the old one in ``from_user_id`` and in ``system.body``
  "User <name> changed from <old> to <new>"):
  https://developers.facebook.com/documentation/business-messaging/whatsapp/webhooks/reference/messages/system/
* ``user_preferences`` (field of its own; ``value.user_preferences[]`` with ``wa_id``,
  ``user_id``, ``category``, ``value``, ``timestamp``), same BSUID page.
* value-level ``errors[]`` (e.g. beside ``calls[]`` in a terminate webhook, Calling API
  reference "Call terminate webhook") belong to the objects of the same ``value``: one
  ``error`` event per error and object, keyed by that object (the same error on two calls is
  two events); errors of a value without objects are keyed by the whole change.

Anything else (unknown ``object``, ``field``, message type, or malformed sub-objects) becomes an
``unknown`` event keyed by a hash of its content: stored harmlessly, never an exception.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any

from .observability import InvalidNumber, normalize_bsuid, normalize_e164


@dataclass
class Event:
    dedupe_key: str
    kind: str  # message | status | call | call_status | call_permission | system | error
    #            | user_preference | unknown
    data_class: str  # raw | call
    data: Any
    occurred_at: int
    subject: str | None = None  # E.164 of the WhatsApp user
    business_number: str | None = None
    ref_id: str | None = None
    status: str | None = None
    direction: str | None = None
    # consent-relevant facts extracted from messages
    text: str | None = None  # text body / button text (upper-cased, stripped)
    button_id: str | None = None  # interactive button_reply.id or template button payload
    channel: str | None = None  # whatsapp-keyword | whatsapp-button | whatsapp-call-permission
    permission: dict[str, Any] = field(default_factory=dict)
    bsuid: str | None = None  # the user's business-scoped user ID, when Meta sent it
    # system messages: the identifiers after the change (new number, new BSUID)
    new_subject: str | None = None
    new_bsuid: str | None = None


def _digest(obj: Any) -> str:
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:32]


def _ts(value: Any, default: int) -> int:
    try:
        ts = int(float(value))
    except (TypeError, ValueError, OverflowError):
        return default
    # Meta sends seconds; tolerate milliseconds.
    if ts > 10**11:
        ts //= 1000
    return ts if 0 < ts < 2**40 else default


def _number(value: Any) -> str | None:
    if not isinstance(value, str | int) or isinstance(value, bool) or value == "":
        return None
    try:
        return normalize_e164(str(value))
    except InvalidNumber:
        return None


def _bsuid(value: Any) -> str | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return normalize_bsuid(value)
    except InvalidNumber:
        return None


def _str(value: Any, limit: int = 256) -> str | None:
    if isinstance(value, str | int | float) and not isinstance(value, bool):
        return str(value)[:limit]
    return None


def parse_delivery(payload: Any, now: int) -> list[Event]:
    """Split a decoded webhook body into events. Never raises on odd input."""
    try:
        return _parse(payload, now)
    except Exception:
        return [_unknown(payload, now, "unparsed")]


def _unknown(obj: Any, now: int, why: str, business: str | None = None) -> Event:
    return Event(
        dedupe_key=f"unknown:{why}:{_digest(obj)}",
        kind="unknown",
        data_class="raw",
        data=obj,
        occurred_at=now,
        business_number=business,
        status=why[:64],
    )


def _parse(payload: Any, now: int) -> list[Event]:
    if not isinstance(payload, dict) or payload.get("object") != "whatsapp_business_account":
        return [_unknown(payload, now, "object")]
    entries = payload.get("entry")
    if not isinstance(entries, list):
        return [_unknown(payload, now, "entry")]
    events: list[Event] = []
    for entry in entries:
        changes = entry.get("changes") if isinstance(entry, dict) else None
        if not isinstance(changes, list):
            events.append(_unknown(entry, now, "entry"))
            continue
        for change in changes:
            events.extend(_parse_change(change, now))
    return events


class _Contacts:
    """``value.contacts[]``: the user's phone number (``wa_id``) and BSUID (``user_id``) side by
    side, which fills in whichever of the two an object of the same value lacks."""

    __slots__ = ("by_bsuid", "by_phone", "only")

    def __init__(self, contacts: list[Any]) -> None:
        self.by_phone: dict[str, str] = {}
        self.by_bsuid: dict[str, str] = {}
        pairs: list[tuple[str | None, str | None]] = []
        for c in contacts:
            if not isinstance(c, dict):
                continue
            phone, bsuid = _number(c.get("wa_id")), _bsuid(c.get("user_id"))
            pairs.append((phone, bsuid))
            if phone and bsuid:
                self.by_phone[phone] = bsuid
                self.by_bsuid[bsuid] = phone
        self.only = pairs[0] if len(pairs) == 1 else (None, None)

    def complete(self, phone: str | None, bsuid: str | None) -> tuple[str | None, str | None]:
        if phone and not bsuid:
            bsuid = self.by_phone.get(phone)
        elif bsuid and not phone:
            phone = self.by_bsuid.get(bsuid)
        elif not phone and not bsuid:
            phone, bsuid = self.only
        return phone, bsuid


_NO_CONTACTS = _Contacts([])


def _parse_change(change: Any, now: int) -> list[Event]:
    if not isinstance(change, dict) or not isinstance(change.get("value"), dict):
        return [_unknown(change, now, "change")]
    fld = change.get("field")
    value: dict[str, Any] = change["value"]
    meta_raw = value.get("metadata")
    meta: dict[str, Any] = meta_raw if isinstance(meta_raw, dict) else {}
    business = _number(meta.get("display_phone_number"))
    out: list[Event] = []
    known = False
    if fld in ("messages", "calls", "user_preferences"):
        raw_contacts = value.get("contacts")
        contacts = _Contacts(raw_contacts) if isinstance(raw_contacts, list) else _NO_CONTACTS
        for msg in _list(value.get("messages")):
            known = True
            out.append(_message(msg, business, now, contacts))
        for st in _list(value.get("statuses")):
            known = True
            out.append(_status(st, business, now, contacts))
        for call in _list(value.get("calls")):
            known = True
            out.append(_call(call, business, now, contacts))
        for pref in _list(value.get("user_preferences")):
            known = True
            out.append(_preference(pref, business, now, contacts))
        errors = _list(value.get("errors"))
        if errors:
            known = True
            out.extend(_errors(errors, out, change, business, now))
    if not known:
        out.append(_unknown(change, now, f"field:{_str(fld, 48) or '?'}", business))
    return out


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _errors(
    errors: list[Any], owners: list[Event], change: Any, business: str | None, now: int
) -> list[Event]:
    """Value-level errors, attached to the objects of the same value (see module docstring)."""
    targets = [ev for ev in owners if ev.kind != "unknown"]
    out: list[Event] = []
    for err in errors:
        digest = _digest(err)
        if not targets:
            out.append(
                Event(
                    dedupe_key=f"error:v:{_digest(change)}:{digest}",
                    kind="error",
                    data_class="raw",
                    data={"error": err},
                    occurred_at=now,
                    business_number=business,
                    status=_error_code(err),
                )
            )
            continue
        for owner in targets:
            out.append(
                Event(
                    dedupe_key=f"error:{owner.dedupe_key}:{digest}",
                    kind="error",
                    data_class=owner.data_class,
                    data={"error": err, "of": owner.dedupe_key},
                    occurred_at=owner.occurred_at,
                    subject=owner.subject,
                    bsuid=owner.bsuid,
                    business_number=business,
                    ref_id=owner.ref_id,
                    status=_error_code(err),
                    direction=owner.direction,
                )
            )
    return out


def _error_code(err: Any) -> str:
    code = err.get("code") if isinstance(err, dict) else None
    return f"code:{_str(code, 32)}" if code is not None else "error"


_BODY_CHANGE_RE = re.compile(r"changed from (\S+) to (\S+)")


def _message(msg: Any, business: str | None, now: int, contacts: _Contacts) -> Event:
    if not isinstance(msg, dict):
        return _unknown(msg, now, "message", business)
    wamid = _str(msg.get("id"))
    mtype = _str(msg.get("type"), 64) or "unknown"
    phone, bsuid = contacts.complete(_number(msg.get("from")), _bsuid(msg.get("from_user_id")))
    ev = Event(
        dedupe_key=f"msg:{wamid}" if wamid else f"msg:h:{_digest(msg)}",
        kind="message",
        data_class="raw",
        data=msg,
        occurred_at=_ts(msg.get("timestamp"), now),
        subject=phone,
        bsuid=bsuid,
        business_number=business,
        ref_id=wamid,
        status=mtype,
        direction="inbound",
    )
    inter = msg.get("interactive")
    if isinstance(inter, dict) and inter.get("type") == "call_permission_reply":
        reply = inter.get("call_permission_reply")
        if isinstance(reply, dict):
            response = _str(reply.get("response"), 32)
            ev.kind = "call_permission"
            ev.channel = "whatsapp-call-permission"
            ev.permission = {
                "response": (response or "unknown").lower(),
                "is_permanent": reply.get("is_permanent") is True,
                "expires_at": _ts(reply.get("expiration_timestamp"), 0) or None,
                "response_source": _str(reply.get("response_source"), 64),
            }
            ev.status = ev.permission["response"]
        return ev
    if mtype == "system" and isinstance(msg.get("system"), dict):
        _system(ev, msg["system"])
    elif mtype == "text" and isinstance(msg.get("text"), dict):
        ev.text = _keyword(msg["text"].get("body"))
        ev.channel = "whatsapp-keyword"
    elif mtype == "button" and isinstance(msg.get("button"), dict):
        # quick-reply button of a template message: {"payload": ..., "text": ...}
        ev.button_id = _str(msg["button"].get("payload"))
        ev.text = _keyword(msg["button"].get("text"))
        ev.channel = "whatsapp-button"
    elif isinstance(inter, dict):
        itype = inter.get("type")
        if itype == "button_reply" and isinstance(inter.get("button_reply"), dict):
            ev.button_id = _str(inter["button_reply"].get("id"))
            ev.text = _keyword(inter["button_reply"].get("title"))
            ev.channel = "whatsapp-button"
        elif itype == "list_reply" and isinstance(inter.get("list_reply"), dict):
            ev.button_id = _str(inter["list_reply"].get("id"))
            ev.text = _keyword(inter["list_reply"].get("title"))
            ev.channel = "whatsapp-list"
    return ev


def _system(ev: Event, system: dict[str, Any]) -> None:
    """``user_changed_number`` / ``user_changed_user_id``: the old identifiers are the event's
    (``from``, ``from_user_id``; for a BSUID change also the body's "changed from <old>"),
    the new ones ``system.wa_id`` and ``system.user_id``."""
    stype = _str(system.get("type"), 64)
    if stype not in ("user_changed_number", "user_changed_user_id"):
        return
    ev.kind = "system"
    ev.status = stype
    ev.channel = "number-change" if stype == "user_changed_number" else "user-id-change"
    ev.new_subject = _number(system.get("wa_id"))
    ev.new_bsuid = _bsuid(system.get("user_id"))
    body = _str(system.get("body"), 1024) or ""
    m = _BODY_CHANGE_RE.search(body)
    if m is not None:
        old, new = m.group(1), m.group(2)
        if stype == "user_changed_user_id":
            ev.bsuid = ev.bsuid or _bsuid(old)
            ev.new_bsuid = ev.new_bsuid or _bsuid(new)
        else:
            ev.subject = ev.subject or _number(old)
            ev.new_subject = ev.new_subject or _number(new)
    if ev.new_subject == ev.subject:
        ev.new_subject = None  # a BSUID change that names the (unchanged) number
    if ev.new_bsuid == ev.bsuid:
        ev.new_bsuid = None


def _keyword(value: Any) -> str | None:
    """Upper-cased words without the emoji, symbols and punctuation around them:
    "ja 👍", "Ja!" and "STOP 🛑" are "JA", "JA" and "STOP"."""
    text = _str(value, 4096)
    if text is None:
        return None
    words = []
    for word in text.split():
        start, end = 0, len(word)
        while start < end and not word[start].isalnum():
            start += 1
        while end > start and not word[end - 1].isalnum():
            end -= 1
        if start < end:
            words.append(word[start:end])
    return " ".join(words).upper()[:64]


def _status(st: Any, business: str | None, now: int, contacts: _Contacts) -> Event:
    if not isinstance(st, dict):
        return _unknown(st, now, "status", business)
    sid = _str(st.get("id"))
    status = _str(st.get("status"), 64) or "unknown"
    is_call = st.get("type") == "call"
    key_base = sid or f"h:{_digest(st)}"
    phone, bsuid = contacts.complete(
        _number(st.get("recipient_id")), _bsuid(st.get("recipient_user_id"))
    )
    return Event(
        dedupe_key=f"{'callstatus' if is_call else 'status'}:{key_base}:{status}",
        kind="call_status" if is_call else "status",
        data_class="call" if is_call else "raw",
        data=st,
        occurred_at=_ts(st.get("timestamp"), now),
        subject=phone,
        bsuid=bsuid,
        business_number=business,
        ref_id=sid,
        status=status,
        direction="outbound",
    )


def _call(call: Any, business: str | None, now: int, contacts: _Contacts) -> Event:
    if not isinstance(call, dict):
        return _unknown(call, now, "call", business)
    cid = _str(call.get("id"))
    event = _str(call.get("event"), 64) or "unknown"
    direction = _str(call.get("direction"), 64)
    frm, to = _number(call.get("from")), _number(call.get("to"))
    frm_id, to_id = _bsuid(call.get("from_user_id")), _bsuid(call.get("to_user_id"))
    if direction == "BUSINESS_INITIATED":
        subject, bsuid = to, to_id
    elif direction == "USER_INITIATED":
        subject, bsuid = frm, frm_id
    elif to_id or frm_id:
        subject, bsuid = (to, to_id) if to_id else (frm, frm_id)
    else:  # infer: the party that is not the business number
        subject, bsuid = (to if frm is not None and frm == business else frm), None
    subject, bsuid = contacts.complete(subject, bsuid)
    # SDP blobs are large and useless for records; keep their presence only.
    data = {k: v for k, v in call.items() if k not in ("session", "connection")}
    if "session" in call or "connection" in call:
        data["_sdp_omitted"] = True
    key_base = cid or f"h:{_digest(call)}"
    return Event(
        dedupe_key=f"call:{key_base}:{event}",
        kind="call",
        data_class="call",
        data=data,
        occurred_at=_ts(call.get("timestamp"), now),
        subject=subject,
        bsuid=bsuid,
        business_number=business,
        ref_id=cid,
        status=event if event != "terminate" else f"terminate:{_str(call.get('status'), 32)}",
        direction=direction,
    )


def _preference(pref: Any, business: str | None, now: int, contacts: _Contacts) -> Event:
    if not isinstance(pref, dict):
        return _unknown(pref, now, "user_preference", business)
    phone, bsuid = contacts.complete(_number(pref.get("wa_id")), _bsuid(pref.get("user_id")))
    return Event(
        dedupe_key=f"pref:{_digest(pref)}",
        kind="user_preference",
        data_class="raw",
        data=pref,
        occurred_at=_ts(pref.get("timestamp"), now),
        subject=phone,
        bsuid=bsuid,
        business_number=business,
        status=f"{_str(pref.get('category'), 64)}:{_str(pref.get('value'), 64)}",
        direction="inbound",
    )
