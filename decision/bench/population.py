"""A synthetic population, written through the writer API, and the requests
that ask for decisions about it.

Each person looks like a profile of the streaming business in examples/:
15 attributes, 3 segments, consent for 4 purposes and 6 channels, 20 recent
events spread over the last week. Everything is drawn from a seeded RNG, so
two runs with the same seed load the same people and send the same requests.
"""

from __future__ import annotations

import asyncio
import random
from types import MappingProxyType

from decision.domain import Event
from decision.nba.v1 import decision_pb2 as pb
from decision.store.redis_store import ProfileDocument, ProfileWriter

COUNTRIES = (("US", "America/New_York", "en"), ("US", "America/Los_Angeles", "en"),
             ("GB", "Europe/London", "en"), ("DE", "Europe/Berlin", "de"),
             ("FR", "Europe/Paris", "fr"), ("BR", "America/Sao_Paulo", "pt"))
TIERS = ("basic", "standard", "standard", "premium", "family")
SEGMENTS = ("mobile_app_user", "desktop_app_user", "tv_app_user", "sports_fan", "sports_addon",
            "cancellation_intent", "binge_watcher", "price_sensitive", "new_subscriber", "trial")
PURPOSES = ("marketing", "service", "personalization", "join")
CHANNELS = ("web", "app", "email", "sms", "push", "callcenter")
EVENT_TYPES = ("app_open", "app_open", "watched_movie", "watched_series", "watched_sports", "search",
               "cart_abandoned", "purchase", "support_call", "rating")
DEVICES = ("tv", "mobile", "desktop", "tablet")
PAGES = ("home", "browse", "title", "pricing", "account")

DAY_MS = 86_400_000


def person_key(i: int) -> str:
    return f"pid:bench-{i:07d}"


def profile(i: int, now_ms: int, seed: int = 0) -> ProfileDocument:
    """Person i: the attribute, segment, consent and event names of
    examples/catalog.yaml's rules, with values spread so that offers are
    eligible for some people and not others."""
    rng = random.Random(seed * 1_000_003 + i)
    country, tz, language = rng.choice(COUNTRIES)
    paying = rng.random() < 0.75
    tier = rng.choice(TIERS) if paying else "free"
    attributes = {
        "age": rng.randint(18, 80),
        "country": country,
        "language": language,
        "timezone": tz,
        "tier": tier,
        "plan": f"{tier}_{'monthly' if rng.random() < 0.7 else 'annual'}",
        "billing_period": "monthly" if rng.random() < 0.7 else "annual",
        "tenure_months": rng.randint(0, 96),
        "lifetime_value": round(rng.uniform(0, 2500), 2),
        "churn_score": round(rng.random(), 3),
        "household_size": rng.randint(1, 6),
        "kids_in_household": rng.random() < 0.3,
        "propensity_family": round(rng.random(), 3),
        "propensity_sports": round(rng.random(), 3),
        "zip": f"{rng.randint(0, 99999):05d}",  # a string that looks like a number
    }
    segments = {s: now_ms - rng.randint(0, 400) * DAY_MS
                for s in (["paying_user"] if paying else []) + rng.sample(SEGMENTS, 3 - paying)}
    consent = {p: "granted" if rng.random() < 0.85 else "denied" for p in PURPOSES}
    for ch in CHANNELS:
        consent[f"channel:{ch}"] = "granted" if rng.random() < 0.8 else "denied"
    events = tuple(
        Event(type=rng.choice(EVENT_TYPES), at_ms=now_ms - rng.randint(60_000, 7 * DAY_MS),
              item=f"title-{rng.randint(1, 500)}", channel=rng.choice(("web", "app")),
              value=round(rng.uniform(1, 30), 2) if rng.random() < 0.1 else None)
        for _ in range(20)
    )
    return ProfileDocument(person_key(i), MappingProxyType(attributes), MappingProxyType(segments),
                           MappingProxyType(consent), (), events)


class _Batch:
    """Stands in for the client inside ProfileWriter.write: the commands of
    each person's transaction go into one shared pipeline instead, sent when
    the batch is full. The writer's own encoding and key schema are used as
    they are; only the per-person MULTI/EXEC and round trip are left out
    (writing one person per transaction, 64 in flight, was half as fast)."""

    def __init__(self, pipe) -> None:
        self._pipe = pipe

    def pipeline(self, transaction: bool = True) -> "_Batch":
        return self

    async def execute(self) -> None:
        return None

    def __getattr__(self, name: str):
        return getattr(self._pipe, name)


async def load_bulk(redis, start: int, stop: int, now_ms: int, seed: int = 0, batch: int = 500) -> None:
    """Write people start..stop-1 in pipelined batches, one batch on the wire
    while the next is built (Python building the commands is the limit; the
    server is far from busy). The people have no links, which ProfileWriter
    would write outside the batch."""
    pending = None
    for first in range(start, stop, batch):
        pipe = redis.pipeline(transaction=False)
        writer = ProfileWriter(_Batch(pipe))
        for i in range(first, min(stop, first + batch)):
            await writer.write(profile(i, now_ms, seed))
        if pending is not None:
            await pending
        pending = asyncio.ensure_future(pipe.execute())
    if pending is not None:
        await pending


def visiting_order(population: int, seed: int = 0) -> list[int]:
    """Everybody once, in a seeded random order: requests cycle through it,
    so no person is decided for twice before everyone has been once (the
    catalog's per-person caps would otherwise turn a small sample of people
    into fallbacks)."""
    order = list(range(population))
    random.Random(seed).shuffle(order)
    return order


def decide_requests(placement: str, population: int, seed: int = 0, count: int | None = None,
                    first: int = 0) -> tuple[bytes, ...]:
    """One serialised DecideRequest per person, in visiting order, with a
    page context like a web or app front end sends; `count` requests from
    the `first`-th person of the order on (cyclically) instead of everybody:
    a sample of a large population, or another part of it."""
    rng = random.Random(seed + 1)
    order = visiting_order(population, seed)
    count = population if count is None else count
    people = [order[(first + j) % population] for j in range(count)]
    out = []
    for n, person in enumerate(people):
        req = pb.DecideRequest(
            placement=placement,
            identity=pb.Identity(type=pb.IDENTITY_TYPE_PROFILE, id=person_key(person).split(":", 1)[1]),
            context={
                "page": pb.Value(string_value=rng.choice(PAGES)),
                "device": pb.Value(string_value=rng.choice(DEVICES)),
                "language": pb.Value(string_value=rng.choice(COUNTRIES)[2]),
                "session_views": pb.Value(int_value=rng.randint(1, 40)),
            },
            request_id=f"bench-{n:07d}",
        )
        out.append(req.SerializeToString())
    return tuple(out)


def person_keys(population: int, seed: int = 0) -> tuple[bytes, ...]:
    """The people the Redis floor reads, in the order Decide visits them."""
    return tuple(person_key(i).encode() for i in visiting_order(population, seed))
