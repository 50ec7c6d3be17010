"""The real thing: `wagw-bridge serve` (uvicorn) on loopback ports, signed webhook over HTTP."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from conftest import (
    APP_SECRET,
    INTERNAL_TOKEN,
    USER,
    call_permission_reply,
    free_port,
    serve_env,
    sign,
    text_message,
)

pytestmark = pytest.mark.slow


def _wait(url: str, proc: subprocess.Popen, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited early: {proc.communicate()[1]!r}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.05)
    raise AssertionError(f"{url} did not come up")


def test_serve_over_http(settings, tmp_path: Path) -> None:
    public, internal, monitoring = free_port(), free_port(), free_port()
    env = serve_env(settings, public, internal, METRICS_LISTEN=f"127.0.0.1:{monitoring}")
    proc = subprocess.Popen(
        [sys.executable, "-m", "wagw_bridge.cli", "serve"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait(f"http://127.0.0.1:{public}/healthz", proc)
        _wait(f"http://127.0.0.1:{internal}/healthz", proc)
        base, ibase = f"http://127.0.0.1:{public}", f"http://127.0.0.1:{internal}"
        now = int(time.time())
        with httpx.Client(base_url=base) as c:
            for payload in (
                text_message("START", ts=now),
                text_message("JA", ts=now + 1),
                call_permission_reply("accept", ts=now + 2, expires=now + 3600),
            ):
                body = json.dumps(payload).encode()
                r = c.post(
                    "/webhook",
                    content=body,
                    headers={"X-Hub-Signature-256": sign(body), "Content-Type": "application/json"},
                )
                assert r.status_code == 200, r.text
                assert r.json()["stored"] == 1
            bad = c.post("/webhook", content=body, headers={"X-Hub-Signature-256": sign(b"x")})
            assert bad.status_code == 401
            # the internal API is not served on the public listener
            assert c.get("/internal/consent", params={"subject": "+" + USER}).status_code == 404
            assert c.get("/metrics").status_code == 404
        auth = {"Authorization": f"Bearer {INTERNAL_TOKEN}"}
        with httpx.Client(base_url=ibase, headers=auth) as c:
            r = c.get("/internal/consent", params={"subject": "+" + USER, "format": "text"})
            assert r.text == "allow"
            assert c.post("/webhook", content=b"{}").status_code == 404
            internal_metrics = c.get("/metrics").text
            assert "wagw_webhook_deliveries_total" in internal_metrics
        # the monitoring networks' listener: the same totals, and nothing else
        with httpx.Client(base_url=f"http://127.0.0.1:{monitoring}") as c:
            text = c.get("/metrics").text
            deliveries = [
                x for x in text.splitlines() if x.startswith("wagw_webhook_deliveries_total")
            ]
            assert deliveries, text
            assert deliveries == [
                x
                for x in internal_metrics.splitlines()
                if x.startswith("wagw_webhook_deliveries_total")
            ], text
            assert 'wagw_outbox_messages{state="failed"} 0' in text, text
            for path in ("/healthz", "/openapi.json", "/internal/consent", "/webhook"):
                assert c.get(path, headers=auth).status_code == 404, path
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            _, err = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
    assert proc.returncode == 0, err
    # logs are JSON lines and carry no phone number in clear
    lines = [json.loads(line) for line in err.splitlines() if line.strip()]
    assert any(line.get("msg") == "consent ledger" for line in lines)
    assert USER not in err
    assert APP_SECRET not in err
