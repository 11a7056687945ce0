"""`nba learn`: the learner process (one per deployment).

    read  decisions, then rewards    XREADGROUP, group "learner", both streams
    join  until each window closes    decision/learning/join.py (event time)
    train each (placement, arm)       decision/learning/trainer.py
    snapshot every N examples / T s   bytes -> checkpoint -> publish -> XACK

Delivery and restarts (docs/LEARNING.md, "Checkpoint and restart"):
- An entry is acknowledged (XACK) only once nothing depends on it any more:
  a trained decision and its rewards after the checkpoint that covers them;
  a duplicate, late, orphan or ignored entry at once. Decisions still
  waiting for their window stay in the group's pending list (PEL): the PEL
  *is* the durable join state, so the checkpoint stays small however long
  the windows are. A restart first re-reads its PEL, then goes on.
- A snapshot is committed in this order, each step safe to crash after:
  1. the new version bytes `nba:model:{p:a}:v:<n>` (immutable, not yet
     pointed to by anything);
  2. the checkpoint (one SET: the version of every model, example counts,
     the decision ids trained since the last acknowledgement, apprentice
     evidence) - the commit point;
  3. publish each version (index + info + pointer in one MULTI on the
     model's slot; PUBLISH);
  4. XACK what the checkpoint covers.
  A restart loads each model from the checkpoint's version, re-publishes a
  version that step 3 did not reach, and skips redelivered decisions the
  checkpoint lists as trained: no example is trained twice or skipped.
  (One MULTI around steps 1-3 would not work on Redis Cluster, whose
  transactions cannot span slots; the ordered commit gives the same
  guarantee on both.)
- A checkpoint due at the end of a round is taken in the next one, pipelined
  with the training process (step): the models are saved once that round is
  read and joined, before any of it is sent to VW, and steps 1-4 run after
  it is sent. It covers exactly what it would have covered at once.
- One learner at a time: `nba:learner:lock` (SET NX PX, renewed every round).
- On a Redis error the learner exits: state is only ever resumed from a
  checkpoint, so a supervisor restarting it is the recovery.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import time
import weakref
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from bandits.policy import PolicyLoadError
from bandits.registry import KINDS, validate_params
from decision.catalog import Catalog, load_catalog
from decision.errors import CatalogError
from decision.feature_tables import FeatureTables, MissingFeatureTable
from decision.learning import join, trainproc
from decision.learning.apprentice import Judge
from decision.learning.examples import decode_decision, decode_reward
from decision.learning.join import Joined, Joiner
from decision.learning.trainer import Interval, Model, Trainer
from decision.learning.trainproc import TrainProcess, TrainProcessError
from decision.store import keys
from decision.store.models import (
    CHECKPOINT,
    GRADUATED,
    LEARNER_LOCK,
    ModelStore,
    VersionInfo,
)

log = logging.getLogger("nba.learner")
# Tombstones are re-read from this far before the newest one seen (Forget runs on other hosts' clocks).
_FORGOTTEN_OVERLAP_MS = 10 * 60_000

CHECKPOINT_VERSION = 1
_YIELD_EVERY = 100  # trained decisions between chances for the read of the next batch to progress
CLOCKS = ("event", "real")
TRAIN_PROCESS = ("auto", "on", "off")


class _Marks(NamedTuple):
    """The learner's state a checkpoint records, as of the round it was due."""

    watermark_ms: int
    pending: int
    buffered: int
    counters: dict[str, int]


class _Snapshot(NamedTuple):
    """A checkpoint taken and not yet committed: the models' bytes and
    versions, the document, and the entries it covers (acknowledged after)."""

    saved: list[tuple[Model, bytes, VersionInfo]]
    document: dict[str, Any]
    decisions: list[str]
    rewards: list[str]
    graduating: list[tuple[Model, int, dict[str, Any]]]  # apprentices switched once it commits


_RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end
return 0
"""
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""


def load_learner_catalog(path: Path) -> Catalog:
    """The catalog, checked exactly as the service checks it."""
    from decision.rules import compile_rule

    return load_catalog(path, compile_rule=compile_rule, policy_kinds=KINDS, validate_policy=validate_params)


@dataclass
class LearnerConfig:
    catalog: Path
    snapshot_every: int = 10_000  # examples
    snapshot_seconds: float = 30.0  # at most this long between snapshots while examples arrive
    clock: str = "event"  # "event": newest ts_ms in the logs; "real": wall time
    lateness_s: float = 5.0  # the watermark trails the clock by this much
    batch: int = 1000  # entries per XREADGROUP
    idle_s: float = 0.5  # pause when both streams are drained (continuous mode)
    keep_versions: int = 20  # model versions kept per model (older bytes are pruned)
    learn_from: str | None = None  # overrides every placement's learn_from
    seed: int = 0
    group: str = "learner"
    consumer: str = "learner"
    lock_ttl_s: float = 30.0
    pointer_poll_s: float = 1.0  # how often rollbacks and apprentice switches are looked for
    reset: bool = False  # forget the checkpoint and the groups: retrain from the streams' start
    decision_stream: str = keys.DECISION_STREAM
    reward_stream: str = keys.REWARD_STREAM
    # VW learns in a process of its own (decision/learning/trainproc.py): "auto" = with 2 cores or more
    train_process: str = "auto"

    def __post_init__(self) -> None:
        if self.clock not in CLOCKS:
            raise ValueError(f"clock must be one of {', '.join(CLOCKS)}, got {self.clock!r}")
        if self.train_process not in TRAIN_PROCESS:
            raise ValueError(f"train_process must be one of {', '.join(TRAIN_PROCESS)}, got {self.train_process!r}")
        if self.snapshot_every < 1 or self.snapshot_seconds <= 0 or self.batch < 1:
            raise ValueError("snapshot_every, snapshot_seconds and batch must be positive")


class LearnerBusy(RuntimeError):
    """Another learner holds the lock."""


class Learner:
    def __init__(self, redis: aioredis.Redis, config: LearnerConfig, *, catalog: Catalog | None = None,
                 wall_ms=lambda: time.time_ns() // 1_000_000,
                 on_joined: Callable[[Joined, tuple[float, ...]], None] | None = None) -> None:
        self.redis = redis
        self.on_joined = on_joined  # sees each closed join and its item rewards (tests, tracing)
        self.config = config
        self.store = ModelStore(redis)
        self.wall_ms = wall_ms
        self.catalog = catalog if catalog is not None else load_learner_catalog(config.catalog)
        self._catalog_mtime = _mtime(config.catalog)
        # action features of records v2, one table per catalog version (decision/feature_tables.py)
        self.tables = FeatureTables(redis, self.catalog)
        self.process = self._start_training_process() if trainproc.wanted(config.train_process) else None
        if self.process is not None:
            weakref.finalize(self, self.process.close)
        self.trainer = Trainer(self.catalog, seed=config.seed, learn_from=config.learn_from, tables=self.tables,
                               process=self.process)
        self.joiner = Joiner()
        self.id = f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"
        self.counters: Counter[str] = Counter()
        self.timings: Counter[str] = Counter()  # seconds per phase
        self.watermark_ms = 0
        self._dec_ts = 0
        self._rew_ts = 0
        self._rew_caught = True
        self._acks: dict[str, list[str]] = {config.decision_stream: [], config.reward_stream: []}
        self._covered_decisions: list[str] = []  # entries trained, acked after the next checkpoint
        self._covered_rewards: list[str] = []
        self._forgotten: set[str] = set()  # pseudonyms of forgotten persons (_without_forgotten)
        self._forgotten_seen_ms: int | None = None
        self._trained_ids: list[str] = []
        self._joined_since = 0
        self._examples_since = 0
        self._last_checkpoint = time.monotonic()
        self._marks: _Marks | None = None  # a checkpoint due, taken in the next round (step)
        self._last_poll = 0.0
        self._last_renew = 0.0
        self._started = False
        self._next_batch: list | None = None  # decisions read during the last round's training
        self._renew = redis.register_script(_RENEW)
        self._release = redis.register_script(_RELEASE)

    # -- lifecycle ---------------------------------------------------------------

    def _start_training_process(self) -> TrainProcess | None:
        """The training process; with `auto`, None (VW learns here, as with
        `off`) when it cannot start, e.g. with no writable temporary
        directory for the fork server's socket."""
        try:
            return TrainProcess()
        except (OSError, EOFError, TrainProcessError) as e:
            if self.config.train_process == "on":
                raise
            log.warning("no training process (%s: %s); VW learns in the learner's process", type(e).__name__, e)
            return None

    async def start(self) -> None:
        await self._acquire_lock()
        c = self.config
        if c.reset:
            await self.redis.delete(CHECKPOINT)
            for stream in (c.decision_stream, c.reward_stream):
                try:
                    await self.redis.xgroup_destroy(stream, c.group)
                except ResponseError:
                    pass
            log.warning("learner reset: checkpoint and consumer groups dropped; retraining from the streams' start")
        for stream in (c.decision_stream, c.reward_stream):
            try:
                await self.redis.xgroup_create(stream, c.group, id="0", mkstream=True)
            except ResponseError as e:
                if "BUSYGROUP" not in str(e):
                    raise
        raw = await self.redis.get(CHECKPOINT)
        checkpoint = json.loads(raw) if raw else {}
        if checkpoint and checkpoint.get("v") != CHECKPOINT_VERSION:
            raise RuntimeError(f"{CHECKPOINT}: unsupported checkpoint version {checkpoint.get('v')!r}")
        entries = checkpoint.get("models", {})
        for m in self.trainer.models.values():
            await self._init_model(m, entries.get(m.mid))
        for did in checkpoint.get("trained", ()):
            self.joiner.remember(did, join.TRAINED)
        self.counters.update(checkpoint.get("counters", {}))
        self.watermark_ms = int(checkpoint.get("watermark_ms", 0))
        await self._poll_pointers(force=True)
        await self._replay()
        self._started = True
        log.info("learner %s started: %d model(s), %d pending decision(s) resumed, watermark %d; VW learns in %s",
                 self.id, len(self.trainer.models), len(self.joiner.pending), self.watermark_ms,
                 f"training process {self.process.process.pid}" if self.process is not None else "this process")

    async def _init_model(self, m: Model, entry: dict[str, Any] | None) -> None:
        latest = await self.store.latest_version(m.placement, m.arm)
        version = int(entry["version"]) if entry else 0
        # Bytes written past `latest` by a crashed snapshot (step 1 without
        # step 2) were never pointed to: their number is free again.
        m.next_version = max(latest, version) + 1
        if entry and m.apprentice is not None and entry.get("judge"):
            m.judge = Judge(m.apprentice, entry["judge"])
        if not entry or not version:
            if entry:
                m.examples = int(entry.get("examples", 0))
            return
        if entry.get("fingerprint") != m.fingerprint:
            log.warning("model %s: the catalog changed its policy since v%d; starting a new lineage", m.mid, version)
            self.trainer.reset(m)
            return
        data = await self.store.load_bytes(m.placement, m.arm, version)
        if data is None:
            raise RuntimeError(f"model {m.mid}: the checkpoint's version {version} is missing from Redis; "
                               "restore it or run `nba learn --reset` to retrain from the logs")
        self.trainer.load_snapshot(m, data)
        m.version = version
        m.examples = int(entry.get("examples", 0))
        if not await self.store.is_published(m.placement, m.arm, version):
            info = VersionInfo.from_json(entry["info"]) if entry.get("info") else VersionInfo(
                version, self.wall_ms(), m.examples)
            await self.store.publish(m.placement, m.arm, info)
            log.info("model %s: published v%d, which the last checkpoint committed", m.mid, version)

    async def _replay(self) -> None:
        """Re-read this consumer's pending entries (decisions first)."""
        c = self.config
        for stream in (c.decision_stream, c.reward_stream):
            last = "0"
            while True:
                entries = await self._read(stream, last)
                if not entries:
                    break
                if stream == c.decision_stream:
                    await self._on_decisions(entries)
                else:
                    for eid, fields in entries:
                        self._on_reward(eid, fields)
                last = entries[-1][0]
        await self._flush_acks()

    async def run(self, *, once: bool = False, stop: asyncio.Event | None = None) -> Counter[str]:
        """Learn until `stop` is set, or (`once`) until both streams are drained."""
        if not self._started:
            await self.start()
        try:
            while stop is None or not stop.is_set():
                drained = await self.step()
                if drained and once:
                    break
                if drained:
                    if stop is None:
                        await asyncio.sleep(self.config.idle_s)
                    else:
                        try:
                            await asyncio.wait_for(stop.wait(), self.config.idle_s)
                        except TimeoutError:
                            pass
            await self.checkpoint()
        finally:
            await self._release_lock()
        return self.counters

    async def close(self) -> None:
        await self.checkpoint()
        await self._release_lock()
        self.shutdown()

    def shutdown(self) -> None:
        """Stop the training process, if any (after the last checkpoint: what
        it learned since is dropped, as a crash would drop it)."""
        if self.process is not None:
            self.process.close()

    # -- one round ---------------------------------------------------------------

    async def step(self) -> bool:
        """Read a batch of each stream, close what the watermark allows, train,
        snapshot when due. True when both streams were drained.

        A checkpoint due at the end of a round is taken in the next one,
        pipelined with the training process: the models are saved once that
        round is decoded and joined (the training process learned the last
        round meanwhile), and the checkpoint is written after its examples
        are sent (VW learns them meanwhile). Each side used to wait for the
        other for the whole checkpoint. What it covers is exactly what was
        sent before it, as when it was taken at once. A round that may move
        a model (a rollback to follow, a catalog to reload) takes it first,
        whole, as before."""
        c = self.config
        if self._marks is not None and self._models_must_move():
            await self.checkpoint()
        if self._marks is None:  # else this round commits a checkpoint: a rollback is looked for next round
            await self._maybe_reload_catalog()
            await self._poll_pointers()  # a rollback takes effect before this round trains
        t0 = time.perf_counter()
        decisions, self._next_batch = self._next_batch, None
        if decisions is None:
            decisions = await self._read(c.decision_stream, ">")
        t1 = time.perf_counter()
        await self._on_decisions(decisions)
        t2 = time.perf_counter()
        decisions_drained = len(decisions) < c.batch
        if decisions_drained:
            for eid in self.joiner.decisions_drained():
                self._ack(c.reward_stream, eid)
                self.counters["rewards_orphan"] += 1
        rewards = await self._read(c.reward_stream, ">")
        t3 = time.perf_counter()
        for eid, fields in rewards:
            self._on_reward(eid, fields)
        self._rew_caught = len(rewards) < c.batch
        # While the decision stream has a backlog, its next batch is read
        # during this round's training (the loop gets the chance below every
        # _YIELD_EVERY decisions): the server assembles a batch of 1,000
        # records in ~2 ms, which the learner would otherwise wait for. The
        # read starts after this round's reward read, as the orphan rule
        # requires (docs/LEARNING.md, "Join semantics"), and ends within
        # this round, so no read is ever in flight between rounds.
        ahead = None if decisions_drained else asyncio.ensure_future(self._read(c.decision_stream, ">"))
        try:
            t4 = time.perf_counter()
            joined = await self._without_forgotten(self.joiner.close(self._advance_watermark()))
            snapshot, paused = None, 0.0
            if self._marks is not None:  # due last round: nothing was sent since
                marks, self._marks = self._marks, None
                t = time.perf_counter()
                snapshot = await self._snapshot(marks)
                paused = time.perf_counter() - t  # timed as checkpoint and train_wait, not train
            trainer, on_joined = self.trainer, self.on_joined
            covered, covered_rewards, trained_ids = self._covered_decisions, self._covered_rewards, self._trained_ids
            examples = 0
            for n, j in enumerate(joined, 1):
                rewards = trainer.rewards(j)
                if on_joined is not None:
                    on_joined(j, rewards)
                examples += trainer.learn(j, rewards)
                covered.append(j.entry_id)
                if j.reward_entries:
                    covered_rewards.extend(j.reward_entries)
                trained_ids.append(j.record.decision_id)
                if ahead is not None and not n % _YIELD_EVERY:
                    await asyncio.sleep(0)
            self.counters["joined"] += len(joined)
            self.counters["examples"] += examples
            self._examples_since += examples
            self._joined_since += len(joined)
            t5 = time.perf_counter()
            self.timings["read"] += (t1 - t0) + (t3 - t2)
            self.timings["decode_join"] += (t2 - t1) + (t4 - t3)
            self.timings["train"] += t5 - t4 - paused
            if snapshot is not None:
                if self.process is not None:
                    self.process.flush()  # this round's examples go now: VW learns them while the checkpoint is written
                await self._commit(snapshot)
            await self._flush_acks()
            if self._due():
                self._marks = self._mark()
            if ahead is not None:
                t6 = time.perf_counter()
                self._next_batch = await ahead
                self.timings["read"] += time.perf_counter() - t6
        finally:
            if ahead is not None and not ahead.done():  # an error above: its entries wait in the PEL
                ahead.cancel()
        await self._renew_lock()
        return decisions_drained and self._rew_caught

    def _models_must_move(self) -> bool:
        """Whether this round must look for a rollback or reload the catalog
        (either may move a model, so a checkpoint due is taken first, whole):
        the catalog changed, or the pointers were last polled two intervals
        ago (a round that commits a pipelined checkpoint skips the poll, so a
        rollback is followed within 2 x pointer_poll_s)."""
        return (time.monotonic() - self._last_poll >= 2 * self.config.pointer_poll_s
                or self._catalog_changed() is not None)

    async def _without_forgotten(self, joined: list[Joined]) -> list[Joined]:
        """The joined decisions minus those of persons forgotten since their
        rows were read (a row waits here for its join window, up to a day,
        while Forget deletes it from the stream): those are acknowledged and
        counted, never trained. The tombstones (`nba:forgotten`,
        decision/forget.py) are mirrored in memory: each round reads only
        those written since the newest one seen, less an overlap for clocks
        that disagree, so a round costs one small command and a set lookup
        per decision. Forget is rare; the mirror is not trimmed."""
        if not joined:
            return joined
        seen = self._forgotten_seen_ms
        since: int | str = "-inf" if seen is None else seen - _FORGOTTEN_OVERLAP_MS
        for pseudonym, at_ms in await self.redis.zrangebyscore(keys.FORGOTTEN, since, "+inf", withscores=True):
            self._forgotten.add(pseudonym)
            seen = int(at_ms) if seen is None else max(seen, int(at_ms))
        self._forgotten_seen_ms = seen if seen is not None else 0
        gone = self._forgotten
        if not gone:
            return joined
        kept = []
        c = self.config
        for j in joined:
            if j.record.person in gone:
                self._ack(c.decision_stream, j.entry_id)
                self._ack_many(c.reward_stream, list(j.reward_entries))
                self.counters["decisions_forgotten"] += 1
            else:
                kept.append(j)
        return kept

    def _due(self) -> bool:
        if not self._joined_since:
            return False
        return (self._examples_since >= self.config.snapshot_every
                or time.monotonic() - self._last_checkpoint >= self.config.snapshot_seconds)

    def _advance_watermark(self) -> int:
        """Event clock: the newest ts_ms read from either stream; real clock:
        now. Either way never past the rewards read while the reward stream
        has a backlog (a learner catching up must not close windows whose
        rewards it has not read yet), minus the allowed lateness."""
        if self.config.clock == "real":
            base = self.wall_ms()
        else:
            base = max(self._dec_ts, self._rew_ts)
        if not self._rew_caught:
            base = min(base, self._rew_ts)
        wm = base - int(self.config.lateness_s * 1000)
        if wm > self.watermark_ms:
            self.watermark_ms = wm
        return self.watermark_ms

    # -- entries -------------------------------------------------------------------

    async def _on_decisions(self, entries: list[tuple[str, dict | None]]) -> None:
        for eid, fields in entries:
            try:
                self._on_decision(eid, fields)
            except MissingFeatureTable as e:  # the first record of a catalog version: load its table
                await self.tables.load((e.version,))
                self._on_decision(eid, fields)

    def _on_decision(self, eid: str, fields: dict | None) -> None:
        c, counters = self.config, self.counters
        raw = fields.get("r") if fields else None
        if raw is None:  # trimmed away while pending, or not ours
            self._ack(c.decision_stream, eid)
            counters["decisions_lost"] += 1
            return
        try:
            record = decode_decision(raw, self.tables)
        except MissingFeatureTable as e:
            if self.tables.can_load(e.version):
                raise  # _on_decisions loads it
            self._ack(c.decision_stream, eid)
            counters["decisions_unresolved"] += 1
            if counters["decisions_unresolved"] <= 10:
                log.warning("decision log entry %s skipped: %s", eid, e)
            return
        except (ValueError, KeyError, TypeError, IndexError) as e:
            self._ack(c.decision_stream, eid)
            counters["decisions_bad"] += 1
            if counters["decisions_bad"] <= 10:
                log.warning("decision log entry %s is unreadable, skipped: %s", eid, e)
            return
        counters["decisions"] += 1
        if record.ts_ms > self._dec_ts:
            self._dec_ts = record.ts_ms
        if not self.trainer.wants(record):
            counters["decisions_ignored"] += 1
            self._ack(c.decision_stream, eid)
            for reid, outcome in self.joiner.ignore_decision(record):
                self._ack(c.reward_stream, reid)
                counters[f"rewards_{outcome}"] += 1
            return
        outcome = self.joiner.add_decision(record, eid)
        if outcome != join.PENDING:
            self._ack(c.decision_stream, eid)
            counters[f"decisions_{outcome}"] += 1
            return
        for reid, outcome in self.joiner.attach_buffered(record.decision_id):
            if outcome != join.ATTACHED:
                self._ack(c.reward_stream, reid)
            counters[f"rewards_{outcome}"] += 1

    def _on_reward(self, eid: str, fields: dict | None) -> None:
        c, counters = self.config, self.counters
        raw = fields.get("r") if fields else None
        if raw is None:
            self._ack(c.reward_stream, eid)
            counters["rewards_lost"] += 1
            return
        try:
            reward = decode_reward(raw)
        except (ValueError, KeyError, TypeError) as e:
            self._ack(c.reward_stream, eid)
            counters["rewards_bad"] += 1
            if counters["rewards_bad"] <= 10:
                log.warning("reward log entry %s is unreadable, skipped: %s", eid, e)
            return
        counters["rewards"] += 1
        if reward.ts_ms > self._rew_ts:
            self._rew_ts = reward.ts_ms
        outcome = self.joiner.add_reward(reward, eid)
        if outcome not in (join.ATTACHED, join.BUFFERED):
            self._ack(c.reward_stream, eid)
        counters[f"rewards_{outcome}"] += 1

    # -- the commit --------------------------------------------------------------

    async def checkpoint(self) -> list[tuple[str, int]]:
        """Snapshot every model that learned, commit, publish, acknowledge,
        now. Returns the (model, version) pairs published."""
        marks, self._marks = self._marks, None
        snapshot = await self._snapshot(marks or self._mark())
        return await self._commit(snapshot) if snapshot is not None else []

    def _mark(self) -> _Marks:
        """What a checkpoint records of the learner's own state, as it is now."""
        return _Marks(self.watermark_ms, len(self.joiner.pending), self.joiner.buffered, dict(self.counters))

    async def _snapshot(self, marks: _Marks) -> _Snapshot | None:
        """Every model that learned, as bytes, with the checkpoint that will
        commit them; what it covers is handed over to it (the learner goes on
        counting from zero). The models are as they were when `marks` was
        taken: nothing was sent to VW since. None when nothing was learned."""
        if not self._joined_since and not self._covered_decisions:
            return None
        if self.process is not None:
            t0 = time.perf_counter()
            self.process.sync()  # everything sent is learned and judged, or what failed is raised here
            self.timings["train_wait"] += time.perf_counter() - t0
        t0 = time.perf_counter()
        now = self.wall_ms()
        saved: list[tuple[Model, bytes, VersionInfo]] = []
        for m in self.trainer.models.values():
            if not m.interval.examples:
                continue
            n = m.next_version
            data = m.policy.save()
            h = m.health()
            saved.append((m, data, VersionInfo(
                version=n, created_ms=now, examples=m.examples, interval_examples=m.interval.examples,
                average_loss=h["average_loss"], greedy_share=h["greedy_share"], reward_rate=h["reward_rate"],
                parent=m.version or None, model_version=m.policy.version, bytes=len(data),
                served_as=f"{m.config.name}:v{n}",
                watermark_ms=marks.watermark_ms,
                note=f"mean top p {h['mean_top_p']:.3f}" if h["mean_top_p"] else "",
            )))
            m.interval = Interval()
        new = {m.mid: info for m, _, info in saved}
        document = {
            "v": CHECKPOINT_VERSION,
            "ts_ms": now,
            "learner": self.id,
            "watermark_ms": marks.watermark_ms,
            "pending": marks.pending,
            "buffered": marks.buffered,
            "models": {
                m.mid: {
                    "version": new[m.mid].version if m.mid in new else m.version,
                    "examples": m.examples,
                    "fingerprint": m.fingerprint,
                    **({"info": new[m.mid].to_json()} if m.mid in new else {}),
                    **({"judge": m.judge.state(), "apprentice": {"baseline": m.apprentice.baseline,
                                                                  "until": m.apprentice.until,
                                                                  "min_examples": m.apprentice.min_examples}}
                       if m.judge is not None and m.apprentice is not None else {}),
                }
                for m in self.trainer.models.values()
            },
            "trained": self._trained_ids,
            "counters": marks.counters,
        }
        graduating = self._graduating({m.mid: info.version for m, _, info in saved})
        snapshot = _Snapshot(saved, document, self._covered_decisions, self._covered_rewards, graduating)
        self._covered_decisions, self._covered_rewards, self._trained_ids = [], [], []
        self._joined_since = self._examples_since = 0
        self._last_checkpoint = time.monotonic()
        self.timings["checkpoint"] += time.perf_counter() - t0
        return snapshot

    async def _commit(self, snapshot: _Snapshot) -> list[tuple[str, int]]:
        """Write a snapshot's bytes, commit its checkpoint, publish, acknowledge
        (the order in the module's docstring)."""
        t0 = time.perf_counter()
        for m, data, info in snapshot.saved:
            await self.store.write_bytes(m.placement, m.arm, info.version, data)  # 1. bytes
        await self.redis.set(CHECKPOINT, json.dumps(snapshot.document, separators=(",", ":")))  # 2. commit
        for m, _, info in snapshot.saved:  # 3. publish
            m.version = m.served_seen = info.version
            m.next_version = info.version + 1
            await self.store.publish(m.placement, m.arm, info)
            await self.store.prune(m.placement, m.arm, self.config.keep_versions, protect=(m.version,))
            log.info("model %s: published v%d (%d examples, loss %s, greedy share %s)", m.mid, info.version,
                     info.examples, _fmt(info.average_loss), _fmt(info.greedy_share))
        self._ack_many(self.config.decision_stream, snapshot.decisions)  # 4. acknowledge
        self._ack_many(self.config.reward_stream, snapshot.rewards)
        await self._flush_acks()
        self.counters["checkpoints"] += 1
        await self._graduate(snapshot.graduating)
        self.timings["checkpoint"] += time.perf_counter() - t0
        return [(m.mid, info.version) for m, _, info in snapshot.saved]

    def _graduating(self, versions: dict[str, int]) -> list[tuple[Model, int, dict[str, Any]]]:
        """The apprentices whose evidence now beats their baseline, each with
        the version it will serve (`versions`: the ones this checkpoint
        publishes) and its switch's document. They graduate here: from now on
        they are no longer judged (Trainer.routes), as of what the checkpoint
        covers; the switch is written after the checkpoint commits."""
        out = []
        for m in self.trainer.models.values():
            version = versions.get(m.mid, m.version)
            if m.judge is None or m.graduated or m.apprentice is None or m.apprentice.until != "ope" or not version:
                continue
            ev = m.judge.evidence()
            if not ev.beats:
                continue
            reason = (f"learned policy SNIPS {ev.learned:.4f} (LCB {ev.learned_lcb:.4f}, {ev.eval_decisions} "
                      f"decisions) > baseline {ev.baseline:.4f} ({ev.baseline_decisions} decisions)")
            m.graduated = True
            out.append((m, version, {"by": "learner", "reason": reason, "version": version,
                                     "baseline_policy": m.apprentice.baseline, **ev.as_dict()}))
        return out

    async def _graduate(self, graduating: list[tuple[Model, int, dict[str, Any]]]) -> None:
        for m, version, evidence in graduating:
            await self.store.graduate(m.placement, m.arm, evidence)
            log.warning("apprentice %s graduated to its learned policy v%d: %s", m.mid, version, evidence["reason"])

    # -- rollbacks, switches, catalog ---------------------------------------------

    async def _poll_pointers(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_poll < self.config.pointer_poll_s:
            return
        self._last_poll = now
        models = list(self.trainer.models.values())
        if not models:
            return
        currents = await self.store.currents(m.key for m in models)
        switches = await self.store.switches(m.key for m in models)
        for m, switch in zip(models, switches):
            m.graduated = switch == GRADUATED
            current = currents[m.key]
            seen, m.served_seen = m.served_seen, current
            # Follow the pointer when someone else moved it (a rollback, also
            # one made while the learner was down), once per move; a fresh
            # lineage (--reset, a changed policy) never adopts older snapshots.
            if current is None or current == m.version or not m.version or current == seen:
                continue
            data = await self.store.load_bytes(m.placement, m.arm, current)
            if data is None:
                continue
            try:
                self.trainer.load_snapshot(m, data)
            except PolicyLoadError as e:
                log.error("model %s: the served version v%d cannot be trained on (%s); keeping v%d",
                          m.mid, current, e, m.version)
                continue
            infos = await self.store.infos(m.placement, m.arm)
            log.warning("model %s: served version moved from v%d to v%d (rollback); training continues from "
                        "v%d, what v%d learned since is dropped", m.mid, m.version, current, current, m.version)
            m.version = current
            m.examples = infos[current].examples if current in infos else m.examples
            m.interval = Interval()
            self.counters["rollbacks"] += 1

    def _catalog_changed(self) -> float | None:
        """The catalog file's modification time when it changed since it was
        last read, else None (also when it cannot be read now)."""
        mtime = _mtime(self.config.catalog)
        return None if mtime == self._catalog_mtime else mtime

    async def _maybe_reload_catalog(self) -> None:
        path = self.config.catalog
        mtime = self._catalog_changed()
        if mtime is None:
            return
        self._catalog_mtime = mtime
        try:
            catalog = await asyncio.to_thread(load_learner_catalog, path)
        except CatalogError as e:
            log.error("catalog reload refused, keeping version %s: %s", self.catalog.version, e)
            return
        if catalog.version == self.catalog.version:
            return
        fresh, dropped = self.trainer.set_catalog(catalog)
        self.catalog = catalog
        for m in fresh:
            await self._init_model(m, None)
        log.info("catalog reloaded (version %s): %d new model(s), %d dropped", catalog.version, len(fresh),
                 len(dropped))

    # -- redis helpers ---------------------------------------------------------------

    async def _read(self, stream: str, last_id: str) -> list[tuple[str, dict | None]]:
        c = self.config
        resp = await self.redis.xreadgroup(c.group, c.consumer, {stream: last_id}, count=c.batch)
        if not resp:
            return []
        if isinstance(resp, dict):  # RESP3
            return list(next(iter(resp.values()))[0]) if resp else []
        return list(resp[0][1])

    def _ack(self, stream: str, eid: str) -> None:
        self._acks[stream].append(eid)

    def _ack_many(self, stream: str, eids: list[str]) -> None:
        self._acks[stream].extend(eids)

    async def _flush_acks(self) -> None:
        for stream, ids in self._acks.items():
            for i in range(0, len(ids), 5000):
                await self.redis.xack(stream, self.config.group, *ids[i:i + 5000])
            ids.clear()

    async def _acquire_lock(self) -> None:
        ttl = int(self.config.lock_ttl_s * 1000)
        if not await self.redis.set(LEARNER_LOCK, self.id, nx=True, px=ttl):
            holder = await self.redis.get(LEARNER_LOCK)
            left = await self.redis.pttl(LEARNER_LOCK)
            raise LearnerBusy(f"another learner is running ({holder}); its lock {LEARNER_LOCK} expires "
                              f"{max(left, 0) / 1000:.0f}s after it stops renewing it")
        self._last_renew = time.monotonic()

    async def _renew_lock(self) -> None:
        now = time.monotonic()
        if now - self._last_renew < self.config.lock_ttl_s / 3:
            return
        if not await self._renew(keys=[LEARNER_LOCK], args=[self.id, int(self.config.lock_ttl_s * 1000)]):
            raise LearnerBusy(f"lost the learner lock {LEARNER_LOCK}: another learner may be running")
        self._last_renew = now

    async def _release_lock(self) -> None:
        try:
            await self._release(keys=[LEARNER_LOCK], args=[self.id])
        except Exception:  # noqa: BLE001 - exiting anyway; the lock expires
            log.warning("could not release %s; it expires in %.0fs", LEARNER_LOCK, self.config.lock_ttl_s)

    # -- status ----------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        return {
            "watermark_ms": self.watermark_ms,
            "pending": len(self.joiner.pending),
            "buffered": self.joiner.buffered,
            "counters": dict(self.counters),
            "models": {m.mid: {"version": m.version, **m.health()} for m in self.trainer.models.values()},
        }


def tune_gc() -> None:
    """For the learner process: the records it holds are acyclic, yet every
    parsed record allocates hundreds of objects, and CPython's default
    collector thresholds then rescan the pending decisions over and over
    (measured: decoding took 2x longer). Freeze what startup allocated and
    collect the young generation far less often."""
    import gc

    gc.collect()
    gc.freeze()
    gc.set_threshold(100_000, 50, 100)


def _mtime(path: Path) -> float | None:
    try:
        return path.stat().st_mtime
    except OSError:
        return None


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"
