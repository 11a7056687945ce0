"""The right to be forgotten: remove one person from everything the service
keeps, and say so in an audit entry.

What is removed, for the person and every identity linked to them:

1. Redis keys of each person key (store/keys.py `person_keys`): profile and
   identity link, events, exposures (pressure counters), positive rewards,
   the reverse identity index.
2. Pending joins: the decision keys `{d:<id>}` and `{d:<id>}:e` of their
   decisions, found through the exposures (`<decision id>|offer|channel`),
   through their decision log rows, and with `scan_keyspace` by a SCAN of
   `{d:*}` whose `pk` is one of their person keys.
3. Log rows: decision rows whose `person` is the keyed pseudonym of one of
   their person keys, and reward rows of those decisions, deleted (XDEL).
   Rewriting a row would keep the person's features, which with outside
   knowledge can re-identify them, so rows are deleted, not pseudonymized
   again.

Who is "the person": the named identity, the profile its `link` names, and
every identity whose `link` names one of those (transitively), found through
the reverse index `{p:<pk>}:ids`. Identities linked by an upstream writer that
does not maintain that index are found only with `scan_keyspace` (SCAN of
`{p:*}`: O(keys in Redis), minutes on a large keyspace). Forget does not
look at consent to join: the link says the data is theirs.

Cost: the log streams are read whole (XRANGE in batches of `BATCH` entries):
O(rows in the streams), bounded by the log length and retention (measured
in docs/SECURITY.md); a row is matched by slicing one field out of its text,
and only matching rows are parsed. Forget is an admin call, never on the
decide path.

Order and retries: the person's keys are read first and deleted last, so a
Forget that fails half way (Redis gone) can simply be run again: it finds
what is left. A Decide for the person that runs while Forget runs can write
a new row after the scan: stop sending the person's events first, and run
Forget again when in doubt (it is idempotent; a second run reports zeros).

The pseudonyms are written to the tombstone set `nba:forgotten` (kept for
the log retention) so that log rows spooled by a replica during a Redis
outage and replayed later can be dropped.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from typing import Iterable

import redis.asyncio as aioredis

from decision import errors
from decision.clock import Clock
from decision.logs import LogConfig
from decision.privacy import Pseudonymizer
from decision.store import keys

log = logging.getLogger("nba.forget")

BATCH = 1_000
# A person with more identities than this is a broken identity graph (a
# shared device linking everyone), not a person: refuse rather than erase
# thousands of people.
MAX_IDENTITIES = 1_000
AUDIT_VERSION = 1
AUDIT_MAX_LEN = 10_000_000
_REWARD_DECISION = '"decision_id":"'
_PERSON = '"person":"'


@dataclass(frozen=True, slots=True)
class ForgetOrder:
    person_key: str  # `<type>:<id>`, validated at the edge
    reason: str
    scan_keyspace: bool = False


@dataclass(frozen=True, slots=True)
class ForgetResult:
    pseudonym: str
    identities: int
    keys_deleted: int
    decisions: int
    decision_log_rows: int
    reward_log_rows: int
    audit_id: str


class Forgetter:
    def __init__(self, redis: aioredis.Redis, pseudonymizer: Pseudonymizer, clock: Clock,
                 log_config: LogConfig = LogConfig(), *, max_identities: int = MAX_IDENTITIES) -> None:
        self.redis = redis
        self.pseudonymizer = pseudonymizer
        self.clock = clock
        self.config = log_config
        self.max_identities = max_identities
        self._lock = asyncio.Lock()

    async def forget(self, order: ForgetOrder, *, caller: str | None) -> ForgetResult:
        # One Forget at a time per process: each reads the streams whole.
        async with self._lock:
            return await self._forget(order, caller)

    async def _forget(self, order: ForgetOrder, caller: str | None) -> ForgetResult:
        root = await self.redis.hget(keys.profile(order.person_key), keys.LINK) or order.person_key
        persons = await self._closure({order.person_key, root}, order.scan_keyspace)
        pseudonyms = {self.pseudonymizer.person(pk) for pk in persons}

        decision_ids = await self._exposed_decisions(persons)
        if order.scan_keyspace:
            decision_ids |= await self._scan_decisions(persons)
        decision_rows, logged = await self._purge_decision_rows(pseudonyms)
        decision_ids |= logged
        reward_rows = await self._purge_reward_rows(decision_ids)
        keys_deleted = await self._delete(
            [k for d in sorted(decision_ids) for k in (keys.decision(d), keys.decision_events(d))])
        await self._tombstone(pseudonyms)
        # The person's own keys last: a retry after a failure still finds them.
        keys_deleted += await self._delete([k for pk in sorted(persons) for k in keys.person_keys(pk)])

        pseudonym = self.pseudonymizer.person(root)
        now = self.clock.now_ms()
        entry = {
            "v": AUDIT_VERSION,
            "action": "forget",
            "ts_ms": now,
            "app": caller or "unauthenticated (token auth off)",
            "reason": order.reason,
            "pseudonym": pseudonym,
            "identities": len(persons),
            "keys_deleted": keys_deleted,
            "decisions": len(decision_ids),
            "decision_log_rows": decision_rows,
            "reward_log_rows": reward_rows,
            "scan_keyspace": order.scan_keyspace,
        }
        audit_id = await self.redis.xadd(keys.AUDIT_STREAM, {"r": json.dumps(entry, separators=(",", ":"),
                                                                            sort_keys=True)},
                                         maxlen=AUDIT_MAX_LEN, approximate=True)
        log.info("forgot person %s for %s: %d identities, %d keys, %d decision rows, %d reward rows (audit %s)",
                 pseudonym, entry["app"], len(persons), keys_deleted, decision_rows, reward_rows, audit_id)
        return ForgetResult(pseudonym, len(persons), keys_deleted, len(decision_ids), decision_rows, reward_rows,
                            audit_id)

    # --- who ------------------------------------------------------------------

    async def _closure(self, start: set[str], scan: bool) -> set[str]:
        """Every person key linked to `start`, both ways, to a fixpoint."""
        seen: set[str] = set()
        frontier = set(start)
        scanned = False
        while frontier:
            seen |= frontier
            if len(seen) > self.max_identities:
                raise errors.FailedPrecondition(
                    f"more than {self.max_identities} identities are linked to this person: the identity graph "
                    "looks broken (a shared identity?); nothing was deleted", field="identity")
            pipe = self.redis.pipeline(transaction=False)
            batch = sorted(frontier)
            for pk in batch:
                pipe.hget(keys.profile(pk), keys.LINK)
                pipe.smembers(keys.identities(pk))
            replies = await pipe.execute()
            found: set[str] = set()
            for i in range(len(batch)):
                link, members = replies[2 * i], replies[2 * i + 1]
                if link:
                    found.add(link)
                found |= set(members or ())
            if not (found - seen) and scan and not scanned:
                scanned = True
                found |= await self._scan_links(seen)
            frontier = found - seen
        return seen

    async def _scan_links(self, persons: set[str]) -> set[str]:
        """Identities whose `link` names one of `persons`: a full SCAN."""
        return {k[3:-1] for k in await self._scan_hashes("{p:*}", keys.LINK, persons)}  # "{p:" + pk + "}"

    async def _scan_hashes(self, match: str, field: str, wanted: set[str]) -> set[str]:
        """Keys matching `match` (hash keys ending in "}") whose `field` is in `wanted`."""
        out: set[str] = set()
        batch: list[str] = []

        async def check() -> None:
            pipe = self.redis.pipeline(transaction=False)
            for k in batch:
                pipe.hget(k, field)
            for k, value in zip(batch, await pipe.execute()):
                if value in wanted:
                    out.add(k)
            batch.clear()

        async for key in self.redis.scan_iter(match=match, count=BATCH, _type="hash"):
            if key.endswith("}"):
                batch.append(key)
                if len(batch) >= BATCH:
                    await check()
        if batch:
            await check()
        return out

    # --- pending joins -------------------------------------------------------

    async def _exposed_decisions(self, persons: Iterable[str]) -> set[str]:
        pipe = self.redis.pipeline(transaction=False)
        for pk in sorted(persons):
            pipe.zrange(keys.exposures(pk), 0, -1)
        ids: set[str] = set()
        for members in await pipe.execute():
            ids.update(m.split("|", 1)[0] for m in members)
        return ids

    async def _scan_decisions(self, persons: set[str]) -> set[str]:
        return {k[3:-1] for k in await self._scan_hashes("{d:*}", "pk", persons)}  # "{d:" + id + "}"

    # --- log rows ------------------------------------------------------------

    async def _purge_decision_rows(self, pseudonyms: set[str]) -> tuple[int, set[str]]:
        ids: set[str] = set()

        def doomed(raw: str) -> bool:
            # Records are compact JSON with sorted keys: the top-level "person"
            # is the last `"person":"` (a context key of that name sorts
            # before it; quotes inside strings are escaped).
            at = raw.rfind(_PERSON)
            if at < 0:
                return False
            start = at + len(_PERSON)
            if raw[start:raw.find('"', start)] not in pseudonyms:
                return False
            try:
                d = json.loads(raw)
            except ValueError:
                return False
            if d.get("person") not in pseudonyms:
                return False
            ids.add(str(d.get("decision_id", "")))
            return True

        rows = await self._purge_stream(self.config.decision_stream, doomed)
        ids.discard("")
        return rows, ids

    async def _purge_reward_rows(self, decision_ids: set[str]) -> int:
        if not decision_ids:
            return 0

        def doomed(raw: str) -> bool:
            at = raw.find(_REWARD_DECISION)
            if at < 0:
                return False
            start = at + len(_REWARD_DECISION)
            return raw[start:raw.find('"', start)] in decision_ids

        return await self._purge_stream(self.config.reward_stream, doomed)

    async def _purge_stream(self, stream: str, doomed) -> int:
        deleted = 0
        start = "-"
        while True:
            rows = await self.redis.xrange(stream, min=start, max="+", count=BATCH)
            if not rows:
                return deleted
            ids = [entry_id for entry_id, fields in rows if doomed(fields.get("r", ""))]
            if ids:
                deleted += await self.redis.xdel(stream, *ids)
            if len(rows) < BATCH:
                return deleted
            start = "(" + rows[-1][0]

    # --- delete --------------------------------------------------------------

    async def _delete(self, names: list[str]) -> int:
        # One DEL per person or per decision (one slot each): works on Cluster.
        deleted = 0
        for i in range(0, len(names), 500):
            pipe = self.redis.pipeline(transaction=False)
            for name in names[i:i + 500]:
                pipe.delete(name)
            deleted += sum(await pipe.execute())
        return deleted

    async def _tombstone(self, pseudonyms: set[str]) -> None:
        now = self.clock.now_ms()
        pipe = self.redis.pipeline(transaction=False)
        pipe.zadd(keys.FORGOTTEN, {p: now for p in pseudonyms})
        pipe.zremrangebyscore(keys.FORGOTTEN, "-inf", now - self.config.retention_ms)
        await pipe.execute()


async def is_forgotten(redis: aioredis.Redis, pseudonym: str) -> bool:
    """For log writers that replay rows later (the spool): True when the
    person was forgotten after the row was written."""
    return await redis.zscore(keys.FORGOTTEN, pseudonym) is not None
