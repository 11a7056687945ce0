"""Reward: find the decision, apply the placement's reward function, count
each event id once, log it for learning.

Idempotency: one Lua script checks the event id, appends the log row and
marks the id counted, atomically. A
concurrent copy, a caller's retry, or the spool replay of an event whose
reply was lost when Redis died all find the mark and count nothing: each
event is in the log exactly once.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math

import redis.asyncio as aioredis

from decision import errors, metrics
from decision.catalog import Catalog, RewardSpec
from decision.clock import Clock
from decision.domain import RewardAck, RewardEvent
from decision.ids import issued_ms
from decision.logs import Logs
from decision.logwriter import DecisionLogWriter
from decision.records import RewardRecord
from decision.spool import Spool
from decision.store import keys
from decision.store.guard import store_call
from decision.store.lua import LuaScript
from decision.store.pressure_store import record_positive_reward

LOG_ONCE = LuaScript.load("reward_log.lua")

log = logging.getLogger("nba.rewards")
REDIS_BUDGET_S = 0.25
# A decision this young whose row is not found yet is looked for again after
# these pauses before the Reward is refused (its row may be on its way).
YOUNG_MS = 2_000
LATE_ROW_PAUSES_S = (0.005, 0.02, 0.05)

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
    def __init__(self, redis: aioredis.Redis, logs: Logs, clock: Clock, spool: Spool | None = None,
                 budget_s: float = REDIS_BUDGET_S, log_writer: DecisionLogWriter | None = None) -> None:
        self.redis = redis
        self.log_writer = log_writer
        self.logs = logs
        self.clock = clock
        self.spool = spool
        self.budget_s = budget_s

    async def accept(self, catalog: Catalog, event: RewardEvent) -> RewardAck:
        """Count the event once, or keep it in the spool while Redis is away."""
        if event.occurred_at_ms is None:
            # Fix the time now: a spooled event replayed later keeps its real time.
            event = RewardEvent(event.decision_id, event.offer_id, event.event_type, event.event_id, event.value,
                                self.clock.now_ms())
        try:
            if self.log_writer is not None and self.log_writer.holds(event.decision_id):
                # Its decision's row may still be on its way (written after the
                # answer): wait for it to be in Redis or the spool.
                async with store_call("decision_logged", self.budget_s):
                    await self.log_writer.landed(event.decision_id)
            if self.spool is not None and event.decision_id in self.spool.decision_ids:
                # Its decision waits in the spool: the reward waits behind it.
                raise errors.StoreUnavailable("the decision of this reward is still in the spool")
            return await self._accept(catalog, event)
        except errors.StoreUnavailable:
            if self.spool is None:
                raise
            await self.spool.add_reward(event)
            metrics.SPOOLED.add(1, {"kind": "reward"})
            metrics.REWARDS.add(1, {"placement": "", "event_type": event.event_type, "outcome": "deferred"})
            return RewardAck(event.decision_id, event.event_id, duplicate=False, reward=0.0, deferred=True)

    async def replay(self, catalog: Catalog, event: RewardEvent) -> None:
        """Replay a spooled event; one the store refuses now (unknown decision,
        bad item) is dropped with a log line, as it would have been refused."""
        try:
            await self._accept(catalog, event)
        except errors.StoreUnavailable:
            raise
        except errors.NbaError as e:
            log.warning("spooled reward %s dropped: %s", event.event_id, e)
            metrics.REWARDS.add(1, {"placement": "", "event_type": event.event_type, "outcome": "dropped"})

    def _young(self, decision_id: str) -> bool:
        issued = issued_ms(decision_id)
        return issued is not None and abs(self.clock.now_ms() - issued) <= YOUNG_MS

    async def _find(self, decision_id: str) -> dict:
        """The decision's key. A decision made a moment ago by another
        process (`nba serve --workers`) may have its row still on the way (it
        is written after the answer, decision/logwriter.py): a young one is
        looked for again, briefly."""
        for pause in (0.0, *LATE_ROW_PAUSES_S):
            if pause:
                if not self._young(decision_id):
                    break
                await asyncio.sleep(pause)
            async with store_call("find_decision", self.budget_s):
                stored = await self.redis.hgetall(keys.decision(decision_id))
            if stored:
                return stored
        return {}

    async def _accept(self, catalog: Catalog, event: RewardEvent) -> RewardAck:
        stored = await self._find(event.decision_id)
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
        events_key = keys.decision_events(event.decision_id)
        ttl_s = int(stored.get("window", 86_400)) + 86_400
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
        async with store_call("log_reward", self.budget_s):
            counted = await LOG_ONCE(self.redis, [events_key, self.logs.config.reward_stream],
                                     [event.event_id, record.to_json(), self.logs.config.max_len, ttl_s])
            if value > 0:
                # Keeps the latest time only, so a duplicate or replay may repeat it
                # safely, and a reply lost after the log write still gets here.
                await record_positive_reward(self.redis, stored["pk"], offer_id, record.occurred_ms)
        ack = RewardAck(event.decision_id, event.event_id, duplicate=not counted, reward=value)
        if not counted:
            metrics.REWARDS.add(1, {"placement": placement.id, "event_type": event.event_type, "outcome": "duplicate"})
            return ack
        metrics.REWARDS.add(1, {"placement": placement.id, "event_type": event.event_type, "outcome": "counted"})
        metrics.REWARD_LAG.record(max(0, record.occurred_ms - int(stored.get("ts", record.occurred_ms))) / 1000,
                                  {"placement": placement.id})
        return ack
