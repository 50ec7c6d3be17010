"""Routing table: which phones or PBX extensions serve a WhatsApp business number right now.

File format (YAML or JSON)::

    timezone: Europe/Berlin            # default for every number
    numbers:
      "+4930123456":                   # the WhatsApp business number (E.164)
        destinations: ["phone:empfang"]  # outside every window (may be empty: nobody answers)
        windows:                         # first match wins
          - days: [mon, tue, wed, thu, fri]
            start: "08:00"
            end: "18:00"                 # end before start spans midnight
            destinations: ["phone:empfang", "pbx:21"]

A destination is ``phone:<name>`` (a phone registered to the gateway) or ``pbx:<extension>``
(the business's IP-PBX): a WhatsApp call never rings the PSTN (Meta's terms), so a phone
number is refused when the table is loaded. The text form joins them with ``&``; Asterisk
rings only those it knows from the inventory.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime, time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

from .observability import InvalidNumber, normalize_e164

# phone:<name> or pbx:<extension>; the Ansible filter wagw_destination_errors states the same
# rule for the inventory (plugins/filter/wagw.py).
DESTINATION_RE = re.compile(r"^(phone:[a-z][a-z0-9_]{0,31}|pbx:(0|[1-9*][0-9*]{0,7}))$")

DAYS = {"mon": 0, "tue": 1, "wed": 2, "thu": 3, "fri": 4, "sat": 5, "sun": 6}


class RoutesError(Exception):
    pass


@dataclass(frozen=True)
class Window:
    days: frozenset[int]
    start: time
    end: time
    destinations: tuple[str, ...]

    def matches(self, local: datetime) -> bool:
        t = local.time().replace(tzinfo=None)
        wd = local.weekday()
        if self.start <= self.end:
            return wd in self.days and self.start <= t < self.end
        # spans midnight: the part after midnight belongs to the previous day's window
        if t >= self.start:
            return wd in self.days
        return t < self.end and (wd - 1) % 7 in self.days


@dataclass(frozen=True)
class NumberRoute:
    number: str
    tz: ZoneInfo
    destinations: tuple[str, ...]
    windows: tuple[Window, ...]

    def resolve(self, now: datetime) -> tuple[tuple[str, ...], str]:
        local = now.astimezone(self.tz)
        for i, w in enumerate(self.windows):
            if w.matches(local):
                return w.destinations, f"window:{i}"
        return self.destinations, "default"


def _time(value: Any, where: str) -> time:
    try:
        hh, mm = str(value).split(":")
        if hh == "24" and mm == "00":
            return time(23, 59, 59, 999999)
        return time(int(hh), int(mm))
    except (ValueError, TypeError) as exc:
        raise RoutesError(f"{where}: time must be HH:MM, got {value!r}") from exc


def _dests(value: Any, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str | int) for v in value):
        raise RoutesError(f"{where}: destinations must be a list of strings")
    out = tuple(str(v).strip() for v in value)
    for d in out:
        if not DESTINATION_RE.match(d):
            raise RoutesError(
                f"{where}: invalid destination {d!r}: phone:<name> or pbx:<extension>, "
                "never a phone number (no PSTN on a WhatsApp call)"
            )
    return out


def _zone(name: Any, where: str) -> ZoneInfo:
    try:
        return ZoneInfo(str(name))
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise RoutesError(f"{where}: unknown timezone {name!r}") from exc


class RoutingTable:
    def __init__(self, routes: dict[str, NumberRoute], source: str = "") -> None:
        self.routes = routes
        self.source = source

    @classmethod
    def empty(cls) -> RoutingTable:
        return cls({}, "")

    @classmethod
    def load(cls, path: str, default_tz: str = "Europe/Berlin") -> RoutingTable:
        try:
            text = Path(path).read_text(encoding="utf-8")
            data = json.loads(text) if path.endswith(".json") else yaml.safe_load(text)
        except (OSError, ValueError, yaml.YAMLError) as exc:
            raise RoutesError(f"cannot read routes file {path}: {exc}") from exc
        return cls.from_data(data or {}, default_tz, path)

    @classmethod
    def from_data(
        cls, data: Any, default_tz: str = "Europe/Berlin", source: str = ""
    ) -> RoutingTable:
        if not isinstance(data, dict):
            raise RoutesError("routes: top level must be a mapping")
        tz = _zone(data.get("timezone", default_tz), "routes.timezone")
        numbers = data.get("numbers", {})
        if not isinstance(numbers, dict):
            raise RoutesError("routes.numbers must be a mapping")
        routes: dict[str, NumberRoute] = {}
        for raw_number, spec in numbers.items():
            where = f"routes.numbers[{raw_number}]"
            try:
                number = normalize_e164(str(raw_number))
            except InvalidNumber as exc:
                raise RoutesError(f"{where}: not an E.164 number") from exc
            if isinstance(spec, list):
                spec = {"destinations": spec}  # noqa: PLW2901
            if not isinstance(spec, dict):
                raise RoutesError(f"{where}: must be a mapping or a list of destinations")
            windows = []
            for j, w in enumerate(spec.get("windows") or []):
                wwhere = f"{where}.windows[{j}]"
                if not isinstance(w, dict):
                    raise RoutesError(f"{wwhere}: must be a mapping")
                days_raw = w.get("days", list(DAYS))
                try:
                    days = frozenset(DAYS[str(d).lower()[:3]] for d in days_raw)
                except KeyError as exc:
                    raise RoutesError(f"{wwhere}: unknown day {exc}") from exc
                windows.append(
                    Window(
                        days,
                        _time(w.get("start", "00:00"), wwhere),
                        _time(w.get("end", "24:00"), wwhere),
                        _dests(w.get("destinations"), wwhere),
                    )
                )
            routes[number] = NumberRoute(
                number,
                _zone(spec["timezone"], where) if "timezone" in spec else tz,
                _dests(spec.get("destinations"), where),
                tuple(windows),
            )
        return cls(routes, source)

    def lookup(self, number: str, now: datetime) -> tuple[tuple[str, ...], str] | None:
        route = self.routes.get(number)
        if route is None:
            return None
        return route.resolve(now)
