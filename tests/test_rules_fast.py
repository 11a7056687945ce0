"""The rules' fast path (decision/rules/fast.py) against the CEL library.

The fast path may answer or defer; whenever it answers, the answer must be the
library's, and whenever the library fails, the fast path must defer (so that
the error message is the library's). Checked on the seed catalogs' rules and
on generated rules, over generated profiles, contexts, events and offers.
"""

from __future__ import annotations

import dataclasses
import glob
import math
from datetime import datetime, timezone
from pathlib import Path
from types import MappingProxyType

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from decision.catalog import Offer, load_catalog
from decision.domain import Event, Profile
from decision.rules import Evaluator, RuleEvaluationError, compile_rule
from decision.rules.engine import CompiledRule, RuleError
from decision.rules.fast import Defer

ROOT = Path(__file__).resolve().parent.parent
NOW_MS = 1_767_225_600_000
HOUR_MS = 3_600_000


def _catalog_rules() -> list[str]:
    texts: dict[str, None] = {}
    for path in sorted({*glob.glob(str(ROOT / "examples" / "**" / "*.yaml"), recursive=True),
                        *glob.glob(str(ROOT / "tests" / "data" / "**" / "*.yaml"), recursive=True)}):
        try:
            cat = load_catalog(path)
        except Exception:  # noqa: BLE001 - fixtures of broken catalogs
            continue
        for offer in cat.offers.values():
            for rule in (offer.eligibility, *(c.eligibility for c in offer.contents)):
                if rule is not None:
                    texts[rule.text] = None
        for placement in cat.placements.values():
            rule = getattr(placement, "eligibility", None)
            if rule is not None:
                texts[rule.text] = None
    return list(texts)


CATALOG_RULES = _catalog_rules()

# Shapes beyond the seed catalogs, the edges of what the fast path compiles.
EXTRA_RULES = [
    'profile.tier == "gold"',
    'profile.tier != "gold"',
    "profile.n > 3",
    "profile.n >= 3.5",
    "profile.score < 0.5",
    'profile.s <= "m"',
    "profile.flag",
    "!profile.flag",
    "profile.flag == true",
    "int(profile.n) >= 3",
    "int(profile.s) == 3",
    "double(profile.s) > 1.5",
    "double(profile.n) > 1.5",
    "size(profile.s) > 2",
    "size(segments) >= 2",
    'size(profile.tags) == 2',
    '"vip" in segments',
    '"a" in profile.tags',
    'profile.tier in ["gold", "silver"]',
    "profile.n in [1, 2, 3]",
    'profile.n in [1, "2"]',
    'has(profile.tier) && profile.tier == "gold"',
    'has(profile.tier) || "vip" in segments',
    '(has(profile.n) && profile.n > 1) || (has(profile.score) && profile.score > 0.9)',
    'has(consent.email) && consent.email == "granted"',
    'consent.sms == "granted"',
    'has(context.page) && context.page in ["home", "title"]',
    "context.n > 2",
    'context.page == "home"',
    "local_hour >= 17",
    "local_hour < 9 || local_hour >= 21",
    'channel == "web"',
    'channel in ["web", "app"]',
    'offer.id == "o1"',
    "offer.value > 10.0",
    'offer.purpose == "marketing"',
    '"sale" in offer.tags',
    'has(offer.attributes.kind) && offer.attributes.kind == "retention"',
    'offer.attributes.kind == "retention"',
    'has_event(events, "cart_abandoned", duration("48h"))',
    'count_events(events, "watched_sports", duration("720h")) >= 3',
    'days_since(events, "purchase") > 30',
    'last_event_item(events, "cart_abandoned") == "sku1"',
    'has_event_for(events, "purchase", "sku1", duration("168h"))',
    "!purchased_since_abandon(events)",
    "profile.n == -1",
    "profile.score > -0.5",
    "1 == 1.0",
    'profile.n == "3"',
    "profile.missing == 1",
    "null == profile.tier",
    'has(profile.tier) && profile.tier.x == "y"',
    # not compiled by the fast path: the library alone
    'profile.tier.startsWith("g")',
    "profile.n + 1 > 3",
    'segments.exists(s, s == "vip")',
    'profile.n > 3 ? true : false',
    '"x" in profile',
    'events.exists(e, e.type == "purchase")',
    "now > timestamp(\"2020-01-01T00:00:00Z\")",
]

STRINGS = ["gold", "silver", "3", "-7", " 3", "3.5", "1e3", "abc", "", "é", "Granted", " granted ", "007", "+3",
           "1_000", "inf", "nan", "m", "web", "home", "sku1", "a"]
NUMBERS = [0, 1, 2, 3, -1, 5, 2 ** 63, -(2 ** 63) - 1, 2 ** 62, 0.0, -0.0, 0.5, 1.5, 3.0, 3.5, 1e300,
           math.inf, -math.inf, math.nan]
scalars = st.one_of(st.sampled_from(STRINGS), st.sampled_from(NUMBERS), st.booleans(),
                    st.integers(-10, 10), st.floats(-10, 10))
values = st.one_of(scalars, st.lists(st.sampled_from(STRINGS), max_size=3).map(tuple))
KEYS = ["tier", "n", "score", "flag", "tags", "s", "kind"]


@st.composite
def situations(draw):
    attributes = draw(st.dictionaries(st.sampled_from(KEYS), values, max_size=6))
    consent = draw(st.dictionaries(st.sampled_from(["email", "sms", "marketing"]),
                                   st.sampled_from(["granted", " Granted ", "denied", "1", "true"]), max_size=3))
    segments = draw(st.sets(st.sampled_from(["vip", "paying_user", "trial", "sports_fan"]), max_size=3))
    events = tuple(sorted(
        draw(st.lists(st.builds(
            Event,
            type=st.sampled_from(["cart_abandoned", "purchase", "watched_sports", "support_call"]),
            at_ms=st.integers(NOW_MS - 800 * HOUR_MS, NOW_MS + HOUR_MS),
            item=st.sampled_from([None, "sku1", "sku2"])), max_size=6)),
        key=lambda e: e.at_ms))
    if draw(st.booleans()):
        attributes["timezone"] = draw(st.sampled_from(["Europe/Paris", "America/New_York", "Nowhere/Bad"]))
    profile = Profile(key="profile:p1", found=True, attributes=MappingProxyType(attributes),
                      segments=MappingProxyType({s: NOW_MS for s in segments}),
                      consent=MappingProxyType(consent), events=events)
    context = draw(st.dictionaries(st.sampled_from(["page", "n", "t"]),
                                   st.one_of(values, st.just(datetime(2026, 1, 1, tzinfo=timezone.utc))),
                                   max_size=3))
    offer = draw(st.one_of(st.none(), st.builds(
        Offer, id=st.sampled_from(["o1", "o2"]), name=st.just("x"),
        value=st.sampled_from([0.0, 12.5]), tags=st.sampled_from([(), ("sale",), ("sale", "new")]),
        attributes=st.dictionaries(st.sampled_from(["kind", "tone"]),
                                   st.sampled_from(["retention", "upsell", 3, True]), max_size=2))))
    channel = draw(st.sampled_from(["web", "app", "email"]))
    return profile, MappingProxyType(context), offer, channel


def _library(rule: CompiledRule, profile, context, offer, channel):
    ev = Evaluator(profile, context, NOW_MS)
    try:
        return ("value", ev.run(rule, offer, channel))
    except Exception as e:  # noqa: BLE001 - any failure of the library
        return ("error", type(e).__name__)


def _fast(rule: CompiledRule, profile, context, offer, channel):
    ev = Evaluator(profile, context, NOW_MS)
    try:
        return ("value", rule.fast(ev, offer, channel))
    except Defer:
        return ("defer", None)


def _agree(rule: CompiledRule, case) -> None:
    fast = _fast(rule, *case)
    if fast[0] == "defer":
        return
    lib = _library(rule, *case)
    assert lib[0] == "value", f"{rule.text!r}: the library failed ({lib[1]}) where the fast path answered {fast[1]!r}"
    assert type(fast[1]) is type(lib[1]) and (fast[1] == lib[1] or (fast[1] != fast[1] and lib[1] != lib[1])), \
        f"{rule.text!r}: fast path {fast[1]!r}, library {lib[1]!r} on {case!r}"


def _compiled(text: str) -> CompiledRule | None:
    try:
        return compile_rule(text)
    except RuleError:
        return None


CHECKED = [r for r in (_compiled(t) for t in [*CATALOG_RULES, *EXTRA_RULES]) if r is not None and r.fast is not None]


def test_the_seed_catalogs_rules_take_the_fast_path():
    assert CATALOG_RULES, "no catalog rules found"
    slow = [t for t in CATALOG_RULES if compile_rule(t).fast is None]
    assert slow == []


@pytest.mark.parametrize("text", [
    'profile.tier.startsWith("g")', "profile.n + 1 > 3", 'segments.exists(s, s == "vip")',
    "profile.n > 3 ? true : false", '"x" in profile', 'events.exists(e, e.type == "purchase")',
    'now > timestamp("2020-01-01T00:00:00Z")', 'profile.tier == "a\\"b"', "profile.n < 2 < 3",
    'profile["tier"] == "gold"', "profile.n == 0x10", "profile.n == 3u", "// note\nprofile.flag",
])
def test_what_the_fast_path_leaves_to_the_library(text):
    rule = _compiled(text)
    if rule is not None:
        assert rule.fast is None


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=situations())
def test_the_fast_path_answers_as_the_library_does(case):
    for rule in CHECKED:
        _agree(rule, case)


# Generated rules over the same inputs.
ATOMS = st.one_of(
    st.sampled_from(['profile.tier', 'profile.n', 'profile.score', 'profile.flag', 'profile.tags', 'profile.s',
                     'context.page', 'context.n', 'consent.email', 'offer.value', 'offer.id', 'offer.tags',
                     'offer.attributes.kind', 'channel', 'local_hour', 'segments', 'int(profile.s)',
                     'double(profile.n)', 'size(profile.tags)', 'int(profile.n)', 'double(profile.s)',
                     'count_events(events, "purchase", duration("168h"))', 'days_since(events, "purchase")',
                     'last_event_item(events, "cart_abandoned")']),
    st.sampled_from(['"gold"', '"3"', '""', "3", "0", "-1", "2.5", "-0.5", "true", "false", "null",
                     '["gold", "silver"]', "[1, 2, 3]", '["a", 1]', "[]"]),
)
PREDICATES = st.one_of(
    st.sampled_from(['has(profile.tier)', 'has(context.page)', 'has(offer.attributes.kind)', 'profile.flag',
                     'has_event(events, "cart_abandoned", duration("48h"))', 'purchased_since_abandon(events)',
                     '"vip" in segments']),
    st.tuples(ATOMS, st.sampled_from(["==", "!=", "<", "<=", ">", ">=", "in"]), ATOMS).map(" ".join),
)


def _combine(children):
    return st.one_of(
        st.tuples(children, st.sampled_from(["&&", "||"]), children).map(lambda t: f"({t[0]} {t[1]} {t[2]})"),
        children.map(lambda c: f"!({c})"),
    )


generated_rules = st.recursive(PREDICATES, _combine, max_leaves=5)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=generated_rules, case=situations())
def test_generated_rules_agree_with_the_library(text, case):
    rule = _compiled(text)
    if rule is None or rule.fast is None:
        return
    _agree(rule, case)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=situations())
def test_evaluate_gives_the_same_verdicts_and_errors_with_or_without_the_fast_path(case):
    profile, context, offer, channel = case
    rules = [r for r in (_compiled(t) for t in [*CATALOG_RULES, *EXTRA_RULES]) if r is not None]
    with_fast = Evaluator(profile, context, NOW_MS)
    without = Evaluator(profile, context, NOW_MS)
    for rule in rules:
        outcomes = []
        for ev, r in ((with_fast, rule), (without, dataclasses.replace(rule, fast=None))):
            try:
                outcomes.append(ev.evaluate(r, offer, channel))
            except RuleEvaluationError as e:
                outcomes.append(f"error: {e}")
        assert outcomes[0] == outcomes[1], rule.text
