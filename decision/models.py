"""Replica side of the learning loop: serve the learner's snapshots.

`ModelWatcher`, one per service process:
- `load()`, before the server takes traffic: the current snapshot of every
  learning (placement, arm), and the apprentice switches;
- `run()`: wakes on a `nba:models` pub/sub message or every `poll_s`
  (polling the `:current` pointers is the truth: a pub/sub message can be
  lost, e.g. across a reconnect), loads a new version off the event loop
  (`bandits.registry.load_policy`) and swaps it in with `PolicyBook.swap`:
  one dict assignment between requests; a request in flight keeps the
  object it already took, so no request fails or waits;
- refuses a corrupt or incompatible snapshot (bad envelope or checksum, VW
  refusing the model, or a policy other than the catalog's: kind, name,
  params, reward range): the current model stays, the refusal is counted,
  logged once per version, and `status()` reports the last error for health
  and metrics.

Served versions: a snapshot serves as `SnapshotPolicy`, whose `version`
("vw_champion:v12") names the snapshot, so every decision logs the exact
model it used.

Apprentice arms (catalog `apprentice:`): until the arm's switch
`nba:apprentice:{p}:<arm>` says "graduated", the arm serves its baseline
policy (decisions log the baseline's name and probabilities); afterwards
its newest snapshot.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import redis.asyncio as aioredis

from bandits.policy import Action, Context, Policy, PolicyLoadError, Ranking
from bandits.registry import load_policy, make_policy
from decision import metrics
from decision.catalog import Apprentice, Catalog, PolicyConfig
from decision.learning.trainer import fingerprint, load_compatible
from decision.policies import PolicyBook
from decision.store import models as keys
from decision.store.models import GRADUATED, ModelStore

if TYPE_CHECKING:
    from decision.pipeline import CatalogHolder

log = logging.getLogger("nba.models")


def _raise_if_cancelled() -> None:
    """End a loop whose task was cancelled even when the CancelledError got
    lost on its way up: Python 3.11's asyncio.wait_for, which redis-py sends
    every command through (socket_timeout), returns normally when the cancel
    lands just as the command was sent (CPython gh-86296, fixed in 3.12). The
    task stays marked as cancelling, which is what this reads; a lost cancel
    otherwise kept `run()` polling through the service's shutdown, and the
    process never exited."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


class SnapshotPolicy:
    """A policy loaded from snapshot `snapshot`: the same policy, whose
    version names the snapshot. `params` are the catalog's own, so a catalog
    reload that leaves the policy unchanged keeps this object
    (PolicyBook.from_catalog compares name, kind and params)."""

    def __init__(self, inner: Policy, snapshot: int, params: Mapping[str, Any] | None = None) -> None:
        self.inner = inner
        self.snapshot = snapshot
        self.name = inner.name
        self.kind = inner.kind
        self.learns = inner.learns
        self.params = params if params is not None else inner.params
        self._version = f"{inner.name}:v{snapshot}"

    @property
    def version(self) -> str:
        return self._version

    def rank(self, context: Context, actions: Sequence[Action]) -> Ranking:
        return self.inner.rank(context, actions)

    def learn(self, context: Context, actions: Sequence[Action], chosen: int, probability: float,
              reward: float) -> None:
        self.inner.learn(context, actions, chosen, probability, reward)

    def save(self) -> bytes:
        return self.inner.save()

    @classmethod
    def load(cls, data: bytes) -> Policy:
        return load_policy(data)

    def __getattr__(self, name: str) -> Any:  # health(), average_loss ... of the inner policy
        return getattr(self.inner, name)

    def __repr__(self) -> str:
        return f"SnapshotPolicy({self.inner!r}, v{self.snapshot})"


@dataclass(slots=True)
class _Slot:
    placement: str
    arm: str
    config: PolicyConfig
    reward_range: tuple[float, float]
    fingerprint: str
    apprentice: Apprentice | None
    snapshot: SnapshotPolicy | None = None
    refused: int | None = None  # the version refused last (not retried until the pointer moves)
    graduated: bool = False


@dataclass(slots=True)
class ModelStatus:
    """What health and metrics read (`ModelWatcher.status()`)."""

    served: dict[str, str] = field(default_factory=dict)  # "p:a" -> served policy version
    snapshots: dict[str, int] = field(default_factory=dict)  # "p:a" -> snapshot version loaded
    apprentice: dict[str, str] = field(default_factory=dict)  # "p:a" -> "baseline" | "graduated"
    swaps: int = 0
    refused: int = 0
    last_error: str | None = None
    last_error_ms: int | None = None
    last_sync_ms: int | None = None
    pubsub: bool = False


class ModelWatcher:
    def __init__(self, redis: aioredis.Redis, holder: Callable[[], "CatalogHolder"], *, poll_s: float = 1.0,
                 seed: int = 0) -> None:
        self.redis = redis
        self.store = ModelStore(redis)
        self.holder = holder  # the App's current holder (replaced whole on catalog reload)
        self.poll_s = poll_s
        self.seed = seed
        self._slots: dict[tuple[str, str], _Slot] = {}
        self._baselines: dict[tuple[Any, ...], Policy] = {}  # (catalog version, name, range) -> baseline
        self._learns: dict[str, bool] = {}
        self._catalog_version: str | None = None
        self._book: PolicyBook | None = None
        self._state = ModelStatus()
        self._lock = asyncio.Lock()

    # -- public ------------------------------------------------------------------

    async def load(self) -> None:
        """Load every learning arm's current snapshot (service start)."""
        await self.sync()

    async def run(self) -> None:
        while True:
            _raise_if_cancelled()
            try:
                await self._run_subscribed()
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 - pub/sub is only a wake-up; polling goes on
                self._state.pubsub = False
                log.debug("model notifications unavailable (%s); polling every %.1fs", e, self.poll_s)
                await self._sleep_polling(self.poll_s)

    def status(self) -> ModelStatus:
        return self._state

    def last_error(self) -> str | None:
        return self._state.last_error

    def adopt(self, book: PolicyBook, catalog: Catalog) -> None:
        """Install what this replica serves into a freshly built book, without
        I/O (call right after a catalog reload builds one, before it serves)."""
        self._configure(catalog)
        for slot in self._slots.values():
            self._install(book, slot, catalog)
        self._book = book

    # -- the loop ------------------------------------------------------------------

    async def _run_subscribed(self) -> None:
        pubsub = self.redis.pubsub()
        try:
            await pubsub.subscribe(keys.MODEL_CHANNEL)
            self._state.pubsub = True
            while True:
                deadline = time.monotonic() + self.poll_s
                while time.monotonic() < deadline:
                    _raise_if_cancelled()
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.05)
                    if message is not None or self._holder_changed():
                        break
                await self._sync_logged()
        finally:
            self._state.pubsub = False
            try:
                await pubsub.aclose()
            except Exception:  # noqa: BLE001
                pass

    async def _sleep_polling(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not self._holder_changed():
            _raise_if_cancelled()
            await asyncio.sleep(0.05)
        await self._sync_logged()

    def _holder_changed(self) -> bool:
        return self._book is not None and self.holder().book is not self._book

    async def _sync_logged(self) -> None:
        try:
            await self.sync()
        except asyncio.CancelledError:
            raise
        except Exception as e:  # noqa: BLE001 - Redis down: keep serving what we have
            self._error(f"model sync failed: {e}")

    # -- one sync ------------------------------------------------------------------

    async def sync(self) -> None:
        """Read the pointers and switches, load what changed, swap."""
        async with self._lock:
            catalog = self.holder().catalog
            self._configure(catalog)
            slots = list(self._slots.values())
            if slots:
                currents = await self.store.currents((s.placement, s.arm) for s in slots)
                switches = await self.store.switches((s.placement, s.arm) for s in slots)
                for slot, switch in zip(slots, switches):
                    slot.graduated = switch == GRADUATED
                    await self._load(slot, currents[(slot.placement, slot.arm)])
            # the holder may have been replaced while we loaded: install into the newest
            holder = self.holder()
            if holder.catalog.version == catalog.version:
                for slot in slots:
                    self._install(holder.book, slot, holder.catalog)
                self._book = holder.book
            self._state.last_sync_ms = time.time_ns() // 1_000_000

    def _configure(self, catalog: Catalog) -> None:
        if catalog.version == self._catalog_version:
            return
        slots: dict[tuple[str, str], _Slot] = {}
        for placement in catalog.placements.values():
            rr = placement.reward.range
            for arm in placement.arms:
                cfg = catalog.policies[arm.policy]
                if not self._learning(cfg, rr):
                    continue
                fp = fingerprint(cfg, rr)
                old = self._slots.get((placement.id, arm.name))
                slot = _Slot(placement.id, arm.name, cfg, rr, fp, arm.apprentice)
                if old is not None and old.fingerprint == fp:
                    slot.snapshot, slot.refused, slot.graduated = old.snapshot, old.refused, old.graduated
                    if slot.snapshot is not None:  # keep the object; refresh the params it shows
                        slot.snapshot.params = cfg.params
                slots[(placement.id, arm.name)] = slot
        self._slots = slots
        self._baselines = {k: v for k, v in self._baselines.items() if k[0] == catalog.version}
        self._catalog_version = catalog.version

    def _learning(self, cfg: PolicyConfig, rr: tuple[float, float]) -> bool:
        fp = fingerprint(cfg, rr)
        known = self._learns.get(fp)
        if known is None:
            try:
                known = bool(make_policy(cfg.kind, cfg.name, cfg.params, reward_range=rr, seed=self.seed).learns)
            except ValueError:
                known = False
            self._learns[fp] = known
        return known

    async def _load(self, slot: _Slot, current: int | None) -> None:
        if current is None or current == slot.refused:
            return
        if slot.snapshot is not None and slot.snapshot.snapshot == current:
            return
        mid = f"{slot.placement}:{slot.arm}"
        data = await self.store.load_bytes(slot.placement, slot.arm, current)
        try:
            if data is None:
                raise PolicyLoadError(f"the bytes of v{current} are missing")
            policy = await asyncio.to_thread(load_compatible, data, slot.config, slot.reward_range)
        except (PolicyLoadError, ValueError) as e:
            slot.refused = current
            self._state.refused += 1
            metrics.MODEL_LOAD_ERRORS.add(1, {"placement": slot.placement, "arm": slot.arm})
            kept = f"v{slot.snapshot.snapshot}" if slot.snapshot else "the catalog's untrained policy"
            self._error(f"model {mid} v{current} refused, keeping {kept}: {e}")
            return
        slot.snapshot = SnapshotPolicy(policy, current, slot.config.params)
        slot.refused = None
        self._state.snapshots[mid] = current

    def _install(self, book: PolicyBook, slot: _Slot, catalog: Catalog) -> None:
        mid = f"{slot.placement}:{slot.arm}"
        key = (slot.placement, slot.arm)
        if key not in book.policies:
            return
        if slot.apprentice is not None and not slot.graduated:
            want = self._baseline(catalog, slot.apprentice.baseline, slot.reward_range)
            self._state.apprentice[mid] = "baseline"
        else:
            want = slot.snapshot
            if slot.apprentice is not None:
                self._state.apprentice[mid] = "graduated"
            if want is None:
                current = book.policies[key]
                if current.name == slot.config.name and current.kind == slot.config.kind:
                    self._state.served[mid] = current.version
                    return  # the catalog's own (untrained) policy serves until a snapshot exists
                want = make_policy(slot.config.kind, slot.config.name, slot.config.params,
                                   reward_range=slot.reward_range, seed=self.seed)
        if book.policies[key] is not want:
            previous = book.policies[key].version
            book.swap(slot.placement, slot.arm, want)  # one assignment, between requests
            self._state.swaps += 1
            log.info("model %s: serving %s (was %s)", mid, want.version, previous)
        self._state.served[mid] = want.version

    def _baseline(self, catalog: Catalog, name: str, rr: tuple[float, float]) -> Policy:
        key = (catalog.version, name, rr)
        policy = self._baselines.get(key)
        if policy is None:
            cfg = catalog.policies[name]
            policy = self._baselines[key] = make_policy(cfg.kind, cfg.name, cfg.params, reward_range=rr,
                                                        seed=self.seed)
        return policy

    def _error(self, message: str) -> None:
        self._state.last_error = message
        self._state.last_error_ms = time.time_ns() // 1_000_000
        log.warning("%s", message)
