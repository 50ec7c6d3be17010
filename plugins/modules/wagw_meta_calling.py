#!/usr/bin/python
# Copyright: (c) 2026, wa-voip-gateway
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The calling settings of a WhatsApp business phone number at Meta (Graph API)."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: wagw_meta_calling
short_description: Calling settings of a WhatsApp business phone number at Meta
description:
  - Reads the number's settings (C(GET /{version}/{phone-number-id}/settings)), compares the
    C(calling) settings this module manages with the wanted ones and, only when they differ,
    posts the differing ones (C(POST /{version}/{phone-number-id}/settings) with a C(calling)
    object holding just those keys). Options left unset are not managed.
  - Managed keys, with Meta's names and values - C(status), C(call_icon_visibility),
    C(callback_permission_status), C(call_hours), C(sip) (C(status) and this app's C(servers)),
    C(srtp_key_exchange_protocol) and C(audio.additional_codecs). Meta's documentation -
    U(https://developers.facebook.com/documentation/business-messaging/whatsapp/calling/call-settings),
    U(https://developers.facebook.com/documentation/business-messaging/whatsapp/calling/sip) and
    U(https://developers.facebook.com/documentation/business-messaging/whatsapp/calling/reference).
  - Call hours are derived from the same business-hours windows the webhook bridge routes by
    (O(business_hours), the inventory's C(wagw_routes[].windows)). The number is open at a
    time when the bridge would ring someone then - the first window that matches gives the
    destinations, outside every window the route's own destinations - so a route with
    destinations outside its windows is open all week and gets C(call_hours.status=DISABLED)
    (Meta - "considered open all 24 hours of the day, 7 days a week"). Otherwise the open
    intervals of each weekday become C(weekly_operating_hours) (C(HHMM); a window ending
    C(24:00) closes at C(2359); a window whose end is before its start runs past midnight into
    the next day, as in the bridge). Meta allows at most two intervals a day, so more fail with
    a message naming the day.
  - Meta refuses to enable calling on a number whose messaging limit is below 2000
    business-initiated conversations a day (Graph error 138015, "Calling APIs cannot be
    enabled for this phone number"); the module fails with that explanation and the number.
  - Throttling (HTTP 429, Graph errors 4, 17, 32, 613, 80007, 130429) and server errors are
    retried with exponential backoff. Runs on the controller (C(delegate_to=localhost)).
options:
  phone_number_id:
    description: Meta's ID of the business phone number.
    type: str
    required: true
  number:
    description: The number in E.164, only for messages (the number an operator recognises).
    type: str
  app_id:
    description:
      - ID of the Meta app whose access token this module uses. Meta keeps one SIP server per
        app on a number and lists each with its C(app_id); with this option only this app's
        server is compared, and servers of other apps are reported as a warning.
    type: str
  status:
    description: Calling on the number.
    type: str
    choices: [ENABLED, DISABLED]
    default: ENABLED
  call_icon_visibility:
    description: C(DEFAULT) shows the call button in the chat, C(DISABLE_ALL) hides every entry point.
    type: str
    choices: [DEFAULT, DISABLE_ALL]
  callback_permission_status:
    description: Whether a caller is asked for permission to be called back after a call.
    type: str
    choices: [ENABLED, DISABLED]
  srtp_key_exchange_protocol:
    description:
      - C(SDES) (keys in the SDP over TLS, no ICE) or C(DTLS) (ICE and DTLS-SRTP, Meta's
        default). Meta omits the key from its answer until it was set once; absent counts as C(DTLS).
    type: str
    choices: [SDES, DTLS]
  additional_codecs:
    description:
      - C(calling.audio.additional_codecs) - G.711 codecs offered besides Opus, which is
        always on. An empty list removes them. Compared regardless of order.
    type: list
    elements: str
    choices: [PCMA, PCMU]
  sip:
    description: SIP signalling to the gateway's SIP edge (C(calling.sip)).
    type: dict
    suboptions:
      status:
        description: C(ENABLED) sends the number's calls to O(sip.hostname) by SIP.
        type: str
        choices: [ENABLED, DISABLED]
        default: ENABLED
      hostname:
        description: The client's SIP domain (TLS; its certificate must cover it). Required when enabled.
        type: str
      port:
        description: TLS port of the SIP edge.
        type: int
        default: 5061
      request_uri_user_params:
        description: Parameters Meta adds to the user part of its INVITE's request URI (for example C(tgrp)).
        type: dict
  business_hours:
    description:
      - The route's business hours, converted into C(calling.call_hours) as described above.
        Unset leaves the call hours alone.
    type: dict
    suboptions:
      timezone:
        description: IANA time zone of the windows (the bridge's C(wagw_bridge.timezone)).
        type: str
        required: true
      destinations:
        description: The route's destinations outside its windows; only whether it is empty matters.
        type: list
        elements: str
        default: []
      windows:
        description: The route's windows, first match wins (as C(wagw_routes[].windows)).
        type: list
        elements: dict
        default: []
        suboptions:
          days:
            description: Some of C(mon) .. C(sun).
            type: list
            elements: str
            required: true
          start:
            description: C(HH:MM).
            type: str
            required: true
          end:
            description: C(HH:MM) or C(24:00); before O(business_hours.windows[].start) it runs past midnight.
            type: str
            required: true
          destinations:
            description: Who rings in the window; empty closes the number for the window.
            type: list
            elements: str
            default: []
      holidays:
        description:
          - Meta's C(holiday_schedule) (at most 20), overrides of the weekly hours on a date.
            Past dates are left out (Meta refuses them). The bridge does not know them.
        type: list
        elements: dict
        default: []
        suboptions:
          date:
            description: C(YYYY-MM-DD).
            type: str
            required: true
          start:
            description: C(HH:MM).
            type: str
            default: "00:00"
          end:
            description: C(HH:MM) or C(24:00).
            type: str
            default: "24:00"
extends_documentation_fragment:
  - wagw.gateway.wagw_module
  - wagw.gateway.wagw_graph
author:
  - wa-voip-gateway
"""

EXAMPLES = r"""
- name: Calling with SIP to the gateway, SDES, PCMA, business hours of the route
  wagw.gateway.wagw_meta_calling:
    phone_number_id: "100000000000001"
    number: "+4930555000100"
    app_id: "{{ wagw_meta.app_id }}"
    access_token: "{{ wagw_meta.access_token }}"
    call_icon_visibility: DEFAULT
    callback_permission_status: ENABLED
    srtp_key_exchange_protocol: SDES
    additional_codecs: [PCMA]
    sip:
      hostname: sip.beispiel-sanitaer.example
      port: 5061
    business_hours:
      timezone: Europe/Berlin
      destinations: []
      windows:
        - days: [mon, tue, wed, thu, fri]
          start: "08:00"
          end: "18:00"
          destinations: ["phone:empfang"]
  delegate_to: localhost
"""

RETURN = r"""
before:
  description: The managed calling settings as Meta had them (Meta's shape, normalised).
  returned: always
  type: dict
  sample: {status: DISABLED, srtp_key_exchange_protocol: DTLS}
after:
  description: The managed calling settings as they are (or in check mode would be) now.
  returned: always
  type: dict
  sample: {status: ENABLED, srtp_key_exchange_protocol: SDES}
request:
  description: The C(calling) object posted (or in check mode that would be); empty when nothing differs.
  returned: always
  type: dict
  sample: {calling: {status: ENABLED}}
call_hours:
  description: The call hours derived from O(business_hours) (absent when it is unset).
  returned: when business_hours is set
  type: dict
  sample: {status: ENABLED, timezone_id: Europe/Berlin, weekly_operating_hours: [], holiday_schedule: []}
"""

import copy
import datetime
import itertools
import re

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.wagw.gateway.plugins.module_utils.wagw_graph import (
    GRAPH_ARGUMENT_SPEC,
    GraphClient,
    GraphError,
    canonical_json,
    describe,
)

DAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
META_DAYS = ["MONDAY", "TUESDAY", "WEDNESDAY", "THURSDAY", "FRIDAY", "SATURDAY", "SUNDAY"]
TIME_RE = re.compile(r"^([01][0-9]|2[0-3]):[0-5][0-9]$|^24:00$")
DAY_MINUTES = 1440


class HoursError(ValueError):
    pass


def _minutes(value: str, where: str) -> int:
    if not TIME_RE.match(str(value)):
        raise HoursError(f"{where}: time must be HH:MM or 24:00, got {value!r}")
    hh, mm = str(value).split(":")
    return int(hh) * 60 + int(mm)


def _hhmm(minutes: int) -> str:
    # Meta's times are HHMM of a day; the end of the day is 2359 (Meta's own example).
    minutes = min(minutes, DAY_MINUTES - 1)
    return f"{minutes // 60:02d}{minutes % 60:02d}"


def open_intervals(hours: dict) -> list[list[tuple[int, int]]]:
    """For each weekday (mon first), the intervals in minutes when the bridge would ring
    someone: the first window that matches decides, outside every window the route's own
    destinations (the bridge's routing.py, Window.matches)."""
    pieces: list[list[tuple[int, int, int]]] = [[] for _ in DAYS]  # (start, end, window index)
    for index, window in enumerate(hours.get("windows") or []):
        where = f"windows[{index}]"
        days = [str(d).lower()[:3] for d in window["days"]]
        unknown = [d for d in days if d not in DAYS]
        if unknown or not days:
            raise HoursError(f"{where}: days must be some of {DAYS}, got {window['days']}")
        start, end = _minutes(window["start"], where), _minutes(window["end"], where)
        for day in (DAYS.index(d) for d in days):
            if start < end:
                pieces[day].append((start, end, index))
            elif start > end:  # past midnight: the rest of this day and the start of the next
                pieces[day].append((start, DAY_MINUTES, index))
                pieces[(day + 1) % 7].append((0, end, index))
    windows = hours.get("windows") or []
    default_open = bool(hours.get("destinations"))
    result: list[list[tuple[int, int]]] = []
    for day in range(7):
        bounds = sorted({0, DAY_MINUTES} | {p[0] for p in pieces[day]} | {p[1] for p in pieces[day]})
        intervals: list[tuple[int, int]] = []
        for a, b in itertools.pairwise(bounds):
            matching = [p[2] for p in pieces[day] if p[0] <= a < p[1]]
            is_open = bool(windows[min(matching)].get("destinations")) if matching else default_open
            if not is_open:
                continue
            if intervals and intervals[-1][1] == a:
                intervals[-1] = (intervals[-1][0], b)
            else:
                intervals.append((a, b))
        result.append(intervals)
    return result


def call_hours_from(hours: dict, today: datetime.date | None = None) -> dict:
    """Meta's call_hours object for the business hours of a route."""
    timezone = hours["timezone"]
    week = open_intervals(hours)
    if all(day == [(0, DAY_MINUTES)] for day in week):
        return {"status": "DISABLED"}
    if not any(week):
        raise HoursError("the route rings nobody at any time (no destinations outside its windows and none in "
                         "them): WhatsApp users could only reach a missed call; give it destinations or disable "
                         "calling on the number")
    weekly = []
    for day, intervals in enumerate(week):
        if len(intervals) > 2:
            shown = ", ".join(f"{_hhmm(a)}-{_hhmm(b)}" for a, b in intervals)
            raise HoursError(f"{DAYS[day]} has {len(intervals)} open intervals ({shown}); Meta's call hours allow "
                             "at most 2 a day: join or drop windows of that day")
        weekly += [{"day_of_week": META_DAYS[day], "open_time": _hhmm(a), "close_time": _hhmm(b)}
                   for a, b in intervals]
    if today is None:
        try:
            from zoneinfo import ZoneInfo  # noqa: PLC0415 (stdlib, Python 3.9+)
            today = datetime.datetime.now(ZoneInfo(timezone)).date()
        except (ImportError, KeyError, ValueError) as exc:
            raise HoursError(f"unknown time zone {timezone!r}") from exc
    holidays = []
    for index, holiday in enumerate(hours.get("holidays") or []):
        where = f"holidays[{index}]"
        try:
            date = datetime.date.fromisoformat(str(holiday["date"]))
        except ValueError as exc:
            raise HoursError(f"{where}: date must be YYYY-MM-DD, got {holiday['date']!r}") from exc
        if date < today:
            continue
        holidays.append({"date": date.isoformat(), "start_time": _hhmm(_minutes(holiday["start"], where)),
                         "end_time": _hhmm(_minutes(holiday["end"], where))})
    if len(holidays) > 20:
        raise HoursError(f"{len(holidays)} holidays to come; Meta takes at most 20")
    return {"status": "ENABLED", "timezone_id": timezone, "weekly_operating_hours": weekly,
            "holiday_schedule": sorted(holidays, key=lambda h: (h["date"], h["start_time"]))}


def _time(value) -> str:
    text = str(value).replace(":", "")
    return text.zfill(4) if text.isdigit() else text


def normalize_call_hours(value, today: datetime.date) -> dict:
    """Meta's call_hours as returned (times as 0400, 04:00 or 400), in the form call_hours_from
    returns, for the comparison."""
    if not isinstance(value, dict) or value.get("status", "DISABLED") != "ENABLED":
        return {"status": "DISABLED"}
    weekly = [{"day_of_week": str(e.get("day_of_week", "")).upper(), "open_time": _time(e.get("open_time")),
               "close_time": _time(e.get("close_time"))} for e in value.get("weekly_operating_hours") or []]
    order = {d: i for i, d in enumerate(META_DAYS)}
    weekly.sort(key=lambda e: (order.get(e["day_of_week"], 9), e["open_time"]))
    holidays = [{"date": str(h.get("date")), "start_time": _time(h.get("start_time")),
                 "end_time": _time(h.get("end_time"))} for h in value.get("holiday_schedule") or []
                if str(h.get("date")) >= today.isoformat()]
    holidays.sort(key=lambda h: (h["date"], h["start_time"]))
    return {"status": "ENABLED", "timezone_id": value.get("timezone_id"), "weekly_operating_hours": weekly,
            "holiday_schedule": holidays}


def _server(value: dict) -> dict:
    return {"hostname": str(value.get("hostname", "")).lower(), "port": int(value.get("port") or 5061),
            "request_uri_user_params": dict(value.get("request_uri_user_params") or {})}


def current_state(calling: dict, params: dict, today: datetime.date) -> tuple[dict, list[str]]:
    """The managed part of Meta's calling settings, normalised; and the apps of foreign SIP servers."""
    state: dict = {"status": calling.get("status", "DISABLED")}
    if params["call_icon_visibility"] is not None:
        state["call_icon_visibility"] = calling.get("call_icon_visibility")  # absent: unknown, set it
    if params["callback_permission_status"] is not None:
        state["callback_permission_status"] = calling.get("callback_permission_status")
    if params["srtp_key_exchange_protocol"] is not None:
        # "If this field has not been explicitly set, it will not be returned" (default DTLS).
        state["srtp_key_exchange_protocol"] = calling.get("srtp_key_exchange_protocol", "DTLS")
    if params["additional_codecs"] is not None:
        codecs = (calling.get("audio") or {}).get("additional_codecs") or []
        state["audio"] = {"additional_codecs": sorted({str(c).upper() for c in codecs})}
    foreign: list[str] = []
    if params["sip"] is not None:
        sip = calling.get("sip") or {}
        servers = sip.get("servers") or []
        app_id = params["app_id"]
        ours = [s for s in servers if app_id is None or str(s.get("app_id")) == str(app_id)]
        foreign = sorted({str(s.get("app_id")) for s in servers if s not in ours})
        state["sip"] = {"status": sip.get("status", "DISABLED"), "servers": [_server(s) for s in ours]}
    if params["business_hours"] is not None:
        state["call_hours"] = normalize_call_hours(calling.get("call_hours"), today)
    return state, foreign


def wanted_state(params: dict, current: dict, call_hours: dict | None) -> dict:
    want = copy.deepcopy(current)
    want["status"] = params["status"]
    for key in ("call_icon_visibility", "callback_permission_status", "srtp_key_exchange_protocol"):
        if params[key] is not None:
            want[key] = params[key]
    if params["additional_codecs"] is not None:
        want["audio"] = {"additional_codecs": sorted(set(params["additional_codecs"]))}
    if params["sip"] is not None:
        sip = params["sip"]
        if sip["status"] == "ENABLED":
            want["sip"] = {"status": "ENABLED", "servers": [_server(sip)]}
        else:  # disabled: Meta keeps the servers for a later re-enable; so do we
            want["sip"] = {"status": "DISABLED", "servers": current["sip"]["servers"]}
    if call_hours is not None:
        want["call_hours"] = call_hours
    return want


def request_body(current: dict, want: dict, raw_calling: dict) -> dict:
    """The calling keys that differ, in the shape Meta takes."""
    calling: dict = {}
    for key, value in want.items():
        if current.get(key) == value:
            continue
        if key == "sip":
            servers = []
            for server in value["servers"]:
                entry = {"hostname": server["hostname"], "port": server["port"]}
                if server["request_uri_user_params"]:
                    entry["request_uri_user_params"] = server["request_uri_user_params"]
                servers.append(entry)
            calling["sip"] = {"status": value["status"], "servers": servers}
        elif key == "call_hours" and value["status"] == "DISABLED":
            # Meta documents timezone_id and weekly_operating_hours as required: keep its own.
            old = raw_calling.get("call_hours") or {}
            body = {"status": "DISABLED"}
            for field in ("timezone_id", "weekly_operating_hours", "holiday_schedule"):
                if field in old:
                    body[field] = old[field]
            calling["call_hours"] = body
        else:
            calling[key] = value
    return calling


def main() -> None:
    hours_spec = {
        "timezone": {"type": "str", "required": True},
        "destinations": {"type": "list", "elements": "str", "default": []},
        "windows": {"type": "list", "elements": "dict", "default": [], "options": {
            "days": {"type": "list", "elements": "str", "required": True},
            "start": {"type": "str", "required": True},
            "end": {"type": "str", "required": True},
            "destinations": {"type": "list", "elements": "str", "default": []},
        }},
        "holidays": {"type": "list", "elements": "dict", "default": [], "options": {
            "date": {"type": "str", "required": True},
            "start": {"type": "str", "default": "00:00"},
            "end": {"type": "str", "default": "24:00"},
        }},
    }
    module = AnsibleModule(
        argument_spec={
            **GRAPH_ARGUMENT_SPEC,
            "phone_number_id": {"type": "str", "required": True},
            "number": {"type": "str"},
            "app_id": {"type": "str"},
            "status": {"type": "str", "choices": ["ENABLED", "DISABLED"], "default": "ENABLED"},
            "call_icon_visibility": {"type": "str", "choices": ["DEFAULT", "DISABLE_ALL"]},
            "callback_permission_status": {"type": "str", "choices": ["ENABLED", "DISABLED"]},
            "srtp_key_exchange_protocol": {"type": "str", "choices": ["SDES", "DTLS"]},
            "additional_codecs": {"type": "list", "elements": "str", "choices": ["PCMA", "PCMU"]},
            "sip": {"type": "dict", "options": {
                "status": {"type": "str", "choices": ["ENABLED", "DISABLED"], "default": "ENABLED"},
                "hostname": {"type": "str"},
                "port": {"type": "int", "default": 5061},
                "request_uri_user_params": {"type": "dict"},
            }, "required_if": [("status", "ENABLED", ["hostname"])]},
            "business_hours": {"type": "dict", "options": hours_spec},
        },
        supports_check_mode=True,
    )
    params = module.params
    number_id = params["phone_number_id"]
    subject = (f"WhatsApp number {params['number']} (phone number id {number_id})" if params["number"]
               else f"WhatsApp phone number id {number_id}")

    call_hours = None
    today = datetime.datetime.now(datetime.UTC).date()
    if params["business_hours"] is not None:
        try:
            call_hours = call_hours_from(params["business_hours"])
            from zoneinfo import ZoneInfo  # noqa: PLC0415
            today = datetime.datetime.now(ZoneInfo(params["business_hours"]["timezone"])).date()
        except HoursError as exc:
            module.fail_json(msg=f"{subject}: business hours: {exc}")

    client = GraphClient.from_module(params)
    try:
        settings = client.get(f"{number_id}/settings")
    except GraphError as exc:
        module.fail_json(msg=describe(exc, subject, "reading the calling settings"), graph_error=exc.error,
                         http_status=exc.status)
    raw_calling = settings.get("calling") or {}
    current, foreign = current_state(raw_calling, params, today)
    if foreign:
        module.warn(f"{subject}: SIP servers of other apps ({', '.join(foreign)}) are configured on the number; "
                    "Meta ends a call on a BYE from any of them. Clear them with those apps' tokens.")
    want = wanted_state(params, current, call_hours)
    calling = request_body(current, want, raw_calling)
    body = {"calling": calling} if calling else {}
    if calling and not module.check_mode:
        try:
            client.post(f"{number_id}/settings", body)
        except GraphError as exc:
            module.fail_json(msg=describe(exc, subject, "updating the calling settings"), graph_error=exc.error,
                             http_status=exc.status, request=body)
    result: dict = {"changed": bool(calling), "before": current, "after": want, "request": body}
    if call_hours is not None:
        result["call_hours"] = call_hours
    if module._diff:
        result["diff"] = {"before_header": f"{subject}: calling", "after_header": f"{subject}: calling",
                          "before": canonical_json(current), "after": canonical_json(want)}
    module.exit_json(**result)


if __name__ == "__main__":
    main()
