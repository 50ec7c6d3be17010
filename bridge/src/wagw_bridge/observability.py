"""Pseudonyms, JSON-lines logging and Prometheus metrics (text format written by hand)."""

from __future__ import annotations

import bisect
import hashlib
import hmac
import json
import logging
import re
import sys
import time
from collections import defaultdict
from typing import Any

E164_RE = re.compile(r"^\+[1-9][0-9]{6,14}$")


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


class Pseudonymizer:
    """Keyed hash (HMAC-SHA256) of E.164 numbers.

    The full hex digest is the ``subject_hash`` column of every table; logs show its first
    16 hex characters. Given the key, anyone holding a number can recompute the hash (that is
    how kept consent proof is matched after an erasure); without the key it is not reversible.
    """

    def __init__(self, key: bytes) -> None:
        self._key = key

    def subject_hash(self, e164: str) -> str:
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


def _labels(labels: tuple[tuple[str, str], ...]) -> str:
    if not labels:
        return ""
    inner = ",".join(
        f'{k}="{v.replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}"'
        for k, v in labels
    )
    return "{" + inner + "}"


class Metrics:
    """Counters and one latency histogram. Touched from the event loop thread only."""

    COUNTERS = {
        "wagw_webhook_deliveries_total": "Signed webhook deliveries accepted (stored or duplicate).",
        "wagw_webhook_rejected_total": "Webhook deliveries rejected, by reason.",
        "wagw_webhook_events_total": "Events found in accepted deliveries, by kind and outcome.",
        "wagw_internal_requests_total": "Internal API requests, by endpoint and result.",
        "wagw_db_batches_total": "Group-commit transactions.",
        "wagw_db_batched_items_total": "Work items committed through group commit.",
    }

    def __init__(self) -> None:
        self.started = time.time()
        self.counters: dict[str, dict[tuple[tuple[str, str], ...], float]] = defaultdict(
            lambda: defaultdict(float)
        )
        self._hist_counts = [0] * (len(LATENCY_BUCKETS) + 1)
        self._hist_sum = 0.0
        self._hist_n = 0

    def inc(self, name: str, amount: float = 1.0, **labels: str) -> None:
        self.counters[name][tuple(sorted(labels.items()))] += amount

    def value(self, name: str, **labels: str) -> float:
        return self.counters.get(name, {}).get(tuple(sorted(labels.items())), 0.0)

    def observe(self, seconds: float) -> None:
        self._hist_counts[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self._hist_sum += seconds
        self._hist_n += 1

    def render(self) -> str:
        lines: list[str] = []
        for name, help_text in self.COUNTERS.items():
            lines.append(f"# HELP {name} {help_text}")
            lines.append(f"# TYPE {name} counter")
            for labels, value in sorted(self.counters.get(name, {}).items()):
                lines.append(f"{name}{_labels(labels)} {value:g}")
        hname = "wagw_webhook_duration_seconds"
        lines.append(f"# HELP {hname} Time from request start to response for POST /webhook.")
        lines.append(f"# TYPE {hname} histogram")
        cumulative = 0
        for bound, count in zip(LATENCY_BUCKETS, self._hist_counts, strict=False):
            cumulative += count
            lines.append(f'{hname}_bucket{{le="{bound:g}"}} {cumulative}')
        lines.append(f'{hname}_bucket{{le="+Inf"}} {self._hist_n}')
        lines.append(f"{hname}_sum {self._hist_sum:.6f}")
        lines.append(f"{hname}_count {self._hist_n}")
        lines.append("# HELP wagw_process_start_time_seconds Start time of the process.")
        lines.append("# TYPE wagw_process_start_time_seconds gauge")
        lines.append(f"wagw_process_start_time_seconds {self.started:.3f}")
        return "\n".join(lines) + "\n"
