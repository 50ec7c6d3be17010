"""Property-based API test: schemathesis generates requests from the app's own /openapi.json.

The server is the real uvicorn server (combined listener, SQLite) in a background thread.
Every response must be documented (status code, content type, schema) and none may be 5xx.
POST /webhook is additionally exercised with *correctly signed* generated bodies: any JSON
object Meta could send must be stored and answered 200.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from conftest import INTERNAL_TOKEN, free_port, make_settings, sign
from wagw_bridge.cli import serve

pytestmark = pytest.mark.slow

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp: Path = tmp_path_factory.mktemp("st")
    port = free_port()
    s = make_settings(
        str(tmp / "bridge.sqlite3"),
        tmp,
        listen=f"127.0.0.1:{port}",
        internal_listen=f"127.0.0.1:{port}",  # same address: one combined listener
    )
    holder: dict[str, list] = {}
    ready = threading.Event()

    def on_ready(servers: list) -> None:
        holder["servers"] = servers
        ready.set()

    thread = threading.Thread(target=lambda: asyncio.run(serve(s, ready=on_ready)), daemon=True)
    thread.start()
    assert ready.wait(30), "server did not start"
    yield f"http://127.0.0.1:{port}"
    for srv in holder["servers"]:
        srv.should_exit = True
    thread.join(15)


@pytest.fixture(scope="module")
def api_schema(base_url: str):
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            httpx.get(base_url + "/healthz", timeout=1)
            break
        except httpx.HTTPError:
            time.sleep(0.05)
    return schemathesis.openapi.from_url(base_url + "/openapi.json")


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_api(case, base_url: str) -> None:
    headers = (
        {"Authorization": f"Bearer {INTERNAL_TOKEN}"} if case.path.startswith("/internal") else None
    )
    response = case.call(base_url=base_url, headers=headers)
    case.validate_response(response, checks=CHECKS)
    assert response.status_code < 500
    if case.path == "/webhook" and case.method.upper() == "POST" and isinstance(case.body, dict):
        body = json.dumps(case.body).encode()
        signed = httpx.post(
            base_url + "/webhook",
            content=body,
            headers={"X-Hub-Signature-256": sign(body), "Content-Type": "application/json"},
            timeout=10,
        )
        case.validate_response(signed, checks=CHECKS)
        assert signed.status_code in (200, 413), signed.text
