"""ASGI applications (Starlette).

The listeners share one :class:`Runtime` (database, group-commit writer, metrics):

* ``public``: ``/webhook`` (behind nginx TLS), ``/healthz``, ``/openapi.json``;
* ``internal``: ``/internal/route``, ``/internal/consent`` (bearer token), ``/metrics``,
  ``/healthz``, ``/openapi.json`` -- bound to loopback or the private network only;
* ``metrics`` (optional): ``/metrics`` alone, for the monitoring networks.

``combined`` serves everything on one app (tests, small setups).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from . import openapi
from .config import Settings
from .db import Database, GroupCommitWriter, Reader
from .dispatch import outbox_counts
from .events import parse_delivery
from .observability import (
    InvalidNumber,
    Metrics,
    Pseudonymizer,
    normalize_e164,
    normalize_subject,
)
from .permissions import MetaPermissionChecker
from .routing import RoutesError, RoutingTable
from .service import Domain, MessageSender

log = logging.getLogger("wagw_bridge")
SIG_PREFIX = b"sha256="
HEX = frozenset(b"0123456789abcdefABCDEF")


class Runtime:
    """Everything the request handlers share. Start once, serve any number of apps."""

    def __init__(
        self,
        settings: Settings,
        sender: MessageSender | None = None,
        clock: Callable[[], float] = time.time,
        metrics: Metrics | None = None,
    ) -> None:
        settings.require("app_secret", "verify_token", "internal_token", "pseudonym_key")
        self.settings = settings
        self.clock = clock
        self.pseudo = Pseudonymizer(settings.pseudonym_key.encoded())
        self.metrics = metrics if metrics is not None else Metrics()
        self.db = Database(settings.database, settings.sqlite_synchronous)
        self.writer = GroupCommitWriter(self.db, settings.batch_max)
        self.writer.on_batch = self._on_batch
        self.reader = Reader(self.db)
        self.domain = Domain(settings, self.pseudo, sender)
        self.permissions = (
            MetaPermissionChecker(settings, clock=clock)
            if settings.permission_check == "meta"
            else None
        )
        self.routes = (
            RoutingTable.load(settings.routes_file, settings.timezone)
            if settings.routes_file
            else RoutingTable.empty()
        )
        self._app_secret = settings.app_secret.encoded()
        self._verify_token = settings.verify_token.encoded()
        self._internal_token = settings.internal_token.encoded()
        self.started = False

    def now(self) -> int:
        return int(self.clock())

    def _on_batch(self, n: int) -> None:
        self.metrics.inc("wagw_db_batches_total")
        self.metrics.inc("wagw_db_batched_items_total", n)

    def reload_routes(self) -> None:
        if self.settings.routes_file:
            self.routes = RoutingTable.load(self.settings.routes_file, self.settings.timezone)

    async def start(self) -> None:
        if self.started:
            return
        before, after = await asyncio.to_thread(self.db.migrate, self.now())
        if before != after:
            log.info("schema migrated", extra={"from_version": before, "to_version": after})
        await self.writer.start()
        self.started = True

    async def stop(self) -> None:
        if not self.started:
            return
        self.started = False
        await self.writer.stop()
        self.db.close_all()
        self.metrics.close()

    # -- checks -----------------------------------------------------------------
    def signature_ok(self, body: bytes, header_hex: str) -> bool:
        expected = hmac.new(self._app_secret, body, hashlib.sha256).hexdigest()
        return hmac.compare_digest(expected, header_hex.lower())

    def verify_token_ok(self, token: str) -> bool:
        return hmac.compare_digest(self._verify_token, token.encode("utf-8"))

    def internal_auth_ok(self, header: str | None) -> bool:
        if not header or not header.startswith("Bearer "):
            return False
        return hmac.compare_digest(self._internal_token, header[7:].strip().encode("utf-8"))


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        json.dumps(data, separators=(",", ":")).encode("utf-8"),
        status_code=status,
        media_type="application/json",
        headers=headers,
    )


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return _json({"error": message}, status, headers)


def _text(text: str, status: int = 200) -> Response:
    return Response(
        text,
        status_code=status,
        media_type="text/plain",
        headers={"X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"},
    )


def _rt(request: Request) -> Runtime:
    rt: Runtime = request.app.state.runtime
    return rt


# ------------------------------------------------------------------------ webhook
async def webhook_get(request: Request) -> Response:
    rt = _rt(request)
    q = request.query_params
    mode, token, challenge = q.get("hub.mode"), q.get("hub.verify_token"), q.get("hub.challenge")
    if mode != "subscribe" or token is None or not rt.verify_token_ok(token):
        rt.metrics.inc("wagw_webhook_rejected_total", reason="verify_token")
        log.warning("webhook verification refused")
        return _error(403, "verification failed")
    log.info("webhook verification answered")
    return _text(challenge or "")


class WebhookPost:
    """``POST /webhook`` as a plain ASGI callable, ahead of Starlette's router.

    This is the one hot path of the service. Profiling at 2,000 deliveries/s showed the event
    loop thread saturated and about half of its time in Starlette's middleware, routing and
    Request/Response objects; raw ASGI does the same work with none of that.
    """

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        rt = self.rt
        t0 = time.perf_counter()
        try:
            status, data = await _webhook_post(rt, scope["headers"], receive)
        except _Disconnected:
            return
        except Exception:
            log.exception("webhook handler failed")
            status, data = 500, {"error": "internal error"}
        finally:
            rt.metrics.observe(time.perf_counter() - t0)
        if isinstance(data, bytes):
            body = data
        else:
            body = json.dumps(data, separators=(",", ":")).encode("utf-8")
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode("ascii")),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


class _Disconnected(Exception):
    """The client went away before the body was complete: nothing to answer."""


def _reject(rt: Runtime, status: int, reason: str, message: str) -> tuple[int, dict[str, Any]]:
    rt.metrics.inc("wagw_webhook_rejected_total", reason=reason)
    log.warning("webhook rejected", extra={"reason": reason, "status": status})
    return status, {"error": message}


_OK_BODY = b'{"status":"ok","events":%d,"stored":%d,"duplicates":%d}'


async def _webhook_post(
    rt: Runtime, headers: list[tuple[bytes, bytes]], receive: Receive
) -> tuple[int, dict[str, Any] | bytes]:
    limit = rt.settings.max_body_bytes
    length: bytes | None = None
    sig: bytes | None = None
    for name, value in headers:
        if name == b"content-length":
            length = value
        elif name == b"x-hub-signature-256":
            sig = value
    if length is not None:
        if not length.isdigit():
            return _reject(rt, 400, "bad_length", "invalid Content-Length")
        if int(length) > limit:
            return _reject(rt, 413, "too_large", "body too large")
    if sig is None:
        return _reject(rt, 401, "signature_missing", "missing X-Hub-Signature-256")
    given = sig[len(SIG_PREFIX) :] if sig.startswith(SIG_PREFIX) else b""
    if len(given) != 64 or not HEX.issuperset(given):
        return _reject(rt, 401, "signature_malformed", "malformed X-Hub-Signature-256")
    chunks: list[bytes] = []
    size = 0
    more = True
    while more:
        msg = await receive()
        if msg["type"] == "http.disconnect":
            raise _Disconnected
        chunk = msg.get("body", b"")
        size += len(chunk)
        if size > limit:
            return _reject(rt, 413, "too_large", "body too large")
        chunks.append(chunk)
        more = msg.get("more_body", False)
    body = b"".join(chunks)
    if not rt.signature_ok(body, given.decode("ascii")):
        return _reject(rt, 401, "signature_mismatch", "signature does not match")
    # Only now, with an authentic body, is anything parsed.
    try:
        text = body.decode("utf-8")
        payload = json.loads(text)
    except (UnicodeDecodeError, ValueError, RecursionError):
        return _reject(rt, 400, "malformed_json", "body is not valid JSON")
    if not isinstance(payload, dict):
        return _reject(rt, 400, "not_object", "body is not a JSON object")
    now = rt.now()
    events = parse_delivery(payload, now)
    raw_id = hashlib.sha256(body).hexdigest()
    try:
        res = await rt.writer.submit(rt.domain.ingest_work(events, raw_id, text, now))
    except Exception as exc:
        rt.metrics.inc("wagw_webhook_rejected_total", reason="storage")
        log.error("storing webhook failed", extra={"error": f"{type(exc).__name__}: {exc}"})
        return 503, {"error": "storage unavailable"}
    m = rt.metrics
    m.inc("wagw_webhook_deliveries_total", result="stored" if res.stored else "duplicate")
    for kind, new in res.kinds:
        m.inc("wagw_webhook_events_total", kind=kind, outcome="stored" if new else "duplicate")
    for action, pseudo in res.ledger:
        log.info("consent ledger", extra={"action": action, "subject": "p:" + pseudo})
    # The bytes json.dumps(..., separators=(",", ":")) gives, without building them per request.
    return 200, _OK_BODY % (res.events, res.stored, res.duplicates)


# ------------------------------------------------------------------------ internal
def _fmt(request: Request) -> str | None:
    fmt = request.query_params.get("format", "json")
    return fmt if fmt in ("json", "text") else None


def _unauthorized(rt: Runtime, endpoint: str) -> Response:
    rt.metrics.inc("wagw_internal_requests_total", endpoint=endpoint, result="unauthorized")
    return _error(401, "unauthorized", {"WWW-Authenticate": 'Bearer realm="wagw-bridge"'})


async def internal_route(request: Request) -> Response:
    rt = _rt(request)
    if not rt.internal_auth_ok(request.headers.get("authorization")):
        return _unauthorized(rt, "route")
    fmt = _fmt(request)
    if fmt is None:
        return _error(400, "format must be json or text")
    try:
        number = normalize_e164(request.query_params.get("number", ""))
    except InvalidNumber:
        rt.metrics.inc("wagw_internal_requests_total", endpoint="route", result="bad_request")
        return _error(400, "number must be an E.164 phone number")
    found = rt.routes.lookup(number, datetime.fromtimestamp(rt.clock(), UTC))
    if found is None:
        rt.metrics.inc("wagw_internal_requests_total", endpoint="route", result="unknown")
        return _text("", 404) if fmt == "text" else _error(404, "number not in routing table")
    dests, matched = found
    rt.metrics.inc("wagw_internal_requests_total", endpoint="route", result="ok")
    if fmt == "text":
        # "none" rather than an empty body: Asterisk's CURL() cannot see the status code, and
        # an empty answer must stay distinguishable from "the bridge did not answer".
        return _text("&".join(dests) if dests else "none")
    return _json(
        {
            "number": number,
            "destinations": list(dests),
            "matched": matched,
            "timezone": str(rt.routes.routes[number].tz),
        }
    )


async def internal_consent(request: Request) -> Response:
    rt = _rt(request)
    if not rt.internal_auth_ok(request.headers.get("authorization")):
        return _unauthorized(rt, "consent")
    fmt = _fmt(request)
    if fmt is None:
        return _error(400, "format must be json or text")
    try:
        subject = normalize_subject(request.query_params.get("subject", ""))
        business_raw = request.query_params.get("business")
        business = normalize_e164(business_raw) if business_raw is not None else None
    except InvalidNumber:
        rt.metrics.inc("wagw_internal_requests_total", endpoint="consent", result="bad_request")
        return _error(400, "subject must be an E.164 number or a BSUID, business an E.164 number")
    shash = rt.pseudo.subject_hash(subject)
    now = rt.now()
    try:
        decision = await rt.reader.arun(
            lambda tx: rt.domain.consent_decision(tx, shash, now, business)
        )
    except Exception as exc:
        log.error("consent look-up failed", extra={"error": f"{type(exc).__name__}: {exc}"})
        return _error(503, "storage unavailable")
    if decision["allow"] and rt.permissions is not None:
        # Fresh permission from Meta before a business-initiated call; fail closed.
        verdict = await rt.permissions.check(subject, business)
        rt.metrics.inc(
            "wagw_permission_check_total",
            result=verdict.reason,
            source="cache" if verdict.cached else "meta",
        )
        decision["meta_permission"] = verdict.as_dict()
        if not verdict.ok:
            decision["allow"] = False
            decision["reason"] = verdict.reason
            log.warning("meta permission check denied", extra={"reason": verdict.reason})
    result = "allow" if decision["allow"] else "deny"
    rt.metrics.inc("wagw_internal_requests_total", endpoint="consent", result=result)
    log.info(
        "consent decision",
        extra={"subject": "p:" + shash[:16], "decision": result, "reason": decision["reason"]},
    )
    if fmt == "text":
        return _text(result)
    decision["subject"] = "p:" + shash[:16]
    return _json(decision)


# ------------------------------------------------------------------------ common
async def healthz(request: Request) -> Response:
    rt = _rt(request)
    try:
        version = await rt.reader.arun(rt.db.schema_version_tx)
    except Exception as exc:
        return _json({"status": "error", "error": type(exc).__name__}, 503)
    return _json({"status": "ok", "database": rt.db.dialect.name, "schema_version": version})


def _outbox_gauges(tx: Any, now: int) -> str:
    """Outbox state from the database: the dispatcher is a process of its own, so the counts
    are read at scrape time (alert on failed messages, or on queued ones getting old)."""
    counts = outbox_counts(tx)
    oldest = tx.one("SELECT MIN(created_at) FROM outbox WHERE state = 'queued'")[0]
    lines = [
        "# HELP wagw_outbox_messages Messages to WhatsApp users in the outbox, by state.",
        "# TYPE wagw_outbox_messages gauge",
        *(f'wagw_outbox_messages{{state="{k}"}} {v}' for k, v in counts.items()),
        "# HELP wagw_outbox_oldest_queued_age_seconds Age of the oldest queued message (0: none).",
        "# TYPE wagw_outbox_oldest_queued_age_seconds gauge",
        f"wagw_outbox_oldest_queued_age_seconds {max(0, now - int(oldest)) if oldest else 0}",
    ]
    return "\n".join(lines) + "\n"


async def metrics(request: Request) -> Response:
    rt = _rt(request)
    text = rt.metrics.render()
    now = rt.now()
    try:
        text += await rt.reader.arun(lambda tx: _outbox_gauges(tx, now))
    except Exception:  # a scrape never fails for the database: the counters still count
        log.exception("outbox gauges unavailable")
    return Response(text, media_type="text/plain; version=0.0.4; charset=utf-8")


class BridgeApp(Starlette):
    """Starlette, with ``POST /webhook`` answered before the middleware stack (see WebhookPost)."""

    webhook_post: WebhookPost | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            self.webhook_post is not None
            and scope["type"] == "http"
            and scope["method"] == "POST"
            and scope["path"] == "/webhook"
        ):
            await self.webhook_post(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


def create_app(
    settings: Settings | None = None,
    *,
    runtime: Runtime | None = None,
    mode: str = "combined",
    clock: Callable[[], float] = time.time,
) -> Starlette:
    """Build an app. Without ``runtime`` the app owns one (started in its lifespan)."""
    if mode not in ("public", "internal", "combined", "metrics"):
        raise ValueError(f"unknown mode {mode!r}")
    if runtime is None:
        if settings is None:
            raise ValueError("settings or runtime required")
        owned: Runtime | None = Runtime(settings, clock=clock)
        rt = owned
    else:
        owned, rt = None, runtime
    assert rt is not None
    if mode == "metrics":  # nothing but the metrics for the monitoring networks
        routes = [Route("/metrics", metrics, methods=["GET"])]
    else:
        doc_bytes = json.dumps(openapi.build(mode)).encode("utf-8")

        async def openapi_json(_: Request) -> Response:
            return Response(doc_bytes, media_type="application/json")

        routes = [Route("/healthz", healthz), Route("/openapi.json", openapi_json)]
    if mode in ("public", "combined"):
        routes.append(Route("/webhook", webhook_get, methods=["GET"]))
    if mode in ("internal", "combined"):
        routes.append(Route("/internal/route", internal_route, methods=["GET"]))
        routes.append(Route("/internal/consent", internal_consent, methods=["GET"]))
        routes.append(Route("/metrics", metrics, methods=["GET"]))

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        if owned is not None:
            await owned.start()
        try:
            yield
        finally:
            if owned is not None:
                await owned.stop()

    app = BridgeApp(routes=routes, lifespan=lifespan)
    if mode in ("public", "combined"):
        app.webhook_post = WebhookPost(rt)
    app.state.runtime = rt
    return app


__all__ = ["RoutesError", "Runtime", "create_app"]
