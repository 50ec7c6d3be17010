"""Hand-written OpenAPI 3.0 document; every status code and body shape the app can return."""

from __future__ import annotations

from typing import Any

from . import __version__

ERROR = {"$ref": "#/components/schemas/Error"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _err(description: str) -> dict[str, Any]:
    return _json(ERROR, description)


def _text(description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"text/plain": {"schema": schema or {"type": "string"}}},
    }


FORMAT_PARAM = {
    "name": "format",
    "in": "query",
    "required": False,
    "description": "json (default) or text (for Asterisk's CURL())",
    "schema": {"type": "string", "enum": ["json", "text"], "default": "json"},
}
UNAUTHORIZED = _err("Missing or wrong bearer token")

PUBLIC_PATHS: dict[str, Any] = {
    "/webhook": {
        "get": {
            "operationId": "verifyWebhook",
            "summary": "Meta's subscription handshake",
            "parameters": [
                {
                    "name": "hub.mode",
                    "in": "query",
                    "required": False,
                    "schema": {"type": "string"},
                },
                {
                    "name": "hub.verify_token",
                    "in": "query",
                    "required": False,
                    "schema": {"type": "string"},
                },
                {
                    "name": "hub.challenge",
                    "in": "query",
                    "required": False,
                    "schema": {"type": "string"},
                },
            ],
            "responses": {
                "200": _text("The hub.challenge value, echoed"),
                "403": _err("hub.mode is not 'subscribe', or the verify token is wrong/missing"),
            },
        },
        "post": {
            "operationId": "receiveWebhook",
            "summary": "Signed webhook delivery (Cloud API, object whatsapp_business_account)",
            "description": (
                "The X-Hub-Signature-256 header (sha256=<hex HMAC-SHA256 of the raw body with the "
                "app secret>) is verified before anything is parsed. Each event is stored exactly "
                "once; redeliveries are acknowledged with 200. 200 is sent only after commit."
            ),
            "parameters": [
                {
                    "name": "X-Hub-Signature-256",
                    "in": "header",
                    "required": True,
                    "schema": {"type": "string", "pattern": "^sha256=[0-9a-fA-F]{64}$"},
                }
            ],
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/WebhookPayload"}}
                },
            },
            "responses": {
                "200": _json({"$ref": "#/components/schemas/WebhookAck"}, "Stored (or duplicate)"),
                "400": _err("Valid signature, but the body is not a JSON object"),
                "401": _err("Signature header missing, malformed or not matching the body"),
                "413": _err("Body larger than max_body_bytes (default 3 MiB)"),
                "503": _err("Storage unavailable; nothing acknowledged, Meta will retry"),
            },
        },
    },
}

INTERNAL_PATHS: dict[str, Any] = {
    "/internal/route": {
        "get": {
            "operationId": "route",
            "summary": "The phones or PBX extensions serving a WhatsApp business number now",
            "security": [{"bearerAuth": []}],
            "parameters": [
                {
                    "name": "number",
                    "in": "query",
                    "required": True,
                    "description": "WhatsApp business number, E.164",
                    "schema": {"type": "string"},
                },
                FORMAT_PARAM,
            ],
            "responses": {
                "200": {
                    "description": "Destinations (text form: joined with '&'; 'none' if empty)",
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/Route"}},
                        "text/plain": {"schema": {"type": "string"}},
                    },
                },
                "400": _err("number missing or not E.164, or unknown format"),
                "401": UNAUTHORIZED,
                "404": {
                    "description": "Number not in the routing table (text form: empty body)",
                    "content": {
                        "application/json": {"schema": ERROR},
                        "text/plain": {"schema": {"type": "string", "maxLength": 0}},
                    },
                },
            },
        }
    },
    "/internal/consent": {
        "get": {
            "operationId": "consent",
            "summary": "May the business call this WhatsApp user now?",
            "description": (
                "allow only with a confirmed (double opt-in, not revoked) consent AND an accepted, "
                "unexpired (or permanent) call permission of the person the identifier belongs "
                "to (its number and BSUIDs are one person once a delivery named them together); "
                "with PERMISSION_CHECK=meta also Meta's current call permission (fail closed)."
            ),
            "security": [{"bearerAuth": []}],
            "parameters": [
                {
                    "name": "subject",
                    "in": "query",
                    "required": True,
                    "description": "WhatsApp user's number (E.164) or business-scoped user ID",
                    "schema": {"type": "string"},
                },
                {
                    "name": "business",
                    "in": "query",
                    "required": False,
                    "description": "restrict call permissions to this business number (E.164)",
                    "schema": {"type": "string"},
                },
                FORMAT_PARAM,
            ],
            "responses": {
                "200": {
                    "description": "Decision (text form: 'allow' or 'deny')",
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/Consent"}},
                        "text/plain": {"schema": {"type": "string", "enum": ["allow", "deny"]}},
                    },
                },
                "400": _err(
                    "subject missing or neither E.164 nor a BSUID, business not E.164, or "
                    "unknown format"
                ),
                "401": UNAUTHORIZED,
                "503": _err("Storage unavailable"),
            },
        }
    },
    "/metrics": {
        "get": {
            "operationId": "metrics",
            "summary": "Prometheus metrics (text exposition format 0.0.4)",
            "responses": {"200": _text("Metrics")},
        }
    },
}

COMMON_PATHS: dict[str, Any] = {
    "/healthz": {
        "get": {
            "operationId": "healthz",
            "summary": "Liveness plus database check",
            "responses": {
                "200": _json({"$ref": "#/components/schemas/Health"}, "Database reachable"),
                "503": _json({"$ref": "#/components/schemas/Health"}, "Database not reachable"),
            },
        }
    },
    "/openapi.json": {
        "get": {
            "operationId": "openapi",
            "summary": "This document",
            "responses": {"200": _json({"type": "object"}, "OpenAPI document")},
        }
    },
}

NULLABLE_INT = {"type": "integer", "nullable": True}

SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {"error": {"type": "string"}},
    },
    "WebhookPayload": {
        "type": "object",
        "description": "Any JSON object is accepted once signed; unknown shapes are stored as-is.",
        "properties": {
            "object": {"type": "string", "example": "whatsapp_business_account"},
            "entry": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "id": {"type": "string"},
                        "changes": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "properties": {
                                    "field": {"type": "string"},
                                    "value": {"type": "object"},
                                },
                            },
                        },
                    },
                },
            },
        },
    },
    "WebhookAck": {
        "type": "object",
        "required": ["status", "events", "stored", "duplicates"],
        "properties": {
            "status": {"type": "string", "enum": ["ok"]},
            "events": {"type": "integer", "minimum": 0},
            "stored": {"type": "integer", "minimum": 0},
            "duplicates": {"type": "integer", "minimum": 0},
        },
    },
    "Route": {
        "type": "object",
        "required": ["number", "destinations", "matched", "timezone"],
        "properties": {
            "number": {"type": "string"},
            "destinations": {"type": "array", "items": {"type": "string"}},
            "matched": {"type": "string", "description": "'default' or 'window:<index>'"},
            "timezone": {"type": "string"},
        },
    },
    "Consent": {
        "type": "object",
        "required": ["allow", "reason", "subject", "opt_in", "call_permission"],
        "properties": {
            "allow": {"type": "boolean"},
            "reason": {
                "type": "string",
                "enum": [
                    "ok",
                    "no-opt-in",
                    "opt-in-pending",
                    "opt-in-revoked",
                    "no-call-permission",
                    "call-permission-rejected",
                    "call-permission-expired",
                    "meta-no-permission",
                    "meta-call-limit",
                    "meta-unreachable",
                    "meta-no-phone-number-id",
                ],
            },
            "subject": {"type": "string", "description": "pseudonym (keyed hash), not the number"},
            "opt_in": {
                "type": "object",
                "required": ["state", "since"],
                "properties": {
                    "state": {
                        "type": "string",
                        "enum": ["none", "requested", "confirmed", "revoked"],
                    },
                    "since": NULLABLE_INT,
                },
            },
            "call_permission": {
                "type": "object",
                "nullable": True,
                "properties": {
                    "response": {"type": "string"},
                    "is_permanent": {"type": "boolean"},
                    "expires_at": NULLABLE_INT,
                    "occurred_at": {"type": "integer"},
                    "business_number": {"type": "string", "nullable": True},
                },
            },
            "meta_permission": {
                "type": "object",
                "description": "Only with PERMISSION_CHECK=meta, when the ledger allowed",
                "required": ["ok", "reason", "status", "expires_at", "cached"],
                "properties": {
                    "ok": {"type": "boolean"},
                    "reason": {"type": "string"},
                    "status": {"type": "string", "nullable": True},
                    "expires_at": NULLABLE_INT,
                    "cached": {"type": "boolean"},
                },
            },
        },
    },
    "Health": {
        "type": "object",
        "required": ["status"],
        "properties": {
            "status": {"type": "string", "enum": ["ok", "error"]},
            "database": {"type": "string"},
            "schema_version": {"type": "integer"},
            "error": {"type": "string"},
        },
    },
}


def build(mode: str) -> dict[str, Any]:
    paths: dict[str, Any] = {}
    if mode in ("public", "combined"):
        paths.update(PUBLIC_PATHS)
    if mode in ("internal", "combined"):
        paths.update(INTERNAL_PATHS)
    paths.update(COMMON_PATHS)
    doc: dict[str, Any] = {
        "openapi": "3.0.3",
        "info": {
            "title": f"wagw-bridge ({mode} listener)",
            "version": __version__,
            "description": "WhatsApp Business Calling webhook bridge of wa-voip-gateway.",
        },
        "paths": paths,
        "components": {"schemas": SCHEMAS},
    }
    if mode in ("internal", "combined"):
        doc["components"]["securitySchemes"] = {"bearerAuth": {"type": "http", "scheme": "bearer"}}
    return doc
