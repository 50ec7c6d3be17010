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
* call permission replies: an incoming message of ``type`` ``interactive`` whose
  ``interactive.type`` is ``call_permission_reply`` with ``call_permission_reply`` =
  {``response``: accept|reject, ``is_permanent``, ``expiration_timestamp``,
  ``response_source``: user_action|automatic}:
  Meta's "Obtain user call permissions" page (copy consulted:
  https://support.chatarchitect.com/books/meta-whatsapp/page/obtain-user-call-permissions-developer-documentation ;
  field types as in https://whatsappapijs.web.app/types/types.ServerInteractiveCallPermissionMessage.html)

Anything else (unknown ``object``, ``field``, message type, or malformed sub-objects) becomes an
``unknown`` event keyed by a hash of its content: stored harmlessly, never an exception.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from .observability import InvalidNumber, normalize_e164


@dataclass
class Event:
    dedupe_key: str
    kind: str  # message | status | call | call_status | call_permission | unknown
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
    if not isinstance(value, str | int) or isinstance(value, bool):
        return None
    try:
        return normalize_e164(str(value))
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
    if fld in ("messages", "calls"):
        for msg in _list(value.get("messages")):
            known = True
            out.append(_message(msg, business, now))
        for st in _list(value.get("statuses")):
            known = True
            out.append(_status(st, business, now))
        for call in _list(value.get("calls")):
            known = True
            out.append(_call(call, business, now))
        for err in _list(value.get("errors")):
            known = True
            out.append(_unknown(err, now, "error", business))
    if not known:
        out.append(_unknown(change, now, f"field:{_str(fld, 48) or '?'}", business))
    return out


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _message(msg: Any, business: str | None, now: int) -> Event:
    if not isinstance(msg, dict):
        return _unknown(msg, now, "message", business)
    wamid = _str(msg.get("id"))
    mtype = _str(msg.get("type"), 64) or "unknown"
    ev = Event(
        dedupe_key=f"msg:{wamid}" if wamid else f"msg:h:{_digest(msg)}",
        kind="message",
        data_class="raw",
        data=msg,
        occurred_at=_ts(msg.get("timestamp"), now),
        subject=_number(msg.get("from")),
        business_number=business,
        ref_id=wamid,
        status=mtype,
        direction="inbound",
    )
    if mtype == "text" and isinstance(msg.get("text"), dict):
        ev.text = _keyword(msg["text"].get("body"))
        ev.channel = "whatsapp-keyword"
    elif mtype == "button" and isinstance(msg.get("button"), dict):
        # quick-reply button of a template message: {"payload": ..., "text": ...}
        ev.button_id = _str(msg["button"].get("payload"))
        ev.text = _keyword(msg["button"].get("text"))
        ev.channel = "whatsapp-button"
    elif mtype == "interactive" and isinstance(msg.get("interactive"), dict):
        inter = msg["interactive"]
        itype = inter.get("type")
        if itype == "button_reply" and isinstance(inter.get("button_reply"), dict):
            ev.button_id = _str(inter["button_reply"].get("id"))
            ev.text = _keyword(inter["button_reply"].get("title"))
            ev.channel = "whatsapp-button"
        elif itype == "list_reply" and isinstance(inter.get("list_reply"), dict):
            ev.button_id = _str(inter["list_reply"].get("id"))
            ev.text = _keyword(inter["list_reply"].get("title"))
            ev.channel = "whatsapp-list"
        elif itype == "call_permission_reply" and isinstance(
            inter.get("call_permission_reply"), dict
        ):
            reply = inter["call_permission_reply"]
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


def _keyword(value: Any) -> str | None:
    text = _str(value, 4096)
    if text is None:
        return None
    return " ".join(text.split()).strip(" .!").upper()[:64]


def _status(st: Any, business: str | None, now: int) -> Event:
    if not isinstance(st, dict):
        return _unknown(st, now, "status", business)
    sid = _str(st.get("id"))
    status = _str(st.get("status"), 64) or "unknown"
    is_call = st.get("type") == "call"
    key_base = sid or f"h:{_digest(st)}"
    return Event(
        dedupe_key=f"{'callstatus' if is_call else 'status'}:{key_base}:{status}",
        kind="call_status" if is_call else "status",
        data_class="call" if is_call else "raw",
        data=st,
        occurred_at=_ts(st.get("timestamp"), now),
        subject=_number(st.get("recipient_id")),
        business_number=business,
        ref_id=sid,
        status=status,
        direction="outbound",
    )


def _call(call: Any, business: str | None, now: int) -> Event:
    if not isinstance(call, dict):
        return _unknown(call, now, "call", business)
    cid = _str(call.get("id"))
    event = _str(call.get("event"), 64) or "unknown"
    direction = _str(call.get("direction"), 64)
    frm, to = _number(call.get("from")), _number(call.get("to"))
    if direction == "BUSINESS_INITIATED":
        subject = to
    elif direction == "USER_INITIATED":
        subject = frm
    else:  # infer: the party that is not the business number
        subject = to if frm is not None and frm == business else frm
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
        business_number=business,
        ref_id=cid,
        status=event if event != "terminate" else f"terminate:{_str(call.get('status'), 32)}",
        direction=direction,
    )
