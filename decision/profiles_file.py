"""Profiles JSONL: one person per line, as `nba profiles load` reads it.

    {"id": "pid:sarah",                      # person key: <type>:<id>
     "attributes": {"age": 33, "country": "US", "tier": "premium", "timezone": "America/New_York"},
     "segments": ["paying_user"]  or  {"paying_user": "2026-01-05T10:00:00Z"},
     "consent": {"marketing": "granted", "channel:email": "granted", "join": "granted"},
     "links": ["cookie:abc123", "device:tv-42"],   # identities that belong to this person
     "events": [{"type": "purchase", "item": "P1", "channel": "store",
                 "at": "2026-11-20T11:30:00Z"  or  "ago": "2h"}]}

Relative times ("ago") make example files stay meaningful whatever day they
are loaded. Errors name the file, line and field.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from pathlib import Path
from types import MappingProxyType
from typing import Any, Iterator

from decision.domain import Event, IdentityType
from decision.store.redis_store import ProfileDocument

PERSON_KEY_RE = re.compile(r"^(%s):[A-Za-z0-9._:@+=-]{1,128}$" % "|".join(t.value for t in IdentityType))
DURATION_RE = re.compile(r"^(\d+(?:\.\d+)?)\s*(s|m|h|d|w)$")
_UNIT_MS = {"s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}
_KNOWN = {"id", "attributes", "segments", "consent", "links", "events"}


class ProfileFileError(ValueError):
    pass


def _time(v: Any, now_ms: int, where: str) -> int:
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return int(v)
    if isinstance(v, str):
        try:
            dt = datetime.fromisoformat(v.replace("Z", "+00:00"))
        except ValueError:
            raise ProfileFileError(f"{where}: not an ISO time: {v!r}") from None
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=timezone.utc)
        return int(dt.timestamp() * 1000)
    raise ProfileFileError(f"{where}: expected an ISO time or epoch ms")


def _ago(v: Any, now_ms: int, where: str) -> int:
    m = DURATION_RE.match(str(v).strip())
    if not m:
        raise ProfileFileError(f"{where}: expected a duration like 30m, 2h, 3d: {v!r}")
    return now_ms - int(float(m.group(1)) * _UNIT_MS[m.group(2)])


def parse_line(obj: Any, now_ms: int, where: str) -> ProfileDocument:
    if not isinstance(obj, dict):
        raise ProfileFileError(f"{where}: expected a JSON object")
    unknown = set(obj) - _KNOWN
    if unknown:
        raise ProfileFileError(f"{where}: unknown field(s) {', '.join(sorted(unknown))} (known: {', '.join(sorted(_KNOWN))})")
    key = obj.get("id")
    if not isinstance(key, str) or not PERSON_KEY_RE.match(key):
        raise ProfileFileError(f"{where}: id: expected a person key like pid:42 or cookie:abc, got {key!r}")
    attributes = obj.get("attributes", {})
    if not isinstance(attributes, dict):
        raise ProfileFileError(f"{where}: attributes: expected an object")
    segs = obj.get("segments", [])
    if isinstance(segs, list):
        segments = {str(s): now_ms for s in segs}
    elif isinstance(segs, dict):
        segments = {str(s): _time(t, now_ms, f"{where}: segments.{s}") for s, t in segs.items()}
    else:
        raise ProfileFileError(f"{where}: segments: expected a list or an object")
    consent = obj.get("consent", {})
    if not isinstance(consent, dict) or not all(isinstance(v, str) for v in consent.values()):
        raise ProfileFileError(f"{where}: consent: expected an object of strings (granted/denied)")
    links = obj.get("links", [])
    if not isinstance(links, list) or not all(isinstance(x, str) and PERSON_KEY_RE.match(x) for x in links):
        raise ProfileFileError(f"{where}: links: expected a list of person keys like cookie:abc")
    events = []
    for i, e in enumerate(obj.get("events", [])):
        at = f"{where}: events[{i}]"
        if not isinstance(e, dict) or not isinstance(e.get("type"), str):
            raise ProfileFileError(f"{at}: expected an object with a string type")
        if "at" in e:
            at_ms = _time(e["at"], now_ms, f"{at}.at")
        elif "ago" in e:
            at_ms = _ago(e["ago"], now_ms, f"{at}.ago")
        else:
            at_ms = now_ms
        value = e.get("value")
        if value is not None and not isinstance(value, (int, float)):
            raise ProfileFileError(f"{at}.value: expected a number")
        events.append(Event(e["type"], at_ms, e.get("item"), e.get("channel"), value))
    return ProfileDocument(key, MappingProxyType(attributes), MappingProxyType(segments),
                           MappingProxyType(consent), tuple(links), tuple(events))


def read_profiles(path: Path, now_ms: int) -> Iterator[ProfileDocument]:
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            where = f"{path}:{n}"
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise ProfileFileError(f"{where}: invalid JSON: {e.msg} (column {e.colno})") from None
            yield parse_line(obj, now_ms, where)
