"""Atomic pressure reservation: what makes caps and budgets hold under
concurrency.

`reserve` runs when a decision commits (never for dry_run). Two kinds of
script, sent together in one round trip:

1. The person: one script on the counted person's keys (`{p:<pk>}:x`,
   `{p:<pk>}:r`, `{p:<pk>}:l`, one slot) re-checks, item by item in rank
   order, the minimum delay, every cap and the suppression, and adds the
   exposure of each granted item. While another decision holds the person's
   commit lease it does nothing and says so, and `reserve` tries again.
2. Global budgets, per item that has one: one script on the offer's budget
   keys (`{b:<offer>}:total`, `{b:<offer>}:d:<yyyymmdd>`, one hash tag, one
   Cluster slot) checks every limit and spends one unit on each, or spends
   nothing.
3. Then each side gives back what the other refused: an item the person
   script refused gives its budget units back; an item its budget refused
   has its exposure taken back (ZREM).

`commit_served` is the other way in: a decision that read the person's
exposures under its own commit lease (taken with the profile fetch,
RedisProfileStore.fetch_leased) and picked one item without a budget knows
that the check would grant it: nothing else can add an exposure for the
person until the lease is released. It answers without waiting, and the same
script, sent before the answer, adds the exposure and releases the lease.

No script ever touches two slots, so this works unchanged on Redis Cluster.
The failure modes are in docs/RULES.md: in short, budgets can be
under-spent and a person's pressure over-counted (a crash before step 3),
never over-spent or under-counted.

Scripts are sent with EVALSHA; on NOSCRIPT (new server, failover, SCRIPT
FLUSH) the source is sent once with EVAL, which caches it on that node.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone
from typing import Any, Sequence

from decision.catalog import Budget
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

# A reservation that finds another decision's lease on the person tries again
# after a pause (the holder's commit is usually written within a millisecond),
# doubling from the first to the last, for up to `wait_s` (reserve), then
# refuses its items: a lease held that long belongs to a decision that is
# stuck or died before committing (it expires after LEASE_MS).
LEASE_RETRY_S = (0.0005, 0.005)
LEASE_WAIT_S = 0.025
BUSY = 4  # the verdict code of an item refused because the lease stayed held
BUSY_RULE = "concurrent decision"

# A day key outlives its UTC day by a day: late commits and clock skew still
# find it, and it disappears on its own afterwards.
DAY_KEY_TTL_MS = 2 * 86_400_000


RESERVE = LuaScript.load("pressure_reserve.lua")
LEASE_RELEASE = LuaScript.load("pressure_lease.lua")
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


def _budget_refusal(c: Candidate, spec: list[tuple[str, int, int, str]], outcome: Any) -> Removal | None:
    index, spent = (_int(x) for x in outcome)
    if index == 0:
        return None
    return Removal(c, STAGE, f"{spec[index - 1][3]} (spent {spent})", "global budget of the offer, all persons")


async def _release(redis: Any, budget_keys_: list[str]) -> None:
    await RELEASE(redis, budget_keys_, [])


async def reserve(redis: Any, situation: Situation, items: Sequence[Candidate],
                  decision_id: str, wait_s: float = LEASE_WAIT_S) -> tuple[Removal | None, ...]:
    """Reserve the chosen items, in rank order. For each: None when granted
    (its exposure is recorded on `situation.counted_key`), or the Removal
    naming the cap, delay, suppression or budget that refused it.

    The person script and the budget scripts of the items that have one are
    sent together: one round trip. An item granted by the person and refused
    by its budget has its exposure taken back; one refused by the person
    gives its budget unit back. While another decision holds the person's
    commit lease, the person script is sent again for up to `wait_s`; after
    that its items are refused ("concurrent decision"). A lease this
    decision holds is released by it.

    Raises the Redis error when the person script's outcome is unknown
    (timeout, connection lost): budgets spent for the decision are then kept,
    not released, because the exposures may have been recorded. A budget
    script's error is raised too, after the person script's outcome is known:
    exposures it recorded stay (the decision is not served; pressure may
    count one contact too many for this person, never one too few).
    """
    catalog = situation.catalog
    now = situation.now_ms
    pk = situation.counted_key
    candidates = [getattr(i, "candidate", i) for i in items]  # Candidate or ChosenItem
    results: list[Removal | None] = [None] * len(candidates)
    if not candidates:
        return ()

    # 1. the person (one slot, one script for every item, in rank order)
    person_keys, args, plans = person_call(situation, candidates, decision_id, "check")
    person = _person(redis, person_keys, args, len(candidates), wait_s)

    # 2. global budgets (their own slots), sent with it on a multiplexed
    # client (resp.py); one after the other on a pool, which would otherwise
    # hold two connections per decision
    budgets = [(i, spec) for i, c in enumerate(candidates)
               if (spec := budget_keys(c.offer_id, catalog.offers[c.offer_id].budget, now))]
    spent: dict[int, list[str]] = {}
    if not budgets:
        verdicts = await person
    else:
        def spend(spec: list[tuple[str, int, int, str]]) -> Any:
            return BUDGET(redis, [k for k, *_ in spec], [x for _, limit, ttl, _ in spec for x in (limit, ttl)])

        outcomes: list[Any]
        if getattr(redis, "multiplexed", False):
            verdicts, *outcomes = await asyncio.gather(person, *(spend(spec) for _, spec in budgets),
                                                       return_exceptions=True)
        else:
            verdicts = await person
            outcomes = [await spend(spec) for _, spec in budgets]
        if isinstance(verdicts, BaseException):
            raise verdicts  # outcome unknown: budgets spent stay spent (under-spend, never over)
        failed = next((o for o in outcomes if isinstance(o, BaseException)), None)
        if failed is not None:
            raise failed
        for (i, spec), outcome in zip(budgets, outcomes):
            refusal = _budget_refusal(candidates[i], spec, outcome)
            if refusal is not None:
                results[i] = refusal
            else:
                spent[i] = [k for k, *_ in spec]

    # 3. the person's verdicts; give back what a refusal on the other side took
    releases = []
    taken_back = []
    for i, (caps, verdict) in enumerate(zip(plans, verdicts)):
        code, index, value = (_int(x) for x in verdict)
        c = candidates[i]
        if code == 0:
            if results[i] is not None:  # granted by the person, refused by its budget
                taken_back.append(f"{decision_id}|{c.offer_id}|{c.channel}")
            continue
        offer = catalog.offers[c.offer_id]
        if results[i] is None:
            if code == BUSY:
                results[i] = Removal(c, STAGE, f"{BUSY_RULE} (lease held {value} ms more)",
                                     f"another decision for {pk} read its exposures first and had not "
                                     f"committed after {wait_s * 1000:g} ms")
            elif code == 1:
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
            releases.append(spent.pop(i))
    if taken_back:
        await redis.execute_command("ZREM", keys.exposures(pk), *taken_back)
    for taken in releases:
        await _release(redis, taken)
    return tuple(results)


def person_call(situation: Situation, candidates: Sequence[Candidate], decision_id: str,
                mode: str) -> tuple[list[str], list[Any], list[tuple]]:
    """The person script's keys and arguments for `candidates` in rank order
    (pressure_reserve.lua), and each item's caps."""
    catalog = situation.catalog
    pk = situation.counted_key
    args: list[Any] = [situation.now_ms, HORIZON_MS, decision_id, mode, len(candidates)]
    plans = []
    for c in candidates:
        offer = catalog.offers[c.offer_id]
        channel = catalog.channels.get(c.channel)
        caps = caps_for(catalog, offer, c.channel)
        plans.append(caps)
        sup = offer.suppression
        args += [offer.id, c.channel, (channel.min_delay_s * 1000) if channel else 0,
                 sup.after_ignored if sup else 0, (sup.window_s * 1000) if sup else 0, len(caps)]
        for cap, m_offer, m_channels in caps:
            args += [cap.limit, cap.window_s * 1000, m_offer, f"|{'|'.join(m_channels)}|" if m_channels else ""]
    return [keys.exposures(pk), keys.positive_rewards(pk), keys.lease(pk)], args, plans


async def _person(redis: Any, person_keys: list[str], args: list[Any], n: int, wait_s: float) -> list:
    """The person script's verdicts; while another decision holds the lease,
    tried again for up to `wait_s`, then every item BUSY."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_s
    pause, longest = LEASE_RETRY_S
    while True:
        status, verdicts = await RESERVE(redis, person_keys, args)
        if _int(status) != 1:
            return verdicts
        left = deadline - loop.time()
        if left <= 0:
            return [(BUSY, 0, _int(verdicts[0]))] * n
        await asyncio.sleep(min(pause, left))
        pause = min(pause * 2, longest)


def commit_served(redis: Any, situation: Situation, candidates: Sequence[Candidate],
                  decision_id: str) -> tuple[asyncio.Future, list[str], list[Any]]:
    """Add the exposures of items already served under the decision's own
    lease, and release the lease: the script is written before this returns
    on the request path's client (LuaScript.send), and the caller answers
    without waiting for it. The future's result is the script's
    (status, verdicts): status 2 if the lease had expired first, a verdict
    other than granted if something wrote an exposure for the person that
    the lease did not hold back. The keys and arguments are returned too, for
    the spool to send again if the outcome is unknown."""
    person_keys, args, _ = person_call(situation, candidates, decision_id, "served")
    return RESERVE.send(redis, person_keys, args), person_keys, args


def release_lease(redis: Any, person_key: str, decision_id: str) -> asyncio.Future:
    """Release the person's lease if `decision_id` holds it, without waiting."""
    return LEASE_RELEASE.send(redis, [keys.lease(person_key)], [decision_id])


async def record_positive_reward(redis: Any, person_key: str, offer_id: str, at_ms: int) -> None:
    """Remember the latest positive reward of an offer for the person (resets
    its suppression count). Called by the reward path with the person key the
    decision was counted on."""
    await REWARD(redis, [keys.positive_rewards(person_key)], [offer_id, int(at_ms), HORIZON_MS])
