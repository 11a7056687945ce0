"""Reward: find the decision, apply the placement's reward function, count
each event id once, log it for learning.

Idempotency: the event id is added to the decision's event set first (SADD is
atomic); only the call that added it writes the log row. If that write fails,
the id is removed again so that the caller's retry is not mistaken for a
duplicate.
"""

from __future__ import annotations

import json
import math

import redis.asyncio as aioredis

from decision import errors
from decision.catalog import Catalog, RewardSpec
from decision.clock import Clock
from decision.domain import RewardAck, RewardEvent
from decision.logs import Logs
from decision.records import RewardRecord
from decision.store import keys
from decision.store.pressure_store import record_positive_reward

DEFAULT_EVENTS: dict[str, float | str] = {
    "impression": 0.0,
    "click": 1.0,
    "accept": 1.0,
    "convert": "value",
    "decline": 0.0,
}


def reward_value(spec: RewardSpec, event: RewardEvent, offer_value: float) -> float:
    events = spec.events or DEFAULT_EVENTS
    rule = events.get(event.event_type)
    if rule is None:
        raise errors.InvalidArgument(
            f"event type {event.event_type!r} is not rewarded at this placement (known: {', '.join(sorted(events))})",
            field="event_type",
        )
    if rule == "value":
        if event.value is None:
            raise errors.InvalidArgument(f"event type {event.event_type!r} needs a value", field="value")
        return event.value
    if rule == "offer_value":
        return offer_value
    return float(rule)


class Rewards:
    def __init__(self, redis: aioredis.Redis, logs: Logs, clock: Clock) -> None:
        self.redis = redis
        self.logs = logs
        self.clock = clock

    async def accept(self, catalog: Catalog, event: RewardEvent) -> RewardAck:
        stored = await self.redis.hgetall(keys.decision(event.decision_id))
        if not stored:
            raise errors.NotFound(
                f"unknown decision {event.decision_id!r} (never logged, a dry run, or past its join window)",
                field="decision_id",
            )
        items = json.loads(stored["items"])
        offer_id = event.offer_id
        if not offer_id:
            if len(items) != 1:
                raise errors.InvalidArgument(
                    f"decision has {len(items)} items: name the item's offer_id", field="offer_id")
            offer_id = items[0]["offer"]
        item = next((i for i in items if i["offer"] == offer_id), None)
        if item is None:
            raise errors.InvalidArgument(
                f"offer {offer_id!r} is not an item of decision {event.decision_id!r}", field="offer_id")

        placement = catalog.placements.get(stored["placement"])
        if placement is None:
            raise errors.FailedPrecondition(
                f"placement {stored['placement']!r} of this decision is no longer in the catalog", field="decision_id")
        offer = catalog.offers.get(offer_id)
        value = reward_value(placement.reward, event, offer.value if offer else 0.0)
        if not math.isfinite(value):
            raise errors.InvalidArgument("reward value must be finite", field="value")

        now = self.clock.now_ms()
        ttl = await self.redis.ttl(keys.decision(event.decision_id))
        events_key = keys.decision_events(event.decision_id)
        pipe = self.redis.pipeline(transaction=False)
        pipe.sadd(events_key, event.event_id)
        pipe.expire(events_key, max(ttl, 60))
        added, _ = await pipe.execute()
        ack = RewardAck(event.decision_id, event.event_id, duplicate=not added, reward=value)
        if not added:
            return ack

        record = RewardRecord(
            event_id=event.event_id,
            decision_id=event.decision_id,
            ts_ms=now,
            occurred_ms=event.occurred_at_ms if event.occurred_at_ms is not None else now,
            placement=placement.id,
            arm=stored["arm"],
            policy=stored["policy"],
            offer_id=offer_id,
            rank=int(item["rank"]),
            event_type=event.event_type,
            value=event.value,
            reward=value,
        )
        try:
            await self.logs.write_reward(record)
            if value > 0:
                await record_positive_reward(self.redis, stored["pk"], offer_id, record.occurred_ms)
        except Exception:
            await self.redis.srem(events_key, event.event_id)
            raise
        return ack
