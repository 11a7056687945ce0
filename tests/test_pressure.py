"""Contact pressure: the pre-check stage (pure) and the atomic reservation
against the real server, including concurrency. Time moves by changing
`now_ms`, never by sleeping."""

from __future__ import annotations

import asyncio
import logging
from types import MappingProxyType

import pytest

from decision.catalog import Budget, Cap, Catalog, Channel, Content, Offer, Placement, QuietHours, Suppression
from decision.domain import Candidate, DecideRequest, Exposure, Identity, IdentityType, Profile
from decision.stages import Situation, pressure
from decision.store import keys
from decision.store.pressure_store import commit_served, record_positive_reward, release_lease, reserve
from decision.store.redis_store import LEASE_MS, RedisProfileStore, connect
from decision.store.resp import RespClient

NOW = 1_767_225_600_000 + 12 * 3_600_000  # 2026-01-01T12:00:00Z
SECOND = 1000
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE
DAY = 24 * HOUR

CHANNELS = {
    "web": Channel("web", unknown_consent="allow"),
    "app": Channel("app", unknown_consent="allow", quiet_hours=QuietHours(23 * 60, 6 * 60)),
    "email": Channel("email", outbound=True, min_delay_s=3600),
    "sms": Channel("sms", outbound=True, quiet_hours=QuietHours(21 * 60, 8 * 60)),
}


def make_catalog(*offers: Offer, person_caps: tuple[Cap, ...] = ()) -> Catalog:
    full = {}
    for o in offers:
        contents = tuple(Content(id=f"{o.id}-{ch}", offer_id=o.id, channel=ch) for ch in CHANNELS)
        full[o.id] = Offer(id=o.id, name=o.id, caps=o.caps, budget=o.budget, suppression=o.suppression,
                           contents=contents)
    candidates = tuple(Candidate(o.id, c.id, c.channel) for o in full.values() for c in o.contents)
    return Catalog(
        path="t.yaml", version="t", channels=MappingProxyType(CHANNELS), offers=MappingProxyType(full),
        placements=MappingProxyType({"p": Placement(id="p", channels=tuple(CHANNELS), max_items=3)}),
        policies=MappingProxyType({}), person_caps=person_caps, candidates=MappingProxyType({"p": candidates}),
        contents=MappingProxyType({c.id: c for o in full.values() for c in o.contents}),
    )


def situation(catalog: Catalog, *, pk: str = "pid:1", now: int = NOW, exposures=(), rewards=None,
              attributes=None) -> Situation:
    p = Profile(key=pk, found=True, attributes=MappingProxyType(dict(attributes or {})),
                exposures=tuple(exposures), positive_rewards=MappingProxyType(dict(rewards or {})))
    return Situation(request=DecideRequest(placement="p", identity=Identity(IdentityType.PROFILE, pk[4:])),
                     catalog=catalog, placement=catalog.placements["p"], profile=p, counted_key=pk,
                     anonymous=False, now_ms=now)


def x(offer: str, channel: str, ago_ms: int, decision: str = "d0") -> Exposure:
    return Exposure(at_ms=NOW - ago_ms, offer_id=offer, channel=channel, decision_id=decision)


def cand(offer: str, channel: str) -> Candidate:
    return Candidate(offer, f"{offer}-{channel}", channel)


def check(s: Situation) -> dict[str, str]:
    """content id -> rule of the removal, for every removed candidate."""
    result = pressure.apply(s, s.catalog.candidates["p"])
    assert all(r.stage == "pressure" for r in result.removed)
    return {r.candidate.content_id: r.rule for r in result.removed}


# ---------------------------------------------------------------------------
# Pre-check: caps, windows, delay, quiet hours, suppression


def test_offer_cap_counts_every_channel_and_slides():
    cat = make_catalog(Offer("o", "o", caps=(Cap("offer", 3, 86400),)), Offer("free", "free"))
    seen = [x("o", "web", 1 * HOUR), x("o", "app", 2 * HOUR), x("o", "sms", 3 * HOUR), x("free", "web", HOUR)]
    why = check(situation(cat, exposures=seen))
    assert why == {f"o-{ch}": "cap offer 3/86400s (count 3)" for ch in CHANNELS}
    # windows are (now - 24 h, now]: the oldest exposure (3 h ago) leaves it 21 h from now
    assert check(situation(cat, exposures=seen, now=NOW + 21 * HOUR - 1)) == {
        f"o-{ch}": "cap offer 3/86400s (count 3)" for ch in CHANNELS}
    assert check(situation(cat, exposures=seen, now=NOW + 21 * HOUR)) == {}


def test_offer_channel_cap_and_channel_restricted_offer_cap():
    cat = make_catalog(Offer("a", "a", caps=(Cap("offer_channel", 1, 86400),)),
                       Offer("b", "b", caps=(Cap("offer", 1, 86400, channel="web"),)))
    why = check(situation(cat, exposures=[x("a", "email", HOUR), x("b", "email", HOUR), x("b", "web", HOUR)]))
    assert why == {"a-email": "cap offer_channel 1/86400s (count 1)",
                   "b-web": "cap offer@web 1/86400s (count 1)"}


def test_person_caps_per_channel_and_across_channels():
    cat = make_catalog(Offer("a", "a"), Offer("b", "b"),
                       person_caps=(Cap("channel", 2, 7 * 86400, channel="sms"), Cap("person", 5, 7 * 86400)))
    seen = [x("a", "sms", DAY), x("b", "sms", 2 * DAY)]
    s = situation(cat, exposures=seen, attributes={"timezone": "UTC"})
    assert check(s) == {"a-sms": "cap channel@sms 2/604800s (count 2)", "b-sms": "cap channel@sms 2/604800s (count 2)"}
    seen += [x("a", "web", HOUR), x("b", "web", HOUR), x("a", "app", 3 * DAY)]
    why = check(situation(cat, exposures=seen))
    assert why["a-web"] == why["b-email"] == "cap person 5/604800s (count 5)"
    assert len(why) == 8


def test_cap_over_a_group_of_channels_counts_them_together():
    outbound = Cap("person", 2, 7 * 86400, channels=("email", "sms"))
    cat = make_catalog(Offer("a", "a"), Offer("b", "b"), person_caps=(outbound,))
    seen = [x("a", "email", 2 * DAY), x("b", "sms", DAY), x("a", "web", HOUR), x("b", "app", HOUR)]
    why = check(situation(cat, exposures=seen, attributes={"timezone": "UTC"}))
    assert why == {f"{o}-{ch}": "cap person@email+sms 2/604800s (count 2)" for o in "ab" for ch in ("email", "sms")}
    r = pressure.apply(situation(cat, exposures=seen), (cand("a", "email"),)).removed[0]
    assert r.detail == "exposures on email+sms in the last 604800s, counted on pid:1"


async def test_reserve_counts_a_channel_group_together(redis):
    cat = make_catalog(Offer("a", "a"), person_caps=(Cap("person", 2, 86400, channels=("email", "sms")),))
    assert await reserve(redis, situation(cat), [cand("a", "web")], "d0") == (None,)
    assert await reserve(redis, situation(cat), [cand("a", "email")], "d1") == (None,)
    assert await reserve(redis, situation(cat, now=NOW + 1), [cand("a", "sms")], "d2") == (None,)
    (r,) = await reserve(redis, situation(cat, now=NOW + 2), [cand("a", "sms")], "d3")
    assert r is not None and r.rule == "cap person@email+sms 2/86400s (count 2)"
    assert await reserve(redis, situation(cat, now=NOW + 3), [cand("a", "web")], "d4") == (None,)


def test_cap_detail_names_the_counted_key():
    cat = make_catalog(Offer("o", "o", caps=(Cap("offer", 1, 3600),)))
    s = situation(cat, pk="cookie:abc", exposures=[x("o", "web", MINUTE)])
    result = pressure.apply(s, (cand("o", "web"),))
    assert result.removed[0].detail == "exposures of offer o in the last 3600s, counted on cookie:abc"


def test_min_delay_per_channel():
    cat = make_catalog(Offer("a", "a"), Offer("b", "b"))
    seen = [x("a", "email", 20 * MINUTE)]
    why = check(situation(cat, exposures=seen))
    assert why == {"a-email": "min delay email 3600s (last contact 1200s ago)",
                   "b-email": "min delay email 3600s (last contact 1200s ago)"}
    assert check(situation(cat, exposures=seen, now=NOW + 40 * MINUTE)) == {}


@pytest.mark.parametrize("utc_minute, removed", [
    (21 * 60 + 14, "quiet hours sms 21:00-08:00 (local 22:14 Europe/Paris)"),
    (6 * 60 + 59, "quiet hours sms 21:00-08:00 (local 07:59 Europe/Paris)"),
    (7 * 60, None),  # 08:00 in Paris: the end is exclusive
    (19 * 60 + 59, None),
    (20 * 60, "quiet hours sms 21:00-08:00 (local 21:00 Europe/Paris)"),
])
def test_quiet_hours_in_the_person_time_zone(utc_minute, removed):
    cat = make_catalog(Offer("o", "o"))
    day = NOW - 12 * HOUR  # 2026-01-01T00:00Z; Paris is UTC+1 in January
    s = situation(cat, now=day + utc_minute * MINUTE, attributes={"timezone": "Europe/Paris"})
    assert check(s).get("o-sms") == removed


def test_quiet_hours_also_apply_to_inbound_channels():
    cat = make_catalog(Offer("o", "o"))
    s = situation(cat, now=NOW - 12 * HOUR + 30 * MINUTE)  # 00:30 UTC, no timezone attribute: UTC
    assert check(s) == {"o-app": "quiet hours app 23:00-06:00 (local 00:30 UTC)",
                        "o-sms": "quiet hours sms 21:00-08:00 (local 00:30 UTC)"}


def test_unknown_timezone_removes_quiet_hour_channels_and_logs(caplog):
    cat = make_catalog(Offer("o", "o"), Offer("p", "p"))
    with caplog.at_level(logging.WARNING, logger="decision.stages.pressure"):
        why = check(situation(cat, attributes={"timezone": "Mars/Olympus"}))
    assert why["o-sms"] == "quiet hours sms 21:00-08:00 (timezone 'Mars/Olympus' unknown)"
    assert why["p-app"] == "quiet hours app 23:00-06:00 (timezone 'Mars/Olympus' unknown)"
    assert set(why) == {"o-sms", "o-app", "p-sms", "p-app"}  # web and email have no quiet hours
    assert len([r for r in caplog.records if "unknown timezone" in r.getMessage()]) == 1


def test_suppression_after_ignored_exposures_until_a_positive_reward():
    sup = Suppression(after_ignored=2, window_s=7 * 86400)
    cat = make_catalog(Offer("o", "o", suppression=sup))
    seen = [x("o", "email", 3 * DAY), x("o", "web", DAY)]
    assert check(situation(cat, exposures=seen))["o-web"] == "suppression o after 2 ignored/604800s (ignored 2)"
    # a positive reward after the first exposure: only one ignored since
    assert check(situation(cat, exposures=seen, rewards={"o": NOW - 2 * DAY})) == {}
    # the window slides: 6 days later the older exposure is out of it
    assert check(situation(cat, exposures=seen, now=NOW + 4 * DAY)) == {}
    assert pressure.ignored_exposures(seen, {}, "o", 7 * 86400, NOW) == 2
    assert pressure.suppressed(seen, {"o": NOW - HOUR}, "o", sup, NOW) is None


# ---------------------------------------------------------------------------
# Reservation against the real server


async def _members(redis, pk: str) -> list[tuple[str, float]]:
    return await redis.zrange(keys.exposures(pk), 0, -1, withscores=True)


async def test_reserve_records_the_exposure_on_the_counted_key(redis):
    cat = make_catalog(Offer("o", "o"))
    s = situation(cat, pk="cookie:v1")
    assert await reserve(redis, s, [cand("o", "web")], "dec-1") == (None,)
    assert await _members(redis, "cookie:v1") == [("dec-1|o|web", float(NOW))]
    # the profile store reads it back as an exposure
    (p,) = await RedisProfileStore(redis).fetch(["cookie:v1"], NOW)
    assert p.exposures == (Exposure(at_ms=NOW, offer_id="o", channel="web", decision_id="dec-1"),)


async def test_reserve_refuses_with_the_same_words_as_the_pre_check(redis):
    cat = make_catalog(Offer("o", "o", caps=(Cap("offer", 2, 86400),)))
    for i in range(2):
        assert await reserve(redis, situation(cat, now=NOW + i), [cand("o", "web")], f"d{i}") == (None,)
    (refusal,) = await reserve(redis, situation(cat, now=NOW + 5), [cand("o", "email")], "d9")
    assert refusal is not None and refusal.stage == "pressure"
    assert refusal.rule == "cap offer 2/86400s (count 2)"
    (p,) = await RedisProfileStore(redis).fetch(["pid:1"], NOW + 5)
    s = Situation(**{**{f: getattr(situation(cat), f) for f in Situation.__dataclass_fields__},
                     "profile": p, "now_ms": NOW + 5})
    assert pressure.apply(s, (cand("o", "email"),)).removed[0].rule == refusal.rule


async def test_fifty_concurrent_reservations_for_one_person_grant_exactly_the_cap(redis_url, redis):
    cat = make_catalog(Offer("o", "o", caps=(Cap("offer", 3, 86400),)))
    pool = connect(redis_url, max_connections=128)
    try:
        async def one(i: int):
            (r,) = await reserve(pool, situation(cat, now=NOW + i), [cand("o", "web")], f"dec-{i}")
            return r
        results = await asyncio.gather(*(one(i) for i in range(80)))
        assert len(pool.connection_pool._available_connections) > 1  # really concurrent connections
    finally:
        await pool.aclose()
    assert sum(r is None for r in results) == 3
    assert {r.rule for r in results if r is not None} == {"cap offer 3/86400s (count 3)"}
    assert await redis.zcard(keys.exposures("pid:1")) == 3

    # a day later the window has slid past them: three more, no more
    later = await asyncio.gather(*(reserve(redis, situation(cat, now=NOW + DAY + 100 + i), [cand("o", "web")],
                                           f"late-{i}") for i in range(10)))
    assert sum(r == (None,) for r in later) == 3


async def test_person_cap_across_items_of_one_decision(redis):
    cat = make_catalog(Offer("a", "a"), Offer("b", "b"), person_caps=(Cap("person", 1, 86400),))
    results = await reserve(redis, situation(cat), [cand("a", "web"), cand("b", "web")], "dec")
    assert results[0] is None
    assert results[1] is not None and results[1].rule == "cap person 1/86400s (count 1)"
    assert await _members(redis, "pid:1") == [("dec|a|web", float(NOW))]


async def test_min_delay_at_reservation_and_one_decision_is_one_contact(redis):
    cat = make_catalog(Offer("a", "a"), Offer("b", "b"))
    # two items of one email: one contact, both granted
    assert await reserve(redis, situation(cat), [cand("a", "email"), cand("b", "email")], "d1") == (None, None)
    (r,) = await reserve(redis, situation(cat, now=NOW + 10 * MINUTE), [cand("a", "email")], "d2")
    assert r is not None and r.rule == "min delay email 3600s (last contact 600s ago)"
    # other channels are not delayed
    assert await reserve(redis, situation(cat, now=NOW + 10 * MINUTE), [cand("a", "web")], "d3") == (None,)
    assert await reserve(redis, situation(cat, now=NOW + HOUR), [cand("a", "email")], "d4") == (None,)


async def test_suppression_at_reservation_and_positive_reward(redis):
    cat = make_catalog(Offer("o", "o", suppression=Suppression(after_ignored=2, window_s=7 * 86400)))
    for i in range(2):
        assert await reserve(redis, situation(cat, now=NOW + i * HOUR), [cand("o", "web")], f"d{i}") == (None,)
    (r,) = await reserve(redis, situation(cat, now=NOW + 3 * HOUR), [cand("o", "web")], "d3")
    assert r is not None and r.rule == "suppression o after 2 ignored/604800s (ignored 2)"

    await record_positive_reward(redis, "pid:1", "o", NOW + 2 * HOUR)
    await record_positive_reward(redis, "pid:1", "o", NOW + 1)  # late, older: does not move it back
    assert await redis.hget(keys.positive_rewards("pid:1"), "o") == str(NOW + 2 * HOUR)
    assert await reserve(redis, situation(cat, now=NOW + 3 * HOUR), [cand("o", "web")], "d4") == (None,)
    (p,) = await RedisProfileStore(redis).fetch(["pid:1"], NOW + 3 * HOUR)
    assert p.positive_rewards == {"o": NOW + 2 * HOUR}


async def test_exposures_older_than_the_horizon_are_trimmed(redis):
    cat = make_catalog(Offer("o", "o"))
    await redis.zadd(keys.exposures("pid:1"), {"old|o|web": NOW - 32 * DAY, "recent|o|web": NOW - 30 * DAY})
    assert await reserve(redis, situation(cat), [cand("o", "web")], "new") == (None,)
    assert [m for m, _ in await _members(redis, "pid:1")] == ["recent|o|web", "new|o|web"]
    assert 0 < await redis.pttl(keys.exposures("pid:1")) <= pressure.HORIZON_MS


def _client(kind: str, redis_url: str):
    """The two clients reserve runs on: a redis-py pool (budgets after the
    person, one connection at a time) and the multiplexed request-path
    client (budgets and person in one round trip)."""
    return connect(redis_url, max_connections=256) if kind == "pool" else RespClient(redis_url)


CLIENTS = pytest.mark.parametrize("kind", ["pool", "multiplexed"])


@CLIENTS
async def test_global_budget_spent_concurrently_by_many_persons_is_never_exceeded(redis_url, redis, kind):
    cat = make_catalog(Offer("o", "o", budget=Budget(total=25)))
    pool = _client(kind, redis_url)
    try:
        results = await asyncio.gather(*(
            reserve(pool, situation(cat, pk=f"pid:{i}"), [cand("o", "web")], f"dec-{i}") for i in range(200)))
    finally:
        await pool.aclose()
    granted = [r for (r,) in results if r is None]
    assert len(granted) == 25
    refusals = {r.rule for (r,) in results if r is not None}
    assert refusals == {"budget o total 25 (spent 25)"}
    assert await redis.get(keys.budget_total("o")) == "25"


@CLIENTS
async def test_budget_is_given_back_when_the_person_refuses(redis_url, redis, kind):
    cat = make_catalog(Offer("o", "o", caps=(Cap("offer", 1, 86400),), budget=Budget(total=25)))
    # every even person has already seen the offer today: the person script refuses them
    for i in range(0, 200, 2):
        await redis.zadd(keys.exposures(f"pid:{i}"), {"old|o|web": NOW - HOUR})
    pool = _client(kind, redis_url)
    try:
        results = await asyncio.gather(*(
            reserve(pool, situation(cat, pk=f"pid:{i}"), [cand("o", "web")], f"dec-{i}") for i in range(200)))
    finally:
        await pool.aclose()
    granted = [i for i, (r,) in enumerate(results) if r is None]
    assert 0 < len(granted) <= 25
    assert all(i % 2 == 1 for i in granted)
    assert {r.rule for i, (r,) in enumerate(results) if i % 2 == 0} <= {
        "cap offer 1/86400s (count 1)", "budget o total 25 (spent 25)"}
    assert any(r.rule == "cap offer 1/86400s (count 1)" for i, (r,) in enumerate(results) if i % 2 == 0)
    # the counter is exactly what was granted: every refusal was rolled back
    assert int(await redis.get(keys.budget_total("o"))) == len(granted)
    # and what was given back can be spent: fill it up to exactly 25
    more = [await reserve(redis, situation(cat, pk=f"pid:new-{i}"), [cand("o", "web")], f"n{i}") for i in range(40)]
    assert len(granted) + sum(r == (None,) for r in more) == 25
    assert await redis.get(keys.budget_total("o")) == "25"


@CLIENTS
async def test_an_item_its_budget_refuses_leaves_no_exposure(redis_url, redis, kind):
    """The person script grants it while the budget script refuses it (they
    run together): its exposure is taken back, and the next item stands."""
    cat = make_catalog(Offer("a", "a", budget=Budget(total=1)), Offer("b", "b"))
    client = _client(kind, redis_url)
    try:
        assert await reserve(client, situation(cat, pk="pid:first"), [cand("a", "web")], "d0") == (None,)
        first, second = await reserve(client, situation(cat), [cand("a", "web"), cand("b", "web")], "d1")
    finally:
        await client.aclose()
    assert first is not None and first.rule == "budget a total 1 (spent 1)"
    assert second is None
    assert await _members(redis, "pid:1") == [("d1|b|web", float(NOW))]
    assert await redis.get(keys.budget_total("a")) == "1"


async def test_daily_budget_resets_on_the_next_utc_day(redis):
    cat = make_catalog(Offer("o", "o", budget=Budget(total=100, per_day=2)))
    day1 = [await reserve(redis, situation(cat, pk=f"pid:{i}"), [cand("o", "web")], f"a{i}") for i in range(3)]
    assert [r == (None,) for r in day1] == [True, True, False]
    assert day1[2][0].rule == "budget o per day 2 (2026-01-01 UTC) (spent 2)"
    assert await redis.get(keys.budget_day("o", "20260101")) == "2"
    assert 0 < await redis.pttl(keys.budget_day("o", "20260101"))
    next_day = NOW + 12 * HOUR + 1  # 2026-01-02T00:00:00.001Z
    assert await reserve(redis, situation(cat, pk="pid:x", now=next_day), [cand("o", "web")], "b") == (None,)
    assert await redis.get(keys.budget_total("o")) == "3"  # the refusal spent nothing


async def test_scripts_survive_a_script_flush(redis):
    cat = make_catalog(Offer("o", "o", budget=Budget(total=5)))
    assert await reserve(redis, situation(cat), [cand("o", "web")], "d1") == (None,)
    await redis.script_flush()
    assert await reserve(redis, situation(cat, pk="pid:2"), [cand("o", "web")], "d2") == (None,)
    await record_positive_reward(redis, "pid:2", "o", NOW)
    assert await redis.get(keys.budget_total("o")) == "2"


# ---------------------------------------------------------------------------
# The commit lease: a decision that read the person under it answers before
# its reservation is written; every other reservation for the person waits.


async def _leased(client, pk: str, decision_id: str) -> bool:
    _, leased = await RedisProfileStore(client).fetch_leased([pk], NOW, decision_id)
    return leased


@CLIENTS
async def test_a_reservation_waits_for_the_lease_and_then_counts_its_exposure(redis_url, redis, kind):
    cat = make_catalog(Offer("o", "o", caps=(Cap("offer", 1, 86400),)))
    client = _client(kind, redis_url)
    try:
        assert await _leased(client, "pid:1", "A")
        assert not await _leased(client, "pid:1", "B")  # one holder at a time
        # B read the person while A held the lease: its pre-check saw no
        # exposure, so it picks the offer, and its reservation must wait
        waiting = asyncio.ensure_future(reserve(client, situation(cat), [cand("o", "web")], "B", wait_s=5.0))
        await asyncio.sleep(0.05)
        assert not waiting.done()
        assert await _members(redis, "pid:1") == []
        future, _, _ = commit_served(client, situation(cat), [cand("o", "web")], "A")
        status, verdicts = await future
        assert (int(status), [int(v) for v in verdicts[0]]) == (0, [0, 0, 0])
        (refusal,) = await waiting
    finally:
        await client.aclose()
    assert refusal is not None and refusal.rule == "cap offer 1/86400s (count 1)"
    assert await _members(redis, "pid:1") == [("A|o|web", float(NOW))]
    assert await redis.exists(keys.lease("pid:1")) == 0  # released by A's commit


async def test_a_lease_held_past_the_wait_refuses_with_a_named_rule(redis):
    cat = make_catalog(Offer("o", "o"))
    assert await _leased(redis, "pid:1", "stuck")
    (refusal,) = await reserve(redis, situation(cat), [cand("o", "web")], "B", wait_s=0.02)
    assert refusal is not None and refusal.rule.startswith("concurrent decision (lease held ")
    assert "read its exposures first" in refusal.detail and "pid:1" in refusal.detail
    assert await _members(redis, "pid:1") == []  # nothing checked, nothing added
    assert 0 < await redis.pttl(keys.lease("pid:1")) <= LEASE_MS  # it expires on its own


async def test_the_holder_reserving_itself_goes_through_and_releases_the_lease(redis):
    """A holder that cannot answer first (two items, a budget) reserves the
    usual way: its own lease does not hold it up."""
    cat = make_catalog(Offer("a", "a"), Offer("b", "b"), person_caps=(Cap("person", 1, 86400),))
    assert await _leased(redis, "pid:1", "A")
    first, second = await reserve(redis, situation(cat), [cand("a", "web"), cand("b", "web")], "A", wait_s=0)
    assert first is None and second is not None and second.rule == "cap person 1/86400s (count 1)"
    assert await redis.exists(keys.lease("pid:1")) == 0


async def test_served_commit_counts_the_exposure_even_past_a_limit_and_says_so(redis):
    """What an answered item's reservation reports when the lease did not
    hold (expired, or an exposure written by something that ignores it): the
    exposure is counted all the same, since the person was shown the item."""
    cat = make_catalog(Offer("o", "o", caps=(Cap("offer", 1, 86400),)))
    await redis.zadd(keys.exposures("pid:1"), {"old|o|web": NOW - HOUR})
    assert await _leased(redis, "pid:1", "A")
    status, verdicts = await commit_served(redis, situation(cat), [cand("o", "web")], "A")[0]
    assert (int(status), [int(v) for v in verdicts[0]]) == (0, [1, 1, 1])  # the cap, counting 1
    assert [m for m, _ in await _members(redis, "pid:1")] == ["old|o|web", "A|o|web"]
    # without the lease (expired before the script ran): status 2
    status, _ = await commit_served(redis, situation(cat, now=NOW + 1), [cand("o", "web")], "late")[0]
    assert int(status) == 2
    # another decision's lease by then: status 2 too, counted, and that lease left to its holder
    assert await _leased(redis, "pid:1", "B")
    status, _ = await commit_served(redis, situation(cat, now=NOW + 2), [cand("o", "web")], "later")[0]
    assert int(status) == 2 and await redis.get(keys.lease("pid:1")) in ("B", b"B")
    await redis.delete(keys.lease("pid:1"))
    # sent twice (the spool's replay), counted once
    again = commit_served(redis, situation(cat), [cand("o", "web")], "A")[0]
    await again
    assert len(await _members(redis, "pid:1")) == 4


async def test_release_lease_only_releases_its_own(redis):
    assert await _leased(redis, "pid:1", "A")
    assert int(await release_lease(redis, "pid:1", "B")) == 0
    assert await redis.get(keys.lease("pid:1")) == "A"
    assert int(await release_lease(redis, "pid:1", "A")) == 1
    assert await _leased(redis, "pid:1", "B")


async def test_served_commit_is_written_before_the_call_returns_on_the_request_path_client(redis_url, redis):
    """On the multiplexed client the script is on the wire before the caller
    answers, so a later request on the same client finds the exposure."""
    cat = make_catalog(Offer("o", "o", caps=(Cap("offer", 1, 86400),)))
    client = RespClient(redis_url)
    try:
        await client.ping()  # connected: send_now writes at once
        assert await _leased(client, "pid:1", "A")
        future, _, _ = commit_served(client, situation(cat), [cand("o", "web")], "A")
        # not awaited: the next fetch on the client comes after it
        (p,), leased = await RedisProfileStore(client).fetch_leased(["pid:1"], NOW + 1, "B")
        assert leased and [x.decision_id for x in p.exposures] == ["A"]
        await future
    finally:
        await client.aclose()


async def test_served_commit_survives_a_script_flush_on_the_request_path_client(redis_url, redis):
    cat = make_catalog(Offer("o", "o"))
    client = RespClient(redis_url)
    try:
        await client.ping()
        await redis.script_flush()
        status, verdicts = await commit_served(client, situation(cat), [cand("o", "web")], "A")[0]
        assert int(status) == 2 and [int(v) for v in verdicts[0]] == [0, 0, 0]  # no lease was taken: status 2
        assert await release_lease(client, "pid:1", "A") == 0
    finally:
        await client.aclose()
    assert await _members(redis, "pid:1") == [("A|o|web", float(NOW))]
