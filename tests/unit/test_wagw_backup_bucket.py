"""plugins/modules/wagw_backup_bucket against moto's S3 server on loopback (the toolkit's venv
has it, requirements.txt): a fresh bucket is created and set up, a second run changes nothing,
check mode reports and changes nothing, a drifted setting is put back, other lifecycle rules stay."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from conftest import run_module

KEYS = {"access_key_id": "wagw-test-key", "secret_access_key": "wagw-test-secret"}


@pytest.fixture(scope="module")
def s3() -> Iterator[str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen([str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(url + "/moto-api/", timeout=1)  # noqa: S310 (http on loopback)
                break
            except OSError:
                time.sleep(0.1)
        else:
            pytest.fail("moto_server did not answer on " + url)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=10)


def bucket_args(s3: str, name: str, **extra: Any) -> dict[str, Any]:
    return {"bucket": name, "endpoint_url": s3, "retention_days": 30, **KEYS, **extra}


def client(s3: str) -> Any:
    return boto3.client("s3", endpoint_url=s3, region_name="eu-central-1", aws_access_key_id=KEYS["access_key_id"],
                        aws_secret_access_key=KEYS["secret_access_key"])


def test_a_fresh_bucket_is_set_up_once_and_check_mode_changes_nothing(s3: str) -> None:
    name = f"wagw-fresh-{time.monotonic_ns()}"
    checked = run_module("wagw_backup_bucket", bucket_args(s3, name), "--check", "--diff")
    assert checked["changed"], checked
    assert checked["created"], checked
    assert checked["diff"]["before"]["exists"] is False
    assert name not in [b["Name"] for b in client(s3).list_buckets()["Buckets"]]

    first = run_module("wagw_backup_bucket", bucket_args(s3, name), "--diff")
    assert first["changed"], first
    assert first["created"], first
    rules = client(s3).get_bucket_lifecycle_configuration(Bucket=name)["Rules"]
    assert [(r["ID"], r["Filter"]["Prefix"], r["Expiration"]["Days"], r["NoncurrentVersionExpiration"]["NoncurrentDays"])
            for r in rules] == [("wagw-backup-bridge", "bridge/", 30, 1)]
    assert client(s3).get_bucket_versioning(Bucket=name)["Status"] == "Enabled"
    assert client(s3).get_public_access_block(Bucket=name)["PublicAccessBlockConfiguration"]["BlockPublicPolicy"]
    # the secret is a no_log parameter: never in the result
    assert KEYS["secret_access_key"] not in str(first)

    second = run_module("wagw_backup_bucket", bucket_args(s3, name), "--diff")
    assert not second["changed"], second
    assert not run_module("wagw_backup_bucket", bucket_args(s3, name), "--check")["changed"]


def test_a_drifted_setting_is_put_back_and_other_rules_stay(s3: str) -> None:
    name = f"wagw-drift-{time.monotonic_ns()}"
    s3c = client(s3)
    s3c.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": "eu-central-1"})
    other = {"ID": "logs", "Status": "Enabled", "Filter": {"Prefix": "logs/"}, "Expiration": {"Days": 7}}
    s3c.put_bucket_lifecycle_configuration(Bucket=name, LifecycleConfiguration={"Rules": [other]})
    assert run_module("wagw_backup_bucket", bucket_args(s3, name))["changed"]

    # someone shortened nothing but lengthened the backups' life: check mode says so, the run mends it
    rules = s3c.get_bucket_lifecycle_configuration(Bucket=name)["Rules"]
    ours = next(r for r in rules if r["ID"] == "wagw-backup-bridge")
    ours["Expiration"]["Days"] = 3650
    s3c.put_bucket_lifecycle_configuration(Bucket=name, LifecycleConfiguration={"Rules": rules})
    checked = run_module("wagw_backup_bucket", bucket_args(s3, name), "--check", "--diff")
    assert checked["changed"]
    assert checked["diff"]["before"]["lifecycle_rule"]["Expiration"]["Days"] == 3650
    assert checked["diff"]["after"]["lifecycle_rule"]["Expiration"]["Days"] == 30
    assert run_module("wagw_backup_bucket", bucket_args(s3, name))["changed"]
    rules = {r["ID"]: r for r in s3c.get_bucket_lifecycle_configuration(Bucket=name)["Rules"]}
    assert rules["wagw-backup-bridge"]["Expiration"]["Days"] == 30
    assert rules["logs"]["Expiration"]["Days"] == 7
    assert not run_module("wagw_backup_bucket", bucket_args(s3, name))["changed"]


def test_a_missing_bucket_is_named_when_it_must_exist(s3: str) -> None:
    result = run_module("wagw_backup_bucket", bucket_args(s3, "wagw-missing", create=False))
    assert result["failed"]
    assert result["msg"] == "bucket wagw-missing does not exist (create: false)"
    bad = run_module("wagw_backup_bucket", bucket_args(s3, "wagw-missing", retention_days=0))
    assert bad["msg"] == "retention_days and noncurrent_days must be 1 or more"
