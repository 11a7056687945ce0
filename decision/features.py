"""Features for the policy: the person and the context (shared), and each
candidate action (offer, content, channel).

Namespaces (the bandits library maps them to VW namespaces):
  shared:  user    - profile attributes, segments, event summaries
           context - request context, local hour of week
  action:  offer, content, channel

Features never carry raw personal identifiers: identity-like attribute and
context names are dropped (see IDENTIFIER_NAMES), and free-text strings are
cut to a short categorical value.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from functools import lru_cache
from typing import Any, Mapping
from zoneinfo import ZoneInfo

from decision.catalog import Catalog
from decision.domain import Candidate, Profile, Value

# Attribute/context names never used as features: they identify a person.
IDENTIFIER_NAMES = re.compile(
    r"(^|_)(id|ids|email|e_?mail|phone|msisdn|name|first_?name|last_?name|address|street|zip|postcode|ip|ssn|iban|cookie|device)$",
    re.IGNORECASE,
)
MAX_CATEGORY_LEN = 48
EVENT_WINDOW_MS = 7 * 86_400_000


def _feature_value(v: Value) -> str | float | None:
    if isinstance(v, bool):
        return 1.0 if v else 0.0
    if isinstance(v, (int, float)):
        return float(v)
    if isinstance(v, str):
        return v[:MAX_CATEGORY_LEN]
    return None  # lists are summarised by the caller where meaningful


@lru_cache(maxsize=512)
def _zone(name: str) -> ZoneInfo | None:
    try:
        return ZoneInfo(name)
    except (ValueError, KeyError, OSError):
        return None


def local_time(profile: Profile, now_ms: int) -> datetime:
    """The person's local time (profile attribute `timezone`), UTC otherwise."""
    tz = _zone(profile.timezone) if profile.timezone else None
    return datetime.fromtimestamp(now_ms / 1000, tz or timezone.utc)


# IDENTIFIER_NAMES.search by name, memoised: the same few attribute and
# context names recur on every request, and the regex costs ~1 us a name.
_IDENTIFIERS_LIMIT = 10_000
_identifiers: dict[str, bool] = {}


def _identifier(name: str) -> bool:
    hit = _identifiers.get(name)
    if hit is None:
        if len(_identifiers) >= _IDENTIFIERS_LIMIT:
            _identifiers.clear()
        hit = _identifiers[name] = IDENTIFIER_NAMES.search(name) is not None
    return hit


def shared_features(profile: Profile, context: Mapping[str, Value], now_ms: int) -> dict[str, dict[str, Any]]:
    user: dict[str, Any] = {}
    for name, v in profile.attributes.items():
        if name == "timezone" or _identifier(name):
            continue
        fv = _feature_value(v)
        if fv is not None:
            user[name] = fv
    for seg in profile.segments:
        user[f"seg_{seg}"] = 1.0
    recent = now_ms - EVENT_WINDOW_MS
    for e in profile.events:
        if e.at_ms >= recent:
            key = f"ev7_{e.type}"
            user[key] = user.get(key, 0.0) + 1.0
    ctx: dict[str, Any] = {}
    for name, v in context.items():
        if _identifier(name):
            continue
        if isinstance(v, tuple):
            for item in v[:16]:
                ctx[f"{name}_{item[:MAX_CATEGORY_LEN]}"] = 1.0
            continue
        fv = _feature_value(v)
        if fv is not None:
            ctx[name] = fv
    weekday, hour = _weekday_hour(profile.timezone, now_ms // 1000)
    ctx["hour_of_week"] = str(weekday * 24 + hour)
    ctx["daypart"] = ("night", "morning", "afternoon", "evening")[hour // 6]
    return {"user": user, "context": ctx}


@lru_cache(maxsize=4096)
def _weekday_hour(timezone_name: str | None, second: int) -> tuple[int, int]:
    """local_time's weekday and hour, memoised by zone and whole second (zone
    offsets change on whole seconds): the requests of one second share the
    time zone arithmetic, ~3 us a request on the request path."""
    tz = _zone(timezone_name) if timezone_name else None
    local = datetime.fromtimestamp(second, tz or timezone.utc)
    return local.weekday(), local.hour


def action_features(catalog: Catalog, c: Candidate) -> Mapping[str, Mapping[str, Any]]:
    """Action features depend only on the catalog: built once per catalog
    (catalog.memo), the same mapping for equal candidates."""
    key = ("features", c)
    features = catalog.memo.get(key)
    if features is None:
        features = catalog.memo[key] = _build_action_features(catalog, c)
    return features


def _build_action_features(catalog: Catalog, c: Candidate) -> Mapping[str, Mapping[str, Any]]:
    offer = catalog.offers[c.offer_id]
    content = catalog.contents[c.content_id]
    of: dict[str, Any] = {"id": offer.id, "value": offer.value, "margin": offer.margin}
    for tag in offer.tags:
        of[f"tag_{tag}"] = 1.0
    for k, v in offer.attributes.items():
        fv = _feature_value(v)
        if fv is not None:
            of[k] = fv
    cf: dict[str, Any] = {"id": content.id}
    if content.template:
        cf["template"] = content.template
    for k, v in content.attributes.items():
        fv = _feature_value(v)
        if fv is not None:
            cf[k] = fv
    return {"offer": of, "content": cf, "channel": {"id": c.channel}}
