# Copyright: (c) 2026, wa-voip-gateway
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Meta's Graph API for the wagw_meta_* modules: HTTP with urllib (the modules run on the
controller, no extra dependency), retries with backoff on throttling and 5xx, Meta's error
codes turned into messages an operator can act on, and no secret in any message.

Meta's documentation this follows:

* Error shape ``{"error": {"message", "type", "code", "error_subcode", "error_user_msg",
  "error_data", "fbtrace_id"}}`` and the Calling API codes (138015 "Calling cannot be enabled:
  Calling APIs cannot be enabled for this phone number" - the messaging limit must be 2000 or
  more; 138018 technical prerequisites not met):
  https://developers.facebook.com/documentation/business-messaging/whatsapp/calling/troubleshooting
* Cloud API error codes (0/190 authorization, 4/80007/130429 rate limits, 100 invalid
  parameter, 131000 something went wrong):
  https://developers.facebook.com/documentation/business-messaging/whatsapp/support/error-codes
* Graph API rate limiting (4 application, 17 user, 32 page, 613 custom rate limit; HTTP 429):
  https://developers.facebook.com/docs/graph-api/overview/rate-limiting

Access tokens travel in the ``Authorization: Bearer`` header only, never in a URL, so no
error message, log line or module result can carry one.
"""

from __future__ import annotations

import json
import random
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Any

DEFAULT_GRAPH_API_URL = "https://graph.facebook.com"
DEFAULT_GRAPH_API_VERSION = "v23.0"

# Graph error codes that mean "too many requests, try again later" (besides HTTP 429):
# 4 application, 17 user, 32 page, 613 custom rate limit (Graph API rate limiting);
# 80007 WhatsApp Business Account rate limit, 130429 Cloud API throughput (Cloud API error codes).
THROTTLING_CODES = frozenset({4, 17, 32, 613, 80007, 130429})
# Graph marks some errors as transient (code 1 unknown, 2 service temporarily unavailable).
TRANSIENT_CODES = frozenset({1, 2})

MESSAGING_LIMITS_URL = "https://developers.facebook.com/documentation/business-messaging/whatsapp/messaging-limits"
TROUBLESHOOTING_URL = "https://developers.facebook.com/documentation/business-messaging/whatsapp/calling/troubleshooting"

# The options every wagw_meta_* module takes (merged into its argument_spec).
GRAPH_ARGUMENT_SPEC: dict[str, dict[str, Any]] = {
    "graph_api_url": {"type": "str", "default": DEFAULT_GRAPH_API_URL},
    "graph_api_version": {"type": "str", "default": DEFAULT_GRAPH_API_VERSION},
    "access_token": {"type": "str", "required": True, "no_log": True},
    "retries": {"type": "int", "default": 5},
    "retry_delay": {"type": "float", "default": 2.0},
    "timeout": {"type": "float", "default": 30.0},
}


class GraphError(Exception):
    """A Graph API request that failed for good (after the retries, where they apply)."""

    def __init__(self, status: int, error: dict[str, Any] | None = None, *, attempts: int = 1,
                 transport: str | None = None) -> None:
        self.status = status
        self.error = error or {}
        self.attempts = attempts
        self.transport = transport
        super().__init__(self.summary())

    @property
    def code(self) -> int | None:
        code = self.error.get("code")
        return code if isinstance(code, int) else None

    @property
    def subcode(self) -> int | None:
        sub = self.error.get("error_subcode")
        return sub if isinstance(sub, int) else None

    def summary(self) -> str:
        """Meta's own words: message, user message, details, trace id."""
        if self.transport:
            return self.transport
        parts = [str(self.error.get("message") or f"HTTP {self.status}").rstrip(". ")]
        for key in ("error_user_title", "error_user_msg"):
            if self.error.get(key) and str(self.error[key]) not in parts[0]:
                parts.append(str(self.error[key]))
        data = self.error.get("error_data")
        details = data.get("details") if isinstance(data, dict) else data if isinstance(data, str) else None
        if details:
            parts.append(f"details: {details}")
        label = f"HTTP {self.status}"
        if self.code is not None:
            label += f", Graph error {self.code}" + (f"/{self.subcode}" if self.subcode else "")
        if self.error.get("fbtrace_id"):
            label += f", fbtrace_id {self.error['fbtrace_id']}"
        return f"{'; '.join(parts)} ({label})"


def is_retryable(status: int, code: int | None) -> bool:
    return status == 429 or status >= 500 or code in THROTTLING_CODES or code in TRANSIENT_CODES


def describe(err: GraphError, subject: str, action: str) -> str:
    """One sentence for the operator: what failed, for which number or app, why, what to do."""
    code, detail = err.code, err.summary()
    head = f"{subject}: {action} failed"
    if err.transport:
        return f"{head}: Meta's Graph API was not reachable: {detail}"
    if code == 190 or (err.status == 401 and code is None):
        return (f"{head}: Meta refused the access token (Graph error 190: expired, revoked or invalid): "
                f"{detail}. Create a new system user token in Meta Business Suite (Business settings > "
                "System users) with whatsapp_business_management and whatsapp_business_messaging, "
                "put it into the client's vault (wagw_meta.access_token) and run again")
    if code == 138015:
        return (f"{head}: Meta refuses to enable calling on this number (Graph error 138015, calling cannot be "
                f"enabled): {detail}. Calling needs a messaging limit "
                f"of at least 2000 business-initiated conversations in 24 hours ({MESSAGING_LIMITS_URL}); "
                "raise the number's limit (business verification, message quality) and run again")
    if code == 138018:
        return (f"{head}: Meta says WhatsApp Business calling cannot be enabled because technical "
                f"prerequisites are not met (Graph error 138018): {detail}. Configure SIP on the number "
                f"or subscribe an app of the WABA to the 'calls' webhook field ({TROUBLESHOOTING_URL})")
    if code == 138014:
        return (f"{head}: Meta has temporarily disabled calling on this number for low quality "
                f"(Graph error 138014): {detail}. Retry after the restriction is lifted")
    if code == 131000:
        return (f"{head}: Meta reported a generic error (Graph error 131000, something went wrong): "
                f"{detail}. Usually transient: run again later; if it persists, open a Meta support "
                "ticket with the fbtrace_id")
    if code == 100:
        return (f"{head}: Meta refused a parameter (Graph error 100, invalid parameter): {detail}. "
                "Check the values the inventory gives this number")
    if code in (10, 200) or (code is not None and 200 <= code <= 299):
        return (f"{head}: the token lacks a permission (Graph error {code}): {detail}. The system user "
                "needs whatsapp_business_management on the WABA and the number")
    if is_retryable(err.status, code):
        return (f"{head}: Meta still throttled or failed the request after {err.attempts} attempts: {detail}. "
                "Run again later")
    return f"{head}: {detail}"


class GraphClient:
    """A few Graph API requests with one token, retried on throttling and server errors.

    ``sleep`` and ``jitter`` are parameters so that tests need not wait."""

    def __init__(self, base_url: str, version: str, access_token: str, *, retries: int = 5,
                 retry_delay: float = 2.0, timeout: float = 30.0, max_delay: float = 60.0,
                 sleep: Callable[[float], None] = time.sleep, jitter: bool = True) -> None:
        self.base_url = base_url.rstrip("/")
        self.version = version.strip("/")
        self._token = access_token
        self.retries = max(0, retries)
        self.retry_delay = max(0.0, retry_delay)
        self.timeout = timeout
        self.max_delay = max_delay
        self._sleep = sleep
        self._jitter = jitter

    @classmethod
    def from_module(cls, params: dict[str, Any], access_token: str | None = None) -> GraphClient:
        return cls(params["graph_api_url"], params["graph_api_version"], access_token or params["access_token"],
                   retries=params["retries"], retry_delay=params["retry_delay"], timeout=params["timeout"])

    def url(self, path: str, query: dict[str, Any] | None = None) -> str:
        url = f"{self.base_url}/{self.version}/{path.lstrip('/')}"
        return url + ("?" + urllib.parse.urlencode(query) if query else "")

    def get(self, path: str, query: dict[str, Any] | None = None) -> dict[str, Any]:
        return self.request("GET", path, query=query)

    def post(self, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        return self.request("POST", path, body=body if body is not None else {})

    def _delay(self, attempt: int, retry_after: str | None) -> float:
        if retry_after and retry_after.strip().isdigit():
            return min(float(retry_after.strip()), self.max_delay)
        delay = min(self.retry_delay * (2 ** attempt), self.max_delay)
        return delay * (0.5 + random.random() / 2) if self._jitter else delay  # noqa: S311 (jitter, not crypto)

    def request(self, method: str, path: str, *, query: dict[str, Any] | None = None,
                body: dict[str, Any] | None = None) -> dict[str, Any]:
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Authorization": f"Bearer {self._token}", "Accept": "application/json",
                   "User-Agent": "wa-voip-gateway-ansible"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        attempt = 0
        while True:
            req = urllib.request.Request(self.url(path, query), data=data, headers=headers, method=method)  # noqa: S310
            status, payload, retry_after, transport = 0, None, None, None
            try:
                with urllib.request.urlopen(req, timeout=self.timeout) as resp:  # noqa: S310 (https or a test's loopback)
                    status, raw = resp.status, resp.read()
            except urllib.error.HTTPError as exc:
                status, raw, retry_after = exc.code, exc.read(), exc.headers.get("Retry-After")
            except (TimeoutError, urllib.error.URLError, ConnectionError, OSError) as exc:
                reason = getattr(exc, "reason", exc)
                transport, raw = f"{type(exc).__name__}: {reason}", b""
            if transport is None:
                try:
                    payload = json.loads(raw.decode() or "{}")
                except (UnicodeDecodeError, json.JSONDecodeError):
                    payload = {"error": {"message": f"not JSON: {raw[:200]!r}"}} if status >= 400 else {}
                if status < 400 and not (isinstance(payload, dict) and "error" in payload):
                    return payload if isinstance(payload, dict) else {"data": payload}
            error = payload.get("error") if isinstance(payload, dict) else None
            error = error if isinstance(error, dict) else {}
            code = error.get("code") if isinstance(error.get("code"), int) else None
            retryable = transport is not None or is_retryable(status, code)
            # An unreachable API is retried twice at most: usually a wrong URL, not a passing fault.
            limit = min(self.retries, 2) if transport is not None else self.retries
            if not retryable or attempt >= limit:
                raise GraphError(status, error, attempts=attempt + 1, transport=transport)
            self._sleep(self._delay(attempt, retry_after))
            attempt += 1


def canonical_json(value: Any) -> str:
    """Stable text of a value for diffs (keys sorted, two-space indent, trailing newline)."""
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
