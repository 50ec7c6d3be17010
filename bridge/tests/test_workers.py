"""Several worker processes (WAGW_BRIDGE_WORKERS): exactly-once storage, merged metrics,
respawn, signals; and the pieces underneath (shared metrics files, settings, advisory lock)."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from conftest import (
    PSEUDONYM_KEY,
    USER,
    free_port,
    make_settings,
    serve_env,
    sign,
    text_message,
)
from wagw_bridge.cli import listeners
from wagw_bridge.config import ConfigError, Settings
from wagw_bridge.db import Database
from wagw_bridge.observability import Metrics, Pseudonymizer, shared_totals


# ------------------------------------------------------------------ shared metrics (multiprocess)
def in_worker(
    shared_dir: Path, *calls: tuple[str, tuple[object, ...], dict[str, str]], crash: bool = False
) -> str:
    """Fork a process that counts as a worker does (Metrics with the shared directory), and
    return its /metrics text; ``crash`` ends it without closing anything."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the worker
        os.close(read)
        code = 0
        try:
            m = Metrics(shared_dir, started=1000.0)
            for method, args, labels in calls:
                getattr(m, method)(*args, **labels)
            os.write(write, m.render().encode())
            if not crash:
                m.close()
        except BaseException:
            code = 1
        os._exit(code)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        text = pipe.read().decode()
    assert os.waitpid(pid, 0)[1] == 0
    return text


def test_metrics_merged_across_worker_processes(tmp_path: Path) -> None:
    in_worker(
        tmp_path,
        ("inc", ("wagw_webhook_deliveries_total",), {"result": "stored"}),
        ("observe", (0.002,), {}),
    )
    # the second worker's own answer already has the first one's counts
    text = in_worker(
        tmp_path,
        ("inc", ("wagw_webhook_deliveries_total", 2), {"result": "stored"}),
        ("inc", ("wagw_webhook_rejected_total",), {"reason": "signature_mismatch"}),
        ("observe", (0.002,), {}),
        ("observe", (7.0,), {}),
    )
    assert 'wagw_webhook_deliveries_total{result="stored"} 3.0' in text
    assert 'wagw_webhook_rejected_total{reason="signature_mismatch"} 1.0' in text
    assert 'wagw_webhook_duration_seconds_bucket{le="0.0025"} 2.0' in text
    assert 'wagw_webhook_duration_seconds_bucket{le="5.0"} 2.0' in text
    assert 'wagw_webhook_duration_seconds_bucket{le="+Inf"} 3.0' in text
    assert "wagw_webhook_duration_seconds_count 3.0" in text
    assert "wagw_process_start_time_seconds 1000.0" in text
    # read without counting (what a scrape of any worker reads)
    totals = shared_totals(tmp_path, started=1000.0)
    assert totals.get_sample_value("wagw_webhook_deliveries_total", {"result": "stored"}) == 3
    assert totals.get_sample_value("wagw_webhook_duration_seconds_sum") == pytest.approx(7.004)


def test_a_worker_forked_again_adds_to_what_the_crashed_one_counted(tmp_path: Path) -> None:
    many = [
        ("inc", ("wagw_internal_requests_total",), {"endpoint": f"e{i}", "result": "ok"})
        for i in range(2000)
    ]
    # ~2000 label sets: well past the first size of the mapped file; the process dies uncleanly
    in_worker(
        tmp_path,
        *many,
        ("inc", ("wagw_webhook_deliveries_total", 5), {"result": "stored"}),
        crash=True,
    )
    text = in_worker(tmp_path, ("inc", ("wagw_webhook_deliveries_total",), {"result": "stored"}))
    assert 'wagw_webhook_deliveries_total{result="stored"} 6.0' in text
    assert 'wagw_internal_requests_total{endpoint="e1999",result="ok"} 1.0' in text
    assert 'endpoint="e0"' in text


def test_metrics_without_directory_stay_in_process(tmp_path: Path) -> None:
    in_worker(tmp_path, ("inc", ("wagw_webhook_deliveries_total",), {"result": "stored"}))
    alone, other = Metrics(started=5.0), Metrics()
    alone.inc("wagw_webhook_deliveries_total", result="stored")
    alone.inc("wagw_db_batched_items_total", 4)
    assert alone.value("wagw_webhook_deliveries_total", result="stored") == 1
    assert alone.value("wagw_db_batched_items_total") == 4
    # each Runtime's metrics are its own
    assert other.value("wagw_webhook_deliveries_total", result="stored") == 0
    assert "wagw_process_start_time_seconds 5.0" in alone.render()
    assert "_created" not in alone.render()


# ------------------------------------------------------------------ settings
def test_workers_setting() -> None:
    base = {"WAGW_BRIDGE_DATABASE": ":memory:"}
    assert Settings.load(environ={**base, "WAGW_BRIDGE_WORKERS": "3"}).worker_count == 3
    auto = Settings.load(environ=base)
    assert auto.workers == 0
    assert 1 <= auto.worker_count <= min(4, len(os.sched_getaffinity(0)))
    for bad in ("-1", "65", "two"):
        with pytest.raises(ConfigError, match="WORKERS"):
            Settings.load(environ={**base, "WAGW_BRIDGE_WORKERS": bad})


def test_metrics_listener_setting() -> None:
    base = {"WAGW_BRIDGE_DATABASE": ":memory:", "WAGW_BRIDGE_LISTEN": "127.0.0.1:8080"}
    assert set(listeners(Settings.load(environ=base))) == {"public", "internal"}
    on = Settings.load(environ={**base, "WAGW_BRIDGE_METRICS_LISTEN": "192.0.2.5:9153"})
    assert listeners(on) == {
        "public": ("127.0.0.1", 8080),
        "internal": ("127.0.0.1", 8081),
        "metrics": ("192.0.2.5", 9153),
    }
    for bad in ("127.0.0.1:8081", "127.0.0.1:8080", "9153", "host:port"):
        with pytest.raises(ConfigError, match="METRICS_LISTEN"):
            Settings.load(environ={**base, "WAGW_BRIDGE_METRICS_LISTEN": bad})


# ------------------------------------------------------------------ PostgreSQL subject lock
@pytest.mark.postgres
def test_consent_decision_waits_for_the_subjects_lock(postgres, tmp_path: Path) -> None:
    """A second transaction about the same subject waits (PostgreSQL runs workers side by side)."""
    import psycopg

    dsn = postgres.new_database()
    db = Database(dsn)
    db.migrate(int(time.time()))
    shash = Pseudonymizer(PSEUDONYM_KEY.encode()).subject_hash("+" + USER)
    holder = psycopg.connect(dsn, autocommit=True)
    holder.execute("BEGIN")
    holder.execute("SELECT pg_advisory_xact_lock(%s)", (int(shash[:15], 16),))
    done = threading.Event()

    def decide() -> None:
        conn = db.connect()
        db.run(conn, lambda tx: tx.lock_subject(shash))
        conn.close()
        done.set()

    t = threading.Thread(target=decide)
    t.start()
    assert not done.wait(0.5), "lock_subject did not wait for the other transaction"
    holder.execute("COMMIT")
    assert done.wait(10)
    t.join()
    holder.close()


# ------------------------------------------------------------------ the real service
def _worker_pids(supervisor: int) -> set[int]:
    out: set[int] = set()
    for task in Path(f"/proc/{supervisor}/task").iterdir():
        out.update(int(p) for p in (task / "children").read_text().split())
    return out


def _socket_owner(local_port: int, peer_port: int, pids: set[int]) -> int | None:
    """The pid whose descriptor holds the server end of 127.0.0.1:local <- 127.0.0.1:peer."""
    inode = None
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        f = line.split()
        if int(f[1].split(":")[1], 16) == local_port and int(f[2].split(":")[1], 16) == peer_port:
            inode = f[9]
    if inode is None:
        return None
    for pid in pids:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                if os.readlink(fd) == f"socket:[{inode}]":
                    return pid
            except OSError:
                continue
    return None


def _request(body: bytes, port: int) -> bytes:
    return (
        f"POST /webhook HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nX-Hub-Signature-256: {sign(body)}\r\n\r\n"
    ).encode() + body


def _response(sock: socket.socket) -> tuple[int, dict]:
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, rest = data.partition(b"\r\n\r\n")
    length = int(re.search(rb"content-length: (\d+)", head, re.IGNORECASE).group(1))
    while len(rest) < length:
        rest += sock.recv(65536)
    return int(head[9:12]), json.loads(rest[:length])


class Service:
    def __init__(self, settings: Settings, workers: int, tmp_path: Path) -> None:
        self.public, self.internal = free_port(), free_port()
        self.database = settings.database
        self.err_path = tmp_path / "serve.log"
        env = serve_env(settings, self.public, self.internal, WORKERS=str(workers))
        self.err = self.err_path.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "wagw_bridge.cli", "serve"], env=env, stderr=self.err
        )
        self.wait_ready(workers)

    def wait_ready(self, workers: int, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log()
            if len(_worker_pids(self.proc.pid)) == workers:
                try:
                    if httpx.get(f"http://127.0.0.1:{self.public}/healthz").status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
            time.sleep(0.05)
        raise AssertionError("service did not come up: " + self.log())

    def log(self) -> str:
        return self.err_path.read_text()

    def metrics(self) -> str:
        return httpx.get(f"http://127.0.0.1:{self.internal}/metrics").text

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.err.close()
        return self.proc.returncode


@pytest.fixture
def two_workers(settings: Settings, tmp_path: Path) -> Iterator[Service]:
    svc = Service(settings, 2, tmp_path)
    try:
        yield svc
    finally:
        svc.stop()


def _metric(text: str, line_start: str) -> float:
    for line in text.splitlines():
        if line.startswith(line_start + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


@pytest.mark.slow
def test_redelivery_to_two_worker_processes_is_stored_once(two_workers: Service) -> None:
    svc = two_workers
    pids = _worker_pids(svc.proc.pid)
    assert len(pids) == 2
    # 24 connections: SO_REUSEPORT hashes each one to a worker (all on one: p = 2 * 2**-24).
    conns = [socket.create_connection(("127.0.0.1", svc.public)) for _ in range(24)]
    body = json.dumps(text_message("Hallo", mid="wamid.REDELIVERED-ACROSS-WORKERS")).encode()
    req = _request(body, svc.public)
    for s in conns:  # everything in flight at once: both workers race for the same event
        s.sendall(req)
    answers = [_response(s) for s in conns]
    owners = {_socket_owner(svc.public, s.getsockname()[1], pids) for s in conns}
    for s in conns:
        s.close()
    assert owners == pids, "the deliveries did not reach both worker processes"
    assert all(status == 200 for status, _ in answers)
    assert sum(a["stored"] for _, a in answers) == 1
    assert sum(a["duplicates"] for _, a in answers) == len(conns) - 1
    db = Database(svc.database)
    conn = db.connect()
    try:
        rows = db.run(
            conn,
            lambda tx: tx.all(
                "SELECT COUNT(*) FROM event WHERE dedupe_key = ?",
                ("msg:wamid.REDELIVERED-ACROSS-WORKERS",),
            ),
        )
    finally:
        conn.close()
    assert rows[0][0] == 1
    # /metrics is answered by one worker, with the totals of both
    for _ in range(4):
        text = svc.metrics()
        assert _metric(text, 'wagw_webhook_deliveries_total{result="stored"}') == 1
        assert _metric(text, 'wagw_webhook_deliveries_total{result="duplicate"}') == len(conns) - 1
        assert _metric(text, "wagw_webhook_duration_seconds_count") == len(conns)


@pytest.mark.slow
def test_dead_worker_is_replaced_and_counts_survive(tmp_path: Path) -> None:
    # process supervision does not depend on the database engine: SQLite only
    svc = Service(make_settings(str(tmp_path / "bridge.sqlite3"), tmp_path), 2, tmp_path)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{svc.public}") as c:
            for i in range(6):
                body = json.dumps(text_message(f"m{i}")).encode()
                r = c.post("/webhook", content=body, headers={"X-Hub-Signature-256": sign(body)})
                assert r.status_code == 200
        before = _worker_pids(svc.proc.pid)
        victim = min(before)
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            now = _worker_pids(svc.proc.pid)
            new = now - before
            # uvicorn logs this once per listener when the new worker serves them
            if len(now) == 2 and new and svc.log().count(f"process [{min(new)}]") >= 2:
                break
            time.sleep(0.05)
        else:
            raise AssertionError("the killed worker was not replaced: " + svc.log())
        assert '"msg":"worker died"' in svc.log()
        # the replacement continues the killed worker's counts (its slot's metrics file)
        assert _metric(svc.metrics(), 'wagw_webhook_deliveries_total{result="stored"}') == 6
        os.kill(svc.proc.pid, signal.SIGHUP)  # passed on: every worker reloads the routes
        deadline = time.monotonic() + 10
        while svc.log().count('"msg":"routes reloaded"') < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert svc.log().count('"msg":"routes reloaded"') == 2
    finally:
        code = svc.stop()
    assert code == 0, svc.log()
    dirs = re.findall(r'"metrics_dir":"([^"]+)"', svc.log())
    assert dirs
    assert not [d for d in dirs if Path(d).exists()]  # removed by the supervisor on exit
