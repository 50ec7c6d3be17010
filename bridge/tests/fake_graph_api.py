"""A stand-in for Meta's Graph API ``POST /{version}/{phone-number-id}/messages`` (stdlib only).

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

Every accepted request is recorded (path, headers, body). Runs standalone too, for Molecule::

    python3 fake_graph_api.py --listen 127.0.0.1:8449 --token-file FILE --log /path/requests.jsonl
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

PATH_RE = re.compile(r"^/v[0-9]+\.[0-9]+/([0-9]+)/messages$")
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
        return 200, {
            "messaging_product": "whatsapp",
            "contacts": [{"input": body["to"], "wa_id": body["to"].lstrip("+")}],
            # unique across restarts too, like Meta's ids (a verify run may start a new fake)
            "messages": [
                {"id": f"wamid.FAKE{n:06d}{uuid.uuid4().hex.upper()}", "message_status": "accepted"}
            ],
        }

    def serve(self, host: str = "127.0.0.1", port: int = 0) -> ThreadingHTTPServer:
        api = self

        class Handler(BaseHTTPRequestHandler):
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
    if not isinstance(to, str) or not re.fullmatch(r"\+?[0-9]{7,15}", to):
        return "to must be a phone number"
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
    args = ap.parse_args()
    host, port = args.listen.rsplit(":", 1)
    api = FakeGraphAPI(args.token_file.read_text(encoding="utf-8").strip(), log_path=args.log)
    server = api.serve(host, int(port))
    try:
        threading.Event().wait()
    finally:
        server.shutdown()


if __name__ == "__main__":
    main()
