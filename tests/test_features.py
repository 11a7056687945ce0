"""The policy stage's memos give what the code they replace gave: shared
features (identifier names memoised, local weekday and hour by zone and
second) and arm picking (each placement's arm shares built once)."""

from __future__ import annotations

import dataclasses
import zoneinfo
from datetime import datetime, timezone
from pathlib import Path
from types import MappingProxyType

import numpy as np

from decision import features
from decision.catalog import load_catalog
from decision.domain import DecideRequest, Event, Identity, IdentityType, Profile
from decision.features import IDENTIFIER_NAMES, _feature_value, local_time, shared_features
from decision.stages import Situation
from decision.stages.policy import pick_arm

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "catalog.yaml"
NOW = 1_780_000_000_000


def reference_shared_features(profile, context, now_ms):
    """shared_features before its memos, verbatim."""
    user = {}
    for name, v in profile.attributes.items():
        if name == "timezone" or IDENTIFIER_NAMES.search(name):
            continue
        fv = _feature_value(v)
        if fv is not None:
            user[name] = fv
    for seg in profile.segments:
        user[f"seg_{seg}"] = 1.0
    recent = now_ms - features.EVENT_WINDOW_MS
    for e in profile.events:
        if e.at_ms >= recent:
            key = f"ev7_{e.type}"
            user[key] = user.get(key, 0.0) + 1.0
    ctx = {}
    for name, v in context.items():
        if IDENTIFIER_NAMES.search(name):
            continue
        if isinstance(v, tuple):
            for item in v[:16]:
                ctx[f"{name}_{item[:features.MAX_CATEGORY_LEN]}"] = 1.0
            continue
        fv = _feature_value(v)
        if fv is not None:
            ctx[name] = fv
    local = local_time(profile, now_ms)
    ctx["hour_of_week"] = str(local.weekday() * 24 + local.hour)
    ctx["daypart"] = ("night", "morning", "afternoon", "evening")[local.hour // 6]
    return {"user": user, "context": ctx}


NAMES = ["age", "tier", "email", "user_id", "ZIP", "first_name", "ip", "device", "devices", "idle", "paid",
         "phone_number", "msisdn", "Address", "cookie", "ev7_purchase", "seg_vip", "timezone", "page", "x_iban"]
VALUES = [1, 0, -3, 2.5, float("nan"), float("inf"), True, False, "gold", "x" * 60, "", ("a", "b"), None, 10**20]
ZONES = sorted(zoneinfo.available_timezones())


def random_profile(rng: np.random.Generator) -> tuple[Profile, dict, int]:
    pick = lambda seq: seq[int(rng.integers(len(seq)))]  # noqa: E731
    attrs = {pick(NAMES): pick(VALUES) for _ in range(int(rng.integers(0, 12)))}
    if rng.random() < 0.8:
        attrs["timezone"] = pick([*ZONES[::7], "Nowhere/City", "", 3])
    segments = {f"s{int(rng.integers(6))}": NOW for _ in range(int(rng.integers(0, 4)))}
    events = tuple(Event(pick(["view", "purchase", "cart"]), NOW - int(rng.integers(0, 10 * 86_400_000)))
                   for _ in range(int(rng.integers(0, 25))))
    context = {pick(NAMES): pick([*VALUES[:-1], ("p1", "p2" * 40)]) for _ in range(int(rng.integers(0, 6)))}
    now = NOW + int(rng.integers(-400 * 86_400_000, 400 * 86_400_000))
    return Profile("pid:1", True, MappingProxyType(attrs), MappingProxyType(segments), events=events), context, now


def test_shared_features_are_what_they_were():
    rng = np.random.default_rng(0)
    for _ in range(3000):
        profile, context, now = random_profile(rng)
        try:
            want = reference_shared_features(profile, context, now)
        except TypeError as e:  # a string attribute named like an event count
            try:
                shared_features(profile, context, now)
            except TypeError as got:
                assert str(got) == str(e)
            else:
                raise AssertionError("shared_features no longer refuses the profile")
            continue
        got = shared_features(profile, context, now)
        assert repr(got) == repr(want)  # same keys, same order, same values (NaN included)


def test_identifier_memo_agrees_with_the_pattern_and_stays_bounded():
    names = [*NAMES, *(f"field_{i}" for i in range(50)), *(f"x_{i}_id" for i in range(50))]
    for name in names * 2:
        assert features._identifier(name) is (IDENTIFIER_NAMES.search(name) is not None)
    features._identifiers.clear()
    for i in range(features._IDENTIFIERS_LIMIT + 10):
        features._identifier(f"n{i}")
    assert len(features._identifiers) <= features._IDENTIFIERS_LIMIT


def test_weekday_and_hour_by_second_match_local_time_across_zone_transitions():
    for name in ("Europe/London", "America/New_York", "Australia/Lord_Howe", "Asia/Kathmandu", "America/St_Johns",
                 "Pacific/Chatham", "Africa/Monrovia", "Europe/Amsterdam"):
        zone = zoneinfo.ZoneInfo(name)
        # every offset change between 1900 and 2040, found hour by hour, then to the second
        starts = []
        t = int(datetime(1900, 1, 1, tzinfo=timezone.utc).timestamp())
        end = int(datetime(2040, 1, 1, tzinfo=timezone.utc).timestamp())
        before = zone.utcoffset(datetime.fromtimestamp(t, timezone.utc))
        while t < end:
            after = zone.utcoffset(datetime.fromtimestamp(t + 3600, timezone.utc))
            if after != before:
                lo, hi = t, t + 3600
                while hi - lo > 1:
                    mid = (lo + hi) // 2
                    if zone.utcoffset(datetime.fromtimestamp(mid, timezone.utc)) == before:
                        lo = mid
                    else:
                        hi = mid
                starts.append(hi)
                before = after
            t += 3600
        assert starts, name
        profile = Profile("pid:1", True, MappingProxyType({"timezone": name}))
        for s in starts[:: max(1, len(starts) // 40)]:
            for ms in range(s * 1000 - 2500, s * 1000 + 2500, 250):
                local = local_time(profile, ms)
                assert features._weekday_hour(name, ms // 1000) == (local.weekday(), local.hour), (name, ms)


def situations(stable: bool):
    catalog = load_catalog(EXAMPLE)
    kind = IdentityType.PROFILE if stable else IdentityType.SESSION
    for placement in catalog.placements.values():
        for i in range(200):
            request = DecideRequest(placement=placement.id, identity=Identity(kind, f"p{i}"))
            yield Situation(request, catalog, placement, Profile(f"pid:{i}"), f"pid:{i}", not stable, NOW)


def reference_pick_arm(situation, rng):
    """pick_arm before its per-placement memo, verbatim."""
    from bandits.experiment import assign_arm, request_arm
    arms = situation.placement.arms
    shares = [(a.name, a.share) for a in arms]
    if len(arms) == 1:
        return arms[0], "person"
    if situation.request.identity.stable:
        name = assign_arm(situation.counted_key, situation.placement.salt, shares)
        assignment = "person"
    else:
        name = request_arm(rng, shares)
        assignment = "request"
    return next(a for a in arms if a.name == name), assignment


def test_pick_arm_is_what_it_was():
    for stable in (True, False):
        a, b = np.random.default_rng(5), np.random.default_rng(5)
        for situation in situations(stable):
            got, want = pick_arm(situation, a), reference_pick_arm(situation, b)
            assert got[0] is want[0] and got[1] == want[1]
        assert a.bit_generator.state == b.bit_generator.state


def test_a_reloaded_catalog_gets_its_own_arms():
    situation = next(s for s in situations(True) if len(s.placement.arms) > 1)
    arm, _ = pick_arm(situation, np.random.default_rng(0))
    reloaded = load_catalog(EXAMPLE)
    placement = reloaded.placements[situation.placement.id]
    again, _ = pick_arm(dataclasses.replace(situation, catalog=reloaded, placement=placement), np.random.default_rng(0))
    assert again.name == arm.name and again is next(a for a in placement.arms if a.name == arm.name)
