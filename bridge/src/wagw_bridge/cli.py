"""``wagw-bridge`` command line: serve, dispatch, migrate, purge, export, erase, backup, restore,
doctor."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Callable, Coroutine, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import uvicorn

from . import __version__, backup, dispatch
from .config import MAX_CONSENT_RETENTION_DAYS, ConfigError, Settings
from .db import SCHEMA_VERSION, SQLITE, Database, DBError, Tx
from .observability import (
    InvalidNumber,
    Metrics,
    Pseudonymizer,
    normalize_subject,
    setup_logging,
)
from .permissions import MetaPermissionChecker
from .routing import RoutesError, RoutingTable
from .service import Domain
from .workers import Supervisor, WorkerContext

T = TypeVar("T")
EXIT_CONFIG = 2
EXIT_DB = 3


def _settings(args: argparse.Namespace) -> Settings:
    return Settings.load(args.config)


def _with_db(settings: Settings, fn: Callable[[Tx], T], need_schema: bool = True) -> T:
    db = Database(settings.database, settings.sqlite_synchronous)
    conn = db.connect()
    try:
        if need_schema:
            version = db.schema_version(conn)
            if version < SCHEMA_VERSION:
                raise DBError(
                    f"database schema version {version} < {SCHEMA_VERSION}: run 'wagw-bridge migrate'"
                )
        return db.run(conn, fn)
    finally:
        conn.close()


def _subject(value: str) -> str:
    try:
        return normalize_subject(value)
    except InvalidNumber as exc:
        raise argparse.ArgumentTypeError(
            f"not an E.164 phone number or business-scoped user ID: {value!r}"
        ) from exc


# --------------------------------------------------------------------------- commands
def cmd_migrate(args: argparse.Namespace) -> int:
    settings = _settings(args)
    db = Database(settings.database, settings.sqlite_synchronous)
    before, after = db.migrate(int(time.time()))
    print(json.dumps({"schema_version_before": before, "schema_version": after}))
    return 0


def cmd_purge(args: argparse.Namespace) -> int:
    s = _settings(args)
    raw = s.retention_raw_days if args.raw_days is None else args.raw_days
    call = s.retention_call_days if args.call_days is None else args.call_days
    consent = s.retention_consent_days if args.consent_days is None else args.consent_days
    domain = Domain(s, Pseudonymizer(b"unused-for-purge"))
    now = int(time.time())

    def purge(tx: Tx) -> tuple[dict[str, int], dict[str, int | None]]:
        return domain.purge(tx, now, raw, call, consent), domain.oldest_records(tx)

    counts, oldest = _with_db(s, purge)
    print(
        json.dumps(
            {
                "retention_days": {
                    "raw": raw,
                    "call": call,
                    "consent_after_revocation_or_last_use": consent,
                },
                "deleted": counts,
            },
            indent=2,
        )
    )
    if s.evidence_file:
        _append_evidence(
            Path(s.evidence_file),
            now,
            {"raw_payloads": raw, "call_records": call, "consent_proof": consent},
            counts,
            oldest,
        )
    return 0


def _append_evidence(
    path: Path,
    now: int,
    limits: dict[str, int],
    counts: dict[str, int],
    oldest: dict[str, int | None],
) -> None:
    """One JSON line per purge, in the shape of the media nodes' retention evidence."""

    def iso(moment: int | None) -> str | None:
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(moment)) if moment else None

    record = {
        "time": iso(now),
        "host": socket.gethostname(),
        "run": "wagw-bridge-purge",
        "classes": {
            name: {
                "store": "bridge database",
                "limit_days": limits[name],
                "deleted": counts[name],
                "oldest_remaining": iso(oldest[name]),
            }
            for name in limits
        },
    }
    with path.open("a", encoding="utf-8") as evidence:
        evidence.write(json.dumps(record, sort_keys=True) + "\n")


def _backup_target(s: Settings, args: argparse.Namespace) -> backup.Target:
    bucket = args.bucket or s.backup_bucket
    if not bucket:
        raise ConfigError("no backup bucket: set backup_bucket or pass --bucket")
    prefix = s.backup_prefix if args.prefix is None else args.prefix
    return backup.Target(bucket, prefix, s.backup_endpoint_url, s.backup_region)


def cmd_backup(args: argparse.Namespace) -> int:
    s = _settings(args)
    recipients = args.recipients_file or s.backup_recipients_file
    if not recipients:
        raise ConfigError("no age recipients: set backup_recipients_file or pass --recipients-file")
    print(
        json.dumps(backup.backup(s.database, _backup_target(s, args), Path(recipients)), indent=2)
    )
    return 0


def cmd_backups(args: argparse.Namespace) -> int:
    s = _settings(args)
    print(json.dumps(backup.backups(_backup_target(s, args)), indent=2))
    return 0


def cmd_backup_status(args: argparse.Namespace) -> int:
    s = _settings(args)
    print(json.dumps(backup.status(_backup_target(s, args)), indent=2))
    return 0


def cmd_ledger_status(args: argparse.Namespace) -> int:
    s = _settings(args)
    domain = Domain(s, Pseudonymizer(b"unused-for-counts"))
    counts = _with_db(s, lambda tx: domain.ledger_counts(tx, int(time.time())))
    print(json.dumps(counts, indent=2))
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    s = _settings(args)
    done = backup.restore(
        _backup_target(s, args),
        args.key,
        Path(args.identity_file),
        args.database or s.database,
        force=args.force,
    )
    print(json.dumps(done, indent=2))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    s = _settings(args)
    s.require("pseudonym_key")
    domain = Domain(s, Pseudonymizer(s.pseudonym_key.encoded()))
    data = _with_db(s, lambda tx: domain.export(tx, args.subject, int(time.time())))
    json.dump(data, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")
    return 0


def cmd_erase(args: argparse.Namespace) -> int:
    s = _settings(args)
    s.require("pseudonym_key")
    domain = Domain(s, Pseudonymizer(s.pseudonym_key.encoded()))
    counts = _with_db(s, lambda tx: domain.erase(tx, args.subject, int(time.time())))
    print(json.dumps({"subject": "p:" + domain.pseudo.subject_hash(args.subject)[:16], **counts}))
    return 0


def doctor_checks(settings: Settings) -> list[tuple[str, str, str]]:
    """(level, check, detail) with level ok/warn/fail. Never prints a secret."""
    out: list[tuple[str, str, str]] = []
    missing = settings.missing_secrets()
    if missing:
        out.append(("fail", "secrets", "missing: " + ", ".join(missing)))
    else:
        out.append(("ok", "secrets", "app secret, verify token, internal token, pseudonym key set"))
        if len(settings.pseudonym_key.get()) < 16:
            out.append(("fail", "pseudonym key", "shorter than 16 characters"))
        if settings.verify_token == settings.internal_token:
            out.append(("warn", "tokens", "verify token and internal token are identical"))
    db = Database(settings.database, settings.sqlite_synchronous)
    try:
        conn = db.connect()
    except DBError as exc:
        out.append(("fail", "database", str(exc)))
    else:
        try:
            conn.execute("SELECT 1").fetchone()
            out.append(("ok", "database", f"{db.dialect.name} reachable"))
            version = db.schema_version(conn)
            if version == SCHEMA_VERSION:
                out.append(("ok", "schema", f"version {version}"))
                out.append(_outbox_check(settings, conn, db))
            elif version < SCHEMA_VERSION:
                out.append(
                    ("fail", "schema", f"version {version}, expected {SCHEMA_VERSION}: run migrate")
                )
            else:
                out.append(("fail", "schema", f"version {version} is newer than this code"))
            if db.dialect is SQLITE:
                mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
                out.append(("ok" if mode == "wal" else "warn", "sqlite journal", str(mode)))
                parent = Path(settings.database).resolve().parent
                if not os.access(parent, os.W_OK):
                    out.append(("fail", "sqlite directory", f"{parent} not writable"))
        except Exception as exc:
            out.append(("fail", "database", f"{type(exc).__name__}: {exc}"))
        finally:
            conn.close()
    if settings.routes_file:
        try:
            table = RoutingTable.load(settings.routes_file, settings.timezone)
            out.append(("ok", "routes", f"{len(table.routes)} number(s) in {settings.routes_file}"))
        except RoutesError as exc:
            out.append(("fail", "routes", str(exc)))
    else:
        out.append(
            ("warn", "routes", "no routes file: /internal/route answers 404 for every number")
        )
    try:
        RoutingTable.from_data({}, settings.timezone)
        out.append(("ok", "timezone", settings.timezone))
    except RoutesError as exc:
        out.append(("fail", "timezone", str(exc)))
    if settings.permission_check == "meta":
        try:
            MetaPermissionChecker(settings)
            out.append(("ok", "permission check", "meta (fail closed)"))
        except ConfigError as exc:
            out.append(("fail", "permission check", str(exc)))
    if not settings.privacy_url or not settings.imprint_url:
        out.append(
            ("warn", "opt-in wording", "privacy_url/imprint_url not set: not in the request")
        )
    return out


def cmd_dispatch(args: argparse.Namespace) -> int:
    settings = _settings(args)
    setup_logging(settings.log_level)
    return dispatch.run(settings)


def _outbox_check(settings: Settings, conn: Any, db: Database) -> tuple[str, str, str]:
    counts = {s: n for s, n in dispatch.outbox_counts(Tx(conn, db.dialect)).items() if n}
    summary = ", ".join(f"{n} {state}" for state, n in sorted(counts.items())) or "empty"
    if not settings.access_token:
        waiting = counts.get("queued", 0)
        return ("warn", "outbox", f"{summary}; no access token: {waiting} message(s) not sent")
    if counts.get("failed"):
        return ("warn", "outbox", f"{summary}; see last_error in the outbox table")
    return ("ok", "outbox", summary)


def cmd_doctor(args: argparse.Namespace) -> int:
    try:
        settings = _settings(args)
    except ConfigError as exc:
        checks = [("fail", "config", str(exc))]
    else:
        checks = [("ok", "config", "loaded"), *doctor_checks(settings)]
    failed = any(level == "fail" for level, _, _ in checks)
    if args.json:
        print(json.dumps([{"level": lv, "check": c, "detail": d} for lv, c, d in checks], indent=2))
    else:
        for level, check, detail in checks:
            print(f"{level.upper():4} {check}: {detail}")
        print("doctor: " + ("problems found" if failed else "all checks passed"))
    return 1 if failed else 0


def _run(coro: Coroutine[Any, Any, None]) -> None:
    try:
        import uvloop  # noqa: PLC0415
    except ImportError:
        asyncio.run(coro)
    else:
        uvloop.run(coro)


def cmd_serve(args: argparse.Namespace) -> int:
    settings = _settings(args)
    settings.require()
    setup_logging(settings.log_level)
    count = settings.worker_count
    if count == 1:
        _run(serve(settings))
        return 0
    # Migrate once, before any worker exists (every worker's start then finds the schema).
    Database(settings.database, settings.sqlite_synchronous).migrate(int(time.time()))
    supervisor = Supervisor(count, listeners(settings), lambda ctx: _serve_worker(settings, ctx))
    return supervisor.run()


def _serve_worker(settings: Settings, ctx: WorkerContext) -> int:
    _run(serve(settings, worker=ctx))
    return 0


@contextlib.contextmanager
def _no_signals() -> Iterator[None]:
    yield


def listeners(settings: Settings) -> dict[str, tuple[str, int]]:
    """Listener mode -> address: one combined listener if both addresses are equal; with a
    metrics address also the ``metrics`` listener."""
    if settings.listen_addr == settings.internal_listen_addr:
        modes = {"combined": settings.listen_addr}
    else:
        modes = {"public": settings.listen_addr, "internal": settings.internal_listen_addr}
    if settings.metrics_listen_addr is not None:
        modes["metrics"] = settings.metrics_listen_addr
    return modes


def uvicorn_config(app: Callable[..., Any], host: str, port: int) -> uvicorn.Config:
    """The uvicorn settings of every listener (the benchmark's bare endpoint uses them too)."""
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_config=None,
        access_log=False,  # would log query strings, i.e. phone numbers
        server_header=False,
        proxy_headers=False,  # client addresses are never used or logged
        lifespan="off",
        timeout_graceful_shutdown=10,
    )


class QuietServer(uvicorn.Server):
    """uvicorn.Server without its own signal handling (serve() installs the handlers)."""

    def capture_signals(self) -> contextlib.AbstractContextManager[None]:  # type: ignore[override]
        return _no_signals()


async def serve(
    settings: Settings,
    ready: Callable[[list[uvicorn.Server]], None] | None = None,
    worker: WorkerContext | None = None,
) -> None:
    """Run the public and the internal listener (one listener if both addresses are equal),
    and the metrics listener if it has an address.

    As a worker (``worker`` given) the listeners are the slot's pre-bound sockets and the
    metrics go to the workers' shared directory.
    """
    from .app import Runtime, create_app  # noqa: PLC0415

    metrics = Metrics(worker.metrics_dir, worker.started) if worker is not None else None
    rt = Runtime(settings, metrics=metrics)
    await rt.start()
    servers: list[uvicorn.Server] = []
    sockets: list[list[socket.socket] | None] = []
    for mode, (host, port) in listeners(settings).items():
        servers.append(QuietServer(uvicorn_config(create_app(runtime=rt, mode=mode), host, port)))
        sockets.append([worker.sockets[mode]] if worker is not None else None)

    loop = asyncio.get_running_loop()

    def stop() -> None:
        for srv in servers:
            srv.should_exit = True

    def reload_routes() -> None:
        try:
            rt.reload_routes()
            logging.getLogger("wagw_bridge").info("routes reloaded")
        except RoutesError as exc:
            logging.getLogger("wagw_bridge").error(
                "routes reload failed", extra={"error": str(exc)}
            )

    with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
        loop.add_signal_handler(signal.SIGTERM, stop)
        loop.add_signal_handler(signal.SIGINT, stop)
        loop.add_signal_handler(signal.SIGHUP, reload_routes)
    try:
        tasks = [
            asyncio.create_task(srv.serve(sockets=socks))
            for srv, socks in zip(servers, sockets, strict=True)
        ]
        if ready is not None:
            while not all(srv.started for srv in servers):
                await asyncio.sleep(0.01)
            ready(servers)
        await asyncio.gather(*tasks)
    finally:
        await rt.stop()


# --------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="wagw-bridge", description=__doc__)
    p.add_argument("--version", action="version", version=f"wagw-bridge {__version__}")
    p.add_argument(
        "--config",
        help="YAML/JSON config file (default: $WAGW_BRIDGE_CONFIG); environment overrides it",
    )
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("serve", help="run the public and internal HTTP listeners").set_defaults(
        fn=cmd_serve
    )
    sub.add_parser("migrate", help="create or upgrade the database schema").set_defaults(
        fn=cmd_migrate
    )
    pp = sub.add_parser("purge", help="delete data past its retention period, per data class")
    pp.add_argument("--raw-days", type=int, help="raw webhook payloads and messages (default 7)")
    pp.add_argument("--call-days", type=int, help="call records (default 90)")
    pp.add_argument(
        "--consent-days",
        type=int,
        choices=range(0, MAX_CONSENT_RETENTION_DAYS + 1),
        metavar=f"0..{MAX_CONSENT_RETENTION_DAYS}",
        help="consent proof after revocation or last use (default 1095, at most 1826)",
    )
    pp.set_defaults(fn=cmd_purge)
    pe = sub.add_parser("export", help="GDPR Art. 15: all data about a subject, JSON on stdout")
    pe.add_argument("--subject", required=True, type=_subject, help="E.164 phone number or BSUID")
    pe.set_defaults(fn=cmd_export)
    pr = sub.add_parser(
        "erase", help="GDPR Art. 17: erase a subject (consent proof kept, pseudonymised)"
    )
    pr.add_argument("--subject", required=True, type=_subject, help="E.164 phone number or BSUID")
    pr.set_defaults(fn=cmd_erase)
    sub.add_parser(
        "dispatch", help="send queued WhatsApp messages (outbox) through Meta's Graph API"
    ).set_defaults(fn=cmd_dispatch)
    where = argparse.ArgumentParser(add_help=False)
    where.add_argument("--bucket", help="S3 bucket (default: backup_bucket)")
    where.add_argument("--prefix", help="key prefix (default: backup_prefix)")
    pb = sub.add_parser(
        "backup", parents=[where], help="snapshot the database, encrypt it with age, upload it"
    )
    pb.add_argument("--recipients-file", help="age recipients (default: backup_recipients_file)")
    pb.set_defaults(fn=cmd_backup)
    sub.add_parser("backups", parents=[where], help="list the backups, oldest first").set_defaults(
        fn=cmd_backups
    )
    sub.add_parser(
        "backup-status",
        parents=[where],
        help="the newest backup's age and the bucket's versioning, encryption, lifecycle (JSON)",
    ).set_defaults(fn=cmd_backup_status)
    sub.add_parser(
        "ledger-status",
        help="the consent ledger's counts by action and opt-in state, call permissions (JSON)",
    ).set_defaults(fn=cmd_ledger_status)
    pt = sub.add_parser(
        "restore", parents=[where], help="download a backup, open it, restore it (bridge stopped)"
    )
    pt.add_argument("--key", help="the backup's key (default: the newest)")
    pt.add_argument("--identity-file", required=True, help="age identity that opens the backups")
    pt.add_argument("--database", help="restore into this database (default: the bridge's)")
    pt.add_argument("--force", action="store_true", help="replace an existing SQLite file")
    pt.set_defaults(fn=cmd_restore)
    pd = sub.add_parser("doctor", help="check configuration, database, schema and secrets")
    pd.add_argument("--json", action="store_true", help="machine-readable report")
    pd.set_defaults(fn=cmd_doctor)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    fn: Callable[[argparse.Namespace], int] = args.fn
    try:
        return fn(args)
    except ConfigError as exc:
        print(f"wagw-bridge: configuration error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except (DBError, RoutesError, backup.BackupError) as exc:
        print(f"wagw-bridge: {exc}", file=sys.stderr)
        return EXIT_DB


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
