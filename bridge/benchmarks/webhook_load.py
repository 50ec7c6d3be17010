"""Webhook load benchmark: signed deliveries per second and latency, against a same-run baseline.

Starts, on loopback, with the same uvicorn settings (uvloop + httptools, no access log):
  * the bridge (``wagw-bridge serve``, ``--workers`` worker processes, default: the bridge's
    own default), durable: SQLite WAL synchronous=FULL, then PostgreSQL (fsync on) when its
    binaries exist;
  * a bare ASGI app answering 200 immediately (the baseline), served the same way: the bridge's
    uvicorn settings, and with N > 1 workers the bridge's supervisor and SO_REUSEPORT sockets.
    The bare app is measured with 1 process and with the bridge's N processes; the ratio is
    taken to the faster of the two (the stricter baseline);
  * the ceiling of any durable store: the same bridge whose group-commit writer, instead of
    its SQL transaction, appends the batch's bodies to a file of its own and fdatasyncs it.
    Everything else (HTTP, limits, signature, JSON, event parsing, batching, the answer) is the
    bridge's own code. It shows how much of the gap to the bare rate is storage.
A raw asyncio HTTP/1.1 keep-alive client (little client overhead) fires pre-signed deliveries,
each carrying a new message id (so every one is stored), over C concurrent connections for
D seconds, and prints deliveries/s, p50/p99 latency and the ratio to the bare rate measured at
the same connection count in the same run (every connection count in --connections).

    python benchmarks/webhook_load.py [--duration 10] [--connections 16,32,64] [--no-postgres]
                                      [--baseline-ref COMMIT [--rounds N]]

With --baseline-ref each SQLite and ceiling case runs again with the bridge package of that
commit (git archive of its bridge/src, ahead on PYTHONPATH), beside this tree's, and the ratio
of the two mean rates is printed: a change's cost measured in one run on one machine. With
--rounds N the pairs run N times, the order flipping each round (the first of a pair tends to
be slower: an A/A run of one commit against itself showed 0.89 and 1.08).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SECRET = "bench-app-secret"
ENV = {
    "WAGW_BRIDGE_APP_SECRET": SECRET,
    "WAGW_BRIDGE_VERIFY_TOKEN": "bench-verify",
    "WAGW_BRIDGE_INTERNAL_TOKEN": "bench-internal-token",
    "WAGW_BRIDGE_PSEUDONYM_KEY": "bench-pseudonym-key-0123456789",
    "WAGW_BRIDGE_SQLITE_SYNCHRONOUS": "FULL",
    "WAGW_BRIDGE_LOG_LEVEL": "WARNING",
}

BARE_APP = """
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    more = True
    while more:
        msg = await receive()
        more = msg.get("more_body", False)
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", b"15")]})
    await send({"type": "http.response.body", "body": b'{"status":"ok"}'})
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def payload(i: int, run: str) -> bytes:
    body = {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": "102290129340398",
                "changes": [
                    {
                        "field": "messages",
                        "value": {
                            "messaging_product": "whatsapp",
                            "metadata": {
                                "display_phone_number": "4930123456",
                                "phone_number_id": "106540352242922",
                            },
                            "messages": [
                                {
                                    "from": f"49170{i % 1000000:07d}",
                                    "id": f"wamid.BENCH{run}{i:09d}",
                                    "timestamp": str(int(time.time())),
                                    "type": "text",
                                    "text": {"body": "Hallo, ich habe eine Frage"},
                                }
                            ],
                        },
                    }
                ],
            }
        ],
    }
    return json.dumps(body).encode()


def request_bytes(body: bytes, port: int) -> bytes:
    sig = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    head = (
        f"POST /webhook HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        f"X-Hub-Signature-256: sha256={sig}\r\n\r\n"
    )
    return head.encode() + body


async def _read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n"):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    if length:
        await reader.readexactly(length)
    return status


async def load(
    port: int, requests: list[bytes], connections: int, duration: float, cycle: bool = False
) -> dict[str, Any]:
    """Closed loop: each connection sends its next request when the previous answer is in.

    ``cycle`` re-uses the pool (the bare endpoint stores nothing, so repeats cost nothing);
    the bridge gets a new delivery every time, so that every one is stored."""
    latencies: list[float] = []
    errors = 0
    idx = 0
    deadline = 0.0

    async def worker() -> None:
        nonlocal idx, errors
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while time.perf_counter() < deadline and (cycle or idx < len(requests)):
                req = requests[idx % len(requests)]
                idx += 1
                t0 = time.perf_counter()
                writer.write(req)
                status = await _read_response(reader)
                latencies.append(time.perf_counter() - t0)
                if status != 200:
                    errors += 1
        finally:
            writer.close()

    deadline = time.perf_counter() + duration
    t_start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(connections)))
    elapsed = time.perf_counter() - t_start
    latencies.sort()
    n = len(latencies)
    return {
        "requests": n,
        "errors": errors,
        "rate": n / elapsed,
        "p50_ms": 1000 * statistics.median(latencies) if n else 0.0,
        "p99_ms": 1000 * latencies[min(n - 1, int(n * 0.99))] if n else 0.0,
        "exhausted": not cycle and idx >= len(requests),
    }


CLK_TCK = os.sysconf("SC_CLK_TCK")


def tree_cpu(root: int) -> float:
    """CPU seconds (user + system, all threads) used so far by a process and its live
    descendants (the bridge's supervisor forks its workers), from /proc/<pid>/stat."""
    table: dict[int, tuple[int, int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:  # exited meanwhile
            continue
        fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) "
        table[int(entry)] = (int(fields[1]), int(fields[11]) + int(fields[12]))
    tree, grew = {root}, True
    while grew:
        more = {pid for pid, (ppid, _) in table.items() if ppid in tree} - tree
        tree |= more
        grew = bool(more)
    return sum(table[pid][1] for pid in tree if pid in table) / CLK_TCK


def wait_port(port: int, proc: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {proc.stderr.read() if proc.stderr else ''}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"port {port} not listening")


BARE_SERVER = """
import asyncio, signal, sys
from bare_app import app
from wagw_bridge.cli import QuietServer, _run, uvicorn_config
from wagw_bridge.workers import Supervisor

port, workers = int(sys.argv[1]), int(sys.argv[2])

async def serve(sock=None):
    srv = QuietServer(uvicorn_config(app, "127.0.0.1", port))
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: setattr(srv, "should_exit", True))
    await srv.serve(sockets=None if sock is None else [sock])

def worker(ctx):
    _run(serve(ctx.sockets["combined"]))
    return 0

if workers == 1:
    _run(serve())
else:
    sys.exit(Supervisor(workers, {"combined": ("127.0.0.1", port)}, worker).run())
"""


# A measuring device, not a mode of the product: nothing is deduplicated or reaches the ledger.
CEILING_SERVER = """
import contextlib, os, sys
from wagw_bridge import db
from wagw_bridge.cli import main
from wagw_bridge.service import IngestResult

def append_only(self, fns):
    fd = getattr(self, "_journal_fd", None)
    if fd is None:
        path = f"{self.db.target}-{os.getpid()}.journal"
        fd = self._journal_fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.write(fd, b"".join(f.raw[2].encode() + b"\\n" for f in fns))
    os.fdatasync(fd)
    return [IngestResult(len(f.events), len(f.events), 0, [], []) for f in fns]

db.GroupCommitWriter._commit_batch_locked = append_only
db.Database.writer_lock = lambda self: contextlib.nullcontext()  # one file per process
sys.exit(main(["serve"]))
"""


def start_bridge(
    database: str,
    port: int,
    workers: int | None,
    script: Path | None = None,
    source: Path | None = None,
) -> subprocess.Popen:
    env = {
        **os.environ,
        **ENV,
        # another commit's bridge (--baseline-ref): its package before the installed one
        **({"PYTHONPATH": str(source)} if source else {}),
        **({"WAGW_BRIDGE_WORKERS": str(workers)} if workers else {}),
        "WAGW_BRIDGE_DATABASE": database,
        "WAGW_BRIDGE_LISTEN": f"127.0.0.1:{port}",
        "WAGW_BRIDGE_INTERNAL_LISTEN": f"127.0.0.1:{free_port()}",
    }
    proc = subprocess.Popen(
        [sys.executable, str(script)]
        if script
        else [sys.executable, "-m", "wagw_bridge.cli", "serve"],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_port(port, proc)
    return proc


def start_bare(port: int, tmp: Path, workers: int) -> subprocess.Popen:
    (tmp / "bare_app.py").write_text(BARE_APP)
    (tmp / "bare_server.py").write_text(BARE_SERVER)
    proc = subprocess.Popen(
        [sys.executable, "bare_server.py", str(port), str(workers)],
        cwd=tmp,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_port(port, proc)
    return proc


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()


def run_case(
    name: str,
    proc_factory,
    args: argparse.Namespace,
    run: str,
    connections: int,
    database_pid: int | None = None,
) -> dict[str, Any]:
    """One case. ``database_pid``: a database server outside the bridge's process tree
    (PostgreSQL's postmaster), whose CPU counts as the server's too."""
    port = free_port()
    proc = proc_factory(port)
    try:
        # enough pre-signed, unique deliveries for the whole run (signing is not measured)
        bare = name.startswith("bare")
        total = 5000 if bare else int(args.max_rate * args.duration)
        reqs = [request_bytes(payload(i, run), port) for i in range(total)]
        warm = [request_bytes(payload(10**8 + i, run), port) for i in range(500)]
        asyncio.run(load(port, warm, connections, 2))
        # Where the two cores go: the server's CPU (every process and thread of it) and this
        # client's, per delivery. A rate is bounded by the sum of the two.
        roots = [proc.pid] + ([database_pid] if database_pid else [])
        server0, client0 = sum(map(tree_cpu, roots)), time.process_time()
        res = asyncio.run(load(port, reqs, connections, args.duration, cycle=bare))
        server_s = sum(map(tree_cpu, roots)) - server0
        client_s = time.process_time() - client0
        n = max(res["requests"], 1)
        res["server_cpu_us"] = 1e6 * server_s / n
        res["client_cpu_us"] = 1e6 * client_s / n
        res["server_cores"] = server_s * res["rate"] / n
    finally:
        stop(proc)
    res["name"] = name
    res["connections"] = connections
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--connections", default="16,32,64", help="comma-separated connection counts")
    ap.add_argument(
        "--max-rate", type=int, default=20000, help="pre-generated bridge deliveries per second"
    )
    ap.add_argument(
        "--workers",
        default="0",
        help="bridge worker processes, comma-separated (0: the bridge's default)",
    )
    ap.add_argument("--no-postgres", action="store_true")
    ap.add_argument(
        "--baseline-ref",
        help="also run each SQLite and ceiling case with the bridge of this git commit, right"
        " after this tree's, and print this tree's rate against it",
    )
    ap.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="bridge cases per connection count, each round in the other order (with --baseline-ref)",
    )
    args = ap.parse_args()
    from wagw_bridge.config import Settings

    worker_counts = [int(w) or Settings().worker_count for w in args.workers.split(",")]
    counts = [int(c) for c in args.connections.split(",") if c.strip()]
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    tmp = Path(tempfile.mkdtemp(prefix="wagw-bench-"))
    ceiling = tmp / "ceiling_server.py"
    ceiling.write_text(CEILING_SERVER)
    run = str(int(time.time()))
    sources: list[tuple[Path | None, str]] = [(None, "")]
    if args.baseline_ref:
        base = tmp / "baseline"
        base.mkdir()
        archive = subprocess.run(
            ["git", "archive", args.baseline_ref, "src"],
            cwd=HERE.parent,
            capture_output=True,
            check=True,
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(base)], input=archive, check=True)
        sources.append((base / "src", f" @{args.baseline_ref}"))
    pg = None
    results: list[dict[str, Any]] = []
    try:
        if not args.no_postgres:
            sys.path.insert(0, str(HERE.parent / "tests"))
            from conftest import PostgresServer, _pg_bindir

            bindir = _pg_bindir()
            if bindir is None:
                print("PostgreSQL binaries not found: PostgreSQL case skipped")
            else:
                pg = PostgresServer(bindir)
                pg.start(fsync=True)
        for c in counts:
            tag = f"{run}c{c}"
            for n in sorted({1, *worker_counts}):
                results.append(
                    run_case(
                        f"bare ASGI, {n} process{'es' if n > 1 else ''} (baseline)",
                        lambda p, n=n: start_bare(p, tmp, n),
                        args,
                        tag,
                        c,
                    )
                )
            for n in worker_counts:
                # this tree's bridge and (--baseline-ref) the other commit's, case by case; the
                # order flips each round, so that neither side always runs first
                for k in range(args.rounds):
                    order = sources if k % 2 == 0 else sources[::-1]
                    for kind, script in (
                        ("sqlite (WAL, FULL)", None),
                        ("append+fdatasync only", ceiling),
                    ):
                        for src, label in order:
                            key = f"{'s' if script is None else 'j'}{n}r{k}{label and 'b'}"
                            results.append(
                                run_case(
                                    f"bridge {kind}, {n} proc{label}",
                                    lambda p, c=c, key=key, n=n, src=src, script=script: (
                                        start_bridge(
                                            str(tmp / f"bench-{c}-{key}"), p, n, script, source=src
                                        )
                                    ),
                                    args,
                                    f"{tag}{key}",
                                    c,
                                )
                            )
                if pg is not None:
                    pgdb = pg.new_database()
                    results.append(
                        run_case(
                            f"bridge postgresql (fsync), {n} proc",
                            lambda p, dsn=pgdb, n=n: start_bridge(dsn, p, n),
                            args,
                            f"{tag}p{n}",
                            c,
                            int((pg.data / "postmaster.pid").read_text().split()[0]),
                        )
                    )
    finally:
        if pg is not None:
            pg.stop()
    print(
        f"\n{'case':40} {'conns':>5} {'deliveries/s':>12} {'p50 ms':>8} {'p99 ms':>8}"
        f" {'errors':>7} {'ratio':>6} {'srv us':>7} {'cli us':>7} {'srv cores':>9}"
    )
    for c in counts:
        rows = [r for r in results if r["connections"] == c]
        bare = max(r["rate"] for r in rows if r["name"].startswith("bare"))
        for r in rows:
            r["ratio_to_bare"] = r["rate"] / bare if bare else 0.0
            print(
                f"{r['name']:40} {c:5d} {r['rate']:12.0f} {r['p50_ms']:8.2f} {r['p99_ms']:8.2f}"
                f" {r['errors']:7d} {r['ratio_to_bare']:6.2f} {r['server_cpu_us']:7.1f}"
                f" {r['client_cpu_us']:7.1f} {r['server_cores']:9.2f}"
                + ("  (request pool exhausted: raise --max-rate)" if r["exhausted"] else "")
            )
    if args.baseline_ref:
        suffix = f" @{args.baseline_ref}"
        for c in counts:
            for name in dict.fromkeys(
                r["name"] for r in results if r["connections"] == c and r["name"].endswith(suffix)
            ):
                theirs = [r["rate"] for r in results if r["connections"] == c and r["name"] == name]
                mine = [
                    r["rate"]
                    for r in results
                    if r["connections"] == c and r["name"] == name.removesuffix(suffix)
                ]
                ratio = statistics.mean(mine) / statistics.mean(theirs)
                rounds = ", ".join(f"{a / b:.3f}" for a, b in zip(mine, theirs, strict=True))
                print(
                    f"{name.removesuffix(suffix)} at {c} connections: this tree / "
                    f"{args.baseline_ref} = {ratio:.3f} (mean {statistics.mean(mine):.0f} / "
                    f"{statistics.mean(theirs):.0f} deliveries/s; each round: {rounds})"
                )
    print(
        f"cores: {os.cpu_count()}, bridge workers: {worker_counts},"
        f" duration: {args.duration}s per case; ratio: to the faster bare case"
    )
    print(
        "srv us / cli us: CPU time per delivery of the server (all its processes and threads,"
        " with PostgreSQL's server processes in its case) and of this load client;"
        " srv cores: the server's CPU use during the run"
    )
    print("JSON " + json.dumps(results))
    return 1 if any(r["errors"] for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
