"""Measure the two Python CEL implementations on a typical eligibility rule.

    python -m decision.rules.bench

`cel` (common-expression-language: Rust `cel` crate bindings) against
`celpy` (cel-python: pure Python, lark parser). Both get the same rule (about
20 variable references, four helper calls), the same profile (20
attributes, 5 segments, 30 events) and the same helpers; the figures in
docs/RULES.md come from this script. celpy is imported only here.
"""

from __future__ import annotations

import statistics
import timeit
from datetime import datetime, timezone
from types import MappingProxyType
from typing import Any, Callable

from decision.catalog import Offer
from decision.domain import Event, Profile

RULE = """
profile.country in ["US", "CA", "GB"] && profile.age >= 18 && profile.tier != "churned"
&& consent.marketing == "granted" && in_segment(segments, "paying")
&& (profile.churn_score > 0.6 || has_event(events, "cancel_intent", duration("168h"))
    || count_events(events, "support_call", duration("720h")) >= 2)
&& !purchased_since_abandon(events) && days_since(events, "purchase") > 3
&& local_hour >= 9 && local_hour < 21 && context.page in ["home", "account"] && context.device != "tv"
&& channel in ["web", "app", "email"] && offer.value >= 10.0 && !("excluded" in offer.tags)
&& profile.ltv > 100.0
"""
# The same rule without helper calls: what the engine costs by itself.
RULE_NO_HELPERS = """
profile.country in ["US", "CA", "GB"] && profile.age >= 18 && profile.tier != "churned"
&& consent.marketing == "granted" && "paying" in segments
&& (profile.churn_score > 0.6 || profile.cancel_intent) && local_hour >= 9 && local_hour < 21
&& context.page in ["home", "account"] && context.device != "tv"
&& channel in ["web", "app", "email"] && offer.value >= 10.0 && !("excluded" in offer.tags)
&& profile.ltv > 100.0
"""

NOW_MS = 1_767_265_200_000  # 2026-01-01T11:00:00Z


def sample_profile() -> Profile:
    attributes: dict[str, Any] = {
        "country": "US", "age": 33, "tier": "premium", "churn_score": 0.72, "ltv": 420.5,
        "language": "en", "timezone": "America/New_York", "cancel_intent": True, "plan": "family",
        "gender": "f", "city": "Boston", "zip": "02134", "devices": ("ios", "desktop"),
        "tenure_days": 812, "email_opt": True, "nps": 8, "arpu": 17.99, "propensity_upgrade": 0.31,
        "propensity_cross": 0.44, "last_channel": "app",
    }
    types = ["page_view", "page_view", "support_call", "purchase", "cart_abandoned", "cancel_intent"]
    events = tuple(
        Event(type=types[i % len(types)], at_ms=NOW_MS - (30 - i) * 3_600_000 * 7, item=f"sku-{i % 7}",
              channel="web" if i % 2 else "app", value=float(i))
        for i in range(30)
    )
    return Profile(
        key="pid:bench", found=True, attributes=MappingProxyType(attributes),
        segments=MappingProxyType({s: NOW_MS for s in ("paying", "mobile", "family", "us", "high_value")}),
        consent=MappingProxyType({"marketing": "granted", "personalization": "granted", "channel:email": "granted",
                                  "channel:sms": "denied", "channel:push": "granted", "join": "granted"}),
        events=events,
    )


CONTEXT = MappingProxyType({"page": "home", "device": "mobile", "geo": "US-MA", "referrer": "search"})
OFFER = Offer(id="retention-10", name="10% off", value=25.0, tags=("retention", "discount"))


def _time(fn: Callable[[], Any], number: int, repeat: int = 5) -> float:
    """Median microseconds per call."""
    return statistics.median(timeit.repeat(fn, number=number, repeat=repeat)) / number * 1e6


def bench_cel(profile: Profile) -> dict[str, float]:
    import cel

    from decision.rules import Evaluator, compile_rule

    out: dict[str, float] = {}
    out["compile (cel.compile only)"] = _time(lambda: cel.compile(RULE), 200)
    out["compile_rule (with checks)"] = _time(lambda: compile_rule(RULE), 50)
    rule = compile_rule(RULE)
    bare = compile_rule(RULE_NO_HELPERS)

    def first_eval() -> None:
        Evaluator(profile, CONTEXT, NOW_MS).evaluate(rule, OFFER, "email")

    ev = Evaluator(profile, CONTEXT, NOW_MS)
    assert ev.run(rule, OFFER, "email") in (True, False)
    out["activation + first evaluation"] = _time(first_eval, 500)
    out["evaluate again, activation built"] = _time(lambda: ev.run(rule, OFFER, "email"), 2000)
    ev2 = Evaluator(profile, CONTEXT, NOW_MS)
    ev2.run(bare, OFFER, "email")
    out["evaluate, no helpers"] = _time(lambda: ev2.run(bare, OFFER, "email"), 2000)
    # The same events handed to CEL as maps (what the handle avoids).
    from decision.rules.engine import _event_map

    maps = [_event_map(e) for e in profile.events]
    out["events as CEL maps (30), per request"] = _time(lambda: cel.Context({"events": maps}), 500)
    return out


def bench_celpy(profile: Profile) -> dict[str, float]:
    import celpy
    from celpy import celtypes

    from decision.rules.engine import offer_map
    from decision.rules.helpers import EVENTS_HANDLE, BoundHelpers

    out: dict[str, float] = {}
    env = celpy.Environment()
    out["compile (cel.compile only)"] = _time(lambda: env.compile(RULE), 20)

    def functions(h: BoundHelpers) -> dict[str, Callable[..., Any]]:
        def wrap(fn: Callable[..., Any], kind: type) -> Callable[..., Any]:
            def call(*args: Any) -> Any:
                return kind(fn(*(bytes(a) if isinstance(a, celtypes.BytesType) else a for a in args)))
            return call
        return {
            "has_event": wrap(h.has_event, celtypes.BoolType),
            "has_event_for": wrap(h.has_event_for, celtypes.BoolType),
            "count_events": wrap(h.count_events, celtypes.IntType),
            "days_since": wrap(h.days_since, celtypes.IntType),
            "last_event_item": wrap(h.last_event_item, celtypes.StringType),
            "purchased_since_abandon": wrap(h.purchased_since_abandon, celtypes.BoolType),
            "in_segment": wrap(h.in_segment, celtypes.BoolType),
        }

    def activation() -> dict[str, Any]:
        from decision.rules.timezone import local_time

        return {
            "profile": celpy.json_to_cel({k: list(v) if isinstance(v, tuple) else v
                                          for k, v in profile.attributes.items()}),
            "segments": celpy.json_to_cel(sorted(profile.segments)),
            "consent": celpy.json_to_cel({k: v.lower() for k, v in profile.consent.items()}),
            "events": celtypes.BytesType(EVENTS_HANDLE),
            "context": celpy.json_to_cel(dict(CONTEXT)),
            "now": celtypes.TimestampType(datetime.fromtimestamp(NOW_MS / 1000, timezone.utc)),
            "local_hour": celtypes.IntType(local_time(profile, NOW_MS).hour),
            "channel": celtypes.StringType("email"),
            "offer": celpy.json_to_cel(offer_map(OFFER)),
        }

    helpers = BoundHelpers(NOW_MS, profile.events)
    prg = env.program(env.compile(RULE), functions=functions(helpers))
    bare = env.program(env.compile(RULE_NO_HELPERS), functions=functions(helpers))
    act = activation()
    assert prg.evaluate(act) in (celtypes.BoolType(True), celtypes.BoolType(False))
    out["activation + first evaluation"] = _time(lambda: prg.evaluate(activation()), 50)
    out["evaluate again, activation built"] = _time(lambda: prg.evaluate(act), 100)
    out["evaluate, no helpers"] = _time(lambda: bare.evaluate(act), 100)
    return out


def stage_situation(profile: Profile) -> tuple[Any, tuple[Any, ...]]:
    """A situation with 20 candidates (5 offers x 4 channels), each offer
    with its own rule and caps, 12 past exposures."""
    from decision.catalog import Cap, Catalog, Channel, Content, Placement, QuietHours, Rule
    from decision.domain import Candidate, DecideRequest, Exposure, Identity, IdentityType
    from decision.rules import compile_rule
    from decision.stages import Situation

    channels = {
        "web": Channel("web", unknown_consent="allow"),
        "app": Channel("app", unknown_consent="allow"),
        "email": Channel("email", outbound=True, min_delay_s=3600),
        "push": Channel("push", outbound=True, quiet_hours=QuietHours(22 * 60, 8 * 60)),
    }
    rules = [
        RULE,
        'has_event(events, "cart_abandoned", duration("72h")) && !purchased_since_abandon(events)',
        'profile.churn_score > 0.7 || count_events(events, "support_call", duration("720h")) >= 1',
        'in_segment(segments, "paying") && days_since(events, "purchase") < 90 && offer.value >= 10.0',
        'context.page == "home" && local_hour >= 8',
    ]
    offers = {}
    for i, text in enumerate(rules):
        oid = f"offer-{i}"
        contents = tuple(Content(id=f"{oid}-{ch}", offer_id=oid, channel=ch) for ch in channels)
        offers[oid] = Offer(id=oid, name=oid, value=10.0 + i, eligibility=Rule(text, 1, compile_rule(text)),
                            caps=(Cap("offer", 3, 86400), Cap("offer_channel", 1, 3600)), contents=contents)
    candidates = tuple(Candidate(o.id, c.id, c.channel) for o in offers.values() for c in o.contents)
    catalog = Catalog(
        path="bench", version="bench", channels=MappingProxyType(channels), offers=MappingProxyType(offers),
        placements=MappingProxyType({"home": Placement(id="home", channels=tuple(channels))}),
        policies=MappingProxyType({}), person_caps=(Cap("person", 10, 7 * 86400), Cap("channel", 2, 86400)),
        candidates=MappingProxyType({"home": candidates}),
        contents=MappingProxyType({c.id: c for o in offers.values() for c in o.contents}),
    )
    exposures = tuple(Exposure(at_ms=NOW_MS - i * 3_600_000 * 9, offer_id=f"offer-{i % 5}",
                               channel=list(channels)[i % 4], decision_id=f"d{i}") for i in range(12))
    p = Profile(key=profile.key, found=True, attributes=profile.attributes, segments=profile.segments,
                consent=profile.consent, events=profile.events, exposures=exposures)
    situation = Situation(
        request=DecideRequest(placement="home", identity=Identity(IdentityType.PROFILE, "bench"), context=CONTEXT),
        catalog=catalog, placement=catalog.placements["home"], profile=p, counted_key=p.key,
        anonymous=False, now_ms=NOW_MS)
    return situation, candidates


def bench_stages(profile: Profile) -> dict[str, float]:
    """The three rules stages over 20 candidates: what a decide pays for rules."""
    from decision.stages import consent, eligibility, pressure

    situation, candidates = stage_situation(profile)

    def run_all() -> None:
        c = eligibility.apply(situation, candidates).survivors
        c = consent.apply(situation, c).survivors
        pressure.apply(situation, c)

    return {
        "eligibility, 20 candidates / 5 rules": _time(lambda: eligibility.apply(situation, candidates), 500),
        "consent, 20 candidates": _time(lambda: consent.apply(situation, candidates), 2000),
        "pressure pre-check, 20 candidates": _time(lambda: pressure.apply(situation, candidates), 2000),
        "three stages in a row, 20 candidates": _time(run_all, 500),
    }


def main() -> None:
    profile = sample_profile()
    rows = {"cel (Rust)": bench_cel(profile)}
    try:
        rows["celpy (pure Python)"] = bench_celpy(profile)
    except ImportError:
        print("celpy not installed: measuring cel only")
    names = list(dict.fromkeys(k for r in rows.values() for k in r))
    print(f"{'microseconds per call (median of 5)':40s}" + "".join(f"{lib:>22s}" for lib in rows))
    for n in names:
        print(f"{n:40s}" + "".join(f"{r[n]:22.1f}" if n in r else f"{'-':>22s}" for r in rows.values()))
    print()
    for n, v in bench_stages(profile).items():
        print(f"{n:40s}{v:22.1f}")


if __name__ == "__main__":
    main()
