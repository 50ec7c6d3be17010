"""Encrypted backups of the bridge's database: a real snapshot (SQLite's online backup while the
bridge is open; pg_dump of a real PostgreSQL), real age encryption, uploaded to moto's S3 server
on loopback, restored into a fresh database with the same rows."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import USER, Bridge, free_port, make_settings, text_message
from wagw_bridge import backup, cli
from wagw_bridge.db import Database

BUCKET = "wagw-backups"
TABLES = ("raw_payload", "event", "consent_ledger")


def _moto_server() -> str | None:
    """moto's server from the toolkit's venv (requirements.txt), else from PATH."""
    pinned = Path(__file__).resolve().parents[2] / ".venv" / "bin" / "moto_server"
    return str(pinned) if pinned.is_file() else shutil.which("moto_server")


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    server = _moto_server()
    if server is None or shutil.which("age") is None:
        if os.environ.get("WAGW_REQUIRE_S3") == "1":
            pytest.fail(
                "WAGW_REQUIRE_S3=1 but moto_server or age is missing (make setup installs both)"
            )
        pytest.skip("moto_server or age not found: backup tests SKIPPED")
    port = free_port()
    proc = subprocess.Popen(
        [server, "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(url + "/moto-api/", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        else:
            pytest.fail("moto_server did not answer on " + url)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture
def target(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> backup.Target:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "eu-central-1",
    }.items():
        monkeypatch.setenv(name, value)
    where = backup.Target(BUCKET, f"t{time.monotonic_ns()}/", s3_endpoint, "eu-central-1")
    client = where.client()
    if BUCKET not in [b["Name"] for b in client.list_buckets()["Buckets"]]:
        client.create_bucket(
            Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-central-1"}
        )
    return where


@pytest.fixture
def keys(tmp_path: Path) -> dict[str, Path]:
    """An age key pair: the recipient (public) for the host, the identity (secret) for restores."""
    identity = tmp_path / "identity.txt"
    subprocess.run(["age-keygen", "-o", str(identity)], check=True, capture_output=True)
    recipient = tmp_path / "recipients.txt"
    recipient.write_text(
        subprocess.run(
            ["age-keygen", "-y", str(identity)], check=True, capture_output=True, text=True
        ).stdout
    )
    return {"identity": identity, "recipients": recipient}


def rows(database: str) -> dict[str, list[tuple[Any, ...]]]:
    conn = Database(database).connect()
    try:
        return {
            table: [
                tuple(row) for row in conn.execute(f"SELECT * FROM {table} ORDER BY 1").fetchall()
            ]
            for table in TABLES
        }
    finally:
        conn.close()


def fresh_database(database: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database of the same kind to restore into."""
    if Database(database).dialect.name == "sqlite":
        return str(tmp_path / "restored.sqlite3")
    return str(request.getfixturevalue("postgres").new_database())


def test_a_backup_is_encrypted_and_restores_the_same_rows(
    bridge: Bridge,
    database: str,
    target: backup.Target,
    keys: dict[str, Path],
    request: pytest.FixtureRequest,
    tmp_path: Path,
) -> None:
    now = int(time.time())
    assert bridge.post(text_message("start", ts=now)).status_code == 200
    assert bridge.post(text_message("Ja!", ts=now + 60)).status_code == 200
    before = rows(database)
    assert all(before[table] for table in TABLES)

    # while the bridge is open (its connections, SQLite's WAL)
    stored = backup.backup(database, target, keys["recipients"])
    kind = "sqlite" if Database(database).dialect.name == "sqlite" else "pgdump"
    assert stored["kind"] == kind
    assert stored["key"].startswith(target.prefix + "bridge-")
    assert stored["key"].endswith({"sqlite": ".sqlite3.age", "pgdump": ".pgdump.age"}[kind])
    client = target.client()
    head = client.head_object(Bucket=BUCKET, Key=stored["key"])
    assert head["ServerSideEncryption"] == "AES256"
    assert head["Metadata"]["sha256"] == stored["sha256"]
    body = client.get_object(Bucket=BUCKET, Key=stored["key"])["Body"].read()
    assert body.startswith(b"age-encryption.org/v1\n")
    # neither the subscriber's number nor the key that opens it
    assert USER.encode() not in body
    assert b"AGE-SECRET-KEY" not in body
    assert keys["identity"].read_text().split("AGE-SECRET-KEY-")[1].strip().encode() not in body

    restored = fresh_database(database, request, tmp_path)
    done = backup.restore(target, None, keys["identity"], restored)
    assert done["key"] == stored["key"]
    assert rows(restored) == before


def test_a_restore_needs_the_identity_and_never_half_replaces(
    tmp_path: Path, target: backup.Target, keys: dict[str, Path]
) -> None:
    database = str(tmp_path / "bridge.sqlite3")
    Database(database).migrate(int(time.time()))
    backup.backup(database, target, keys["recipients"])
    existing = tmp_path / "existing.sqlite3"
    existing.write_bytes(b"the current database")

    other = tmp_path / "other-identity.txt"
    subprocess.run(["age-keygen", "-o", str(other)], check=True, capture_output=True)
    with pytest.raises(backup.BackupError, match=r"age --decrypt failed: .*no identity matched"):
        backup.restore(target, None, other, str(existing), force=True)
    assert existing.read_bytes() == b"the current database"

    with pytest.raises(
        backup.BackupError, match="exists: stop the bridge and restore with --force"
    ):
        backup.restore(target, None, keys["identity"], str(existing))
    backup.restore(target, None, keys["identity"], str(existing), force=True)
    assert rows(str(existing)) == rows(database)

    with pytest.raises(backup.BackupError, match="is a sqlite backup; the database is PostgreSQL"):
        backup.restore(target, None, keys["identity"], "postgresql://wagw@127.0.0.1/none")


def test_the_newest_backup_is_restored_unless_one_is_named(
    tmp_path: Path, target: backup.Target, keys: dict[str, Path]
) -> None:
    database = str(tmp_path / "bridge.sqlite3")
    Database(database).migrate(int(time.time()))
    first = backup.backup(database, target, keys["recipients"], now=time.time() - 86400)
    second = backup.backup(database, target, keys["recipients"])
    assert [item["key"] for item in backup.backups(target)] == [first["key"], second["key"]]
    assert (
        backup.restore(target, None, keys["identity"], str(tmp_path / "a.sqlite3"))["key"]
        == second["key"]
    )
    assert (
        backup.restore(target, first["key"], keys["identity"], str(tmp_path / "b.sqlite3"))["key"]
        == first["key"]
    )


def test_the_commands_take_the_bucket_and_recipients_from_the_configuration(
    tmp_path: Path, target: backup.Target, keys: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    settings = make_settings(str(tmp_path / "bridge.sqlite3"), tmp_path)
    Database(settings.database).migrate(int(time.time()))
    config = tmp_path / "bridge.json"
    config.write_text(
        json.dumps(
            {
                "database": settings.database,
                "backup_bucket": BUCKET,
                "backup_prefix": target.prefix,
                "backup_endpoint_url": target.endpoint_url,
                "backup_region": target.region,
                "backup_recipients_file": str(keys["recipients"]),
            }
        )
    )
    assert cli.main(["--config", str(config), "backup"]) == 0
    stored = json.loads(capsys.readouterr().out)
    assert cli.main(["--config", str(config), "backups"]) == 0
    assert [item["key"] for item in json.loads(capsys.readouterr().out)] == [stored["key"]]
    restored = tmp_path / "restored.sqlite3"
    assert (
        cli.main(
            [
                "--config",
                str(config),
                "restore",
                "--identity-file",
                str(keys["identity"]),
                "--database",
                str(restored),
            ]
        )
        == 0
    )
    assert json.loads(capsys.readouterr().out)["key"] == stored["key"]
    # a missing recipients file is named, nothing is uploaded
    config.write_text(
        json.dumps(
            {
                "database": settings.database,
                "backup_bucket": BUCKET,
                "backup_prefix": target.prefix + "none/",
                "backup_endpoint_url": target.endpoint_url,
                "backup_recipients_file": str(tmp_path / "missing.txt"),
            }
        )
    )
    assert cli.main(["--config", str(config), "backup"]) == cli.EXIT_DB
    assert "no age recipients file at" in capsys.readouterr().err
    assert backup.backups(backup.Target(BUCKET, target.prefix + "none/", target.endpoint_url)) == []


def test_the_status_reads_the_newest_backup_and_the_bucket_rules_live(
    tmp_path: Path, target: backup.Target, keys: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    # a bucket of its own: the rules are the bucket's, not the prefix's
    where = backup.Target(
        f"wagw-status-{time.monotonic_ns()}", "bridge/", target.endpoint_url, target.region
    )
    client = where.client()
    client.create_bucket(
        Bucket=where.bucket, CreateBucketConfiguration={"LocationConstraint": "eu-central-1"}
    )
    empty = backup.status(where)
    assert (empty["count"], empty["latest"], empty["versioning"], empty["lifecycle"]) == (
        0,
        None,
        "Disabled",
        [],
    )

    database = str(tmp_path / "bridge.sqlite3")
    Database(database).migrate(int(time.time()))
    stored = backup.backup(database, where, keys["recipients"])
    client.put_bucket_versioning(Bucket=where.bucket, VersioningConfiguration={"Status": "Enabled"})
    client.put_bucket_lifecycle_configuration(
        Bucket=where.bucket,
        LifecycleConfiguration={
            "Rules": [
                {
                    "ID": "wagw-backup-retention",
                    "Status": "Enabled",
                    "Filter": {"Prefix": "bridge/"},
                    "Expiration": {"Days": 30},
                    "NoncurrentVersionExpiration": {"NoncurrentDays": 1},
                }
            ]
        },
    )
    # an hour later, by the clock the status is read with
    found = backup.status(where, now=time.time() + 3600)
    assert found["count"] == 1
    assert found["latest"]["key"] == stored["key"]
    assert 0.9 < found["latest"]["age_hours"] < 1.1
    assert found["versioning"] == "Enabled"
    assert found["lifecycle"] == [
        {
            "id": "wagw-backup-retention",
            "status": "Enabled",
            "prefix": "bridge/",
            "expiration_days": 30,
            "noncurrent_days": 1,
        }
    ]
    config = tmp_path / "bridge.json"
    config.write_text(
        json.dumps(
            {
                "database": database,
                "backup_bucket": where.bucket,
                "backup_endpoint_url": where.endpoint_url,
                "backup_region": where.region,
            }
        )
    )
    assert cli.main(["--config", str(config), "backup-status"]) == 0
    assert json.loads(capsys.readouterr().out)["latest"]["key"] == stored["key"]
