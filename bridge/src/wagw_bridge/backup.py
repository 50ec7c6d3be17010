"""Encrypted backups of the bridge's database in S3-compatible storage, and their restore.

A backup is a consistent snapshot of the database (SQLite's online backup API; ``pg_dump`` in
its custom format for PostgreSQL), encrypted on the host with age to the recipients the
inventory names, and uploaded with boto3 as ``<prefix>bridge-<UTC time>.<kind>.age`` with
server-side encryption. The recipients are public keys: the host can write backups but never
open one, so data erased from the database (GDPR Art. 17) cannot be read back from an older
backup on the host either; the identity that opens them stays in the vault and is given only to
a restore (a drill, a replacement host). A backup holds the database only: no configuration,
no secret of the bridge (those are the inventory's, in the vault).

The bucket's versioning, default encryption and lifecycle rule (backups expire at their
retention) are set by the toolkit (the webhook_bridge role, with amazon.aws); :func:`status`
reads them back, with the newest backup's age, for the audit.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import sqlite3
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from .db import SCHEMA_VERSION, Database

KEY_SUFFIX = ".age"
KINDS = {"sqlite": ".sqlite3", "pgdump": ".pgdump"}


class BackupError(Exception):
    """A backup or restore that could not be done; the message says why and what to do."""


@dataclass(frozen=True)
class Target:
    """Where backups go: a bucket, a key prefix, and the S3 endpoint (empty: AWS)."""

    bucket: str
    prefix: str = "bridge/"
    endpoint_url: str = ""
    region: str = ""

    def client(self) -> Any:
        try:
            import boto3  # type: ignore[import-untyped]  # noqa: PLC0415  (optional: the backup extra)
        except ImportError as exc:  # pragma: no cover - depends on the installation
            raise BackupError("boto3 is not installed: install wagw-bridge[backup]") from exc
        return boto3.client(
            "s3", endpoint_url=self.endpoint_url or None, region_name=self.region or None
        )


def _pg_environment(dsn: str) -> dict[str, str]:
    """libpq's environment for a DSN: pg_dump and pg_restore get the password there, never on
    their command line (which any local user can read in /proc)."""
    from psycopg.conninfo import conninfo_to_dict  # noqa: PLC0415  (optional dependency)

    names = {"dbname": "PGDATABASE", "user": "PGUSER"}
    env = dict(os.environ)
    for key, value in conninfo_to_dict(dsn).items():
        if value is not None:
            env[names.get(key, "PG" + key.upper())] = str(value)
    return env


def _run(argv: list[str], what: str, env: dict[str, str] | None = None) -> None:
    if shutil.which(argv[0]) is None:
        raise BackupError(f"{what}: {argv[0]} is not installed")
    # argv: fixed programs (age, pg_dump, pg_restore) with paths of this module's own making
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)  # noqa: S603
    if proc.returncode != 0:
        raise BackupError(f"{what} failed: {proc.stderr.strip() or proc.stdout.strip()}")


@contextlib.contextmanager
def _workdir() -> Iterator[Path]:
    """A private folder for the plaintext snapshot, removed whatever happens."""
    path = Path(tempfile.mkdtemp(prefix="wagw-backup-"))
    try:
        path.chmod(0o700)
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def snapshot(database: str, folder: Path) -> tuple[Path, str]:
    """A consistent copy of the database in folder, and its kind (sqlite or pgdump)."""
    if Database(database).dialect.name == "sqlite":
        if not Path(database).is_file():
            raise BackupError(f"no database at {database}")
        out = folder / "bridge.sqlite3"
        source = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
        copy = sqlite3.connect(out)
        try:
            # The online backup API: a consistent copy while the bridge keeps writing.
            source.backup(copy)
        finally:
            copy.close()
            source.close()
        return out, "sqlite"
    out = folder / "bridge.pgdump"
    _run(
        ["pg_dump", "--format=custom", "--no-owner", "--no-privileges", "--file", str(out)],
        "pg_dump",
        _pg_environment(database),
    )
    return out, "pgdump"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def backup(
    database: str, target: Target, recipients_file: Path, now: float | None = None
) -> dict[str, Any]:
    """Snapshot, encrypt to the recipients, upload; what was stored."""
    if not recipients_file.is_file():
        raise BackupError(f"no age recipients file at {recipients_file}")
    moment = time.gmtime(time.time() if now is None else now)
    with _workdir() as folder:
        plain, kind = snapshot(database, folder)
        sealed = folder / (plain.name + KEY_SUFFIX)
        _run(
            [
                "age",
                "--encrypt",
                "--recipients-file",
                str(recipients_file),
                "--output",
                str(sealed),
                str(plain),
            ],
            "age --encrypt",
        )
        plain.unlink()
        key = f"{target.prefix}bridge-{time.strftime('%Y%m%dT%H%M%SZ', moment)}{KINDS[kind]}{KEY_SUFFIX}"
        checksum = _sha256(sealed)
        size = sealed.stat().st_size
        target.client().upload_file(
            str(sealed),
            target.bucket,
            key,
            ExtraArgs={
                "ServerSideEncryption": "AES256",
                "Metadata": {
                    "kind": kind,
                    "schema-version": str(SCHEMA_VERSION),
                    "sha256": checksum,
                },
            },
        )
    return {
        "bucket": target.bucket,
        "key": key,
        "kind": kind,
        "bytes": size,
        "sha256": checksum,
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", moment),
    }


def backups(target: Target) -> list[dict[str, Any]]:
    """The bucket's backups under the prefix, oldest first (their names sort by time)."""
    found: list[dict[str, Any]] = []
    paginator = target.client().get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=target.bucket, Prefix=target.prefix):
        found += [
            {
                "key": item["Key"],
                "bytes": item["Size"],
                "modified": item["LastModified"].isoformat(),
            }
            for item in page.get("Contents", [])
            if item["Key"].endswith(KEY_SUFFIX)
        ]
    return sorted(found, key=lambda item: item["key"])


def _error_code(exc: Exception) -> str:
    """botocore's ClientError code (botocore is optional, so its class is not imported)."""
    response = getattr(exc, "response", None)
    return str(response.get("Error", {}).get("Code", "")) if isinstance(response, dict) else ""


def status(target: Target, now: float | None = None) -> dict[str, Any]:
    """What the audit checks of the backups, read live from the bucket: the newest backup and
    its age, the bucket's versioning, default encryption and lifecycle rules."""
    client = target.client()
    moment = time.time() if now is None else now
    found = backups(target)
    latest: dict[str, Any] | None = None
    if found:
        newest = max(found, key=lambda item: item["modified"])
        age = moment - datetime.fromisoformat(newest["modified"]).timestamp()
        latest = {**newest, "age_hours": round(age / 3600, 2)}
    versioning = client.get_bucket_versioning(Bucket=target.bucket).get("Status") or "Disabled"
    try:
        sse = client.get_bucket_encryption(Bucket=target.bucket)[
            "ServerSideEncryptionConfiguration"
        ]["Rules"][0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"]
    except Exception as exc:
        if _error_code(exc) != "ServerSideEncryptionConfigurationNotFoundError":
            raise
        sse = None
    try:
        rules = client.get_bucket_lifecycle_configuration(Bucket=target.bucket)["Rules"]
    except Exception as exc:
        if _error_code(exc) != "NoSuchLifecycleConfiguration":
            raise
        rules = []
    return {
        "bucket": target.bucket,
        "prefix": target.prefix,
        "count": len(found),
        "latest": latest,
        "versioning": versioning,
        "default_encryption": sse,
        "lifecycle": [
            {
                "id": rule.get("ID", ""),
                "status": rule.get("Status", ""),
                "prefix": rule.get("Filter", {}).get("Prefix", rule.get("Prefix", "")),
                "expiration_days": rule.get("Expiration", {}).get("Days"),
                "noncurrent_days": rule.get("NoncurrentVersionExpiration", {}).get(
                    "NoncurrentDays"
                ),
            }
            for rule in rules
        ],
    }


def _kind_of(key: str) -> str:
    for kind, suffix in KINDS.items():
        if key.endswith(suffix + KEY_SUFFIX):
            return kind
    raise BackupError(
        f"{key} is not a backup of the bridge (bridge-<time>.sqlite3.age or .pgdump.age)"
    )


def restore(
    target: Target, key: str | None, identity_file: Path, database: str, force: bool = False
) -> dict[str, Any]:
    """Download a backup (the newest without a key), open it with the identity, and restore it
    into the database: a SQLite file is replaced whole (refused if it exists, unless force), a
    PostgreSQL database gets pg_restore --clean in one transaction."""
    if not identity_file.is_file():
        raise BackupError(f"no age identity file at {identity_file}")
    if key is None:
        found = backups(target)
        if not found:
            raise BackupError(f"no backup in s3://{target.bucket}/{target.prefix}")
        key = found[-1]["key"]
    kind = _kind_of(key)
    sqlite = Database(database).dialect.name == "sqlite"
    if sqlite != (kind == "sqlite"):
        raise BackupError(
            f"{key} is a {kind} backup; the database {'is SQLite' if sqlite else 'is PostgreSQL'}"
        )
    if sqlite and Path(database).exists() and not force:
        raise BackupError(
            f"{database} exists: stop the bridge and restore with --force to replace it"
        )
    with _workdir() as folder:
        sealed = folder / "backup.age"
        client = target.client()
        try:
            client.download_file(target.bucket, key, str(sealed))
        except Exception as exc:  # botocore's errors are not importable without it
            raise BackupError(f"cannot download s3://{target.bucket}/{key}: {exc}") from exc
        expected = (
            client.head_object(Bucket=target.bucket, Key=key).get("Metadata", {}).get("sha256")
        )
        if expected and expected != _sha256(sealed):
            raise BackupError(
                f"s3://{target.bucket}/{key}: checksum differs from the one stored at backup time"
            )
        plain = folder / ("bridge" + KINDS[kind])
        _run(
            [
                "age",
                "--decrypt",
                "--identity",
                str(identity_file),
                "--output",
                str(plain),
                str(sealed),
            ],
            "age --decrypt",
        )
        if sqlite:
            check = sqlite3.connect(plain)
            try:
                status = check.execute("PRAGMA integrity_check").fetchone()[0]
            finally:
                check.close()
            if status != "ok":
                raise BackupError(
                    f"{key}: the restored database fails SQLite's integrity check: {status}"
                )
            staged = Path(database).with_name(Path(database).name + ".restoring")
            shutil.copyfile(plain, staged)
            staged.chmod(0o640)
            # Whole or not at all: the old file stays until the new one is complete.
            staged.replace(database)
            for stale in ("-wal", "-shm"):
                Path(database + stale).unlink(missing_ok=True)
        else:
            libpq = _pg_environment(database)
            _run(
                [
                    "pg_restore",
                    "--clean",
                    "--if-exists",
                    "--no-owner",
                    "--no-privileges",
                    "--single-transaction",
                    "--exit-on-error",
                    "--dbname",
                    libpq["PGDATABASE"],
                    str(plain),
                ],
                "pg_restore",
                libpq,
            )
    return {
        "bucket": target.bucket,
        "key": key,
        "kind": kind,
        "database": "postgresql" if not sqlite else database,
    }
