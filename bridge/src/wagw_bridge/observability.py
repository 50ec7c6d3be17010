"""Pseudonyms, JSON-lines logging and Prometheus metrics (prometheus_client)."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client import values as prometheus_values
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

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
START_TIME = "wagw_process_start_time_seconds"

# The service's counters: name, help, label names (prometheus_client adds "_total").
COUNTERS: dict[str, tuple[str, tuple[str, ...]]] = {
    "wagw_webhook_deliveries": (
        "Signed webhook deliveries accepted (stored or duplicate).",
        ("result",),
    ),
    "wagw_webhook_rejected": ("Webhook deliveries rejected, by reason.", ("reason",)),
    "wagw_webhook_events": (
        "Events found in accepted deliveries, by kind and outcome.",
        ("kind", "outcome"),
    ),
    "wagw_internal_requests": (
        "Internal API requests, by endpoint and result.",
        ("endpoint", "result"),
    ),
    "wagw_db_batches": ("Group-commit transactions.", ()),
    "wagw_db_batched_items": ("Work items committed through group commit.", ()),
    "wagw_permission_check": (
        "Call-permission checks with Meta before allow, by result and source (cache or meta).",
        ("result", "source"),
    ),
}

# A counter's _created sample is the time its process first counted: with several workers
# (forked again after a crash) it says nothing about the service; the start time says it once.
prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]


class _StartTime(Collector):
    """The service's start time (the supervisor's, in every worker), as one gauge."""

    def __init__(self, started: float) -> None:
        self.started = started

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(START_TIME, "Start time of the service.", value=self.started)


def shared_totals(shared_dir: str | Path, started: float) -> CollectorRegistry:
    """A registry that reports the sum over every process's files in ``shared_dir``
    (prometheus_client's multiprocess mode), without counting anything itself."""
    registry = CollectorRegistry(auto_describe=False)
    MultiProcessCollector(registry, path=str(shared_dir))  # type: ignore[no-untyped-call]
    registry.register(_StartTime(started))
    return registry


class Metrics:
    """The bridge's counters and its webhook latency histogram, with prometheus_client.

    Alone (``shared_dir`` None) the values live in this process. With ``shared_dir`` (several
    worker processes, see :mod:`wagw_bridge.workers`) prometheus_client's multiprocess mode
    keeps each process's values in memory-mapped files there (named by process ID), and
    :meth:`render`/:meth:`value` report the sum over all files: any worker answers ``/metrics``
    with the service's totals, and a worker forked again after a crash adds to what its
    predecessor counted. Multiprocess mode is chosen for the whole process (prometheus_client
    reads it when a labelled value is first used), so it is meant for a forked worker.
    """

    def __init__(self, shared_dir: str | Path | None = None, started: float | None = None) -> None:
        self.started = time.time() if started is None else started
        if shared_dir is not None:
            # prometheus_client picks the value class from PROMETHEUS_MULTIPROC_DIR when it is
            # imported; a worker learns its directory after the fork, so it switches here,
            # before its first metric exists.
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(shared_dir)
            prometheus_values.ValueClass = prometheus_values.MultiProcessValue()  # type: ignore[no-untyped-call]
        self._own = CollectorRegistry(auto_describe=False)
        self._counters = {
            name + "_total": Counter(name, help_text, labels, registry=self._own)
            for name, (help_text, labels) in COUNTERS.items()
        }
        self._children: dict[tuple[str, ...], Counter] = {}
        self._histogram = Histogram(
            HISTOGRAM,
            "Time from request start to response for POST /webhook.",
            buckets=LATENCY_BUCKETS,
            registry=self._own,
        )
        if shared_dir is None:
            self._own.register(_StartTime(self.started))
            self.registry = self._own
        else:
            self.registry = shared_totals(shared_dir, self.started)

    def inc(self, name: str, amount: float = 1.0, **labels: str) -> None:
        # The labelled child, found once: prometheus_client's labels() checks and sorts the
        # names under a lock at every call, which cost more than the increment itself.
        key = (name, *labels.values())
        child = self._children.get(key)
        if child is None:
            counter = self._counters[name]
            child = self._children[key] = counter.labels(**labels) if labels else counter
        child.inc(amount)

    def observe(self, seconds: float) -> None:
        self._histogram.observe(seconds)

    def value(self, name: str, **labels: str) -> float:
        """A sample's value over the whole service (0 when it was never counted)."""
        return self.registry.get_sample_value(name, labels) or 0.0

    def render(self) -> str:
        return generate_latest(self.registry).decode("utf-8")

    def close(self) -> None:
        if hasattr(prometheus_values.ValueClass, "close_all_files"):
            prometheus_values.ValueClass.close_all_files()
