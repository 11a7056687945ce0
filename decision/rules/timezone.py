"""The person's own time zone, shared by eligibility (`local_hour`) and
pressure (quiet hours)."""

from __future__ import annotations

import functools
from datetime import datetime, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from decision.domain import Profile


class BadTimezone(ValueError):
    """The profile names a time zone that is not a known IANA name."""


@functools.lru_cache(maxsize=1024)
def _zone(name: str) -> ZoneInfo | None:
    # Unknown names are cached too (as None): a bad value on a hot profile
    # must not cost a filesystem lookup per request.
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError, OSError):
        return None


def person_zone(profile: Profile) -> ZoneInfo | timezone:
    """The zone of the profile's `timezone` attribute, UTC when absent.
    Raises BadTimezone when the attribute is present but unusable."""
    raw = profile.attributes.get("timezone")
    if raw is None or raw == "":
        return timezone.utc
    if not isinstance(raw, str):
        raise BadTimezone(repr(raw))
    zone = _zone(raw.strip())
    if zone is None:
        raise BadTimezone(repr(raw))
    return zone


def local_time(profile: Profile, now_ms: int) -> datetime:
    """`now` in the person's zone. Raises BadTimezone."""
    return datetime.fromtimestamp(now_ms / 1000, person_zone(profile))
