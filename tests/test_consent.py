"""Consent: purpose and channel, unknown and malformed values."""

from __future__ import annotations

import logging
from types import MappingProxyType

import pytest

from decision.catalog import Catalog, Channel, Content, Offer, Placement
from decision.domain import Candidate, ConsentState, DecideRequest, Identity, IdentityType, Profile
from decision.stages import Situation, consent
from decision.store.redis_store import ProfileDocument, ProfileWriter, RedisProfileStore

NOW = 1_767_225_600_000


def _catalog() -> Catalog:
    channels = {
        "web": Channel("web", outbound=False, unknown_consent="allow"),
        "callcenter": Channel("callcenter", outbound=False, unknown_consent="allow"),
        "email": Channel("email", outbound=True, unknown_consent="deny"),
        "sms": Channel("sms", outbound=True, unknown_consent="deny"),
    }
    offers = {}
    candidates = []
    for oid, purpose in (("promo", "marketing"), ("fix", "service")):
        contents = tuple(Content(id=f"{oid}-{ch}", offer_id=oid, channel=ch) for ch in channels)
        offers[oid] = Offer(id=oid, name=oid, purpose=purpose, contents=contents)
        candidates += [Candidate(oid, c.id, c.channel) for c in contents]
    return Catalog(
        path="t.yaml", version="t", channels=MappingProxyType(channels), offers=MappingProxyType(offers),
        placements=MappingProxyType({"p": Placement(id="p", channels=tuple(channels))}),
        policies=MappingProxyType({}), candidates=MappingProxyType({"p": tuple(candidates)}),
        contents=MappingProxyType({c.id: c for o in offers.values() for c in o.contents}),
    )


CATALOG = _catalog()


def _run(consents: dict[str, str], *, identity=Identity(IdentityType.PROFILE, "42")):
    p = Profile(key=identity.key, found=bool(consents), consent=MappingProxyType(consents))
    s = Situation(request=DecideRequest(placement="p", identity=identity), catalog=CATALOG,
                  placement=CATALOG.placements["p"], profile=p, counted_key=p.key,
                  anonymous=identity.anonymous, now_ms=NOW)
    return consent.apply(s, CATALOG.candidates["p"])


def _allowed(result) -> set[str]:
    return {c.content_id for c in result.survivors}


def _why(result) -> dict[str, str]:
    return {r.candidate.content_id: r.rule for r in result.removed}


@pytest.mark.parametrize("raw, state", [
    ("granted", ConsentState.GRANTED), ("GRANTED", ConsentState.GRANTED), (" Granted ", ConsentState.GRANTED),
    ("denied", ConsentState.DENIED), ("Denied", ConsentState.DENIED),
    (None, ConsentState.UNKNOWN), ("", ConsentState.UNKNOWN),
    ("yes", None), ("1", None), ("granted!", None),
])
def test_parse(raw, state):
    assert consent.parse(raw) is state


def test_everything_granted_allows_everything():
    grants = {"marketing": "granted", "service": "granted"}
    grants.update({f"channel:{ch}": "granted" for ch in CATALOG.channels})
    result = _run(grants)
    assert len(result.survivors) == 8 and result.removed == ()


def test_purpose_and_channel_both_needed():
    result = _run({"marketing": "granted", "service": "Denied", "channel:email": "granted",
                   "channel:sms": "denied", "channel:web": "granted", "channel:callcenter": "granted"})
    assert _allowed(result) == {"promo-web", "promo-email", "promo-callcenter"}
    why = _why(result)
    assert why["promo-sms"] == "consent channel:sms denied"
    assert why["fix-web"] == why["fix-email"] == "consent service denied"  # purpose first
    assert all(r.stage == "consent" for r in result.removed)


def test_unknown_follows_the_channel_default():
    # nothing recorded at all: inbound channels allow, outbound deny
    result = _run({})
    assert _allowed(result) == {"promo-web", "promo-callcenter", "fix-web", "fix-callcenter"}
    why = _why(result)
    assert why["promo-email"] == "consent marketing unknown"
    assert why["fix-sms"] == "consent service unknown"
    assert "email denies unknown consent" in next(r.detail for r in result.removed if r.candidate.channel == "email")


def test_unknown_channel_consent_with_granted_purpose():
    result = _run({"marketing": "granted", "service": "granted"})
    assert _why(result)["promo-email"] == "consent channel:email unknown"
    assert "promo-web" in _allowed(result)


def test_anonymous_visitor_is_served_on_inbound_channels_only():
    result = _run({}, identity=Identity(IdentityType.COOKIE, "abc"))
    assert {c.channel for c in result.survivors} == {"web", "callcenter"}


def test_malformed_value_removes_with_a_reason_and_a_log_line(caplog):
    with caplog.at_level(logging.WARNING, logger="decision.stages.consent"):
        result = _run({"marketing": "yes please", "service": "granted",
                       "channel:web": "granted", "channel:email": "granted"})
    why = _why(result)
    # malformed denies even on a channel that allows unknown consent
    assert why["promo-web"] == why["promo-email"] == "consent marketing malformed"
    assert "'yes please'" in next(r.detail for r in result.removed if r.candidate.content_id == "promo-web")
    assert {"fix-web", "fix-email", "fix-callcenter"} <= _allowed(result)
    warnings = [r for r in caplog.records if "malformed consent" in r.getMessage()]
    assert len(warnings) == 1  # once per field and request, not per candidate


def test_explicit_denial_beats_inbound_default():
    result = _run({"marketing": "granted", "channel:web": "denied"})
    assert _why(result)["promo-web"] == "consent channel:web denied"


async def test_consent_read_back_from_the_server(redis):
    writer = ProfileWriter(redis)
    await writer.write(ProfileDocument(
        key="pid:7", attributes={}, segments={}, links=(), events=(),
        consent={"marketing": "Granted", "channel:email": "DENIED", "channel:sms": "maybe"},
    ))
    (p,) = await RedisProfileStore(redis).fetch(["pid:7"], NOW)
    s = Situation(request=DecideRequest(placement="p", identity=Identity(IdentityType.PROFILE, "7")),
                  catalog=CATALOG, placement=CATALOG.placements["p"], profile=p, counted_key=p.key,
                  anonymous=False, now_ms=NOW)
    result = consent.apply(s, CATALOG.candidates["p"])
    why = _why(result)
    assert why["promo-email"] == "consent channel:email denied"
    assert why["promo-sms"] == "consent channel:sms malformed"
    assert "promo-web" in _allowed(result)
