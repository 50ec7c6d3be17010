#!/usr/bin/env python3
"""A stand-in for the few Graph API endpoints the wagw_meta_* modules use, with state, a request
log and switches for Meta's failures. Standard library only; loopback only.

It follows Meta's documented request and response shapes (nothing more is known of Meta's side):

* ``GET|POST /{version}/{phone-number-id}/settings``, object ``calling`` - status,
  call_icon_visibility (DEFAULT, DISABLE_ALL), callback_permission_status, call_hours
  (status, timezone_id, weekly_operating_hours: day_of_week, open_time/close_time "HHMM", at most
  2 a day, no overlap; holiday_schedule: date, start_time, end_time, at most 20, no past date;
  "if holiday_schedule is not passed ... the existing holiday_schedule will be deleted"),
  sip (status, servers: hostname, port, request_uri_user_params; one server per app, the app
  taken from the access token; GET lists each with its app_id, and with
  ``?include_sip_credentials=true`` its sip_user_password, one per number and app),
  srtp_key_exchange_protocol (SDES, DTLS; not returned until set), audio.additional_codecs
  (PCMA, PCMU); success ``{"success": true}``:
  https://developers.facebook.com/documentation/business-messaging/whatsapp/calling/call-settings
  https://developers.facebook.com/documentation/business-messaging/whatsapp/calling/sip
  https://developers.facebook.com/documentation/business-messaging/whatsapp/calling/reference
* Errors ``{"error": {"message", "type", "code", "error_subcode", "fbtrace_id"}}``: 138015
  "Calling APIs cannot be enabled for this phone number." (messaging limit below 2000, HTTP
  400), 100 invalid parameter, 190 expired token (OAuthException), 130429 throughput (HTTP 429),
  131000 something went wrong:
  https://developers.facebook.com/documentation/business-messaging/whatsapp/calling/troubleshooting
  https://developers.facebook.com/documentation/business-messaging/whatsapp/support/error-codes
* ``GET|POST /{version}/{app-id}/subscriptions`` (app access token ``{app-id}|{app-secret}``;
  object, callback_url, verify_token, fields - a POST adds fields, it removes none; GET answers
  ``{"data": [{"object", "callback_url", "active", "fields": [{"name", "version"}]}]}``):
  https://developers.facebook.com/docs/graph-api/reference/app/subscriptions/
  https://developers.facebook.com/docs/graph-api/webhooks/subscriptions-edge
  Meta checks a new callback URL with a verification request; the fake does not call back.
* ``GET|POST /{version}/{waba-id}/subscribed_apps`` (the app of the token; GET answers
  ``{"data": [{"whatsapp_business_api_data": {"id", "link", "name"}}]}``):
  https://developers.facebook.com/docs/graph-api/reference/whats-app-business-account/subscribed_apps/

Tokens: ``Authorization: Bearer <token>`` or an ``access_token`` parameter. The system user
token (``--token-file``) may call every endpoint but /{app-id}/subscriptions, which needs the
app access token.

Switches (``FakeMetaGraph`` attributes in a test, ``POST /_fake/control`` with JSON when it runs
standalone): ``throttle`` (the next N requests answer HTTP 429 with Graph error 130429; or a list
of codes, e.g. ``[4, 80007]``, answered with HTTP 400 as Graph does for its rate limits),
``server_errors`` (the next N requests answer 500/503), ``token_expired`` (every request: 401,
Graph error 190 subcode 463), ``messaging_limits`` ({phone-number-id: limit}; enabling calling
below 2000 is refused with 138015), ``generic_error`` (the next N requests answer 131000).
``GET /_fake/log`` returns the request log, ``GET /_fake/state`` the state, ``POST /_fake/reset``
empties both.

Standalone: ``python3 tests/fake_meta_graph.py --listen 127.0.0.1:8450 --token-file F --log F``
(the log file gets one JSON line per request).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import datetime
import json
import re
import secrets
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

DEFAULT_TOKEN = "EAAtesttoken"  # noqa: S105 (a test fixture)
DEFAULT_APP_ID = "900000000000001"
DEFAULT_APP_SECRET = "fake-app-secret"  # noqa: S105 (a test fixture)
DEFAULT_APP_NAME = "wa-voip-gateway test app"
MIN_CALLING_LIMIT = 2000
VERSION_RE = re.compile(r"^v[0-9]+\.[0-9]+$")
HHMM_RE = re.compile(r"^([01][0-9]|2[0-3])[0-5][0-9]$")
DAYS = ["MONDAY", "TUESDAY", "WEDNESDAY", "THURSDAY", "FRIDAY", "SATURDAY", "SUNDAY"]


class Refusal(Exception):
    def __init__(self, status: int, code: int, message: str, *, subcode: int | None = None,
                 type_: str = "OAuthException", details: str | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.subcode, self.type, self.details = (
            status, code, message, subcode, type_, details)

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"message": self.message, "type": self.type, "code": self.code,
                                 "fbtrace_id": "A" + secrets.token_hex(8)}
        if self.subcode is not None:
            error["error_subcode"] = self.subcode
        if self.details:
            error["error_data"] = {"messaging_product": "whatsapp", "details": self.details}
        return {"error": error}


def invalid(details: str) -> Refusal:
    return Refusal(400, 100, "(#100) Invalid parameter", details=details)


class FakeMetaGraph:
    """The fake's state and behaviour; ``serve()`` runs it on a port of loopback."""

    def __init__(self, *, token: str = DEFAULT_TOKEN, app_id: str = DEFAULT_APP_ID,
                 app_secret: str = DEFAULT_APP_SECRET, log_file: Path | None = None) -> None:
        self.token, self.app_id, self.app_secret = token, app_id, app_secret
        self.log_file = log_file
        self.lock = threading.Lock()
        self.reset()

    # -- state ------------------------------------------------------------------------------
    def reset(self) -> None:
        self.log: list[dict[str, Any]] = []
        # phone number id -> {"calling": {...}, "servers": {app_id: server}, "passwords": {app_id: pw}}
        self.numbers: dict[str, dict[str, Any]] = {}
        self.messaging_limits: dict[str, int] = {}
        self.app_subscriptions: dict[str, list[dict[str, Any]]] = {}
        self.waba_apps: dict[str, list[str]] = {}
        self.throttle: int | list[int] = 0
        self.server_errors = 0
        self.generic_error = 0
        self.token_expired = False

    def add_number(self, phone_number_id: str, messaging_limit: int = 10000) -> None:
        self.numbers.setdefault(phone_number_id, {"calling": {"status": "DISABLED"}, "servers": {}, "passwords": {}})
        self.messaging_limits[phone_number_id] = messaging_limit

    def sip_password(self, phone_number_id: str, app_id: str | None = None) -> str | None:
        return self.numbers.get(phone_number_id, {}).get("passwords", {}).get(app_id or self.app_id)

    def posts(self) -> list[dict[str, Any]]:
        return [entry for entry in self.log if entry["method"] == "POST"]

    def control(self, settings: dict[str, Any]) -> None:
        for key in ("throttle", "server_errors", "generic_error", "token_expired"):
            if key in settings:
                setattr(self, key, settings[key])
        for number, limit in (settings.get("messaging_limits") or {}).items():
            self.add_number(str(number))
            self.messaging_limits[str(number)] = int(limit)
        for number in settings.get("numbers") or []:
            self.add_number(str(number))

    def snapshot(self) -> dict[str, Any]:
        return {"numbers": copy.deepcopy(self.numbers), "messaging_limits": dict(self.messaging_limits),
                "app_subscriptions": copy.deepcopy(self.app_subscriptions), "waba_apps": copy.deepcopy(self.waba_apps)}

    # -- requests ---------------------------------------------------------------------------
    def handle(self, method: str, raw_path: str, headers: dict[str, str], raw_body: bytes) -> tuple[int, dict]:
        url = urlsplit(raw_path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        body: dict[str, Any] = {}
        if raw_body:
            if headers.get("content-type", "").startswith("application/json"):
                body = json.loads(raw_body.decode() or "{}")
            else:
                body = {k: v[-1] for k, v in parse_qs(raw_body.decode()).items()}
        token = headers.get("authorization", "").removeprefix("Bearer ").strip() or body.pop(
            "access_token", None) or query.pop("access_token", None)
        entry = {"method": method, "path": url.path, "query": query, "body": body}
        with self.lock:
            self.log.append(entry)
            try:
                status, answer = 200, self._dispatch(method, url.path, query, body, token)
            except Refusal as refusal:
                status, answer = refusal.status, refusal.body()
            entry["status"] = status
            if self.log_file:
                with self.log_file.open("a") as f:
                    f.write(json.dumps(entry) + "\n")
        return status, answer

    def _failures(self) -> None:
        if self.token_expired:
            raise Refusal(401, 190, "Error validating access token: Session has expired on Tuesday, "
                          "01-Dec-26 01:00:00 PST. The current time is Wednesday, 02-Dec-26 02:00:00 PST.",
                          subcode=463)
        if self.throttle:
            if isinstance(self.throttle, list):
                code = self.throttle.pop(0)
                raise Refusal(400, code, f"(#{code}) Application request limit reached", type_="OAuthException")
            self.throttle -= 1
            raise Refusal(429, 130429, "(#130429) Rate limit hit", type_="OAuthException",
                          details="Cloud API message throughput has been reached.")
        if self.server_errors:
            self.server_errors -= 1
            raise Refusal(503 if self.server_errors % 2 else 500, 2, "An unexpected error has occurred. "
                          "Please retry your request later.", type_="OAuthException")
        if self.generic_error:
            self.generic_error -= 1
            raise Refusal(400, 131000, "(#131000) Something went wrong", details="Something went wrong")

    def _dispatch(self, method: str, path: str, query: dict, body: dict, token: str | None) -> dict:
        parts = [p for p in path.split("/") if p]
        if len(parts) != 3 or not VERSION_RE.match(parts[0]):
            raise Refusal(400, 2500, "Unknown path components: " + path, type_="OAuthException")
        _version, node, edge = parts
        app_token = f"{self.app_id}|{self.app_secret}"
        if token not in (self.token, app_token):
            raise Refusal(400, 190, "Invalid OAuth access token - Cannot parse access token")
        self._failures()
        if edge == "settings" and node in self.numbers:
            if token != self.token:
                raise Refusal(400, 200, "(#200) Permissions error", type_="OAuthException")
            return self._settings_get(node, query) if method == "GET" else self._settings_post(node, body)
        if edge == "subscriptions" and node == self.app_id:
            if token != app_token:
                raise Refusal(400, 15, "(#15) This method must be called with an app access_token.")
            return self._subscriptions_get() if method == "GET" else self._subscriptions_post(body)
        if edge == "subscribed_apps" and node.isdigit():
            if method == "GET":
                return {"data": [{"whatsapp_business_api_data": {"id": app, "link": "https://example.com/",
                                                                  "name": DEFAULT_APP_NAME}}
                                 for app in self.waba_apps.get(node, [])]}
            apps = self.waba_apps.setdefault(node, [])
            if self.app_id not in apps:
                apps.append(self.app_id)
            return {"success": True}
        raise Refusal(400, 100, f"Unsupported {method.lower()} request. Object with ID '{node}' does not exist, "
                      "cannot be loaded due to missing permissions, or does not support this operation.",
                      subcode=33, type_="GraphMethodException")

    # -- settings -----------------------------------------------------------------------------
    def _settings_get(self, number_id: str, query: dict) -> dict:
        number = self.numbers[number_id]
        calling = copy.deepcopy(number["calling"])
        servers = []
        for app, server in number["servers"].items():
            entry = {"app_id": int(app), **copy.deepcopy(server)}
            if query.get("include_sip_credentials") == "true" and app == self.app_id:
                entry["sip_user_password"] = number["passwords"][app]
            servers.append(entry)
        if "sip" in calling or servers:
            calling["sip"] = {"status": calling.get("sip", {}).get("status", "DISABLED"), "servers": servers}
        return {"calling": calling, "payload_encryption": {"status": "DISABLED"}}

    def _settings_post(self, number_id: str, body: dict) -> dict:
        calling = body.get("calling")
        if not isinstance(calling, dict) or not calling:
            raise invalid("calling must be a non-empty object")
        number = self.numbers[number_id]
        new = copy.deepcopy(number["calling"])
        for key, value in calling.items():
            if key in ("status", "callback_permission_status"):
                self._choice(key, value, ["ENABLED", "DISABLED"])
            elif key == "call_icon_visibility":
                self._choice(key, value, ["DEFAULT", "DISABLE_ALL"])
            elif key == "srtp_key_exchange_protocol":
                self._choice(key, value, ["SDES", "DTLS"])
            elif key == "audio":
                codecs = value.get("additional_codecs") if isinstance(value, dict) else None
                if not isinstance(codecs, list) or any(c not in ("PCMA", "PCMU") for c in codecs):
                    raise invalid("audio.additional_codecs must be a list of PCMA, PCMU")
            elif key == "call_hours":
                self._check_call_hours(value)
                if "holiday_schedule" not in value:
                    value = {**value, "holiday_schedule": []}  # noqa: PLW2901 (Meta empties it)
            elif key == "sip":
                continue
            else:
                raise invalid(f"unknown calling parameter {key}")
            new[key] = value
        servers = self._sip(calling, new, copy.deepcopy(number["servers"]))
        enabling = new.get("status") == "ENABLED" and number["calling"].get("status") != "ENABLED"
        if enabling and self.messaging_limits.get(number_id, 0) < MIN_CALLING_LIMIT:
            raise Refusal(400, 138015, "Calling APIs cannot be enabled for this phone number.",
                          type_="OAuthException", details="Check and make sure messaging limit on your phone "
                          "number is 2000 or more")
        number["calling"], number["servers"] = new, servers
        for app in servers:
            number["passwords"].setdefault(app, secrets.token_urlsafe(24))
        return {"success": True}

    def _sip(self, calling: dict, new: dict, servers: dict) -> dict:
        """calling.sip of a POST applied to this app's server; the servers as they would be."""
        if "sip" not in calling:
            return servers
        sip = calling["sip"]
        if not isinstance(sip, dict):
            raise invalid("sip must be an object")
        if "status" in sip:
            self._choice("sip.status", sip["status"], ["ENABLED", "DISABLED"])
        if "servers" in sip:
            listed = sip["servers"]
            if not isinstance(listed, list) or len(listed) > 1:
                raise invalid("sip.servers: each phone number can have only one SIP server per app")
            for server in listed:
                if not isinstance(server, dict) or not server.get("hostname"):
                    raise invalid("sip.servers[].hostname is required")
                if not isinstance(server.get("port", 5061), int):
                    raise invalid("sip.servers[].port must be a number")
                for k, v in (server.get("request_uri_user_params") or {}).items():
                    if len(str(k)) + len(str(v)) > 128:
                        raise invalid("request_uri_user_params: max key/value size is 128 characters")
            if listed:
                servers[self.app_id] = {k: listed[0][k] for k in ("hostname", "port", "request_uri_user_params")
                                        if k in listed[0]}
                servers[self.app_id].setdefault("port", 5061)
            else:
                servers.pop(self.app_id, None)
        status = sip.get("status", new.get("sip", {}).get("status", "DISABLED"))
        if status == "ENABLED" and not servers:
            raise invalid("at least 1 SIP server must exist when SIP status is ENABLED")
        new["sip"] = {"status": status}
        return servers

    @staticmethod
    def _choice(key: str, value: Any, choices: list[str]) -> None:
        if value not in choices:
            raise invalid(f"{key} must be one of {choices}, got {value!r}")

    @staticmethod
    def _check_call_hours(value: Any) -> None:
        if not isinstance(value, dict):
            raise invalid("call_hours must be an object")
        FakeMetaGraph._choice("call_hours.status", value.get("status"), ["ENABLED", "DISABLED"])
        if value["status"] == "DISABLED":
            return
        if not value.get("timezone_id") or "/" not in str(value["timezone_id"]):
            raise invalid("Timezone is invalid in call_hours")
        weekly = value.get("weekly_operating_hours")
        if not isinstance(weekly, list) or not weekly:
            raise invalid("weekly_operating_hours in call_hours cannot be empty")
        per_day: dict[str, list[tuple[str, str]]] = {}
        for entry in weekly:
            day, open_, close = entry.get("day_of_week"), str(entry.get("open_time")), str(entry.get("close_time"))
            if day not in DAYS or not HHMM_RE.match(open_) or not HHMM_RE.match(close) or open_ >= close:
                raise invalid(f"Invalid schedule for call_hours: {entry}")
            per_day.setdefault(day, []).append((open_, close))
        for day, intervals in per_day.items():
            if len(intervals) > 2:
                raise invalid(f"More than 2 entries not allowed in weekly_operating_hours schedule ({day})")
            intervals.sort()
            if len(intervals) == 2 and intervals[0][1] > intervals[1][0]:
                raise invalid(f"Overlapping schedule in call_hours is not allowed ({day})")
        holidays = value.get("holiday_schedule") or []
        if len(holidays) > 20:
            raise invalid("Up to 20 holiday_schedule overrides can be specified")
        for holiday in holidays:
            try:
                date = datetime.date.fromisoformat(str(holiday.get("date")))
            except ValueError as exc:
                raise invalid("Date format in holiday_schedule for call_hours is invalid") from exc
            if date < datetime.datetime.now(datetime.UTC).date() - datetime.timedelta(days=1):
                raise invalid("Holiday given in call_hours is a past date")

    # -- app subscriptions -------------------------------------------------------------------------
    def _subscriptions_get(self) -> dict:
        return {"data": copy.deepcopy(self.app_subscriptions.get(self.app_id, []))}

    def _subscriptions_post(self, body: dict) -> dict:
        obj, callback, verify = body.get("object"), body.get("callback_url"), body.get("verify_token")
        fields = body.get("fields")
        if isinstance(fields, str):
            fields = [f.strip() for f in fields.split(",") if f.strip()]
        if obj != "whatsapp_business_account" or not callback or not verify or not fields:
            raise invalid("object, callback_url, verify_token and fields are required")
        if not str(callback).startswith("https://"):
            raise invalid("callback_url must be a valid https URL")
        subs = self.app_subscriptions.setdefault(self.app_id, [])
        sub = next((s for s in subs if s["object"] == obj), None)
        if sub is None:
            sub = {"object": obj, "callback_url": callback, "active": True, "fields": []}
            subs.append(sub)
        sub["callback_url"], sub["active"] = callback, True
        known = {f["name"] for f in sub["fields"]}
        sub["fields"] += [{"name": name, "version": "v23.0"} for name in fields if name not in known]
        sub["_verify_token"] = verify
        return {"success": True}


def serve(fake: FakeMetaGraph, host: str = "127.0.0.1", port: int = 0) -> ThreadingHTTPServer:
    """An HTTP server for ``fake``; the caller runs ``serve_forever`` (a thread in tests)."""

    class Handler(BaseHTTPRequestHandler):
        def _answer(self, status: int, payload: Any) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _any(self, method: str) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            if self.path.startswith("/_fake/"):
                with fake.lock:
                    if self.path == "/_fake/log":
                        return self._answer(200, fake.log)
                    if self.path == "/_fake/state":
                        return self._answer(200, fake.snapshot())
                    if self.path == "/_fake/reset" and method == "POST":
                        fake.reset()
                        return self._answer(200, {"success": True})
                    if self.path == "/_fake/control" and method == "POST":
                        fake.control(json.loads(raw.decode() or "{}"))
                        return self._answer(200, {"success": True})
                return self._answer(404, {"error": "unknown control path"})
            headers = {k.lower(): v for k, v in self.headers.items()}
            status, payload = fake.handle(method, self.path, headers, raw)
            return self._answer(status, payload)

        def do_GET(self) -> None:
            self._any("GET")

        def do_POST(self) -> None:
            self._any("POST")

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return ThreadingHTTPServer((host, port), Handler)


@contextlib.contextmanager
def running(fake: FakeMetaGraph) -> Iterator[str]:
    """Serves ``fake`` on a free port of 127.0.0.1 in a thread; yields its base URL."""
    server = serve(fake)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--listen", default="127.0.0.1:8450", help="HOST:PORT on loopback")
    parser.add_argument("--token-file", type=Path, help="file with the system user access token")
    parser.add_argument("--app-id", default=DEFAULT_APP_ID)
    parser.add_argument("--app-secret-file", type=Path, help="file with the app secret")
    parser.add_argument("--log", type=Path, help="JSON lines of every request")
    parser.add_argument("--number", action="append", default=[],
                        help="PHONE_NUMBER_ID[:MESSAGING_LIMIT] known to the fake (repeatable)")
    args = parser.parse_args()
    host, _, port = args.listen.rpartition(":")
    if not host.startswith("127.") and host not in ("localhost", "::1"):
        parser.error("the fake listens on loopback only")
    fake = FakeMetaGraph(token=args.token_file.read_text().strip() if args.token_file else DEFAULT_TOKEN,
                         app_id=args.app_id,
                         app_secret=args.app_secret_file.read_text().strip() if args.app_secret_file
                         else DEFAULT_APP_SECRET, log_file=args.log)
    for spec in args.number:
        number, _, limit = spec.partition(":")
        fake.add_number(number, int(limit or 10000))
    server = serve(fake, host, int(port))
    print(f"fake Meta Graph API on http://{host}:{server.server_address[1]}", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()


if __name__ == "__main__":
    main()
