"""The Redis implementation of the profile store, and the profile writer API.

Reads follow store/keys.py exactly. One person = one hash tag = one pipelined
round trip for the profile, its recent events and its pressure counters.
"""

from __future__ import annotations

import json
import math
import uuid
from dataclasses import dataclass
from operator import attrgetter
from types import MappingProxyType
from typing import Any, Iterable, Mapping, Protocol, Sequence

import redis.asyncio as aioredis

from decision.domain import Event, Exposure, Profile, Value
from decision.records import loads
from decision.store import keys

# How far back the service reads events and exposures, and how many events.
EVENT_HORIZON_MS = 30 * 86_400_000
MAX_EVENTS = 256
EXPOSURE_HORIZON_MS = 31 * 86_400_000
# A person's commit lease (keys.lease) lives this long at most: the time from a
# decision's profile fetch to its commit, with a wide margin. A decision that
# dies in between holds up the person's other commits until then.
LEASE_MS = 1000


def connect(url: str, *, timeout_s: float = 1.0, max_connections: int = 64) -> aioredis.Redis:
    """An asyncio client with hiredis parsing (when installed) and str replies.

    Its pool waits (up to `timeout_s`) for a connection when all
    `max_connections` are busy: redis-py's default pool raises at once, which
    a burst of concurrent requests on this client (the request path's, with
    TLS or Cluster, see resp.hot_client) turned into degraded answers."""
    pool = aioredis.BlockingConnectionPool.from_url(
        url,
        decode_responses=True,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        max_connections=max_connections,
        timeout=timeout_s,
        health_check_interval=0,
    )
    return aioredis.Redis.from_pool(pool)


class ProfileStore(Protocol):
    async def fetch(self, person_keys: Sequence[str], now_ms: int) -> tuple[Profile, ...]:
        """Profiles of the given person keys, in order, in one round trip."""
        ...

    async def fetch_leased(self, person_keys: Sequence[str], now_ms: int,
                           lease: str) -> tuple[tuple[Profile, ...], bool]:
        """The same, taking the first person's commit lease for the decision
        `lease` in the same round trip first; whether it was taken."""
        ...


# A bare word that starts like a JSON literal ("free", "fr") or a number with a
# leading zero (zip code "01234") is no JSON: answered without the parser, whose
# failure (orjson's, then json's) costs ~3 us per value.
_LITERALS: Mapping[str, Value] = MappingProxyType({"true": True, "false": False})
_JSON_SPACE = " \t\n\r"


def parse_value(raw: str) -> Value:
    """Attribute values are JSON when they parse, plain strings otherwise."""
    first = raw[:1]
    if not first or first not in "-0123456789tfn[\"{":
        return raw
    if first in "tfn":  # true, false or null; null reads as the string "null"
        return _LITERALS.get(raw.rstrip(_JSON_SPACE), raw)
    if first == "{" or (first == "0" and raw[1:2].isdigit()):  # an object is no value either
        return raw
    try:
        v = loads(raw)
    except ValueError:
        return raw
    if isinstance(v, (bool, int, float, str)):
        return v
    if isinstance(v, list) and all(isinstance(x, str) for x in v):
        return tuple(v)
    return raw


def parse_event(member: str, score: float) -> Event | None:
    try:
        d = loads(member)
        item, channel, value = d.get("item"), d.get("channel"), d.get("value")
        return Event(
            str(d["type"]),
            int(score),
            None if item is None else str(item),
            None if channel is None else str(channel),
            None if value is None else float(value),
        )
    except (ValueError, KeyError, TypeError, AttributeError, OverflowError):  # OverflowError: a score of +-inf
        return None  # a malformed upstream event must not fail the decision


def parse_exposure(member: str, score: float) -> Exposure | None:
    parts = member.split("|")
    if len(parts) != 3 or not math.isfinite(score):
        return None
    return Exposure(at_ms=int(score), decision_id=parts[0], offer_id=parts[1], channel=parts[2])


_AT_MS = attrgetter("at_ms")


def build_profile(pk: str, fields: Mapping[str, str], events: Iterable[tuple[str, float]],
                  exposures: Iterable[tuple[str, float]], rewards: Mapping[str, str]) -> Profile:
    attributes: dict[str, Value] = {}
    segments: dict[str, int] = {}
    consent: dict[str, str] = {}
    link = None
    for name, raw in fields.items():
        kind, field = name[:2], name[2:]  # the prefixes are two characters: "a:", "s:", "c:"
        if kind == keys.ATTR:
            attributes[field] = parse_value(raw)
        elif kind == keys.SEGMENT:
            try:
                segments[field] = int(float(raw))
            except ValueError:
                segments[field] = 0
        elif kind == keys.CONSENT:
            consent[field] = raw
        elif name == keys.LINK:
            link = raw or None
    positive: dict[str, int] = {}
    for offer, raw in rewards.items():
        try:
            positive[offer] = int(float(raw))
        except ValueError:
            continue
    evs = [e for m, s in events if (e := parse_event(m, s)) is not None]
    evs.sort(key=_AT_MS)  # oldest first; stable, so events of one millisecond keep Redis's order
    return Profile(
        key=pk,
        found=bool(fields) or bool(evs),
        attributes=MappingProxyType(attributes),
        segments=MappingProxyType(segments),
        consent=MappingProxyType(consent),
        link=link,
        events=tuple(evs),
        exposures=tuple([x for m, s in exposures if (x := parse_exposure(m, s)) is not None]),
        positive_rewards=MappingProxyType(positive),
    )


@dataclass
class RedisProfileStore:
    redis: aioredis.Redis
    event_horizon_ms: int = EVENT_HORIZON_MS
    max_events: int = MAX_EVENTS
    exposure_horizon_ms: int = EXPOSURE_HORIZON_MS

    async def fetch(self, person_keys: Sequence[str], now_ms: int) -> tuple[Profile, ...]:
        return (await self._fetch(person_keys, now_ms, None))[0]

    async def fetch_leased(self, person_keys: Sequence[str], now_ms: int,
                           lease: str) -> tuple[tuple[Profile, ...], bool]:
        # The lease is set before the reads: an exposure another decision
        # writes after it waits for the lease (pressure_reserve.lua), one
        # written before it is in what the reads return.
        return await self._fetch(person_keys, now_ms, lease)

    async def _fetch(self, person_keys: Sequence[str], now_ms: int,
                     lease: str | None) -> tuple[tuple[Profile, ...], bool]:
        # transaction=False: a plain pipeline, one round trip. On Redis Cluster
        # the keys of one person share a slot; different persons are sent to
        # their nodes by the cluster client.
        pipe = self.redis.pipeline(transaction=False)
        if lease is not None:
            pipe.execute_command("SET", keys.lease(person_keys[0]), lease, "NX", "PX", LEASE_MS)
        for pk in person_keys:
            pipe.hgetall(keys.profile(pk))
            pipe.zrevrangebyscore(keys.events(pk), "+inf", now_ms - self.event_horizon_ms,
                                  start=0, num=self.max_events, withscores=True)
            pipe.zrangebyscore(keys.exposures(pk), now_ms - self.exposure_horizon_ms, "+inf", withscores=True)
            pipe.hgetall(keys.positive_rewards(pk))
        replies = await pipe.execute()
        leased = False
        if lease is not None:
            leased = bool(replies[0])  # "OK" / True, or None when another decision holds it
            replies = replies[1:]
        return tuple(
            build_profile(pk, *replies[4 * i: 4 * i + 4]) for i, pk in enumerate(person_keys)
        ), leased


# ---------------------------------------------------------------------------
# Writer API: what upstream systems (a CDP, stream processors) call, and what
# `nba profiles load` uses.


def _encode_value(v: Any) -> str:
    if isinstance(v, str):
        # A string that would read back as another type is stored quoted.
        return v if parse_value(v) == v else json.dumps(v)
    return json.dumps(v)


@dataclass(frozen=True, slots=True)
class ProfileDocument:
    """One person as upstream writes it (a line of a profiles JSONL file)."""

    key: str
    attributes: Mapping[str, Any]
    segments: Mapping[str, int]
    consent: Mapping[str, str]
    links: tuple[str, ...]
    events: tuple[Event, ...]


class ProfileWriter:
    """Writes profiles following the key schema; replaces a person's upstream
    data (attributes, segments, consent, events) and never touches the
    service's own counters."""

    def __init__(self, redis: aioredis.Redis, *, event_horizon_ms: int = EVENT_HORIZON_MS) -> None:
        self.redis = redis
        self.event_horizon_ms = event_horizon_ms

    async def write(self, doc: ProfileDocument, *, replace: bool = True) -> None:
        pk = doc.key
        fields: dict[str, str] = {}
        fields.update({keys.ATTR + k: _encode_value(v) for k, v in doc.attributes.items()})
        fields.update({keys.SEGMENT + k: str(int(v)) for k, v in doc.segments.items()})
        fields.update({keys.CONSENT + k: str(v) for k, v in doc.consent.items()})
        pipe = self.redis.pipeline(transaction=True)  # one person, one slot: MULTI is cluster-safe
        if replace:
            pipe.delete(keys.profile(pk), keys.events(pk))
        if fields:
            pipe.hset(keys.profile(pk), mapping=fields)
        if doc.events:
            pipe.zadd(keys.events(pk), {event_member(e): e.at_ms for e in doc.events})
        await pipe.execute()
        for other in doc.links:
            await self.link(other, pk)

    async def link(self, identity_key: str, person_key: str) -> None:
        # The link and its reverse index ({p:<person>}:ids, read by Forget) are
        # on two slots: two commands, not one transaction. A crash in between
        # leaves a link without its index entry; `nba forget --scan` finds it.
        previous = await self.redis.hget(keys.profile(identity_key), keys.LINK)
        pipe = self.redis.pipeline(transaction=False)
        pipe.hset(keys.profile(identity_key), keys.LINK, person_key)
        pipe.sadd(keys.identities(person_key), identity_key)
        if previous and previous != person_key:
            pipe.srem(keys.identities(previous), identity_key)
        await pipe.execute()

    async def add_event(self, pk: str, event: Event, *, now_ms: int) -> None:
        pipe = self.redis.pipeline(transaction=True)
        pipe.zadd(keys.events(pk), {event_member(event): event.at_ms})
        pipe.zremrangebyscore(keys.events(pk), "-inf", now_ms - self.event_horizon_ms)
        await pipe.execute()

    async def set_segment(self, pk: str, segment: str, since_ms: int) -> None:
        await self.redis.hset(keys.profile(pk), keys.SEGMENT + segment, str(since_ms))


def event_member(e: Event, event_id: str | None = None) -> str:
    # The member must be unique per event: two identical purchases at the same
    # millisecond are two events, hence the id.
    d: dict[str, Any] = {"id": event_id or uuid.uuid4().hex[:16], "type": e.type}
    if e.item is not None:
        d["item"] = e.item
    if e.channel is not None:
        d["channel"] = e.channel
    if e.value is not None:
        d["value"] = e.value
    return json.dumps(d, separators=(",", ":"), sort_keys=True)
