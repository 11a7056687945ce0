"""The five seed cases of USE_CASES.md, end to end over real gRPC and Redis
with the example catalog and profiles (examples/)."""

from __future__ import annotations

from decision.nba.v1 import decision_pb2 as pb
from decision.store import keys


def _rows(resp, offer_id):
    return [e for e in resp.explanations if e.offer_id == offer_id]


def _removed_by(resp, offer_id, stage):
    rows = _rows(resp, offer_id)
    return rows and all(e.outcome == pb.OUTCOME_REMOVED and e.stage == stage for e in rows)


def _allowed(resp, offer_id):
    return any(e.outcome in (pb.OUTCOME_CHOSEN, pb.OUTCOME_NOT_CHOSEN) for e in _rows(resp, offer_id))


async def test_1_cart_reminder_not_sent_after_a_purchase_in_store(service):
    """Marco abandoned a cart online, then bought the item in store: no
    reminder on any channel. Lena abandoned and did not buy: allowed."""
    marco = await service.decide("outbound_daily", "pid:marco", explain=True, dry_run=True)
    assert _removed_by(marco, "cart_reminder", "eligibility")
    assert all("purchased_since_abandon" in e.rule for e in _rows(marco, "cart_reminder"))

    lena = await service.decide("outbound_daily", "pid:lena", explain=True, dry_run=True)
    assert _allowed(lena, "cart_reminder")
    # the in-app card too: the same rule, another channel
    marco_app = await service.decide("home_hero", "pid:marco", explain=True, dry_run=True)
    assert _removed_by(marco_app, "cart_reminder", "eligibility")


async def test_3_retention_offers_for_sarah_in_the_call_center(service):
    """Sarah (churn score 0.82, cancellation intent, support call yesterday)
    calls; the agent's tool looks her up by CRM id and sees the retention
    offers first, with the reasons."""
    resp = await service.decide("callcenter_next", "crm:C-1001", count=3, explain=True)
    offers = [i.offer_id for i in resp.items]
    assert offers[:2] == ["retention_discount", "retention_call_back"]
    assert any("consent to join granted" in n for n in resp.notes)
    # Tom has no churn signal: the same offers are removed, naming the rule.
    tom = await service.decide("callcenter_next", "pid:tom", count=3, explain=True)
    assert _removed_by(tom, "retention_discount", "eligibility")
    assert "retention_discount" not in [i.offer_id for i in tom.items]


async def test_3_churn_signals_each_make_retention_eligible(service):
    writer_profile = {"attributes": {}, "segments": ["paying_user"], "consent": {"marketing": "granted", "service": "granted"}}
    from decision.profiles_file import parse_line
    from decision.store.redis_store import ProfileWriter

    now = service.clock.now_ms()
    variants = {
        "pid:score": {**writer_profile, "id": "pid:score", "attributes": {"churn_score": 0.9}},
        "pid:intent": {**writer_profile, "id": "pid:intent", "segments": ["paying_user", "cancellation_intent"]},
        "pid:call": {**writer_profile, "id": "pid:call", "events": [{"type": "support_call", "ago": "2d"}]},
        "pid:calm": {**writer_profile, "id": "pid:calm", "attributes": {"churn_score": 0.1}},
    }
    writer = ProfileWriter(service.app.redis)
    for doc in variants.values():
        await writer.write(parse_line(doc, now, "test"))
    for who in ("pid:score", "pid:intent", "pid:call"):
        resp = await service.decide("callcenter_next", who, count=3, explain=True, dry_run=True)
        assert resp.items[0].offer_id == "retention_discount", who
    calm = await service.decide("callcenter_next", "pid:calm", count=3, explain=True, dry_run=True)
    assert _removed_by(calm, "retention_discount", "eligibility")


async def test_4_value_aware_ranking_under_fixed_priority(service):
    """With equal priority (and equal propensity), the higher-value offer
    ranks first: the fixed policy scores value x priority."""
    text = service.catalog_path.read_text()
    text = text.replace("    channels: [callcenter]\n    max_items: 3\n    policy: fixed_priority",
                        "    channels: [callcenter, web]\n    max_items: 3\n    policy: fixed_priority")
    text = text.replace("    priority: 8\n    tags: [upsell, subscription]", "    priority: 5\n    tags: [upsell, subscription]")
    text = text.replace("    priority: 6\n    tags: [crosssell, subscription]", "    priority: 5\n    tags: [crosssell, subscription]")
    service.catalog_path.write_text(text)
    assert (await service.admin.ReloadCatalog(pb.ReloadCatalogRequest())).reloaded
    catalog = service.app.holder.catalog
    assert catalog.offers["premium_upgrade"].priority == catalog.offers["family_plan"].priority
    assert catalog.offers["family_plan"].value > catalog.offers["premium_upgrade"].value
    resp = await service.decide("callcenter_next", "pid:tom", count=3, channels=["web"], dry_run=True)
    offers = [i.offer_id for i in resp.items]
    assert offers.index("family_plan") < offers.index("premium_upgrade")
    assert resp.items[0].score > resp.items[1].score


async def test_5_linked_cookie_is_personalized_when_joining_is_allowed(service):
    """Sarah's cookie links to her profile and she consents to joining: the
    anonymous visit is decided on her profile (she is a paying user, so the
    free-trial offer is not for her)."""
    resp = await service.decide("home_hero", "cookie:sarah-web-1", context={"page": "home"}, explain=True,
                                dry_run=True)
    assert any("consent to join granted" in n for n in resp.notes)
    assert any("'pid:sarah'" in n for n in resp.notes)  # pressure counted on the person
    assert _removed_by(resp, "welcome_trial", "eligibility")


async def test_5_linked_cookie_decided_on_context_when_joining_is_refused(service):
    """Julia refuses joining: her cookie is decided on the visit alone, the
    explanation says so, and pressure is counted on the cookie."""
    resp = await service.decide("home_hero", "cookie:julia-web", context={"page": "home"}, explain=True,
                                dry_run=True)
    assert any("consent to join refused" in n for n in resp.notes)
    assert any("'cookie:julia-web'" in n for n in resp.notes)
    assert _allowed(resp, "welcome_trial")  # she looks like a prospect from the visit alone


async def test_5_unknown_visitor_is_decided_from_context(service):
    anon = await service.decide("home_hero", "cookie:never-seen", context={"page": "pricing"}, explain=True,
                                dry_run=True)
    assert _allowed(anon, "welcome_trial")
    off_page = await service.decide("home_hero", "cookie:never-seen", context={"page": "account"}, explain=True,
                                    dry_run=True)
    assert _removed_by(off_page, "welcome_trial", "eligibility")


async def test_2_outbound_consent_is_enforced_in_the_pipeline(service):
    """Julia refused SMS and push: the outbound run never proposes them,
    whatever the caller asks."""
    resp = await service.decide("outbound_daily", "pid:julia", explain=True, dry_run=True)
    for e in resp.explanations:
        if e.channel in ("sms", "push"):
            assert e.outcome == pb.OUTCOME_REMOVED
    assert all(i.channel == "email" for i in resp.items)
    assert await service.app.redis.zcard(keys.exposures("pid:julia")) == 0
