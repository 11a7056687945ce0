"""Atomic pressure reservation: what makes caps and budgets hold under
concurrency.

`reserve` runs when a decision commits (never for dry_run):

1. Global budgets, per item that has one: one script on the offer's budget
   keys (`{b:<offer>}:total`, `{b:<offer>}:d:<yyyymmdd>`, one hash tag, one
   Cluster slot) checks every limit and spends one unit on each, or spends
   nothing.
2. The person: one script on the counted person's keys (`{p:<pk>}:x`,
   `{p:<pk>}:r`, one slot) re-checks, item by item in rank order, the
   minimum delay, every cap and the suppression, and adds the exposure of
   each granted item.
3. Items the person script refused give their budget units back.

No script ever touches two slots, so this works unchanged on Redis Cluster.
The failure modes of the two steps are in docs/RULES.md: in short, budgets
can be under-spent (a crash between steps), never over-spent.

Scripts are sent with EVALSHA; on NOSCRIPT (new server, failover, SCRIPT
FLUSH) the source is sent once with EVAL, which caches it on that node.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Sequence

from decision.catalog import Budget, Offer
from decision.domain import Candidate, Removal
from decision.stages import Situation
from decision.stages.pressure import (
    HORIZON_MS,
    STAGE,
    SUPPRESSION_DETAIL,
    cap_detail,
    cap_rule,
    caps_for,
    delay_rule,
    suppression_rule,
)
from decision.store import keys
from decision.store.lua import LuaScript

# A day key outlives its UTC day by a day: late commits and clock skew still
# find it, and it disappears on its own afterwards.
DAY_KEY_TTL_MS = 2 * 86_400_000


RESERVE = LuaScript.load("pressure_reserve.lua")
BUDGET = LuaScript.load("pressure_budget.lua")
RELEASE = LuaScript.load("pressure_release.lua")
REWARD = LuaScript.load("pressure_reward.lua")


def utc_day(now_ms: int) -> str:
    return datetime.fromtimestamp(now_ms / 1000, timezone.utc).strftime("%Y%m%d")


def budget_keys(offer_id: str, budget: Budget | None, now_ms: int) -> list[tuple[str, int, int, str]]:
    """(key, limit, ttl_ms, label) of every budget of the offer."""
    if budget is None:
        return []
    out = []
    if budget.total is not None:
        out.append((keys.budget_total(offer_id), budget.total, 0, f"budget {offer_id} total {budget.total}"))
    if budget.per_day is not None:
        day = utc_day(now_ms)
        out.append((keys.budget_day(offer_id, day), budget.per_day, DAY_KEY_TTL_MS,
                    f"budget {offer_id} per day {budget.per_day} ({day[:4]}-{day[4:6]}-{day[6:]} UTC)"))
    return out


def _int(v: Any) -> int:
    return int(v.decode() if isinstance(v, bytes) else v)


async def _spend_budget(redis: Any, c: Candidate, offer: Offer, now_ms: int) -> tuple[list[str], Removal | None]:
    spec = budget_keys(offer.id, offer.budget, now_ms)
    if not spec:
        return [], None
    args: list[Any] = []
    for _, limit, ttl, _ in spec:
        args += [limit, ttl]
    index, spent = (_int(x) for x in await BUDGET(redis, [k for k, *_ in spec], args))
    if index == 0:
        return [k for k, *_ in spec], None
    label = spec[index - 1][3]
    return [], Removal(c, STAGE, f"{label} (spent {spent})", "global budget of the offer, all persons")


async def _release(redis: Any, budget_keys_: list[str]) -> None:
    await RELEASE(redis, budget_keys_, [])


async def reserve(redis: Any, situation: Situation, items: Sequence[Candidate],
                  decision_id: str) -> tuple[Removal | None, ...]:
    """Reserve the chosen items, in rank order. For each: None when granted
    (its exposure is recorded on `situation.counted_key`), or the Removal
    naming the cap, delay, suppression or budget that refused it.

    Raises the Redis error when the person script's outcome is unknown
    (timeout, connection lost): budgets spent for the decision are then kept,
    not released, because the exposures may have been recorded.
    """
    catalog = situation.catalog
    now = situation.now_ms
    pk = situation.counted_key
    candidates = [getattr(i, "candidate", i) for i in items]  # Candidate or ChosenItem
    results: list[Removal | None] = [None] * len(candidates)

    # 1. global budgets (their own slots)
    spent: dict[int, list[str]] = {}
    for i, c in enumerate(candidates):
        taken, refusal = await _spend_budget(redis, c, catalog.offers[c.offer_id], now)
        if refusal is not None:
            results[i] = refusal
        elif taken:
            spent[i] = taken

    # 2. the person (one slot, one script for every remaining item)
    pending = [i for i in range(len(candidates)) if results[i] is None]
    if not pending:
        return tuple(results)
    args: list[Any] = [now, HORIZON_MS, decision_id, len(pending)]
    plans = []
    for i in pending:
        c = candidates[i]
        offer = catalog.offers[c.offer_id]
        channel = catalog.channels.get(c.channel)
        caps = caps_for(catalog, offer, c.channel)
        plans.append(caps)
        sup = offer.suppression
        args += [offer.id, c.channel, (channel.min_delay_s * 1000) if channel else 0,
                 sup.after_ignored if sup else 0, (sup.window_s * 1000) if sup else 0, len(caps)]
        for cap, m_offer, m_channels in caps:
            args += [cap.limit, cap.window_s * 1000, m_offer, f"|{'|'.join(m_channels)}|" if m_channels else ""]
    verdicts = await RESERVE(redis, [keys.exposures(pk), keys.positive_rewards(pk)], args)

    # 3. give back the budgets of refused items
    releases = []
    for i, caps, verdict in zip(pending, plans, verdicts):
        code, index, value = (_int(x) for x in verdict)
        if code == 0:
            continue
        c = candidates[i]
        offer = catalog.offers[c.offer_id]
        if code == 1:
            cap = caps[index - 1][0]
            results[i] = Removal(c, STAGE, cap_rule(cap, value), cap_detail(cap, offer.id, c.channel, pk))
        elif code == 2:
            channel = catalog.channels[c.channel]
            results[i] = Removal(c, STAGE, delay_rule(c.channel, channel.min_delay_s, value, now),
                                 f"last contact on {c.channel} counted on {pk}")
        else:
            assert offer.suppression is not None
            results[i] = Removal(c, STAGE, suppression_rule(offer.id, offer.suppression, value),
                                 SUPPRESSION_DETAIL.format(key=pk))
        if i in spent:
            releases.append(spent[i])
    for taken in releases:
        await _release(redis, taken)
    return tuple(results)


async def record_positive_reward(redis: Any, person_key: str, offer_id: str, at_ms: int) -> None:
    """Remember the latest positive reward of an offer for the person (resets
    its suppression count). Called by the reward path with the person key the
    decision was counted on."""
    await REWARD(redis, [keys.positive_rewards(person_key)], [offer_id, int(at_ms), HORIZON_MS])
