"""The functions marketers call from eligibility rules.

Each helper exists twice: a pure function over the service's own `Event`
tuples (what tests and the fast path use), and a CEL-facing wrapper bound to
one request (its clock and its events). The wrappers accept `events` in two
forms:

* the *handle* (`EVENTS_HANDLE`): the rule only passes `events` straight to
  helpers, so the activation never converts the events into CEL values and
  the helper reads the request's `Event` tuple directly. Converting 30 events
  into CEL maps costs ~165 us with the Rust bindings, and each helper call
  would convert them back again (~30 us); the handle makes a helper call
  cost well under a microsecond of overhead;
* a CEL list of event maps (`events.filter(e, e.channel == "web")`, or the
  whole `events` when the rule also reads them natively): the maps are read
  back into `Event`s first.

Times are epoch milliseconds; windows are CEL durations.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Iterable, Sequence

from decision.domain import Event

# What `days_since` answers when the person has no such event. A large number
# rather than -1, so that the two usual tests read right without a special
# case: `days_since(events, "purchase") > 30` is true and
# `days_since(events, "purchase") < 7` is false for someone who never bought.
NEVER_DAYS = 1_000_000

# Event types that count as buying an item for `purchased_since_abandon`.
PURCHASE_TYPES = frozenset({"purchase", "purchase_in_store", "order"})
ABANDON_TYPE = "cart_abandoned"

# Bound to `events` in the activation when the rule only hands `events` to
# helpers (see the module docstring).
EVENTS_HANDLE = b"nba:events"

DAY_MS = 86_400_000
_MS = timedelta(milliseconds=1)


# ---------------------------------------------------------------------------
# Pure functions over Event tuples (sorted by time, oldest first, as the
# profile store returns them; nothing here relies on that order for
# correctness).


def has_event(events: Sequence[Event], type_: str, window_ms: int, now_ms: int) -> bool:
    since = now_ms - window_ms
    return any(e.type == type_ and e.at_ms >= since for e in events)


def has_event_for(events: Sequence[Event], type_: str, item: str, window_ms: int, now_ms: int) -> bool:
    since = now_ms - window_ms
    return any(e.type == type_ and e.item == item and e.at_ms >= since for e in events)


def count_events(events: Sequence[Event], type_: str, window_ms: int, now_ms: int) -> int:
    since = now_ms - window_ms
    return sum(1 for e in events if e.type == type_ and e.at_ms >= since)


def _latest(events: Iterable[Event], type_: str) -> Event | None:
    best: Event | None = None
    for e in events:
        if e.type == type_ and (best is None or e.at_ms >= best.at_ms):
            best = e
    return best


def days_since(events: Sequence[Event], type_: str, now_ms: int) -> int:
    """Whole days since the latest event of that type (0 today or for an
    event stamped in the future), `NEVER_DAYS` when there is none."""
    last = _latest(events, type_)
    if last is None:
        return NEVER_DAYS
    return max(0, (now_ms - last.at_ms) // DAY_MS)


def last_event_item(events: Sequence[Event], type_: str) -> str:
    """Item of the latest event of that type; "" when none or it has no item."""
    last = _latest(events, type_)
    return (last.item or "") if last is not None else ""


def purchased_since_abandon(events: Sequence[Event]) -> bool:
    """True when the item of the latest `cart_abandoned` event was bought
    (any of PURCHASE_TYPES, on any channel: web, app, store, phone) at or after
    the abandonment. An abandonment without an item counts any purchase after
    it: when in doubt, do not remind someone who has bought since."""
    abandon = _latest(events, ABANDON_TYPE)
    if abandon is None:
        return False
    return any(
        e.type in PURCHASE_TYPES and e.at_ms >= abandon.at_ms and (abandon.item is None or e.item == abandon.item)
        for e in events
    )


def in_segment(segments: Iterable[str], name: str) -> bool:
    return name in segments


# ---------------------------------------------------------------------------
# CEL-facing wrappers, bound to one request.


class HelperError(TypeError):
    """A helper called with arguments of the wrong type."""


def _window_ms(fn: str, d: Any) -> int:
    if isinstance(d, timedelta):
        return d // _MS
    raise HelperError(f"{fn}: the window must be a duration, e.g. duration(\"168h\"), got {type(d).__name__}")


def _str(fn: str, what: str, v: Any) -> str:
    if isinstance(v, str):
        return v
    raise HelperError(f"{fn}: {what} must be a string, got {type(v).__name__}")


def _event_from_map(fn: str, m: Any) -> Event:
    try:
        at = m["at"]
        at_ms = int(at.timestamp() * 1000) if isinstance(at, datetime) else int(at)
        value = m.get("value")
        return Event(
            type=str(m["type"]),
            at_ms=at_ms,
            item=None if m.get("item") is None else str(m["item"]),
            channel=None if m.get("channel") is None else str(m["channel"]),
            value=None if value is None else float(value),
        )
    except (KeyError, TypeError, ValueError, AttributeError):
        raise HelperError(f"{fn}: events must be event maps with at least 'type' and 'at'") from None


class BoundHelpers:
    """The helpers of one request: `now` and the person's events are fixed."""

    __slots__ = ("now_ms", "events", "_by_type")

    def __init__(self, now_ms: int, events: tuple[Event, ...]) -> None:
        self.now_ms = now_ms
        self.events = events
        self._by_type: dict[str, list[Event]] | None = None

    def _events(self, fn: str, arg: Any, *types: str) -> Sequence[Event]:
        """The events a helper looks at. With the handle, only those of the
        given types (indexed once per request); the pure functions filter by
        type anyway, so handing them fewer events changes nothing but time."""
        if isinstance(arg, bytes) and arg == EVENTS_HANDLE:
            by_type = self._by_type
            if by_type is None:
                by_type = self._by_type = {}
                for e in self.events:
                    by_type.setdefault(e.type, []).append(e)
            if len(types) == 1:
                return by_type.get(types[0], ())
            return [e for t in types for e in by_type.get(t, ())]
        if isinstance(arg, (list, tuple)):
            return [_event_from_map(fn, m) for m in arg]
        raise HelperError(
            f"{fn}: the first argument must be a list of events (e.g. `events`), got {type(arg).__name__}")

    def has_event(self, events: Any, type_: Any, window: Any) -> bool:
        fn = "has_event"
        t = _str(fn, "type", type_)
        return has_event(self._events(fn, events, t), t, _window_ms(fn, window), self.now_ms)

    def has_event_for(self, events: Any, type_: Any, item: Any, window: Any) -> bool:
        fn = "has_event_for"
        t = _str(fn, "type", type_)
        return has_event_for(self._events(fn, events, t), t, _str(fn, "item", item),
                             _window_ms(fn, window), self.now_ms)

    def count_events(self, events: Any, type_: Any, window: Any) -> int:
        fn = "count_events"
        t = _str(fn, "type", type_)
        return count_events(self._events(fn, events, t), t, _window_ms(fn, window), self.now_ms)

    def days_since(self, events: Any, type_: Any) -> int:
        fn = "days_since"
        t = _str(fn, "type", type_)
        return days_since(self._events(fn, events, t), t, self.now_ms)

    def last_event_item(self, events: Any, type_: Any) -> str:
        fn = "last_event_item"
        t = _str(fn, "type", type_)
        return last_event_item(self._events(fn, events, t), t)

    def purchased_since_abandon(self, events: Any) -> bool:
        return purchased_since_abandon(self._events("purchased_since_abandon", events, ABANDON_TYPE, *PURCHASE_TYPES))

    def in_segment(self, segments: Any, name: Any) -> bool:
        fn = "in_segment"
        if not isinstance(segments, (list, tuple)):
            raise HelperError(f"{fn}: the first argument must be the list of segments (`segments`)")
        return in_segment(segments, _str(fn, "name", name))


# name -> how many arguments; the names are what rules call.
HELPERS: dict[str, int] = {
    "has_event": 3,
    "has_event_for": 4,
    "count_events": 3,
    "days_since": 2,
    "last_event_item": 2,
    "purchased_since_abandon": 1,
    "in_segment": 2,
}

# Helpers whose first argument is a list of events (may receive the handle).
EVENT_HELPERS = frozenset(HELPERS) - {"in_segment"}
