"""Fixtures: settings, signed-payload helpers, and a real PostgreSQL server per test session.

PostgreSQL: initdb + pg_ctl into a temp dir on a free loopback port. PostgreSQL refuses to run
as root, so under uid 0 the data directory belongs to the ``postgres`` user and the binaries
run through ``runuser -u postgres``. The PostgreSQL-backed tests are skipped (visibly, with the
reason) only when no PostgreSQL binaries exist at all.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import hmac
import itertools
import json
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from wagw_bridge.app import create_app
from wagw_bridge.config import Settings

APP_SECRET = "test-app-secret-0123456789"
VERIFY_TOKEN = "test-verify-token"
INTERNAL_TOKEN = "test-internal-token-abcdef"
PSEUDONYM_KEY = "test-pseudonym-key-0123456789"
BUSINESS = "4930123456"
USER = "491701234567"


def serve_env(settings: Settings, public: int, internal: int, **extra: str) -> dict[str, str]:
    """The environment of `wagw-bridge serve` for a test: the test secrets, the settings'
    database and routes, both listeners on loopback; `extra` adds WAGW_BRIDGE_* values."""
    return {
        **os.environ,
        "WAGW_BRIDGE_APP_SECRET": APP_SECRET,
        "WAGW_BRIDGE_VERIFY_TOKEN": VERIFY_TOKEN,
        "WAGW_BRIDGE_INTERNAL_TOKEN": INTERNAL_TOKEN,
        "WAGW_BRIDGE_PSEUDONYM_KEY": PSEUDONYM_KEY,
        "WAGW_BRIDGE_DATABASE": settings.database,
        "WAGW_BRIDGE_ROUTES_FILE": settings.routes_file,
        "WAGW_BRIDGE_LISTEN": f"127.0.0.1:{public}",
        "WAGW_BRIDGE_INTERNAL_LISTEN": f"127.0.0.1:{internal}",
        **{f"WAGW_BRIDGE_{key}": value for key, value in extra.items()},
    }


def sign(body: bytes, secret: str = APP_SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class FakeClock:
    def __init__(self, t: float | None = None) -> None:
        self.t = time.time() if t is None else t

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


# ----------------------------------------------------------------- payload builders
def envelope(field: str, value: dict[str, Any]) -> dict[str, Any]:
    value = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": BUSINESS, "phone_number_id": "106540352242922"},
        **value,
    }
    return {
        "object": "whatsapp_business_account",
        "entry": [{"id": "102290129340398", "changes": [{"value": value, "field": field}]}],
    }


_ids = itertools.count(1)


def wamid() -> str:
    return f"wamid.TEST{next(_ids):08d}{os.getpid()}"


def text_message(body: str, frm: str = USER, ts: int | None = None, mid: str | None = None):
    return envelope(
        "messages",
        {
            "contacts": [{"profile": {"name": "Test"}, "wa_id": frm}],
            "messages": [
                {
                    "from": frm,
                    "id": mid or wamid(),
                    "timestamp": str(ts if ts is not None else int(time.time())),
                    "type": "text",
                    "text": {"body": body},
                }
            ],
        },
    )


def button_reply(button_id: str, title: str, frm: str = USER, ts: int | None = None):
    return envelope(
        "messages",
        {
            "messages": [
                {
                    "from": frm,
                    "id": wamid(),
                    "timestamp": str(ts if ts is not None else int(time.time())),
                    "type": "interactive",
                    "interactive": {
                        "type": "button_reply",
                        "button_reply": {"id": button_id, "title": title},
                    },
                }
            ]
        },
    )


def template_button(payload: str, text: str, frm: str = USER, ts: int | None = None):
    return envelope(
        "messages",
        {
            "messages": [
                {
                    "from": frm,
                    "id": wamid(),
                    "timestamp": str(ts if ts is not None else int(time.time())),
                    "type": "button",
                    "button": {"payload": payload, "text": text},
                }
            ]
        },
    )


def call_permission_reply(
    response: str,
    frm: str = USER,
    ts: int | None = None,
    expires: int | None = None,
    permanent: bool = False,
):
    reply: dict[str, Any] = {
        "response": response,
        "is_permanent": permanent,
        "response_source": "user_action",
    }
    if expires is not None:
        reply["expiration_timestamp"] = expires
    return envelope(
        "messages",
        {
            "messages": [
                {
                    "from": frm,
                    "id": wamid(),
                    "timestamp": str(ts if ts is not None else int(time.time())),
                    "type": "interactive",
                    "interactive": {
                        "type": "call_permission_reply",
                        "call_permission_reply": reply,
                    },
                }
            ]
        },
    )


def status_update(msg_id: str, status: str, recipient: str = USER, ts: int | None = None):
    return envelope(
        "messages",
        {
            "statuses": [
                {
                    "id": msg_id,
                    "status": status,
                    "timestamp": str(ts if ts is not None else int(time.time())),
                    "recipient_id": recipient,
                }
            ]
        },
    )


def call_event(call_id: str, event: str, ts: int | None = None, **extra: Any):
    call = {
        "id": call_id,
        "from": USER,
        "to": BUSINESS,
        "event": event,
        "timestamp": str(ts if ts is not None else int(time.time())),
        "direction": "USER_INITIATED",
        **extra,
    }
    return envelope("calls", {"calls": [call]})


# ----------------------------------------------------------------- PostgreSQL
def _pg_bindir() -> Path | None:
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
    for d in candidates:
        if Path(d, "initdb").exists() and Path(d, "pg_ctl").exists():
            return Path(d)
    initdb, pg_ctl = shutil.which("initdb"), shutil.which("pg_ctl")
    if initdb and pg_ctl:
        return Path(initdb).parent
    for d in ("/usr/local/bin", "/usr/local/pgsql/bin"):
        if Path(d, "initdb").exists() and Path(d, "pg_ctl").exists():
            return Path(d)
    return None


class PostgresServer:
    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.port = free_port()
        self.tmp = Path(tempfile.mkdtemp(prefix="wagw-pg-"))
        self.data = self.tmp / "data"
        self.prefix: list[str] = []
        if os.geteuid() == 0:
            try:
                pw = pwd.getpwnam("postgres")
            except KeyError as exc:
                raise RuntimeError(
                    "running as root and there is no 'postgres' user to run PostgreSQL as"
                ) from exc
            os.chown(self.tmp, pw.pw_uid, pw.pw_gid)
            self.prefix = ["runuser", "-u", "postgres", "--"]
        self._n = itertools.count(1)

    def _run(self, *args: str) -> None:
        subprocess.run([*self.prefix, *args], check=True, capture_output=True, timeout=120)

    def start(self, fsync: bool = False) -> None:
        self._run(
            str(self.bindir / "initdb"),
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "--auth=trust",
            "--encoding=UTF8",
            "--no-sync",
        )
        opts = (
            f"-p {self.port} -k {self.tmp} -c listen_addresses=127.0.0.1"
            f" -c fsync={'on' if fsync else 'off'} -c max_connections=200"
        )
        self._run(
            str(self.bindir / "pg_ctl"),
            "-D",
            str(self.data),
            "-o",
            opts,
            "-l",
            str(self.tmp / "log"),
            "-w",
            "-t",
            "60",
            "start",
        )

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop")
        shutil.rmtree(self.tmp, ignore_errors=True)

    def dsn(self, dbname: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    def new_database(self) -> str:
        import psycopg

        name = f"t{next(self._n)}"
        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return self.dsn(name)


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    bindir = _pg_bindir()
    if bindir is None:
        if os.environ.get("WAGW_REQUIRE_POSTGRES") == "1":
            pytest.fail("WAGW_REQUIRE_POSTGRES=1 but no PostgreSQL binaries (initdb, pg_ctl) found")
        pytest.skip(
            "PostgreSQL binaries (initdb, pg_ctl) not found: PostgreSQL-backed tests SKIPPED "
            "(install the Debian package 'postgresql')"
        )
    server = PostgresServer(bindir)
    try:
        server.start()
    except subprocess.CalledProcessError as exc:
        log = server.tmp / "log"
        detail = log.read_text() if log.exists() else ""
        server.stop()
        raise RuntimeError(f"PostgreSQL did not start: {exc.stderr!r} {detail}") from exc
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "bridge.sqlite3")
    pg: PostgresServer = request.getfixturevalue("postgres")
    return pg.new_database()


# The business's phones (phone:<name>) and PBX extensions (pbx:<extension>): never a phone
# number, no WhatsApp call reaches the PSTN.
ROUTES = {
    "timezone": "Europe/Berlin",
    "numbers": {
        "+" + BUSINESS: {
            "destinations": ["pbx:21"],
            "windows": [
                {
                    "days": ["mon", "tue", "wed", "thu", "fri"],
                    "start": "08:00",
                    "end": "18:00",
                    "destinations": ["phone:empfang", "phone:werkstatt"],
                },
                {"days": ["sat"], "start": "22:00", "end": "02:00", "destinations": ["pbx:*77"]},
            ],
        },
        "+4940111222": [],
    },
}


def make_settings(database: str, tmp_path: Path, **over: Any) -> Settings:
    routes = tmp_path / "routes.json"
    routes.write_text(json.dumps(ROUTES))
    raw: dict[str, Any] = {
        "app_secret": APP_SECRET,
        "verify_token": VERIFY_TOKEN,
        "internal_token": INTERNAL_TOKEN,
        "pseudonym_key": PSEUDONYM_KEY,
        "database": database,
        "routes_file": str(routes),
        "sqlite_synchronous": "NORMAL",
    }
    raw.update(over)
    return Settings.from_mapping(raw)


@pytest.fixture
def settings(database: str, tmp_path: Path) -> Settings:
    return make_settings(database, tmp_path)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def client(settings: Settings, clock: FakeClock) -> Iterator[TestClient]:
    app = create_app(settings, clock=clock)
    with TestClient(app) as c:
        yield c


class Bridge:
    """Test helper around a TestClient: signed posts and direct DB counts."""

    def __init__(self, client: TestClient, clock: FakeClock) -> None:
        self.client = client
        self.clock = clock
        self.rt = client.app.state.runtime  # type: ignore[attr-defined]

    def post(self, payload: Any, secret: str = APP_SECRET, raw: bytes | None = None):
        body = raw if raw is not None else json.dumps(payload).encode()
        return self.client.post(
            "/webhook",
            content=body,
            headers={"X-Hub-Signature-256": sign(body, secret), "Content-Type": "application/json"},
        )

    def count(self, table: str, where: str = "", params: tuple[Any, ...] = ()) -> int:
        sql = f"SELECT COUNT(*) FROM {table}" + (f" WHERE {where}" if where else "")
        return int(self.rt.reader.run(lambda tx: tx.one(sql, params))[0])

    def stored_total(self) -> int:
        return sum(
            self.count(t)
            for t in ("raw_payload", "event", "consent_ledger", "call_permission", "outbox")
        )

    def consent(self, subject: str = "+" + USER, fmt: str = "json", **params: str):
        return self.client.get(
            "/internal/consent",
            params={"subject": subject, "format": fmt, **params},
            headers={"Authorization": f"Bearer {INTERNAL_TOKEN}"},
        )


@pytest.fixture
def bridge(client: TestClient, clock: FakeClock) -> Bridge:
    return Bridge(client, clock)
