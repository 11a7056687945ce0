"""Eligibility rules (CEL): compile-time checks, helpers, the stage, and
evaluation over a profile read back from the real server."""

from __future__ import annotations

from types import MappingProxyType

import pytest

from decision.catalog import Catalog, Channel, Content, Offer, Placement, Rule
from decision.domain import Candidate, DecideRequest, Event, Identity, IdentityType, Profile, Removal, StageResult
from decision.rules import NEVER_DAYS, Evaluator, RuleError, RuleEvaluationError, compile_rule, selected_fields
from decision.stages import Situation
from decision.stages import eligibility
from decision.store.redis_store import ProfileDocument, ProfileWriter, RedisProfileStore

NOW = 1_767_225_600_000 + 11 * 3_600_000  # 2026-01-01T11:00:00Z
HOUR = 3_600_000
DAY = 86_400_000


def ev(type_: str, ago_ms: int, item: str | None = None, channel: str | None = None,
       value: float | None = None) -> Event:
    return Event(type=type_, at_ms=NOW - ago_ms, item=item, channel=channel, value=value)


def profile(attributes=None, segments=(), consent=None, events=()) -> Profile:
    return Profile(
        key="pid:42", found=True,
        attributes=MappingProxyType(dict(attributes or {})),
        segments=MappingProxyType({s: NOW - DAY for s in segments}),
        consent=MappingProxyType(dict(consent or {})),
        events=tuple(sorted(events, key=lambda e: e.at_ms)),
    )


def run(text: str, p: Profile, *, now: int = NOW, channel: str = "web", offer: Offer | None = None,
        context=None) -> bool:
    return Evaluator(p, MappingProxyType(dict(context or {})), now).evaluate(
        compile_rule(text), offer or Offer(id="o", name="o"), channel)


# ---------------------------------------------------------------------------
# Compile: refused with a position


@pytest.mark.parametrize("text, message, column", [
    ("profile.age > ", "Syntax error", 15),
    ("profile.age > 3 && foo(1)", "unknown function 'foo'", 20),
    ("profil.age > 3", "unknown variable 'profil'", 1),
    ("has_event(events, 'purchase')", "has_event takes 3 arguments, got 2", 1),
    ("has_event(events, 'purchase', duration('7d'))", 'invalid duration "7d"', 31),
    ("math.nope([1]) > 0", "unknown function 'math.nope'", 1),
])
def test_compile_refuses_with_column(text, message, column):
    with pytest.raises(RuleError) as info:
        compile_rule(text)
    assert message in info.value.message
    assert info.value.column == column


def test_compile_error_position_in_a_multiline_rule():
    with pytest.raises(RuleError) as info:
        compile_rule("profile.age > 18\n  && nope(events)")
    assert (info.value.line, info.value.column) == (2, 6)
    assert "line 2, column 6" in str(info.value)


@pytest.mark.parametrize("text, message", [
    ("offer.value + 1 > 2", "type error"),                         # double + int
    ("size(segments) + 'a' == 'b'", "type error"),
    ("has_event(events, 'purchase', '24h')", "must be a duration"),  # helper given a string
    ("in_segment(segments, 3)", "must be a string"),
    ("count_events(events, 'view', duration('24h'))", "boolean"),  # an int is not a decision
    ("size(1) > 0", "no overload of size"),
])
def test_compile_refuses_type_errors_found_by_the_check_pass(text, message):
    with pytest.raises(RuleError) as info:
        compile_rule(text)
    assert message in info.value.message


@pytest.mark.parametrize("text", [
    # case 1: did you forget something?
    'has_event(events, "cart_abandoned", duration("72h")) && !purchased_since_abandon(events)',
    # case 2: only people who did not just receive it, in daytime
    'local_hour >= 9 && local_hour < 20 && count_events(events, "email_open", duration("720h")) > 0',
    # case 3: retention on churn signals
    'profile.churn_score > 0.7 || has_event(events, "cancel_intent", duration("168h"))'
    ' || count_events(events, "support_call", duration("720h")) >= 1',
    # case 4: cross-sell by relationship and value
    'in_segment(segments, "paying") && days_since(events, "purchase") < 90 && offer.value >= 10.0',
    # case 5: context only
    'context.page == "product" && context.device in ["mobile", "tablet"]',
    # natives, macros and library extensions
    'events.exists(e, e.type == "purchase" && e.value != null && e.value > 50.0)',
    'has(profile.tier) && profile.tier.lowerAscii() == "gold" && [1, 2].contains(2)',
    'consent.marketing == "granted" && channel == "email" && "vip" in offer.tags',
    'now - timestamp("2025-01-01T00:00:00Z") > duration("24h") // comments are fine',
    'last_event_item(events, "cart_abandoned") != "" && math.greatest([1, 2]) == 2',
])
def test_compile_accepts_the_seed_rules(text):
    rule = compile_rule(text)
    assert rule.text == text


def test_compile_records_what_the_rule_reads():
    assert compile_rule('channel == "email"').uses_channel
    assert not compile_rule('profile.age > 3').uses_channel
    assert compile_rule('offer.value > 3.0').uses_offer
    # events only handed to helpers: no conversion of events into CEL maps
    assert not compile_rule('has_event(events, "x", duration("1h"))').native_events
    assert compile_rule('size(events) > 3').native_events
    assert compile_rule('has_event(events.filter(e, e.channel == "web"), "x", duration("1h"))').native_events


# ---------------------------------------------------------------------------
# Helpers


def test_has_event_window_slides_with_the_clock():
    p = profile(events=[ev("support_call", 2 * DAY)])
    rule = 'has_event(events, "support_call", duration("72h"))'
    assert run(rule, p)
    assert not run(rule, p, now=NOW + 2 * DAY)  # four days old by then
    assert not run('has_event(events, "purchase", duration("72h"))', p)


def test_has_event_for_matches_the_item():
    p = profile(events=[ev("viewed", HOUR, item="sku-1")])
    assert run('has_event_for(events, "viewed", "sku-1", duration("2h"))', p)
    assert not run('has_event_for(events, "viewed", "sku-2", duration("2h"))', p)
    assert not run('has_event_for(events, "viewed", "sku-1", duration("30m"))', p)


def test_count_events_counts_within_the_window():
    p = profile(events=[ev("support_call", d * DAY) for d in (1, 3, 10, 40)])
    assert run('count_events(events, "support_call", duration("96h")) == 2', p)
    assert run('count_events(events, "support_call", duration("720h")) == 3', p)
    assert run('count_events(events, "nothing", duration("720h")) == 0', p)


def test_days_since_and_never():
    p = profile(events=[ev("purchase", 3 * DAY + HOUR), ev("purchase", 10 * DAY)])
    assert run('days_since(events, "purchase") == 3', p)
    assert run(f'days_since(events, "refund") == {NEVER_DAYS}', p)
    # never reads as "long ago" in both directions
    assert run('days_since(events, "refund") > 30', p)
    assert not run('days_since(events, "refund") < 7', p)


def test_last_event_item():
    p = profile(events=[ev("cart_abandoned", 5 * HOUR, item="old"), ev("cart_abandoned", HOUR, item="new")])
    assert run('last_event_item(events, "cart_abandoned") == "new"', p)
    assert run('last_event_item(events, "purchase") == ""', p)


@pytest.mark.parametrize("events, bought", [
    ([ev("cart_abandoned", 5 * HOUR, item="shoe")], False),
    # bought in store after abandoning online: never remind
    ([ev("cart_abandoned", 5 * HOUR, item="shoe", channel="web"),
      ev("purchase_in_store", HOUR, item="shoe", channel="store")], True),
    ([ev("cart_abandoned", 5 * HOUR, item="shoe"), ev("order", HOUR, item="shoe", channel="callcenter")], True),
    # another item, or a purchase before the abandonment, does not count
    ([ev("cart_abandoned", 5 * HOUR, item="shoe"), ev("purchase", HOUR, item="hat")], False),
    ([ev("purchase", 9 * HOUR, item="shoe"), ev("cart_abandoned", 5 * HOUR, item="shoe")], False),
    # the latest abandonment is the one that matters
    ([ev("cart_abandoned", 9 * HOUR, item="hat"), ev("purchase", 7 * HOUR, item="hat"),
      ev("cart_abandoned", 5 * HOUR, item="shoe")], False),
    ([], False),
])
def test_purchased_since_abandon(events, bought):
    assert run("purchased_since_abandon(events)", profile(events=events)) is bought


def test_in_segment():
    p = profile(segments=("paying", "trial"))
    assert run('in_segment(segments, "paying")', p)
    assert not run('in_segment(segments, "churned")', p)


def test_helpers_on_filtered_events_agree_with_the_fast_path():
    p = profile(events=[ev("purchase", HOUR, channel="store"), ev("purchase", 2 * HOUR, channel="web"),
                        ev("view", HOUR, channel="web")])
    assert run('count_events(events, "purchase", duration("24h")) == 2', p)
    assert run('count_events(events.filter(e, e.channel == "web"), "purchase", duration("24h")) == 1', p)
    assert run('events.exists(e, e.type == "purchase" && e.channel == "store")', p)
    assert run('has_event(events, "purchase", duration("24h")) && size(events) == 3', p)


def test_local_hour_uses_the_person_time_zone():
    # 11:00 UTC is 06:00 in New York in January
    assert run("local_hour == 6", profile(attributes={"timezone": "America/New_York"}))
    assert run("local_hour == 11", profile())
    # a bad zone falls back to UTC here (the pressure stage reports it)
    assert run("local_hour == 11", profile(attributes={"timezone": "Mars/Olympus"}))


def test_variables_seen_by_rules():
    p = profile(attributes={"age": 33, "devices": ("ios", "web"), "vip": True},
                consent={"marketing": " Granted "})
    offer = Offer(id="x-sell", name="x", value=25.0, tags=("vip", "upsell"))
    assert run('profile.age == 33 && "ios" in profile.devices && profile.vip', p)
    assert run('consent.marketing == "granted"', p)  # normalized
    assert run('offer.id == "x-sell" && offer.value > 20.0 && "vip" in offer.tags', p, offer=offer)
    assert run('channel == "email"', p, channel="email")
    assert run('context.page == "home"', p, context={"page": "home"})
    assert run('now > timestamp("2025-12-31T00:00:00Z")', p)


def test_only_selected_fields_are_converted_yet_every_rule_sees_what_it_reads():
    p = profile(attributes={"a": 1, "b": 2, "c": 3}, consent={"marketing": "granted"})
    e = Evaluator(p, MappingProxyType({"page": "home", "device": "tv"}), NOW)
    o1, o2 = Offer(id="o1", name="o1", value=5.0, tags=("x",)), Offer(id="o2", name="o2", value=50.0)
    assert compile_rule("profile.a == 1").selects["profile"] == frozenset({"a"})
    assert compile_rule('"a" in profile').selects["profile"] is None
    # no prepare(): later rules that need more fields re-bind the map
    assert e.evaluate(compile_rule("profile.a == 1"), o1, "web")
    assert e.evaluate(compile_rule("profile.b == 2 && !has(profile.zz)"), o1, "web")
    assert e.evaluate(compile_rule('size(profile) == 3 && "c" in profile'), o1, "web")
    assert e.evaluate(compile_rule('context.page == "home"'), o1, "web")
    assert e.evaluate(compile_rule('context["device"] == "tv"'), o1, "web")
    assert e.evaluate(compile_rule("offer.value < 10.0"), o1, "web")
    assert e.evaluate(compile_rule('"x" in offer.tags'), o1, "web")
    assert not e.evaluate(compile_rule("offer.value < 10.0"), o2, "web")
    assert e.evaluate(compile_rule('offer.id == "o2" && size(offer.tags) == 0'), o2, "web")
    # with prepare(): one conversion covering every announced rule
    rules = [compile_rule("profile.a == 1"), compile_rule("profile.c == 3")]
    e2 = Evaluator(p, MappingProxyType({}), NOW)
    e2.prepare(rules)
    assert all(e2.evaluate(r, o1, "web") for r in rules)


def test_runtime_error_is_reported_not_raised_through():
    rule = compile_rule("profile.age >= 18")  # accepted: the attribute may exist on other profiles
    e = Evaluator(profile(), MappingProxyType({}), NOW)
    with pytest.raises(RuleEvaluationError) as info:
        e.evaluate(rule, Offer(id="o", name="o"), "web")
    assert "age" in str(info.value)


def test_each_rule_is_evaluated_once_per_request_unless_it_reads_channel():
    e = Evaluator(profile(attributes={"age": 40}), MappingProxyType({}), NOW)
    o = Offer(id="o", name="o")
    shared = compile_rule("profile.age >= 18")
    per_channel = compile_rule('profile.age >= 18 && channel != "sms"')
    for ch in ("web", "email", "sms"):
        e.evaluate(shared, o, ch)
        e.evaluate(per_channel, o, ch)
    assert len(e._results) == 1 + 3
    assert [e.evaluate(per_channel, o, ch) for ch in ("web", "sms")] == [True, False]


# ---------------------------------------------------------------------------
# The stage


def _catalog(offer_rules: dict[str, str | None], placement_rule: str | None = None,
             content_rules: dict[str, str] | None = None) -> Catalog:
    content_rules = content_rules or {}
    channels = {"web": Channel("web", unknown_consent="allow"),
                "email": Channel("email", outbound=True)}
    offers = {}
    candidates = []
    for oid, text in offer_rules.items():
        contents = tuple(
            Content(id=f"{oid}-{ch}", offer_id=oid, channel=ch,
                    eligibility=Rule(content_rules[f"{oid}-{ch}"], 1) if f"{oid}-{ch}" in content_rules else None)
            for ch in ("web", "email")
        )
        offers[oid] = Offer(id=oid, name=oid, value=10.0, eligibility=Rule(text, 1) if text else None,
                            contents=contents)
        candidates += [Candidate(oid, c.id, c.channel) for c in contents]
    placement = Placement(id="home", channels=("web", "email"), max_items=3,
                          eligibility=Rule(placement_rule, 1) if placement_rule else None)
    return Catalog(
        path="test.yaml", version="t", channels=MappingProxyType(channels), offers=MappingProxyType(offers),
        placements=MappingProxyType({"home": placement}), policies=MappingProxyType({}),
        candidates=MappingProxyType({"home": tuple(candidates)}),
        contents=MappingProxyType({c.id: c for o in offers.values() for c in o.contents}),
    )


def _situation(catalog: Catalog, p: Profile, context=None) -> Situation:
    request = DecideRequest(placement="home", identity=Identity(IdentityType.PROFILE, "42"),
                            context=MappingProxyType(dict(context or {})))
    return Situation(request=request, catalog=catalog, placement=catalog.placements["home"], profile=p,
                     counted_key=p.key, anonymous=False, now_ms=NOW)


def test_stage_removes_with_the_offer_and_rule_text():
    cat = _catalog({"retain": 'profile.churn_score > 0.7', "welcome": None})
    result = eligibility.apply(_situation(cat, profile(attributes={"churn_score": 0.2})), cat.candidates["home"])
    assert [c.offer_id for c in result.survivors] == ["welcome", "welcome"]
    assert {r.rule for r in result.removed} == {"offer retain: profile.churn_score > 0.7"}
    assert all(r.stage == "eligibility" and r.detail == "rule is false for this profile" for r in result.removed)


def test_stage_error_on_one_profile_removes_only_that_offer():
    cat = _catalog({"adult": "profile.age >= 18", "anyone": "true"})
    result = eligibility.apply(_situation(cat, profile()), cat.candidates["home"])
    assert [c.offer_id for c in result.survivors] == ["anyone", "anyone"]
    assert len(result.removed) == 2
    assert all(r.detail.startswith("eligibility error: ") and "age" in r.detail for r in result.removed)
    assert all(r.rule == "offer adult: profile.age >= 18" for r in result.removed)


def test_stage_placement_rule_false_removes_everything():
    cat = _catalog({"a": None, "b": None}, placement_rule='context.page == "checkout"')
    result = eligibility.apply(_situation(cat, profile(), {"page": "home"}), cat.candidates["home"])
    assert result.survivors == ()
    assert {r.rule for r in result.removed} == {'placement home: context.page == "checkout"'}
    assert len(result.removed) == 4


def test_stage_content_rule_and_channel_rule():
    cat = _catalog({"a": 'channel == "web" || profile.vip'}, content_rules={"a-web": "local_hour >= 12"})
    result = eligibility.apply(_situation(cat, profile(attributes={"vip": False})), cat.candidates["home"])
    assert result.survivors == ()
    rules = {r.candidate.channel: r.rule for r in result.removed}
    assert rules == {"web": "content a-web: local_hour >= 12", "email": 'offer a: channel == "web" || profile.vip'}


def test_stage_uses_the_compiled_rule_from_the_catalog_or_compiles_once():
    text = 'in_segment(segments, "paying")'
    cat = _catalog({"a": text})
    offer = cat.offers["a"]
    compiled = compile_rule(text)
    offers = dict(cat.offers)
    offers["a"] = Offer(id="a", name="a", eligibility=Rule(text, 1, compiled), contents=offer.contents)
    cat2 = Catalog(path=cat.path, version=cat.version, channels=cat.channels, offers=MappingProxyType(offers),
                   placements=cat.placements, policies=cat.policies, candidates=cat.candidates, contents=cat.contents)
    for c in (cat, cat2):
        result = eligibility.apply(_situation(c, profile(segments=("paying",))), c.candidates["home"])
        assert len(result.survivors) == 2


def test_offers_that_repeat_a_rule_share_its_compiled_form_and_its_verdict(tmp_path, monkeypatch):
    from decision.bench.candidates import PLACEMENT, RULES, catalog_text
    from decision.server import load

    path = tmp_path / "catalog.yaml"
    path.write_text(catalog_text(200))  # 100 offers; offers 1-99 cycle through the 10 RULES
    cat = load(path)
    rules = [o.eligibility for o in cat.offers.values() if o.eligibility is not None]
    assert len(rules) == 99 and len({id(r.compiled) for r in rules}) == len(RULES)
    assert cat.offers["o001"].eligibility.compiled is cat.offers["o011"].eligibility.compiled

    evaluated = []

    class Counting(eligibility.Evaluator):
        def evaluate(self, rule, offer, channel):
            evaluated.append(rule.text)
            return super().evaluate(rule, offer, channel)

    monkeypatch.setattr(eligibility, "Evaluator", Counting)
    request = DecideRequest(placement=PLACEMENT, identity=Identity(IdentityType.PROFILE, "42"),
                            context=MappingProxyType({"page": "home"}))
    p = profile(attributes={"tier": "free", "age": 30, "country": "US"}, segments=("paying_user",))
    situation = Situation(request=request, catalog=cat, placement=cat.placements[PLACEMENT], profile=p,
                          counted_key=p.key, anonymous=False, now_ms=NOW)
    result = eligibility.apply(situation, cat.candidates[PLACEMENT])
    assert sorted(evaluated) == sorted(set(evaluated)) and len(evaluated) == len(RULES)
    # each removal still names its own offer's rule; the verdicts are those of each rule alone
    tier = RULES[1]  # 'has(profile.tier) && profile.tier != "free"': false for this profile
    removed_offers = {r.candidate.offer_id for r in result.removed if r.rule.endswith(tier)}
    assert removed_offers == {f"o{j:03d}" for j in range(1, 100) if j % len(RULES) == 1}
    assert all(r.rule == f"offer {r.candidate.offer_id}: {' '.join(cat.offers[r.candidate.offer_id].eligibility.text.split())}"
               for r in result.removed)
    assert result == _reference(situation, cat.candidates[PLACEMENT])  # every rule on its own


def test_stage_refuses_an_uncompilable_rule_at_run_time_without_failing():
    cat = _catalog({"broken": "profile.age >", "fine": None})
    result = eligibility.apply(_situation(cat, profile()), cat.candidates["home"])
    assert [c.offer_id for c in result.survivors] == ["fine", "fine"]
    assert all("eligibility error: " in r.detail and "Syntax error" in r.detail for r in result.removed)


def _reference(situation: Situation, candidates: tuple[Candidate, ...]) -> StageResult:
    """The stage as its docstring states it, sharing nothing between rules
    or requests: each rule compiled and evaluated on its own."""
    catalog, placement = situation.catalog, situation.placement
    survivors, removed = [], []
    for c in candidates:
        offer = catalog.offers[c.offer_id]
        content = catalog.contents.get(c.content_id)
        owned = [(f"placement {placement.id}", placement.eligibility), (f"offer {offer.id}", offer.eligibility),
                 (f"content {c.content_id}", content.eligibility if content else None)]
        reason = None
        for owner, rule in owned:
            if rule is None:
                continue
            try:
                evaluator = Evaluator(situation.profile, situation.request.context, situation.now_ms)
                detail = None if evaluator.evaluate(compile_rule(rule.text), offer, c.channel) else eligibility.FALSE
            except (RuleError, RuleEvaluationError) as e:
                detail = f"eligibility error: {e}"
            if detail is not None:
                reason = Removal(c, "eligibility", f"{owner}: {' '.join(rule.text.split())}", detail)
                break
        if reason is None:
            survivors.append(c)
        else:
            removed.append(reason)
    return StageResult(tuple(survivors), tuple(removed))


_MIXED_RULES = {
    "a": 'profile.tier == "gold"',                       # fails where tier is missing
    "b": 'channel == "web" && offer.value > 5.0',        # per channel and offer
    "c": "profile.age >",                                # does not compile
    "d": '"vip" in segments || has_event(events, "click", duration("24h"))',
    "e": None,
    "f": 'profile.tier == "gold"',                       # a's text, another Rule
    "g": "size(events.filter(e, e.type == \"click\")) > 0 && profile.age >= 18",  # events as CEL maps
}


def test_stage_matches_rule_by_rule_evaluation_over_many_profiles_and_candidate_sets():
    # The stage keeps per catalog what does not depend on the profile (the
    # plan of each candidate, the fields to convert per set of rules) and
    # shares each verdict among the candidates it guards: none of that may
    # change a survivor, a removal, its order or its text.
    cat = _catalog(_MIXED_RULES, placement_rule='!("blocked" in segments)',
                   content_rules={"d-email": "local_hour >= 12", "e-web": 'context.page == "home"'})
    everyone = cat.candidates["home"]
    subsets = [everyone, tuple(reversed(everyone)), tuple(c for c in everyone if c.channel == "web"),
               tuple(c for c in everyone if c.offer_id in "bde"), everyone[:1], ()]
    profiles = [
        profile(),
        profile(attributes={"tier": "gold", "age": 40}, segments=("vip",)),
        profile(attributes={"tier": "silver", "age": 12, "timezone": "Asia/Tokyo"},
                events=[ev("click", HOUR, channel="web")]),
        profile(attributes={"tier": 3}, segments=("blocked", "vip")),
        profile(attributes={"age": "forty"}, events=[ev("click", 2 * DAY)]),
    ]
    checked = 0
    for _ in range(2):  # the second round runs on the memo the first one filled
        for p in profiles:
            for context in ({}, {"page": "home"}):
                for candidates in subsets:
                    situation = _situation(cat, p, context)
                    assert eligibility.apply(situation, candidates) == _reference(situation, candidates)
                    checked += 1
    assert checked == 2 * len(profiles) * 2 * len(subsets)


def test_stage_stays_right_when_its_tables_start_over(monkeypatch):
    monkeypatch.setattr(eligibility, "_MAX_ENTRIES", 2)
    cat = _catalog(_MIXED_RULES, content_rules={"e-web": 'context.page == "home"'})
    p = profile(attributes={"tier": "gold", "age": 40}, events=[ev("click", HOUR)])
    for _ in range(3):
        for keep in ("abcdefg", "bd", "ae", "g"):
            # fresh objects every time, as a caller building its own candidates would pass
            candidates = tuple(Candidate(c.offer_id, c.content_id, c.channel)
                               for c in cat.candidates["home"] if c.offer_id in keep)
            situation = _situation(cat, p, {"page": "home"})
            assert eligibility.apply(situation, candidates) == _reference(situation, candidates)


def test_stage_plans_candidates_and_placements_it_has_not_seen_by_what_they_are():
    cat = _catalog({"a": 'profile.tier == "gold"', "b": None})
    p = profile(attributes={"tier": "gold"})
    own = cat.candidates["home"]
    expected = eligibility.apply(_situation(cat, p), own)
    # equal candidates that are other objects (built by a caller)
    copies = tuple(Candidate(c.offer_id, c.content_id, c.channel) for c in own)
    assert eligibility.apply(_situation(cat, p), copies) == expected
    # another placement object under the same id, with a rule of its own
    closed = Placement(id="home", channels=("web", "email"), max_items=3, eligibility=Rule("false", 1))
    situation = Situation(request=_situation(cat, p).request, catalog=cat, placement=closed, profile=p,
                          counted_key=p.key, anonymous=False, now_ms=NOW)
    result = eligibility.apply(situation, own)
    assert result.survivors == () and {r.rule for r in result.removed} == {"placement home: false"}
    assert eligibility.apply(_situation(cat, p), own) == expected


def test_expect_is_prepare_with_the_fields_worked_out_beforehand():
    p = profile(attributes={"a": 1, "b": 2, "c": 3})
    rules = [compile_rule("profile.a == 1"), compile_rule("profile.c == 3"), compile_rule('"b" in context')]
    fields = selected_fields(rules)
    assert fields == {"profile": frozenset({"a", "c"}), "context": None}
    kept = dict(fields)
    e = Evaluator(p, MappingProxyType({"b": "x"}), NOW)
    e.expect(fields)
    e.expect({"profile": frozenset({"b"})})  # merges, leaving the caller's mapping as it was
    assert fields == kept
    assert all(e.evaluate(r, None, "web") for r in rules)
    assert e.evaluate(compile_rule("profile.b == 2"), None, "web")


# ---------------------------------------------------------------------------
# Over a profile written and read back through the real server


async def test_case_1_not_offered_after_buying_in_store(redis):
    writer = ProfileWriter(redis)
    await writer.write(ProfileDocument(
        key="pid:sarah", attributes={"timezone": "America/New_York", "age": 33}, segments={"paying": NOW - DAY},
        consent={"marketing": "granted"}, links=(),
        events=(ev("cart_abandoned", 6 * HOUR, item="sku-9", channel="web"),),
    ))
    store = RedisProfileStore(redis)
    rule = compile_rule('has_event(events, "cart_abandoned", duration("72h")) && !purchased_since_abandon(events)')
    offer = Offer(id="forgot", name="forgot")

    (p,) = await store.fetch(["pid:sarah"], NOW)
    assert Evaluator(p, MappingProxyType({}), NOW).evaluate(rule, offer, "email")

    await writer.add_event("pid:sarah", ev("purchase_in_store", HOUR, item="sku-9", channel="store"), now_ms=NOW)
    (p,) = await store.fetch(["pid:sarah"], NOW)
    assert not Evaluator(p, MappingProxyType({}), NOW).evaluate(rule, offer, "email")
    # the same through the native form of the events
    native = compile_rule('events.exists(e, e.type == "cart_abandoned") && !purchased_since_abandon(events)')
    assert native.native_events
    assert not Evaluator(p, MappingProxyType({}), NOW).evaluate(native, offer, "email")
