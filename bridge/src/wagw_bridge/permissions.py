"""Fresh call permissions from Meta before a business-initiated call (optional).

With ``WAGW_BRIDGE_PERMISSION_CHECK=meta``, ``/internal/consent`` asks Meta before it answers
``allow``: a user may have revoked the permission in WhatsApp's settings, and Meta sends no
webhook when a temporary permission expires. The endpoint (Calling API, "Get current call
permission state"; ``user_wa_id`` accepts a phone number or a BSUID, "Business-scoped user IDs",
"Get call permissions")::

    GET {graph_api_url}/{version}/{phone-number-id}/call_permissions?user_wa_id=<number or BSUID>
    Authorization: Bearer <access token>

    200 {"messaging_product": "whatsapp",
         "permission": {"status": "no_permission" | "temporary" | "permanent",
                        "expiration_time": <unix seconds, temporary only>},
         "actions": [{"action_name": "send_call_permission_request" | "start_call",
                      "can_perform_action": true | false,
                      "limits": [{"time_period", "max_allowed", "current_usage",
                                  "limit_expiration_time"}]}]}

Meta's answer decides, fail closed: ``temporary`` (not yet expired) or ``permanent`` with
``start_call`` performable -> ok; ``no_permission`` or expired -> ``meta-no-permission``;
``start_call`` not performable (a limit reached) -> ``meta-call-limit``; no phone-number-id for
the business number -> ``meta-no-phone-number-id``; any other answer, a timeout or a network
error -> ``meta-unreachable`` (deny; counted in ``wagw_permission_check_total``).
Answers are cached per (phone-number-id, user) for ``permission_cache_seconds`` (never past a
temporary permission's expiry); failures are not cached.
"""

from __future__ import annotations

import asyncio
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .config import ConfigError, Settings
from .dispatch import http_request, parse_phone_number_ids

Getter = Callable[[str, dict[str, str], float], tuple[int, Any]]
CACHE_MAX = 10_000


def http_get(url: str, headers: dict[str, str], timeout: float) -> tuple[int, Any]:
    """GET and return (status, decoded JSON or None); network errors raise OSError."""
    return http_request("GET", url, headers, None, timeout)


@dataclass(frozen=True)
class Verdict:
    ok: bool
    reason: str  # ok | meta-no-permission | meta-call-limit | meta-unreachable | ...
    status: str | None = None  # Meta's permission.status
    expires_at: int | None = None
    cached: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "reason": self.reason,
            "status": self.status,
            "expires_at": self.expires_at,
            "cached": self.cached,
        }


def interpret(status: int, body: Any, now: int) -> Verdict:
    """Meta's answer (HTTP status, decoded JSON) as a verdict; anything unexpected is
    ``meta-unreachable``."""
    if status != 200 or not isinstance(body, dict) or not isinstance(body.get("permission"), dict):
        return Verdict(False, "meta-unreachable")
    perm = body["permission"]
    pstatus = str(perm.get("status") or "")
    expires = perm.get("expiration_time", perm.get("expiration"))
    expires_at = int(expires) if isinstance(expires, int | float) else None
    if pstatus not in ("temporary", "permanent"):
        return Verdict(False, "meta-no-permission", pstatus, expires_at)
    if pstatus == "temporary" and expires_at is not None and expires_at <= now:
        return Verdict(False, "meta-no-permission", pstatus, expires_at)
    actions = body.get("actions")
    for action in actions if isinstance(actions, list) else []:
        if (
            isinstance(action, dict)
            and action.get("action_name") == "start_call"
            and action.get("can_perform_action") is False
        ):
            return Verdict(False, "meta-call-limit", pstatus, expires_at)
    return Verdict(True, "ok", pstatus, expires_at)


class MetaPermissionChecker:
    def __init__(
        self,
        settings: Settings,
        get: Getter = http_get,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not settings.access_token:
            raise ConfigError(
                "WAGW_BRIDGE_PERMISSION_CHECK=meta needs WAGW_BRIDGE_ACCESS_TOKEN (Graph API)"
            )
        self.ids = parse_phone_number_ids(settings.phone_number_ids)
        if not self.ids:
            raise ConfigError(
                "WAGW_BRIDGE_PERMISSION_CHECK=meta needs WAGW_BRIDGE_PHONE_NUMBER_IDS"
            )
        if not settings.graph_api_url.startswith(("https://", "http://")):
            raise ConfigError("WAGW_BRIDGE_GRAPH_API_URL must be an http(s):// URL")
        self.s = settings
        self.get = get
        self.clock = clock
        self._cache: dict[tuple[str, str], tuple[float, Verdict]] = {}
        self._headers = {"Authorization": f"Bearer {settings.access_token.get()}"}

    def phone_number_id(self, business: str | None) -> str | None:
        if business:
            return self.ids.get(business)
        if len(self.ids) == 1:
            return next(iter(self.ids.values()))
        return None

    async def check(self, user: str, business: str | None) -> Verdict:
        """``user``: an E.164 number or a BSUID."""
        pnid = self.phone_number_id(business)
        if pnid is None:
            return Verdict(False, "meta-no-phone-number-id")
        now = self.clock()
        key = (pnid, user)
        hit = self._cache.get(key)
        if hit is not None and hit[0] > now:
            v = hit[1]
            return Verdict(v.ok, v.reason, v.status, v.expires_at, cached=True)
        who = user.lstrip("+")
        url = (
            f"{self.s.graph_api_url.rstrip('/')}/{self.s.graph_api_version}/{pnid}"
            f"/call_permissions?{urllib.parse.urlencode({'user_wa_id': who})}"
        )
        try:
            status, body = await asyncio.to_thread(
                self.get, url, self._headers, float(self.s.permission_check_timeout)
            )
        except (OSError, ValueError):
            return Verdict(False, "meta-unreachable")
        verdict = interpret(status, body, int(now))
        if verdict.reason != "meta-unreachable" and self.s.permission_cache_seconds > 0:
            until = now + self.s.permission_cache_seconds
            if verdict.ok and verdict.status == "temporary" and verdict.expires_at is not None:
                until = min(until, float(verdict.expires_at))
            if len(self._cache) >= CACHE_MAX:
                self._cache.clear()
            self._cache[key] = (until, verdict)
        return verdict
