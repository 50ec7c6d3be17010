"""Settings: environment variables (``WAGW_BRIDGE_*``) over an optional YAML/JSON file.

Every secret may also be given as a file (``WAGW_BRIDGE_APP_SECRET_FILE=/run/credentials/...``),
which is how systemd credentials and Ansible-rendered secret files hand them over.
Secrets are wrapped in :class:`Secret` so that no ``repr``/log line ever shows them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

ENV_PREFIX = "WAGW_BRIDGE_"
SECRET_NAMES = ("app_secret", "verify_token", "internal_token", "pseudonym_key")
# Secrets only one command needs: the Graph API access token of the outbox dispatcher.
OPTIONAL_SECRET_NAMES = ("access_token",)
ALL_SECRET_NAMES = SECRET_NAMES + OPTIONAL_SECRET_NAMES
# WORKERS=0 picks one worker per CPU, but no more than this: SQLite takes one writer at a time
# and every PostgreSQL worker holds its own connections, so more processes mostly add contention.
MAX_AUTO_WORKERS = 4
MAX_WORKERS = 64
# §7a UWG: consent to advertising calls is documented for five years from obtaining it and from
# each use; 5 * 365 + 1 leap day.
MAX_CONSENT_RETENTION_DAYS = 1826


class ConfigError(Exception):
    """Raised for missing or invalid settings; the message names the setting."""


class Secret:
    """A string that never shows itself in repr/str/logs."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def get(self) -> str:
        return self._value

    def encoded(self) -> bytes:
        return self._value.encode("utf-8")

    def __bool__(self) -> bool:
        return bool(self._value)

    def __repr__(self) -> str:
        return "Secret('***')" if self._value else "Secret('')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


def _words(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        items = value.replace(";", ",").split(",")
    elif isinstance(value, list | tuple):
        items = [str(v) for v in value]
    else:
        raise ConfigError(f"expected a list or comma-separated string, got {type(value).__name__}")
    return tuple(v.strip().upper() for v in items if v.strip())


def _listen(value: str, name: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not (0 <= int(port) <= 65535):
        raise ConfigError(f"{name}: expected HOST:PORT, got {value!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


@dataclass(frozen=True)
class Settings:
    app_secret: Secret = field(default_factory=lambda: Secret(""))
    verify_token: Secret = field(default_factory=lambda: Secret(""))
    internal_token: Secret = field(default_factory=lambda: Secret(""))
    pseudonym_key: Secret = field(default_factory=lambda: Secret(""))
    # Outbox dispatcher (``wagw-bridge dispatch``): Meta's Graph API, the system user's access
    # token, and which phone-number-id sends for which business number ("+E164=ID" pairs).
    access_token: Secret = field(default_factory=lambda: Secret(""))
    graph_api_url: str = "https://graph.facebook.com"
    graph_api_version: str = "v23.0"
    phone_number_ids: tuple[str, ...] = ()
    dispatch_interval: int = 2
    dispatch_timeout: int = 10
    dispatch_max_attempts: int = 12
    database: str = "/var/lib/wagw-bridge/bridge.sqlite3"
    routes_file: str = ""
    listen: str = "127.0.0.1:8080"
    internal_listen: str = "127.0.0.1:8081"
    # GET /metrics alone, for the monitoring networks (the firewall's); empty: no such listener.
    metrics_listen: str = ""
    # Meta's deliveries are up to 3 MB and batch up to 1000 updates.
    max_body_bytes: int = 3 * 1024 * 1024
    retention_raw_days: int = 7
    retention_call_days: int = 90
    # Consent proof after the chain ended (revocation) or its last use, whichever is later:
    # 3 years (§195 BGB) by default, up to 5 years (§7a UWG).
    retention_consent_days: int = 3 * 365
    # Each purge appends one JSON line of evidence here (per class: limit, deleted, oldest
    # remaining), kept apart from the journal for the audit; empty: none.
    evidence_file: str = ""
    # Encrypted backups (``wagw-bridge backup``): the bucket (empty: no backups), the key prefix,
    # the S3 endpoint (empty: AWS) and region, and the age recipients (public keys) to encrypt
    # to. Credentials come from boto3's usual places (AWS_* environment, a credentials file).
    backup_bucket: str = ""
    backup_prefix: str = "bridge/"
    backup_endpoint_url: str = ""
    backup_region: str = ""
    backup_recipients_file: str = ""
    timezone: str = "Europe/Berlin"
    consent_purpose: str = "whatsapp-calls"
    wording_version: str = "v1"
    optin_wording: str = (
        "Bitte bestätigen Sie, dass wir Sie über WhatsApp kontaktieren und anrufen dürfen: "
        "antworten Sie JA. Widerruf jederzeit mit STOP. / Please confirm that we may contact "
        "and call you on WhatsApp: reply YES. Revoke any time with STOP."
    )
    # Included in the confirmation request and recorded with every ledger entry.
    privacy_url: str = ""
    imprint_url: str = ""
    optin_keywords: tuple[str, ...] = ("START", "ANMELDEN")
    confirm_keywords: tuple[str, ...] = ("JA", "YES")
    stop_keywords: tuple[str, ...] = ("STOP", "STOPP", "ABMELDEN")
    optin_button_ids: tuple[str, ...] = ("WAGW_OPTIN",)
    confirm_button_ids: tuple[str, ...] = ("WAGW_CONFIRM",)
    stop_button_ids: tuple[str, ...] = ("WAGW_OPTOUT",)
    confirmation_window_hours: int = 48
    # Before /internal/consent answers allow: "off" (the ledger alone) or "meta" (also ask
    # Meta's GET /{phone-number-id}/call_permissions; no permission or Meta unreachable: deny).
    permission_check: str = "off"
    permission_cache_seconds: int = 60
    permission_check_timeout: int = 3
    sqlite_synchronous: str = "FULL"
    batch_max: int = 512
    # Worker processes of `serve` (0 = one per CPU available to the service, at most
    # MAX_AUTO_WORKERS). Each has its own event loop, database connections and group commit.
    workers: int = 0
    log_level: str = "INFO"

    # ------------------------------------------------------------------ loading
    @classmethod
    def load(
        cls, config_file: str | None = None, environ: Mapping[str, str] | None = None
    ) -> Settings:
        env = dict(os.environ if environ is None else environ)
        raw: dict[str, Any] = {}
        path = config_file or env.get(ENV_PREFIX + "CONFIG")
        if path:
            raw.update(_read_config_file(Path(path)))
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(raw) - names)
        if unknown:
            raise ConfigError(f"unknown setting(s) in {path}: {', '.join(unknown)}")
        for name in names:
            key = ENV_PREFIX + name.upper()
            if key in env:
                raw[name] = env[key]
            file_key = key + "_FILE"
            if name in ALL_SECRET_NAMES and file_key in env:
                try:
                    raw[name] = Path(env[file_key]).read_text(encoding="utf-8").strip()
                except OSError as exc:
                    raise ConfigError(f"{file_key}: cannot read {env[file_key]}: {exc}") from exc
        return cls.from_mapping(raw)

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any]) -> Settings:
        kwargs: dict[str, Any] = {}
        for f in fields(cls):
            if f.name not in raw or raw[f.name] is None:
                continue
            value = raw[f.name]
            try:
                if f.name in ALL_SECRET_NAMES:
                    kwargs[f.name] = value if isinstance(value, Secret) else Secret(str(value))
                elif f.type in ("int",):
                    kwargs[f.name] = int(value)
                elif f.type.startswith("tuple"):
                    kwargs[f.name] = _words(value)
                else:
                    kwargs[f.name] = str(value)
            except (TypeError, ValueError) as exc:
                raise ConfigError(f"{ENV_PREFIX}{f.name.upper()}: invalid value: {exc}") from exc
        settings = cls(**kwargs)
        settings.validate_shape()
        return settings

    # --------------------------------------------------------------- validation
    def validate_shape(self) -> None:
        if self.max_body_bytes < 1024:
            raise ConfigError(f"{ENV_PREFIX}MAX_BODY_BYTES must be >= 1024")
        for name in ("retention_raw_days", "retention_call_days", "retention_consent_days"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{ENV_PREFIX}{name.upper()} must be >= 0")
        if self.retention_consent_days > MAX_CONSENT_RETENTION_DAYS:
            raise ConfigError(
                f"{ENV_PREFIX}RETENTION_CONSENT_DAYS must be <= {MAX_CONSENT_RETENTION_DAYS}"
                " (5 years, §7a UWG)"
            )
        if self.permission_check not in ("off", "meta"):
            raise ConfigError(f"{ENV_PREFIX}PERMISSION_CHECK must be off or meta")
        if self.permission_cache_seconds < 0:
            raise ConfigError(f"{ENV_PREFIX}PERMISSION_CACHE_SECONDS must be >= 0")
        if self.permission_check_timeout < 1:
            raise ConfigError(f"{ENV_PREFIX}PERMISSION_CHECK_TIMEOUT must be >= 1")
        for name in ("privacy_url", "imprint_url"):
            value = getattr(self, name)
            if value and not value.startswith(("https://", "http://")):
                raise ConfigError(f"{ENV_PREFIX}{name.upper()} must be an http(s):// URL")
        if self.sqlite_synchronous.upper() not in ("OFF", "NORMAL", "FULL", "EXTRA"):
            raise ConfigError(f"{ENV_PREFIX}SQLITE_SYNCHRONOUS must be NORMAL, FULL or EXTRA")
        if self.batch_max < 1:
            raise ConfigError(f"{ENV_PREFIX}BATCH_MAX must be >= 1")
        for name in ("dispatch_interval", "dispatch_timeout", "dispatch_max_attempts"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{ENV_PREFIX}{name.upper()} must be >= 1")
        if not 0 <= self.workers <= MAX_WORKERS:
            raise ConfigError(f"{ENV_PREFIX}WORKERS must be 0 (automatic) to {MAX_WORKERS}")
        _listen(self.listen, ENV_PREFIX + "LISTEN")
        _listen(self.internal_listen, ENV_PREFIX + "INTERNAL_LISTEN")
        if self.metrics_listen:
            addr = _listen(self.metrics_listen, ENV_PREFIX + "METRICS_LISTEN")
            if addr in (self.listen_addr, self.internal_listen_addr):
                raise ConfigError(
                    f"{ENV_PREFIX}METRICS_LISTEN must differ from the other listeners' addresses"
                )

    def missing_secrets(self, names: tuple[str, ...] = SECRET_NAMES) -> list[str]:
        return [ENV_PREFIX + n.upper() for n in names if not getattr(self, n)]

    def require(self, *names: str) -> None:
        """Raise a ConfigError naming every required secret that is missing."""
        missing = self.missing_secrets(names or SECRET_NAMES)
        if missing:
            raise ConfigError(
                "missing required setting(s): "
                + ", ".join(missing)
                + f" (set them in the environment, as {ENV_PREFIX}<NAME>_FILE, or in the config file)"
            )
        if len(self.pseudonym_key.get()) < 16 and "pseudonym_key" in (names or SECRET_NAMES):
            raise ConfigError(f"{ENV_PREFIX}PSEUDONYM_KEY must be at least 16 characters")

    @property
    def listen_addr(self) -> tuple[str, int]:
        return _listen(self.listen, ENV_PREFIX + "LISTEN")

    @property
    def internal_listen_addr(self) -> tuple[str, int]:
        return _listen(self.internal_listen, ENV_PREFIX + "INTERNAL_LISTEN")

    @property
    def metrics_listen_addr(self) -> tuple[str, int] | None:
        if not self.metrics_listen:
            return None
        return _listen(self.metrics_listen, ENV_PREFIX + "METRICS_LISTEN")

    @property
    def worker_count(self) -> int:
        """Worker processes to run: ``workers``, or for 0 the CPUs available (at most 4)."""
        if self.workers:
            return self.workers
        try:
            cpus = len(os.sched_getaffinity(0))
        except (AttributeError, OSError):
            cpus = os.cpu_count() or 1
        return max(1, min(cpus, MAX_AUTO_WORKERS))

    @property
    def is_postgres(self) -> bool:
        return self.database.startswith(("postgresql://", "postgres://"))

    def redacted(self) -> dict[str, Any]:
        """Settings as a dict safe to print (secrets reduced to set/unset)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Secret):
                out[f.name] = "set" if value else "unset"
            elif f.name == "database" and self.is_postgres:
                out[f.name] = _redact_dsn(value)
            elif isinstance(value, tuple):
                out[f.name] = list(value)
            else:
                out[f.name] = value
        return out


def _redact_dsn(dsn: str) -> str:
    scheme, sep, rest = dsn.partition("://")
    if not sep or "@" not in rest:
        return dsn
    creds, _, host = rest.rpartition("@")
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}"


def _read_config_file(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from exc
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise ConfigError(f"config file {path} is not valid YAML/JSON: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must contain a mapping")
    return {str(k): v for k, v in data.items()}
