"""The decide flow, as a readable list of stages.

    resolve identity -> fetch profile -> candidates -> eligibility -> consent
    -> pressure -> policy -> commit (reserve pressure; the log row is queued
    and written after the answer, decision/logwriter.py)

The profile fetch also takes the person's commit lease. A decision that got
it and picks one item without a global budget answers without waiting for
its reservation: nothing could have added an exposure for the person since
its pre-check read them, so the atomic check would grant it. The reservation
is sent before the answer and releases the lease; every other decision's
reservation for the person waits for that (docs/RULES.md, "Reservation").

No gRPC and no protobuf here: the servicer converts at the edge.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import redis.asyncio as aioredis

from decision import errors, metrics
from decision.catalog import Catalog, Placement
from decision.clock import Clock
from decision.domain import (
    Candidate,
    ChosenItem,
    DecideRequest,
    Decision,
    Profile,
    Removal,
    StageResult,
)
from decision.feature_tables import TablePublisher
from decision.ids import new_decision_id
from decision.logs import Logs
from decision.logwriter import DecisionLogWriter, Pending
from decision.policies import PolicyBook
from decision.privacy import Pseudonymizer
from decision.records import DecisionRecord, LoggedAction, LoggedItem, LoggedRemoval
from decision.stages import Situation, candidates, consent, eligibility, identity, policy, pressure
from decision.spool import Spool
from decision.store.guard import store_call
from decision.store.pressure_store import commit_served, release_lease, reserve
from decision.store.redis_store import LEASE_MS, ProfileStore
from decision.tracing import current_span_context, span

# Redis calls of one request get this much time at most, and never more than
# half of what is left of the caller's deadline.
DEFAULT_REDIS_BUDGET_S = 0.05
# An offer whose budget a reservation found spent is left out for this long,
# then probed again (a new day, a raised budget).
SPENT_BUDGET_MEMO_MS = 60_000
# A decision answers before its reservation is written only while its lease
# has at least half of its life left: the script then reaches Redis long
# before the lease expires, even behind a busy connection.
LEASE_FAST_S = LEASE_MS / 2000

log = logging.getLogger("nba.pipeline")

# The filtering stages, in order. Each removes candidates with a reason.
FILTERS: tuple[tuple[str, Callable[[Situation, tuple[Candidate, ...]], StageResult]], ...] = (
    ("candidates", candidates.apply),
    ("eligibility", eligibility.apply),
    ("consent", consent.apply),
    ("pressure", pressure.apply),
)


@dataclass(slots=True)
class _Lease:
    """The person's commit lease this decision took with its profile fetch."""

    key: str  # the person key it is on
    taken: float  # perf_counter() just before the fetch was sent
    handed_over: bool = False  # to a reservation, which releases it


@dataclass
class CatalogHolder:
    """The catalog and policies in force; replaced whole on reload, so a
    request in flight keeps the objects it started with."""

    catalog: Catalog
    book: PolicyBook


class Decider:
    def __init__(
        self,
        *,
        redis: aioredis.Redis,
        store: ProfileStore,
        logs: Logs,
        holder: CatalogHolder,
        clock: Clock,
        pseudonymizer: Pseudonymizer,
        rng: np.random.Generator | None = None,
        allow_as_of: bool = False,
        spool: Spool | None = None,
        redis_budget_s: float = DEFAULT_REDIS_BUDGET_S,
    ) -> None:
        self.redis = redis
        self.store = store
        self.holder = holder
        self.clock = clock
        self.pseudonymizer = pseudonymizer
        self.rng = rng if rng is not None else np.random.default_rng()
        self.allow_as_of = allow_as_of
        self.spool = spool
        self.redis_budget_s = redis_budget_s
        self._decisions = 0  # for sampling the per-stage latency histograms
        self._spent_budgets: dict[str, int] = {}  # offer id -> until when it is left out (ms)
        # Records reference their actions' features in the catalog version's
        # feature table: written at catalog load (server) and checked by the
        # log writer before each batch is logged (decision/feature_tables.py).
        self.tables = TablePublisher(redis, logs.config)
        # Log rows are written after the answer, in batches (decision/logwriter.py).
        self.log_writer = DecisionLogWriter(logs, self.tables, spool)
        # Reservations sent before the answer and not awaited (_commit_served).
        self._commits: set[asyncio.Future] = set()

    def _placement(self, catalog: Catalog, request: DecideRequest) -> Placement:
        placement = catalog.placements.get(request.placement)
        if placement is None:
            raise errors.NotFound(f"unknown placement {request.placement!r}", field="placement")
        unknown = [c for c in request.channels if c not in placement.channels]
        if unknown:
            raise errors.InvalidArgument(
                f"channel(s) {', '.join(map(repr, unknown))} not served by placement {placement.id!r} "
                f"(it serves {', '.join(placement.channels)})",
                field="channels",
            )
        if request.count > placement.max_items:
            raise errors.InvalidArgument(
                f"count {request.count} exceeds the placement's max_items {placement.max_items}", field="count"
            )
        return placement

    def _now(self, request: DecideRequest) -> int:
        if request.as_of_ms is None:
            return self.clock.now_ms()
        if not self.allow_as_of:
            raise errors.InvalidArgument("as_of is only accepted when the server runs with --allow-as-of", field="as_of")
        return request.as_of_ms

    def _budget(self, time_remaining_s: float | None) -> float:
        if time_remaining_s is None:
            return self.redis_budget_s
        if time_remaining_s <= 0:
            raise errors.DeadlineExceeded("the caller's deadline has passed")
        return min(self.redis_budget_s, time_remaining_s / 2)

    async def decide(self, request: DecideRequest, time_remaining_s: float | None = None) -> Decision:
        started = time.perf_counter()
        holder = self.holder  # one consistent catalog + policies for the whole request
        catalog = holder.catalog
        placement = self._placement(catalog, request)
        now = self._now(request)
        budget = self._budget(time_remaining_s)
        try:
            decision = await self._decide(request, holder, placement, now, budget)
        except errors.StoreUnavailable as e:
            log.warning("decide degraded: %s", e)
            decision = await self._degraded(request, catalog, placement, now)
        metrics.DECISIONS.add(1, (placement.id, decision.arm, decision.fallback, decision.degraded))
        metrics.DECIDE_DURATION.record(time.perf_counter() - started, {"placement": placement.id})
        return decision

    async def _decide(self, request: DecideRequest, holder: CatalogHolder, placement: Placement, now: int,
                      budget: float) -> Decision:
        catalog = holder.catalog
        self._decisions += 1
        sample = self._decisions % metrics.STAGE_SAMPLE == 0
        decision_id = new_decision_id(now)
        # Each fetch takes the lease of the person it reads first (dry runs
        # reserve nothing, so take none); the commit uses the counted one's.
        leases: list[_Lease] = []
        t0 = time.perf_counter()
        try:
            with span("nba.stage.identity"):
                lookup = identity.first_lookup(request)
                async with store_call("fetch_profile", budget):
                    profiles = await self._fetch(lookup.keys, now, request.dry_run, decision_id, leases, t0)
                target = identity.link_target(request, profiles)
                linked = None
                if target:
                    async with store_call("fetch_linked_profile", budget):
                        linked = (await self._fetch((target,), now, request.dry_run, decision_id, leases, t0))[0]
                resolution = identity.resolve(request, profiles[0], linked)
            t1 = time.perf_counter()
            if sample:
                metrics.STAGE_DURATION.record(t1 - t0, _STAGE_ATTRS["identity"])

            situation = Situation(
                request=request,
                catalog=catalog,
                placement=placement,
                profile=resolution.profile,
                counted_key=resolution.counted_key,
                anonymous=resolution.anonymous,
                now_ms=now,
                spent_budgets=self._spent(now),
            )

            allowed = catalog.candidates[placement.id]
            removed: list[Removal] = []
            for name, stage in FILTERS:
                with span(f"nba.stage.{name}"):
                    result = stage(situation, allowed)
                t0, t1 = t1, time.perf_counter()
                if sample:
                    metrics.STAGE_DURATION.record(t1 - t0, _STAGE_ATTRS[name])
                allowed = result.survivors
                removed.extend(result.removed)
            metrics.REMOVALS.add_each((r.stage, r.candidate.offer_id, _rule_name(r.rule)) for r in removed)

            with span("nba.stage.policy"):
                outcome = policy.choose(situation, allowed, holder.book, self.rng, request.count or 1)
            t0, t1 = t1, time.perf_counter()
            if sample:
                metrics.STAGE_DURATION.record(t1 - t0, _STAGE_ATTRS["policy"])

            lease = next((x for x in leases if x.key == situation.counted_key), None)
            with span("nba.stage.commit"):
                decision = await self._commit(situation, outcome, removed, decision_id, resolution.notes, budget,
                                              lease)
            if sample:
                metrics.STAGE_DURATION.record(time.perf_counter() - t1, _STAGE_ATTRS["commit"])
            return decision
        finally:
            # A lease the commit did not hand to a reservation (nothing picked,
            # another person counted, an error, the caller gone) is released
            # now rather than left to expire.
            for held in leases:
                if not held.handed_over:
                    self._track(release_lease(self.redis, held.key, decision_id),
                                "releasing a commit lease (it expires on its own)")

    async def _fetch(self, person_keys: tuple[str, ...], now: int, dry_run: bool, decision_id: str,
                     leases: list[_Lease], taken: float) -> tuple[Profile, ...]:
        if dry_run:
            return await self.store.fetch(person_keys, now)
        profiles, leased = await self.store.fetch_leased(person_keys, now, decision_id)
        if leased:
            leases.append(_Lease(person_keys[0], taken))
        return profiles

    def _spent(self, now: int) -> frozenset[str]:
        if not self._spent_budgets:
            return frozenset()
        for offer, until in list(self._spent_budgets.items()):
            if until <= now:
                del self._spent_budgets[offer]
        return frozenset(self._spent_budgets)

    async def _degraded(self, request: DecideRequest, catalog: Catalog, placement: Placement, now: int) -> Decision:
        """The store is unreachable: serve the placement's fallback on an
        inbound channel; contact nobody on an outbound one, since its pressure
        cannot be checked. Logged through the spool."""
        situation = Situation(request, catalog, placement, Profile(key=request.identity.key), request.identity.key,
                              request.identity.anonymous, now)
        items = tuple(i for i in self._fallback_items(situation)
                      if not catalog.channels[i.candidate.channel].outbound
                      and (not request.channels or i.candidate.channel in request.channels))
        decision_id = new_decision_id(now)
        logged = not request.dry_run and self.spool is not None
        if logged:
            record = DecisionRecord(
                decision_id=decision_id, ts_ms=now, placement=placement.id, arm="degraded", policy="fallback",
                model_version="", catalog_version=catalog.version,
                person=self.pseudonymizer.person(situation.counted_key), anonymous=situation.anonymous,
                assignment="request", context={}, actions=(), items=(), fallback=True,
                request_id=request.request_id, join_window_s=placement.reward.window_s,
                default_reward=placement.reward.default, simulated=request.as_of_ms is not None)
            await self.spool.add_decision(record, situation.counted_key,
                                          [(i.candidate.offer_id, i.rank) for i in items])
            metrics.SPOOLED.add(1, {"kind": "decision"})
        notes = ("state store unreachable: degraded decision (fallback on inbound channels, "
                 "no outbound contact)",) if request.explain else ()
        return Decision(decision_id=decision_id, placement=placement.id, items=items, arm="degraded",
                        policy="fallback", model_version="", fallback=True, logged=logged, notes=notes,
                        request_id=request.request_id, degraded=True)

    async def _commit(self, situation: Situation, outcome: policy.PolicyOutcome, removed: list[Removal],
                      decision_id: str, notes: tuple[str, ...], budget: float, lease: _Lease | None) -> Decision:
        request = situation.request
        catalog = situation.catalog
        picks = list(outcome.picks)
        if picks and not request.dry_run:
            if lease is not None:  # the counted person's (_decide): the reservation below releases it
                lease.handed_over = True
            if (lease is not None and len(picks) == 1
                    and catalog.offers[picks[0].candidate.offer_id].budget is None
                    and time.perf_counter() - lease.taken < LEASE_FAST_S):
                # Granted: the pre-check read the person's exposures under the lease.
                self._commit_served(situation, picks[0].candidate, decision_id)
                refusals: tuple = (None,)
            else:
                async with store_call("reserve", budget):
                    refusals = await reserve(self.redis, situation, [p.candidate for p in picks], decision_id,
                                             wait_s=budget / 2)
            kept = []
            for pick, refusal in zip(picks, refusals):
                if refusal is None:
                    kept.append(pick)
                else:
                    metrics.RESERVATION_REFUSALS.add(1, {"offer": refusal.candidate.offer_id})
                    if refusal.rule.startswith("budget "):
                        self._spent_budgets[refusal.candidate.offer_id] = situation.now_ms + SPENT_BUDGET_MEMO_MS
                    removed.append(Removal(refusal.candidate, "commit", refusal.rule,
                                           "reservation refused: " + (refusal.detail or "a concurrent decision took the last slot")))
            picks = kept

        fallback = not picks
        items: tuple[ChosenItem, ...]
        if fallback:
            items = self._fallback_items(situation)
        else:
            items = tuple(
                ChosenItem(p.candidate, rank, p.probability, p.score, catalog.contents[p.candidate.content_id].template)
                for rank, p in enumerate(picks, start=1)
            )

        logged = not request.dry_run
        if logged:
            # The row is built and written after the answer; a Reward of this
            # decision waits for it (Rewards.accept -> DecisionLogWriter.landed).
            removals = tuple(removed)
            self.log_writer.submit(Pending(
                decision_id, catalog,
                lambda: self._record(situation, outcome, items, picks, removals, decision_id, fallback),
                situation.counted_key, [(i.candidate.offer_id, i.rank) for i in items], current_span_context()))

        return Decision(
            decision_id=decision_id,
            placement=situation.placement.id,
            items=items,
            arm=outcome.arm,
            policy=outcome.policy if not fallback else "fallback",
            model_version=outcome.model_version,
            fallback=fallback,
            logged=logged,
            removed=tuple(removed),
            allowed=outcome.candidates,
            probabilities=outcome.probabilities,
            scores=outcome.scores,
            notes=notes + (f"pressure counted on person key {situation.counted_key!r}",) if request.explain else (),
            request_id=request.request_id,
        )

    def _commit_served(self, situation: Situation, candidate: Candidate, decision_id: str) -> None:
        """Send the reservation of an item served under the decision's lease
        (written before the answer on the request path's client); its outcome
        is counted, and spooled for later when it is unknown."""
        # The span covers the send only: the script lands after the answer.
        with span("redis reserve", {"db.system": "redis", "db.operation": "reserve", "nba.after_answer": True}):
            future, script_keys, args = commit_served(self.redis, situation, (candidate,), decision_id)
        person = situation.counted_key

        def landed(f: asyncio.Future) -> None:
            if f.cancelled() or f.exception() is not None:
                error = "cancelled" if f.cancelled() else repr(f.exception())
                metrics.COMMITS_AFTER_ANSWER.add(1, {"outcome": "unknown"})
                if self.spool is None:
                    log.error("decision %s: the reservation of an answered item failed (%s); the person's "
                              "pressure misses one exposure", decision_id, error)
                    return
                log.warning("decision %s: the reservation of an answered item failed (%s); spooled",
                            decision_id, error)
                self._track(asyncio.ensure_future(
                    self.spool.add_exposure(self.pseudonymizer.person(person), script_keys, args)),
                    "spooling an answered item's reservation (the person's pressure misses one exposure)")
                return
            status, verdicts = f.result()
            code = int(verdicts[0][0])
            if int(status) == 2:
                outcome = "lease_expired"
            elif code != 0:
                outcome = "over_limit"
            else:
                outcome = "recorded"
            metrics.COMMITS_AFTER_ANSWER.add(1, {"outcome": outcome})
            if outcome != "recorded":
                log.warning("decision %s: answered under a lease, then its reservation found %s (verdict %s); "
                            "the exposure is counted", decision_id,
                            "the lease expired first" if outcome == "lease_expired" else "a limit reached",
                            [int(x) for x in verdicts[0]])

        self._track(future, landed=landed)

    def _track(self, future: asyncio.Future, what: str = "", landed: Callable[[asyncio.Future], None] | None = None
               ) -> None:
        """Keep work started without waiting alive until it is done; its
        outcome is handled by `landed`, or a failure logged as `what`."""
        self._commits.add(future)
        future.add_done_callback(self._commits.discard)
        future.add_done_callback(landed or (lambda f: _logged(f, what)))

    async def drain_commits(self, timeout_s: float) -> None:
        """Wait (at stop) for the reservations and lease releases in flight."""
        if self._commits:
            await asyncio.wait(set(self._commits), timeout=timeout_s)

    def _fallback_items(self, situation: Situation) -> tuple[ChosenItem, ...]:
        placement = situation.placement
        if placement.fallback_offer is None or placement.fallback_content is None:
            return ()
        content = situation.catalog.contents[placement.fallback_content]
        return (ChosenItem(Candidate(placement.fallback_offer, content.id, content.channel), 1, 1.0, 0.0, content.template),)

    def _record(self, situation: Situation, outcome: policy.PolicyOutcome, items: tuple[ChosenItem, ...],
                picks: list[policy.Pick], removed: tuple[Removal, ...], decision_id: str,
                fallback: bool) -> DecisionRecord:
        request = situation.request
        # features=None: by reference to the catalog version's feature table (records v2)
        actions = tuple(
            LoggedAction(c.offer_id, c.content_id, c.channel, None, p, s)
            for c, p, s in zip(outcome.candidates, outcome.probabilities, outcome.scores)
        )
        if fallback:
            logged_items: tuple[LoggedItem, ...] = ()
        else:
            logged_items = tuple(LoggedItem(rank, p.index, p.probability, p.score) for rank, p in enumerate(picks, start=1))
        return DecisionRecord(
            decision_id=decision_id,
            ts_ms=situation.now_ms,
            placement=situation.placement.id,
            arm=outcome.arm,
            policy=outcome.policy,
            model_version=outcome.model_version,
            catalog_version=situation.catalog.version,
            person=self.pseudonymizer.person(situation.counted_key),
            anonymous=situation.anonymous,
            assignment=outcome.assignment,
            context=outcome.context,
            actions=actions,
            items=logged_items,
            fallback=fallback,
            removed=tuple(LoggedRemoval(r.candidate.offer_id, r.candidate.content_id, r.candidate.channel, r.stage, r.rule)
                          for r in removed),
            request_id=request.request_id,
            join_window_s=situation.placement.reward.window_s,
            default_reward=situation.placement.reward.default,
            simulated=request.as_of_ms is not None,
        )


def _logged(f: asyncio.Future, what: str) -> None:
    if not f.cancelled() and f.exception() is not None:
        log.warning("%s failed: %r", what, f.exception())


_STAGE_ATTRS = {name: {"stage": name} for name in ("identity", "policy", "commit", *(n for n, _ in FILTERS))}


_RULE_NAMES: dict[str, str] = {}


def _rule_name(rule: str) -> str:
    """The rule without its live numbers: "cap offer 3/86400s (count 3)" ->
    "cap offer 3/86400s", so metric labels stay bounded by the catalog."""
    name = _RULE_NAMES.get(rule)
    if name is None:
        if len(_RULE_NAMES) >= 10_000:
            _RULE_NAMES.clear()
        name = _RULE_NAMES[rule] = rule.split(" (", 1)[0][:120]
    return name
