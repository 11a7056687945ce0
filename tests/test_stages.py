"""Unit tests of the identity and candidates stages (pure functions)."""

from __future__ import annotations

from types import MappingProxyType

from decision.catalog import Catalog, Channel, Content, Offer, Placement
from decision.domain import Candidate, DecideRequest, Identity, IdentityType, Profile
from decision.stages import Situation, candidates, identity

NOW = 1_780_000_000_000


def _req(kind: IdentityType, ident: str, *extra: Identity, channels: tuple[str, ...] = ()) -> DecideRequest:
    return DecideRequest(placement="p", identity=Identity(kind, ident), extra_identities=extra, channels=channels)


def test_first_lookup_reads_every_identity_once():
    req = _req(IdentityType.COOKIE, "c1", Identity(IdentityType.DEVICE, "d1"), Identity(IdentityType.COOKIE, "c1"))
    assert identity.first_lookup(req).keys == ("cookie:c1", "device:d1")


def test_a_known_profile_is_its_own_target():
    req = _req(IdentityType.PROFILE, "42")
    assert identity.link_target(req, (Profile("pid:42", found=True),)) is None


def test_link_found_on_the_cookie_or_an_extra_identity():
    req = _req(IdentityType.COOKIE, "c1", Identity(IdentityType.DEVICE, "d1"))
    assert identity.link_target(req, (Profile("cookie:c1"), Profile("device:d1", link="pid:7"))) == "pid:7"
    logged_in = _req(IdentityType.COOKIE, "c1", Identity(IdentityType.PROFILE, "9"))
    assert identity.link_target(logged_in, (Profile("cookie:c1"), Profile("pid:9"))) == "pid:9"


def test_join_needs_the_persons_consent():
    req = _req(IdentityType.COOKIE, "c1")
    own = Profile("cookie:c1", found=True)
    granted = Profile("pid:7", found=True, consent=MappingProxyType({"join": "granted"}))
    denied = Profile("pid:7", found=True, consent=MappingProxyType({"join": "denied"}))
    unknown = Profile("pid:7", found=True)

    r = identity.resolve(req, own, granted)
    assert r.profile is granted and r.counted_key == "pid:7" and not r.anonymous
    r = identity.resolve(req, own, denied)
    assert r.profile is own and r.counted_key == "cookie:c1" and r.anonymous and "refused" in r.notes[0]
    r = identity.resolve(req, own, unknown)
    assert r.profile is own and "not given" in r.notes[0]


def _catalog() -> Catalog:
    day = 86_400_000
    offers = {
        "live": Offer("live", "Live", contents=(Content("live_web", "live", "web"), Content("live_app", "live", "app"))),
        "soon": Offer("soon", "Soon", valid_from_ms=NOW + day, contents=(Content("soon_web", "soon", "web"),)),
        "gone": Offer("gone", "Gone", valid_until_ms=NOW - day, contents=(Content("gone_web", "gone", "web"),)),
    }
    cands = tuple(Candidate(o.id, c.id, c.channel) for o in offers.values() for c in o.contents)
    placement = Placement("p", channels=("web", "app"))
    return Catalog(path="t", version="v", channels=MappingProxyType({"web": Channel("web"), "app": Channel("app")}),
                   offers=MappingProxyType(offers), placements=MappingProxyType({"p": placement}),
                   policies=MappingProxyType({}), candidates=MappingProxyType({"p": cands}),
                   contents=MappingProxyType({c.id: c for o in offers.values() for c in o.contents}))


def test_candidates_respect_validity_and_requested_channels():
    catalog = _catalog()
    situation = Situation(_req(IdentityType.PROFILE, "1", channels=("web",)), catalog, catalog.placements["p"],
                          Profile("pid:1"), "pid:1", False, NOW)
    result = candidates.apply(situation, catalog.candidates["p"])
    assert [c.content_id for c in result.survivors] == ["live_web"]
    why = {r.candidate.content_id: r.rule for r in result.removed}
    assert why == {"live_app": "channel not requested", "soon_web": "validity: not yet valid",
                   "gone_web": "validity: expired"}
    assert all(r.stage == "candidates" for r in result.removed)
