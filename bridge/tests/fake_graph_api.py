"""A stand-in for Meta's Graph API: ``POST /{version}/{phone-number-id}/messages`` and
``GET /{version}/{phone-number-id}/call_permissions`` (stdlib only).

Meta's Graph API cannot be reached from the test bed, so the outbox dispatcher is tested against
this fake. It is faithful to the documented wire format of the WhatsApp Cloud API:

* request: ``POST /vNN.N/{phone-number-id}/messages`` with ``Authorization: Bearer <token>`` and
  a JSON body ``{"messaging_product": "whatsapp", "recipient_type": "individual", "to": ...,
  "type": "text" | "interactive" | ..., "<type>": {...}}``;
* success (200): ``{"messaging_product": "whatsapp", "contacts": [{"input": <to>, "wa_id":
  <digits>}], "messages": [{"id": "wamid...", "message_status": "accepted"}]}``;
* errors: ``{"error": {"message", "type", "code", "error_data": {"messaging_product",
  "details"}, "fbtrace_id"}}`` -- 401 with code 190 for a bad token, 400 with code 100 for an
  invalid parameter, and whatever a test scripts (e.g. 429 with code 130429, rate limit hit;
  400 with code 131047, re-engagement message outside the 24-hour window; 500 with 131000).

* ``to`` may be a business-scoped user ID (BSUID); the answer's contact is then
  ``{"input": <BSUID>, "wa_id": "", "user_id": <BSUID>}`` (Meta, "Business-scoped user IDs",
  https://developers.facebook.com/documentation/business-messaging/whatsapp/business-scoped-user-ids
  , sections "Send message requests" / "Send message response");
* ``GET /vNN.N/{phone-number-id}/call_permissions?user_wa_id=<number or BSUID>`` (Calling API,
  "Get current call permission state"; ``user_wa_id`` takes a number or a BSUID per the BSUID
  page, "Get call permissions"): 200 ``{"messaging_product": "whatsapp", "permission":
  {"status": "no_permission" | "temporary" | "permanent", "expiration_time": <unix s,
  temporary only>}, "actions": [{"action_name": "send_call_permission_request" |
  "start_call", "can_perform_action": bool, "limits": [{"time_period", "max_allowed",
  "current_usage"[, "limit_expiration_time"]}]}]}``; a user nobody set has ``no_permission``
  (Meta: "If the consumer phone number is uncallable, the api response will be
  no_permission"). A test sets a user's state with :meth:`FakeGraphAPI.set_permission`.

Every accepted request is recorded (path, headers, body). Runs standalone too, for Molecule::

    python3 fake_graph_api.py --listen 127.0.0.1:8449 --token-file FILE --log /path/requests.jsonl \
        [--permissions permissions.json]
"""

from __future__ import annotations

import argparse
import itertools
import json
import re
import threading
import uuid
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

PATH_RE = re.compile(r"^/v[0-9]+\.[0-9]+/([0-9]+)/messages$")
PERMISSIONS_RE = re.compile(r"^/v[0-9]+\.[0-9]+/([0-9]+)/call_permissions$")
BSUID_RE = re.compile(r"^[A-Za-z]{2,8}(\.[A-Za-z]{2,8})?\.[A-Za-z0-9]{1,256}$")
MESSAGE_TYPES = ("text", "interactive", "template", "image", "audio", "document", "reaction")


def graph_error(code: int, message: str, details: str = "", kind: str = "OAuthException") -> dict:
    return {
        "error": {
            "message": message,
            "type": kind,
            "code": code,
            "error_data": {"messaging_product": "whatsapp", "details": details or message},
            "fbtrace_id": "AbCdEfGhIjKlMnOp",
        }
    }


@dataclass
class FakeGraphAPI:
    token: str
    requests: list[dict[str, Any]] = field(default_factory=list)
    # Scripted answers, used one per request before the normal behaviour: (status, body).
    script: deque[tuple[int, dict[str, Any]]] = field(default_factory=deque)
    log_path: Path | None = None
    # call permission state per user (digits or BSUID): status, expiration_time, start_call
    permissions: dict[str, dict[str, Any]] = field(default_factory=dict)
    permission_requests: list[dict[str, Any]] = field(default_factory=list)
    _ids: itertools.count = field(default_factory=lambda: itertools.count(1))
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def answer(self, path: str, headers: dict[str, str], raw: bytes) -> tuple[int, dict[str, Any]]:
        m = PATH_RE.match(path)
        if m is None:
            return 404, graph_error(803, "Unknown path components", kind="GraphMethodException")
        if headers.get("authorization") != f"Bearer {self.token}":
            return 401, graph_error(190, "Invalid OAuth access token - Cannot parse access token")
        try:
            body = json.loads(raw)
        except ValueError:
            return 400, graph_error(100, "Invalid parameter", "request body is not JSON")
        problem = _check_message(body)
        if problem:
            return 400, graph_error(100, "Invalid parameter", problem)
        with self._lock:
            record = {"phone_number_id": m.group(1), "body": body, "headers": headers}
            self.requests.append(record)
            if self.log_path is not None:
                with self.log_path.open("a", encoding="utf-8") as fh:
                    fh.write(json.dumps({"phone_number_id": m.group(1), "body": body}) + "\n")
            if self.script:
                return self.script.popleft()
            n = next(self._ids)
        to = body["to"]
        contact = (
            {"input": to, "wa_id": "", "user_id": to}
            if BSUID_RE.match(to)
            else {"input": to, "wa_id": to.lstrip("+")}
        )
        return 200, {
            "messaging_product": "whatsapp",
            "contacts": [contact],
            # unique across restarts too, like Meta's ids (a verify run may start a new fake)
            "messages": [
                {"id": f"wamid.FAKE{n:06d}{uuid.uuid4().hex.upper()}", "message_status": "accepted"}
            ],
        }

    def set_permission(
        self,
        user: str,
        status: str,
        expiration_time: int | None = None,
        can_start_call: bool = True,
    ) -> None:
        """The permission Meta holds for ``user`` (number digits or BSUID): ``no_permission``,
        ``temporary`` (with ``expiration_time``) or ``permanent``."""
        with self._lock:
            self.permissions[user.lstrip("+")] = {
                "status": status,
                "expiration_time": expiration_time,
                "can_start_call": can_start_call,
            }

    def answer_get(self, target: str, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
        path, _, query = target.partition("?")
        m = PERMISSIONS_RE.match(path)
        if m is None:
            return 404, graph_error(803, "Unknown path components", kind="GraphMethodException")
        if headers.get("authorization") != f"Bearer {self.token}":
            return 401, graph_error(190, "Invalid OAuth access token - Cannot parse access token")
        user = (parse_qs(query).get("user_wa_id") or [""])[0].lstrip("+")
        if not (re.fullmatch(r"[0-9]{7,15}", user) or BSUID_RE.match(user)):
            return 400, graph_error(100, "Invalid parameter", "user_wa_id is required")
        with self._lock:
            self.permission_requests.append({"phone_number_id": m.group(1), "user": user})
            state = dict(self.permissions.get(user) or {"status": "no_permission"})
            if self.script:
                return self.script.popleft()
        granted = state["status"] in ("temporary", "permanent")
        permission: dict[str, Any] = {"status": state["status"]}
        if state["status"] == "temporary" and state.get("expiration_time") is not None:
            permission["expiration_time"] = state["expiration_time"]
        start_call: dict[str, Any] = {
            "action_name": "start_call",
            "can_perform_action": granted and state.get("can_start_call", True),
            "limits": [{"time_period": "PT24H", "max_allowed": 100, "current_usage": 0}],
        }
        return 200, {
            "messaging_product": "whatsapp",
            "permission": permission,
            "actions": [
                {
                    "action_name": "send_call_permission_request",
                    "can_perform_action": not granted,
                    "limits": [
                        {"time_period": "PT24H", "max_allowed": 1, "current_usage": 0},
                        {"time_period": "P7D", "max_allowed": 2, "current_usage": 0},
                    ],
                },
                start_call,
            ],
        }

    def serve(self, host: str = "127.0.0.1", port: int = 0) -> ThreadingHTTPServer:
        api = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                headers = {k.lower(): v for k, v in self.headers.items()}
                status, body = api.answer_get(self.path, headers)
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length)
                headers = {k.lower(): v for k, v in self.headers.items()}
                status, body = api.answer(self.path, headers, raw)
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                return

        server = ThreadingHTTPServer((host, port), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return server


def _check_message(body: Any) -> str:
    if not isinstance(body, dict):
        return "body must be a JSON object"
    if body.get("messaging_product") != "whatsapp":
        return "messaging_product must be whatsapp"
    to = body.get("to")
    if not isinstance(to, str) or not (re.fullmatch(r"\+?[0-9]{7,15}", to) or BSUID_RE.match(to)):
        return "to must be a phone number or a business-scoped user ID"
    mtype = body.get("type", "text")
    if mtype not in MESSAGE_TYPES or not isinstance(body.get(mtype), dict):
        return f"type {mtype!r} needs an object under the same key"
    if mtype == "text" and not body["text"].get("body"):
        return "text.body is required"
    if mtype == "interactive":
        buttons = body["interactive"].get("action", {}).get("buttons", [])
        if not 1 <= len(buttons) <= 3:
            return "interactive button messages take 1 to 3 buttons"
        for b in buttons:
            if len(str(b.get("reply", {}).get("title", ""))) > 20:
                return "button titles are at most 20 characters"
    return ""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--listen", default="127.0.0.1:8449")
    ap.add_argument("--token-file", type=Path, required=True, help="the expected access token")
    ap.add_argument("--log", type=Path, required=True, help="JSON lines of accepted requests")
    ap.add_argument(
        "--permissions",
        type=Path,
        help='JSON {"<digits or BSUID>": {"status": "temporary"|"permanent"|"no_permission",'
        ' "expiration_time": <unix s>}} for GET call_permissions (default: no_permission)',
    )
    args = ap.parse_args()
    host, port = args.listen.rsplit(":", 1)
    api = FakeGraphAPI(args.token_file.read_text(encoding="utf-8").strip(), log_path=args.log)
    if args.permissions is not None:
        for user, state in json.loads(args.permissions.read_text(encoding="utf-8")).items():
            api.set_permission(user, state["status"], state.get("expiration_time"))
    server = api.serve(host, int(port))
    try:
        threading.Event().wait()
    finally:
        server.shutdown()


if __name__ == "__main__":
    main()
