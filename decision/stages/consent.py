"""Consent: the offer's purpose and the channel, read from the profile.

A candidate needs two grants: the purpose its offer declares (`marketing`,
`service`, ...; profile field `c:<purpose>`) and contact on its channel
(`c:channel:<channel>`). Values are matched case-insensitively, surrounding
spaces ignored: "granted" or "denied". A missing (or empty) value is
*unknown* and follows the channel's `unknown_consent` ("deny" by default for
outbound channels, "allow" for inbound ones: an anonymous visitor on the
website has no consent record). Any other value is *malformed*: the
candidate is removed whatever the channel says, and a warning is logged; the
request still succeeds.
"""

from __future__ import annotations

import logging

from decision.catalog import Channel
from decision.domain import Candidate, ConsentState, Removal, StageResult
from decision.stages import Situation

STAGE = "consent"
CHANNEL_PREFIX = "channel:"

log = logging.getLogger(__name__)


def parse(raw: str | None) -> ConsentState | None:
    """GRANTED, DENIED, UNKNOWN (absent or empty), or None when malformed."""
    if raw is None:
        return ConsentState.UNKNOWN
    v = str(raw).strip().lower()
    if v == "granted":
        return ConsentState.GRANTED
    if v == "denied":
        return ConsentState.DENIED
    if v == "":
        return ConsentState.UNKNOWN
    return None


def _check(situation: Situation, field: str, channel: Channel, warned: set[str]) -> tuple[str, str] | None:
    """None when allowed, else (rule, detail)."""
    raw = situation.profile.consent.get(field)
    state = parse(raw)
    if state is ConsentState.GRANTED:
        return None
    if state is ConsentState.DENIED:
        return f"consent {field} denied", f"the person refused '{field}'"
    if state is None:
        if field not in warned:
            warned.add(field)
            log.warning("malformed consent value %r for field %r of %s: candidates needing it removed",
                        raw, field, situation.profile.key)
        return (f"consent {field} malformed",
                f"value {raw!r} is neither 'granted' nor 'denied'; treated as no consent")
    if channel.unknown_consent == "allow":
        return None
    return (f"consent {field} unknown",
            f"no consent recorded for '{field}'; channel {channel.id} denies unknown consent")


def apply(situation: Situation, candidates: tuple[Candidate, ...]) -> StageResult:
    catalog = situation.catalog
    # Many candidates share an (offer purpose, channel): decide each pair once.
    verdicts: dict[tuple[str, str], tuple[str, str] | None] = {}
    warned: set[str] = set()
    survivors: list[Candidate] = []
    removed: list[Removal] = []
    for c in candidates:
        purpose = catalog.offers[c.offer_id].purpose
        key = (purpose, c.channel)
        if key in verdicts:
            verdict = verdicts[key]
        else:
            # An unknown channel cannot have been declared allow: deny (the loader
            # refuses such catalogs; this only guards hand-built ones).
            channel = catalog.channels.get(c.channel) or Channel(id=c.channel, outbound=True)
            verdict = None
            if purpose:
                verdict = _check(situation, purpose, channel, warned)
            if verdict is None:
                verdict = _check(situation, CHANNEL_PREFIX + c.channel, channel, warned)
            verdicts[key] = verdict
        if verdict is None:
            survivors.append(c)
        else:
            removed.append(Removal(c, STAGE, verdict[0], verdict[1]))
    return StageResult(tuple(survivors), tuple(removed))
