"""Decision and reward logs: Redis Streams, bounded by length and by age.

Each entry holds one versioned JSON record (decision/records.py) in the field
`r`. Streams are trimmed approximately on every XADD (MAXLEN ~) and by age by
`trim_by_age`, which the server runs periodically.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import redis.asyncio as aioredis

from decision.records import DecisionRecord, RewardRecord
from decision.store import keys

DAY_MS = 86_400_000


@dataclass(frozen=True, slots=True)
class LogConfig:
    max_len: int = 1_000_000
    retention_ms: int = 30 * DAY_MS
    decision_stream: str = keys.DECISION_STREAM
    reward_stream: str = keys.REWARD_STREAM


class Logs:
    def __init__(self, redis: aioredis.Redis, config: LogConfig = LogConfig()) -> None:
        self.redis = redis
        self.config = config

    async def write_decision(self, record: DecisionRecord, person_key: str, served: list[tuple[str, int]]) -> None:
        await self.write_decisions([(record, person_key, served)])

    async def write_decisions(self, rows: list[tuple[DecisionRecord, str, list[tuple[str, int]]]]) -> None:
        """Log decisions and keep what Reward needs to find them, in one round trip.

        Each row: the record, the person key its pressure is counted on, and
        the (offer, rank) pairs returned to the caller, the fallback offer
        included, so that its rewards are accepted too. The decision key
        outlives the join window by a day so that late rewards inside the
        window are still accepted.
        """
        # MULTI: decision keys and log rows land together or not at all,
        # which is what makes the spool replay's "key exists -> skip" exact.
        pipe = self.redis.pipeline(transaction=True)
        for record, person_key, served in rows:
            key = keys.decision(record.decision_id)
            pipe.hset(
                key,
                mapping={
                    "placement": record.placement,
                    "arm": record.arm,
                    "policy": record.policy,
                    "pk": person_key,
                    "ts": record.ts_ms,
                    "items": json.dumps([{"offer": offer, "rank": rank} for offer, rank in served],
                                        separators=(",", ":")),
                    "window": record.join_window_s,
                },
            )
            pipe.expire(key, record.join_window_s + 86_400)
            pipe.xadd(self.config.decision_stream, {"r": record.to_json()},
                      maxlen=self.config.max_len, approximate=True)
        await pipe.execute()

    async def write_reward(self, record: RewardRecord) -> None:
        await self.redis.xadd(self.config.reward_stream, {"r": record.to_json()},
                              maxlen=self.config.max_len, approximate=True)

    async def trim_by_age(self, now_ms: int) -> None:
        min_id = f"{max(0, now_ms - self.config.retention_ms)}-0"
        pipe = self.redis.pipeline(transaction=False)
        for stream in (self.config.decision_stream, self.config.reward_stream):
            # Exact: an approximate trim only drops whole stream nodes (~100
            # rows), which would keep rows past the retention on a quiet stream.
            pipe.xtrim(stream, minid=min_id, approximate=False)
        await pipe.execute()

    async def read_decisions(self, count: int = 100) -> list[DecisionRecord]:
        """Newest first."""
        rows = await self.redis.xrevrange(self.config.decision_stream, count=count)
        return [DecisionRecord.from_json(fields["r"]) for _, fields in rows]

    async def read_rewards(self, count: int = 100) -> list[RewardRecord]:
        rows = await self.redis.xrevrange(self.config.reward_stream, count=count)
        return [RewardRecord.from_json(fields["r"]) for _, fields in rows]
