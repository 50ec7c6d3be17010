#!/usr/bin/python
# Copyright: (c) 2026, wa-voip-gateway
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The backup bucket's settings (versioning, default encryption, public-access block, the
lifecycle rule that expires the backups), with check mode and diff."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: wagw_backup_bucket
short_description: Keep an S3 bucket fit for the bridge's encrypted backups
description:
  - Makes sure the bucket exists (unless O(create=false)), is versioned, encrypts new objects by
    default (C(AES256) unless it already uses C(aws:kms)), blocks every kind of public access, and
    holds one lifecycle rule that expires the backups under O(prefix) after O(retention_days) and
    their non-current versions (a deleted or expired backup in the versioned bucket) after
    O(noncurrent_days) more; other lifecycle rules of the bucket are kept as they are.
  - C(amazon.aws.s3_bucket) and C(community.aws.s3_lifecycle) set the same things but support
    neither check mode nor diff, which the toolkit promises for every task (the audit compares
    what this module sets, control C(BAK-BUCKET)).
  - Runs wherever boto3 is importable; the webhook_bridge role runs it on the bridge host with
    the bridge's own Python (its C(backup) extra), over the backups' network path.
  - Retries throttling and 5xx answers (botocore's standard retry mode).
options:
  bucket:
    description: The bucket's name.
    type: str
    required: true
  prefix:
    description: Key prefix of the backups; the lifecycle rule applies to it.
    type: str
    default: bridge/
  retention_days:
    description: Days after which a backup expires (GDPR Art. 5(1)(e); the client's C(wagw_retention.backup_days)).
    type: int
    required: true
  noncurrent_days:
    description: Days a non-current version is kept after it became non-current.
    type: int
    default: 1
  rule_id:
    description: ID of the lifecycle rule this module owns; empty derives C(wagw-backup-<prefix>).
    type: str
    default: ""
  create:
    description: Create the bucket when it does not exist; C(false) fails instead.
    type: bool
    default: true
  endpoint_url:
    description: URL of an S3-compatible endpoint; empty is AWS.
    type: str
    default: ""
  region:
    description: The bucket's region (also its location constraint when created).
    type: str
    default: eu-central-1
  access_key_id:
    description: Access key id; empty uses boto3's own sources (environment, credentials file).
    type: str
    default: ""
  secret_access_key:
    description: Secret access key.
    type: str
    default: ""
requirements:
  - boto3
extends_documentation_fragment:
  - wagw.gateway.wagw_module
author:
  - wa-voip-gateway
"""

EXAMPLES = r"""
- name: Keep the backup bucket versioned, encrypted, private, and its backups expiring after 30 days
  wagw.gateway.wagw_backup_bucket:
    bucket: acme-wagw-backups
    prefix: bridge/
    retention_days: 30
    access_key_id: "{{ vault_backup_access_key_id }}"
    secret_access_key: "{{ vault_backup_secret_access_key }}"
"""

RETURN = r"""
created:
  description: Whether the bucket was created (would be, in check mode).
  type: bool
  returned: always
settings:
  description: The bucket's settings after the run (what they would be, in check mode).
  type: dict
  returned: always
  sample:
    versioning: Enabled
    default_encryption: AES256
    public_access_block: {BlockPublicAcls: true, IgnorePublicAcls: true, BlockPublicPolicy: true, RestrictPublicBuckets: true}
    lifecycle_rule:
      ID: wagw-backup-bridge
      Status: Enabled
      Filter: {Prefix: bridge/}
      Expiration: {Days: 30}
      NoncurrentVersionExpiration: {NoncurrentDays: 1}
      AbortIncompleteMultipartUpload: {DaysAfterInitiation: 1}
"""

import copy

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

try:
    import boto3
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError
except ImportError:  # reported by main()
    boto3 = None

PRIVATE = {"BlockPublicAcls": True, "IgnorePublicAcls": True, "BlockPublicPolicy": True, "RestrictPublicBuckets": True}
# Codes S3 answers when a setting was never made (not an error here: the setting is absent).
ABSENT = {"NoSuchLifecycleConfiguration", "ServerSideEncryptionConfigurationNotFoundError",
          "NoSuchPublicAccessBlockConfiguration"}


def lifecycle_rule(prefix: str, retention_days: int, noncurrent_days: int, rule_id: str) -> dict:
    return {"ID": rule_id or "wagw-backup-" + (prefix.strip("/").replace("/", "-") or "all"),
            "Status": "Enabled", "Filter": {"Prefix": prefix},
            "Expiration": {"Days": retention_days},
            "NoncurrentVersionExpiration": {"NoncurrentDays": noncurrent_days},
            "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1}}


def _code(exc: Exception) -> str:
    return str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))


def _read(call, *path: str):
    """A setting's current value, None where the bucket has none."""
    try:
        value = call()
    except ClientError as exc:
        if _code(exc) in ABSENT:
            return None
        raise
    for key in path:
        value = value.get(key) if isinstance(value, dict) else None
    return value


def _exists(client, bucket: str) -> bool:
    try:
        client.head_bucket(Bucket=bucket)
    except ClientError as exc:
        if _code(exc) in ("404", "NoSuchBucket", "NotFound"):
            return False
        raise
    return True


def current_settings(client, bucket: str, rule_id: str) -> dict:
    sse = _read(lambda: client.get_bucket_encryption(Bucket=bucket), "ServerSideEncryptionConfiguration", "Rules")
    rules = _read(lambda: client.get_bucket_lifecycle_configuration(Bucket=bucket), "Rules") or []
    return {
        "versioning": client.get_bucket_versioning(Bucket=bucket).get("Status") or "Disabled",
        "default_encryption": sse[0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] if sse else None,
        "public_access_block": _read(lambda: client.get_public_access_block(Bucket=bucket),
                                     "PublicAccessBlockConfiguration"),
        "lifecycle_rule": next((r for r in rules if r.get("ID") == rule_id), None),
        "_other_rules": [r for r in rules if r.get("ID") != rule_id],
    }


def wanted_settings(before: dict, rule: dict) -> dict:
    after = copy.deepcopy(before)
    after["versioning"] = "Enabled"
    # a KMS key chosen by the bucket's owner is stronger than AES256: kept
    if after["default_encryption"] not in ("AES256", "aws:kms", "aws:kms:dsse"):
        after["default_encryption"] = "AES256"
    after["public_access_block"] = dict(PRIVATE)
    after["lifecycle_rule"] = rule
    return after


def apply(client, bucket: str, before: dict, after: dict) -> None:
    if before["versioning"] != after["versioning"]:
        client.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    if before["default_encryption"] != after["default_encryption"]:
        client.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration={
            "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]})
    if before["public_access_block"] != after["public_access_block"]:
        client.put_public_access_block(Bucket=bucket, PublicAccessBlockConfiguration=PRIVATE)
    if before["lifecycle_rule"] != after["lifecycle_rule"]:
        client.put_bucket_lifecycle_configuration(
            Bucket=bucket, LifecycleConfiguration={"Rules": before["_other_rules"] + [after["lifecycle_rule"]]})


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "bucket": {"type": "str", "required": True},
            "prefix": {"type": "str", "default": "bridge/"},
            "retention_days": {"type": "int", "required": True},
            "noncurrent_days": {"type": "int", "default": 1},
            "rule_id": {"type": "str", "default": ""},
            "create": {"type": "bool", "default": True},
            "endpoint_url": {"type": "str", "default": ""},
            "region": {"type": "str", "default": "eu-central-1"},
            "access_key_id": {"type": "str", "default": "", "no_log": True},
            "secret_access_key": {"type": "str", "default": "", "no_log": True},
        },
        supports_check_mode=True,
    )
    if boto3 is None:
        module.fail_json(msg=missing_required_lib("boto3"))
    p = module.params
    if p["retention_days"] < 1 or p["noncurrent_days"] < 1:
        module.fail_json(msg="retention_days and noncurrent_days must be 1 or more")
    client = boto3.client(
        "s3", endpoint_url=p["endpoint_url"] or None, region_name=p["region"] or None,
        aws_access_key_id=p["access_key_id"] or None, aws_secret_access_key=p["secret_access_key"] or None,
        config=Config(retries={"mode": "standard", "max_attempts": 5}))
    rule = lifecycle_rule(p["prefix"], p["retention_days"], p["noncurrent_days"], p["rule_id"])
    bucket = p["bucket"]
    try:
        created = not _exists(client, bucket)
        if created and not p["create"]:
            module.fail_json(msg=f"bucket {bucket} does not exist (create: false)")
        if created:
            before = {"versioning": None, "default_encryption": None, "public_access_block": None,
                      "lifecycle_rule": None, "_other_rules": []}
            if not module.check_mode:
                extra = ({"CreateBucketConfiguration": {"LocationConstraint": p["region"]}}
                         if p["region"] and p["region"] != "us-east-1" else {})
                client.create_bucket(Bucket=bucket, **extra)
                before = current_settings(client, bucket, rule["ID"])
        else:
            before = current_settings(client, bucket, rule["ID"])
        after = wanted_settings(before, rule)
        changed = created or before != after
        if changed and not module.check_mode:
            apply(client, bucket, before, after)
    except (ClientError, BotoCoreError) as exc:
        # S3's code and message name the problem (AccessDenied, InvalidAccessKeyId, ...); the
        # credentials are module parameters with no_log and never part of it.
        module.fail_json(msg=f"s3://{bucket}: {_code(exc) or type(exc).__name__}: {exc}")
    shown = {k: v for k, v in before.items() if not k.startswith("_")}
    wanted = {k: v for k, v in after.items() if not k.startswith("_")}
    module.exit_json(changed=changed, created=created, settings=wanted,
                     diff={"before": {"bucket": bucket, "exists": not created, **shown},
                           "after": {"bucket": bucket, "exists": True, **wanted}})


if __name__ == "__main__":
    main()
