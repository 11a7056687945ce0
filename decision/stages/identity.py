"""Resolve who the decision is for.

Every identity is a person key (`pid:42`, `cookie:abc`). An anonymous or
secondary identity whose profile carries a `link` belongs to a known profile.
The decision uses that profile only when the person consents to joining
anonymous and authenticated data (`c:join`); otherwise it decides on the
visitor's own data and context alone, and says so.
"""

from __future__ import annotations

from dataclasses import dataclass

from decision.domain import DecideRequest, Identity, IdentityType, Profile

JOIN_CONSENT = "join"


@dataclass(frozen=True, slots=True)
class Lookup:
    """The person keys to read in the first round trip."""

    keys: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Resolution:
    profile: Profile
    counted_key: str
    anonymous: bool
    notes: tuple[str, ...]


def first_lookup(request: DecideRequest) -> Lookup:
    seen: dict[str, None] = {request.identity.key: None}
    for extra in request.extra_identities:
        seen.setdefault(extra.key, None)
    return Lookup(tuple(seen))


def link_target(request: DecideRequest, profiles: tuple[Profile, ...]) -> str | None:
    """The known profile this visit belongs to, if any identity says so."""
    if request.identity.type is IdentityType.PROFILE:
        return None
    for identity, profile in zip(_identities(request), profiles):
        if identity.type is IdentityType.PROFILE:
            return identity.key
        if profile.link:
            return profile.link
    return None


def _identities(request: DecideRequest) -> list[Identity]:
    seen: dict[str, Identity] = {request.identity.key: request.identity}
    for extra in request.extra_identities:
        seen.setdefault(extra.key, extra)
    return list(seen.values())


def resolve(request: DecideRequest, own: Profile, linked: Profile | None) -> Resolution:
    """Pick the profile to decide on. `own` is the profile of the request's
    identity; `linked` the known profile it links to, if any."""
    if linked is None:
        anonymous = request.identity.anonymous
        note = "identity: %s profile %s" % ("anonymous" if anonymous else "known", "found" if own.found else "not found")
        return Resolution(own, own.key, anonymous, (note,))
    consent = linked.consent.get(JOIN_CONSENT, "").lower()
    if consent == "granted":
        return Resolution(
            linked, linked.key, False,
            ("identity: linked to a known profile; consent to join granted, decided on that profile",),
        )
    why = "refused" if consent == "denied" else "not given"
    return Resolution(
        own, own.key, True,
        (f"identity: linked to a known profile but consent to join {why}; decided on this visit's data and context alone",),
    )
