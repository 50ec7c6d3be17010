"""Pseudonyms, JSON-lines logging and Prometheus metrics (text format written by hand)."""

from __future__ import annotations

import bisect
import hashlib
import hmac
import json
import logging
import mmap
import os
import re
import struct
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

E164_RE = re.compile(r"^\+[1-9][0-9]{6,14}$")
# Business-scoped user ID: a two-letter country code (or Meta's earlier "user"), an optional
# "ENT" part for parent BSUIDs, a period and up to 256 letters and digits, e.g.
# "US.13491208655302741918", "US.ENT.11815799212886844830" (Meta, "Business-scoped user IDs").
BSUID_RE = re.compile(r"^[A-Za-z]{2,8}(\.[A-Za-z]{2,8})?\.[A-Za-z0-9]{1,256}$")


class InvalidNumber(ValueError):
    """Not a phone number that can be written in E.164."""


def normalize_e164(value: str) -> str:
    """Normalise a phone number to E.164 (``+4930123456``).

    Accepts Meta's bare digits (``4930123456``), ``00`` prefixes, common separators and a
    leading space (a ``+`` that was not percent-encoded in a query string arrives as a space).
    """
    text = value.strip()
    for ch in " -()/.\t":
        text = text.replace(ch, "")
    if text.startswith("00"):
        text = "+" + text[2:]
    if not text.startswith("+"):
        text = "+" + text
    if not E164_RE.match(text):
        raise InvalidNumber("not an E.164 phone number")
    return text


def normalize_bsuid(value: str) -> str:
    """A business-scoped user ID as Meta sent it (it is compared exactly), or InvalidNumber."""
    text = value.strip()
    if not BSUID_RE.match(text):
        raise InvalidNumber("not a business-scoped user ID")
    return text


def normalize_subject(value: str) -> str:
    """A WhatsApp user's identifier: an E.164 number, else a BSUID; InvalidNumber if neither."""
    try:
        return normalize_e164(value)
    except InvalidNumber:
        return normalize_bsuid(value)


def is_bsuid(identifier: str) -> bool:
    return not identifier.startswith("+")


class Pseudonymizer:
    """Keyed hash (HMAC-SHA256) of E.164 numbers.

    The full hex digest is the ``subject_hash`` column of every table; logs show its first
    16 hex characters. Given the key, anyone holding a number can recompute the hash (that is
    how kept consent proof is matched after an erasure); without the key it is not reversible.
    """

    def __init__(self, key: bytes) -> None:
        self._key = key

    def subject_hash(self, e164: str) -> str:
        """The keyed hash of an identifier: an E.164 number (``+...``) or a BSUID (never
        starting with ``+``, so the two kinds cannot collide)."""
        return hmac.new(self._key, e164.encode("utf-8"), hashlib.sha256).hexdigest()

    def for_log(self, e164: str | None) -> str | None:
        if not e164:
            return None
        return "p:" + self.subject_hash(e164)[:16]


# --------------------------------------------------------------------------- logging
_RESERVED = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _RESERVED and not key.startswith("_"):
                out[key] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str, separators=(",", ":"))


def setup_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # uvicorn's access log would print query strings (phone numbers): it is switched off in
    # serve(); its error logger is routed through the JSON handler.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        lg = logging.getLogger(name)
        lg.handlers[:] = []
        lg.propagate = True


# --------------------------------------------------------------------------- metrics
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
HISTOGRAM = "wagw_webhook_duration_seconds"
Labels = tuple[tuple[str, str], ...]
Series = tuple[str, Labels]

_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_F64 = struct.Struct("<d")
_HEADER = 8
_INITIAL_SIZE = 16 * 1024
_FILE_SUFFIX = ".metrics"


def _labels(labels: Labels) -> str:
    if not labels:
        return ""
    inner = ",".join(
        f'{k}="{v.replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}"'
        for k, v in labels
    )
    return "{" + inner + "}"


def _series_key(series: Series) -> str:
    return json.dumps([series[0], [list(kv) for kv in series[1]]], separators=(",", ":"))


def _parse_key(key: str) -> Series:
    name, labels = json.loads(key)
    return str(name), tuple((str(k), str(v)) for k, v in labels)


def _entries(buf: bytes | mmap.mmap) -> Iterator[tuple[str, int, float]]:
    """(key, offset of the value, value) of every complete entry of a metrics file."""
    if len(buf) < _HEADER:
        return
    used = min(_U64.unpack_from(buf, 0)[0], len(buf))
    pos = _HEADER
    while pos + 4 <= used:
        (n,) = _U32.unpack_from(buf, pos)
        key_end = pos + 4 + n
        value_at = (key_end + 7) & ~7
        if value_at + 8 > used:
            return
        key = bytes(buf[pos + 4 : key_end]).decode("utf-8")
        yield key, value_at, _F64.unpack_from(buf, value_at)[0]
        pos = value_at + 8


def read_metrics_file(path: Path) -> dict[Series, float]:
    try:
        data = path.read_bytes()
    except OSError:
        return {}
    return {_parse_key(key): value for key, _, value in _entries(data)}


class SharedMetricsFile:
    """One worker process's metric values, memory-mapped, for the other workers to read.

    Layout: an 8-byte header (bytes in use), then entries of ``uint32 key length, key (JSON of
    name and labels), zero padding to 8 bytes, float64 value``. Only the owning process writes,
    from its event-loop thread: a new entry is complete before the header counts it, and a value
    is one aligned 8-byte store, so readers (plain ``read()`` of the file) never see half an entry.
    The file survives its worker: a worker forked again into the same slot continues its counts.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            size = os.fstat(fd).st_size
            if size < _INITIAL_SIZE:
                os.ftruncate(fd, _INITIAL_SIZE)
                size = _INITIAL_SIZE
            self._map = mmap.mmap(fd, size)
        finally:
            os.close(fd)
        self._offsets: dict[str, int] = {}
        self._used: int = max(_HEADER, int(_U64.unpack_from(self._map, 0)[0]))
        self.initial: dict[Series, float] = {}
        for key, offset, value in _entries(self._map):
            self._offsets[key] = offset
            self.initial[_parse_key(key)] = value
            self._used = offset + 8

    def offset(self, key: str) -> int:
        """Where the value of ``key`` lives (a new entry is appended on first use)."""
        off = self._offsets.get(key)
        if off is not None:
            return off
        raw = key.encode("utf-8")
        start = self._used
        value_at = (start + 4 + len(raw) + 7) & ~7
        end = value_at + 8
        if end > len(self._map):
            self._map.resize(max(2 * len(self._map), end))
        self._map[start : start + 4] = _U32.pack(len(raw))
        self._map[start + 4 : start + 4 + len(raw)] = raw
        self._map[start + 4 + len(raw) : value_at] = b"\0" * (value_at - start - 4 - len(raw))
        _F64.pack_into(self._map, value_at, 0.0)
        _U64.pack_into(self._map, 0, end)  # publish the entry last
        self._used = end
        self._offsets[key] = value_at
        return value_at

    def write(self, offset: int, value: float) -> None:
        _F64.pack_into(self._map, offset, value)

    def close(self) -> None:
        self._map.close()


class Metrics:
    """Counters and one latency histogram. Touched from the event loop thread only.

    With ``shared_dir`` (several worker processes, see :mod:`wagw_bridge.workers`) every value is
    mirrored into this worker's file in that directory, and :meth:`render`/:meth:`value` report
    the sum over all workers' files: any worker answers ``/metrics`` with the service's totals.
    """

    COUNTERS = {
        "wagw_webhook_deliveries_total": "Signed webhook deliveries accepted (stored or duplicate).",
        "wagw_webhook_rejected_total": "Webhook deliveries rejected, by reason.",
        "wagw_webhook_events_total": "Events found in accepted deliveries, by kind and outcome.",
        "wagw_internal_requests_total": "Internal API requests, by endpoint and result.",
        "wagw_db_batches_total": "Group-commit transactions.",
        "wagw_db_batched_items_total": "Work items committed through group commit.",
        "wagw_permission_check_total": "Call-permission checks with Meta before allow, by result.",
    }
    _BUCKETS: tuple[Series, ...] = (
        *((HISTOGRAM + "_bucket", (("le", f"{b:g}"),)) for b in LATENCY_BUCKETS),
        (HISTOGRAM + "_bucket", (("le", "+Inf"),)),
    )
    _SUM: Series = (HISTOGRAM + "_sum", ())
    _COUNT: Series = (HISTOGRAM + "_count", ())

    def __init__(
        self, shared_dir: str | Path | None = None, slot: int = 0, started: float | None = None
    ) -> None:
        self.started = time.time() if started is None else started
        self._values: dict[Series, float] = {}
        self._dir = Path(shared_dir) if shared_dir is not None else None
        self._file: SharedMetricsFile | None = None
        self._offsets: dict[Series, int] = {}
        if self._dir is not None:
            self._file = SharedMetricsFile(self._dir / f"worker-{slot}{_FILE_SUFFIX}")
            self._values.update(self._file.initial)

    def _add(self, series: Series, amount: float) -> None:
        value = self._values.get(series, 0.0) + amount
        self._values[series] = value
        if self._file is not None:
            off = self._offsets.get(series)
            if off is None:
                off = self._offsets[series] = self._file.offset(_series_key(series))
            self._file.write(off, value)

    def inc(self, name: str, amount: float = 1.0, **labels: str) -> None:
        self._add((name, tuple(sorted(labels.items()))), amount)

    def observe(self, seconds: float) -> None:
        self._add(self._BUCKETS[bisect.bisect_left(LATENCY_BUCKETS, seconds)], 1.0)
        self._add(self._SUM, seconds)
        self._add(self._COUNT, 1.0)

    def totals(self) -> dict[Series, float]:
        """This process's values plus every other worker's (the service's totals)."""
        out = dict(self._values)
        if self._dir is None or self._file is None:
            return out
        for path in sorted(self._dir.glob("worker-*" + _FILE_SUFFIX)):
            if path == self._file.path:
                continue
            for series, value in read_metrics_file(path).items():
                out[series] = out.get(series, 0.0) + value
        return out

    def value(self, name: str, **labels: str) -> float:
        return self.totals().get((name, tuple(sorted(labels.items()))), 0.0)

    def render(self) -> str:
        totals = self.totals()
        by_name: dict[str, list[tuple[Labels, float]]] = {}
        for (name, labels), value in totals.items():
            by_name.setdefault(name, []).append((labels, value))
        lines: list[str] = []
        for name, help_text in self.COUNTERS.items():
            lines.append(f"# HELP {name} {help_text}")
            lines.append(f"# TYPE {name} counter")
            for labels, value in sorted(by_name.get(name, [])):
                lines.append(f"{name}{_labels(labels)} {value:g}")
        lines.append(f"# HELP {HISTOGRAM} Time from request start to response for POST /webhook.")
        lines.append(f"# TYPE {HISTOGRAM} histogram")
        cumulative = 0
        for series in self._BUCKETS:
            cumulative += int(totals.get(series, 0))
            lines.append(f"{series[0]}{_labels(series[1])} {cumulative}")
        lines.append(f"{HISTOGRAM}_sum {totals.get(self._SUM, 0.0):.6f}")
        lines.append(f"{HISTOGRAM}_count {int(totals.get(self._COUNT, 0))}")
        lines.append("# HELP wagw_process_start_time_seconds Start time of the service.")
        lines.append("# TYPE wagw_process_start_time_seconds gauge")
        lines.append(f"wagw_process_start_time_seconds {self.started:.3f}")
        return "\n".join(lines) + "\n"

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
