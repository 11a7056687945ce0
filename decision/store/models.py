"""Model snapshots in Redis: versioned bytes, a served-version pointer, an
index, notifications, apprentice switches and the learner's checkpoint.

One *model* is one (placement, arm). Its keys share the hash tag
`{<placement>:<arm>}` so that one model's keys live on one Redis Cluster
slot and the publish step (index + info + pointer) is one MULTI. Ids are
catalog ids (`[a-z0-9_][a-z0-9_.-]*`), so `<placement>:<arm>` is unambiguous.

    nba:model:{<p>:<a>}:v:<n>      STRING  bytes of policy.save() (the bandits
                                   envelope; self-describing); immutable
    nba:model:{<p>:<a>}:current    STRING  the version replicas serve (n)
    nba:model:{<p>:<a>}:versions   ZSET    published versions, score = member = n
    nba:model:{<p>:<a>}:info       HASH    n -> JSON VersionInfo (time, examples,
                                   loss, greedy share, reward rate, parent)
    nba:models:index               SET     "<p>:<a>" of every model published
    nba:models                     PUB/SUB channel: one JSON message per change
                                   {"placement", "arm", "version", "event"}
    nba:log:models                 STREAM  audit log of model events (published,
                                   rollback, graduated, demoted, refused ...)
    nba:apprentice:{<p>}:<a>       STRING  "graduated" when an apprentice arm
                                   serves its learned policy (absent: baseline)
    nba:apprentice:{<p>}:<a>:evidence  STRING  JSON: who switched, when, and
                                   the off-policy evidence
    nba:learner:checkpoint         STRING  JSON learner checkpoint (learning.py)
    nba:learner:lock               STRING  id of the one running learner (PX)

Version numbers only grow: a new snapshot is max(published) + 1 even after
a rollback, so a version number names one set of bytes forever.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import redis.asyncio as aioredis
from redis.client import NEVER_DECODE

MODEL_CHANNEL = "nba:models"
MODEL_INDEX = "nba:models:index"
MODEL_EVENTS = "nba:log:models"
CHECKPOINT = "nba:learner:checkpoint"
LEARNER_LOCK = "nba:learner:lock"
GRADUATED = "graduated"
EVENTS_MAX_LEN = 10_000


def model_id(placement: str, arm: str) -> str:
    return f"{placement}:{arm}"


def split_model_id(mid: str) -> tuple[str, str]:
    placement, _, arm = mid.partition(":")
    return placement, arm


def _base(placement: str, arm: str) -> str:
    return "nba:model:{" + placement + ":" + arm + "}"


def model_version(placement: str, arm: str, version: int) -> str:
    return f"{_base(placement, arm)}:v:{int(version)}"


def model_current(placement: str, arm: str) -> str:
    return _base(placement, arm) + ":current"


def model_versions(placement: str, arm: str) -> str:
    return _base(placement, arm) + ":versions"


def model_info(placement: str, arm: str) -> str:
    return _base(placement, arm) + ":info"


def apprentice(placement: str, arm: str) -> str:
    return "nba:apprentice:{" + placement + "}:" + arm


def apprentice_evidence(placement: str, arm: str) -> str:
    return apprentice(placement, arm) + ":evidence"


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True, slots=True)
class VersionInfo:
    """What `nba models` shows of one version. Learning health (DESIGN:
    "it isn't learning"): examples trained, VW's progressive loss, the
    share of logged rank-1 choices that were the arm's greedy choice, the
    interval's mean reward."""

    version: int
    created_ms: int
    examples: int  # examples the model has learned in all (its lineage)
    interval_examples: int = 0  # learned since the parent version
    average_loss: float | None = None
    greedy_share: float | None = None  # over the arm's own decisions in the interval
    reward_rate: float | None = None  # mean item reward of the interval's examples
    parent: int | None = None  # version it was trained on from
    model_version: str = ""  # the policy's own version string (bandits lineage hash)
    served_as: str = ""  # the model_version replicas log while serving it ("vw_champion:v12")
    bytes: int = 0
    watermark_ms: int | None = None
    note: str = ""

    def to_json(self) -> str:
        return json.dumps({k: v for k, v in asdict(self).items() if v is not None and v != ""},
                          separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> VersionInfo:
        d = json.loads(text)
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in d.items() if k in known})


@dataclass(frozen=True, slots=True)
class ModelState:
    placement: str
    arm: str
    current: int | None
    versions: tuple[int, ...]
    info: Mapping[int, VersionInfo] = field(default_factory=dict)
    apprentice: str | None = None  # None (not apprentice or no switch), "graduated"
    evidence: Mapping[str, Any] | None = None


class ModelStore:
    """Reads and writes the keys above. Works with a client that decodes
    replies (the service's); model bytes are read undecoded."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self.redis = redis

    # -- snapshots ---------------------------------------------------------

    async def current(self, placement: str, arm: str) -> int | None:
        raw = await self.redis.get(model_current(placement, arm))
        return None if raw is None else int(raw)

    async def currents(self, models: Iterable[tuple[str, str]]) -> dict[tuple[str, str], int | None]:
        """Served versions of several models in one round trip (a pipeline
        of GETs, not MGET: the keys live on different Cluster slots)."""
        models = list(models)
        raws = await self.gets([model_current(p, a) for p, a in models])
        return {m: (None if r is None else int(r)) for m, r in zip(models, raws)}

    async def switches(self, models: Iterable[tuple[str, str]]) -> list[str | None]:
        """The apprentice switch of each model ("graduated" or None)."""
        return await self.gets([apprentice(p, a) for p, a in models])

    async def gets(self, names: list[str]) -> list[Any]:
        if not names:
            return []
        pipe = self.redis.pipeline(transaction=False)
        for name in names:
            pipe.get(name)
        return await pipe.execute()

    async def load_bytes(self, placement: str, arm: str, version: int) -> bytes | None:
        return await self.redis.execute_command("GET", model_version(placement, arm, version), **{NEVER_DECODE: True})

    async def latest_version(self, placement: str, arm: str) -> int:
        """The highest version number ever published (0 when none)."""
        top = await self.redis.zrevrange(model_versions(placement, arm), 0, 0, withscores=True)
        return int(top[0][1]) if top else 0

    async def write_bytes(self, placement: str, arm: str, version: int, data: bytes) -> None:
        """Step 1 of a snapshot: the immutable bytes, invisible until published."""
        await self.redis.set(model_version(placement, arm, version), data)

    async def is_published(self, placement: str, arm: str, version: int) -> bool:
        return await self.redis.zscore(model_versions(placement, arm), str(version)) is not None

    async def publish(self, placement: str, arm: str, info: VersionInfo) -> None:
        """Make a written version the served one: index + info + pointer in
        one MULTI (one slot), then notify replicas and log the event."""
        n = info.version
        pipe = self.redis.pipeline(transaction=True)
        pipe.zadd(model_versions(placement, arm), {str(n): n})
        pipe.hset(model_info(placement, arm), str(n), info.to_json())
        pipe.set(model_current(placement, arm), n)
        await pipe.execute()
        await self.redis.sadd(MODEL_INDEX, model_id(placement, arm))
        await self.notify(placement, arm, n, "published", info.note)

    async def notify(self, placement: str, arm: str, version: int | None, event: str, detail: str = "",
                     **extra: Any) -> None:
        message = {"placement": placement, "arm": arm, "version": version, "event": event}
        pipe = self.redis.pipeline(transaction=False)
        pipe.publish(MODEL_CHANNEL, json.dumps(message, separators=(",", ":")))
        fields = {**message, "detail": detail, "ts_ms": now_ms(), **extra}
        pipe.xadd(MODEL_EVENTS, {"r": json.dumps(fields, separators=(",", ":"), default=str)},
                  maxlen=EVENTS_MAX_LEN, approximate=True)
        await pipe.execute()

    async def rollback(self, placement: str, arm: str, version: int, *, by: str = "operator") -> None:
        """Serve `version` again. The learner notices the pointer moved away
        from its own latest snapshot and continues training from `version`
        (docs/LEARNING.md: rollback)."""
        if not await self.is_published(placement, arm, version):
            known = await self.versions(placement, arm)
            raise LookupError(f"model {model_id(placement, arm)} has no version {version} "
                              f"(published: {', '.join(map(str, known)) or 'none'})")
        if await self.load_bytes(placement, arm, version) is None:
            raise LookupError(f"model {model_id(placement, arm)} version {version} was pruned")
        await self.redis.set(model_current(placement, arm), version)
        await self.notify(placement, arm, version, "rollback", f"pointer set to v{version} by {by}")

    async def versions(self, placement: str, arm: str) -> list[int]:
        return [int(v) for v in await self.redis.zrange(model_versions(placement, arm), 0, -1)]

    async def infos(self, placement: str, arm: str) -> dict[int, VersionInfo]:
        raw = await self.redis.hgetall(model_info(placement, arm))
        return dict(sorted((int(k), VersionInfo.from_json(v)) for k, v in raw.items()))

    async def models(self) -> list[tuple[str, str]]:
        return sorted(split_model_id(m) for m in await self.redis.smembers(MODEL_INDEX))

    async def state(self, placement: str, arm: str) -> ModelState:
        pipe = self.redis.pipeline(transaction=False)
        pipe.get(model_current(placement, arm))
        pipe.zrange(model_versions(placement, arm), 0, -1)
        pipe.hgetall(model_info(placement, arm))
        pipe.get(apprentice(placement, arm))
        pipe.get(apprentice_evidence(placement, arm))
        current, versions, info, switch, evidence = await pipe.execute()
        return ModelState(
            placement, arm,
            None if current is None else int(current),
            tuple(int(v) for v in versions),
            dict(sorted((int(k), VersionInfo.from_json(v)) for k, v in info.items())),
            switch,
            json.loads(evidence) if evidence else None,
        )

    async def prune(self, placement: str, arm: str, keep: int, protect: Iterable[int] = ()) -> list[int]:
        """Delete the bytes of all but the newest `keep` versions (never the
        served one, nor `protect`); their info stays for the record, and they
        leave the index so `rollback` cannot name them."""
        versions = await self.versions(placement, arm)
        current = await self.current(placement, arm)
        spare = {current, *protect}
        doomed = [v for v in versions[:-keep] if v not in spare] if keep > 0 else []
        if doomed:
            pipe = self.redis.pipeline(transaction=False)
            for v in doomed:
                pipe.delete(model_version(placement, arm, v))
            pipe.zrem(model_versions(placement, arm), *map(str, doomed))
            await pipe.execute()
        return doomed

    # -- apprentice switch ------------------------------------------------

    async def apprentice_state(self, placement: str, arm: str) -> str | None:
        return await self.redis.get(apprentice(placement, arm))

    async def graduate(self, placement: str, arm: str, evidence: Mapping[str, Any]) -> None:
        """Flip an apprentice arm to its learned policy, with the evidence."""
        doc = {"ts_ms": now_ms(), **evidence}
        pipe = self.redis.pipeline(transaction=True)
        pipe.set(apprentice(placement, arm), GRADUATED)
        pipe.set(apprentice_evidence(placement, arm), json.dumps(doc, separators=(",", ":"), default=str))
        await pipe.execute()
        await self.notify(placement, arm, await self.current(placement, arm), "graduated",
                          str(doc.get("reason", "")), evidence=doc)

    async def demote(self, placement: str, arm: str, *, by: str = "operator") -> None:
        """Back to the baseline (the learner keeps training; it may graduate again)."""
        await self.redis.delete(apprentice(placement, arm), apprentice_evidence(placement, arm))
        await self.notify(placement, arm, await self.current(placement, arm), "demoted", f"by {by}")

    # -- events --------------------------------------------------------------

    async def events(self, count: int = 50, placement: str | None = None, arm: str | None = None) -> list[dict]:
        """Newest first."""
        rows = await self.redis.xrevrange(MODEL_EVENTS, count=count if placement is None else count * 20)
        out = []
        for _, fields in rows:
            e = json.loads(fields["r"])
            if placement is not None and (e.get("placement") != placement or (arm and e.get("arm") != arm)):
                continue
            out.append(e)
            if len(out) >= count:
                break
        return out

