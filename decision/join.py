"""Join decisions with their rewards, from the logs alone.

Reads the two log streams (decision/logs.py) and nothing else of the service,
so export, off-policy evaluation, reports and (later) the learner can share
it. The pure core, `join_records`, takes records and a "now"; `read_joined`
feeds it from Redis.

Semantics, per logged item (a decision of k items has k):
- its reward is the sum of the rewards of the events naming its offer whose
  `occurred_ms` falls inside the decision's join window
  [ts_ms, ts_ms + join_window_s], clipped to the placement's declared reward
  range when one is given (several events: click + convert ...);
- an item without any event in the window gets the decision's logged
  `default_reward` once the window has closed;
- a decision whose window is still open at `now_ms` is *pending*: excluded
  (its reward is not final) and counted;
- events after the window are ignored and counted as late.

Excluded and counted, never guessed:
- fallback decisions (no policy choice was logged: nothing to learn or
  evaluate);
- decisions where the commit stage refused a sampled item (a cap taken by a
  concurrent decision): the surviving items are renumbered, so their logged
  conditional probabilities no longer describe the draws;
- records that do not parse (another record version, corrupt JSON);
- v2 records whose catalog version's feature table is gone (expired, never
  written): their action features cannot be known (decision/feature_tables.py).

Records come back resolved: every action carries its features, read from its
catalog version's feature table for v2 records (decision/records.py), so
export and off-policy evaluation see the same features the policy saw.

"now" defaults to a watermark: the later of the wall clock and the newest
time found in either stream, so logs of a simulation that ran ahead of the
wall clock (`--allow-as-of`) still close their windows.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field

from decision.feature_tables import FeatureTables, MissingFeatureTable
from decision.logs import LogConfig
from decision.records import DecisionRecord, RewardRecord

BATCH = 2_000


@dataclass(frozen=True, slots=True)
class JoinQuery:
    placement: str
    since_ms: int | None = None  # inclusive, on the decision's ts_ms
    until_ms: int | None = None  # exclusive
    arm: str | None = None
    now_ms: int | None = None  # None: the watermark (module docstring)
    reward_range: tuple[float, float] | None = None  # None: no clipping

    def selects(self, r: DecisionRecord) -> bool:
        return (r.placement == self.placement
                and (self.arm is None or r.arm == self.arm)
                and (self.since_ms is None or r.ts_ms >= self.since_ms)
                and (self.until_ms is None or r.ts_ms < self.until_ms))


@dataclass(frozen=True, slots=True)
class JoinedItem:
    rank: int
    action: int  # index into record.actions
    offer_id: str
    probability: float  # logged, conditional on the items ranked before
    reward: float  # summed, clipped; or the default
    events: int  # reward events joined
    defaulted: bool  # no event in the window: the default reward


@dataclass(frozen=True, slots=True)
class JoinedDecision:
    record: DecisionRecord
    items: tuple[JoinedItem, ...]

    @property
    def first(self) -> JoinedItem:
        return self.items[0]


@dataclass(frozen=True, slots=True)
class JoinStats:
    now_ms: int
    decisions: int = 0  # in range (placement, arm, time)
    joined: int = 0
    pending: int = 0
    fallback: int = 0
    refused: int = 0
    unreadable: int = 0  # decision or reward records that did not parse
    unresolved: int = 0  # in-range v2 decisions whose feature table is gone
    rewards: int = 0  # events joined into an item
    late_rewards: int = 0
    clipped: int = 0  # items whose summed reward was clipped to the range

    def excluded_note(self) -> str:
        parts = [f"{n} {what}" for n, what in (
            (self.pending, "pending (join window still open)"), (self.fallback, "fallback"),
            (self.refused, "with an item refused at commit"), (self.unreadable, "unreadable record(s)"),
            (self.unresolved, "without their catalog version's feature table"),
        ) if n]
        return "excluded: " + ", ".join(parts) if parts else "nothing excluded"


@dataclass(frozen=True, slots=True)
class JoinResult:
    decisions: tuple[JoinedDecision, ...]
    stats: JoinStats
    # every in-range record, excluded ones included (reports count removals,
    # model versions, fallbacks over all of them)
    records: tuple[DecisionRecord, ...] = field(default=())


def _clip(x: float, rng: tuple[float, float] | None) -> tuple[float, bool]:
    if rng is None:
        return x, False
    lo, hi = rng
    if x < lo:
        return lo, True
    if x > hi:
        return hi, True
    return x, False


def join_records(decisions: Iterable[DecisionRecord], rewards: Iterable[RewardRecord], query: JoinQuery, *,
                 now_ms: int, unreadable: int = 0, unresolved: int = 0) -> JoinResult:
    """The join of already-read records (see the module docstring); v2
    records should be resolved first (`resolve_selected`)."""
    selected = sorted((r for r in decisions if query.selects(r)), key=lambda r: (r.ts_ms, r.decision_id))
    wanted = {r.decision_id for r in selected}
    by_item: dict[tuple[str, str], list[RewardRecord]] = {}
    for ev in rewards:
        if ev.decision_id in wanted:
            by_item.setdefault((ev.decision_id, ev.offer_id), []).append(ev)

    out: list[JoinedDecision] = []
    pending = fallback = refused = joined_events = late = clipped = 0
    for r in selected:
        window_end = r.ts_ms + r.join_window_s * 1000
        if not r.items:
            fallback += 1
            continue
        if any(x.stage == "commit" for x in r.removed):
            refused += 1
            continue
        if now_ms < window_end:
            pending += 1
            continue
        items = []
        for it in sorted(r.items, key=lambda i: i.rank):
            offer = r.actions[it.action].offer_id
            events = by_item.get((r.decision_id, offer), ())
            inside = [e for e in events if e.occurred_ms <= window_end]
            late += len(events) - len(inside)
            joined_events += len(inside)
            if inside:
                reward, was_clipped = _clip(sum(e.reward for e in inside), query.reward_range)
                clipped += was_clipped
            else:
                reward = r.default_reward
            items.append(JoinedItem(it.rank, it.action, offer, it.probability, float(reward), len(inside),
                                    not inside))
        out.append(JoinedDecision(r, tuple(items)))
    stats = JoinStats(now_ms=now_ms, decisions=len(selected), joined=len(out), pending=pending, fallback=fallback,
                      refused=refused, unreadable=unreadable, unresolved=unresolved, rewards=joined_events,
                      late_rewards=late, clipped=clipped)
    return JoinResult(tuple(out), stats, tuple(selected))


# ---- reading the streams --------------------------------------------------------

async def stream_entries(redis, stream: str, batch: int = BATCH) -> AsyncIterator[tuple[str, str]]:
    """(entry id, record JSON) of a whole stream, oldest first, in batches."""
    start = "-"
    while True:
        rows = await redis.xrange(stream, min=start, max="+", count=batch)
        for entry_id, fields in rows:
            yield entry_id, fields.get("r", "")
        if len(rows) < batch:
            return
        start = "(" + rows[-1][0]


def _parse(cls, text):
    try:
        return cls.from_json(text)
    except (ValueError, KeyError, TypeError):
        return None


async def read_records(redis, config: LogConfig = LogConfig()
                       ) -> tuple[list[DecisionRecord], list[RewardRecord], int, int]:
    """Every decision and reward record in the streams (as logged: v2
    decisions unresolved, see `resolve_selected`), the number that did not
    parse, and the newest time seen (ms)."""
    decisions: list[DecisionRecord] = []
    rewards: list[RewardRecord] = []
    bad = 0
    newest = 0
    async for _, text in stream_entries(redis, config.decision_stream):
        rec = _parse(DecisionRecord, text)
        if rec is None:
            bad += 1
            continue
        decisions.append(rec)
        newest = max(newest, rec.ts_ms)
    async for _, text in stream_entries(redis, config.reward_stream):
        ev = _parse(RewardRecord, text)
        if ev is None:
            bad += 1
            continue
        rewards.append(ev)
        newest = max(newest, ev.ts_ms, ev.occurred_ms)
    return decisions, rewards, bad, newest


async def resolve_selected(decisions: Iterable[DecisionRecord], query: JoinQuery, tables: FeatureTables
                           ) -> tuple[list[DecisionRecord], int]:
    """The decisions the query selects, resolved (features inline), and how
    many could not be (no feature table). Only the selected ones: resolving
    costs a copy of each record."""
    selected = [r for r in decisions if query.selects(r)]
    await tables.load_for(selected)
    out: list[DecisionRecord] = []
    unresolved = 0
    for r in selected:
        try:
            out.append(tables.resolve(r))
        except (MissingFeatureTable, ValueError):
            unresolved += 1
    return out, unresolved


def watermark(newest_ms: int) -> int:
    return max(time.time_ns() // 1_000_000, newest_ms)


async def read_joined(redis, query: JoinQuery, config: LogConfig = LogConfig()) -> JoinResult:
    """The join of the placement's decisions in the query's range, from Redis."""
    decisions, rewards, bad, newest = await read_records(redis, config)
    now = query.now_ms if query.now_ms is not None else watermark(newest)
    resolved, unresolved = await resolve_selected(decisions, query, FeatureTables(redis))
    return join_records(resolved, rewards, query, now_ms=now, unreadable=bad, unresolved=unresolved)
